//! Built-in container images (agnhost subcommands, an nginx-style server, pause), run by
//! `svcnet builtin <name> ...` as real processes inside the pod's namespaces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Errors of the built-in programs (printed to the container log before exiting).
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("unknown built-in {0:?} (known: agnhost, nginx, pause)")]
    Unknown(String),
    #[error(
        "unknown agnhost subcommand {0:?} (built in: serve-hostname, netexec, pause, port-forward-tester)"
    )]
    UnknownSubcommand(String),
    #[error("{0}")]
    Usage(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Exit with this code (a program asked to, e.g. netexec `/exit`).
    #[error("exit {0}")]
    Exit(i32),
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Runs a built-in: `argv[0]` is the image name (`agnhost`, `nginx`, `pause`).
pub async fn run(argv: Vec<String>) -> Result<(), BuiltinError> {
    let name = argv.first().cloned().unwrap_or_default();
    match name.as_str() {
        "agnhost" => {
            let sub = argv.get(1).cloned().unwrap_or_default();
            let rest = argv.iter().skip(1).cloned();
            match sub.as_str() {
                "serve-hostname" => serve_hostname(parse(rest)?).await,
                "netexec" => netexec(parse(rest)?).await,
                "pause" => pause().await,
                "port-forward-tester" => port_forward_tester().await,
                other => Err(BuiltinError::UnknownSubcommand(other.into())),
            }
        }
        "nginx" => nginx(parse(argv.into_iter())?).await,
        "pause" => pause().await,
        other => Err(BuiltinError::Unknown(other.into())),
    }
}

fn parse<T: Parser>(args: impl Iterator<Item = String>) -> Result<T, BuiltinError> {
    T::try_parse_from(args).map_err(|e| BuiltinError::Usage(e.to_string()))
}

async fn listen_tcp(addr: &str) -> Result<TcpListener, BuiltinError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuiltinError::Listen {
            addr: addr.into(),
            source,
        })
}

async fn listen_udp(addr: &str) -> Result<UdpSocket, BuiltinError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| BuiltinError::Listen {
            addr: addr.into(),
            source,
        })
}

/// Waits for SIGTERM (pause exits 0 on it, as upstream's pause does).
async fn pause() -> Result<(), BuiltinError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| BuiltinError::Io {
            context: "installing the SIGTERM handler",
            source,
        })?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|source| BuiltinError::Io {
            context: "installing the SIGINT handler",
            source,
        })?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    println!("Shutting down, got signal");
    Ok(())
}

#[derive(Debug, Parser)]
#[command(name = "serve-hostname")]
struct ServeHostname {
    #[arg(long, default_value_t = 9376)]
    port: u16,
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    tcp: bool,
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    udp: bool,
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    http: bool,
    /// Close the connection after every HTTP request.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    close: bool,
}

async fn serve_hostname(a: ServeHostname) -> Result<(), BuiltinError> {
    if a.tcp && a.http {
        return Err(BuiltinError::Usage(
            "Can't run both TCP and HTTP servers".into(),
        ));
    }
    let host = hostname();
    let addr = format!("0.0.0.0:{}", a.port);
    let mut tasks = tokio::task::JoinSet::new();
    if a.udp {
        let sock = listen_udp(&addr).await?;
        let host = host.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok((_, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(host.as_bytes(), from).await;
            }
        });
    }
    if a.tcp {
        let l = listen_tcp(&addr).await?;
        let host = host.clone();
        tasks.spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(host.as_bytes()).await;
            }
        });
    }
    if a.http {
        let l = listen_tcp(&addr).await?;
        let close = a.close;
        tasks.spawn(async move {
            http_serve(l, close, move |_req| Response::text(200, hostname())).await
        });
    }
    println!("Serving on port {}.", a.port);
    pause_or_join(tasks).await
}

async fn pause_or_join(mut tasks: tokio::task::JoinSet<()>) -> Result<(), BuiltinError> {
    tokio::select! {
        r = pause() => r,
        _ = tasks.join_next() => Ok(()),
    }
}

#[derive(Debug, Parser)]
#[command(name = "nginx")]
struct Nginx {
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Accepted and ignored (`nginx -g 'daemon off;'`).
    #[arg(short = 'g')]
    global: Option<String>,
}

async fn nginx(a: Nginx) -> Result<(), BuiltinError> {
    let l = listen_tcp(&format!("0.0.0.0:{}", a.port)).await?;
    println!(
        "nginx (svcnet built-in) serving the pod name on port {}",
        a.port
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        http_serve(l, false, |_req| {
            Response::text(200, format!("{}\n", hostname()))
        })
        .await
    });
    pause_or_join(tasks).await
}

#[derive(Debug, Parser)]
#[command(name = "netexec")]
struct Netexec {
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// -1 disables the UDP server.
    #[arg(long, default_value_t = 8081, allow_negative_numbers = true)]
    udp_port: i32,
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    sctp_port: i32,
    #[arg(long, default_value_t = 0)]
    delay_shutdown: u64,
}

async fn netexec(a: Netexec) -> Result<(), BuiltinError> {
    let l = listen_tcp(&format!("0.0.0.0:{}", a.http_port)).await?;
    let mut tasks = tokio::task::JoinSet::new();
    if a.udp_port > 0 {
        let sock = listen_udp(&format!("0.0.0.0:{}", a.udp_port)).await?;
        tasks.spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let msg = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                let reply = udp_reply(&msg, from);
                let _ = sock.send_to(reply.as_bytes(), from).await;
            }
        });
    }
    println!("Started HTTP server on port {}", a.http_port);
    tasks.spawn(async move { http_serve(l, false, netexec_handler).await });
    pause_or_join(tasks).await
}

fn udp_reply(msg: &str, from: SocketAddr) -> String {
    let (cmd, rest) = msg.split_once(' ').unwrap_or((msg, ""));
    match cmd {
        "hostname" | "hostName" => hostname(),
        "echo" => rest.to_string(),
        "clientip" => from.to_string(),
        _ => String::new(),
    }
}

/// A parsed HTTP request (what the built-ins look at).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub peer: Option<SocketAddr>,
}

/// An HTTP response; `exit` ends the process after sending it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub exit: Option<i32>,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            exit: None,
        }
    }
    fn json(v: serde_json::Value) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            exit: None,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        412 => "Precondition Failed",
        _ => "Error",
    }
}

/// Percent-decoding for query strings (`+` is a space).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the request line's target into path and query.
pub fn parse_target(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    (path.to_string(), query)
}

/// The netexec HTTP endpoints, as agnhost documents them.
pub fn netexec_handler(req: Request) -> Response {
    let q = |k: &str| req.query.get(k).cloned().unwrap_or_default();
    match req.path.as_str() {
        "/" => Response::text(200, format!("NOW: {}", k8s_openapi::jiff::Timestamp::now())),
        "/clientip" => Response::text(200, req.peer.map(|p| p.to_string()).unwrap_or_default()),
        "/echo" => Response::text(200, q("msg")),
        "/header" => Response::text(
            200,
            req.headers
                .get(&q("key").to_ascii_lowercase())
                .cloned()
                .unwrap_or_default(),
        ),
        "/hostname" | "/hostName" => Response::text(200, hostname()),
        "/healthz" | "/readyz" => Response::text(200, ""),
        "/exit" => {
            let code = q("code").parse().unwrap_or(0);
            let mut r = Response::text(200, "");
            r.exit = Some(code);
            r
        }
        "/shell" => {
            let cmd = q("cmd");
            match std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .output()
            {
                Ok(o) => {
                    let mut out = serde_json::json!({
                        "output": String::from_utf8_lossy(&o.stdout),
                    });
                    if !o.status.success() {
                        out["error"] = serde_json::json!(format!(
                            "exit status {}",
                            o.status.code().unwrap_or(-1)
                        ));
                    }
                    Response::json(out)
                }
                Err(e) => Response::json(serde_json::json!({"error": e.to_string()})),
            }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

async fn read_request(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    peer: Option<SocketAddr>,
) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let (path, query) = parse_target(parts.next()?);
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: u64 = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Bodies are not used; drain them so keep-alive stays in sync.
    let mut sink = tokio::io::sink();
    tokio::io::copy(&mut (&mut *r).take(len), &mut sink)
        .await
        .ok()?;
    Some(Request {
        method,
        path,
        query,
        headers,
        peer,
    })
}

/// A small HTTP/1.1 server: keep-alive unless the client or `close` says otherwise.
async fn http_serve<F>(l: TcpListener, close: bool, handler: F)
where
    F: Fn(Request) -> Response + Send + Sync + Copy + 'static,
{
    while let Ok((s, peer)) = l.accept().await {
        tokio::spawn(async move { http_conn(s, Some(peer), close, handler).await });
    }
}

async fn http_conn<F>(s: TcpStream, peer: Option<SocketAddr>, close: bool, handler: F)
where
    F: Fn(Request) -> Response,
{
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    while let Some(req) = read_request(&mut rd, peer).await {
        let client_close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head_only = req.method == "HEAD";
        let resp = handler(req);
        let done = close || client_close || resp.exit.is_some();
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.body.len(),
            if done { "Connection: close\r\n" } else { "" }
        );
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if !head_only && wr.write_all(&resp.body).await.is_err() {
            return;
        }
        let _ = wr.flush().await;
        if let Some(code) = resp.exit {
            let _ = wr.shutdown().await;
            std::process::exit(code);
        }
        if done {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

fn env_int(name: &str) -> Result<u64, BuiltinError> {
    let s = std::env::var(name).unwrap_or_default();
    s.parse().map_err(|e| {
        println!("Error parsing {name} {s:?}: {e}");
        BuiltinError::Exit(1)
    })
}

/// agnhost port-forward-tester: accept one connection, check the expected client data, send
/// CHUNKS chunks of CHUNK_SIZE `x` bytes CHUNK_INTERVAL ms apart, log each stage on stdout.
async fn port_forward_tester() -> Result<(), BuiltinError> {
    let bind = std::env::var("BIND_ADDRESS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let port = std::env::var("BIND_PORT").unwrap_or_default();
    let l = match TcpListener::bind(format!("{bind}:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            println!("Error listening: {e}");
            return Err(BuiltinError::Exit(1));
        }
    };
    let (mut conn, _) = l.accept().await.map_err(|e| {
        println!("Error accepting connection: {e}");
        BuiltinError::Exit(1)
    })?;
    println!("Accepted client connection");
    let expected = std::env::var("EXPECTED_CLIENT_DATA").unwrap_or_default();
    if !expected.is_empty() {
        let mut buf = vec![0u8; expected.len()];
        let read = conn.read(&mut buf).await.unwrap_or(0);
        if read != expected.len() {
            println!(
                "Expected to read {} bytes from client, but got {read} instead. err=<nil>",
                expected.len()
            );
            return Err(BuiltinError::Exit(2));
        }
        if buf != expected.as_bytes() {
            println!(
                "Expect to read {expected:?}, but got {:?}. err=<nil>",
                String::from_utf8_lossy(&buf)
            );
            return Err(BuiltinError::Exit(3));
        }
        println!("Received expected client data");
    }
    let chunks = env_int("CHUNKS")?;
    let size = env_int("CHUNK_SIZE")? as usize;
    let interval = env_int("CHUNK_INTERVAL")?;
    let data = vec![b'x'; size];
    for i in 0..chunks {
        if let Err(e) = conn.write_all(&data).await {
            println!("Expected to write {size} bytes from client, but wrote 0 instead. err={e}");
            return Err(BuiltinError::Exit(4));
        }
        if i + 1 < chunks {
            tokio::time::sleep(Duration::from_millis(interval)).await;
        }
    }
    println!("Shutting down connection");
    let _ = conn.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(conn);
    println!("Done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request {
        let (path, query) = parse_target(target);
        Request {
            method: "GET".into(),
            path,
            query,
            peer: Some("10.244.1.7:40000".parse().expect("addr")),
            ..Default::default()
        }
    }

    #[test]
    fn netexec_endpoints() {
        let cases = [
            ("/echo?msg=hello%20world", 200, "hello world".to_string()),
            ("/echo?msg=a+b", 200, "a b".to_string()),
            ("/clientip", 200, "10.244.1.7:40000".to_string()),
            ("/hostname", 200, hostname()),
            ("/healthz", 200, String::new()),
            (
                "/shell?cmd=echo%20hi",
                200,
                "{\"output\":\"hi\\n\"}".to_string(),
            ),
            (
                "/shell?cmd=exit%203",
                200,
                "{\"error\":\"exit status 3\",\"output\":\"\"}".to_string(),
            ),
            ("/nope", 404, "404 page not found\n".to_string()),
        ];
        for (target, status, body) in cases {
            let r = netexec_handler(req(target));
            assert_eq!(
                (r.status, String::from_utf8_lossy(&r.body).to_string()),
                (status, body),
                "{target}"
            );
        }
        assert_eq!(netexec_handler(req("/exit?code=7")).exit, Some(7));
    }

    #[test]
    fn url_decoding() {
        for (input, want) in [
            ("a%2Fb", "a/b"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("x+y", "x y"),
            ("%4", "%4"),
        ] {
            assert_eq!(url_decode(input), want, "{input}");
        }
    }

    #[test]
    fn udp_commands() {
        let from: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        assert_eq!(udp_reply("echo hi there", from), "hi there");
        assert_eq!(udp_reply("clientip", from), "10.0.0.1:5");
        assert_eq!(udp_reply("hostname", from), hostname());
        assert_eq!(udp_reply("bogus", from), "");
    }

    #[tokio::test]
    async fn http_server_keeps_alive_and_answers() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(http_serve(l, false, netexec_handler));
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /echo?msg=one HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?msg=two HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\none\
             HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo"
        );
    }

    #[test]
    fn argument_errors() {
        let r: Result<ServeHostname, _> = parse(
            ["serve-hostname", "--port", "x"]
                .iter()
                .map(|s| s.to_string()),
        );
        let msg = r.expect_err("bad port").to_string();
        assert!(
            msg.contains("invalid value 'x' for '--port <PORT>'"),
            "{msg}"
        );
        let ok: Netexec = parse(
            ["netexec", "--http-port=8080", "--udp-port=-1"]
                .iter()
                .map(|s| s.to_string()),
        )
        .expect("netexec args");
        assert_eq!((ok.http_port, ok.udp_port), (8080, -1));
    }
}

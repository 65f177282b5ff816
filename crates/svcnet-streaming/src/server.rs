//! The agent's streaming HTTP server: routes, bearer-token check, WebSocket and SPDY upgrade negotiation, logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::remotecommand::ExecRequest;
use crate::remotecommand::normal_close;
use crate::runtime::{LogOptions, PodRef, PodRuntime};
use crate::{portforward, remotecommand};

/// WebSocket subprotocols for exec/attach, best first.
pub const EXEC_WS_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// SPDY stream protocols for exec/attach, best first (v5 over SPDY behaves as v4).
pub const EXEC_SPDY_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The WebSocket subprotocol carrying a SPDY port-forward session.
pub const PORTFORWARD_WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY stream protocol of port-forward.
pub const PORTFORWARD_SPDY_PROTOCOL: &str = "portforward.k8s.io";

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Failures of the server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading the listener address: {0}")]
    Listener(#[source] std::io::Error),
}

/// What a request asks for, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Exec { pod: PodRef, container: String },
    Attach { pod: PodRef, container: String },
    PortForward { pod: PodRef },
    Logs { pod: PodRef, container: String },
}

/// Parses kubelet-style paths: `/exec|attach|containerLogs/{ns}/{pod}/{container}`, `/portForward/{ns}/{pod}`.
pub fn route(path: &str) -> Option<Route> {
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let pod = |ns: &str, name: &str| PodRef {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: None,
    };
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        [k, ns, p, c] if k == "exec" => Some(Route::Exec {
            pod: pod(ns, p),
            container: c.clone(),
        }),
        [k, ns, p, c] if k == "attach" => Some(Route::Attach {
            pod: pod(ns, p),
            container: c.clone(),
        }),
        [k, ns, p, c] if k == "containerLogs" => Some(Route::Logs {
            pod: pod(ns, p),
            container: c.clone(),
        }),
        [k, ns, p] if k == "portForward" => Some(Route::PortForward { pod: pod(ns, p) }),
        _ => None,
    }
}

/// Decodes an `application/x-www-form-urlencoded` query.
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    q.iter()
        .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1" | "True" | "TRUE"))
}

fn int(q: &[(String, String)], name: &str) -> Result<Option<u64>, String> {
    match q.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: invalid value {v:?}: must be a non-negative integer")),
    }
}

/// Exec/attach options from the query.
pub fn exec_request(
    pod: PodRef,
    container: String,
    q: &[(String, String)],
    attach: bool,
) -> Result<ExecRequest, String> {
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let r = ExecRequest {
        pod,
        container,
        command: if attach { Vec::new() } else { command },
        stdin: flag(q, "stdin") || flag(q, "input"),
        stdout: flag(q, "stdout") || flag(q, "output"),
        stderr: flag(q, "stderr") || flag(q, "error"),
        tty: flag(q, "tty"),
    };
    if !attach && r.command.is_empty() {
        return Err("you must specify at least 1 command".into());
    }
    if !r.stdin && !r.stdout && !r.stderr {
        return Err("you must specify at least one of stdin, stdout, stderr".into());
    }
    Ok(r)
}

/// Log options from the query.
pub fn log_options(q: &[(String, String)]) -> Result<LogOptions, String> {
    Ok(LogOptions {
        follow: flag(q, "follow"),
        tail_lines: int(q, "tailLines")?,
        limit_bytes: int(q, "limitBytes")?,
        since_time: int(q, "sinceSeconds")?
            .map(|s| std::time::SystemTime::now() - Duration::from_secs(s)),
        timestamps: flag(q, "timestamps"),
        previous: flag(q, "previous"),
    })
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A Status error response, as kubelet and the API server write them.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// All values of a possibly repeated, comma-separated header.
fn header_list(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first protocol the client offers that we support.
pub fn negotiate(client: &[String], server: &[&str]) -> Option<String> {
    client
        .iter()
        .find(|c| server.contains(&c.as_str()))
        .cloned()
}

fn upgrade_kind(h: &HeaderMap) -> Option<String> {
    let conn = header_list(h, "connection");
    if !conn.iter().any(|c| c.eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
}

fn switching(headers: &[(&'static str, String)]) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(*k, v);
        }
    }
    r
}

enum Upgrade {
    WebSocket { protocol: String },
    Spdy,
}

/// Checks the upgrade request and builds the 101 answer.
fn handshake(
    req: &Request<Incoming>,
    ws_protocols: &[&str],
    spdy_protocols: &[&str],
) -> Result<(Upgrade, Response<Body>), Box<Response<Body>>> {
    let h = req.headers();
    match upgrade_kind(h).as_deref() {
        Some("websocket") => {
            let key = h.get("sec-websocket-key").ok_or_else(|| {
                Box::new(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "missing Sec-WebSocket-Key",
                ))
            })?;
            let offered = header_list(h, "sec-websocket-protocol");
            let Some(p) = negotiate(&offered, ws_protocols) else {
                return Err(Box::new(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!(
                        "unable to negotiate a WebSocket subprotocol: client offered {offered:?}, server supports {ws_protocols:?}"
                    ),
                )));
            };
            let accept = derive_accept_key(key.as_bytes());
            let resp = switching(&[
                ("upgrade", "websocket".into()),
                ("connection", "Upgrade".into()),
                ("sec-websocket-accept", accept),
                ("sec-websocket-protocol", p.clone()),
            ]);
            Ok((Upgrade::WebSocket { protocol: p }, resp))
        }
        Some("spdy/3.1") => {
            let offered = header_list(h, "x-stream-protocol-version");
            let Some(p) = negotiate(&offered, spdy_protocols) else {
                return Err(Box::new(status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {spdy_protocols:?}"
                    ),
                )));
            };
            let resp = switching(&[
                ("upgrade", "SPDY/3.1".into()),
                ("connection", "Upgrade".into()),
                ("x-stream-protocol-version", p.clone()),
            ]);
            Ok((Upgrade::Spdy, resp))
        }
        _ => Err(Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required",
        ))),
    }
}

/// Bridges a WebSocket carrying a raw byte stream (binary messages split anywhere) to a duplex pipe.
fn ws_bytes<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Close(_) = m {
                break;
            }
            if let Message::Binary(b) = m
                && wr.write_all(&b).await.is_err()
            {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(Some(normal_close()))).await;
        let _ = sink.close().await;
    });
    theirs
}

async fn ws_stream(
    up: hyper::upgrade::Upgraded,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await
}

async fn handle(
    req: Request<Incoming>,
    runtime: Arc<dyn PodRuntime>,
    token: Arc<str>,
) -> Response<Body> {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(s, t)| {
            s.eq_ignore_ascii_case("bearer")
                && constant_time_eq(t.trim().as_bytes(), token.as_bytes())
        });
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let Some(r) = route(req.uri().path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no streaming endpoint at {}", req.uri().path()),
        );
    };
    let q = parse_query(req.uri().query());
    match r {
        Route::Exec { pod, container } | Route::Attach { pod, container } => {
            let attach = req.uri().path().starts_with("/attach/");
            let er = match exec_request(pod, container, &q, attach) {
                Ok(e) => e,
                Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
            };
            let (kind, resp) = match handshake(&req, EXEC_WS_PROTOCOLS, EXEC_SPDY_PROTOCOLS) {
                Ok(x) => x,
                Err(r) => return *r,
            };
            let on = hyper::upgrade::on(req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                match kind {
                    Upgrade::WebSocket { protocol } => {
                        let v5 = protocol.starts_with("v5.");
                        remotecommand::serve_websocket(
                            ws_stream(up).await,
                            v5,
                            runtime,
                            er,
                            attach,
                        )
                        .await;
                    }
                    Upgrade::Spdy => {
                        if let Err(e) =
                            remotecommand::serve_spdy(TokioIo::new(up), runtime, er, attach).await
                        {
                            tracing::debug!(error = %e, "exec session");
                        }
                    }
                }
            });
            resp
        }
        Route::PortForward { pod } => {
            let (kind, resp) = match handshake(
                &req,
                &[PORTFORWARD_WS_PROTOCOL],
                &[PORTFORWARD_SPDY_PROTOCOL],
            ) {
                Ok(x) => x,
                Err(r) => return *r,
            };
            let on = hyper::upgrade::on(req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                match kind {
                    Upgrade::WebSocket { .. } => {
                        let pipe = ws_bytes(ws_stream(up).await);
                        portforward::serve_spdy(pipe, runtime, pod).await;
                    }
                    Upgrade::Spdy => portforward::serve_spdy(TokioIo::new(up), runtime, pod).await,
                }
            });
            resp
        }
        Route::Logs { pod, container } => {
            let opts = match log_options(&q) {
                Ok(o) => o,
                Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
            };
            let container = Some(container.as_str()).filter(|c| !c.is_empty());
            match runtime.logs(&pod, container, opts).await {
                Ok(reader) => {
                    let stream = futures::stream::unfold(reader, |mut r| async move {
                        let mut buf = vec![0u8; 32 * 1024];
                        match r.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(n) => {
                                buf.truncate(n);
                                Some((Ok(BodyFrame::data(Bytes::from(buf))), r))
                            }
                            Err(e) => Some((Err(e), r)),
                        }
                    });
                    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    resp
                }
                Err(e) => runtime_error(&e),
            }
        }
    }
}

fn runtime_error(e: &crate::runtime::RuntimeError) -> Response<Body> {
    match e.http_code() {
        404 => status(StatusCode::NOT_FOUND, "NotFound", &e.to_string()),
        400 => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        _ => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the streaming endpoints on `listener` until the task is dropped.
/// Every request must carry `Authorization: Bearer <auth_token>`.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<dyn PodRuntime>,
    auth_token: String,
) -> Result<(), ServeError> {
    let token: Arc<str> = auth_token.into();
    listener.local_addr().map_err(ServeError::Listener)?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "streaming server accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let runtime = runtime.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let runtime = runtime.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(handle(req, runtime, token).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "streaming connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, n: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: n.into(),
            uid: None,
        }
    }

    #[test]
    fn routes() {
        let cases: Vec<(&str, Option<Route>)> = vec![
            (
                "/exec/default/web/main",
                Some(Route::Exec {
                    pod: pod("default", "web"),
                    container: "main".into(),
                }),
            ),
            (
                "/attach/ns/p/c",
                Some(Route::Attach {
                    pod: pod("ns", "p"),
                    container: "c".into(),
                }),
            ),
            (
                "/portForward/ns/p",
                Some(Route::PortForward {
                    pod: pod("ns", "p"),
                }),
            ),
            (
                "/containerLogs/ns/p/c%2Dx",
                Some(Route::Logs {
                    pod: pod("ns", "p"),
                    container: "c-x".into(),
                }),
            ),
            ("/exec/ns/p", None),
            ("/portForward/ns//", None),
            ("/logs/ns/p/c", None),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }

    #[test]
    fn exec_queries() {
        let q = parse_query(Some(
            "command=sh&command=-c&command=echo+a%20b%2B&container=c&stdin=true&stdout=true&tty=true",
        ));
        let r = exec_request(pod("d", "p"), "c".into(), &q, false).expect("valid");
        assert_eq!(r.command, vec!["sh", "-c", "echo a b+"]);
        assert!(r.stdin && r.stdout && !r.stderr && r.tty);
        let cases: Vec<(&str, bool, &str)> = vec![
            ("stdout=true", false, "you must specify at least 1 command"),
            (
                "command=ls",
                false,
                "you must specify at least one of stdin, stdout, stderr",
            ),
            (
                "",
                true,
                "you must specify at least one of stdin, stdout, stderr",
            ),
        ];
        for (query, attach, want) in cases {
            let q = parse_query(Some(query));
            assert_eq!(
                exec_request(pod("d", "p"), "c".into(), &q, attach)
                    .err()
                    .as_deref(),
                Some(want),
                "{query}"
            );
        }
    }

    #[test]
    fn log_queries() {
        let o = log_options(&parse_query(Some("follow=true&tailLines=10&timestamps=1")))
            .expect("valid");
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                timestamps: true,
                ..Default::default()
            }
        );
        let since = log_options(&parse_query(Some("sinceSeconds=60")))
            .expect("valid")
            .since_time
            .expect("set");
        let age = std::time::SystemTime::now()
            .duration_since(since)
            .expect("in the past");
        assert!((59..=61).contains(&age.as_secs()), "{age:?}");
        for (q, want) in [
            (
                "tailLines=x",
                "tailLines: invalid value \"x\": must be a non-negative integer",
            ),
            (
                "limitBytes=-1",
                "limitBytes: invalid value \"-1\": must be a non-negative integer",
            ),
        ] {
            assert_eq!(
                log_options(&parse_query(Some(q))).err().as_deref(),
                Some(want),
                "{q}"
            );
        }
    }

    #[test]
    fn protocol_negotiation() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<(Vec<String>, &[&str], Option<&str>)> = vec![
            (
                s(&["v5.channel.k8s.io"]),
                EXEC_WS_PROTOCOLS,
                Some("v5.channel.k8s.io"),
            ),
            (
                s(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
                EXEC_WS_PROTOCOLS,
                Some("v4.channel.k8s.io"),
            ),
            (
                s(&[
                    "v5.channel.k8s.io",
                    "v4.channel.k8s.io",
                    "v3.channel.k8s.io",
                    "v2.channel.k8s.io",
                    "channel.k8s.io",
                ]),
                EXEC_SPDY_PROTOCOLS,
                Some("v5.channel.k8s.io"),
            ),
            (s(&["base64.channel.k8s.io"]), EXEC_WS_PROTOCOLS, None),
            (
                s(&["SPDY/3.1+portforward.k8s.io"]),
                &[PORTFORWARD_WS_PROTOCOL],
                Some("SPDY/3.1+portforward.k8s.io"),
            ),
        ];
        for (client, server, want) in cases {
            assert_eq!(negotiate(&client, server).as_deref(), want, "{client:?}");
        }
    }
}

//! End to end: the real kubectl → svcnet API server (with the agent relay) → `svcnet_streaming::serve` → a fake runtime of local processes and loopback servers.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use svcnet_streaming::runtime::{
    ExecSession, ExitStatus, LogOptions, PodRef, PodRuntime, Reader, Result, RuntimeError,
    TerminalResizer, Writer,
};
use svcnet_testkit::Cluster;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "agent-secret-token";
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Resizer {
    tty: String,
}

impl TerminalResizer for Resizer {
    fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        let st = std::process::Command::new("stty")
            .args([
                "-F",
                &self.tty,
                "cols",
                &width.to_string(),
                "rows",
                &height.to_string(),
            ])
            .status()?;
        if st.success() {
            Ok(())
        } else {
            Err(std::io::Error::other("stty failed"))
        }
    }
}

/// Local processes for exec, loopback ports for port-forward, a file for logs.
#[derive(Debug, Default)]
struct FakeRuntime {
    /// Pod port → real loopback port.
    ports: HashMap<u16, u16>,
    log: PathBuf,
    execs: Mutex<Vec<(String, Vec<String>)>>,
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        context: context.to_string(),
        source,
    }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    async fn exec(
        &self,
        pod: &PodRef,
        container: Option<&str>,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession> {
        if pod.name != "web" {
            return Err(RuntimeError::PodNotFound {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            });
        }
        self.execs
            .lock()
            .unwrap()
            .push((container.unwrap_or("").to_string(), command.clone()));
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..]).kill_on_drop(true);
        if tty {
            let pty = nix::pty::openpty(None, None).map_err(|e| io_err("openpty")(e.into()))?;
            let tty_path = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
            ))
            .map_err(io_err("pty path"))?
            .display()
            .to_string();
            let dup =
                |f: &std::os::fd::OwnedFd| f.try_clone().map(Stdio::from).map_err(io_err("dup"));
            cmd.stdin(dup(&pty.slave)?)
                .stdout(dup(&pty.slave)?)
                .stderr(dup(&pty.slave)?);
            let mut child = cmd.spawn().map_err(io_err("spawn"))?;
            // Only the child may hold the terminal now: its exit must end our reads.
            drop(pty.slave);
            let master = std::fs::File::from(pty.master);
            let writer = tokio::fs::File::from_std(master.try_clone().map_err(io_err("dup"))?);
            let reader = tokio::fs::File::from_std(master);
            return Ok(ExecSession {
                stdin: stdin.then(|| Box::pin(writer) as Writer),
                stdout: Some(Box::pin(reader) as Reader),
                stderr: None,
                resize: Some(Box::new(Resizer { tty: tty_path })),
                wait: Box::pin(async move {
                    child
                        .wait()
                        .await
                        .map(|s| ExitStatus::Code(s.code().unwrap_or(-1)))
                }),
            });
        }
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::BadRequest(format!("exec: {:?}: {e}", command[0])))?;
        Ok(ExecSession {
            stdin: child.stdin.take().map(|w| Box::pin(w) as Writer),
            stdout: child.stdout.take().map(|r| Box::pin(r) as Reader),
            stderr: child.stderr.take().map(|r| Box::pin(r) as Reader),
            resize: None,
            wait: Box::pin(async move {
                child
                    .wait()
                    .await
                    .map(|s| ExitStatus::Code(s.code().unwrap_or(-1)))
            }),
        })
    }

    async fn port_forward(&self, _pod: &PodRef, port: u16) -> Result<TcpStream> {
        let real = self.ports.get(&port).copied().unwrap_or(1);
        TcpStream::connect(("127.0.0.1", real))
            .await
            .map_err(io_err("connect"))
    }

    async fn logs(
        &self,
        _pod: &PodRef,
        _container: Option<&str>,
        opts: LogOptions,
    ) -> Result<Reader> {
        let text = tokio::fs::read(&self.log).await.map_err(io_err("log"))?;
        let start = match opts.tail_lines {
            Some(n) => {
                let lines: Vec<usize> = text
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                let keep = n as usize;
                if lines.len() > keep {
                    lines[lines.len() - keep - 1]
                } else {
                    0
                }
            }
            None => 0,
        };
        let (tx, rx) = tokio::io::duplex(64 * 1024);
        let path = self.log.clone();
        let follow = opts.follow;
        tokio::spawn(async move {
            let mut tx = tx;
            let mut pos = start;
            // Bounded: a follow ends after a minute at most.
            for _ in 0..600 {
                let Ok(data) = tokio::fs::read(&path).await else {
                    return;
                };
                if data.len() > pos {
                    if tx.write_all(&data[pos..]).await.is_err() {
                        return;
                    }
                    pos = data.len();
                }
                if !follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Box::pin(rx) as Reader)
    }
}

/// What the loopback "pod" servers saw.
#[derive(Debug, Default)]
struct Seen {
    received: Mutex<Vec<Vec<u8>>>,
}

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// Sends a fixed text, then closes.
async fn talker_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(server_text().as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn server_text() -> String {
    (0..2000).map(|i| format!("server line {i}\n")).collect()
}

/// Reads until EOF and records what it got, then closes.
async fn listener_server(seen: Arc<Seen>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                seen.received.lock().unwrap().push(got);
            });
        }
    });
    port
}

/// Resets every connection shortly after it was established.
async fn reset_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                #[allow(deprecated)] // a zero linger is the point: close with RST
                let _ = s.set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    port
}

struct Fixture {
    cluster: Cluster,
    runtime: Arc<FakeRuntime>,
    seen: Arc<Seen>,
    _log_dir: tempfile::TempDir,
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeName: node-a
  containers:
  - name: main
    image: agnhost
    ports:
    - {name: echo, containerPort: 5000}
    - {name: talk, containerPort: 6000}
---
apiVersion: v1
kind: Service
metadata:
  name: web-svc
spec:
  selector: {app: web}
  ports:
  - {name: numeric, port: 80, targetPort: 5000}
  - {name: named, port: 81, targetPort: echo}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: agnhost
"#;

async fn setup() -> Fixture {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("main.log");
    std::fs::write(&log, "line 1\nline 2\nline 3\n").unwrap();
    let seen = Arc::new(Seen::default());
    let mut ports = HashMap::new();
    ports.insert(5000, echo_server().await);
    ports.insert(6000, talker_server().await);
    ports.insert(7000, listener_server(seen.clone()).await);
    ports.insert(8000, reset_server().await);
    let runtime = Arc::new(FakeRuntime {
        ports,
        log,
        execs: Mutex::default(),
    });
    let agent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_port = agent.local_addr().unwrap().port();
    tokio::spawn(svcnet_streaming::serve(
        agent,
        runtime.clone(),
        TOKEN.to_string(),
    ));

    let cluster = Cluster::start().await;
    cluster
        .api
        .set_connector(Arc::new(svcnet_apiserver::connect::AgentConnector::new(
            TOKEN,
        )));
    let o = cluster.apply_text(OBJECTS).await;
    assert!(
        o.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let node_status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{agent_port}}}}}}}}}"#
    );
    cluster
        .ok(&[
            "patch",
            "node",
            "node-a",
            "--subresource=status",
            "--type=merge",
            "-p",
            &node_status,
        ])
        .await;
    cluster
        .ok(&[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"10.244.0.5"}}"#,
        ])
        .await;
    Fixture {
        cluster,
        runtime,
        seen,
        _log_dir: log_dir,
    }
}

impl Fixture {
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let home = self.cluster.home();
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = tokio::process::Command::new("kubectl");
        // Flags first: everything after `--` belongs to the remote command.
        cmd.arg(format!("--cache-dir={}", home.join("cache").display()))
            .args(args)
            .env("HOME", &home)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    async fn run(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<Vec<u8>>,
    ) -> std::process::Output {
        let mut cmd = self.command(args, env);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(data) = stdin {
            let mut w = child.stdin.take().unwrap();
            tokio::spawn(async move {
                let _ = w.write_all(&data).await;
                let _ = w.shutdown().await;
            });
        }
        tokio::time::timeout(LIMIT, child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran")
    }
}

const WS: &[(&str, &str)] = &[];
const SPDY: &[(&str, &str)] = &[
    ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
    ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_exit_codes_output_and_errors() {
    let f = setup().await;
    for (name, env) in [("websocket", WS), ("spdy", SPDY)] {
        // (args, exit code, stdout, stderr)
        let cases: Vec<(Vec<&str>, i32, &str, &str)> = vec![
            (
                vec![
                    "exec",
                    "web",
                    "-c",
                    "main",
                    "--",
                    "sh",
                    "-c",
                    "echo out; echo err >&2",
                ],
                0,
                "out\n",
                "err\n",
            ),
            (
                vec!["exec", "web", "-c", "main", "--", "sh", "-c", "exit 3"],
                3,
                "",
                "command terminated with exit code 3\n",
            ),
            (vec!["exec", "web", "--", "true"], 0, "", ""),
            (
                vec!["exec", "web", "-c", "side", "--", "true"],
                1,
                "",
                "Error from server (BadRequest): container side is not valid for pod web\n",
            ),
            (
                vec!["exec", "nope", "--", "true"],
                1,
                "",
                "Error from server (NotFound): pods \"nope\" not found\n",
            ),
        ];
        for (args, code, out, err) in cases {
            let o = f.run(&args, env, None).await;
            assert_eq!(
                (
                    o.status.code(),
                    text(&o.stdout).as_str(),
                    text(&o.stderr).as_str()
                ),
                (Some(code), out, err),
                "{name}: {args:?}"
            );
        }
    }
    let execs = f.runtime.execs.lock().unwrap().clone();
    assert!(execs.iter().all(|(c, _)| c == "main"), "{execs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_stdin_round_trips_one_mebibyte() {
    let f = setup().await;
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (name, env) in [("websocket", WS), ("spdy", SPDY)] {
        let o = f
            .run(&["exec", "-i", "web", "--", "cat"], env, Some(data.clone()))
            .await;
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        assert_eq!(o.stdout.len(), data.len(), "{name}");
        assert!(o.stdout == data, "{name}: bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_tty_gets_terminal_and_size() {
    let f = setup().await;
    for (name, env) in [("websocket", WS), ("spdy", SPDY)] {
        let inner = format!(
            "stty rows 33 cols 111; kubectl --cache-dir={}/cache exec -ti web -- sh -c 'sleep 1; test -t 0 && echo is-a-tty; stty size'",
            f.cluster.home().display()
        );
        let mut cmd = tokio::process::Command::new("script");
        cmd.args(["-qec", &inner, "/dev/null"])
            .env("HOME", f.cluster.home())
            .env("KUBECONFIG", &f.cluster.kubeconfig)
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("script runs");
        // Keep the terminal's input open while the command runs.
        let _stdin = child.stdin.take();
        let o = tokio::time::timeout(LIMIT, child.wait_with_output())
            .await
            .expect("in time")
            .expect("ran");
        let out = text(&o.stdout);
        assert!(
            out.contains("is-a-tty\r\n33 111\r\n"),
            "{name}: {out:?} {}",
            text(&o.stderr)
        );
        assert!(o.status.success(), "{name}: {out:?}");
    }
}

/// A running `kubectl port-forward` and its local ports by remote port.
struct Forwarder {
    child: tokio::process::Child,
    local: HashMap<u16, u16>,
}

async fn port_forward(
    f: &Fixture,
    target: &str,
    remotes: &[&str],
    env: &[(&str, &str)],
) -> Forwarder {
    let mut args = vec!["port-forward", target];
    let specs: Vec<String> = remotes.iter().map(|r| format!(":{r}")).collect();
    args.extend(specs.iter().map(String::as_str));
    let mut child = f
        .command(&args, env)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kubectl runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut local = HashMap::new();
    let want = remotes.len();
    tokio::time::timeout(Duration::from_secs(60), async {
        while local.len() < want {
            let Ok(Some(l)) = lines.next_line().await else {
                break;
            };
            // "Forwarding from 127.0.0.1:43567 -> 5000"
            if let Some(rest) = l.strip_prefix("Forwarding from 127.0.0.1:")
                && let Some((lp, rp)) = rest.split_once(" -> ")
                && let (Ok(lp), Ok(rp)) = (lp.parse::<u16>(), rp.trim().parse::<u16>())
            {
                local.insert(rp, lp);
            }
        }
    })
    .await
    .expect("port-forward started");
    assert_eq!(local.len(), want, "forwarded ports: {local:?}");
    // Keep draining stdout so kubectl never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Forwarder { child, local }
}

fn checksum(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

/// Sends `n` pseudo-random bytes through the echo port and checks they come back.
async fn echo_round_trip(port: u16, n: usize, seed: u32) {
    let data: Vec<u8> = (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the forwarder");
    let (mut r, mut w) = s.into_split();
    let sent = checksum(&data);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.expect("write");
        w.shutdown().await.expect("half-close");
    });
    let mut got = Vec::with_capacity(n);
    let mut chunk = vec![0u8; 65536];
    loop {
        let k = r.read(&mut chunk).await.expect("read back");
        if k == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..k]);
        if std::env::var("PFDEBUG").is_ok() && got.len() % (256 * 1024) < k {
            eprintln!("conn {seed}: {} back", got.len());
        }
    }
    writer.await.unwrap();
    assert_eq!(got.len(), n);
    assert_eq!(checksum(&got), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forward_pod_flows_both_protocols() {
    let f = setup().await;
    for (name, env) in [("websocket", WS), ("spdy", SPDY)] {
        let mut pf = port_forward(&f, "pod/web", &["5000", "6000", "7000", "8000"], env).await;
        let (echo, talk, listen, reset) = (
            pf.local[&5000],
            pf.local[&6000],
            pf.local[&7000],
            pf.local[&8000],
        );
        f.seen.received.lock().unwrap().clear();
        tokio::time::timeout(LIMIT, async {
            echo_round_trip(echo, 100_000, 1).await;
            // Server sends data, then closes.
            let mut s = TcpStream::connect(("127.0.0.1", talk)).await.unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, server_text(), "{name}");
            // Client sends data and disconnects.
            let mut s = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
            s.write_all(b"client data").await.unwrap();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            // Client sends nothing and disconnects.
            let s = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
            drop(s);
            for _ in 0..100 {
                if f.seen.received.lock().unwrap().len() >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut seen = f.seen.received.lock().unwrap().clone();
            seen.sort();
            assert_eq!(seen, vec![b"".to_vec(), b"client data".to_vec()], "{name}");
            // The pod resets a connection; the forwarder serves the next one.
            let mut s = TcpStream::connect(("127.0.0.1", reset)).await.unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            assert!(buf.is_empty(), "{name}");
            echo_round_trip(echo, 10_000, 2).await;
        })
        .await
        .expect("flows finished in time");
        assert!(
            pf.child.try_wait().unwrap().is_none(),
            "{name}: kubectl port-forward exited"
        );
        let _ = pf.child.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forward_twenty_connections_of_ten_mebibytes() {
    let f = setup().await;
    for (name, env) in [("spdy", SPDY), ("websocket", WS)] {
        let mut pf = port_forward(&f, "pod/web", &["5000"], env).await;
        let port = pf.local[&5000];
        let jobs: Vec<_> = (0..20)
            .map(|i| tokio::spawn(echo_round_trip(port, 10 << 20, i)))
            .collect();
        tokio::time::timeout(Duration::from_secs(300), async {
            for j in jobs {
                j.await.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: transfers finished in time"));
        let _ = pf.child.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forward_service_and_deployment() {
    let f = setup().await;
    // (target, remote spec, the pod port kubectl must pick)
    let cases = [
        ("svc/web-svc", "80", 5000u16),
        ("svc/web-svc", "81", 5000),
        ("deploy/web", "5000", 5000),
    ];
    for (name, env) in [("websocket", WS), ("spdy", SPDY)] {
        for (target, remote, pod_port) in cases {
            let mut args = vec!["port-forward", target];
            let spec = format!(":{remote}");
            args.push(&spec);
            let mut child = f.command(&args, env).spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("started")
                .unwrap()
                .unwrap_or_default();
            let rest = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .unwrap_or_else(|| panic!("{name} {target}: {line:?}"));
            let (lp, rp) = rest.split_once(" -> ").unwrap();
            assert_eq!(rp, pod_port.to_string(), "{name} {target} {remote}");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            tokio::time::timeout(LIMIT, echo_round_trip(lp.parse().unwrap(), 50_000, 3))
                .await
                .expect("in time");
            let _ = child.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_and_logs_follow() {
    let f = setup().await;
    assert_eq!(
        f.cluster.ok(&["logs", "web"]).await,
        "line 1\nline 2\nline 3\n"
    );
    assert_eq!(f.cluster.ok(&["logs", "web", "--tail=1"]).await, "line 3\n");
    // kubectl checks the container name itself before asking.
    assert_eq!(
        f.cluster.fails(&["logs", "web", "-c", "side"]).await,
        "error: container side is not valid for pod web\n"
    );
    let mut child = f.command(&["logs", "-f", "web"], WS).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log = f.runtime.log.clone();
    let writer = tokio::spawn(async move {
        for i in 4..=8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut fh = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .await
                .unwrap();
            fh.write_all(format!("line {i}\n").as_bytes())
                .await
                .unwrap();
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while got.len() < 8 {
            match lines.next_line().await {
                Ok(Some(l)) => got.push(l),
                _ => break,
            }
        }
    })
    .await
    .expect("followed lines arrived");
    writer.await.unwrap();
    assert_eq!(
        got,
        (1..=8).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "logs -f keeps following"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_requests_without_the_token() {
    let runtime = Arc::new(FakeRuntime::default());
    let agent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = agent.local_addr().unwrap().port();
    tokio::spawn(svcnet_streaming::serve(agent, runtime, TOKEN.to_string()));
    let cases = [
        ("", "401", r#""message":"Unauthorized""#),
        (
            "Authorization: Bearer wrong\r\n",
            "401",
            r#""reason":"Unauthorized""#,
        ),
        (
            "Authorization: Bearer agent-secret-token\r\n",
            "400",
            r#""message":"you must specify at least one of stdin, stdout, stderr""#,
        ),
    ];
    for (auth, code, body) in cases {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let req =
            format!("GET /exec/default/web/main?command=ls HTTP/1.0\r\nHost: x\r\n{auth}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
            .await
            .unwrap()
            .unwrap();
        assert!(resp.starts_with(&format!("HTTP/1.0 {code} ")), "{resp}");
        assert!(resp.contains(body), "{resp}");
    }
}

//! The remotecommand protocol (exec/attach) over WebSocket channels (v4/v5) and SPDY streams (v4).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::runtime::{ExitStatus, PodRef, PodRuntime, RuntimeError};
use crate::session::{IncomingStream, Session, StreamWriter};

/// WebSocket channel numbers (first byte of every binary message).
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
    /// v5: `[255, n]` closes channel n.
    pub const CLOSE: u8 = 255;
}

/// An exec (with a command) or attach (command empty) request, from the URL and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub pod: PodRef,
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Terminal size as kubectl sends it on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How a session ended, before it becomes a Status.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    NotStarted(RuntimeError),
    WaitFailed(std::io::Error),
}

/// How long a SPDY client has to open its streams.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// Errors while setting up a session.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCommandError {
    #[error("timed out waiting for the client to create the {0} stream")]
    StreamTimeout(&'static str),
    #[error("the client closed the connection before creating its streams")]
    NoStreams,
}

/// The Status written on the error channel when the command ended.
pub fn exit_status(command: &[String], outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Exited(s) if s.code() == 0 => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(s) => {
            let code = s.code();
            json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
        Outcome::NotStarted(e) => internal_error(&e.to_string()),
        Outcome::WaitFailed(e) => internal_error(&format!("waiting for the command: {e}")),
    }
}

/// Status for a failure that is not the command's exit code.
pub fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// Where one output of the process goes.
#[derive(Debug, Clone)]
enum Out {
    Ws {
        tx: mpsc::Sender<Message>,
        channel: u8,
    },
    Spdy(StreamWriter),
}

impl Out {
    async fn send(&self, data: Bytes) -> bool {
        match self {
            Out::Ws { tx, channel } => {
                let mut m = BytesMut::with_capacity(data.len() + 1);
                m.put_u8(*channel);
                m.extend_from_slice(&data);
                tx.send(Message::Binary(m.freeze())).await.is_ok()
            }
            Out::Spdy(w) => w.send(data).await.is_ok(),
        }
    }

    async fn finish(&self) {
        if let Out::Spdy(w) = self {
            let _ = w.finish().await;
        }
    }
}

/// The client's side of a session, transport-independent.
#[derive(Debug, Default)]
struct Wiring {
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<Out>,
    stderr: Option<Out>,
    resize: Option<mpsc::Receiver<TerminalSize>>,
}

async fn copy_out(mut from: crate::runtime::Reader, to: Out) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            // A pty master reports EIO once the terminal is gone: that is EOF.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !to.send(Bytes::copy_from_slice(&buf[..n])).await {
                    break;
                }
            }
        }
    }
    to.finish().await;
}

async fn copy_in(mut from: mpsc::Receiver<Bytes>, to: Option<crate::runtime::Writer>) {
    let Some(mut to) = to else {
        while from.recv().await.is_some() {}
        return;
    };
    while let Some(b) = from.recv().await {
        if to.write_all(&b).await.is_err() {
            return;
        }
    }
    // The client closed stdin: the process sees EOF.
    let _ = to.shutdown().await;
}

/// Runs the command with the client's streams; returns the Status for the error channel.
async fn run(runtime: Arc<dyn PodRuntime>, req: ExecRequest, attach: bool, w: Wiring) -> Value {
    let command = req.command.clone();
    let container = Some(req.container.as_str()).filter(|c| !c.is_empty());
    let started = if attach {
        runtime
            .attach(&req.pod, container, req.stdin, req.tty)
            .await
    } else {
        runtime
            .exec(&req.pod, container, req.command.clone(), req.stdin, req.tty)
            .await
    };
    let mut p = match started {
        Ok(p) => p,
        Err(e) => return exit_status(&command, &Outcome::NotStarted(e)),
    };
    let stdin_task = w.stdin.map(|rx| tokio::spawn(copy_in(rx, p.stdin.take())));
    let resize_task = match (w.resize, p.resize.take()) {
        (Some(mut rx), Some(r)) => Some(tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if let Err(e) = r.resize(s.width, s.height) {
                    tracing::debug!(error = %e, "terminal resize");
                }
            }
        })),
        _ => None,
    };
    let mut outs = Vec::new();
    for (stream, to) in [(p.stdout.take(), w.stdout), (p.stderr.take(), w.stderr)] {
        match (stream, to) {
            (Some(s), Some(to)) => outs.push(tokio::spawn(copy_out(s, to))),
            (Some(mut s), None) => outs.push(tokio::spawn(async move {
                // Not asked for: drain it so the process never blocks on a full pipe.
                let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
            })),
            (None, Some(to)) => to.finish().await,
            (None, None) => {}
        }
    }
    for o in outs {
        let _ = o.await;
    }
    let outcome = match p.wait.await {
        Ok(s) => Outcome::Exited(s),
        Err(e) => Outcome::WaitFailed(e),
    };
    for t in [stdin_task, resize_task].into_iter().flatten() {
        t.abort();
    }
    exit_status(&command, &outcome)
}

/// Serves exec/attach on an upgraded WebSocket (`v4.channel.k8s.io` or `v5.channel.k8s.io`).
pub async fn serve_websocket<S>(
    ws: WebSocketStream<S>,
    v5: bool,
    runtime: Arc<dyn PodRuntime>,
    req: ExecRequest,
    attach: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(4);
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                // After our close, wait a little for the client's close reply.
                _ = async { let _ = done_rx.wait_for(|d| *d).await; tokio::time::sleep(Duration::from_secs(5)).await } => break,
            };
            let Some(Ok(msg)) = msg else { break };
            let Message::Binary(b) = msg else { continue };
            let Some((&ch, data)) = b.split_first() else {
                continue;
            };
            match ch {
                channel::STDIN => {
                    if let Some(t) = &stdin_tx
                        && !data.is_empty()
                        && t.send(b.slice(1..)).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                channel::RESIZE => {
                    if let Ok(s) = serde_json::from_slice::<TerminalSize>(data) {
                        let _ = resize_tx.send(s).await;
                    }
                }
                channel::CLOSE if v5 && data.first() == Some(&channel::STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let wiring = Wiring {
        stdin: req.stdin.then_some(stdin_rx),
        stdout: req.stdout.then(|| Out::Ws {
            tx: tx.clone(),
            channel: channel::STDOUT,
        }),
        stderr: (req.stderr && !req.tty).then(|| Out::Ws {
            tx: tx.clone(),
            channel: channel::STDERR,
        }),
        resize: req.tty.then_some(resize_rx),
    };
    let status = run(runtime, req, attach, wiring).await;
    let mut m = vec![channel::ERROR];
    m.extend_from_slice(status.to_string().as_bytes());
    let _ = tx.send(Message::Binary(m.into())).await;
    let _ = tx.send(Message::Close(Some(normal_close()))).await;
    drop(tx);
    let _ = writer.await;
    let _ = done_tx.send(true);
    let _ = reader.await;
}

/// A close frame with status 1000: client-go reads that as a clean EOF, 1005 as an error.
pub(crate) fn normal_close() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }
}

/// Parses concatenated JSON terminal sizes from a SPDY resize stream.
fn resize_pump(mut data: mpsc::Receiver<Bytes>) -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(b) = data.recv().await {
            buf.extend_from_slice(&b);
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
            let mut used = 0;
            while let Some(Ok(s)) = it.next() {
                used = it.byte_offset();
                if tx.send(s).await.is_err() {
                    return;
                }
            }
            buf.drain(..used);
            if buf.len() > 4096 {
                buf.clear();
            }
        }
    });
    rx
}

/// Serves exec/attach on an upgraded SPDY/3.1 connection (`v4.channel.k8s.io` semantics).
pub async fn serve_spdy<T>(
    io: T,
    runtime: Arc<dyn PodRuntime>,
    req: ExecRequest,
    attach: bool,
) -> Result<(), RemoteCommandError>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut accept) = Session::start(io);
    let mut want: Vec<&'static str> = vec!["error"];
    if req.stdin {
        want.push("stdin");
    }
    if req.stdout {
        want.push("stdout");
    }
    if req.stderr && !req.tty {
        want.push("stderr");
    }
    if req.tty {
        want.push("resize");
    }
    let mut got: Vec<(&'static str, IncomingStream)> = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_WAIT;
    while got.len() < want.len() {
        let missing = want
            .iter()
            .find(|w| !got.iter().any(|(g, _)| g == *w))
            .copied()
            .unwrap_or("error");
        let s = match tokio::time::timeout_at(deadline, accept.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                session.close().await;
                return Err(RemoteCommandError::NoStreams);
            }
            Err(_) => {
                session.close().await;
                return Err(RemoteCommandError::StreamTimeout(missing));
            }
        };
        let kind = s.header("streamtype").unwrap_or("");
        match want.iter().find(|w| **w == kind) {
            Some(k) if !got.iter().any(|(g, _)| g == k) => got.push((k, s)),
            _ => {
                let _ = s.writer.reset(crate::spdy::status::PROTOCOL_ERROR).await;
            }
        }
    }
    let mut take = |k: &str| {
        got.iter()
            .position(|(g, _)| *g == k)
            .map(|i| got.swap_remove(i).1)
    };
    let error = take("error");
    let wiring = Wiring {
        stdin: take("stdin").map(|s| s.data),
        stdout: take("stdout").map(|s| Out::Spdy(s.writer)),
        stderr: take("stderr").map(|s| Out::Spdy(s.writer)),
        resize: take("resize").map(|s| resize_pump(s.data)),
    };
    let status = run(runtime, req, attach, wiring).await;
    if let Some(e) = error {
        let _ = e.writer.send(Bytes::from(status.to_string())).await;
        let _ = e.writer.finish().await;
    }
    session.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        let cmd: Vec<String> = vec!["sh".into(), "-c".into(), "exit 3".into()];
        let cases: Vec<(Outcome, &str)> = vec![
            (
                Outcome::Exited(ExitStatus::Code(0)),
                r#"{"metadata":{},"status":"Success"}"#,
            ),
            (
                Outcome::Exited(ExitStatus::Signal(9)),
                r#"{"details":{"causes":[{"message":"137","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 137","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}"#,
            ),
            (
                Outcome::Exited(ExitStatus::Code(3)),
                r#"{"details":{"causes":[{"message":"3","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}"#,
            ),
            (
                Outcome::NotStarted(RuntimeError::BadRequest(
                    "exec: \"nope\": executable file not found in $PATH".into(),
                )),
                r#"{"code":500,"details":{"causes":[{"message":"exec: \"nope\": executable file not found in $PATH"}]},"message":"Internal error occurred: exec: \"nope\": executable file not found in $PATH","metadata":{},"reason":"InternalError","status":"Failure"}"#,
            ),
        ];
        for (r, want) in cases {
            assert_eq!(exit_status(&cmd, &r).to_string(), want);
        }
    }

    #[tokio::test]
    async fn resize_stream_parses_split_json() {
        let (tx, rx) = mpsc::channel(8);
        let mut out = resize_pump(rx);
        for part in [
            &b"{\"Width\":80,\"Hei"[..],
            b"ght\":24}{\"Width\":1",
            b"00,\"Height\":30}",
        ] {
            tx.send(Bytes::copy_from_slice(part)).await.unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(s) = out.recv().await {
            got.push(s);
        }
        assert_eq!(
            got,
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 30
                }
            ]
        );
    }
}

//! The port-forward protocol (`portforward.k8s.io`): pairs of error and data streams per connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::runtime::{PodRef, PodRuntime};
use crate::session::{IncomingStream, Session};

/// Why a stream pair could not be forwarded; the text goes on the error stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortForwardError {
    #[error("invalid port {0:?}: must be a number between 1 and 65535")]
    BadPort(String),
    #[error("missing header {0:?}")]
    MissingHeader(&'static str),
    #[error("invalid stream type {0:?}")]
    BadStreamType(String),
}

/// What one SYN_STREAM of a port-forward session asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub error: bool,
    pub port: u16,
    pub request_id: String,
}

/// Reads `streamtype`, `port` and `requestid` from a stream's headers.
pub fn parse_stream(headers: &crate::spdy::Headers) -> Result<StreamRequest, PortForwardError> {
    let get =
        |n: &'static str| crate::spdy::header(headers, n).ok_or(PortForwardError::MissingHeader(n));
    let error = match get("streamtype")? {
        "error" => true,
        "data" => false,
        other => return Err(PortForwardError::BadStreamType(other.to_string())),
    };
    let port = get("port")?;
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(PortForwardError::BadPort(port.to_string())),
    };
    // Old clients did not send a request ID; they open error then data streams back to back.
    let request_id = get("requestid").unwrap_or("").to_string();
    Ok(StreamRequest {
        error,
        port,
        request_id,
    })
}

#[derive(Default)]
struct Pending {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
}

/// Serves port-forward on a SPDY session until the client closes it.
pub async fn serve_spdy<T>(io: T, runtime: Arc<dyn PodRuntime>, pod: PodRef)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut accept) = Session::start(io);
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut legacy_seq = 0u64;
    while let Some(s) = accept.recv().await {
        let req = match parse_stream(&s.headers) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward stream refused");
                let _ = s.writer.reset(crate::spdy::status::PROTOCOL_ERROR).await;
                continue;
            }
        };
        let key = if req.request_id.is_empty() {
            if req.error {
                legacy_seq += 1;
            }
            format!("legacy-{legacy_seq}")
        } else {
            req.request_id.clone()
        };
        let p = pending.entry(key.clone()).or_default();
        if req.error {
            p.error = Some(s);
        } else {
            p.data = Some(s);
        }
        if p.error.is_some()
            && p.data.is_some()
            && let Some(Pending {
                error: Some(e),
                data: Some(d),
            }) = pending.remove(&key)
        {
            tokio::spawn(forward(runtime.clone(), pod.clone(), req.port, e, d));
        }
    }
    session.close().await;
}

/// Copies one forwarded connection between the data stream and the pod.
async fn forward(
    runtime: Arc<dyn PodRuntime>,
    pod: PodRef,
    port: u16,
    error: IncomingStream,
    data: IncomingStream,
) {
    let IncomingStream {
        data: mut from_client,
        writer,
        reset,
        ..
    } = data;
    let conn = match runtime.port_forward(&pod, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {}: {e}", pod.name);
            let _ = error.writer.send(Bytes::from(msg)).await;
            let _ = error.writer.finish().await;
            let _ = writer.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    let up = async {
        while let Some(b) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        // kubectl's local client half-closed: pass the FIN on to the pod.
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if writer
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    // A reset from the pod ends this connection only; the session goes on.
                    tracing::debug!(error = %e, port, "port-forward connection to the pod failed");
                    break;
                }
            }
        }
        let _ = writer.finish().await;
    };
    let both = async { tokio::join!(up, down) };
    tokio::select! {
        _ = both => {}
        _ = crate::session::peer_reset(reset) => {}
    }
    let _ = error.writer.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> crate::spdy::Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn stream_headers() {
        let cases: Vec<(
            crate::spdy::Headers,
            Result<StreamRequest, PortForwardError>,
        )> = vec![
            (
                h(&[("streamtype", "data"), ("port", "5000"), ("requestid", "3")]),
                Ok(StreamRequest {
                    error: false,
                    port: 5000,
                    request_id: "3".into(),
                }),
            ),
            (
                h(&[("streamtype", "error"), ("port", "80")]),
                Ok(StreamRequest {
                    error: true,
                    port: 80,
                    request_id: "".into(),
                }),
            ),
            (
                h(&[("streamtype", "data"), ("port", "0")]),
                Err(PortForwardError::BadPort("0".into())),
            ),
            (
                h(&[("streamtype", "data"), ("port", "http")]),
                Err(PortForwardError::BadPort("http".into())),
            ),
            (
                h(&[("streamtype", "data")]),
                Err(PortForwardError::MissingHeader("port")),
            ),
            (
                h(&[("streamtype", "stdin"), ("port", "1")]),
                Err(PortForwardError::BadStreamType("stdin".into())),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(parse_stream(&headers), want, "{headers:?}");
        }
        assert_eq!(
            PortForwardError::BadPort("x".into()).to_string(),
            "invalid port \"x\": must be a number between 1 and 65535"
        );
    }
}

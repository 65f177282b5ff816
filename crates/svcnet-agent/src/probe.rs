//! Container probes (httpGet, tcpSocket; exec goes through the pod runtime) with kubelet's messages.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A probe's outcome; `Failure` carries the message kubelet shows in the `Unhealthy` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Timing and thresholds with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Counts consecutive results against the thresholds; `Some(new)` when the verdict changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    successes: u32,
    failures: u32,
}

impl Verdict {
    /// Readiness starts failed, liveness and startup start passing until proven otherwise.
    pub fn new(ok: bool) -> Verdict {
        Verdict {
            ok,
            successes: 0,
            failures: 0,
        }
    }

    pub fn record(&mut self, success: bool, t: &Timing) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes += 1;
            if !self.ok && self.successes >= t.success_threshold {
                self.ok = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.ok && self.failures >= t.failure_threshold {
                self.ok = false;
                self.failures = 0;
                return Some(false);
            }
        }
        None
    }
}

/// Resolves a probe port (number or a container port name).
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name)),
    }
}

fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {what}")
}

/// tcpSocket: a TCP connect within the timeout.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(dial_error(&addr, &e)),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// httpGet: status 200–399 passes, as kubelet's HTTP prober.
pub async fn http(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let path = if path.is_empty() { "/" } else { path };
    let url = format!("http://{host}:{port}{path}");
    let run = async {
        let addr = format!("{host}:{port}");
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("Get \"{url}\": {}", dial_error(&addr, &e)))?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut buf = vec![0u8; 512];
        let mut got = 0;
        while !buf[..got].contains(&b'\n') && got < buf.len() {
            let n = s
                .read(&mut buf[got..])
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = String::from_utf8_lossy(&buf[..got]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => Outcome::Success,
        Ok(Err(m)) => Outcome::Failure(m),
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let t = Timing::of(
            &serde_json::from_value(json!({"successThreshold": 2, "failureThreshold": 2}))
                .expect("probe"),
        );
        let mut v = Verdict::new(false);
        let seq = [true, false, true, true, false, false, true];
        let got: Vec<Option<bool>> = seq.iter().map(|s| v.record(*s, &t)).collect();
        assert_eq!(
            got,
            vec![None, None, None, Some(true), None, Some(false), None]
        );
    }

    #[test]
    fn defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(
            (
                t.initial_delay.as_secs(),
                t.period.as_secs(),
                t.timeout.as_secs(),
                t.success_threshold,
                t.failure_threshold
            ),
            (0, 10, 1, 1, 3)
        );
    }

    #[test]
    fn ports() {
        let c: Container = serde_json::from_value(
            json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .expect("c");
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("couldn't find port: grpc in web".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c),
            Err("invalid port number: 0".into())
        );
    }

    #[tokio::test]
    async fn http_and_tcp_messages() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = l.accept().await {
                n += 1;
                let status = if n == 1 {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(
            http("127.0.0.1", port, "/healthz", &[], t).await,
            Outcome::Success
        );
        assert_eq!(
            http("127.0.0.1", port, "/", &[], t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        // A port nobody listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        assert_eq!(
            http("127.0.0.1", free, "/x", &[], t).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{free}/x\": dial tcp 127.0.0.1:{free}: connect: connection refused"
            ))
        );
        assert_eq!(
            tcp("127.0.0.1", free, t).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{free}: connect: connection refused"
            ))
        );
        assert_eq!(tcp("127.0.0.1", port, t).await, Outcome::Success);
    }
}

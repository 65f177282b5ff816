//! Prometheus metrics with upstream kube-proxy's names, and the `/metrics` and `/healthz` HTTP endpoints.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A cumulative histogram.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: Vec<f64>) -> Histogram {
        let n = bounds.len();
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    /// Upstream's `ExponentialBuckets(0.001, 2, 15)`.
    pub fn sync_buckets() -> Histogram {
        Histogram::new((0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect())
    }

    /// Upstream's network programming buckets: 0.25s steps to 1s, then 1s to 59s, 5s to 115s, 30s to 300s.
    pub fn programming_buckets() -> Histogram {
        let mut b = vec![0.25, 0.5];
        b.extend((1..=59).map(f64::from));
        b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
        b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
        Histogram::new(b)
    }

    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// Everything the proxy reports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub sync: Histogram,
    pub sync_full: Histogram,
    pub sync_partial: Histogram,
    pub programming: Histogram,
    pub last_sync: Option<SystemTime>,
    pub last_queued: Option<SystemTime>,
    pub sync_failures: u64,
    pub service_changes: u64,
    pub mode: &'static str,
    /// For healthz: when changes were queued and not yet applied.
    pub pending_since: Option<Instant>,
    pub healthy_window: Duration,
}

impl Metrics {
    pub fn new(mode: &'static str, sync_period: Duration) -> Metrics {
        Metrics {
            sync: Histogram::sync_buckets(),
            sync_full: Histogram::sync_buckets(),
            sync_partial: Histogram::sync_buckets(),
            programming: Histogram::programming_buckets(),
            last_sync: None,
            last_queued: None,
            sync_failures: 0,
            service_changes: 0,
            mode,
            pending_since: None,
            // Upstream's healthTimeout default is 2 × syncPeriod-ish; we use 2 × syncPeriod.
            healthy_window: sync_period * 2,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.sync.render(
            &mut out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
        );
        self.sync_full.render(
            &mut out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
        );
        self.sync_partial.render(
            &mut out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        );
        self.programming.render(
            &mut out,
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
        );
        let secs = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            secs(self.last_sync),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            secs(self.last_queued),
        );
        let failures = if self.mode == "iptables" {
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
        } else {
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
        };
        let _ = writeln!(
            out,
            "# HELP {failures} Cumulative proxy rules sync failures\n# TYPE {failures} counter\n{failures} {}",
            self.sync_failures
        );
        let n = "kubeproxy_sync_proxy_rules_service_changes_total";
        let _ = writeln!(
            out,
            "# HELP {n} Cumulative proxy rules Service changes\n# TYPE {n} counter\n{n} {}",
            self.service_changes
        );
        out
    }

    /// Healthy unless changes have waited longer than the window without a successful sync.
    pub fn healthy(&self, now: Instant) -> bool {
        self.pending_since
            .is_none_or(|p| now.duration_since(p) <= self.healthy_window)
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The response for one request path: (status line, content type, body).
pub fn respond(path: &str, m: &Metrics, now: Instant) -> (&'static str, &'static str, String) {
    match path.split('?').next().unwrap_or("") {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", m.render()),
        "/healthz" | "/livez" => {
            let body = format!(
                "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\"}}",
                m.last_sync.map(rfc3339).unwrap_or_default(),
                rfc3339(SystemTime::now())
            );
            if m.healthy(now) {
                ("200 OK", "application/json", body)
            } else {
                ("503 Service Unavailable", "application/json", body)
            }
        }
        _ => ("404 Not Found", "text/plain", "404 page not found\n".into()),
    }
}

/// Serves `/metrics` and `/healthz` (HTTP/1.0-style, one request per connection).
pub async fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head (bounded).
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let (status, ctype, body) = {
                let m = metrics.lock().unwrap_or_else(|e| e.into_inner());
                respond(&path, &m, Instant::now())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// Binds the HTTP endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_text() {
        let mut h = Histogram::new(vec![0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "X");
        assert_eq!(
            out,
            "# HELP x_seconds X\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"0.1\"} 1\nx_seconds_bucket{le=\"1\"} 2\nx_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 3.55\nx_seconds_count 3\n"
        );
    }

    #[test]
    fn endpoints() {
        let now = Instant::now();
        let mut m = Metrics::new("nftables", Duration::from_secs(30));
        m.sync.observe(0.004);
        let rows = [
            (
                "/metrics",
                "200 OK",
                "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1",
            ),
            (
                "/metrics",
                "200 OK",
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0",
            ),
            (
                "/metrics",
                "200 OK",
                "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 0",
            ),
            ("/healthz", "200 OK", "\"lastUpdated\": \"\""),
            ("/nope", "404 Not Found", "404 page not found"),
        ];
        for (path, status, needle) in rows {
            let (s, _, body) = respond(path, &m, now);
            assert_eq!(s, status, "{path}");
            assert!(body.contains(needle), "{path}: {needle} not in\n{body}");
        }
        m.pending_since = Some(now);
        assert_eq!(
            respond("/healthz", &m, now + Duration::from_secs(61)).0,
            "503 Service Unavailable"
        );
        assert_eq!(
            respond("/healthz", &m, now + Duration::from_secs(59)).0,
            "200 OK"
        );
    }
}

//! Query counters by type, rcode and transport, a latency histogram, and their Prometheus text form.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::answer::Transport;

const TYPES: [&str; 10] = [
    "A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "SOA", "NS", "ANY", "other",
];
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
const PROTOS: [&str; 2] = ["udp", "tcp"];
/// Histogram bucket bounds in microseconds.
const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

fn type_slot(t: Option<RecordType>) -> usize {
    match t {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::SRV) => 2,
        Some(RecordType::PTR) => 3,
        Some(RecordType::CNAME) => 4,
        Some(RecordType::TXT) => 5,
        Some(RecordType::SOA) => 6,
        Some(RecordType::NS) => 7,
        Some(RecordType::ANY) => 8,
        _ => 9,
    }
}

fn rcode_slot(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// Lock-free counters shared by every worker.
#[derive(Debug)]
pub struct Metrics {
    requests: [[[AtomicU64; 2]; RCODES.len()]; TYPES.len()],
    buckets: [AtomicU64; BUCKETS_US.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
    forwarded: AtomicU64,
    cache_hits: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Default::default(),
            buckets: Default::default(),
            latency_sum_ns: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// One answered query.
    pub fn record(
        &self,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        transport: Transport,
        took: Duration,
    ) {
        let p = match transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        };
        self.requests[type_slot(qtype)][rcode_slot(rcode)][p].fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros() as u64;
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self, cache_hit: bool) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if cache_hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (only non-zero request series).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.push_str("# HELP svcnet_dns_requests_total DNS queries answered, by query type, rcode and transport.\n");
        s.push_str("# TYPE svcnet_dns_requests_total counter\n");
        for (ti, t) in TYPES.iter().enumerate() {
            for (ri, r) in RCODES.iter().enumerate() {
                for (pi, p) in PROTOS.iter().enumerate() {
                    let v = ld(&self.requests[ti][ri][pi]);
                    if v > 0 {
                        let _ = writeln!(
                            s,
                            "svcnet_dns_requests_total{{type=\"{t}\",rcode=\"{r}\",proto=\"{p}\"}} {v}"
                        );
                    }
                }
            }
        }
        s.push_str("# HELP svcnet_dns_request_duration_seconds Time from receiving a query to sending its answer.\n");
        s.push_str("# TYPE svcnet_dns_request_duration_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cum += ld(&self.buckets[i]);
            let _ = writeln!(
                s,
                "svcnet_dns_request_duration_seconds_bucket{{le=\"{}\"}} {cum}",
                *b as f64 / 1e6
            );
        }
        let count = ld(&self.latency_count);
        let _ = writeln!(
            s,
            "svcnet_dns_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "svcnet_dns_request_duration_seconds_sum {}",
            ld(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(s, "svcnet_dns_request_duration_seconds_count {count}");
        for (name, help, v) in [
            (
                "svcnet_dns_forwarded_total",
                "Queries sent to the upstream resolvers or answered from their cache.",
                &self.forwarded,
            ),
            (
                "svcnet_dns_forward_cache_hits_total",
                "Forwarded queries answered from the cache.",
                &self.cache_hits,
            ),
            (
                "svcnet_dns_dropped_total",
                "Packets dropped without an answer.",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                ld(v)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.record(
            Some(RecordType::A),
            ResponseCode::NoError,
            Transport::Udp,
            Duration::from_micros(30),
        );
        m.record(
            Some(RecordType::A),
            ResponseCode::NoError,
            Transport::Udp,
            Duration::from_micros(700),
        );
        m.record(
            Some(RecordType::SRV),
            ResponseCode::NXDomain,
            Transport::Tcp,
            Duration::from_millis(3),
        );
        m.record(
            Some(RecordType::MX),
            ResponseCode::ServFail,
            Transport::Udp,
            Duration::from_secs(2),
        );
        m.forwarded(true);
        let text = m.render();
        for line in [
            "svcnet_dns_requests_total{type=\"A\",rcode=\"NOERROR\",proto=\"udp\"} 2",
            "svcnet_dns_requests_total{type=\"SRV\",rcode=\"NXDOMAIN\",proto=\"tcp\"} 1",
            "svcnet_dns_requests_total{type=\"other\",rcode=\"SERVFAIL\",proto=\"udp\"} 1",
            "svcnet_dns_request_duration_seconds_bucket{le=\"0.00005\"} 1",
            "svcnet_dns_request_duration_seconds_bucket{le=\"0.001\"} 2",
            "svcnet_dns_request_duration_seconds_bucket{le=\"0.005\"} 3",
            "svcnet_dns_request_duration_seconds_bucket{le=\"1\"} 3",
            "svcnet_dns_request_duration_seconds_bucket{le=\"+Inf\"} 4",
            "svcnet_dns_request_duration_seconds_count 4",
            "svcnet_dns_forwarded_total 1",
            "svcnet_dns_forward_cache_hits_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("type=\"AAAA\""));
    }
}

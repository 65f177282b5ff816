//! Allocation-free fast path for the common query shape, byte-identical to `answer::answer`.
//!
//! It handles one lowercase question of class IN for A/AAAA of a ClusterIP Service or SRV of
//! its named port, with at most a plain EDNS OPT, when the answer is positive. Everything else
//! (negative answers, headless, ExternalName, other flags, options, compression in the query)
//! is declined and goes through the full hickory path. The reply bytes follow hickory's
//! encoder exactly: answer owners point at the question, SRV targets are written out in full
//! and additional owners point at the matching suffix of the question.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::{MAX_UDP_PAYLOAD, Transport, Zone, key};
use crate::index::{Index, Kind};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// More labels than any name under a cluster zone that this path answers.
const MAX_LABELS: usize = 16;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The question's labels as (start, len) offsets into the packet, and where the name ends.
struct Question {
    labels: [(usize, usize); MAX_LABELS],
    count: usize,
    /// Offset just past the root label.
    end: usize,
}

impl Question {
    fn label<'p>(&self, p: &'p [u8], i: usize) -> &'p [u8] {
        let (s, n) = self.labels[i];
        &p[s..s + n]
    }
}

/// Parses an uncompressed name of lowercase letters, digits, `-` and `_` from offset 12.
fn question(p: &[u8]) -> Option<Question> {
    let mut q = Question {
        labels: [(0, 0); MAX_LABELS],
        count: 0,
        end: 0,
    };
    let mut at = 12;
    loop {
        let n = *p.get(at)? as usize;
        if n == 0 {
            q.end = at + 1;
            // Wire length including the root byte is at most 255.
            return (q.end - 12 <= 255).then_some(q);
        }
        // Pointers and extended label types are left to the full path; so are labels over 63.
        if n > 63 || q.count == MAX_LABELS {
            return None;
        }
        let label = p.get(at + 1..at + 1 + n)?;
        if !label
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        q.labels[q.count] = (at + 1, n);
        q.count += 1;
        at += 1 + n;
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Record header with a compression pointer as owner.
fn rr_head(out: &mut Vec<u8>, owner: usize, rtype: u16, ttl: u32, rdlen: u16) {
    put16(out, 0xC000 | owner as u16);
    put16(out, rtype);
    put16(out, CLASS_IN);
    out.extend_from_slice(&ttl.to_be_bytes());
    put16(out, rdlen);
}

fn ip_rr(out: &mut Vec<u8>, owner: usize, ttl: u32, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            rr_head(out, owner, TYPE_A, ttl, 4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            rr_head(out, owner, TYPE_AAAA, ttl, 16);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Writes the reply to `packet` into `out` and returns the query type, or `None` (with `out`
/// in an unspecified state) when the query is not of the shape this path answers.
pub fn answer_fast(
    index: &Index,
    zone: &Zone,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<RecordType> {
    let p = packet;
    // QR, opcode, AA and TC clear (RD free); RA, Z and RCODE clear (AD and CD free).
    if p.len() < 12 || p[2] & 0xFE != 0 || p[3] & 0xCF != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (be16(p, 4)?, be16(p, 6)?, be16(p, 8)?, be16(p, 10)?);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let q = question(p)?;
    let (qtype, qclass) = (be16(p, q.end)?, be16(p, q.end + 2)?);
    let qend = q.end + 4;
    if qclass != CLASS_IN {
        return None;
    }
    let edns = if ar == 1 {
        // Root owner, OPT, payload, extended RCODE 0, version 0, any flags, no options.
        let o = p.get(qend..)?;
        if o.len() != 11 || o[0] != 0 || be16(o, 1)? != TYPE_OPT || o[5] != 0 || o[6] != 0 {
            return None;
        }
        if be16(o, 9)? != 0 {
            return None;
        }
        Some(be16(o, 3)?)
    } else {
        if p.len() != qend {
            return None;
        }
        None
    };
    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => edns.map(|e| e.clamp(512, MAX_UDP_PAYLOAD)).unwrap_or(512) as usize,
    };

    let z = zone.labels.len();
    if q.count < z || !(0..z).all(|i| q.label(p, q.count - z + i) == zone.labels[i].as_slice()) {
        return None;
    }
    let rel = q.count - z;
    let ttl = zone.ttl;
    let mut buf = [0u8; 256];

    out.clear();
    out.extend_from_slice(&p[..2]);
    out.push(0x84 | (p[2] & 0x01));
    out.push(0x80 | (p[3] & 0x10));
    put16(out, 1);
    // Answer and additional counts are filled in below.
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&p[12..qend]);
    let (answers, additionals): (u16, u16) = match qtype {
        TYPE_A | TYPE_AAAA => {
            if rel != 3 || q.label(p, 2) != b"svc" {
                return None;
            }
            let r = index.service(key(&mut buf, q.label(p, 0), q.label(p, 1))?)?;
            let Kind::ClusterIp { v4, v6 } = r.spec.kind else {
                return None;
            };
            let ip = match qtype {
                TYPE_A => IpAddr::V4(v4?),
                _ => IpAddr::V6(v6?),
            };
            ip_rr(out, 12, ttl, ip);
            (1, 0)
        }
        TYPE_SRV => {
            if rel != 5 || q.label(p, 4) != b"svc" {
                return None;
            }
            let (port, proto) = (q.label(p, 0), q.label(p, 1));
            let (Some(port), Some(proto)) = (port.strip_prefix(b"_"), proto.strip_prefix(b"_"))
            else {
                return None;
            };
            let r = index.service(key(&mut buf, q.label(p, 2), q.label(p, 3))?)?;
            let Kind::ClusterIp { v4, v6 } = r.spec.kind else {
                return None;
            };
            let found = r
                .spec
                .ports
                .iter()
                .find(|x| x.name().as_bytes() == port && x.proto.label().as_bytes() == proto)?;
            // The target `<svc>.<ns>.svc.<zone>` is the question from its third label on,
            // written uncompressed; the additional owners point at that suffix of the question.
            let suffix = q.labels[2].0 - 1;
            let target = &p[suffix..q.end];
            rr_head(out, 12, TYPE_SRV, ttl, 6 + target.len() as u16);
            put16(out, 0);
            put16(out, 100);
            put16(out, found.port);
            out.extend_from_slice(target);
            let mut extra = 0;
            for ip in v4.map(IpAddr::V4).into_iter().chain(v6.map(IpAddr::V6)) {
                ip_rr(out, suffix, ttl, ip);
                extra += 1;
            }
            (1, extra)
        }
        _ => return None,
    };
    let additionals = additionals + u16::from(edns.is_some());
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    if edns.is_some() {
        out.extend_from_slice(&[0, 0, 41]);
        put16(out, MAX_UDP_PAYLOAD);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    if out.len() > limit {
        return None;
    }
    Some(RecordType::from(qtype))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::ResponseCode;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::answer::{Outcome, answer};
    use crate::index::{Endpoint, Port, Proto, ServiceSpec, Slice, Tracker};

    fn fixture() -> Index {
        let mut t = Tracker::new();
        let ports = || -> Box<[Port]> {
            [
                Port::new("http", Proto::Tcp, 80),
                Port::new("dns", Proto::Udp, 53),
                Port::new("dns", Proto::Tcp, 5353),
                Port::new("x_y", Proto::Sctp, 9),
            ]
            .into_iter()
            .flatten()
            .collect()
        };
        let kinds = [
            Kind::ClusterIp {
                v4: Some(Ipv4Addr::new(10, 96, 0, 1)),
                v6: None,
            },
            Kind::ClusterIp {
                v4: Some(Ipv4Addr::new(10, 96, 0, 2)),
                v6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
            },
            Kind::ClusterIp {
                v4: None,
                v6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)),
            },
            Kind::Headless,
            Kind::ExternalName("web-0.default.svc.cluster.local".into()),
        ];
        for (i, kind) in kinds.iter().enumerate() {
            for ns in ["default", "kube-system"] {
                let key = format!("web-{i}.{ns}");
                t.apply_service(ServiceSpec {
                    key: key.as_str().into(),
                    kind: kind.clone(),
                    ports: ports(),
                    publish_not_ready: false,
                });
                t.apply_slice(
                    &key,
                    "s",
                    Slice {
                        ports: ports(),
                        endpoints: vec![Endpoint {
                            ip: "10.244.0.9".parse().unwrap(),
                            hostname: Some("h".into()),
                            ready: true,
                        }]
                        .into(),
                    },
                );
            }
        }
        // Names near the length limits.
        let l63 = "a".repeat(63);
        t.apply_service(ServiceSpec {
            key: format!("{l63}.{l63}").into(),
            kind: kinds[1].clone(),
            ports: ports(),
            publish_not_ready: false,
        });
        (*t.publish()).clone()
    }

    /// A query in wire form, built by hand so it can carry any flags and shapes.
    fn wire(rng: &mut StdRng, name: &str) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&rng.random::<u16>().to_be_bytes());
        // Mostly plain RD queries; sometimes arbitrary flag bits.
        let (f2, f3) = match rng.random_range(0..10) {
            0 => (rng.random::<u8>() & 0x7F, rng.random::<u8>()),
            1 => (0x01, 0x30),
            2 => (0x00, 0x00),
            _ => (0x01, 0x00),
        };
        p.extend_from_slice(&[f2, f3]);
        let edns = rng.random_range(0..4);
        let ar: u16 = if edns > 0 { 1 } else { 0 };
        let counts: [u16; 4] = match rng.random_range(0..20) {
            0 => [2, 0, 0, ar],
            1 => [1, 1, 0, ar],
            2 => [0, 0, 0, ar],
            _ => [1, 0, 0, ar],
        };
        for c in counts {
            p.extend_from_slice(&c.to_be_bytes());
        }
        for l in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        let qtype: u16 = match rng.random_range(0..10) {
            0..=3 => TYPE_A,
            4..=5 => TYPE_AAAA,
            6..=7 => TYPE_SRV,
            8 => 255,
            _ => rng.random_range(0..300),
        };
        let qclass: u16 = match rng.random_range(0..10) {
            0 => 3,
            _ => CLASS_IN,
        };
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&qclass.to_be_bytes());
        if edns > 0 {
            let payload: u16 = [0, 512, 1232, 4096, 65535, 100][rng.random_range(0..6)];
            let (ver, flags) = match rng.random_range(0..6) {
                0 => (1u8, 0u16),
                1 => (0, 0x8000),
                _ => (0, 0),
            };
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, ver]);
            p.extend_from_slice(&flags.to_be_bytes());
            if edns == 3 {
                // A cookie option.
                p.extend_from_slice(&[0, 12, 0, 10, 0, 8]);
                p.extend_from_slice(&rng.random::<u64>().to_be_bytes());
            } else {
                p.extend_from_slice(&[0, 0]);
            }
        }
        if rng.random_range(0..30) == 0 {
            p.push(0);
        }
        p
    }

    fn names(rng: &mut StdRng) -> String {
        // Half the names are of the answerable shape, the rest anything nearby.
        if rng.random_bool(0.5) {
            let svc = ["web-0", "web-1", "web-2"][rng.random_range(0..3)];
            let ns = ["default", "kube-system"][rng.random_range(0..2)];
            let srv = ["", "_http._tcp.", "_dns._udp.", "_dns._tcp."][rng.random_range(0..4)];
            return format!("{srv}{svc}.{ns}.svc.cluster.local.");
        }
        let l63 = "a".repeat(63);
        let svc = [
            "web-0",
            "web-1",
            "web-2",
            "web-3",
            "web-4",
            "web-9",
            "Web-1",
            l63.as_str(),
        ][rng.random_range(0..8)];
        let ns =
            ["default", "kube-system", "nope", "DEFAULT", l63.as_str()][rng.random_range(0..5)];
        let zone = [
            "svc.cluster.local",
            "svc.cluster.local",
            "svc.cluster.local",
            "svc.Cluster.local",
            "pod.cluster.local",
            "svc.cluster.local.default.svc.cluster.local",
            "svc.cluster",
            "svc.example.org",
        ][rng.random_range(0..8)];
        let srv = [
            "_http._tcp.",
            "_dns._udp.",
            "_dns._tcp.",
            "_x_y._sctp.",
            "_http._udp.",
            "http._tcp.",
            "_http.tcp.",
            "",
            "",
            "",
        ][rng.random_range(0..10)];
        format!("{srv}{svc}.{ns}.{zone}.")
    }

    /// Applies a few random byte flips, so truncated and odd packets are covered too.
    fn mutate(rng: &mut StdRng, p: &mut Vec<u8>) {
        match rng.random_range(0..12) {
            0 if !p.is_empty() => {
                let i = rng.random_range(0..p.len());
                p[i] = rng.random();
            }
            1 if !p.is_empty() => {
                let n = rng.random_range(0..p.len());
                p.truncate(n);
            }
            _ => {}
        }
    }

    #[test]
    fn fast_path_equals_reference_or_declines() {
        let ix = fixture();
        let zone = Zone::new("cluster.local", 5).unwrap();
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut out = Vec::new();
        let mut taken = [0usize; 3];
        for i in 0..20_000 {
            let name = names(&mut rng);
            let mut p = wire(&mut rng, &name);
            mutate(&mut rng, &mut p);
            let transport = if i % 5 == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let reference = answer(&ix, &zone, &p, transport);
            let Some(qtype) = answer_fast(&ix, &zone, &p, transport, &mut out) else {
                continue;
            };
            let Outcome::Reply(want) = reference.outcome else {
                panic!("fast path answered {name} {p:?}, reference did not");
            };
            assert_eq!(out, want, "{name} {p:?}");
            assert_eq!(Some(qtype), reference.qtype, "{name}");
            assert_eq!(reference.rcode, ResponseCode::NoError, "{name}");
            taken[match qtype {
                RecordType::A => 0,
                RecordType::AAAA => 1,
                _ => 2,
            }] += 1;
        }
        // The path must actually answer each shape, not decline everything.
        for (t, n) in ["A", "AAAA", "SRV"].iter().zip(taken) {
            assert!(n > 100, "fast path answered only {n} {t} queries");
        }
    }

    #[test]
    fn declines_what_it_does_not_answer() {
        let ix = fixture();
        let zone = Zone::new("cluster.local", 5).unwrap();
        let mut out = Vec::new();
        let q = |name: &str, qtype: RecordType| {
            let n = hickory_proto::rr::Name::from_ascii(name).unwrap();
            crate::answer::query(&n, qtype, 7, None).to_vec().unwrap()
        };
        use RecordType::*;
        let cases: &[(&str, RecordType, bool)] = &[
            ("web-0.default.svc.cluster.local.", A, true),
            ("web-0.default.svc.cluster.local.", AAAA, false),
            ("web-2.default.svc.cluster.local.", AAAA, true),
            ("web-1.default.svc.cluster.local.", ANY, false),
            ("web-3.default.svc.cluster.local.", A, false),
            ("web-4.default.svc.cluster.local.", A, false),
            ("nope.default.svc.cluster.local.", A, false),
            ("WEB-0.default.svc.cluster.local.", A, false),
            ("_http._tcp.web-1.default.svc.cluster.local.", SRV, true),
            ("_http._udp.web-1.default.svc.cluster.local.", SRV, false),
            ("_pg._tcp.web-3.default.svc.cluster.local.", SRV, false),
            ("1.0.96.10.in-addr.arpa.", PTR, false),
            ("example.org.", A, false),
        ];
        for (name, t, want) in cases {
            let got = answer_fast(&ix, &zone, &q(name, *t), Transport::Udp, &mut out).is_some();
            assert_eq!(got, *want, "{name} {t}");
        }
    }
}

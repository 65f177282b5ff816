//! Sans-IO answer logic: one query packet and an index in, a reply (or a forward/drop decision) out.
//!
//! Names follow the Kubernetes DNS-based service discovery specification 1.1.0; matching is
//! case-insensitive and answers echo the question's spelling. No allocation happens while
//! the name is matched: labels are compared in place and keys built in a stack buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::index::{Index, Kind, PtrTarget, ServiceRec};

/// The schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Largest UDP payload we send, whatever the client offers (the DNS flag day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Deepest CNAME chain followed inside the zone.
const MAX_CHAIN: usize = 4;

/// Why a zone cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("invalid cluster domain {domain:?}: {source}")]
    BadZone {
        domain: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
}

/// The cluster zone and the constant records that come with it.
#[derive(Debug, Clone)]
pub struct Zone {
    labels: Vec<Vec<u8>>,
    name: Name,
    domain: String,
    ns: Name,
    hostmaster: Name,
    /// TTL of every record we serve (CoreDNS's default is 5 s, so changes show quickly).
    pub ttl: u32,
}

impl Zone {
    pub fn new(domain: &str, ttl: u32) -> Result<Zone, AnswerError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let bad = |source| AnswerError::BadZone {
            domain: domain.clone(),
            source,
        };
        let name = Name::from_ascii(format!("{domain}.")).map_err(bad)?;
        let ns = Name::from_ascii(format!("ns.dns.{domain}.")).map_err(bad)?;
        let hostmaster = Name::from_ascii(format!("hostmaster.{domain}.")).map_err(bad)?;
        let labels = name.iter().map(|l| l.to_ascii_lowercase()).collect();
        Ok(Zone {
            labels,
            name,
            domain,
            ns,
            hostmaster,
            ttl,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(
            self.ns.clone(),
            self.hostmaster.clone(),
            serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.name.clone(), self.ttl, RData::SOA(soa))
    }
}

/// The transport a query came in on (UDP replies are size-limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask the upstream resolvers.
    Forward(Box<Message>),
    /// Not worth an answer (a response, or too short to carry an ID).
    Drop,
}

/// The decision plus what metrics need.
#[derive(Debug)]
pub struct Answered {
    pub outcome: Outcome,
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
}

/// The largest reply a client may get over this transport.
pub fn reply_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => request
            .edns
            .as_ref()
            .map(|e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
            .unwrap_or(512) as usize,
    }
}

/// Encodes a reply, truncating it (TC, question and OPT only) when it does not fit.
pub fn encode(reply: &Message, limit: usize) -> Vec<u8> {
    match reply.to_vec() {
        Ok(b) if b.len() <= limit => b,
        _ => reply.truncate().to_vec().unwrap_or_default(),
    }
}

/// A reply skeleton for `req`: same ID, opcode, question, RD, and OPT when the client sent one.
pub fn reply_to(req: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::response(req.id, req.op_code);
    m.metadata.recursion_desired = req.recursion_desired;
    m.metadata.checking_disabled = req.checking_disabled;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_PAYLOAD);
        m.set_edns(e);
    }
    m
}

/// Answers one packet.
pub fn answer(index: &Index, zone: &Zone, packet: &[u8], transport: Transport) -> Answered {
    let drop = || Answered {
        outcome: Outcome::Drop,
        qtype: None,
        rcode: ResponseCode::FormErr,
    };
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return drop();
    }
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return formerr_raw(packet),
    };
    if req.message_type != MessageType::Query {
        return drop();
    }
    let qtype = req.queries.first().map(|q| q.query_type());
    let limit = reply_limit(&req, transport);
    let done = |m: Message| Answered {
        rcode: m.response_code,
        outcome: Outcome::Reply(encode(&m, limit)),
        qtype,
    };
    if req.op_code != OpCode::Query {
        return done(reply_to(&req, ResponseCode::NotImp));
    }
    if req.queries.len() != 1 {
        return done(reply_to(&req, ResponseCode::FormErr));
    }
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return done(reply_to(&req, ResponseCode::BADVERS));
    }
    let q = &req.queries[0];
    match classify(zone, q.name()) {
        Place::Zone(rel) => {
            if q.query_class() != DNSClass::IN {
                return done(reply_to(&req, ResponseCode::Refused));
            }
            let mut r = Resolved::default();
            let ctx = Ctx { index, zone };
            let exists = ctx.resolve(&mut r, q.name(), rel.as_slice(), q.query_type(), 0);
            let rcode = if exists {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            let mut m = reply_to(&req, rcode);
            m.metadata.authoritative = true;
            if r.answers.is_empty() {
                m.add_authority(zone.soa(index.serial));
            }
            m.insert_answers(r.answers);
            m.insert_additionals(r.additionals);
            done(m)
        }
        Place::Reverse(ip)
            if q.query_type() == RecordType::PTR || q.query_type() == RecordType::ANY =>
        {
            match index.ptr(&ip) {
                Some(t) => {
                    let mut m = reply_to(&req, ResponseCode::NoError);
                    m.metadata.authoritative = true;
                    if let Some(target) = ptr_name(zone, t, ip) {
                        m.add_answer(Record::from_rdata(
                            q.name().clone(),
                            zone.ttl,
                            RData::PTR(PTR(target)),
                        ));
                    }
                    done(m)
                }
                None => forward(req, qtype),
            }
        }
        Place::Reverse(_) | Place::Outside => forward(req, qtype),
    }
}

fn forward(req: Message, qtype: Option<RecordType>) -> Answered {
    Answered {
        outcome: Outcome::Forward(Box::new(req)),
        qtype,
        rcode: ResponseCode::NoError,
    }
}

/// FORMERR for a query whose body does not parse: header only, same ID and opcode.
fn formerr_raw(packet: &[u8]) -> Answered {
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let op = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    let mut m = Message::error_msg(id, op, ResponseCode::FormErr);
    m.metadata.recursion_desired = packet[2] & 1 != 0;
    Answered {
        outcome: Outcome::Reply(m.to_vec().unwrap_or_default()),
        qtype: None,
        rcode: ResponseCode::FormErr,
    }
}

/// Labels of a name, in place (a name has at most 127).
struct Labels<'a> {
    items: [&'a [u8]; 128],
    len: usize,
}

impl<'a> Labels<'a> {
    fn as_slice(&self) -> &[&'a [u8]] {
        &self.items[..self.len]
    }
}

// Kept on the stack on purpose: matching a name allocates nothing.
#[allow(clippy::large_enum_variant)]
enum Place<'a> {
    /// Inside the cluster zone; the labels before the zone.
    Zone(Labels<'a>),
    /// A complete in-addr.arpa / ip6.arpa name.
    Reverse(IpAddr),
    Outside,
}

fn classify<'a>(zone: &Zone, name: &'a Name) -> Place<'a> {
    let mut labels = Labels {
        items: [&[]; 128],
        len: 0,
    };
    for l in name.iter() {
        if labels.len == labels.items.len() {
            return Place::Outside;
        }
        labels.items[labels.len] = l;
        labels.len += 1;
    }
    let n = labels.len;
    let z = zone.labels.len();
    if n >= z
        && labels.items[n - z..n]
            .iter()
            .zip(&zone.labels)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        labels.len = n - z;
        return Place::Zone(labels);
    }
    if let Some(ip) = reverse_ip(labels.as_slice()) {
        return Place::Reverse(ip);
    }
    Place::Outside
}

/// The address of a full-length reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`).
fn reverse_ip(l: &[&[u8]]) -> Option<IpAddr> {
    let n = l.len();
    if n < 2 || !l[n - 1].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    if l[n - 2].eq_ignore_ascii_case(b"in-addr") && n == 6 {
        let mut o = [0u8; 4];
        for (i, lab) in l[..4].iter().rev().enumerate() {
            o[i] = std::str::from_utf8(lab).ok()?.parse().ok()?;
            if lab.len() > 1 && lab[0] == b'0' {
                return None;
            }
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    if l[n - 2].eq_ignore_ascii_case(b"ip6") && n == 34 {
        let mut v: u128 = 0;
        for lab in l[..32].iter().rev() {
            let [c] = lab else { return None };
            v = (v << 4) | (*c as char).to_digit(16)? as u128;
        }
        return Some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

/// The PTR target for an address the index knows.
fn ptr_name(zone: &Zone, t: &PtrTarget, ip: IpAddr) -> Option<Name> {
    match t {
        PtrTarget::Service(r) => service_name(zone, r),
        PtrTarget::Endpoint(r) => {
            let (_, e) = r.dns_endpoints().find(|(_, e)| e.ip == ip)?;
            endpoint_name(zone, r, e.hostname.as_deref(), ip)
        }
    }
}

fn service_name(zone: &Zone, r: &ServiceRec) -> Option<Name> {
    Name::from_ascii(format!("{}.svc.{}.", r.spec.key, zone.domain)).ok()
}

fn endpoint_name(zone: &Zone, r: &ServiceRec, hostname: Option<&str>, ip: IpAddr) -> Option<Name> {
    let host = match hostname {
        Some(h) => h.to_string(),
        None => dashed(ip),
    };
    Name::from_ascii(format!("{host}.{}.svc.{}.", r.spec.key, zone.domain)).ok()
}

/// The generated hostname of an endpoint without one: its address with `-` for `.`/`:`
/// (CoreDNS's form; a trailing `-` gets a `0` so the label stays valid).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string().replace('.', "-"),
        IpAddr::V6(a) => {
            let mut s = a.to_string().replace(':', "-");
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}

/// Parses the `a-b-c-d` (or dashed IPv6) form of pod and endpoint labels.
fn undashed(label: &[u8]) -> Option<IpAddr> {
    let mut buf = [0u8; 64];
    if label.len() > buf.len() || label.is_empty() {
        return None;
    }
    let b = &mut buf[..label.len()];
    b.copy_from_slice(label);
    let has_hex_letter = b.iter().any(|c| c.is_ascii_alphabetic());
    let dashes = b.iter().filter(|&&c| c == b'-').count();
    if !has_hex_letter && dashes == 3 {
        for c in b.iter_mut() {
            if *c == b'-' {
                *c = b'.';
            }
        }
        return std::str::from_utf8(b)
            .ok()?
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4);
    }
    for c in b.iter_mut() {
        if *c == b'-' {
            *c = b':';
        }
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// `<a>.<b>` lowercased into `buf`, when both are plain DNS labels.
fn key<'b>(buf: &'b mut [u8; 256], a: &[u8], b: &[u8]) -> Option<&'b str> {
    let n = a.len() + b.len() + 1;
    if n > buf.len() {
        return None;
    }
    buf[..a.len()].copy_from_slice(a);
    buf[a.len()] = b'.';
    buf[a.len() + 1..n].copy_from_slice(b);
    let out = &mut buf[..n];
    for (i, c) in out.iter_mut().enumerate() {
        c.make_ascii_lowercase();
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || *c == b'-'
            || (i == a.len() && *c == b'.');
        if !ok {
            return None;
        }
    }
    std::str::from_utf8(out).ok()
}

#[derive(Default)]
struct Resolved {
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

struct Ctx<'a> {
    index: &'a Index,
    zone: &'a Zone,
}

fn wants(qtype: RecordType, t: RecordType) -> bool {
    qtype == t || qtype == RecordType::ANY
}

fn ip_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rd = match ip {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(owner.clone(), ttl, rd)
}

fn ip_wanted(qtype: RecordType, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => wants(qtype, RecordType::A),
        IpAddr::V6(_) => wants(qtype, RecordType::AAAA),
    }
}

impl Ctx<'_> {
    /// Adds the records for `rel` (labels below the zone) to `out`; false when the name does not exist.
    fn resolve(
        &self,
        out: &mut Resolved,
        owner: &Name,
        rel: &[&[u8]],
        qtype: RecordType,
        depth: usize,
    ) -> bool {
        let ttl = self.zone.ttl;
        let lower = |i: usize, s: &[u8]| rel[i].eq_ignore_ascii_case(s);
        match rel.len() {
            0 => {
                if wants(qtype, RecordType::SOA) {
                    out.answers.push(self.zone.soa(self.index.serial));
                }
                if wants(qtype, RecordType::NS) {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::NS(NS(self.zone.ns.clone())),
                    ));
                }
                true
            }
            1 if lower(0, b"dns-version") => {
                if wants(qtype, RecordType::TXT) {
                    let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                    out.answers
                        .push(Record::from_rdata(owner.clone(), ttl, RData::TXT(txt)));
                }
                true
            }
            1 => lower(0, b"svc") || lower(0, b"pod"),
            n if lower(n - 1, b"pod") => match n {
                2 => true,
                3 => match undashed(rel[0]) {
                    Some(ip) => {
                        if ip_wanted(qtype, ip) {
                            out.answers.push(ip_record(owner, ttl, ip));
                        }
                        true
                    }
                    None => false,
                },
                _ => false,
            },
            n if lower(n - 1, b"svc") => {
                let mut buf = [0u8; 256];
                match n {
                    2 => key(&mut buf, b"x", rel[0])
                        .is_some_and(|k| self.index.has_namespace(&k[2..])),
                    3 => match key(&mut buf, rel[0], rel[1]).and_then(|k| self.index.service(k)) {
                        Some(r) => self.service(out, owner, r, qtype, depth),
                        None => false,
                    },
                    4 => match key(&mut buf, rel[1], rel[2]).and_then(|k| self.index.service(k)) {
                        Some(r) => self.endpoint(out, owner, r, rel[0], qtype),
                        None => false,
                    },
                    5 => match key(&mut buf, rel[2], rel[3]).and_then(|k| self.index.service(k)) {
                        Some(r) => self.srv(out, owner, r, rel[0], rel[1], qtype),
                        None => false,
                    },
                    _ => false,
                }
            }
            _ => false,
        }
    }

    fn service(
        &self,
        out: &mut Resolved,
        owner: &Name,
        r: &ServiceRec,
        qtype: RecordType,
        depth: usize,
    ) -> bool {
        let ttl = self.zone.ttl;
        match &r.spec.kind {
            Kind::ClusterIp { v4, v6 } => {
                for ip in v4.map(IpAddr::V4).into_iter().chain(v6.map(IpAddr::V6)) {
                    if ip_wanted(qtype, ip) {
                        out.answers.push(ip_record(owner, ttl, ip));
                    }
                }
                true
            }
            Kind::Headless => {
                let mut any = false;
                for (_, e) in r.dns_endpoints() {
                    any = true;
                    if ip_wanted(qtype, e.ip) {
                        out.answers.push(ip_record(owner, ttl, e.ip));
                    }
                }
                // A headless Service without ready endpoints has no name (NXDOMAIN).
                any
            }
            Kind::ExternalName(target) => {
                let Ok(t) = Name::from_ascii(format!("{target}.")) else {
                    return false;
                };
                out.answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::CNAME(CNAME(t.clone())),
                ));
                if qtype == RecordType::CNAME || depth >= MAX_CHAIN {
                    return true;
                }
                // A target inside the zone is answered here too, so clients need no second query.
                if let Place::Zone(rel) = classify(self.zone, &t) {
                    return self.resolve(out, &t, rel.as_slice(), qtype, depth + 1);
                }
                true
            }
        }
    }

    fn endpoint(
        &self,
        out: &mut Resolved,
        owner: &Name,
        r: &ServiceRec,
        host: &[u8],
        qtype: RecordType,
    ) -> bool {
        if r.spec.kind != Kind::Headless {
            return false;
        }
        let as_ip = undashed(host);
        let mut found = false;
        for (_, e) in r.dns_endpoints() {
            let hit = match &e.hostname {
                Some(h) => h.as_bytes().eq_ignore_ascii_case(host),
                None => as_ip == Some(e.ip),
            };
            if hit {
                found = true;
                if ip_wanted(qtype, e.ip) {
                    out.answers.push(ip_record(owner, self.zone.ttl, e.ip));
                }
            }
        }
        found
    }

    fn srv(
        &self,
        out: &mut Resolved,
        owner: &Name,
        r: &ServiceRec,
        port: &[u8],
        proto: &[u8],
        qtype: RecordType,
    ) -> bool {
        let (Some(port), Some(proto)) = (port.strip_prefix(b"_"), proto.strip_prefix(b"_")) else {
            return false;
        };
        let matches = |p: &crate::index::Port| {
            p.name().as_bytes().eq_ignore_ascii_case(port)
                && p.proto.label().as_bytes().eq_ignore_ascii_case(proto)
        };
        let ttl = self.zone.ttl;
        let want = wants(qtype, RecordType::SRV);
        match &r.spec.kind {
            Kind::ClusterIp { v4, v6 } => {
                let Some(p) = r.spec.ports.iter().find(|p| matches(p)) else {
                    return false;
                };
                if want && let Some(target) = service_name(self.zone, r) {
                    for ip in v4.map(IpAddr::V4).into_iter().chain(v6.map(IpAddr::V6)) {
                        out.additionals.push(ip_record(&target, ttl, ip));
                    }
                    let srv = SRV::new(0, 100, p.port, target);
                    out.answers
                        .push(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
                }
                true
            }
            Kind::Headless => {
                let hits: Vec<(u16, &crate::index::Endpoint)> = r
                    .dns_endpoints()
                    .filter_map(|(s, e)| s.ports.iter().find(|p| matches(p)).map(|p| (p.port, e)))
                    .collect();
                if hits.is_empty() {
                    return false;
                }
                if want {
                    let weight = (100 / hits.len()).max(1) as u16;
                    for (p, e) in hits {
                        let Some(target) = endpoint_name(self.zone, r, e.hostname.as_deref(), e.ip)
                        else {
                            continue;
                        };
                        out.additionals.push(ip_record(&target, ttl, e.ip));
                        let srv = SRV::new(0, weight, p, target);
                        out.answers
                            .push(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
                    }
                }
                true
            }
            Kind::ExternalName(_) => false,
        }
    }
}

/// A query message (for tests, benchmarks and the forwarder).
pub fn query(name: &Name, qtype: RecordType, id: u16, edns: Option<u16>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), qtype));
    if let Some(p) = edns {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m
}

pub mod fast;

#[cfg(test)]
mod tests;

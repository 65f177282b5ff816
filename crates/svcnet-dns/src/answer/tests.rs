//! Table tests for the answer logic: every record kind, negative answers, truncation, bad packets.

use super::*;
use crate::index::{Endpoint, Port, Proto, ServiceSpec, Slice, Tracker};

fn fixture() -> Index {
    let mut t = Tracker::new();
    let port = |n: &str, p: Proto, num: u16| Port::new(n, p, num).unwrap();
    let spec = |key: &str, kind: Kind, ports: Vec<Port>| ServiceSpec {
        key: key.into(),
        kind,
        ports: ports.into(),
        publish_not_ready: false,
    };
    t.apply_service(spec(
        "redis-master.my-ns",
        Kind::ClusterIp {
            v4: Some("10.96.0.50".parse().unwrap()),
            v6: Some("fd00::50".parse().unwrap()),
        },
        vec![port("redis", Proto::Tcp, 6379)],
    ));
    t.apply_service(spec(
        "frontend.default",
        Kind::ClusterIp {
            v4: Some("10.96.0.60".parse().unwrap()),
            v6: None,
        },
        vec![port("http", Proto::Tcp, 80), port("dns", Proto::Udp, 53)],
    ));
    t.apply_service(spec(
        "ext.default",
        Kind::ExternalName("example.org".into()),
        vec![],
    ));
    t.apply_service(spec(
        "alias.default",
        Kind::ExternalName("frontend.default.svc.cluster.local".into()),
        vec![],
    ));
    t.apply_service(spec(
        "db.default",
        Kind::Headless,
        vec![port("pg", Proto::Tcp, 5432)],
    ));
    t.apply_slice(
        "db.default",
        "db-1",
        Slice {
            ports: vec![port("pg", Proto::Tcp, 15432)].into(),
            endpoints: vec![
                Endpoint {
                    ip: "10.244.1.5".parse().unwrap(),
                    hostname: Some("db-0".into()),
                    ready: true,
                },
                Endpoint {
                    ip: "10.244.1.6".parse().unwrap(),
                    hostname: None,
                    ready: true,
                },
                Endpoint {
                    ip: "10.244.1.7".parse().unwrap(),
                    hostname: Some("db-2".into()),
                    ready: false,
                },
            ]
            .into(),
        },
    );
    t.apply_service(spec("empty.default", Kind::Headless, vec![]));
    t.apply_slice(
        "empty.default",
        "empty-1",
        Slice {
            ports: vec![].into(),
            endpoints: vec![Endpoint {
                ip: "10.244.2.1".parse().unwrap(),
                hostname: None,
                ready: false,
            }]
            .into(),
        },
    );
    let label63 = "a".repeat(63);
    t.apply_service(spec(
        &format!("{label63}.{label63}"),
        Kind::ClusterIp {
            v4: Some("10.96.0.63".parse().unwrap()),
            v6: None,
        },
        vec![],
    ));
    let mut ix = (*t.publish()).clone();
    ix.serial = 7;
    ix
}

fn zone() -> Zone {
    Zone::new("cluster.local", 5).unwrap()
}

/// dig-like rendering: `RCODE flags | answers | authority | additional`.
fn render(bytes: &[u8]) -> String {
    let m = Message::from_vec(bytes).expect("reply parses");
    let sec = |rs: &[Record]| {
        rs.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut flags = String::new();
    if m.authoritative {
        flags.push_str("aa ");
    }
    if m.truncation {
        flags.push_str("tc ");
    }
    format!(
        "{:?} {}| {} | {} | {}",
        m.response_code,
        flags,
        sec(&m.answers),
        sec(&m.authorities),
        sec(&m.additionals)
    )
}

fn ask(
    ix: &Index,
    name: &str,
    qtype: RecordType,
    transport: Transport,
    edns: Option<u16>,
) -> String {
    let q = query(&Name::from_ascii(name).unwrap(), qtype, 0x1234, edns);
    let a = answer(ix, &zone(), &q.to_vec().unwrap(), transport);
    match a.outcome {
        Outcome::Reply(b) => render(&b),
        Outcome::Forward(m) => format!("forward {}", m.queries[0].name()),
        Outcome::Drop => "drop".into(),
    }
}

const SOA_REC: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5";

#[test]
fn records() {
    let ix = fixture();
    use RecordType::*;
    let cases: Vec<(&str, RecordType, String)> = vec![
        ("redis-master.my-ns.svc.cluster.local.", A,
         "NoError aa | redis-master.my-ns.svc.cluster.local. 5 IN A 10.96.0.50 |  | ".into()),
        ("REDIS-Master.My-NS.svc.Cluster.Local.", A,
         "NoError aa | REDIS-Master.My-NS.svc.Cluster.Local. 5 IN A 10.96.0.50 |  | ".into()),
        ("redis-master.my-ns.svc.cluster.local.", AAAA,
         "NoError aa | redis-master.my-ns.svc.cluster.local. 5 IN AAAA fd00::50 |  | ".into()),
        ("frontend.default.svc.cluster.local.", AAAA, format!("NoError aa |  | {SOA_REC} | ")),
        ("frontend.default.svc.cluster.local.", TXT, format!("NoError aa |  | {SOA_REC} | ")),
        ("nope.default.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("frontend.nope.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("default.svc.cluster.local.", A, format!("NoError aa |  | {SOA_REC} | ")),
        ("nope.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("svc.cluster.local.", A, format!("NoError aa |  | {SOA_REC} | ")),
        ("x.y.z.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("cluster.local.", SOA, format!("NoError aa | {SOA_REC} |  | ")),
        ("cluster.local.", NS, "NoError aa | cluster.local. 5 IN NS ns.dns.cluster.local. |  | ".into()),
        ("other.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("dns-version.cluster.local.", TXT, "NoError aa | dns-version.cluster.local. 5 IN TXT 1.1.0 |  | ".into()),
        ("dns-version.cluster.local.", A, format!("NoError aa |  | {SOA_REC} | ")),
        // SRV for named ports, ClusterIP: target is the Service, address in additional.
        ("_http._tcp.frontend.default.svc.cluster.local.", SRV,
         "NoError aa | _http._tcp.frontend.default.svc.cluster.local. 5 IN SRV 0 100 80 frontend.default.svc.cluster.local. |  | \
          frontend.default.svc.cluster.local. 5 IN A 10.96.0.60".into()),
        ("_dns._udp.frontend.default.svc.cluster.local.", SRV,
         "NoError aa | _dns._udp.frontend.default.svc.cluster.local. 5 IN SRV 0 100 53 frontend.default.svc.cluster.local. |  | \
          frontend.default.svc.cluster.local. 5 IN A 10.96.0.60".into()),
        ("_dns._tcp.frontend.default.svc.cluster.local.", SRV, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("_http._tcp.frontend.default.svc.cluster.local.", A, format!("NoError aa |  | {SOA_REC} | ")),
        // Headless: ready endpoints only, hostnames or dashed addresses.
        ("db.default.svc.cluster.local.", A,
         "NoError aa | db.default.svc.cluster.local. 5 IN A 10.244.1.5; db.default.svc.cluster.local. 5 IN A 10.244.1.6 |  | ".into()),
        ("db-0.db.default.svc.cluster.local.", A,
         "NoError aa | db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5 |  | ".into()),
        ("10-244-1-6.db.default.svc.cluster.local.", A,
         "NoError aa | 10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6 |  | ".into()),
        ("db-2.db.default.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("db-0.frontend.default.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("_pg._tcp.db.default.svc.cluster.local.", SRV,
         "NoError aa | _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local.; \
          _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 10-244-1-6.db.default.svc.cluster.local. |  | \
          db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5; 10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6".into()),
        // Headless with only unready endpoints: no name.
        ("empty.default.svc.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        // ExternalName: CNAME; a target inside the zone comes with its address.
        ("ext.default.svc.cluster.local.", A,
         "NoError aa | ext.default.svc.cluster.local. 5 IN CNAME example.org. |  | ".into()),
        ("ext.default.svc.cluster.local.", AAAA,
         "NoError aa | ext.default.svc.cluster.local. 5 IN CNAME example.org. |  | ".into()),
        ("alias.default.svc.cluster.local.", A,
         "NoError aa | alias.default.svc.cluster.local. 5 IN CNAME frontend.default.svc.cluster.local.; \
          frontend.default.svc.cluster.local. 5 IN A 10.96.0.60 |  | ".into()),
        ("alias.default.svc.cluster.local.", CNAME,
         "NoError aa | alias.default.svc.cluster.local. 5 IN CNAME frontend.default.svc.cluster.local. |  | ".into()),
        // Pod records (pods insecure: any a-b-c-d name).
        ("10-244-0-9.default.pod.cluster.local.", A,
         "NoError aa | 10-244-0-9.default.pod.cluster.local. 5 IN A 10.244.0.9 |  | ".into()),
        ("fd00--9.default.pod.cluster.local.", AAAA,
         "NoError aa | fd00--9.default.pod.cluster.local. 5 IN AAAA fd00::9 |  | ".into()),
        ("10-244-0-9.default.pod.cluster.local.", AAAA, format!("NoError aa |  | {SOA_REC} | ")),
        ("10-244-0-999.default.pod.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        ("web.default.pod.cluster.local.", A, format!("NXDomain aa |  | {SOA_REC} | ")),
        // PTR for ClusterIPs and headless endpoints; unknown addresses go upstream.
        ("50.0.96.10.in-addr.arpa.", PTR,
         "NoError aa | 50.0.96.10.in-addr.arpa. 5 IN PTR redis-master.my-ns.svc.cluster.local. |  | ".into()),
        ("5.1.244.10.in-addr.arpa.", PTR,
         "NoError aa | 5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local. |  | ".into()),
        ("6.1.244.10.in-addr.arpa.", PTR,
         "NoError aa | 6.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-6.db.default.svc.cluster.local. |  | ".into()),
        ("0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", PTR,
         "NoError aa | 0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR redis-master.my-ns.svc.cluster.local. |  | ".into()),
        ("7.1.244.10.in-addr.arpa.", PTR, "forward 7.1.244.10.in-addr.arpa.".into()),
        ("example.org.", A, "forward example.org.".into()),
        ("cluster.localx.", A, "forward cluster.localx.".into()),
    ];
    for (name, qtype, want) in cases {
        assert_eq!(
            ask(&ix, name, qtype, Transport::Udp, None),
            want,
            "{name} {qtype}"
        );
    }
}

#[test]
fn names_made_of_63_character_labels() {
    let ix = fixture();
    let l = "a".repeat(63);
    let name = format!("{l}.{l}.svc.cluster.local.");
    assert_eq!(
        ask(&ix, &name, RecordType::A, Transport::Udp, None),
        format!("NoError aa | {name} 5 IN A 10.96.0.63 |  | ")
    );
}

#[test]
fn truncation_and_edns() {
    // 40 ready endpoints: 40 A records of 16+ bytes do not fit in 512 bytes.
    let mut t = Tracker::new();
    t.apply_service(ServiceSpec {
        key: "big.default".into(),
        kind: Kind::Headless,
        ports: [].into(),
        publish_not_ready: false,
    });
    let eps: Vec<Endpoint> = (0..40)
        .map(|i| Endpoint {
            ip: IpAddr::V4(Ipv4Addr::new(10, 244, 3, i)),
            hostname: None,
            ready: true,
        })
        .collect();
    t.apply_slice(
        "big.default",
        "big-1",
        Slice {
            ports: [].into(),
            endpoints: eps.into(),
        },
    );
    let ix = t.publish();
    let name = "big.default.svc.cluster.local.";
    let count = |s: &str| s.matches(" IN A ").count();
    let cases: &[(Transport, Option<u16>, &str, usize)] = &[
        (Transport::Udp, None, "NoError aa tc ", 0),
        (Transport::Udp, Some(512), "NoError aa tc ", 0),
        (Transport::Udp, Some(4096), "NoError aa ", 40),
        (Transport::Tcp, None, "NoError aa ", 40),
    ];
    for (tr, edns, head, n) in cases {
        let got = ask(&ix, name, RecordType::A, *tr, *edns);
        assert!(got.starts_with(head), "{tr:?} {edns:?}: {got}");
        assert_eq!(count(&got), *n, "{tr:?} {edns:?}");
    }
    // The reply carries OPT exactly when the query did.
    let q = query(
        &Name::from_ascii(name).unwrap(),
        RecordType::A,
        1,
        Some(4096),
    );
    let Outcome::Reply(b) = answer(&ix, &zone(), &q.to_vec().unwrap(), Transport::Udp).outcome
    else {
        panic!()
    };
    assert_eq!(
        Message::from_vec(&b).unwrap().edns.map(|e| e.max_payload()),
        Some(MAX_UDP_PAYLOAD)
    );
}

#[test]
fn malformed_packets() {
    let ix = fixture();
    let good = query(
        &Name::from_ascii("frontend.default.svc.cluster.local.").unwrap(),
        RecordType::A,
        0xabcd,
        None,
    )
    .to_vec()
    .unwrap();
    let mut two_questions = query(
        &Name::from_ascii("a.").unwrap(),
        RecordType::A,
        0xabcd,
        None,
    );
    two_questions.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
    let mut notify = query(
        &Name::from_ascii("a.").unwrap(),
        RecordType::A,
        0xabcd,
        None,
    );
    notify.metadata.op_code = OpCode::Notify;
    let mut edns1 = query(
        &Name::from_ascii("a.cluster.local.").unwrap(),
        RecordType::A,
        0xabcd,
        Some(1232),
    );
    if let Some(e) = edns1.edns.as_mut() {
        e.set_version(1);
    }
    let mut response = good.clone();
    response[2] |= 0x80;
    let mut chaos = query(
        &Name::from_ascii("a.cluster.local.").unwrap(),
        RecordType::A,
        0xabcd,
        None,
    );
    chaos.queries[0].set_query_class(DNSClass::CH);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "drop"),
        ("short header", good[..11].to_vec(), "drop"),
        (
            "header only, count says one question",
            good[..12].to_vec(),
            "FormErr id=43981",
        ),
        ("cut in the name", good[..20].to_vec(), "FormErr id=43981"),
        (
            "label past the end",
            [&good[..12], &[63, b'a']].concat(),
            "FormErr id=43981",
        ),
        (
            "pointer loop",
            [&good[..12], &[0xc0, 12, 0, 1, 0, 1]].concat(),
            "FormErr id=43981",
        ),
        ("a response", response, "drop"),
        (
            "two questions",
            two_questions.to_vec().unwrap(),
            "FormErr id=43981",
        ),
        ("notify", notify.to_vec().unwrap(), "NotImp id=43981"),
        (
            "edns version 1",
            edns1.to_vec().unwrap(),
            "BADVERS id=43981",
        ),
        ("chaos class", chaos.to_vec().unwrap(), "Refused id=43981"),
        ("good", good.clone(), "NoError id=43981"),
    ];
    for (what, pkt, want) in cases {
        let got = match answer(&ix, &zone(), &pkt, Transport::Udp).outcome {
            Outcome::Reply(b) => {
                let m = Message::from_vec(&b).expect("reply parses");
                // 16 is both BADVERS (in OPT) and BADSIG (TSIG); the decoder names it BADSIG.
                let rc = match u16::from(m.response_code) {
                    16 => "BADVERS".to_string(),
                    _ => format!("{:?}", m.response_code),
                };
                format!("{rc} id={}", m.id)
            }
            Outcome::Forward(_) => "forward".into(),
            Outcome::Drop => "drop".into(),
        };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn random_packets_never_panic() {
    use rand::{Rng, SeedableRng};
    let ix = fixture();
    let z = zone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let seed = query(
        &Name::from_ascii("_pg._tcp.db.default.svc.cluster.local.").unwrap(),
        RecordType::SRV,
        7,
        Some(1232),
    )
    .to_vec()
    .unwrap();
    let mut replies = 0;
    for i in 0..20_000 {
        let pkt: Vec<u8> = if i % 2 == 0 {
            let n = rng.random_range(0..80);
            (0..n).map(|_| rng.random()).collect()
        } else {
            let mut p = seed.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            p.truncate(rng.random_range(0..=p.len()));
            p
        };
        if let Outcome::Reply(b) = answer(&ix, &z, &pkt, Transport::Udp).outcome {
            assert!(b.len() <= 1232);
            assert!(Message::from_vec(&b).is_ok(), "our reply to {pkt:?} parses");
            replies += 1;
        }
    }
    assert!(
        replies > 1000,
        "most mutated queries still get an answer: {replies}"
    );
}

#[test]
fn dashed_names() {
    let cases = [
        ("10.1.2.3", "10-1-2-3"),
        ("fd00::1", "fd00--1"),
        ("fd00::", "fd00--0"),
        ("2001:db8:1::ab", "2001-db8-1--ab"),
    ];
    for (ip, want) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(dashed(ip), want);
        assert_eq!(undashed(want.as_bytes()), Some(ip), "{want}");
    }
}

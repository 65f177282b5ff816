//! Integration tests: a real API server on loopback, our DNS server on a random loopback port,
//! and the real `dig` over UDP and TCP. Forwarding goes only to fake upstreams on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use svcnet_dns::{Bound, Config};
use svcnet_testkit::Cluster;

struct Dns {
    addr: SocketAddr,
    metrics: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_dns(client: Client, upstreams: Vec<SocketAddr>) -> Dns {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), upstreams);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.udp_workers = 2;
    let (btx, brx) = tokio::sync::oneshot::channel::<Bound>();
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let r = svcnet_dns::run(
            cfg,
            client,
            move |b| {
                let _ = btx.send(b);
            },
            async move {
                let _ = srx.await;
            },
        )
        .await;
        r.expect("dns server runs");
    });
    let b = brx.await.expect("bound");
    Dns {
        addr: b.dns,
        metrics: b.metrics.unwrap(),
        _stop: stx,
    }
}

/// Runs dig with short timeouts; returns stdout.
async fn dig(port: u16, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=2"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("dig is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer section, one record per line, TTLs included.
async fn answers(port: u16, tcp: bool, name: &str, qtype: &str) -> String {
    let mut a = vec!["+noall", "+answer", name, qtype];
    if tcp {
        a.push("+tcp");
    }
    normalize(&dig(port, &a).await)
}

/// `status | answer | authority` from the full dig output.
async fn full(port: u16, tcp: bool, name: &str, qtype: &str) -> String {
    let mut a = vec!["+noall", "+comments", "+answer", "+authority", name, qtype];
    if tcp {
        a.push("+tcp");
    }
    let out = dig(port, &a).await;
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no reply")
        .to_string();
    let recs: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(norm_line)
        .collect();
    format!("{status} | {}", recs.join(" ; "))
}

fn norm_line(l: &str) -> String {
    l.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn normalize(s: &str) -> String {
    let mut v: Vec<String> = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(norm_line)
        .collect();
    v.sort();
    v.join("\n")
}

/// Polls `f` until it returns `want` or `within` passes; returns the last value.
async fn eventually<F, Fut>(within: Duration, want: &str, mut f: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let end = Instant::now() + within;
    loop {
        let got = f().await;
        if got == want || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn namespace(c: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

async fn service(c: &Client, ns: &str, body: serde_json::Value) -> Service {
    let s: Service = serde_json::from_value(body).unwrap();
    Api::<Service>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("service")
}

async fn slice(c: &Client, ns: &str, body: serde_json::Value) {
    let s: EndpointSlice = serde_json::from_value(body).unwrap();
    Api::<EndpointSlice>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("slice");
}

fn cluster_ip(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("allocated ClusterIP")
}

fn ptr_name(ip: &str) -> String {
    let o: Vec<&str> = ip.split('.').rev().collect();
    format!("{}.in-addr.arpa.", o.join("."))
}

const SOA: &str = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_over_udp_and_tcp() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    namespace(&c, "my-ns").await;
    let redis = service(
        &c,
        "my-ns",
        json!({"metadata":{"name":"redis-master"},"spec":{"ports":[{"name":"redis","port":6379}]}}),
    )
    .await;
    let rip = cluster_ip(&redis);
    service(&c, "default", json!({"metadata":{"name":"db"},"spec":{"clusterIP":"None","ports":[{"name":"pg","port":5432}]}}))
        .await;
    slice(
        &c,
        "default",
        json!({"metadata":{"name":"db-abc","labels":{"kubernetes.io/service-name":"db"}},
               "addressType":"IPv4","ports":[{"name":"pg","port":15432,"protocol":"TCP"}],
               "endpoints":[
                 {"addresses":["10.244.1.5"],"hostname":"db-0","conditions":{"ready":true}},
                 {"addresses":["10.244.1.6"],"conditions":{"ready":true}},
                 {"addresses":["10.244.1.7"],"hostname":"db-2","conditions":{"ready":false}}]}),
    )
    .await;
    service(&c, "default", json!({"metadata":{"name":"ext"},"spec":{"type":"ExternalName","externalName":"www.example.org"}}))
        .await;
    service(
        &c,
        "default",
        json!({"metadata":{"name":"alias"},"spec":{"type":"ExternalName","externalName":"redis-master.my-ns.svc.cluster.local"}}),
    )
    .await;
    service(
        &c,
        "default",
        json!({"metadata":{"name":"lonely"},"spec":{"clusterIP":"None"}}),
    )
    .await;
    slice(
        &c,
        "default",
        json!({"metadata":{"name":"lonely-1","labels":{"kubernetes.io/service-name":"lonely"}},
               "addressType":"IPv4","endpoints":[{"addresses":["10.244.2.9"],"conditions":{"ready":false}}]}),
    )
    .await;
    let long = "a".repeat(63);
    namespace(&c, &long).await;
    let l = service(
        &c,
        &long,
        json!({"metadata":{"name":long},"spec":{"ports":[{"port":80}]}}),
    )
    .await;
    let lip = cluster_ip(&l);

    let dns = start_dns(c.clone(), vec![]).await;
    let port = dns.addr.port();
    let fqdn = "redis-master.my-ns.svc.cluster.local.";
    let want = format!("{fqdn} 5 IN A {rip}");
    assert_eq!(
        eventually(Duration::from_secs(5), &want, || answers(
            port, false, fqdn, "A"
        ))
        .await,
        want
    );

    let long_name = format!("{long}.{long}.svc.cluster.local.");
    let cases: Vec<(&str, &str, String)> = vec![
        (fqdn, "A", format!("NOERROR | {fqdn} 5 IN A {rip}")),
        ("REDIS-MASTER.My-Ns.SVC.cluster.LOCAL.", "A", format!("NOERROR | REDIS-MASTER.My-Ns.SVC.cluster.LOCAL. 5 IN A {rip}")),
        (fqdn, "AAAA", format!("NOERROR | {SOA} 1 7200 1800 86400 5")),
        ("_redis._tcp.redis-master.my-ns.svc.cluster.local.", "SRV",
         "NOERROR | _redis._tcp.redis-master.my-ns.svc.cluster.local. 5 IN SRV 0 100 6379 redis-master.my-ns.svc.cluster.local.".into()),
        ("db.default.svc.cluster.local.", "A",
         "NOERROR | db.default.svc.cluster.local. 5 IN A 10.244.1.5 ; db.default.svc.cluster.local. 5 IN A 10.244.1.6".into()),
        ("db-0.db.default.svc.cluster.local.", "A", "NOERROR | db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5".into()),
        ("10-244-1-6.db.default.svc.cluster.local.", "A",
         "NOERROR | 10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6".into()),
        ("db-2.db.default.svc.cluster.local.", "A", format!("NXDOMAIN | {SOA} 1 7200 1800 86400 5")),
        ("lonely.default.svc.cluster.local.", "A", format!("NXDOMAIN | {SOA} 1 7200 1800 86400 5")),
        ("_pg._tcp.db.default.svc.cluster.local.", "SRV",
         "NOERROR | _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.default.svc.cluster.local. ; \
          _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 15432 10-244-1-6.db.default.svc.cluster.local.".into()),
        ("ext.default.svc.cluster.local.", "A", "NOERROR | ext.default.svc.cluster.local. 5 IN CNAME www.example.org.".into()),
        ("alias.default.svc.cluster.local.", "A",
         format!("NOERROR | alias.default.svc.cluster.local. 5 IN CNAME {fqdn} ; {fqdn} 5 IN A {rip}")),
        ("dns-version.cluster.local.", "TXT", "NOERROR | dns-version.cluster.local. 5 IN TXT \"1.1.0\"".into()),
        ("10-244-0-9.default.pod.cluster.local.", "A", "NOERROR | 10-244-0-9.default.pod.cluster.local. 5 IN A 10.244.0.9".into()),
        ("nope.default.svc.cluster.local.", "A", format!("NXDOMAIN | {SOA} 1 7200 1800 86400 5")),
        (&long_name, "A", format!("NOERROR | {long_name} 5 IN A {lip}")),
    ];
    let ptr_r = ptr_name(&rip);
    let ptr_cases = [
        (ptr_r.clone(), format!("NOERROR | {ptr_r} 5 IN PTR {fqdn}")),
        (
            "5.1.244.10.in-addr.arpa.".to_string(),
            "NOERROR | 5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local.".into(),
        ),
    ];
    for tcp in [false, true] {
        for (name, t, want) in &cases {
            // The SOA serial moves with every change; compare without it.
            let got = full(port, tcp, name, t).await;
            let got = strip_serial(&got);
            assert_eq!(got, *want, "{name} {t} tcp={tcp}");
        }
        for (name, want) in &ptr_cases {
            assert_eq!(
                full(port, tcp, name, "PTR").await,
                *want,
                "{name} tcp={tcp}"
            );
        }
    }
}

/// Replaces the SOA serial (the number after the rname) with 1.
fn strip_serial(s: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut words = s.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push(w.to_string());
        if w == "hostmaster.cluster.local." && words.peek().is_some() {
            words.next();
            out.push("1".into());
        }
    }
    out.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_forms_resolve_like_a_pod() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    namespace(&c, "my-ns").await;
    let redis = service(
        &c,
        "my-ns",
        json!({"metadata":{"name":"redis-master"},"spec":{"ports":[{"port":6379}]}}),
    )
    .await;
    let frontend = service(
        &c,
        "my-ns",
        json!({"metadata":{"name":"frontend-svc"},"spec":{"ports":[{"port":80}]}}),
    )
    .await;
    let dns = start_dns(c.clone(), vec![]).await;
    let port = dns.addr.port();
    let rip = cluster_ip(&redis);
    let fip = cluster_ip(&frontend);
    let want = format!("redis-master.my-ns.svc.cluster.local. 5 IN A {rip}");
    assert_eq!(
        eventually(Duration::from_secs(5), &want, || answers(
            port,
            false,
            "redis-master.my-ns.svc.cluster.local.",
            "A"
        ))
        .await,
        want
    );
    // A pod's resolv.conf (as the agent writes it), bind-mounted over /etc/resolv.conf in a
    // private mount namespace so dig's +search uses it.
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("resolv.conf");
    std::fs::write(&rc, "nameserver 127.0.0.1\nsearch my-ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
        .unwrap();
    for (name, want) in [
        (
            "redis-master",
            format!("redis-master.my-ns.svc.cluster.local. 5 IN A {rip}"),
        ),
        (
            "redis-master.my-ns",
            format!("redis-master.my-ns.svc.cluster.local. 5 IN A {rip}"),
        ),
        (
            "redis-master.my-ns.svc.cluster.local",
            format!("redis-master.my-ns.svc.cluster.local. 5 IN A {rip}"),
        ),
        (
            "frontend-svc",
            format!("frontend-svc.my-ns.svc.cluster.local. 5 IN A {fip}"),
        ),
    ] {
        for tcp in ["+notcp", "+tcp"] {
            let script = format!(
                "mount --bind {} /etc/resolv.conf && dig -p {port} +tries=1 +time=2 +search +ndots=5 +noall +answer {tcp} {name} A",
                rc.display()
            );
            let out = tokio::process::Command::new("unshare")
                .args(["-m", "sh", "-c", &script])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                normalize(&String::from_utf8_lossy(&out.stdout)),
                want,
                "{name} {tcp}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalname_target_change_then_type_change_within_a_second() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    service(&c, "default", json!({"metadata":{"name":"ext"},"spec":{"type":"ExternalName","externalName":"one.example.org"}}))
        .await;
    let dns = start_dns(c.clone(), vec![]).await;
    let port = dns.addr.port();
    let name = "ext.default.svc.cluster.local.";
    let want = format!("{name} 5 IN CNAME one.example.org.");
    assert_eq!(
        eventually(Duration::from_secs(5), &want, || answers(
            port, false, name, "A"
        ))
        .await,
        want
    );

    let api = Api::<Service>::namespaced(c.clone(), "default");
    let pp = PatchParams::default();
    api.patch(
        "ext",
        &pp,
        &Patch::Merge(json!({"spec":{"externalName":"two.example.org"}})),
    )
    .await
    .unwrap();
    let want = format!("{name} 5 IN CNAME two.example.org.");
    for tcp in [false, true] {
        assert_eq!(
            eventually(Duration::from_secs(1), &want, || answers(
                port, tcp, name, "A"
            ))
            .await,
            want,
            "tcp={tcp}"
        );
    }

    let s = api
        .patch(
            "ext",
            &pp,
            &Patch::Merge(json!({"spec":{"type":"ClusterIP","externalName":null,"ports":[{"name":"http","port":80}]}})),
        )
        .await
        .unwrap();
    let ip = cluster_ip(&s);
    let want = format!("{name} 5 IN A {ip}");
    for tcp in [false, true] {
        assert_eq!(
            eventually(Duration::from_secs(1), &want, || answers(
                port, tcp, name, "A"
            ))
            .await,
            want,
            "tcp={tcp}"
        );
    }
    let ptr = ptr_name(&ip);
    assert_eq!(
        answers(port, false, &ptr, "PTR").await,
        format!("{ptr} 5 IN PTR {name}")
    );
}

/// A fake upstream on loopback: answers every A query with 192.0.2.1 (TTL 60) and counts queries.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((len, peer)) = sock.recv_from(&mut buf).await {
            n.fetch_add(1, Ordering::SeqCst);
            let Ok(q) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut r = Message::response(q.id, q.op_code);
            r.metadata.message_type = MessageType::Response;
            r.metadata.response_code = ResponseCode::NoError;
            r.add_queries(q.queries.iter().cloned());
            if let Some(qq) = q.queries.first() {
                r.add_answer(Record::from_rdata(
                    qq.name().clone(),
                    60,
                    RData::A(A("192.0.2.1".parse().unwrap())),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_names_are_forwarded_and_cached_and_servfail_without_upstream() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let (up, count) = fake_upstream().await;
    let dns = start_dns(c.clone(), vec![up]).await;
    let port = dns.addr.port();
    for tcp in [false, true] {
        let got = answers(port, tcp, "www.example.org.", "A").await;
        let ttl: u32 = got
            .split(' ')
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        assert!(
            got.starts_with("www.example.org. ") && got.ends_with(" IN A 192.0.2.1"),
            "tcp={tcp}: {got}"
        );
        assert!(ttl > 55 && ttl <= 60, "{got}");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the second query came from the cache"
    );
    // Unknown reverse names fall through to the upstream too.
    assert_eq!(
        answers(port, false, "1.2.0.192.in-addr.arpa.", "A").await,
        "1.2.0.192.in-addr.arpa. 60 IN A 192.0.2.1"
    );

    // An upstream port with nothing listening: SERVFAIL, promptly.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dns2 = start_dns(c.clone(), vec![dead]).await;
    for tcp in [false, true] {
        let t = Instant::now();
        let got = full(dns2.addr.port(), tcp, "www.example.org.", "A").await;
        assert_eq!(got, "SERVFAIL | ", "tcp={tcp}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            t.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_lives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let dns = start_dns(c.clone(), vec![]).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns.addr).await.unwrap();
    let cases: &[(&str, &[u8], Option<u8>)] = &[
        ("empty", b"", None),
        ("short", b"\x12\x34\x01", None),
        (
            "header claims a question",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            Some(1),
        ),
        (
            "label runs off the end",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",
            Some(1),
        ),
        (
            "pointer loop",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
            Some(1),
        ),
        (
            "a response",
            b"\x12\x34\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00",
            None,
        ),
    ];
    let mut buf = [0u8; 1500];
    for (what, pkt, rcode) in cases {
        sock.send(pkt).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await;
        match (rcode, got) {
            (Some(rc), Ok(Ok(n))) => {
                assert!(n >= 12, "{what}");
                assert_eq!(&buf[..2], b"\x12\x34", "{what}: same ID");
                assert_eq!(buf[3] & 0x0f, *rc, "{what}: FORMERR");
            }
            (None, Err(_)) => {}
            (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
        }
    }
    // TCP: a garbage message gets FORMERR on the same connection.
    let mut t = tokio::net::TcpStream::connect(dns.addr).await.unwrap();
    t.write_all(b"\x00\x0d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff")
        .await
        .unwrap();
    let n = t.read_u16().await.unwrap() as usize;
    let mut r = vec![0u8; n];
    t.read_exact(&mut r).await.unwrap();
    assert_eq!((&r[..2], r[3] & 0x0f), (&b"\x12\x34"[..], 1));
    // Still serving.
    assert_eq!(
        answers(dns.addr.port(), false, "dns-version.cluster.local.", "TXT").await,
        "dns-version.cluster.local. 5 IN TXT \"1.1.0\""
    );
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_metrics() {
    let cluster = Cluster::start().await;
    let c = cluster.client().await;
    let dns = start_dns(c.clone(), vec![]).await;
    let h = http_get(dns.metrics, "/healthz").await;
    assert!(
        h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"),
        "{h}"
    );
    let ready = eventually(Duration::from_secs(5), "HTTP/1.1 200 OK", || async {
        http_get(dns.metrics, "/readyz")
            .await
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
    .await;
    assert_eq!(ready, "HTTP/1.1 200 OK");
    answers(
        dns.addr.port(),
        false,
        "kubernetes.default.svc.cluster.local.",
        "A",
    )
    .await;
    answers(
        dns.addr.port(),
        true,
        "nope.default.svc.cluster.local.",
        "A",
    )
    .await;
    let m = http_get(dns.metrics, "/metrics").await;
    for line in [
        "svcnet_dns_requests_total{type=\"A\",rcode=\"NOERROR\",proto=\"udp\"} 1",
        "svcnet_dns_requests_total{type=\"A\",rcode=\"NXDOMAIN\",proto=\"tcp\"} 1",
        "svcnet_dns_request_duration_seconds_count 2",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(
        http_get(dns.metrics, "/nope")
            .await
            .starts_with("HTTP/1.1 404 Not Found\r\n")
    );
}

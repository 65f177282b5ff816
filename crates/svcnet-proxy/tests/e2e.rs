//! End to end, per mode: two node namespaces with pods, a real API server, the proxy in-process in each node namespace.
//!
//! Topology (all inside namespaces this test creates; the host namespace gets nothing):
//! n1 (172.18.0.2, bridge 10.244.1.1/24) with pods pa, pb and a client pod pz;
//! n2 (172.18.0.3, bridge 10.244.2.1/24) with pod pc; n1 and n2 joined by a veth.
//! Every link is dual-stack: nodes fd00:172:18::2 and ::3, pods in
//! fd00:10:244:1::/64 and fd00:10:244:2::/64, services in fd00:10:96::/112
//! (addresses without DAD, so they work at once; ULA only, no default route).
//! Each pod runs a TCP server on 8080 and a UDP server on 5353 answering with
//! its name, plus " v6" when asked over IPv6.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use svcnet_proxy::config::{Mode, ProxyConfig};
use svcnet_proxy::proxy::{self, Worker};
use svcnet_proxy::tracker::Tracker;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("command runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every namespace of one test; deleted (with their links and rules) on drop, also on failure.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    /// Per-pod stop flags (to take one pod down).
    pod_stop: BTreeMap<String, Arc<AtomicBool>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

const PODS: &[(&str, &str, &str)] = &[
    ("pa", "n1", "10.244.1.2"),
    ("pb", "n1", "10.244.1.3"),
    ("pc", "n2", "10.244.2.2"),
    ("pz", "n1", "10.244.1.9"),
];

/// A pod's IPv6 address: the same host part in its node's /64.
fn pod_ip6(pod: &str) -> String {
    let (_, node, ip) = PODS.iter().find(|p| p.0 == pod).expect("known pod");
    let host = ip.rsplit('.').next().expect("host part");
    let net = if *node == "n1" { 1 } else { 2 };
    format!("fd00:10:244:{net}::{host}")
}

fn sysctl(ns: &str, kv: &str) {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", kv]);
}

impl Lab {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn build(tag: &str) -> Lab {
        let prefix = format!(
            "svct-{}-{}{}",
            std::process::id(),
            tag,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            pod_stop: BTreeMap::new(),
        };
        for short in ["n1", "n2", "pa", "pb", "pc", "pz"] {
            let ns = lab.ns(short);
            sh(&["ip", "netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            // Before any link exists, so every interface starts without DAD.
            for k in ["all", "default"] {
                sysctl(&ns, &format!("net.ipv6.conf.{k}.accept_dad=0"));
            }
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let (n1, n2) = (lab.ns("n1"), lab.ns("n2"));
        for ns in [&n1, &n2] {
            // Pods and service routes share br0: redirects would eat the ICMP rate limit that rejects need.
            for k in ["all", "default"] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{k}.send_redirects=0"),
                ]);
            }
            // IPv6 has no send_redirects switch; redirects and rejects share the
            // per-peer ICMPv6 rate limit, so lift it inside the lab's nodes.
            sysctl(ns, "net.ipv6.icmp.ratelimit=0");
            sysctl(ns, "net.ipv6.conf.all.forwarding=1");
        }
        sh(&[
            "ip", "-n", &n1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &n2,
        ]);
        for (ns, ip, bridge, other_pods, other, v6) in [
            (
                &n1,
                "172.18.0.2/24",
                "10.244.1.1/24",
                "10.244.2.0/24",
                "172.18.0.3",
                [
                    "fd00:172:18::2/64",
                    "fd00:10:244:1::1/64",
                    "fd00:10:244:2::/64",
                    "fd00:172:18::3",
                ],
            ),
            (
                &n2,
                "172.18.0.3/24",
                "10.244.2.1/24",
                "10.244.1.0/24",
                "172.18.0.2",
                [
                    "fd00:172:18::3/64",
                    "fd00:10:244:2::1/64",
                    "fd00:10:244:1::/64",
                    "fd00:172:18::2",
                ],
            ),
        ] {
            let [ip6, bridge6, other_pods6, other6] = v6;
            sh(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
            sh(&["ip", "-n", ns, "addr", "add", ip6, "dev", "eth0", "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&[
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]);
            sh(&["ip", "-n", ns, "addr", "add", bridge, "dev", "br0"]);
            sh(&[
                "ip", "-n", ns, "addr", "add", bridge6, "dev", "br0", "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "br0", "up"]);
            sh(&["ip", "-n", ns, "route", "add", other_pods, "via", other]);
            sh(&["ip", "-n", ns, "route", "add", other_pods6, "via", other6]);
            // Local processes need a route for service addresses before DNAT.
            sh(&["ip", "-n", ns, "route", "add", "10.96.0.0/16", "dev", "br0"]);
            sh(&[
                "ip",
                "-n",
                ns,
                "route",
                "add",
                "fd00:10:96::/112",
                "dev",
                "br0",
            ]);
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        for (name, node, ip) in PODS {
            let (pns, nns) = (lab.ns(name), lab.ns(node));
            let gw = if *node == "n1" {
                "10.244.1.1"
            } else {
                "10.244.2.1"
            };
            let host_if = format!("v{name}");
            sh(&[
                "ip", "-n", &pns, "link", "add", "eth0", "type", "veth", "peer", "name", &host_if,
                "netns", &nns,
            ]);
            sh(&[
                "ip", "-n", &nns, "link", "set", &host_if, "master", "br0", "up",
            ]);
            sh(&[
                "ip",
                "-n",
                &pns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            sh(&[
                "ip",
                "-n",
                &pns,
                "addr",
                "add",
                &format!("{}/64", pod_ip6(name)),
                "dev",
                "eth0",
                "nodad",
            ]);
            sh(&["ip", "-n", &pns, "link", "set", "eth0", "up"]);
            // Only the lab's own prefixes, never a default route.
            for pfx in ["10.244.0.0/16", "10.96.0.0/16", "172.18.0.0/24"] {
                sh(&["ip", "-n", &pns, "route", "replace", pfx, "via", gw]);
            }
            let gw6 = if *node == "n1" {
                "fd00:10:244:1::1"
            } else {
                "fd00:10:244:2::1"
            };
            for pfx in ["fd00:10:244::/56", "fd00:10:96::/112", "fd00:172:18::/64"] {
                sh(&["ip", "-n", &pns, "route", "replace", pfx, "via", gw6]);
            }
            // The node routes service traffic back out br0 and IPv6 cannot stop
            // sending redirects; pods must not act on them (they would take a
            // service address for an on-link neighbour).
            for k in ["all", "default", "eth0"] {
                sysctl(&pns, &format!("net.ipv6.conf.{k}.accept_redirects=0"));
            }
            if *name != "pz" {
                let stop = Arc::new(AtomicBool::new(false));
                lab.pod_stop.insert(name.to_string(), stop.clone());
                serve(&pns, name, lab.stop.clone(), stop);
            }
        }
        lab
    }
}

fn netns_path(ns: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/netns/{ns}"))
}

fn enter(ns: &str) {
    let f = std::fs::File::open(netns_path(ns)).expect("netns file");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// The answer suffix: " v6" for a real IPv6 peer, nothing for IPv4 (mapped) ones.
fn v6_suffix(a: &SocketAddr) -> &'static str {
    match a {
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => " v6",
        _ => "",
    }
}

/// TCP :8080 and UDP :5353 servers (dual-stack sockets) answering with the pod name, until stopped.
fn serve(ns: &str, name: &str, all: Arc<AtomicBool>, this: Arc<AtomicBool>) {
    let (ns2, name2, all2, this2) = (ns.to_string(), name.to_string(), all.clone(), this.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ready_tx2 = ready_tx.clone();
    std::thread::spawn(move || {
        enter(&ns2);
        let l = std::net::TcpListener::bind("[::]:8080").expect("bind tcp");
        l.set_nonblocking(true).expect("nonblocking");
        let _ = ready_tx.send(());
        while !all2.load(Ordering::SeqCst) && !this2.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut c, peer)) => {
                    let _ = c.write_all(format!("{name2}{}\n", v6_suffix(&peer)).as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    let (ns3, name3) = (ns.to_string(), name.to_string());
    std::thread::spawn(move || {
        enter(&ns3);
        let s = UdpSocket::bind("[::]:5353").expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let _ = ready_tx2.send(());
        let mut buf = [0u8; 512];
        while !all.load(Ordering::SeqCst) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(format!("{name3}{}", v6_suffix(&from)).as_bytes(), from);
            }
        }
    });
    for _ in 0..2 {
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server started");
    }
}

/// Runs `f` on a thread inside `ns`.
async fn in_ns<T: Send + 'static>(ns: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            enter(&ns);
            f()
        })
        .join()
        .expect("client thread")
    })
    .await
    .expect("join")
}

/// One TCP request: the answering pod's name, or `refused` / `timeout`.
fn ask(addr: &str) -> String {
    ask_within(addr, Duration::from_millis(700))
}

/// [`ask`] with a given connect timeout.
fn ask_within(addr: &str, connect: Duration) -> String {
    let addr: SocketAddr = addr.parse().expect("addr");
    match TcpStream::connect_timeout(&addr, connect) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut out = String::new();
            match s.read_to_string(&mut out) {
                Ok(_) => out.trim().to_string(),
                Err(_) => "timeout".into(),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            "timeout".into()
        }
        Err(e) => format!("error: {e}"),
    }
}

async fn answers(ns: &str, addr: &str, n: usize) -> Vec<String> {
    let addr = addr.to_string();
    in_ns(ns.to_string(), move || (0..n).map(|_| ask(&addr)).collect()).await
}

async fn distinct(ns: &str, addr: &str, n: usize) -> BTreeSet<String> {
    answers(ns, addr, n).await.into_iter().collect()
}

/// Polls until `f` returns true (bounded).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn create_service(api: &Api<Service>, json: serde_json::Value) {
    let svc: Service = serde_json::from_value(json).expect("service json");
    api.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
}

/// Writes the slice of `svc` with these (pod, ready, serving, terminating) endpoints.
async fn put_slice(
    api: &Api<EndpointSlice>,
    svc: &str,
    proto: &str,
    port: u16,
    eps: &[(&str, bool, bool, bool)],
) {
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|(pod, ready, serving, terminating)| {
            let (_, node, ip) = PODS.iter().find(|p| p.0 == *pod).expect("known pod");
            serde_json::json!({"addresses": [ip], "nodeName": node,
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "default"}})
        })
        .collect();
    let body = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-slice"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": port, "protocol": proto}],
        "endpoints": endpoints,
    });
    api.patch(
        &format!("{svc}-slice"),
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(body),
    )
    .await
    .expect("apply slice");
}

fn ready(pods: &[&'static str]) -> Vec<(&'static str, bool, bool, bool)> {
    pods.iter().map(|p| (*p, true, true, false)).collect()
}

async fn run_mode(mode: Mode, tag: &str) {
    let lab = Lab::build(tag);
    let cluster = svcnet_testkit::Cluster::start().await;
    let client = cluster.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // Services first, so that the proxies start with a populated state.
    let np = |name: &str, ip: &str, np: u16, etp: &str| {
        serde_json::json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "clusterIP": ip,
            "externalTrafficPolicy": etp, "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": np}]}})
    };
    create_service(&svcs, np("frontend", "10.96.0.20", 30080, "Cluster")).await;
    create_service(&svcs, np("local", "10.96.0.30", 30081, "Local")).await;
    create_service(&svcs, np("remote-only", "10.96.0.31", 30082, "Local")).await;
    create_service(&svcs, serde_json::json!({"metadata": {"name": "empty"}, "spec": {"clusterIP": "10.96.0.40", "selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    create_service(&svcs, serde_json::json!({"metadata": {"name": "sticky"}, "spec": {"clusterIP": "10.96.0.50", "selector": {"app": "x"},
        "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    create_service(&svcs, serde_json::json!({"metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "x"}, "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]}})).await;
    create_service(&svcs, serde_json::json!({"metadata": {"name": "load"}, "spec": {"clusterIP": "10.96.0.60", "selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    put_slice(
        &slices,
        "frontend",
        "TCP",
        8080,
        &ready(&["pa", "pb", "pc"]),
    )
    .await;
    put_slice(&slices, "local", "TCP", 8080, &ready(&["pa", "pb", "pc"])).await;
    put_slice(&slices, "remote-only", "TCP", 8080, &ready(&["pc"])).await;
    put_slice(&slices, "sticky", "TCP", 8080, &ready(&["pa", "pb", "pc"])).await;
    put_slice(&slices, "dns", "UDP", 5353, &ready(&["pa", "pb"])).await;
    put_slice(&slices, "load", "TCP", 8080, &ready(&["pa", "pb", "pc"])).await;

    // One proxy per node, its backend inside the node namespace.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for node in ["n1", "n2"] {
        let cfg = ProxyConfig {
            mode,
            node_name: node.to_string(),
            min_sync_period: Duration::from_millis(100),
            sync_period: Duration::from_secs(30),
            metrics_bind: None,
            healthz_bind: None,
            settings: svcnet_proxy::backend::NodeSettings {
                cluster_cidrs: vec![
                    svcnet_proxy::backend::Cidr::parse("10.244.0.0/16").expect("cidr"),
                ],
                ..Default::default()
            },
            ..ProxyConfig::default()
        };
        let c = cfg.clone();
        let worker = Worker::spawn(Some(netns_path(&lab.ns(node))), move |h| {
            proxy::make_backend(&c, h)
        })
        .expect("backend");
        let mut rx = stop_rx.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let _ = proxy::run(client, cfg, worker, async move {
                let _ = rx.changed().await;
            })
            .await;
        });
    }
    let pz = lab.ns("pz");
    let (n1, n2) = (lab.ns("n1"), lab.ns("n2"));
    let all3 = set(&["pa", "pb", "pc"]);

    // The frontend Service answers from all 3 pods.
    eventually("ClusterIP from a pod reaches all 3 pods", || {
        let pz = pz.clone();
        let all3 = all3.clone();
        async move {
            let got = distinct(&pz, "10.96.0.20:80", 30).await;
            if got == all3 {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    // NodePort from the host on every node.
    for (ns, ip) in [(&n1, "172.18.0.2"), (&n2, "172.18.0.3")] {
        let got = distinct(ns, &format!("{ip}:30080"), 30).await;
        assert_eq!(got, all3, "NodePort from the node itself ({ns})");
    }
    let got = distinct(&n2, "172.18.0.2:30080", 30).await;
    assert_eq!(got, all3, "NodePort of n1 from n2");

    // Local policy: only the receiving node's pods; none there → dropped.
    let got = distinct(&n2, "172.18.0.2:30081", 20).await;
    assert_eq!(got, set(&["pa", "pb"]), "Local policy on n1 from outside");
    let got = distinct(&n1, "172.18.0.3:30081", 10).await;
    assert_eq!(got, set(&["pc"]), "Local policy on n2 from outside");
    let got = answers(&n2, "172.18.0.2:30082", 2).await;
    if mode == Mode::Userspace {
        // Userspace has no silent drop: no listener, so the kernel refuses.
        assert!(
            got.iter().all(|g| g == "refused"),
            "Local policy without local pods (userspace): {got:?}"
        );
    } else {
        assert!(
            got.iter().all(|g| g == "timeout"),
            "Local policy without local pods is dropped: {got:?}"
        );
    }
    // No endpoints: refused, not hanging.
    assert_eq!(
        answers(&pz, "10.96.0.40:80", 2).await,
        ["refused", "refused"],
        "no endpoints"
    );

    // Session affinity sticks; turning it off spreads answers again.
    let got = answers(&pz, "10.96.0.50:80", 16).await;
    let tail: BTreeSet<&String> = got[1..].iter().collect();
    assert_eq!(
        tail.len(),
        1,
        "the last 15 of 16 answers come from one pod: {got:?}"
    );
    svcs.patch(
        "sticky",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"sessionAffinity": "None"}})),
    )
    .await
    .expect("patch");
    eventually("affinity off spreads answers", || {
        let pz = pz.clone();
        async move {
            let got = distinct(&pz, "10.96.0.50:80", 16).await;
            if got.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;

    // UDP works, and stops going to a removed endpoint (same client socket throughout).
    let (q_tx, q_rx) = std::sync::mpsc::channel::<bool>();
    let (a_tx, mut a_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pz2 = pz.clone();
    std::thread::spawn(move || {
        enter(&pz2);
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp client");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        while let Ok(true) = q_rx.recv() {
            let mut buf = [0u8; 64];
            let _ = s.send_to(b"q", "10.96.0.10:53");
            let ans = match s.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).to_string(),
                Err(_) => "timeout".into(),
            };
            let _ = a_tx.send(ans);
        }
    });
    let mut ask_udp = async || {
        q_tx.send(true).expect("udp thread");
        a_rx.recv().await.unwrap_or_default()
    };
    let mut first = String::from("timeout");
    for _ in 0..20 {
        first = ask_udp().await;
        if first != "timeout" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(first == "pa" || first == "pb", "UDP answer: {first}");
    assert_eq!(ask_udp().await, first, "UDP flow sticks to its endpoint");
    let other = if first == "pa" { "pb" } else { "pa" };
    put_slice(&slices, "dns", "UDP", 5353, &ready(&[other])).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = ask_udp().await;
        if got == other {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "UDP still answered by removed endpoint {first}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(ask_udp().await, other, "after removal only {other} answers");
    }
    let _ = q_tx.send(false);

    // A pod deleted under load (100 requests/s for 20 s = 2000 requests) costs no failed request.
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let (f2, s2) = (failures.clone(), seen.clone());
    let load = tokio::spawn(in_ns(pz.clone(), move || {
        let start = Instant::now();
        for i in 0..2000u32 {
            let due = start + Duration::from_millis(10 * u64::from(i));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let got = ask("10.96.0.60:80");
            if !["pa", "pb", "pc"].contains(&got.as_str()) {
                f2.lock().expect("lock").push(format!("request {i}: {got}"));
            }
            s2.lock().expect("lock").insert(got);
        }
    }));
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Deletion: the endpoint turns terminating (still serving), then leaves the slice, then the pod stops.
    put_slice(
        &slices,
        "load",
        "TCP",
        8080,
        &[
            ("pa", false, true, true),
            ("pb", true, true, false),
            ("pc", true, true, false),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    put_slice(&slices, "load", "TCP", 8080, &ready(&["pb", "pc"])).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.pod_stop["pa"].store(true, Ordering::SeqCst);
    load.await.expect("load finished");
    let f = failures.lock().expect("lock").clone();
    assert!(
        f.is_empty(),
        "{} failed requests under load: {:?}",
        f.len(),
        &f[..f.len().min(10)]
    );
    assert!(
        seen.lock().expect("lock").contains("pa"),
        "pa answered before it was deleted"
    );

    // With the API server stopped, traffic still flows.
    let _dir = cluster.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = distinct(&pz, "10.96.0.60:80", 20).await;
    assert_eq!(got, set(&["pb", "pc"]), "traffic with the API server down");
    let _ = stop_tx.send(true);
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_nftables() {
    run_mode(Mode::Nftables, "nft").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_iptables() {
    run_mode(Mode::Iptables, "ipt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_userspace() {
    run_mode(Mode::Userspace, "usr").await;
}

/// One EndpointSlice of `family` (`IPv4` / `IPv6`) for `svc` with these ready pods.
fn slice_of(svc: &str, family: &str, proto: &str, port: u16, pods: &[&str]) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = pods
        .iter()
        .map(|pod| {
            let (_, node, ip4) = PODS.iter().find(|p| p.0 == *pod).expect("known pod");
            let ip = if family == "IPv6" {
                pod_ip6(pod)
            } else {
                ip4.to_string()
            };
            serde_json::json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{svc}-{}", family.to_lowercase()), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "ports": [{"name": "", "port": port, "protocol": proto}],
        "endpoints": endpoints,
    }))
    .expect("slice json")
}

fn service_of(json: serde_json::Value) -> Service {
    serde_json::from_value(json).expect("service json")
}

/// A UDP client in `ns` with one socket for the whole test: send a query, get the answer.
fn udp_client(
    ns: &str,
    target: &'static str,
) -> (
    std::sync::mpsc::Sender<bool>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (q_tx, q_rx) = std::sync::mpsc::channel::<bool>();
    let (a_tx, a_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let s = UdpSocket::bind("[::]:0").expect("udp client");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        while let Ok(true) = q_rx.recv() {
            let mut buf = [0u8; 64];
            let _ = s.send_to(b"q", target);
            let ans = match s.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).to_string(),
                Err(_) => "timeout".into(),
            };
            let _ = a_tx.send(ans);
        }
    });
    (q_tx, a_rx)
}

/// Dual-stack Services in real namespaces: the Service and EndpointSlice
/// objects go through the tracker to the mode's backend on n1. (The API
/// server allocates only from its IPv4 service range, so this case does not
/// go through it.)
async fn run_dualstack(mode: Mode, tag: &str) {
    let lab = Lab::build(tag);
    let cidr = |s| svcnet_proxy::backend::Cidr::parse(s).expect("cidr");
    let cfg = ProxyConfig {
        mode,
        node_name: "n1".to_string(),
        settings: svcnet_proxy::backend::NodeSettings {
            cluster_cidrs: vec![cidr("10.244.0.0/16"), cidr("fd00:10:244::/56")],
            ..Default::default()
        },
        ..ProxyConfig::default()
    };
    let c = cfg.clone();
    let worker = Worker::spawn(Some(netns_path(&lab.ns("n1"))), move |h| {
        proxy::make_backend(&c, h)
    })
    .expect("backend");
    let mut tracker = Tracker::new("n1");
    let dual = |name: &str, v4: &str, v6: &str, extra: serde_json::Value| {
        let mut spec = serde_json::json!({"clusterIP": v4, "clusterIPs": [v4, v6],
            "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"});
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        service_of(
            serde_json::json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
        )
    };
    let now = Instant::now();
    for s in [
        dual(
            "ds",
            "10.96.0.20",
            "fd00:10:96::20",
            serde_json::json!({"type": "NodePort",
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}),
        ),
        dual(
            "local",
            "10.96.0.30",
            "fd00:10:96::30",
            serde_json::json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]}),
        ),
        dual(
            "dns",
            "10.96.0.10",
            "fd00:10:96::10",
            serde_json::json!({"ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]}),
        ),
        service_of(
            serde_json::json!({"metadata": {"name": "only6", "namespace": "default"},
            "spec": {"clusterIP": "fd00:10:96::45", "clusterIPs": ["fd00:10:96::45"],
                     "ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
    ] {
        assert!(tracker.service_updated(&s, now));
    }
    for fam in ["IPv4", "IPv6"] {
        for svc in ["ds", "local"] {
            tracker.slice_updated(&slice_of(svc, fam, "TCP", 8080, &["pa", "pb", "pc"]), now);
        }
        tracker.slice_updated(&slice_of("dns", fam, "UDP", 5353, &["pa", "pb"]), now);
    }
    // The IPv6-only Service has an IPv4 slice only: nothing may serve its IPv6 ClusterIP.
    tracker.slice_updated(&slice_of("only6", "IPv4", "TCP", 8080, &["pa"]), now);
    let (state, _) = tracker.take_state();
    worker.sync(state, true).await.expect("first sync");

    let pz = lab.ns("pz");
    let (n1, n2) = (lab.ns("n1"), lab.ns("n2"));
    let all3 = set(&["pa", "pb", "pc"]);
    let all3_v6 = set(&["pa v6", "pb v6", "pc v6"]);
    let got = distinct(&pz, "10.96.0.20:80", 30).await;
    assert_eq!(got, all3, "dual-stack Service on its IPv4 ClusterIP");
    // The lab's first IPv6 connection may wait for neighbour discovery: poll.
    eventually(
        "dual-stack Service on its IPv6 ClusterIP, IPv6 endpoints only",
        || {
            let (pz, want) = (pz.clone(), all3_v6.clone());
            async move {
                let got = distinct(&pz, "[fd00:10:96::20]:80", 30).await;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await;
    let got = distinct(&n2, "[fd00:172:18::2]:30080", 30).await;
    assert_eq!(got, all3_v6, "IPv6 NodePort of n1 from n2");
    let got = distinct(&n2, "172.18.0.2:30080", 30).await;
    assert_eq!(got, all3, "IPv4 NodePort of the same Service");
    let got = distinct(&n1, "[fd00:172:18::2]:30080", 30).await;
    assert_eq!(got, all3_v6, "IPv6 NodePort from the node itself");
    let got = distinct(&n2, "[fd00:172:18::2]:30081", 20).await;
    assert_eq!(
        got,
        set(&["pa v6", "pb v6"]),
        "IPv6 NodePort, Local policy: n1's pods only"
    );
    // The ICMPv6 error for the first SYN lands while connect() holds the
    // socket (a soft error in the kernel); the retransmit's, ~1 s later, refuses.
    let refused6 = |addr: &'static str| {
        in_ns(pz.clone(), move || {
            (0..2)
                .map(|_| ask_within(addr, Duration::from_secs(3)))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        refused6("[fd00:10:96::45]:80").await,
        ["refused", "refused"],
        "IPv6 Service with only an IPv4 slice has no endpoints"
    );
    assert_eq!(
        refused6("[fd00:10:96::20]:81").await,
        ["refused", "refused"],
        "IPv6 ClusterIP on a port the Service does not have"
    );

    // IPv6 UDP, and no traffic to a removed endpoint (conntrack -f ipv6 in the kernel modes).
    let (q_tx, mut a_rx) = udp_client(&pz, "[fd00:10:96::10]:53");
    let mut ask_udp = async || {
        q_tx.send(true).expect("udp thread");
        a_rx.recv().await.unwrap_or_default()
    };
    let mut first = String::from("timeout");
    for _ in 0..20 {
        first = ask_udp().await;
        if first != "timeout" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(first == "pa v6" || first == "pb v6", "UDP answer: {first}");
    assert_eq!(ask_udp().await, first, "UDP flow sticks to its endpoint");
    let other = if first == "pa v6" { "pb" } else { "pa" };
    tracker.slice_updated(
        &slice_of("dns", "IPv6", "UDP", 5353, &[other]),
        Instant::now(),
    );
    let (state, _) = tracker.take_state();
    let r = worker.sync(state, false).await.expect("endpoint change");
    assert!(!r.full, "an endpoint change is an incremental sync");
    let want = format!("{other} v6");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = ask_udp().await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "UDP still answered by removed endpoint {first}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(ask_udp().await, want, "after removal only {want} answers");
    }
    let _ = q_tx.send(false);
    // The IPv4 side of the same Service was not touched.
    let (q4, mut a4) = udp_client(&pz, "10.96.0.10:53");
    q4.send(true).expect("udp thread");
    let a = a4.recv().await.unwrap_or_default();
    assert!(a == "pa" || a == "pb", "IPv4 UDP side still served: {a}");
    let _ = q4.send(false);
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_dualstack_nftables() {
    run_dualstack(Mode::Nftables, "nft6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_dualstack_iptables() {
    run_dualstack(Mode::Iptables, "ipt6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_dualstack_userspace() {
    run_dualstack(Mode::Userspace, "usr6").await;
}

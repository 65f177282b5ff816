//! End to end, per mode: two node namespaces with pods, a real API server, the proxy in-process in each node namespace.
//!
//! Topology (all inside namespaces this test creates; the host namespace gets nothing):
//! n1 (172.18.0.2, bridge 10.244.1.1/24) with pods pa, pb and a client pod pz;
//! n2 (172.18.0.3, bridge 10.244.2.1/24) with pod pc; n1 and n2 joined by a veth.
//! Each pod runs a TCP server on 8080 and a UDP server on 5353 answering with its name.

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
        }
        sh(&[
            "ip", "-n", &n1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &n2,
        ]);
        for (ns, ip, bridge, other_pods, other) in [
            (
                &n1,
                "172.18.0.2/24",
                "10.244.1.1/24",
                "10.244.2.0/24",
                "172.18.0.3",
            ),
            (
                &n2,
                "172.18.0.3/24",
                "10.244.2.1/24",
                "10.244.1.0/24",
                "172.18.0.2",
            ),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", ns, "link", "add", "br0", "type", "bridge"]);
            sh(&["ip", "-n", ns, "addr", "add", bridge, "dev", "br0"]);
            sh(&["ip", "-n", ns, "link", "set", "br0", "up"]);
            sh(&["ip", "-n", ns, "route", "add", other_pods, "via", other]);
            // Local processes need a route for service addresses before DNAT.
            sh(&["ip", "-n", ns, "route", "add", "10.96.0.0/16", "dev", "br0"]);
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
            sh(&["ip", "-n", &pns, "link", "set", "eth0", "up"]);
            // Only the lab's own prefixes, never a default route.
            for pfx in ["10.244.0.0/16", "10.96.0.0/16", "172.18.0.0/24"] {
                sh(&["ip", "-n", &pns, "route", "replace", pfx, "via", gw]);
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

/// TCP :8080 and UDP :5353 servers answering with the pod name, until stopped.
fn serve(ns: &str, name: &str, all: Arc<AtomicBool>, this: Arc<AtomicBool>) {
    let (ns2, name2, all2, this2) = (ns.to_string(), name.to_string(), all.clone(), this.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ready_tx2 = ready_tx.clone();
    std::thread::spawn(move || {
        enter(&ns2);
        let l = std::net::TcpListener::bind("0.0.0.0:8080").expect("bind tcp");
        l.set_nonblocking(true).expect("nonblocking");
        let _ = ready_tx.send(());
        while !all2.load(Ordering::SeqCst) && !this2.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.write_all(format!("{name2}\n").as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    let (ns3, name3) = (ns.to_string(), name.to_string());
    std::thread::spawn(move || {
        enter(&ns3);
        let s = UdpSocket::bind("0.0.0.0:5353").expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let _ = ready_tx2.send(());
        let mut buf = [0u8; 512];
        while !all.load(Ordering::SeqCst) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(name3.as_bytes(), from);
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
    let addr: SocketAddr = addr.parse().expect("addr");
    match TcpStream::connect_timeout(&addr, Duration::from_millis(700)) {
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

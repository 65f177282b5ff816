//! Rule-programming benchmark and rule installer for the data-plane benchmarks (root; works inside a netns it is given).
//!
//! `bench_sync sync [services] [endpoints]`: full sync, add-one-Service and network
//! programming latency for the nftables backend (and iptables-legacy for contrast),
//! in a throwaway namespace.
//! `bench_sync install <netns> <nftables|iptables|iptables-legacy|userspace> <services>`:
//! installs `services` Services (10.96.0.0/16 from .10, port 80, 3 endpoints
//! 10.244.1.2-4:5000; plus port 5201 → 10.244.1.2:5201) into <netns>; userspace keeps running.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use svcnet_proxy::backend::{Backend, Cidr, Exec, NodeSettings, SystemExec};
use svcnet_proxy::iptables::IptBackend;
use svcnet_proxy::nftables::NftBackend;
use svcnet_proxy::plan::{EndpointInfo, Proto, ServiceInfo, ServicePortInfo, plan_service};
use svcnet_proxy::tracker::DesiredState;
use svcnet_proxy::userspace::UserspaceBackend;

/// Runs every command inside one namespace.
#[derive(Debug)]
struct InNetns(String);

impl Exec for InNetns {
    fn run(
        &mut self,
        program: &str,
        args: &[&str],
        stdin: &str,
    ) -> svcnet_proxy::backend::Result<String> {
        let mut a = vec!["netns", "exec", self.0.as_str(), program];
        a.extend(args);
        SystemExec.run("ip", &a, stdin)
    }
}

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i as u32)
}

fn service(i: usize, eps: usize, generation: usize) -> (ServiceInfo, Vec<EndpointInfo>) {
    let info = ServiceInfo {
        namespace: "bench".into(),
        name: format!("svc-{i:05}"),
        cluster_ips: vec![vip(i).into()],
        external_ips: vec![],
        lb_ips: vec![],
        ports: vec![
            ServicePortInfo {
                port_name: "http".into(),
                proto: Proto::Tcp,
                port: 80,
                node_port: None,
            },
            ServicePortInfo {
                port_name: "bulk".into(),
                proto: Proto::Tcp,
                port: 5201,
                node_port: None,
            },
        ],
        internal_local: false,
        external_local: false,
        affinity: None,
    };
    let mut out = Vec::new();
    for e in 0..eps {
        // Service 0..: the first 3 endpoints are the real backends; the rest are distinct fakes.
        let ip = if e < 3 {
            Ipv4Addr::new(10, 244, 1, 2 + e as u8)
        } else {
            Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 245, 0, 0)) + (i * eps + e + generation) as u32,
            )
        };
        out.push(EndpointInfo {
            port_name: "http".into(),
            proto: Proto::Tcp,
            addr: SocketAddr::new(ip.into(), 5000),
            node: Some("n1".into()),
            ready: true,
            serving: true,
            terminating: false,
        });
    }
    out.push(EndpointInfo {
        port_name: "bulk".into(),
        proto: Proto::Tcp,
        addr: SocketAddr::new(Ipv4Addr::new(10, 244, 1, 2).into(), 5201),
        node: Some("n1".into()),
        ready: true,
        serving: true,
        terminating: false,
    });
    (info, out)
}

fn state(n: usize, eps: usize) -> DesiredState {
    DesiredState::from_plans((0..n).flat_map(|i| {
        let (s, e) = service(i, eps, 0);
        plan_service(&s, &e, "n1")
    }))
}

fn settings() -> NodeSettings {
    NodeSettings {
        cluster_cidrs: Cidr::parse("10.244.0.0/16").into_iter().collect(),
        ..Default::default()
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bench_backend(name: &str, mut b: Box<dyn Backend>, n: usize, eps: usize, adds: usize) {
    let base = state(n, eps);
    let t = Instant::now();
    b.sync(&base, true).expect("full sync");
    println!(
        "{name}: full sync of {n} Services x {eps} endpoints: {:.0} ms",
        ms(t.elapsed())
    );
    // Add one Service at a time when n exist.
    let mut st = base.clone();
    let mut add = Vec::new();
    for k in 0..adds {
        let (s, e) = service(n + k, eps, 0);
        for p in plan_service(&s, &e, "n1") {
            st.ports.insert(p.key.clone(), std::sync::Arc::new(p));
        }
        let t = Instant::now();
        b.sync(&st, false).expect("add one");
        add.push(ms(t.elapsed()));
    }
    println!(
        "{name}: add 1 Service to {n}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({adds} runs)",
        pct(&mut add, 0.5),
        pct(&mut add, 0.9),
        pct(&mut add, 1.0)
    );
    // Network programming latency: one endpoint of one Service changes, to rules applied.
    let mut lat = Vec::new();
    for k in 0..adds * 5 {
        let i = (k * 7919) % n;
        let changed = Instant::now();
        let (s, e) = service(i, eps, k + 1);
        for p in plan_service(&s, &e, "n1") {
            st.ports.insert(p.key.clone(), std::sync::Arc::new(p));
        }
        b.sync(&st, false).expect("endpoint change");
        lat.push(ms(changed.elapsed()));
    }
    println!(
        "{name}: network programming latency (endpoint change → applied): p50 {:.1} ms, p99 {:.1} ms ({} changes)",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        lat.len()
    );
    let _ = b.cleanup();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("install") => {
            let ns = args.get(2).expect("netns").clone();
            let mode = args.get(3).expect("mode").as_str();
            let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
            let st = state(n, 3);
            let exec = Box::new(InNetns(ns.clone()));
            let t = Instant::now();
            match mode {
                "nftables" => NftBackend::new(exec, settings())
                    .sync(&st, true)
                    .map(|_| ()),
                "iptables" => IptBackend::new(exec, settings(), "iptables")
                    .sync(&st, true)
                    .map(|_| ()),
                "iptables-legacy" => IptBackend::new(exec, settings(), "iptables-legacy")
                    .sync(&st, true)
                    .map(|_| ()),
                "userspace" => {
                    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let mut b = UserspaceBackend::new(
                        rt.handle().clone(),
                        Box::new(SystemExec),
                        settings(),
                        "lo",
                        vec![],
                    );
                    b.sync(&st, true).expect("userspace sync");
                    println!(
                        "userspace: {n} Services listening ({:.0} ms); running until killed",
                        ms(t.elapsed())
                    );
                    rt.block_on(std::future::pending::<()>());
                    Ok(())
                }
                m => panic!("unknown mode {m}"),
            }
            .expect("install");
            println!(
                "{mode}: installed {n} Services in {:.0} ms",
                ms(t.elapsed())
            );
        }
        _ => {
            let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
            let eps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
            let ns = format!("svcb-{}", std::process::id());
            SystemExec
                .run("ip", &["netns", "add", &ns], "")
                .expect("netns");
            struct Del(String);
            impl Drop for Del {
                fn drop(&mut self) {
                    let _ = SystemExec.run("ip", &["netns", "del", &self.0], "");
                }
            }
            let _del = Del(ns.clone());
            // Run as the proxy does: inside the namespace, no `ip netns exec` per command.
            let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            bench_backend(
                "nftables (render only, fake exec)",
                Box::new(NftBackend::new(
                    Box::new(svcnet_proxy::backend::FakeExec::default()),
                    settings(),
                )),
                n,
                eps,
                50,
            );
            // The same backend twice: transactions through the `nft` binary (one
            // process per sync, as before), then through libnftables in-process.
            bench_backend(
                "nftables via the nft binary",
                Box::new(NftBackend::new(Box::new(SystemExec), settings()).with_binary_only()),
                n,
                eps,
                50,
            );
            bench_backend(
                "nftables via libnftables",
                Box::new(NftBackend::new(Box::new(SystemExec), settings())),
                n,
                eps,
                50,
            );
            if std::env::var("BENCH_IPTABLES").is_ok() {
                bench_backend(
                    "iptables-legacy",
                    Box::new(IptBackend::new(
                        Box::new(SystemExec),
                        settings(),
                        "iptables-legacy",
                    )),
                    n,
                    eps,
                    5,
                );
            }
        }
    }
}

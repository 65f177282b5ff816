//! Benchmark helper: writes the same N-Service zone as a static zone file and dnsperf query list,
//! or populates the live index (no API server) and serves it.
//!
//! `dns-bench-zone files DIR [SERVICES]` writes DIR/cluster.local.zone and DIR/queries.txt;
//! `dns-bench-zone serve ADDR [SERVICES]` serves them and prints RSS per Service.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use rand::seq::SliceRandom;
use svcnet_dns::index::{Endpoint, Kind, Port, Proto, ServiceSpec, Slice, Tracker};

const NAMESPACES: usize = 10;

fn svc_ip(i: usize) -> Ipv4Addr {
    // 10.96.0.0/16 from .100 on, like allocated ClusterIPs.
    let n = 100 + i as u32;
    Ipv4Addr::from(0x0a60_0000 | n)
}

fn name(i: usize) -> (String, String) {
    (format!("svc-{i}"), format!("ns-{}", i % NAMESPACES))
}

fn files(dir: &str, n: usize) -> std::io::Result<()> {
    let mut z = String::new();
    z.push_str("$ORIGIN cluster.local.\n$TTL 5\n");
    z.push_str("@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n");
    z.push_str("@ IN NS ns.dns.cluster.local.\nns.dns IN A 10.96.0.10\n");
    let mut q = Vec::with_capacity(n * 2);
    for i in 0..n {
        let (s, ns) = name(i);
        let _ = writeln!(z, "{s}.{ns}.svc IN A {}", svc_ip(i));
        let _ = writeln!(
            z,
            "_http._tcp.{s}.{ns}.svc IN SRV 0 100 80 {s}.{ns}.svc.cluster.local."
        );
        q.push(format!("{s}.{ns}.svc.cluster.local A"));
        if i % 10 == 0 {
            q.push(format!("_http._tcp.{s}.{ns}.svc.cluster.local SRV"));
        }
    }
    q.shuffle(&mut rand::rng());
    std::fs::write(format!("{dir}/cluster.local.zone"), z)?;
    std::fs::write(format!("{dir}/queries.txt"), q.join("\n") + "\n")
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Each Service gets a ClusterIP, one named port and one EndpointSlice with 3 endpoints, as
/// the watch would deliver them.
fn populate(t: &mut Tracker, n: usize) {
    for i in 0..n {
        let (s, ns) = name(i);
        let key = format!("{s}.{ns}");
        let ports: Box<[Port]> = Port::new("http", Proto::Tcp, 80).into_iter().collect();
        t.apply_service(ServiceSpec {
            key: key.as_str().into(),
            kind: Kind::ClusterIp {
                v4: Some(svc_ip(i)),
                v6: None,
            },
            ports,
            publish_not_ready: false,
        });
        let endpoints: Box<[Endpoint]> = (0..3u32)
            .map(|k| Endpoint {
                ip: Ipv4Addr::from(0x0af4_0000 | ((i as u32 * 3 + k) & 0xffff)).into(),
                hostname: None,
                ready: true,
            })
            .collect();
        let sports: Box<[Port]> = Port::new("http", Proto::Tcp, 8080).into_iter().collect();
        t.apply_slice(
            &key,
            &format!("{s}-abcde"),
            Slice {
                ports: sports,
                endpoints,
            },
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("files"), Some(dir)) => Ok(files(dir, n)?),
        (Some("serve"), Some(addr)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let shared = svcnet_dns::new_shared();
                let mut cfg = svcnet_dns::Config::new(addr.parse()?, vec![]);
                cfg.udp_workers = 1;
                let server = svcnet_dns::Server::bind(&cfg, shared.clone()).await?;
                let before = rss_kb();
                let mut t = Tracker::new();
                populate(&mut t, n);
                shared.publish(t.publish());
                let after = rss_kb();
                // Services and their EndpointSlices are both objects of the watch.
                let bytes = (after.saturating_sub(before)) * 1024;
                println!(
                    "index: {n} Services + {n} EndpointSlices, RSS +{} KiB: {:.0} B per Service, {:.0} B per object",
                    after.saturating_sub(before),
                    bytes as f64 / n as f64,
                    bytes as f64 / (2 * n) as f64
                );
                println!("serving on {}", server.dns_addr());
                server.serve(std::future::pending()).await;
                drop(t);
                Ok::<(), Box<dyn std::error::Error>>(())
            })
        }
        _ => Err("usage: dns-bench-zone files DIR [SERVICES] | serve ADDR [SERVICES]".into()),
    }
}

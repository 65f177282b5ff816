//! Root tests on real namespaces: creation is idempotent, nodes and pods reach each other, teardown and `down` leave nothing behind.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use svcnet_netlab::plan::{NODE_LINK, POD_BRIDGE};
use svcnet_netlab::{LabConfig, Plan, netns, plan, rtnl};

/// A per-test address plan inside 100.64.0.0/10, so tests running in
/// parallel (and a real `svcnet up` on 172.18.0.0/24) never share a prefix.
fn config(k: u8, nodes: u32) -> LabConfig {
    LabConfig {
        cluster: format!("t{}{k}", std::process::id() % 100_000),
        nodes,
        node_cidr: format!("100.64.{k}.0/24").parse().unwrap(),
        pod_cidr: format!("100.{}.0.0/16", 80 + k).parse().unwrap(),
        service_cidr: format!("100.{}.0.0/16", 100 + k).parse().unwrap(),
        lb_cidr: None,
    }
}

/// Tears the lab down even when an assertion fails half-way.
struct Guard(Plan);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = svcnet_netlab::destroy(&self.0);
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `ip` shows of this lab from the host: namespaces, links, addresses, routes.
fn snapshot(p: &Plan) -> String {
    let marks = [
        p.netns_prefix(),
        p.host_link.clone(),
        format!(
            "{}.",
            p.node_cidr.addr().to_string().rsplit_once('.').unwrap().0
        ),
        p.pod_cidr
            .addr()
            .to_string()
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
            + ".",
        p.service_cidr
            .addr()
            .to_string()
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
            + ".",
    ];
    let mut lines: Vec<String> = [
        ip(&["netns", "list"]),
        ip(&["-o", "link"]),
        ip(&["-o", "addr"]),
        ip(&["route", "show", "table", "all"]),
    ]
    .concat()
    .lines()
    .filter(|l| marks.iter().any(|m| l.contains(m.as_str())))
    // Link lines carry counters and state that change with traffic.
    .map(|l| l.split(" qlen").next().unwrap_or(l).to_string())
    .collect();
    lines.sort();
    lines.join("\n")
}

/// One-shot TCP echo: listen inside `ns`, return the address.
fn echo_server(ns: &str, ip: Ipv4Addr) -> SocketAddr {
    let l = netns::run_in(Some(ns), || TcpListener::bind((ip, 0)))
        .unwrap()
        .unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        }
    });
    addr
}

/// Connects from inside `ns` (`None`: the host) and returns the echoed text.
fn echo(ns: Option<&str>, to: SocketAddr, msg: &str) -> std::io::Result<String> {
    let mut s = netns::run_in(ns, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(3))
    })
    .unwrap()?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(msg.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn create_is_idempotent_and_teardown_is_complete() {
    let p = plan(&config(1, 2)).unwrap();
    let before = snapshot(&p);
    assert_eq!(before, "", "leftovers of an earlier run");
    let guard = Guard(p.clone());
    svcnet_netlab::create(&p).unwrap();
    let first = snapshot(&p);
    svcnet_netlab::create(&p).unwrap();
    assert_eq!(snapshot(&p), first, "a second create changes nothing");

    let c = &p.cluster;
    let host_routes = ip(&["route", "show", "proto", "213"]);
    for want in [
        format!("100.81.0.0/24 via 100.64.1.10 dev svcnet-{c} "),
        format!("100.81.1.0/24 via 100.64.1.11 dev svcnet-{c} "),
        "unreachable 100.81.0.0/16 ".to_string(),
        "unreachable 100.101.0.0/16 ".to_string(),
    ] {
        assert!(
            host_routes.contains(&want),
            "host routes lack {want:?}:\n{host_routes}"
        );
    }
    assert!(
        !ip(&["route"]).contains("default via 100.64"),
        "no default route into the lab"
    );
    let node1 = format!("svcnet-{c}-node1");
    let addrs = ip(&["-n", &node1, "-o", "-4", "addr"]);
    assert!(
        addrs.contains(&format!("{NODE_LINK}    inet 100.64.1.11/24")),
        "{addrs}"
    );
    assert!(
        addrs.contains(&format!("{POD_BRIDGE}    inet 100.81.1.1/24")),
        "{addrs}"
    );
    let routes = ip(&["-n", &node1, "route"]);
    assert!(
        routes.contains("100.81.0.0/24 via 100.64.1.10 dev eth0 proto 213"),
        "{routes}"
    );
    assert!(
        routes.contains("100.101.0.0/16 via 100.64.1.1 dev eth0 proto 213"),
        "{routes}"
    );
    assert!(!routes.contains("default"), "{routes}");
    let fwd = netns::run_in(Some(&node1), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
    })
    .unwrap();
    assert_eq!(fwd.unwrap().trim(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        host_forwarding_before()
    );

    // The host reaches a node by its IP on the node network.
    let addr = echo_server(&node1, p.nodes[1].ip);
    assert_eq!(echo(None, addr, "hello node1").unwrap(), "hello node1");

    let removed = svcnet_netlab::destroy(&p).unwrap();
    assert_eq!(
        removed.namespaces,
        vec![
            format!("svcnet-{c}-net"),
            format!("svcnet-{c}-node0"),
            node1.clone()
        ]
    );
    assert_eq!(removed.links, vec![format!("svcnet-{c}")]);
    assert_eq!(
        removed.routes,
        vec!["unreachable 100.81.0.0/16", "unreachable 100.101.0.0/16"]
    );
    assert_eq!(snapshot(&p), before);
    assert!(svcnet_netlab::leftovers(Some(c)).unwrap().is_empty());
    assert_eq!(
        svcnet_netlab::destroy(&p).unwrap().to_string(),
        "nothing to remove"
    );
    drop(guard);
}

/// The host's forwarding setting is never touched; read once, compared after.
fn host_forwarding_before() -> String {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim()
            .to_string()
    })
    .clone()
}

/// Attaches a pod namespace to `node` the way the agent does: a veth to the
/// pod bridge, an address from the node's /24, routes to the pod and node
/// networks via the pod bridge (replies to the host need the latter).
fn add_pod(p: &Plan, node: usize, n: u32) -> (String, Ipv4Addr) {
    let node_plan = &p.nodes[node];
    let pod_ns = format!("{}pod{node}x{n}", p.netns_prefix());
    netns::create(&pod_ns).unwrap();
    let pod_ip = node_plan.pod_cidr.host(1 + n).unwrap();
    let pod_file = std::fs::File::open(netns::path(&pod_ns).unwrap()).unwrap();
    let host_end = format!("vp{n}");
    rtnl::in_ns(Some(&node_plan.netns), |h| async move {
        let v = rtnl::ensure_veth(&h, &host_end, "eth0", &pod_file).await?;
        let br = rtnl::link_index(&h, POD_BRIDGE).await?.unwrap();
        rtnl::attach(&h, &host_end, v, br).await
    })
    .unwrap();
    let (gw, pods, nodes) = (node_plan.pod_gateway, p.pod_cidr, p.node_cidr);
    rtnl::in_ns(Some(&pod_ns), |h| async move {
        let lo = rtnl::link_index(&h, "lo").await?.unwrap();
        rtnl::up(&h, "lo", lo).await?;
        let e = rtnl::link_index(&h, "eth0").await?.unwrap();
        rtnl::ensure_addr(&h, "eth0", e, pod_ip, 24).await?;
        rtnl::up(&h, "eth0", e).await?;
        for dst in [pods, nodes] {
            rtnl::replace_route(
                &h,
                &svcnet_netlab::Route {
                    dst,
                    kind: svcnet_netlab::RouteKind::Via(gw),
                },
            )
            .await?;
        }
        Ok(())
    })
    .unwrap();
    (pod_ns, pod_ip)
}

#[test]
fn pods_on_two_nodes_reach_each_other_by_ip() {
    let p = plan(&config(2, 2)).unwrap();
    let _guard = Guard(p.clone());
    svcnet_netlab::create(&p).unwrap();
    let (pod_a, ip_a) = add_pod(&p, 0, 1);
    let (pod_b, ip_b) = add_pod(&p, 1, 1);
    assert_eq!(
        (ip_a.to_string(), ip_b.to_string()),
        ("100.82.0.2".into(), "100.82.1.2".into())
    );
    let to_b = echo_server(&pod_b, ip_b);
    assert_eq!(echo(Some(&pod_a), to_b, "a to b").unwrap(), "a to b");
    let to_a = echo_server(&pod_a, ip_a);
    assert_eq!(echo(Some(&pod_b), to_a, "b to a").unwrap(), "b to a");
    // The host reaches pods through the node routes too.
    let to_b = echo_server(&pod_b, ip_b);
    assert_eq!(echo(None, to_b, "host to b").unwrap(), "host to b");
    // A pod address no node owns is unreachable, not sent anywhere.
    let err = echo(None, "100.82.9.9:80".parse().unwrap(), "x").unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(113) | Some(101)),
        "expected EHOSTUNREACH/ENETUNREACH, got {err}"
    );
    let removed = svcnet_netlab::destroy(&p).unwrap();
    assert_eq!(removed.namespaces.len(), 5, "{removed}");
    assert_eq!(snapshot(&p), "");
}

#[test]
fn down_cleans_the_leftovers_of_a_crashed_run() {
    let p = plan(&config(3, 2)).unwrap();
    let _guard = Guard(p.clone());
    svcnet_netlab::create(&p).unwrap();
    // A component left running in a node namespace, as after a crash of `svcnet up`.
    let mut child = netns::spawn_in(&p.nodes[0].netns, Command::new("sleep").arg("60")).unwrap();
    assert_eq!(
        netns::pids_in(&p.nodes[0].netns).unwrap(),
        vec![i32::try_from(child.id()).unwrap()]
    );
    let left = svcnet_netlab::leftovers(Some(&p.cluster)).unwrap();
    assert_eq!(
        (
            left.namespaces.len(),
            left.links.len(),
            left.routes.len(),
            left.processes
        ),
        (3, 1, 4, 1)
    );

    // The crashed process is gone; a new one only knows the cluster name.
    let removed = svcnet_netlab::destroy_cluster(&p.cluster, None).unwrap();
    assert_eq!(removed.processes, 1);
    assert_eq!(removed.namespaces.len(), 3);
    assert_eq!(snapshot(&p), "");
    let status = child.wait().unwrap();
    assert_eq!(status.to_string(), "signal: 15 (SIGTERM)");

    // Without the state file (e.g. it was removed), the plan it would have had still finds the routes.
    svcnet_netlab::create(&p).unwrap();
    std::fs::remove_file(format!(
        "{}/{}.json",
        svcnet_netlab::lab::STATE_DIR,
        p.cluster
    ))
    .unwrap();
    let removed = svcnet_netlab::destroy_cluster(&p.cluster, Some(&p)).unwrap();
    assert_eq!(removed.routes.len(), 2, "{removed}");
    assert_eq!(snapshot(&p), "");
}

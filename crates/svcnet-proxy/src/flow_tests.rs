//! Packet-flow tests: one table of flows traced through the generated nftables and iptables rules.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::backend::{Backend, Cidr, FakeExec, NodeSettings};
use crate::iptables::{self, IptBackend};
use crate::nftables::{self, NftBackend};
use crate::plan::{EndpointInfo, Family, Proto, ServiceInfo, ServicePortInfo, plan_service};
use crate::testing::ipt_trace::IptTables;
use crate::testing::nft_trace::NftRules;
use crate::testing::{Outcome, Packet};
use crate::tracker::DesiredState;

const NODE_IP: &str = "172.18.0.2";
const NODE_IP6: &str = "fd00:172:18::2";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn ep(addr: &str, port: u16, node: &str) -> EndpointInfo {
    EndpointInfo {
        port_name: String::new(),
        proto: Proto::Tcp,
        addr: SocketAddr::new(ip(addr), port),
        node: Some(node.into()),
        ready: true,
        serving: true,
        terminating: false,
    }
}

struct Svc {
    name: &'static str,
    cip: &'static str,
    /// The IPv6 ClusterIP of a dual-stack Service.
    cip6: Option<&'static str>,
    proto: Proto,
    ports: Vec<(&'static str, u16, Option<u16>)>,
    ext: Vec<&'static str>,
    lb: Vec<&'static str>,
    itp_local: bool,
    etp_local: bool,
    affinity: Option<u32>,
    eps: Vec<EndpointInfo>,
}

fn svc(name: &'static str, cip: &'static str) -> Svc {
    Svc {
        name,
        cip,
        cip6: None,
        proto: Proto::Tcp,
        ports: vec![("", 80, None)],
        ext: vec![],
        lb: vec![],
        itp_local: false,
        etp_local: false,
        affinity: None,
        eps: vec![],
    }
}

fn state(svcs: &[Svc]) -> DesiredState {
    let mut plans = Vec::new();
    for s in svcs {
        let info = ServiceInfo {
            namespace: "default".into(),
            name: s.name.into(),
            cluster_ips: std::iter::once(s.cip).chain(s.cip6).map(ip).collect(),
            external_ips: s.ext.iter().map(|e| ip(e)).collect(),
            lb_ips: s.lb.iter().map(|e| ip(e)).collect(),
            ports: s
                .ports
                .iter()
                .map(|(n, p, np)| ServicePortInfo {
                    port_name: n.to_string(),
                    proto: s.proto,
                    port: *p,
                    node_port: *np,
                })
                .collect(),
            internal_local: s.itp_local,
            external_local: s.etp_local,
            affinity: s.affinity,
        };
        plans.extend(plan_service(&info, &s.eps, "n1"));
    }
    DesiredState::from_plans(plans)
}

fn fixture() -> Vec<Svc> {
    let a = |p| ep("10.244.1.2", p, "n1");
    let b = |p| ep("10.244.1.3", p, "n1");
    let c = |p| ep("10.244.2.2", p, "n2");
    // The same pods' IPv6 addresses (an addressType IPv6 slice).
    let a6 = |p| ep("fd00:10:244:1::2", p, "n1");
    let b6 = |p| ep("fd00:10:244:1::3", p, "n1");
    let c6 = |p| ep("fd00:10:244:2::2", p, "n2");
    let mut udp6 = b6(53);
    udp6.proto = Proto::Udp;
    let mut term = a(8080);
    term.ready = false;
    term.terminating = true;
    let named = |mut e: EndpointInfo, n: &str| {
        e.port_name = n.into();
        e
    };
    let mut udp = b(53);
    udp.proto = Proto::Udp;
    vec![
        Svc {
            cip6: Some("fd00:10:96::20"),
            ports: vec![("", 80, Some(30080))],
            ext: vec!["192.0.2.10", "2001:db8::10"],
            lb: vec!["192.0.2.50"],
            eps: vec![a(8080), b(8080), c(8080), a6(8080), b6(8080), c6(8080)],
            ..svc("web", "10.96.0.20")
        },
        Svc {
            cip6: Some("fd00:10:96::30"),
            ports: vec![("", 80, Some(30081))],
            lb: vec!["192.0.2.51", "2001:db8::51"],
            etp_local: true,
            eps: vec![a(8080), c(8080), a6(8080), c6(8080)],
            ..svc("local", "10.96.0.30")
        },
        Svc {
            ports: vec![("", 80, Some(30082))],
            etp_local: true,
            eps: vec![c(8080)],
            ..svc("remote-only", "10.96.0.31")
        },
        Svc {
            cip6: Some("fd00:10:96::40"),
            ports: vec![("", 80, Some(30083))],
            ..svc("empty", "10.96.0.40")
        },
        Svc {
            eps: vec![term],
            ..svc("term", "10.96.0.41")
        },
        Svc {
            itp_local: true,
            eps: vec![c(8080)],
            ..svc("itp", "10.96.0.42")
        },
        Svc {
            cip6: Some("fd00:10:96::50"),
            affinity: Some(10800),
            eps: vec![a(8080), b(8080), a6(8080), b6(8080)],
            ..svc("aff", "10.96.0.50")
        },
        Svc {
            ports: vec![("http", 80, None), ("https", 443, None)],
            eps: vec![named(a(8080), "http"), named(a(8443), "https")],
            ..svc("multi", "10.96.0.60")
        },
        Svc {
            cip6: Some("fd00:10:96::10"),
            proto: Proto::Udp,
            ports: vec![("", 53, None)],
            eps: vec![udp, udp6],
            ..svc("dns", "10.96.0.10")
        },
        // IPv6-only (primary family IPv6) with only an IPv4 slice: no endpoints of its family.
        Svc {
            ports: vec![("", 80, Some(30084))],
            eps: vec![a(8080)],
            ..svc("only6", "fd00:10:96::45")
        },
    ]
}

fn settings() -> NodeSettings {
    NodeSettings {
        cluster_cidrs: vec![
            Cidr::parse("10.244.0.0/16").expect("cidr"),
            Cidr::parse("fd00:10:244::/56").expect("cidr"),
        ],
        ..Default::default()
    }
}

/// (flow, from, src, proto, dst, port, expected)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Proto,
    &'static str,
    u16,
    &'static str,
);

const ALL3: &str = "10.244.1.2:8080, 10.244.1.3:8080, 10.244.2.2:8080";
const ALL3_MASQ: &str = "10.244.1.2:8080 masq, 10.244.1.3:8080 masq, 10.244.2.2:8080 masq";
const ALL3_6: &str = "[fd00:10:244:1::2]:8080, [fd00:10:244:1::3]:8080, [fd00:10:244:2::2]:8080";
const ALL3_6_MASQ: &str =
    "[fd00:10:244:1::2]:8080 masq, [fd00:10:244:1::3]:8080 masq, [fd00:10:244:2::2]:8080 masq";

fn rows() -> Vec<Row> {
    use Proto::*;
    vec![
        (
            "ClusterIP from a pod",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.20",
            80,
            ALL3,
        ),
        (
            "ClusterIP from a remote pod",
            "pod",
            "10.244.2.9",
            Tcp,
            "10.96.0.20",
            80,
            ALL3,
        ),
        (
            "ClusterIP from outside is masqueraded",
            "outside",
            "172.18.0.99",
            Tcp,
            "10.96.0.20",
            80,
            ALL3_MASQ,
        ),
        (
            "ClusterIP from the node itself",
            "local",
            NODE_IP,
            Tcp,
            "10.96.0.20",
            80,
            ALL3_MASQ,
        ),
        (
            "ClusterIP hairpin",
            "pod",
            "10.244.1.2",
            Tcp,
            "10.96.0.20",
            80,
            "10.244.1.2:8080 masq, 10.244.1.3:8080, 10.244.2.2:8080",
        ),
        (
            "ClusterIP unknown port",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.20",
            81,
            "REJECT",
        ),
        (
            "ClusterIP wrong protocol",
            "pod",
            "10.244.1.5",
            Udp,
            "10.96.0.20",
            80,
            "REJECT",
        ),
        (
            "NodePort from outside",
            "outside",
            "172.18.0.99",
            Tcp,
            NODE_IP,
            30080,
            ALL3_MASQ,
        ),
        (
            "NodePort from the node",
            "local",
            NODE_IP,
            Tcp,
            NODE_IP,
            30080,
            ALL3_MASQ,
        ),
        (
            "NodePort on localhost is not served",
            "local",
            "127.0.0.1",
            Tcp,
            "127.0.0.1",
            30080,
            "ACCEPT",
        ),
        (
            "externalIP from outside",
            "outside",
            "172.18.0.99",
            Tcp,
            "192.0.2.10",
            80,
            ALL3_MASQ,
        ),
        (
            "LoadBalancer IP from outside",
            "outside",
            "172.18.0.99",
            Tcp,
            "192.0.2.50",
            80,
            ALL3_MASQ,
        ),
        (
            "LoadBalancer IP wrong port",
            "outside",
            "172.18.0.99",
            Tcp,
            "192.0.2.50",
            81,
            "ACCEPT",
        ),
        (
            "Local policy LB from outside: own pods, source kept",
            "outside",
            "172.18.0.99",
            Tcp,
            "192.0.2.51",
            80,
            "10.244.1.2:8080",
        ),
        (
            "Local policy NodePort from outside",
            "outside",
            "172.18.0.99",
            Tcp,
            NODE_IP,
            30081,
            "10.244.1.2:8080",
        ),
        (
            "Local policy LB from a pod: every endpoint",
            "pod",
            "10.244.1.5",
            Tcp,
            "192.0.2.51",
            80,
            "10.244.1.2:8080, 10.244.2.2:8080",
        ),
        (
            "Local policy NodePort from the node: every endpoint",
            "local",
            NODE_IP,
            Tcp,
            NODE_IP,
            30081,
            "10.244.1.2:8080 masq, 10.244.2.2:8080 masq",
        ),
        (
            "Local policy ClusterIP ignores externalTrafficPolicy",
            "pod",
            "10.244.2.9",
            Tcp,
            "10.96.0.30",
            80,
            "10.244.1.2:8080, 10.244.2.2:8080",
        ),
        (
            "Local policy, none here: outside is dropped",
            "outside",
            "172.18.0.99",
            Tcp,
            NODE_IP,
            30082,
            "DROP",
        ),
        (
            "Local policy, none here: a pod still gets one",
            "pod",
            "10.244.1.5",
            Tcp,
            NODE_IP,
            30082,
            "10.244.2.2:8080",
        ),
        (
            "no endpoints: ClusterIP rejects",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.40",
            80,
            "REJECT",
        ),
        (
            "no endpoints: NodePort rejects",
            "outside",
            "172.18.0.99",
            Tcp,
            NODE_IP,
            30083,
            "REJECT",
        ),
        (
            "terminating-only endpoints still serve",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.41",
            80,
            "10.244.1.2:8080",
        ),
        (
            "internalTrafficPolicy Local, none here",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.42",
            80,
            "DROP",
        ),
        (
            "session affinity, new client",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.50",
            80,
            "10.244.1.2:8080, 10.244.1.3:8080",
        ),
        (
            "session affinity, remembered client",
            "pod",
            "10.244.1.77",
            Tcp,
            "10.96.0.50",
            80,
            "10.244.1.3:8080",
        ),
        (
            "multi-port http",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.60",
            80,
            "10.244.1.2:8080",
        ),
        (
            "multi-port https",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.60",
            443,
            "10.244.1.2:8443",
        ),
        (
            "UDP",
            "pod",
            "10.244.1.5",
            Udp,
            "10.96.0.10",
            53,
            "10.244.1.3:53",
        ),
        (
            "UDP port as TCP",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.96.0.10",
            53,
            "REJECT",
        ),
        (
            "not a service",
            "pod",
            "10.244.1.5",
            Tcp,
            "10.244.2.2",
            8080,
            "ACCEPT",
        ),
        // IPv6: the ip6 table / ip6tables rules of the same Services.
        (
            "v6 ClusterIP from a pod",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:96::20",
            80,
            ALL3_6,
        ),
        (
            "v6 ClusterIP from outside is masqueraded",
            "outside",
            "fd00:172:18::99",
            Tcp,
            "fd00:10:96::20",
            80,
            ALL3_6_MASQ,
        ),
        (
            "v6 ClusterIP from the node itself",
            "local",
            NODE_IP6,
            Tcp,
            "fd00:10:96::20",
            80,
            ALL3_6_MASQ,
        ),
        (
            "v6 ClusterIP hairpin",
            "pod",
            "fd00:10:244:1::2",
            Tcp,
            "fd00:10:96::20",
            80,
            "[fd00:10:244:1::2]:8080 masq, [fd00:10:244:1::3]:8080, [fd00:10:244:2::2]:8080",
        ),
        (
            "v6 ClusterIP unknown port",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:96::20",
            81,
            "REJECT",
        ),
        (
            "v6 NodePort from outside",
            "outside",
            "fd00:172:18::99",
            Tcp,
            NODE_IP6,
            30080,
            ALL3_6_MASQ,
        ),
        (
            "v6 NodePort on localhost is not served",
            "local",
            "::1",
            Tcp,
            "::1",
            30080,
            "ACCEPT",
        ),
        (
            "v6 externalIP from outside",
            "outside",
            "fd00:172:18::99",
            Tcp,
            "2001:db8::10",
            80,
            ALL3_6_MASQ,
        ),
        (
            "v6 Local policy LB from outside: own pods, source kept",
            "outside",
            "fd00:172:18::99",
            Tcp,
            "2001:db8::51",
            80,
            "[fd00:10:244:1::2]:8080",
        ),
        (
            "v6 Local policy NodePort from outside",
            "outside",
            "fd00:172:18::99",
            Tcp,
            NODE_IP6,
            30081,
            "[fd00:10:244:1::2]:8080",
        ),
        (
            "v6 Local policy NodePort from a pod: every endpoint",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            NODE_IP6,
            30081,
            "[fd00:10:244:1::2]:8080, [fd00:10:244:2::2]:8080",
        ),
        (
            "v6 no endpoints: ClusterIP rejects",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:96::40",
            80,
            "REJECT",
        ),
        (
            "v6 no endpoints: NodePort rejects",
            "outside",
            "fd00:172:18::99",
            Tcp,
            NODE_IP6,
            30083,
            "REJECT",
        ),
        (
            "v6 Service with only an IPv4 slice rejects",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:96::45",
            80,
            "REJECT",
        ),
        (
            "v6-only Service's NodePort is not served over IPv4",
            "outside",
            "172.18.0.99",
            Tcp,
            NODE_IP,
            30084,
            "ACCEPT",
        ),
        (
            "v6 session affinity, new client",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:96::50",
            80,
            "[fd00:10:244:1::2]:8080, [fd00:10:244:1::3]:8080",
        ),
        (
            "v6 session affinity, remembered client",
            "pod",
            "fd00:10:244:1::77",
            Tcp,
            "fd00:10:96::50",
            80,
            "[fd00:10:244:1::3]:8080",
        ),
        (
            "v6 UDP",
            "pod",
            "fd00:10:244:1::5",
            Udp,
            "fd00:10:96::10",
            53,
            "[fd00:10:244:1::3]:53",
        ),
        (
            "v6 not a service",
            "pod",
            "fd00:10:244:1::5",
            Tcp,
            "fd00:10:244:2::2",
            8080,
            "ACCEPT",
        ),
    ]
}

fn packet(from: &str, src: &str, proto: Proto, dst: &str, port: u16) -> Packet {
    let dst = ip(dst);
    Packet {
        src: ip(src),
        proto,
        dst,
        dport: port,
        local_origin: from == "local",
        dst_local: dst == ip(NODE_IP) || dst == ip(NODE_IP6) || dst.is_loopback(),
    }
}

/// The remembered affinity clients (10.244.1.77 → 10.244.1.3, fd00:10:244:1::77 → fd00:10:244:1::3) in the nft tables.
fn remember_nft(t: &mut NftRules) {
    let rows = [
        (&mut t.v4, "ip", "10.244.1.3:8080", "10.244.1.77"),
        (
            &mut t.v6,
            "ip6",
            "[fd00:10:244:1::3]:8080",
            "fd00:10:244:1::77",
        ),
    ];
    for (t, fam, target, client) in rows {
        let rule = format!("meta l4proto tcp dnat {fam} to {target}");
        let chain = t
            .chains
            .iter()
            .find(|(n, r)| n.starts_with("affep-") && n.contains("-int-") && r.contains(&rule))
            .map(|(n, _)| n.replacen("affep-", "aff-", 1))
            .expect("affinity endpoint chain");
        t.remembered.insert(chain, BTreeSet::from([ip(client)]));
    }
}

fn remember_ipt(t: &mut IptTables, target: &str, client: &str) {
    let sep = t.tables["nat"]
        .iter()
        .find(|(n, r)| {
            n.starts_with("SVCNET-SEP-")
                && r.iter().any(|r| {
                    r.iter().any(|w| w == "--set") && r.last().is_some_and(|w| w == target)
                })
        })
        .map(|(n, _)| n.clone())
        .expect("affinity endpoint chain");
    t.remembered.insert(sep, BTreeSet::from([ip(client)]));
}

/// Both families' iptables rulesets, each as its own restore would load it.
struct Ipt {
    v4: IptTables,
    v6: IptTables,
}

impl Ipt {
    fn full(st: &DesiredState, s: &NodeSettings) -> Ipt {
        let mut t = Ipt {
            v4: IptTables::default(),
            v6: IptTables::default(),
        };
        t.v4.apply(&iptables::render_full(st, s, Family::V4));
        t.v6.apply(&iptables::render_full(st, s, Family::V6));
        t
    }

    fn trace(&self, p: &Packet) -> Outcome {
        if p.dst.is_ipv6() {
            self.v6.trace(p)
        } else {
            self.v4.trace(p)
        }
    }
}

fn check_flows(trace: &dyn Fn(&Packet) -> Outcome, which: &str) {
    let mut failures = Vec::new();
    for (flow, from, src, proto, dst, port, want) in rows() {
        let got = trace(&packet(from, src, proto, dst, port)).to_string();
        if got != want {
            failures.push(format!("{which}: {flow}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn nftables_flows() {
    let st = state(&fixture());
    let mut t = NftRules::default();
    t.apply(&nftables::render_full(&st, &settings()));
    t.check_refs();
    assert!(
        t.v6.maps["cluster-ips"].contains_key("fd00:10:96::20"),
        "the ip6 table has the IPv6 ClusterIPs"
    );
    assert!(
        !t.v4.maps["cluster-ips"].contains_key("fd00:10:96::45"),
        "and the ip table none of them"
    );
    remember_nft(&mut t);
    check_flows(&|p| t.trace(p), "nftables");
}

#[test]
fn iptables_flows() {
    let st = state(&fixture());
    let mut t = Ipt::full(&st, &settings());
    remember_ipt(&mut t.v4, "10.244.1.3:8080", "10.244.1.77");
    remember_ipt(&mut t.v6, "[fd00:10:244:1::3]:8080", "fd00:10:244:1::77");
    check_flows(&|p| t.trace(p), "iptables");
}

#[test]
fn v6_reject_is_icmpv6() {
    let st = state(&fixture());
    let script = nftables::render_full(&st, &settings());
    let v6 = &script[script.find("table ip6 svcnet {\n  ").expect("ip6 table")..];
    assert!(v6.contains("reject with icmpv6 type port-unreachable"));
    assert!(!v6.contains("reject with icmp type"));
    let ipt6 = iptables::render_full(&st, &settings(), Family::V6);
    assert!(ipt6.contains("-d fd00:10:96::40/128 -p tcp -m tcp --dport 80 -j REJECT"));
    assert!(!ipt6.contains("/32 "), "{ipt6}");
}

#[test]
fn masquerade_all_and_no_cluster_cidr() {
    let st = state(&fixture());
    // (settings, flow source, expected for ClusterIP web from a pod)
    let rows = [
        (
            NodeSettings {
                masquerade_all: true,
                ..settings()
            },
            "10.244.1.5",
            ALL3_MASQ,
        ),
        (NodeSettings::default(), "172.18.0.99", ALL3),
    ];
    for (s, src, want) in rows {
        let mut t = NftRules::default();
        t.apply(&nftables::render_full(&st, &s));
        let i = Ipt::full(&st, &s);
        let p = packet("pod", src, Proto::Tcp, "10.96.0.20", 80);
        assert_eq!(t.trace(&p).to_string(), want, "nft {s:?}");
        assert_eq!(i.trace(&p).to_string(), want, "ipt {s:?}");
    }
}

#[test]
fn node_port_addresses_restrict_nodeports() {
    let st = state(&fixture());
    let v4_only = NodeSettings {
        node_port_addresses: vec![Cidr::parse("172.18.0.0/24").expect("cidr")],
        ..settings()
    };
    let both = NodeSettings {
        node_port_addresses: vec![
            Cidr::parse("172.18.0.0/24").expect("cidr"),
            Cidr::parse("fd00:172:18::/64").expect("cidr"),
        ],
        ..settings()
    };
    // (settings, client, destination (a local address), expected)
    let rows = [
        (&v4_only, "172.18.0.99", NODE_IP, ALL3_MASQ),
        (&v4_only, "172.18.0.99", "10.0.0.1", "ACCEPT"),
        // No IPv6 prefix given: IPv6 NodePorts stay on every local IPv6 address (upstream's per-family rule).
        (&v4_only, "fd00:172:18::99", "fd00:99::1", ALL3_6_MASQ),
        (&both, "fd00:172:18::99", NODE_IP6, ALL3_6_MASQ),
        (&both, "fd00:172:18::99", "fd00:99::1", "ACCEPT"),
    ];
    for (s, src, dst, want) in rows {
        let mut t = NftRules::default();
        t.apply(&nftables::render_full(&st, s));
        let i = Ipt::full(&st, s);
        let mut p = packet("outside", src, Proto::Tcp, dst, 30080);
        p.dst_local = true;
        assert_eq!(t.trace(&p).to_string(), want, "nft {dst}");
        assert_eq!(i.trace(&p).to_string(), want, "ipt {dst}");
    }
}

/// A sequence of states; after each, incremental application must equal a full render.
fn evolutions() -> Vec<Vec<Svc>> {
    let mut steps = Vec::new();
    let base = fixture();
    steps.push(base);
    // Scale web down to one endpoint (its IPv6 side to none), remove dns, add a new Service.
    let mut s = fixture();
    s[0].eps.truncate(1);
    s.retain(|x| x.name != "dns");
    s.push(Svc {
        eps: vec![ep("10.244.1.9", 9000, "n1")],
        ..svc("new", "10.96.0.70")
    });
    steps.push(s);
    // Affinity endpoints change, empty service gets endpoints, local one loses its local endpoint.
    let mut s = fixture();
    s[6].eps.truncate(1);
    s[3].eps.push(ep("10.244.2.3", 8080, "n2"));
    s[1].eps.retain(|e| e.node.as_deref() != Some("n1"));
    steps.push(s);
    // Everything gone.
    steps.push(Vec::new());
    steps.push(fixture());
    steps
}

#[test]
fn nftables_incremental_equals_full() {
    let exec = FakeExec::default();
    let mut b = NftBackend::new(Box::new(exec.clone()), settings());
    let mut live = NftRules::default();
    for (i, step) in evolutions().iter().enumerate() {
        let st = state(step);
        let r = b.sync(&st, false).expect("sync");
        assert_eq!(r.full, i == 0, "step {i}");
        for (cmd, stdin) in exec.take() {
            if cmd == "nft -f -" {
                live.apply(&stdin);
            }
        }
        live.check_refs();
        let mut want = NftRules::default();
        want.apply(&nftables::render_full(&st, &settings()));
        for (l, w, fam) in [(&live.v4, &want.v4, "ip"), (&live.v6, &want.v6, "ip6")] {
            assert_eq!(l.maps, w.maps, "step {i}: {fam} maps");
            assert_eq!(l.chains, w.chains, "step {i}: {fam} chains");
        }
    }
    // Nothing changed: no transaction at all.
    let st = state(&fixture());
    assert_eq!(b.sync(&st, false).expect("sync").changed_ports, 0);
    assert!(exec.take().is_empty());
}

#[test]
fn nftables_failed_sync_forces_full_resync() {
    let exec = FakeExec::default();
    let mut b = NftBackend::new(Box::new(exec.clone()), settings());
    b.sync(&state(&fixture()), false).expect("first sync");
    exec.fail.lock().expect("lock").push("nft".into());
    assert!(b.sync(&state(&[]), false).is_err());
    exec.fail.lock().expect("lock").clear();
    exec.take();
    let r = b.sync(&state(&[]), false).expect("retry");
    assert!(r.full, "after a failure the next sync is full");
    let log = exec.take();
    assert!(
        log[0]
            .1
            .starts_with("table ip svcnet {\n}\ndelete table ip svcnet\n"),
        "{}",
        log[0].1
    );
}

#[test]
fn adding_one_service_touches_only_its_elements() {
    let exec = FakeExec::default();
    let mut b = NftBackend::new(Box::new(exec.clone()), settings());
    let mut s = fixture();
    b.sync(&state(&s), false).expect("sync");
    exec.take();
    s.push(Svc {
        eps: vec![ep("10.244.1.9", 9000, "n1")],
        ..svc("new", "10.96.0.70")
    });
    b.sync(&state(&s), false).expect("sync");
    let log = exec.take();
    assert_eq!(
        log[0].1,
        "add element ip svcnet cluster-ips { 10.96.0.70 }\n\
         add element ip svcnet hairpin { 10.244.1.9 . 10.244.1.9 }\n\
         add element ip svcnet eps-all { 10.96.0.70 . tcp . 80 . 0 : 10.244.1.9 . 9000 }\n\
         add element ip svcnet service-ips { 10.96.0.70 . tcp . 80 : goto int-1 }\n"
    );
}

#[test]
fn iptables_incremental_equals_full() {
    let exec = FakeExec::default();
    let mut b = IptBackend::new(Box::new(exec.clone()), settings(), "iptables");
    let mut live = [IptTables::default(), IptTables::default()];
    for (i, step) in evolutions().iter().enumerate() {
        let st = state(step);
        b.sync(&st, false).expect("sync");
        for (cmd, stdin) in exec.take() {
            match cmd.as_str() {
                "iptables-restore -w --noflush" => live[0].apply(&stdin),
                "ip6tables-restore -w --noflush" => live[1].apply(&stdin),
                _ => {}
            }
        }
        let want = Ipt::full(&st, &settings());
        // Built-in hooks are not part of the restore; compare our chains.
        for (table, (live, want)) in ["nat", "filter"]
            .into_iter()
            .flat_map(|t| [(t, (&live[0], &want.v4)), (t, (&live[1], &want.v6))])
        {
            let ours = |t: &IptTables| -> Vec<(String, Vec<Vec<String>>)> {
                t.tables
                    .get(table)
                    .into_iter()
                    .flatten()
                    .filter(|(n, _)| n.starts_with("SVCNET-"))
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect()
            };
            assert_eq!(ours(live), ours(want), "step {i}: {table}");
        }
    }
}

/// A network namespace for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("svct-{}-{tag}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs");
        assert!(ok.success(), "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Runs commands inside a namespace through `ip netns exec`.
#[derive(Debug)]
struct InNetns(String, FakeExec);

impl crate::backend::Exec for InNetns {
    fn run(&mut self, program: &str, args: &[&str], stdin: &str) -> crate::backend::Result<String> {
        let _ = self.1.run(program, args, stdin);
        let mut a = vec!["netns", "exec", self.0.as_str(), program];
        a.extend(args);
        crate::backend::SystemExec.run("ip", &a, stdin)
    }
}

#[test]
fn kernel_accepts_every_transaction() {
    let ns = Netns::new("nftload");
    for (mode, restore) in [
        ("nft", "nft -f -"),
        ("ipt", "iptables-restore -w --noflush"),
    ] {
        let log = FakeExec::default();
        let exec = Box::new(InNetns(ns.0.clone(), log.clone()));
        let mut b: Box<dyn Backend> = if mode == "nft" {
            Box::new(NftBackend::new(exec, settings()))
        } else {
            Box::new(IptBackend::new(exec, settings(), "iptables"))
        };
        for (i, step) in evolutions().iter().enumerate() {
            let st = state(step);
            if let Err(e) = b.sync(&st, false) {
                let last = log
                    .take()
                    .into_iter()
                    .rev()
                    .find(|(c, _)| c == restore)
                    .map(|x| x.1);
                panic!("{mode} step {i}: {e}\n{}", last.unwrap_or_default());
            }
        }
        b.cleanup().expect("cleanup");
    }
}

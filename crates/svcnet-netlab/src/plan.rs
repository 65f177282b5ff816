//! The lab's address and naming plan, computed purely from a [`LabConfig`].

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Ipv4Net;

/// Every namespace and host link the lab creates starts with this.
pub const PREFIX: &str = "svcnet-";
/// The bridge inside each node that pod veths attach to.
pub const POD_BRIDGE: &str = "svcpods0";
/// A node's interface on the node network.
pub const NODE_LINK: &str = "eth0";
/// The node-network bridge inside the lab's network namespace.
pub const LAB_BRIDGE: &str = "br0";
/// The lab end of the host's veth (inside the lab's network namespace).
pub const HOST_PEER: &str = "host";
/// Offset of node 0 inside the node network (node i gets .10+i; the host gets .1).
pub const FIRST_NODE_OFFSET: u32 = 10;
/// Longest cluster name: the host link `svcnet-<cluster>` must fit IFNAMSIZ (15 bytes).
pub const MAX_CLUSTER_NAME: usize = 15 - PREFIX.len();

/// What the user (or `svcnet up`) asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabConfig {
    pub cluster: String,
    pub nodes: u32,
    pub node_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// LoadBalancer addresses to route from the host to node 0, whose proxy
    /// serves them (may lie inside the node network, above the nodes).
    #[serde(default)]
    pub lb_cidr: Option<Ipv4Net>,
}

impl Default for LabConfig {
    /// The address plan of system.md: 172.18.0.0/24 nodes, 10.244.0.0/16 pods, 10.96.0.0/16 services.
    fn default() -> Self {
        LabConfig {
            cluster: "lab".into(),
            nodes: 2,
            node_cidr: net([172, 18, 0, 0], 24),
            pod_cidr: net([10, 244, 0, 0], 16),
            service_cidr: net([10, 96, 0, 0], 16),
            lb_cidr: None,
        }
    }
}

fn net(a: [u8; 4], len: u8) -> Ipv4Net {
    // Constant inputs with no host bits; a failure here is a typo in this file.
    Ipv4Net::new(Ipv4Addr::from(a), len).expect("constant prefix")
}

/// Why a configuration cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "cluster name {0:?} must be 1-{MAX_CLUSTER_NAME} lower-case letters or digits, starting with a letter (it becomes part of interface names)"
    )]
    ClusterName(String),
    #[error("--nodes must be at least 1")]
    NoNodes,
    #[error("{nodes} nodes do not fit the node network {cidr}: it has room for {max}")]
    NodeNetworkFull { nodes: u32, cidr: Ipv4Net, max: u32 },
    #[error(
        "{nodes} nodes do not fit the pod network {cidr} with a /24 per node: it has room for {max}"
    )]
    PodNetworkFull { nodes: u32, cidr: Ipv4Net, max: u32 },
    #[error("the LoadBalancer range {lb} overlaps the address {ip} of {node}")]
    LbOverlapsNode {
        lb: Ipv4Net,
        node: String,
        ip: Ipv4Addr,
    },
    #[error("the {a_name} network {a} overlaps the {b_name} network {b}")]
    Overlap {
        a_name: &'static str,
        a: Ipv4Net,
        b_name: &'static str,
        b: Ipv4Net,
    },
}

/// Where a route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteKind {
    /// Forward to this gateway.
    Via(Ipv4Addr),
    /// Answer ICMP unreachable: the prefix belongs to the lab but is not routed here.
    Unreachable,
}

/// One route the lab installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Ipv4Net,
    pub kind: RouteKind,
}

impl fmt::Display for Route {
    /// The form `ip route` prints (without device and protocol).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Via(gw) => write!(f, "{} via {gw}", self.dst),
            RouteKind::Unreachable => write!(f, "unreachable {}", self.dst),
        }
    }
}

/// One node's namespace, addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The Kubernetes node name (`node<i>`).
    pub name: String,
    /// Network namespace, `svcnet-<cluster>-node<i>` (under /run/netns).
    pub netns: String,
    /// The node's address on the node network.
    pub ip: Ipv4Addr,
    /// This node's share of the pod network (a /24), the Node's `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
    /// The pod bridge's address: pods' gateway.
    pub pod_gateway: Ipv4Addr,
    /// Routes inside the node namespace besides the connected ones.
    pub routes: Vec<Route>,
}

/// Names, addresses and routes of a whole lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    /// Namespace holding the node-network bridge, `svcnet-<cluster>-net`.
    pub net_ns: String,
    /// The host's veth, `svcnet-<cluster>`.
    pub host_link: String,
    pub host_ip: Ipv4Addr,
    pub node_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub nodes: Vec<NodePlan>,
    /// Routes in the host namespace besides the connected node network.
    pub host_routes: Vec<Route>,
}

impl Plan {
    /// Every lab namespace starts with this (`svcnet-<cluster>-`).
    pub fn netns_prefix(&self) -> String {
        netns_prefix(&self.cluster)
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The lab end of node `i`'s veth, inside the lab namespace.
    pub fn lab_port(i: usize) -> String {
        format!("node{i}")
    }

    /// All namespaces of the plan: the lab namespace and the nodes'.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.net_ns.clone())
            .chain(self.nodes.iter().map(|n| n.netns.clone()))
            .collect()
    }
}

/// `svcnet-<cluster>-`: the prefix of a cluster's namespaces.
pub fn netns_prefix(cluster: &str) -> String {
    format!("{PREFIX}{cluster}-")
}

/// Checks a cluster name: it becomes part of namespace and interface names.
pub fn check_cluster_name(name: &str) -> Result<(), PlanError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CLUSTER_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(PlanError::ClusterName(name.into()))
    }
}

/// Computes the plan, or says why the configuration cannot work.
pub fn plan(cfg: &LabConfig) -> Result<Plan, PlanError> {
    check_cluster_name(&cfg.cluster)?;
    if cfg.nodes == 0 {
        return Err(PlanError::NoNodes);
    }
    let nets = [
        ("node", cfg.node_cidr),
        ("pod", cfg.pod_cidr),
        ("service", cfg.service_cidr),
    ];
    for (i, (a_name, a)) in nets.iter().enumerate() {
        for (b_name, b) in &nets[i + 1..] {
            if a.overlaps(b) {
                return Err(PlanError::Overlap {
                    a_name,
                    a: *a,
                    b_name,
                    b: *b,
                });
            }
        }
    }
    // Node i at .10+i, leaving the broadcast address free.
    let node_room = u32::try_from(
        cfg.node_cidr
            .size()
            .saturating_sub(u64::from(FIRST_NODE_OFFSET) + 1),
    )
    .unwrap_or(u32::MAX);
    if cfg.nodes > node_room {
        return Err(PlanError::NodeNetworkFull {
            nodes: cfg.nodes,
            cidr: cfg.node_cidr,
            max: node_room,
        });
    }
    let pod_room = if cfg.pod_cidr.prefix_len() > 24 {
        0
    } else {
        1u32 << (24 - cfg.pod_cidr.prefix_len()).min(31)
    };
    if cfg.nodes > pod_room {
        return Err(PlanError::PodNetworkFull {
            nodes: cfg.nodes,
            cidr: cfg.pod_cidr,
            max: pod_room,
        });
    }
    let host_ip = cfg.node_cidr.host(1).ok_or(PlanError::NodeNetworkFull {
        nodes: cfg.nodes,
        cidr: cfg.node_cidr,
        max: node_room,
    })?;
    let prefix = netns_prefix(&cfg.cluster);
    let mut nodes = Vec::new();
    for i in 0..cfg.nodes {
        // Both fit: checked against node_room and pod_room above.
        let full = || PlanError::NodeNetworkFull {
            nodes: cfg.nodes,
            cidr: cfg.node_cidr,
            max: node_room,
        };
        let ip = cfg.node_cidr.host(FIRST_NODE_OFFSET + i).ok_or_else(full)?;
        let pod_cidr = cfg.pod_cidr.subnet(24, i).ok_or_else(full)?;
        let pod_gateway = pod_cidr.host(1).ok_or_else(full)?;
        nodes.push(NodePlan {
            name: format!("node{i}"),
            netns: format!("{prefix}node{i}"),
            ip,
            pod_cidr,
            pod_gateway,
            routes: Vec::new(),
        });
    }
    if let Some(lb) = cfg.lb_cidr {
        for (name, other) in [("pod", cfg.pod_cidr), ("service", cfg.service_cidr)] {
            if lb.overlaps(&other) {
                return Err(PlanError::Overlap {
                    a_name: "LoadBalancer",
                    a: lb,
                    b_name: name,
                    b: other,
                });
            }
        }
        let taken = std::iter::once(("the host".to_string(), host_ip))
            .chain(nodes.iter().map(|n| (format!("node {}", n.name), n.ip)));
        for (node, ip) in taken {
            if lb.contains(ip) {
                return Err(PlanError::LbOverlapsNode { lb, node, ip });
            }
        }
    }
    let others: Vec<Route> = nodes
        .iter()
        .map(|n| Route {
            dst: n.pod_cidr,
            kind: RouteKind::Via(n.ip),
        })
        .collect();
    for n in &mut nodes {
        n.routes = others
            .iter()
            .filter(|r| r.dst != n.pod_cidr)
            .copied()
            .collect();
        // Node-originated ClusterIP traffic needs a route to reach the proxy's
        // output hook; packets the proxy does not take end at the host, which
        // has an unreachable route for the service network.
        n.routes.push(Route {
            dst: cfg.service_cidr,
            kind: RouteKind::Via(host_ip),
        });
    }
    let mut host_routes = others;
    if let (Some(lb), Some(n0)) = (cfg.lb_cidr, nodes.first()) {
        host_routes.push(Route {
            dst: lb,
            kind: RouteKind::Via(n0.ip),
        });
    }
    host_routes.push(Route {
        dst: cfg.pod_cidr,
        kind: RouteKind::Unreachable,
    });
    host_routes.push(Route {
        dst: cfg.service_cidr,
        kind: RouteKind::Unreachable,
    });
    Ok(Plan {
        cluster: cfg.cluster.clone(),
        net_ns: format!("{prefix}net"),
        host_link: format!("{PREFIX}{}", cfg.cluster),
        host_ip,
        node_cidr: cfg.node_cidr,
        pod_cidr: cfg.pod_cidr,
        service_cidr: cfg.service_cidr,
        nodes,
        host_routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: impl FnOnce(&mut LabConfig)) -> LabConfig {
        let mut c = LabConfig::default();
        f(&mut c);
        c
    }

    /// Renders a plan the way a user would inspect it with `ip`.
    fn render(p: &Plan) -> String {
        let mut out = format!(
            "lab {} bridge {LAB_BRIDGE}\nhost {} {}/{}\n",
            p.net_ns,
            p.host_link,
            p.host_ip,
            p.node_cidr.prefix_len()
        );
        for r in &p.host_routes {
            out += &format!("  host: {r}\n");
        }
        for n in &p.nodes {
            out += &format!(
                "{} {} {NODE_LINK} {}/{} {POD_BRIDGE} {}/24 podCIDR {}\n",
                n.name,
                n.netns,
                n.ip,
                p.node_cidr.prefix_len(),
                n.pod_gateway,
                n.pod_cidr
            );
            for r in &n.routes {
                out += &format!("  {}: {r}\n", n.name);
            }
        }
        out
    }

    #[test]
    fn plans() {
        let cases: Vec<(LabConfig, &str)> = vec![
            (
                LabConfig::default(),
                "lab svcnet-lab-net bridge br0
host svcnet-lab 172.18.0.1/24
  host: 10.244.0.0/24 via 172.18.0.10
  host: 10.244.1.0/24 via 172.18.0.11
  host: unreachable 10.244.0.0/16
  host: unreachable 10.96.0.0/16
node0 svcnet-lab-node0 eth0 172.18.0.10/24 svcpods0 10.244.0.1/24 podCIDR 10.244.0.0/24
  node0: 10.244.1.0/24 via 172.18.0.11
  node0: 10.96.0.0/16 via 172.18.0.1
node1 svcnet-lab-node1 eth0 172.18.0.11/24 svcpods0 10.244.1.1/24 podCIDR 10.244.1.0/24
  node1: 10.244.0.0/24 via 172.18.0.10
  node1: 10.96.0.0/16 via 172.18.0.1
",
            ),
            (
                cfg(|c| {
                    c.cluster = "t1".into();
                    c.nodes = 1;
                    c.node_cidr = "100.64.3.0/24".parse().unwrap();
                    c.pod_cidr = "100.80.0.0/20".parse().unwrap();
                    c.service_cidr = "100.96.0.0/24".parse().unwrap();
                    c.lb_cidr = Some("100.64.3.192/26".parse().unwrap());
                }),
                "lab svcnet-t1-net bridge br0
host svcnet-t1 100.64.3.1/24
  host: 100.80.0.0/24 via 100.64.3.10
  host: 100.64.3.192/26 via 100.64.3.10
  host: unreachable 100.80.0.0/20
  host: unreachable 100.96.0.0/24
node0 svcnet-t1-node0 eth0 100.64.3.10/24 svcpods0 100.80.0.1/24 podCIDR 100.80.0.0/24
  node0: 100.96.0.0/24 via 100.64.3.1
",
            ),
        ];
        for (c, want) in cases {
            let p = plan(&c).unwrap();
            assert_eq!(render(&p), want, "{c:?}");
            assert!(
                p.namespaces()
                    .iter()
                    .all(|n| n.starts_with(&p.netns_prefix()))
            );
        }
    }

    #[test]
    fn rejected_configs() {
        let cases: Vec<(LabConfig, &str)> = vec![
            (
                cfg(|c| c.cluster = "".into()),
                "cluster name \"\" must be 1-8 lower-case letters or digits, starting with a letter (it becomes part of interface names)",
            ),
            (
                cfg(|c| c.cluster = "toolongname".into()),
                "cluster name \"toolongname\" must be 1-8 lower-case letters or digits, starting with a letter (it becomes part of interface names)",
            ),
            (
                cfg(|c| c.cluster = "a-b".into()),
                "cluster name \"a-b\" must be 1-8 lower-case letters or digits, starting with a letter (it becomes part of interface names)",
            ),
            (
                cfg(|c| c.cluster = "1lab".into()),
                "cluster name \"1lab\" must be 1-8 lower-case letters or digits, starting with a letter (it becomes part of interface names)",
            ),
            (
                cfg(|c| c.cluster = "Lab".into()),
                "cluster name \"Lab\" must be 1-8 lower-case letters or digits, starting with a letter (it becomes part of interface names)",
            ),
            (cfg(|c| c.nodes = 0), "--nodes must be at least 1"),
            (
                cfg(|c| c.nodes = 246),
                "246 nodes do not fit the node network 172.18.0.0/24: it has room for 245",
            ),
            (
                cfg(|c| {
                    c.nodes = 5;
                    c.pod_cidr = "10.244.0.0/22".parse().unwrap();
                }),
                "5 nodes do not fit the pod network 10.244.0.0/22 with a /24 per node: it has room for 4",
            ),
            (
                cfg(|c| c.pod_cidr = "10.244.0.0/25".parse().unwrap()),
                "2 nodes do not fit the pod network 10.244.0.0/25 with a /24 per node: it has room for 0",
            ),
            (
                cfg(|c| c.node_cidr = "172.18.0.0/29".parse().unwrap()),
                "2 nodes do not fit the node network 172.18.0.0/29: it has room for 0",
            ),
            (
                cfg(|c| c.service_cidr = "10.0.0.0/8".parse().unwrap()),
                "the pod network 10.244.0.0/16 overlaps the service network 10.0.0.0/8",
            ),
            (
                cfg(|c| c.node_cidr = "10.244.7.0/24".parse().unwrap()),
                "the node network 10.244.7.0/24 overlaps the pod network 10.244.0.0/16",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                plan(&c).map(|_| ()).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{c:?}"
            );
        }
        assert_eq!(
            plan(&cfg(|c| c.nodes = 245)).map(|p| p.nodes.len()),
            Ok(245)
        );
        assert_eq!(
            plan(&cfg(|c| c.cluster = "abcdefgh".into())).map(|p| p.host_link),
            Ok("svcnet-abcdefgh".into())
        );
    }

    #[test]
    fn plan_round_trips_through_json() {
        let p = plan(&LabConfig::default()).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"pod_cidr\":\"10.244.0.0/24\""), "{text}");
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }
}

//! The pure planner: one Service plus its endpoints and this node → what each service port needs on this node.
//!
//! This follows upstream kube-proxy's `CategorizeEndpoints` and the
//! per-service decisions of its iptables/nftables proxiers: which endpoints
//! internal and external traffic may reach, when to fall back to
//! serving-terminating endpoints, and when to reject or drop instead.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// Lower-case name as nft, iptables and conntrack spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

/// `namespace/name:port-name/PROTO`, upstream's ServicePortName.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub proto: Proto,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        write!(f, "/{}", self.proto.lower().to_uppercase())
    }
}

/// One service port as the planner needs it (already extracted from the Service object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub port_name: String,
    pub proto: Proto,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// The parts of a Service the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub external_ips: Vec<Ipv4Addr>,
    pub lb_ips: Vec<Ipv4Addr>,
    pub ports: Vec<ServicePortInfo>,
    pub internal_local: bool,
    pub external_local: bool,
    /// ClientIP affinity timeout in seconds, `None` for no affinity.
    pub affinity: Option<u32>,
}

/// One endpoint of one port, as read from EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointInfo {
    pub port_name: String,
    pub proto: Proto,
    pub addr: SocketAddrV4,
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// Where traffic of one kind goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Targets {
    /// Pick one of these (never empty).
    Endpoints(Vec<SocketAddrV4>),
    /// No endpoints at all: refuse (TCP RST / ICMP unreachable).
    Reject,
    /// Endpoints exist, but none the policy allows here: drop silently.
    Drop,
}

impl Targets {
    fn from_list(list: Vec<SocketAddrV4>, local_policy: bool, any: bool) -> Targets {
        if !list.is_empty() {
            Targets::Endpoints(list)
        } else if local_policy && any {
            Targets::Drop
        } else {
            Targets::Reject
        }
    }

    /// The endpoints, empty when rejecting or dropping.
    pub fn endpoints(&self) -> &[SocketAddrV4] {
        match self {
            Targets::Endpoints(e) => e,
            _ => &[],
        }
    }
}

/// What one service port needs on this node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortPlan {
    pub key: PortKey,
    pub port: u16,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub lb_ips: Vec<Ipv4Addr>,
    /// Traffic to the ClusterIPs, after internalTrafficPolicy.
    pub internal: Targets,
    /// Traffic to NodePort / externalIPs / LoadBalancer IPs, after externalTrafficPolicy.
    pub external: Targets,
    /// Every usable endpoint (cluster policy): external traffic under Local
    /// policy that comes from a pod or from the node itself goes here, as upstream does.
    pub cluster: Targets,
    pub external_local: bool,
    pub internal_local: bool,
    pub affinity: Option<u32>,
}

impl PortPlan {
    /// Every endpoint address any traffic of this port may reach.
    pub fn all_endpoints(&self) -> BTreeSet<SocketAddrV4> {
        let mut s = BTreeSet::new();
        for t in [&self.internal, &self.external, &self.cluster] {
            s.extend(t.endpoints().iter().copied());
        }
        s
    }

    /// Does this port receive external traffic (NodePort, externalIPs, LB)?
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.lb_ips.is_empty()
    }
}

/// Ready endpoints, or serving-terminating ones when none is ready (upstream's fallback).
fn usable<'a>(eps: impl Iterator<Item = &'a EndpointInfo> + Clone) -> Vec<SocketAddrV4> {
    let mut ready: Vec<SocketAddrV4> = eps.clone().filter(|e| e.ready).map(|e| e.addr).collect();
    if ready.is_empty() {
        ready = eps
            .filter(|e| e.serving && e.terminating)
            .map(|e| e.addr)
            .collect();
    }
    ready.sort();
    ready.dedup();
    ready
}

/// Plans every port of one Service. `endpoints` are all endpoints of the
/// Service's slices; `node` is this node's name.
pub fn plan_service(svc: &ServiceInfo, endpoints: &[EndpointInfo], node: &str) -> Vec<PortPlan> {
    let mut out = Vec::new();
    for p in &svc.ports {
        let eps: Vec<&EndpointInfo> = endpoints
            .iter()
            .filter(|e| e.port_name == p.port_name && e.proto == p.proto)
            .collect();
        let cluster = usable(eps.iter().copied());
        let local = usable(
            eps.iter()
                .copied()
                .filter(|e| e.node.as_deref() == Some(node)),
        );
        let any = !cluster.is_empty();
        let internal = if svc.internal_local {
            Targets::from_list(local.clone(), true, any)
        } else {
            Targets::from_list(cluster.clone(), false, any)
        };
        let external = if svc.external_local {
            Targets::from_list(local, true, any)
        } else {
            Targets::from_list(cluster.clone(), false, any)
        };
        out.push(PortPlan {
            key: PortKey {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port_name: p.port_name.clone(),
                proto: p.proto,
            },
            port: p.port,
            cluster_ips: svc.cluster_ips.clone(),
            node_port: p.node_port,
            external_ips: svc.external_ips.clone(),
            lb_ips: svc.lb_ips.clone(),
            internal,
            external,
            cluster: Targets::from_list(cluster, false, any),
            external_local: svc.external_local,
            internal_local: svc.internal_local,
            affinity: svc.affinity,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> EndpointInfo {
        EndpointInfo {
            port_name: "http".into(),
            proto: Proto::Tcp,
            addr: SocketAddrV4::new(ip.parse().unwrap(), 8080),
            node: Some(node.into()),
            ready,
            serving,
            terminating,
        }
    }

    fn svc(itp_local: bool, etp_local: bool) -> ServiceInfo {
        ServiceInfo {
            namespace: "default".into(),
            name: "web".into(),
            cluster_ips: vec!["10.96.0.20".parse().unwrap()],
            external_ips: vec![],
            lb_ips: vec![],
            ports: vec![ServicePortInfo {
                port_name: "http".into(),
                proto: Proto::Tcp,
                port: 80,
                node_port: Some(30080),
            }],
            internal_local: itp_local,
            external_local: etp_local,
            affinity: None,
        }
    }

    fn show(t: &Targets) -> String {
        match t {
            Targets::Endpoints(e) => e
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(","),
            Targets::Reject => "REJECT".into(),
            Targets::Drop => "DROP".into(),
        }
    }

    #[test]
    fn categorize_endpoints() {
        let a1 = ep("10.244.1.2", "n1", true, true, false);
        let a2 = ep("10.244.1.3", "n1", true, true, false);
        let b1 = ep("10.244.2.2", "n2", true, true, false);
        let b1_term = ep("10.244.2.2", "n2", false, true, true);
        let a1_term = ep("10.244.1.2", "n1", false, true, true);
        let a1_gone = ep("10.244.1.2", "n1", false, false, true);
        let a1_unready = ep("10.244.1.2", "n1", false, false, false);
        // (case, itp local, etp local, endpoints, internal, external, cluster)
        type Row = (
            &'static str,
            bool,
            bool,
            Vec<EndpointInfo>,
            &'static str,
            &'static str,
            &'static str,
        );
        let rows: Vec<Row> = vec![
            (
                "cluster all ready",
                false,
                false,
                vec![a1.clone(), a2.clone(), b1.clone()],
                "10.244.1.2,10.244.1.3,10.244.2.2",
                "10.244.1.2,10.244.1.3,10.244.2.2",
                "10.244.1.2,10.244.1.3,10.244.2.2",
            ),
            (
                "no endpoints",
                false,
                false,
                vec![],
                "REJECT",
                "REJECT",
                "REJECT",
            ),
            (
                "no endpoints, local",
                true,
                true,
                vec![],
                "REJECT",
                "REJECT",
                "REJECT",
            ),
            (
                "etp local, own pods",
                false,
                true,
                vec![a1.clone(), b1.clone()],
                "10.244.1.2,10.244.2.2",
                "10.244.1.2",
                "10.244.1.2,10.244.2.2",
            ),
            (
                "etp local, none here",
                false,
                true,
                vec![b1.clone()],
                "10.244.2.2",
                "DROP",
                "10.244.2.2",
            ),
            (
                "itp local, none here",
                true,
                false,
                vec![b1.clone()],
                "DROP",
                "10.244.2.2",
                "10.244.2.2",
            ),
            (
                "terminating fallback",
                false,
                false,
                vec![a1_term.clone(), b1_term.clone()],
                "10.244.1.2,10.244.2.2",
                "10.244.1.2,10.244.2.2",
                "10.244.1.2,10.244.2.2",
            ),
            (
                "ready wins over terminating",
                false,
                false,
                vec![a1_term.clone(), b1.clone()],
                "10.244.2.2",
                "10.244.2.2",
                "10.244.2.2",
            ),
            (
                "local terminating fallback while remote ready",
                false,
                true,
                vec![a1_term.clone(), b1.clone()],
                "10.244.2.2",
                "10.244.1.2",
                "10.244.2.2",
            ),
            (
                "terminating not serving is unusable",
                false,
                false,
                vec![a1_gone],
                "REJECT",
                "REJECT",
                "REJECT",
            ),
            (
                "unready is unusable",
                false,
                false,
                vec![a1_unready],
                "REJECT",
                "REJECT",
                "REJECT",
            ),
            (
                "duplicate across slices",
                false,
                false,
                vec![a1.clone(), a1.clone()],
                "10.244.1.2",
                "10.244.1.2",
                "10.244.1.2",
            ),
        ];
        for (case, itp, etp, eps, want_int, want_ext, want_cluster) in rows {
            let plans = plan_service(&svc(itp, etp), &eps, "n1");
            assert_eq!(plans.len(), 1, "{case}");
            let p = &plans[0];
            assert_eq!(show(&p.internal), want_int, "{case}: internal");
            assert_eq!(show(&p.external), want_ext, "{case}: external");
            assert_eq!(show(&p.cluster), want_cluster, "{case}: cluster");
        }
    }

    #[test]
    fn ports_match_by_name_and_protocol() {
        let mut s = svc(false, false);
        s.ports.push(ServicePortInfo {
            port_name: "dns".into(),
            proto: Proto::Udp,
            port: 53,
            node_port: None,
        });
        let mut udp = ep("10.244.1.9", "n1", true, true, false);
        udp.port_name = "dns".into();
        udp.proto = Proto::Udp;
        let mut wrong_proto = ep("10.244.1.8", "n1", true, true, false);
        wrong_proto.port_name = "dns".into();
        let plans = plan_service(
            &s,
            &[ep("10.244.1.2", "n1", true, true, false), udp, wrong_proto],
            "n1",
        );
        let got: Vec<String> = plans
            .iter()
            .map(|p| format!("{} {}", p.key, show(&p.internal)))
            .collect();
        assert_eq!(
            got,
            vec![
                "default/web:http/TCP 10.244.1.2",
                "default/web:dns/UDP 10.244.1.9"
            ]
        );
    }
}

//! The pure planner: one Service plus its endpoints and this node → what each service port needs on this node.
//!
//! This follows upstream kube-proxy's `CategorizeEndpoints` and the
//! per-service decisions of its iptables/nftables proxiers: which endpoints
//! internal and external traffic may reach, when to fall back to
//! serving-terminating endpoints, and when to reject or drop instead.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

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

/// An IP family. A dual-stack Service is planned once per family, like
/// upstream, which runs one proxier per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The Kubernetes spelling (`ipFamilies`, EndpointSlice `addressType`).
    pub fn api_name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// Parses an EndpointSlice `addressType` (`FQDN` and unknown types are `None`).
    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    /// Index for per-family arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `namespace/name:port-name/PROTO` (upstream's ServicePortName) plus the family it serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub proto: Proto,
    pub family: Family,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        write!(f, "/{}", self.proto.lower().to_uppercase())?;
        if self.family == Family::V6 {
            f.write_str("/IPv6")?;
        }
        Ok(())
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

/// The parts of a Service the proxy acts on. Addresses of both families;
/// the planner splits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub lb_ips: Vec<IpAddr>,
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
    pub addr: SocketAddr,
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// Where traffic of one kind goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Targets {
    /// Pick one of these (never empty).
    Endpoints(Vec<SocketAddr>),
    /// No endpoints at all: refuse (TCP RST / ICMP unreachable).
    Reject,
    /// Endpoints exist, but none the policy allows here: drop silently.
    Drop,
}

impl Targets {
    fn from_list(list: Vec<SocketAddr>, local_policy: bool, any: bool) -> Targets {
        if !list.is_empty() {
            Targets::Endpoints(list)
        } else if local_policy && any {
            Targets::Drop
        } else {
            Targets::Reject
        }
    }

    /// The endpoints, empty when rejecting or dropping.
    pub fn endpoints(&self) -> &[SocketAddr] {
        match self {
            Targets::Endpoints(e) => e,
            _ => &[],
        }
    }
}

/// What one service port needs on this node, for one family: every address
/// and endpoint in it is of `key.family`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortPlan {
    pub key: PortKey,
    pub port: u16,
    pub cluster_ips: Vec<IpAddr>,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    pub lb_ips: Vec<IpAddr>,
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
    pub fn family(&self) -> Family {
        self.key.family
    }

    /// Every endpoint address any traffic of this port may reach.
    pub fn all_endpoints(&self) -> BTreeSet<SocketAddr> {
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
fn usable<'a>(eps: impl Iterator<Item = &'a EndpointInfo> + Clone) -> Vec<SocketAddr> {
    let mut ready: Vec<SocketAddr> = eps.clone().filter(|e| e.ready).map(|e| e.addr).collect();
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

/// Plans every port of one Service, once per family it has a ClusterIP of
/// (primary family first). `endpoints` are all endpoints of the Service's
/// slices (both address types); `node` is this node's name.
///
/// As upstream's per-family proxiers: a family's ClusterIP is served only by
/// endpoints of that family (EndpointSlice `addressType`), externalIPs and
/// LoadBalancer IPs go to the family of the address, and a family the
/// Service has no ClusterIP of is not served at all (so a v6 externalIP of a
/// v4-only Service is ignored). NodePorts exist in every family the Service has.
pub fn plan_service(svc: &ServiceInfo, endpoints: &[EndpointInfo], node: &str) -> Vec<PortPlan> {
    let mut families: Vec<Family> = Vec::new();
    for ip in &svc.cluster_ips {
        if !families.contains(&Family::of(*ip)) {
            families.push(Family::of(*ip));
        }
    }
    let mut out = Vec::new();
    for fam in families {
        plan_family(svc, endpoints, node, fam, &mut out);
    }
    out
}

fn of_family(ips: &[IpAddr], fam: Family) -> Vec<IpAddr> {
    ips.iter()
        .copied()
        .filter(|ip| Family::of(*ip) == fam)
        .collect()
}

fn plan_family(
    svc: &ServiceInfo,
    endpoints: &[EndpointInfo],
    node: &str,
    fam: Family,
    out: &mut Vec<PortPlan>,
) {
    for p in &svc.ports {
        let eps: Vec<&EndpointInfo> = endpoints
            .iter()
            .filter(|e| {
                e.port_name == p.port_name && e.proto == p.proto && Family::of(e.addr.ip()) == fam
            })
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
                family: fam,
            },
            port: p.port,
            cluster_ips: of_family(&svc.cluster_ips, fam),
            node_port: p.node_port,
            external_ips: of_family(&svc.external_ips, fam),
            lb_ips: of_family(&svc.lb_ips, fam),
            internal,
            external,
            cluster: Targets::from_list(cluster, false, any),
            external_local: svc.external_local,
            internal_local: svc.internal_local,
            affinity: svc.affinity,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> EndpointInfo {
        EndpointInfo {
            port_name: "http".into(),
            proto: Proto::Tcp,
            addr: SocketAddr::new(ip.parse().unwrap(), 8080),
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

    #[test]
    fn dual_stack() {
        let v4 = |ip: &str| ep(ip, "n1", true, true, false);
        let web6 = |cips: &[&str], ext: &[&str], lb: &[&str]| ServiceInfo {
            cluster_ips: cips.iter().map(|s| s.parse().unwrap()).collect(),
            external_ips: ext.iter().map(|s| s.parse().unwrap()).collect(),
            lb_ips: lb.iter().map(|s| s.parse().unwrap()).collect(),
            ..svc(false, false)
        };
        // (case, service, endpoints, expected per plan: "key cips ext lb np internal")
        type Row = (
            &'static str,
            ServiceInfo,
            Vec<EndpointInfo>,
            Vec<&'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "v6-only service with a v6 slice",
                web6(&["fd00:10:96::20"], &[], &[]),
                vec![v4("fd00:10:244:1::2"), v4("fd00:10:244:2::2")],
                vec![
                    "default/web:http/TCP/IPv6 [fd00:10:96::20] [] [] Some(30080) fd00:10:244:1::2,fd00:10:244:2::2",
                ],
            ),
            (
                "dual-stack service, a slice per family",
                web6(
                    &["10.96.0.20", "fd00:10:96::20"],
                    &["192.0.2.10", "2001:db8::10"],
                    &["2001:db8::50"],
                ),
                vec![
                    v4("10.244.1.2"),
                    v4("fd00:10:244:1::2"),
                    v4("fd00:10:244:1::3"),
                ],
                vec![
                    "default/web:http/TCP [10.96.0.20] [192.0.2.10] [] Some(30080) 10.244.1.2",
                    "default/web:http/TCP/IPv6 [fd00:10:96::20] [2001:db8::10] [2001:db8::50] Some(30080) fd00:10:244:1::2,fd00:10:244:1::3",
                ],
            ),
            (
                "primary family first",
                web6(&["fd00:10:96::20", "10.96.0.20"], &[], &[]),
                vec![v4("10.244.1.2")],
                vec![
                    "default/web:http/TCP/IPv6 [fd00:10:96::20] [] [] Some(30080) REJECT",
                    "default/web:http/TCP [10.96.0.20] [] [] Some(30080) 10.244.1.2",
                ],
            ),
            (
                "v6 service with only a v4 slice: no endpoints, reject",
                web6(&["fd00:10:96::20"], &[], &[]),
                vec![v4("10.244.1.2")],
                vec!["default/web:http/TCP/IPv6 [fd00:10:96::20] [] [] Some(30080) REJECT"],
            ),
            (
                "v4 service ignores v6 externalIPs and v6 endpoints",
                web6(&["10.96.0.20"], &["2001:db8::10"], &[]),
                vec![v4("fd00:10:244:1::2")],
                vec!["default/web:http/TCP [10.96.0.20] [] [] Some(30080) REJECT"],
            ),
        ];
        for (case, s, eps, want) in rows {
            let got: Vec<String> = plan_service(&s, &eps, "n1")
                .iter()
                .map(|p| {
                    let ips = |v: &[IpAddr]| {
                        format!(
                            "[{}]",
                            v.iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    };
                    assert!(
                        p.all_endpoints()
                            .iter()
                            .all(|e| Family::of(e.ip()) == p.family()),
                        "{case}: endpoint of the other family"
                    );
                    format!(
                        "{} {} {} {} {:?} {}",
                        p.key,
                        ips(&p.cluster_ips),
                        ips(&p.external_ips),
                        ips(&p.lb_ips),
                        p.node_port,
                        show(&p.internal)
                    )
                })
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }
}

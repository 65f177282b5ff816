//! Deletes stale UDP conntrack entries, so removed endpoints stop receiving traffic (kernel modes).
//!
//! UDP has no connection end: without this, a client that keeps sending to
//! a ClusterIP keeps hitting the endpoint its first packet was NATed to.

use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Exec;
use crate::plan::{Family, PortPlan, Proto, Targets};

/// The `conntrack` invocations for one changed port: `old` → `new` (`None` = removed).
/// IPv6 ports get `-f ipv6` (conntrack's default family is IPv4).
pub fn stale_commands(old: &PortPlan, new: Option<&PortPlan>) -> Vec<Vec<String>> {
    if old.key.proto != Proto::Udp {
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let vips: Vec<IpAddr> = old
        .cluster_ips
        .iter()
        .chain(&old.external_ips)
        .chain(&old.lb_ips)
        .copied()
        .collect();
    let new_eps = new.map(|n| n.all_endpoints()).unwrap_or_default();
    for ep in old.all_endpoints().difference(&new_eps) {
        for vip in &vips {
            cmds.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &vip.to_string(),
                "--orig-port-dst",
                &old.port.to_string(),
                "--dst-nat",
                &ep.ip().to_string(),
            ]));
        }
        if let Some(np) = old.node_port {
            cmds.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-port-dst",
                &np.to_string(),
                "--dst-nat",
                &ep.ip().to_string(),
            ]));
        }
    }
    // A port that had no endpoints may have cached "rejected" entries.
    if let Some(n) = new
        && old.internal == Targets::Reject
        && n.internal != Targets::Reject
    {
        for vip in &n.cluster_ips {
            cmds.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &vip.to_string(),
                "--orig-port-dst",
                &n.port.to_string(),
            ]));
        }
    }
    if old.family() == Family::V6 {
        for c in &mut cmds {
            c.splice(1..1, ["-f".to_string(), "ipv6".to_string()]);
        }
    }
    cmds
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs the stale-entry deletions; failures only log (conntrack exits 1 when nothing matched).
pub fn clear_stale(exec: &mut dyn Exec, changes: &[(Arc<PortPlan>, Option<Arc<PortPlan>>)]) {
    for (old, new) in changes {
        for cmd in stale_commands(old, new.as_deref()) {
            let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
            if let Err(e) = exec.run("conntrack", &refs, "") {
                tracing::debug!(error = %e, "conntrack cleanup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PortKey;
    use std::net::SocketAddr;

    fn plan6(proto: Proto, eps: &[&str]) -> PortPlan {
        let mut p = plan(proto, eps);
        p.key.family = Family::V6;
        p.cluster_ips = vec!["fd00:10:96::10".parse().unwrap()];
        p
    }

    fn plan(proto: Proto, eps: &[&str]) -> PortPlan {
        let t = if eps.is_empty() {
            Targets::Reject
        } else {
            Targets::Endpoints(
                eps.iter()
                    .map(|e| SocketAddr::new(e.parse().unwrap(), 53))
                    .collect(),
            )
        };
        PortPlan {
            key: PortKey {
                namespace: "default".into(),
                name: "dns".into(),
                port_name: String::new(),
                proto,
                family: Family::V4,
            },
            port: 53,
            cluster_ips: vec!["10.96.0.10".parse().unwrap()],
            node_port: Some(30053),
            external_ips: vec![],
            lb_ips: vec![],
            internal: t.clone(),
            external: t.clone(),
            cluster: t,
            external_local: false,
            internal_local: false,
            affinity: None,
        }
    }

    #[test]
    fn commands() {
        let rows: Vec<(&str, PortPlan, Option<PortPlan>, Vec<&str>)> = vec![
            (
                "tcp needs nothing",
                plan(Proto::Tcp, &["10.244.1.2"]),
                None,
                vec![],
            ),
            (
                "udp endpoint removed",
                plan(Proto::Udp, &["10.244.1.2", "10.244.1.3"]),
                Some(plan(Proto::Udp, &["10.244.1.3"])),
                vec![
                    "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.1.2",
                    "-D -p udp --orig-port-dst 30053 --dst-nat 10.244.1.2",
                ],
            ),
            (
                "udp service removed",
                plan(Proto::Udp, &["10.244.1.3"]),
                None,
                vec![
                    "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.1.3",
                    "-D -p udp --orig-port-dst 30053 --dst-nat 10.244.1.3",
                ],
            ),
            (
                "udp service gets endpoints",
                plan(Proto::Udp, &[]),
                Some(plan(Proto::Udp, &["10.244.1.3"])),
                vec!["-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53"],
            ),
            (
                "udp v6 endpoint removed",
                plan6(Proto::Udp, &["fd00:10:244:1::2", "fd00:10:244:1::3"]),
                Some(plan6(Proto::Udp, &["fd00:10:244:1::3"])),
                vec![
                    "-D -f ipv6 -p udp --orig-dst fd00:10:96::10 --orig-port-dst 53 --dst-nat fd00:10:244:1::2",
                    "-D -f ipv6 -p udp --orig-port-dst 30053 --dst-nat fd00:10:244:1::2",
                ],
            ),
            (
                "udp v6 service gets endpoints",
                plan6(Proto::Udp, &[]),
                Some(plan6(Proto::Udp, &["fd00:10:244:1::3"])),
                vec!["-D -f ipv6 -p udp --orig-dst fd00:10:96::10 --orig-port-dst 53"],
            ),
            (
                "unchanged",
                plan(Proto::Udp, &["10.244.1.3"]),
                Some(plan(Proto::Udp, &["10.244.1.3"])),
                vec![],
            ),
        ];
        for (case, old, new, want) in rows {
            let got: Vec<String> = stale_commands(&old, new.as_ref())
                .iter()
                .map(|c| c.join(" "))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }
}

//! Scheduling decisions: which Ready node a pending pod goes to, or why none fits.
//!
//! Filters follow kube-scheduler's default plugins that matter without
//! resource accounting: NodeUnschedulable, NodeName, NodeAffinity (the
//! `nodeSelector` part), TaintToleration, plus the not-ready/unreachable
//! taints upstream's node lifecycle controller puts on nodes that are not
//! Ready. Scoring spreads pods of one owner across nodes (SelectorSpread /
//! PodTopologySpread by hostname), then balances the total pod count; ties
//! go to the lowest node name so that decisions are reproducible.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use crate::replicaset::controller_of;

/// Taint upstream puts on nodes whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint upstream puts on nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Why no node fits: counts per reason, for the FailedScheduling message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", fit_message(*.nodes, .reasons))]
pub struct FitError {
    /// Nodes considered.
    pub nodes: usize,
    /// Reason → number of nodes it ruled out.
    pub reasons: BTreeMap<String, usize>,
}

fn fit_message(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(
        "0/{nodes} nodes are available: {}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

/// The node's taints plus the implicit ones of a node that is not Ready.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let implicit = match ready_status(node) {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    if let Some(key) = implicit
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    taints
}

/// Whether `tol` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
                && !key.is_empty()
        }
        _ => false,
    }
}

fn untolerated<'a>(pod: &Pod, taints: &'a [Taint]) -> Option<&'a Taint> {
    let tols = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tols.iter().any(|tol| tolerates(tol, t)))
}

/// Why `node` cannot take `pod`, in upstream's words; None when it fits.
pub fn filter(pod: &Pod, node: &Node) -> Option<String> {
    let spec = pod.spec.as_ref();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        let tols = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        let t = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tols.iter().any(|tol| tolerates(tol, &t)) {
            return Some("node(s) were unschedulable".into());
        }
    }
    if let Some(sel) = spec.and_then(|s| s.node_selector.as_ref()) {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    if let Some(t) = untolerated(pod, &effective_taints(node)) {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        ));
    }
    None
}

/// The node for `pod` among `nodes`, given the pods already placed
/// (`placed`, any namespace; those without a node are ignored).
pub fn schedule<'a>(pod: &Pod, nodes: &[&'a Node], placed: &[&Pod]) -> Result<&'a Node, FitError> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fit: Vec<&'a Node> = Vec::new();
    for n in nodes {
        match filter(pod, n) {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => fit.push(*n),
        }
    }
    let owner = controller_of(&pod.metadata).map(|o| o.uid.clone());
    let mut per_node: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for p in placed {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        // Terminating pods still occupy their node; finished ones do not.
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if phase != "Succeeded" && phase != "Failed" {
            let e = per_node.entry(node).or_default();
            let same = owner.is_some()
                && controller_of(&p.metadata).map(|o| o.uid.clone()) == owner
                && p.metadata.namespace == pod.metadata.namespace;
            if same {
                e.0 += 1;
            }
            e.1 += 1;
        }
    }
    fit.into_iter()
        .min_by_key(|n| {
            let name = n.metadata.name.as_deref().unwrap_or("");
            let (same, total) = per_node.get(name).copied().unwrap_or((0, 0));
            (same, total, name.to_owned())
        })
        .ok_or(FitError {
            nodes: nodes.len(),
            reasons,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn node(
        name: &str,
        ready: &str,
        unschedulable: bool,
        labels: &[(&str, &str)],
        taints: Vec<Taint>,
    ) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, owner: Option<&str>, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: owner.map(|u| {
                    vec![OwnerReference {
                        uid: u.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters() {
        let mut picky = pod("p", None, None);
        if let Some(s) = picky.spec.as_mut() {
            s.node_selector = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
        }
        let mut tolerant = pod("t", None, None);
        if let Some(s) = tolerant.spec.as_mut() {
            s.tolerations = Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
        }
        let plain = pod("p", None, None);
        let cases: Vec<(&str, &Pod, Node, Option<&str>)> = vec![
            (
                "ready node fits",
                &plain,
                node("n", "True", false, &[], vec![]),
                None,
            ),
            (
                "unschedulable",
                &plain,
                node("n", "True", true, &[], vec![]),
                Some("node(s) were unschedulable"),
            ),
            (
                "not ready",
                &plain,
                node("n", "False", false, &[], vec![]),
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "unknown",
                &plain,
                node("n", "Unknown", false, &[], vec![]),
                Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            ),
            (
                "selector mismatch",
                &picky,
                node("n", "True", false, &[("disk", "hdd")], vec![]),
                Some("node(s) didn't match Pod's node affinity/selector"),
            ),
            (
                "selector match",
                &picky,
                node("n", "True", false, &[("disk", "ssd")], vec![]),
                None,
            ),
            (
                "NoSchedule taint",
                &plain,
                node(
                    "n",
                    "True",
                    false,
                    &[],
                    vec![taint("dedicated", "NoSchedule")],
                ),
                Some("node(s) had untolerated taint {dedicated: }"),
            ),
            (
                "PreferNoSchedule is soft",
                &plain,
                node(
                    "n",
                    "True",
                    false,
                    &[],
                    vec![taint("x", "PreferNoSchedule")],
                ),
                None,
            ),
            (
                "tolerated",
                &tolerant,
                node(
                    "n",
                    "False",
                    true,
                    &[],
                    vec![taint("dedicated", "NoExecute")],
                ),
                None,
            ),
        ];
        for (name, p, n, want) in cases {
            assert_eq!(filter(p, &n).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn placement() {
        let n1 = node("n1", "True", false, &[], vec![]);
        let n2 = node("n2", "True", false, &[], vec![]);
        let n3 = node("n3", "False", false, &[], vec![]);
        let nodes = [&n1, &n2, &n3];
        let sib1 = pod("s1", Some("rs"), Some("n1"));
        let other1 = pod("o1", Some("x"), Some("n2"));
        let other2 = pod("o2", Some("x"), Some("n2"));
        let cases: Vec<(&str, Vec<&Pod>, &str)> = vec![
            ("empty cluster: lowest name", vec![], "n1"),
            ("spread siblings first", vec![&sib1], "n2"),
            ("then balance totals", vec![&other1], "n1"),
            (
                "siblings outweigh totals",
                vec![&sib1, &other1, &other2],
                "n2",
            ),
        ];
        let p = pod("new", Some("rs"), None);
        for (name, placed, want) in cases {
            let got =
                schedule(&p, &nodes, &placed).map(|n| n.metadata.name.clone().unwrap_or_default());
            assert_eq!(got.as_deref(), Ok(want), "{name}");
        }
    }

    #[test]
    fn failure_messages() {
        let p = pod("p", None, None);
        let n1 = node("n1", "True", true, &[], vec![]);
        let n2 = node("n2", "Unknown", false, &[], vec![]);
        let n3 = node("n3", "Unknown", false, &[], vec![]);
        let cases: Vec<(Vec<&Node>, &str)> = vec![
            (vec![], "no nodes available to schedule pods"),
            (
                vec![&n1, &n2, &n3],
                "0/3 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            ),
        ];
        for (nodes, want) in cases {
            match schedule(&p, &nodes, &[]) {
                Ok(n) => panic!("scheduled on {:?}", n.metadata.name),
                Err(e) => assert_eq!(e.to_string(), want),
            }
        }
    }
}

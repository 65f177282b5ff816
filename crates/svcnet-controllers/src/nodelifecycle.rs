//! Node lifecycle decisions: when a silent node becomes Unknown, which taints it carries, which pods to mark not ready or evict.
//!
//! As upstream, a heartbeat counts from when *we* saw it change (Lease
//! `renewTime` or the Ready condition's `lastHeartbeatTime`), not from its
//! value, so clock skew between nodes and controller does not matter and
//! a freshly started controller gives every node a full grace period.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::scheduler::{TAINT_UNREACHABLE, tolerates};

/// Timing knobs (upstream `--node-monitor-grace-period` and the eviction delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Silence after which a node is Unknown.
    pub grace: Duration,
    /// Time Unknown after which its pods are evicted.
    pub eviction: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            grace: Duration::from_secs(10),
            eviction: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    heartbeat: Option<Timestamp>,
    /// Monotonic time we saw `heartbeat` change.
    at: Duration,
    /// Monotonic time we declared the node lost.
    lost_at: Option<Duration>,
}

/// What to do about one node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Heartbeats arrive.
    Healthy,
    /// Silent past the grace period: mark it Unknown, taint it, mark its pods not ready.
    Lost,
    /// Lost for longer than `eviction`: also evict its pods (those without a matching toleration).
    Evict,
}

/// Per-node heartbeat observations.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    seen: BTreeMap<String, Seen>,
}

/// The node's latest heartbeat: its Lease's renewTime or its Ready lastHeartbeatTime.
pub fn heartbeat(node: &Node, lease_renew: Option<Timestamp>) -> Option<Timestamp> {
    let cond = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    cond.max(lease_renew)
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets a deleted node.
    pub fn forget(&mut self, node: &str) {
        self.seen.remove(node);
    }

    /// Records the node's heartbeat at monotonic time `now` and decides.
    pub fn observe(
        &mut self,
        node: &str,
        heartbeat: Option<Timestamp>,
        now: Duration,
        t: Timing,
    ) -> Decision {
        let s = self.seen.entry(node.to_owned()).or_insert(Seen {
            heartbeat,
            at: now,
            lost_at: None,
        });
        if s.heartbeat != heartbeat {
            *s = Seen {
                heartbeat,
                at: now,
                lost_at: None,
            };
        }
        if now.saturating_sub(s.at) <= t.grace {
            s.lost_at = None;
            return Decision::Healthy;
        }
        let lost_at = *s.lost_at.get_or_insert(now);
        if now.saturating_sub(lost_at) >= t.eviction {
            Decision::Evict
        } else {
            Decision::Lost
        }
    }

    /// How long the node has been lost at `now` (None while healthy).
    pub fn lost_for(&self, node: &str, now: Duration) -> Option<Duration> {
        self.seen.get(node)?.lost_at.map(|l| now.saturating_sub(l))
    }
}

/// The node's conditions with every status set Unknown (upstream's
/// `tryUpdateNodeHealth`), or None when they already are.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conds.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
            None => {
                conds.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: None,
                });
                changed = true;
            }
        }
    }
    changed.then_some(conds)
}

/// The node's taints with (lost) or without (healthy) the unreachable
/// NoSchedule/NoExecute pair; None when nothing changes.
pub fn taints(node: &Node, lost: bool, now: Timestamp) -> Option<Vec<Taint>> {
    let cur = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let has = |effect: &str| {
        cur.iter()
            .any(|t| t.key == TAINT_UNREACHABLE && t.effect == effect)
    };
    if lost {
        if has("NoSchedule") && has("NoExecute") {
            return None;
        }
        let mut out = cur.clone();
        for effect in ["NoSchedule", "NoExecute"] {
            if !has(effect) {
                out.push(Taint {
                    key: TAINT_UNREACHABLE.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
        Some(out)
    } else {
        if !has("NoSchedule") && !has("NoExecute") {
            return None;
        }
        Some(
            cur.into_iter()
                .filter(|t| t.key != TAINT_UNREACHABLE)
                .collect(),
        )
    }
}

/// The pod's conditions with Ready set False (upstream `MarkPodsNotReady`), or None when it already is.
pub fn not_ready_conditions(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let c = conds.iter_mut().find(|c| c.type_ == "Ready")?;
    if c.status == "False" {
        return None;
    }
    c.status = "False".into();
    c.last_transition_time = Some(Time(now));
    Some(conds)
}

/// How long after the node was lost `pod` is evicted: `default` without a
/// toleration of the unreachable NoExecute taint, its `tolerationSeconds`
/// with one, never (None) when it tolerates forever.
pub fn eviction_delay(pod: &Pod, default: Duration) -> Option<Duration> {
    let taint = Taint {
        key: TAINT_UNREACHABLE.into(),
        effect: "NoExecute".into(),
        ..Default::default()
    };
    let tols = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let matching: Vec<_> = tols.iter().filter(|t| tolerates(t, &taint)).collect();
    if matching.is_empty() {
        return Some(default);
    }
    matching
        .iter()
        .map(|t| t.toleration_seconds)
        .try_fold(None::<i64>, |acc, s| {
            s.map(|s| Some(acc.map_or(s, |a: i64| a.min(s))))
        })
        .flatten()
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodStatus, Toleration};

    const T: Timing = Timing {
        grace: Duration::from_secs(10),
        eviction: Duration::from_secs(30),
    };

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn tracker_timeline() {
        let secs = Duration::from_secs;
        // (monotonic second, heartbeat value, decision)
        let steps: Vec<(u64, Option<i64>, Decision)> = vec![
            (0, Some(0), Decision::Healthy),
            (5, Some(5), Decision::Healthy),
            (15, Some(5), Decision::Healthy),
            (16, Some(5), Decision::Lost),
            (45, Some(5), Decision::Lost),
            (46, Some(5), Decision::Evict),
            (50, Some(50), Decision::Healthy),
            (61, Some(50), Decision::Lost),
        ];
        let mut t = Tracker::new();
        for (now, hb, want) in steps {
            assert_eq!(t.observe("n1", hb.map(ts), secs(now), T), want, "at {now}s");
        }
        // A node first seen stale still gets a full grace period.
        let mut fresh = Tracker::new();
        assert_eq!(
            fresh.observe("n2", Some(ts(-1000)), secs(100), T),
            Decision::Healthy
        );
        assert_eq!(
            fresh.observe("n2", Some(ts(-1000)), secs(111), T),
            Decision::Lost
        );
        assert_eq!(fresh.lost_for("n2", secs(115)), Some(secs(4)));
        fresh.forget("n2");
        assert_eq!(fresh.lost_for("n2", secs(115)), None);
        assert_eq!(
            fresh.observe("n2", Some(ts(-1000)), secs(112), T),
            Decision::Healthy
        );
    }

    fn node(conds: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            last_heartbeat_time: Some(Time(ts(3))),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn heartbeats() {
        let n = node(&[("Ready", "True")], vec![]);
        assert_eq!(heartbeat(&n, None), Some(ts(3)));
        assert_eq!(heartbeat(&n, Some(ts(9))), Some(ts(9)));
        assert_eq!(heartbeat(&n, Some(ts(1))), Some(ts(3)));
        assert_eq!(heartbeat(&node(&[], vec![]), None), None);
    }

    #[test]
    fn conditions_go_unknown() {
        let got =
            unknown_conditions(&node(&[("Ready", "True")], vec![]), ts(10)).unwrap_or_default();
        let rows: Vec<(String, String, String)> = got
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("Ready".into(), "Unknown".into(), "NodeStatusUnknown".into()),
                (
                    "MemoryPressure".into(),
                    "Unknown".into(),
                    "NodeStatusNeverUpdated".into()
                ),
                (
                    "DiskPressure".into(),
                    "Unknown".into(),
                    "NodeStatusNeverUpdated".into()
                ),
                (
                    "PIDPressure".into(),
                    "Unknown".into(),
                    "NodeStatusNeverUpdated".into()
                ),
            ]
        );
        assert_eq!(
            got[0].message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let all_unknown = node(
            &[
                ("Ready", "Unknown"),
                ("MemoryPressure", "Unknown"),
                ("DiskPressure", "Unknown"),
                ("PIDPressure", "Unknown"),
            ],
            vec![],
        );
        assert_eq!(unknown_conditions(&all_unknown, ts(10)), None);
    }

    #[test]
    fn taint_changes() {
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let keys = |v: Option<Vec<Taint>>| {
            v.map(|v| {
                v.into_iter()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect::<Vec<_>>()
            })
        };
        let healthy = node(&[], vec![other.clone()]);
        assert_eq!(
            keys(taints(&healthy, true, ts(0))),
            Some(vec![
                "dedicated:NoSchedule".into(),
                "node.kubernetes.io/unreachable:NoSchedule".into(),
                "node.kubernetes.io/unreachable:NoExecute".into()
            ])
        );
        assert_eq!(keys(taints(&healthy, false, ts(0))), None);
        let tainted = node(&[], taints(&healthy, true, ts(0)).unwrap_or_default());
        assert_eq!(keys(taints(&tainted, true, ts(0))), None);
        assert_eq!(
            keys(taints(&tainted, false, ts(0))),
            Some(vec!["dedicated:NoSchedule".into()])
        );
    }

    fn pod(ready: Option<&str>, tols: Vec<Toleration>) -> Pod {
        Pod {
            metadata: Default::default(),
            spec: Some(PodSpec {
                tolerations: Some(tols),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: ready.map(|r| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: r.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn pods_not_ready_and_evicted() {
        let got = not_ready_conditions(&pod(Some("True"), vec![]), ts(1)).unwrap_or_default();
        assert_eq!(
            (got[0].status.as_str(), got[0].last_transition_time.clone()),
            ("False", Some(Time(ts(1))))
        );
        assert_eq!(
            not_ready_conditions(&pod(Some("False"), vec![]), ts(1)),
            None
        );
        assert_eq!(not_ready_conditions(&pod(None, vec![]), ts(1)), None);

        let d = Duration::from_secs(30);
        let tol = |key: Option<&str>, secs: Option<i64>| Toleration {
            key: key.map(Into::into),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        };
        let cases: Vec<(&str, Vec<Toleration>, Option<Duration>)> = vec![
            ("no toleration", vec![], Some(d)),
            (
                "unrelated toleration",
                vec![tol(Some("other"), None)],
                Some(d),
            ),
            (
                "tolerates for 5s",
                vec![tol(Some(TAINT_UNREACHABLE), Some(5))],
                Some(Duration::from_secs(5)),
            ),
            (
                "tolerates forever",
                vec![tol(Some(TAINT_UNREACHABLE), None)],
                None,
            ),
            (
                "shortest wins",
                vec![tol(None, Some(9)), tol(Some(TAINT_UNREACHABLE), Some(4))],
                Some(Duration::from_secs(4)),
            ),
        ];
        for (name, tols, want) in cases {
            assert_eq!(eviction_delay(&pod(None, tols), d), want, "{name}");
        }
    }
}

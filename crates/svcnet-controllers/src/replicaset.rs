//! ReplicaSet decisions: which pods it owns, adopts or releases, how many to create, which to delete, its status.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use svcnet_core::endpoints::pod_is_ready;
use svcnet_core::selector::Selector;

/// Upstream's `BurstReplicas`: most pods created or deleted in one sync.
pub const BURST_REPLICAS: usize = 500;

/// The controller owner reference of an object.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// A controller owner reference to `owner` (blockOwnerDeletion set, as upstream).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the pod counts toward a ReplicaSet's replicas: not finished, not terminating.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    pod.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// The result of matching objects against an owner (upstream's `ControllerRefManager`).
#[derive(Debug)]
pub struct Claims<'a, K> {
    /// Controlled by the owner and still selected.
    pub owned: Vec<&'a K>,
    /// Orphans the owner should adopt (add its controller reference).
    pub adopt: Vec<&'a K>,
    /// Controlled by the owner but no longer selected: release them.
    pub release: Vec<&'a K>,
}

/// Sorts `objs` (same namespace as the owner) into owned, to adopt and to
/// release. An owner being deleted adopts nothing; objects being deleted
/// are never adopted.
pub fn claim<'a, K: Resource>(
    owner: &ObjectMeta,
    selector: &Selector,
    objs: &[&'a K],
) -> Claims<'a, K> {
    let mut c = Claims {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    let uid = owner.uid.as_deref().unwrap_or("");
    let empty = BTreeMap::new();
    for o in objs {
        let m = o.meta();
        if m.namespace != owner.namespace {
            continue;
        }
        let selected =
            !selector.matches_nothing() && selector.matches(m.labels.as_ref().unwrap_or(&empty));
        match controller_of(m) {
            Some(r) if r.uid == uid => {
                if selected {
                    c.owned.push(*o)
                } else if owner.deletion_timestamp.is_none() {
                    c.release.push(*o)
                }
            }
            Some(_) => {}
            None => {
                if selected && owner.deletion_timestamp.is_none() && m.deletion_timestamp.is_none()
                {
                    c.adopt.push(*o)
                }
            }
        }
    }
    c
}

/// What a ReplicaSet sync must do about its pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodDiff {
    /// Number of pods to create.
    pub create: usize,
    /// Names of pods to delete, in order.
    pub delete: Vec<String>,
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// Upstream's deletion preference (`ActivePodsWithRanks.Less`), most
/// deletable first: unscheduled, then pending before running, not ready
/// before ready, pods sharing a node with more of their siblings, ready
/// for less time, more restarts, newer.
pub fn sort_for_deletion(pods: &mut [&Pod]) {
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods.iter() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let key = |p: &Pod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let rank = node
            .as_ref()
            .and_then(|n| per_node.get(n))
            .copied()
            .unwrap_or(0);
        (
            node.is_some(),
            phase_rank(p),
            pod_is_ready(p),
            std::cmp::Reverse(rank),
            std::cmp::Reverse(ready_since(p)),
            std::cmp::Reverse(restarts(p)),
            std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            p.metadata.name.clone(),
        )
    };
    pods.sort_by_cached_key(|p| key(p));
}

/// Pods to create or delete so that `active` (the owned, active pods) has `replicas`.
pub fn pod_diff(replicas: i32, active: &[&Pod]) -> PodDiff {
    let want = usize::try_from(replicas).unwrap_or(0);
    if active.len() < want {
        return PodDiff {
            create: (want - active.len()).min(BURST_REPLICAS),
            delete: Vec::new(),
        };
    }
    let extra = (active.len() - want).min(BURST_REPLICAS);
    let mut sorted = active.to_vec();
    sort_for_deletion(&mut sorted);
    PodDiff {
        create: 0,
        delete: sorted
            .iter()
            .take(extra)
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect(),
    }
}

/// Whether a pod has been ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !pod_is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod)
        .is_some_and(|t| t + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now)
}

/// The pod a ReplicaSet creates: its template, named `<rs>-<random>` by the
/// API server (`generateName`), controlled by the ReplicaSet.
pub fn new_pod(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or(""))),
            namespace: rs.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The status a ReplicaSet reports for its owned pods.
pub fn status(rs: &ReplicaSet, owned: &[&Pod], now: Timestamp) -> ReplicaSetStatus {
    let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let fully = count(&|p| {
        let l = p.metadata.labels.clone().unwrap_or_default();
        template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
    });
    let old = rs.status.clone().unwrap_or_default();
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully),
        ready_replicas: Some(count(&|p| pod_is_ready(p))),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions,
        terminating_replicas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// A pod from a compact spec: name, node, phase, ready-since (seconds), created (seconds).
    fn pod(name: &str, node: Option<&str>, phase: &str, ready: Option<i64>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|r| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(r))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn owned_by(mut p: Pod, uid: &str) -> Pod {
        p.metadata.owner_references = Some(vec![OwnerReference {
            uid: uid.into(),
            controller: Some(true),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            api_version: "apps/v1".into(),
            block_owner_deletion: Some(true),
        }]);
        p
    }

    #[test]
    fn pod_diffs() {
        let a = pod("a", Some("n1"), "Running", Some(10), 1);
        let b = pod("b", None, "Pending", None, 2);
        let c = pod("c", Some("n1"), "Running", None, 3);
        let d = pod("d", Some("n2"), "Running", Some(5), 4);
        let e = pod("e", Some("n1"), "Running", Some(5), 5);
        type Row<'a> = (&'static str, i32, Vec<&'a Pod>, usize, Vec<&'static str>);
        let cases: Vec<Row<'_>> = vec![
            ("nothing to do", 2, vec![&a, &d], 0, vec![]),
            ("create missing", 3, vec![&a], 2, vec![]),
            ("negative replicas", -1, vec![], 0, vec![]),
            ("unscheduled first", 3, vec![&a, &b, &c, &d], 0, vec!["b"]),
            ("not ready before ready", 2, vec![&a, &c, &d], 0, vec!["c"]),
            // a and e share n1: they go before d; a became ready more recently.
            (
                "crowded node, ready later",
                1,
                vec![&a, &d, &e],
                0,
                vec!["a", "e"],
            ),
            ("scale to zero", 0, vec![&a, &b], 0, vec!["b", "a"]),
        ];
        for (name, replicas, active, create, delete) in cases {
            let got = pod_diff(replicas, &active);
            assert_eq!(got.create, create, "{name}");
            assert_eq!(got.delete, delete, "{name}");
        }
        let many: Vec<Pod> = (0..600)
            .map(|i| pod(&format!("p{i}"), None, "Pending", None, i))
            .collect();
        let refs: Vec<&Pod> = many.iter().collect();
        assert_eq!(pod_diff(1000, &refs).create, 400);
        assert_eq!(pod_diff(0, &refs).delete.len(), BURST_REPLICAS);
    }

    #[test]
    fn claims() {
        let owner = ObjectMeta {
            name: Some("rs".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let sel = Selector::from_map(&BTreeMap::from([("app".into(), "web".into())]));
        let mine = owned_by(pod("mine", None, "Running", None, 1), "u1");
        let other = owned_by(pod("other", None, "Running", None, 1), "u2");
        let orphan = pod("orphan", None, "Running", None, 1);
        let mut relabeled = owned_by(pod("relabeled", None, "Running", None, 1), "u1");
        relabeled.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
        let mut dying = pod("dying", None, "Running", None, 1);
        dying.metadata.deletion_timestamp = Some(Time(ts(0)));
        let mut elsewhere = pod("elsewhere", None, "Running", None, 1);
        elsewhere.metadata.namespace = Some("other".into());
        let all = [&mine, &other, &orphan, &relabeled, &dying, &elsewhere];
        let names = |v: &[&Pod]| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        let c = claim(&owner, &sel, &all);
        assert_eq!(names(&c.owned), ["mine"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["relabeled"]);
        let mut deleting = owner.clone();
        deleting.deletion_timestamp = Some(Time(ts(0)));
        let c = claim(&deleting, &sel, &all);
        assert_eq!(names(&c.owned), ["mine"]);
        assert!(c.adopt.is_empty() && c.release.is_empty());
    }

    #[test]
    fn statuses() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("rs".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                min_ready_seconds: Some(10),
                selector: LabelSelector::default(),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([
                            ("app".into(), "web".into()),
                            ("v".into(), "1".into()),
                        ])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
            }),
            status: None,
        };
        let mut full = pod("a", Some("n"), "Running", Some(0), 0);
        if let Some(l) = full.metadata.labels.as_mut() {
            l.insert("v".into(), "1".into());
        }
        let recent = pod("b", Some("n"), "Running", Some(95), 0);
        let unready = pod("c", Some("n"), "Pending", None, 0);
        let finished = pod("d", Some("n"), "Succeeded", None, 0);
        let s = status(&rs, &[&full, &recent, &unready, &finished], ts(100));
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.observed_generation
            ),
            (3, Some(1), Some(2), Some(1), Some(3))
        );
    }

    #[test]
    fn new_pods_carry_template_and_owner() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("ns".into()),
                uid: Some("u9".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let p = new_pod(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        let r = controller_of(&p.metadata).cloned().unwrap_or_default();
        assert_eq!(
            (
                r.kind.as_str(),
                r.api_version.as_str(),
                r.uid.as_str(),
                r.block_owner_deletion
            ),
            ("ReplicaSet", "apps/v1", "u9", Some(true))
        );
        assert_eq!(
            p.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("web")
        );
    }
}

//! Garbage-collection decisions by ownerReferences: dependents of vanished owners, foreground deletion, orphaning.
//!
//! Owners are matched by uid. An owner of a kind we do not watch counts as
//! present (we cannot know), and the runtime re-reads an owner from the
//! API before deleting a dependent, as upstream does, because separate
//! watches may deliver a new owner after its dependents.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Finalizer the API server adds for `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer the API server adds for `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";

/// The fields of an object garbage collection looks at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// `apiVersion/kind`, e.g. `apps/v1/ReplicaSet`.
    pub kind: String,
    /// Namespace ("" when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// ownerReferences.
    pub owners: Vec<OwnerReference>,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// metadata.finalizers.
    pub finalizers: Vec<String>,
}

/// Propagation of a delete the collector issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Delete now; dependents are collected after.
    Background,
    /// Delete dependents first (the owner waits).
    Foreground,
}

/// A write the collector must make.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete the object, checking first that these owner uids are really gone or going.
    Delete {
        kind: String,
        namespace: String,
        name: String,
        uid: String,
        policy: Policy,
        owners: Vec<OwnerReference>,
    },
    /// Drop the owner references with these uids.
    RemoveOwners {
        kind: String,
        namespace: String,
        name: String,
        uids: Vec<String>,
    },
    /// Drop a finalizer (its work is done).
    RemoveFinalizer {
        kind: String,
        namespace: String,
        name: String,
        finalizer: String,
    },
}

fn ref_kind(r: &OwnerReference) -> String {
    format!("{}/{}", r.api_version, r.kind)
}

/// Everything the collector should do for `objs`, where `watched` lists
/// the `apiVersion/kind`s that `objs` covers completely.
pub fn plan(objs: &[Node], watched: &BTreeSet<String>) -> Vec<Action> {
    let by_uid: BTreeMap<&str, &Node> = objs.iter().map(|o| (o.uid.as_str(), o)).collect();
    let mut dependents: BTreeMap<&str, usize> = BTreeMap::new();
    for o in objs {
        for r in &o.owners {
            *dependents.entry(r.uid.as_str()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for o in objs {
        if o.owners.is_empty() {
            continue;
        }
        let mut solid = false;
        let mut waiting = false;
        let mut drop_refs = Vec::new();
        for r in &o.owners {
            match by_uid.get(r.uid.as_str()) {
                None if watched.contains(&ref_kind(r)) => drop_refs.push(r.uid.clone()),
                None => solid = true,
                Some(owner) if owner.deleting && owner.finalizers.iter().any(|f| f == ORPHAN) => {
                    drop_refs.push(r.uid.clone())
                }
                Some(owner)
                    if owner.deleting && owner.finalizers.iter().any(|f| f == FOREGROUND) =>
                {
                    waiting = true
                }
                Some(_) => solid = true,
            }
        }
        let orphaned_by_policy = o.owners.iter().any(|r| {
            by_uid
                .get(r.uid.as_str())
                .is_some_and(|w| w.deleting && w.finalizers.iter().any(|f| f == ORPHAN))
        });
        if solid || orphaned_by_policy {
            if !drop_refs.is_empty() {
                out.push(Action::RemoveOwners {
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    uids: drop_refs,
                });
            }
            continue;
        }
        if o.deleting {
            continue;
        }
        out.push(Action::Delete {
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            // Only dependents that have dependents of their own need the foreground treatment.
            policy: if waiting && dependents.contains_key(o.uid.as_str()) {
                Policy::Foreground
            } else {
                Policy::Background
            },
            owners: o.owners.clone(),
        });
    }
    for o in objs.iter().filter(|o| o.deleting) {
        for f in [FOREGROUND, ORPHAN] {
            if o.finalizers.iter().any(|x| x == f) && !dependents.contains_key(o.uid.as_str()) {
                out.push(Action::RemoveFinalizer {
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    finalizer: f.into(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: &str = "apps/v1/ReplicaSet";
    const POD: &str = "v1/Pod";
    const DEPLOY: &str = "apps/v1/Deployment";

    fn obj(
        kind: &str,
        name: &str,
        owners: &[(&str, &str)],
        deleting: bool,
        finalizers: &[&str],
    ) -> Node {
        Node {
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            owners: owners
                .iter()
                .map(|(k, n)| {
                    let (api_version, kind) = k.rsplit_once('/').unwrap_or(("v1", k));
                    OwnerReference {
                        api_version: api_version.into(),
                        kind: kind.into(),
                        name: (*n).into(),
                        uid: format!("uid-{n}"),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|f| (*f).into()).collect(),
        }
    }

    fn show(a: &Action) -> String {
        match a {
            Action::Delete { name, policy, .. } => format!("delete {name} {policy:?}"),
            Action::RemoveOwners { name, uids, .. } => format!("unown {name} {}", uids.join(",")),
            Action::RemoveFinalizer {
                name, finalizer, ..
            } => format!("finalize {name} {finalizer}"),
        }
    }

    #[test]
    fn plans() {
        let watched: BTreeSet<String> = [RS, POD, DEPLOY].iter().map(|s| (*s).to_owned()).collect();
        let cases: Vec<(&str, Vec<Node>, Vec<&str>)> = vec![
            (
                "owner present: nothing",
                vec![
                    obj(RS, "rs", &[], false, &[]),
                    obj(POD, "p", &[(RS, "rs")], false, &[]),
                ],
                vec![],
            ),
            (
                "owner gone: background delete",
                vec![obj(POD, "p", &[(RS, "rs")], false, &[])],
                vec!["delete p Background"],
            ),
            (
                "already deleting: wait",
                vec![obj(POD, "p", &[(RS, "rs")], true, &[])],
                vec![],
            ),
            (
                "owner of an unwatched kind",
                vec![obj(POD, "p", &[("v1/ConfigMap", "cm")], false, &[])],
                vec![],
            ),
            (
                "one of two owners gone",
                vec![
                    obj(RS, "a", &[], false, &[]),
                    obj(POD, "p", &[(RS, "a"), (RS, "b")], false, &[]),
                ],
                vec!["unown p uid-b"],
            ),
            (
                "foreground: dependents first",
                vec![
                    obj(DEPLOY, "d", &[], true, &[FOREGROUND]),
                    obj(RS, "rs", &[(DEPLOY, "d")], false, &[]),
                    obj(POD, "p", &[(RS, "rs")], false, &[]),
                ],
                vec!["delete rs Foreground"],
            ),
            (
                "foreground: done when dependents are gone",
                vec![obj(DEPLOY, "d", &[], true, &[FOREGROUND])],
                vec!["finalize d foregroundDeletion"],
            ),
            (
                "orphan: release then finalize",
                vec![
                    obj(RS, "rs", &[], true, &[ORPHAN]),
                    obj(POD, "p", &[(RS, "rs")], false, &[]),
                ],
                vec!["unown p uid-rs"],
            ),
            (
                "orphan: nothing left",
                vec![obj(RS, "rs", &[], true, &[ORPHAN])],
                vec!["finalize rs orphan"],
            ),
        ];
        for (name, objs, want) in cases {
            let got: Vec<String> = plan(&objs, &watched).iter().map(show).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}

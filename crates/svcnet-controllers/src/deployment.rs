//! Deployment decisions: the new ReplicaSet, rolling-update and recreate steps, history cleanup, status and conditions.
//!
//! One call of [`plan`] is one step of upstream's `syncDeployment`: it looks
//! at the Deployment and the ReplicaSets it owns and says which single
//! change to make next (create the new ReplicaSet, scale one side, delete
//! history). The runtime applies it, and the ReplicaSet updates it causes
//! bring the next step.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::hash;
use crate::replicaset::controller_ref;

/// Revision of a ReplicaSet (and of its Deployment).
pub const ANNOTATION_REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet had before it was rolled back to.
pub const ANNOTATION_REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const ANNOTATION_DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const ANNOTATION_MAX: &str = "deployment.kubernetes.io/max-replicas";

/// Errors of the deployment decisions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeploymentError {
    /// maxSurge / maxUnavailable is neither a number nor a percentage.
    #[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
    BadIntOrPercent(String),
}

/// One ReplicaSet scale step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// ReplicaSet name.
    pub name: String,
    /// Its replicas before.
    pub from: i32,
    /// Its replicas after.
    pub to: i32,
}

impl Scale {
    /// The `ScalingReplicaSet` event message upstream records.
    pub fn message(&self) -> String {
        let op = if self.to > self.from { "up" } else { "down" };
        if self.from == 0 {
            format!("Scaled {op} replica set {} to {}", self.name, self.to)
        } else {
            format!(
                "Scaled {op} replica set {} to {} from {}",
                self.name, self.to, self.from
            )
        }
    }
}

/// What to write for one Deployment sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// A new ReplicaSet to create (its replicas already set).
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to scale (replicas plus the desired/max annotations).
    pub scale: Vec<Scale>,
    /// A revision annotation to put on an existing ReplicaSet (rollback to an older template).
    pub set_revision: Option<(String, String)>,
    /// Old ReplicaSets beyond `revisionHistoryLimit` to delete.
    pub delete: Vec<String>,
    /// The Deployment's `deployment.kubernetes.io/revision` when it must change.
    pub deployment_revision: Option<String>,
    /// The status to report.
    pub status: DeploymentStatus,
    /// Annotations for scaled ReplicaSets: (desired, max).
    pub scale_annotations: (i32, i32),
}

/// Resolves an IntOrString against `total`, rounding up or down (upstream `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(
    v: Option<&IntOrString>,
    total: i32,
    round_up: bool,
) -> Result<i32, DeploymentError> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| DeploymentError::BadIntOrPercent(s.clone()))?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            Ok(v.clamp(0, i64::from(i32::MAX)) as i32)
        }
    }
}

/// (maxSurge, maxUnavailable) for `replicas`; both zero becomes unavailable 1, as upstream.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), DeploymentError> {
    let desired = replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true)?;
    let unavailable = scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// The revision annotation of an object, 0 when missing or bad.
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn template_without_hash(
    rs_or_d: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> serde_json::Value {
    let mut t = rs_or_d.cloned().unwrap_or_default();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(hash::LABEL);
    }
    let mut v = serde_json::to_value(t).unwrap_or_default();
    // Empty label/annotation maps and absent ones are the same template.
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty())));
    }
    v
}

/// Whether the ReplicaSet runs the Deployment's current template (upstream `EqualIgnoreHash`).
pub fn is_new_rs(d: &Deployment, rs: &ReplicaSet) -> bool {
    template_without_hash(d.spec.as_ref().map(|s| &s.template))
        == template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
}

/// The ReplicaSet upstream creates for the Deployment's current template.
pub fn new_replica_set(d: &Deployment, replicas: i32, revision: i64, max_surge: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let h = hash::pod_template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let tm = template.metadata.get_or_insert_with(Default::default);
    tm.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(hash::LABEL.into(), h.clone());
    let labels = tm.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(hash::LABEL.into(), h.clone());
    let mut annotations = d.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.remove(ANNOTATION_REVISION_HISTORY);
    annotations.insert(ANNOTATION_REVISION.into(), revision.to_string());
    annotations.insert(ANNOTATION_DESIRED.into(), replicas_of(d).to_string());
    annotations.insert(
        ANNOTATION_MAX.into(),
        (replicas_of(d) + max_surge).to_string(),
    );
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{h}", d.metadata.name.as_deref().unwrap_or(""))),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

fn replicas_of(d: &Deployment) -> i32 {
    replicas(d)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// One sync step for `d`, given the ReplicaSets it controls and how many
/// pods of its old ReplicaSets still run (terminating ones included, as
/// upstream's Recreate waits for them).
pub fn plan(
    d: &Deployment,
    owned: &[&ReplicaSet],
    old_pods_running: usize,
    now: Timestamp,
) -> Result<Plan, DeploymentError> {
    let desired = replicas(d);
    let (surge, unavailable) = if is_recreate(d) {
        (0, 0)
    } else {
        fenceposts(d)?
    };
    let mut plan = Plan {
        scale_annotations: (desired, desired + surge),
        ..Default::default()
    };
    // Oldest first, as upstream sorts by creation time.
    let mut rses: Vec<&ReplicaSet> = owned.to_vec();
    rses.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.metadata.name.clone(),
        )
    });
    let new_rs = rses.iter().rev().copied().find(|r| is_new_rs(d, r));
    let old: Vec<&ReplicaSet> = rses
        .iter()
        .copied()
        .filter(|r| Some(*r) != new_rs)
        .collect();
    let max_old_rev = old.iter().map(|r| revision(&r.metadata)).max().unwrap_or(0);
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);

    // The new ReplicaSet's revision: one past every old one.
    let new_rev = match new_rs {
        Some(rs) if revision(&rs.metadata) > max_old_rev => revision(&rs.metadata),
        _ => max_old_rev + 1,
    };
    if let Some(rs) = new_rs
        && revision(&rs.metadata) < new_rev
    {
        plan.set_revision = Some((rs_name(rs), new_rev.to_string()));
    }
    if (new_rs.is_some() || !paused) && revision(&d.metadata) != new_rev {
        plan.deployment_revision = Some(new_rev.to_string());
    }

    let mut created = false;
    let mut changed = false;
    if paused {
        // Paused: no rollout, only scaling of the active ReplicaSet.
        let active: Vec<&ReplicaSet> = rses
            .iter()
            .copied()
            .filter(|r| rs_replicas(r) > 0)
            .collect();
        let target = new_rs.or(active.last().copied());
        if active.len() <= 1
            && let Some(rs) = target
            && rs_replicas(rs) != desired
        {
            plan.scale.push(Scale {
                name: rs_name(rs),
                from: rs_replicas(rs),
                to: desired,
            });
        }
        changed = !plan.scale.is_empty();
    } else if is_recreate(d) {
        let old_active: Vec<&&ReplicaSet> = old.iter().filter(|r| rs_replicas(r) > 0).collect();
        if !old_active.is_empty() {
            for rs in old_active {
                plan.scale.push(Scale {
                    name: rs_name(rs),
                    from: rs_replicas(rs),
                    to: 0,
                });
            }
            changed = true;
        } else if old_pods_running == 0 {
            match new_rs {
                None => {
                    plan.create = Some(new_replica_set(d, desired, new_rev, 0));
                    created = true;
                }
                Some(rs) if rs_replicas(rs) != desired => {
                    plan.scale.push(Scale {
                        name: rs_name(rs),
                        from: rs_replicas(rs),
                        to: desired,
                    });
                    changed = true;
                }
                Some(_) => {}
            }
        }
    } else {
        let total: i32 = rses.iter().map(|r| rs_replicas(r)).sum();
        let max_total = desired + surge;
        match new_rs {
            None => {
                let n = if total >= max_total {
                    0
                } else {
                    (max_total - total).min(desired)
                };
                plan.create = Some(new_replica_set(d, n, new_rev, surge));
                created = true;
            }
            Some(rs) => {
                let cur = rs_replicas(rs);
                let target = if cur > desired {
                    desired
                } else if total >= max_total {
                    cur
                } else {
                    cur + (max_total - total).min(desired - cur)
                };
                if target != cur {
                    plan.scale.push(Scale {
                        name: rs_name(rs),
                        from: cur,
                        to: target,
                    });
                    changed = true;
                } else {
                    // The new side is where it should be: scale the old side down.
                    let old_total: i32 = old.iter().map(|r| rs_replicas(r)).sum();
                    if old_total > 0 {
                        let min_available = desired - unavailable;
                        let new_unavailable = cur - rs_available(rs);
                        let mut budget = total - min_available - new_unavailable;
                        // Unhealthy old replicas go first: removing them costs no availability.
                        let mut targets: BTreeMap<String, i32> =
                            old.iter().map(|r| (rs_name(r), rs_replicas(r))).collect();
                        for r in &old {
                            if budget <= 0 {
                                break;
                            }
                            let t = targets.entry(rs_name(r)).or_default();
                            let unhealthy = (*t - rs_available(r)).max(0);
                            let n = unhealthy.min(budget);
                            *t -= n;
                            budget -= n;
                        }
                        // Then healthy ones, keeping minAvailable.
                        let available: i32 = rses.iter().map(|r| rs_available(r)).sum();
                        let mut healthy_budget = (available - min_available).min(budget.max(0));
                        for r in &old {
                            if healthy_budget <= 0 {
                                break;
                            }
                            let t = targets.entry(rs_name(r)).or_default();
                            let n = (*t).min(healthy_budget);
                            *t -= n;
                            healthy_budget -= n;
                        }
                        for r in &old {
                            let to = targets.get(&rs_name(r)).copied().unwrap_or(0);
                            if to != rs_replicas(r) {
                                plan.scale.push(Scale {
                                    name: rs_name(r),
                                    from: rs_replicas(r),
                                    to,
                                });
                            }
                        }
                        changed = !plan.scale.is_empty();
                    }
                }
            }
        }
    }

    // History: once nothing moves, drop the oldest empty old ReplicaSets past the limit.
    if !changed && !created {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut empty: Vec<&&ReplicaSet> = old
            .iter()
            .filter(|r| {
                rs_replicas(r) == 0
                    && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && r.metadata.deletion_timestamp.is_none()
            })
            .collect();
        empty.sort_by_key(|r| revision(&r.metadata));
        if empty.len() > limit {
            plan.delete = empty[..empty.len() - limit]
                .iter()
                .map(|r| rs_name(r))
                .collect();
        }
    }

    plan.status = status(
        d,
        &rses,
        new_rs,
        plan.create.as_ref(),
        created,
        changed,
        unavailable,
        now,
    );
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn status(
    d: &Deployment,
    rses: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    created_rs: Option<&ReplicaSet>,
    created: bool,
    changed: bool,
    max_unavailable: i32,
    now: Timestamp,
) -> DeploymentStatus {
    let desired = replicas(d);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| rses.iter().map(|r| f(r)).sum::<i32>();
    let total = sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(&|r| {
        r.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available = sum(&|r| rs_available(r));
    let updated = new_rs
        .and_then(|r| r.status.as_ref())
        .map(|s| s.replicas)
        .unwrap_or(0);
    let old = d.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let min_ok = available >= desired - max_unavailable;
    set_condition(
        &mut conditions,
        "Available",
        min_ok,
        if min_ok {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        if min_ok {
            "Deployment has minimum availability."
        } else {
            "Deployment does not have minimum availability."
        },
        now,
        true,
    );
    let name = new_rs.or(created_rs).map(rs_name).unwrap_or_default();
    let new_replicas = new_rs.map(rs_replicas).unwrap_or(0);
    let old_total: i32 = rses
        .iter()
        .filter(|r| Some(**r) != new_rs)
        .map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0))
        .sum();
    let complete = new_rs.is_some()
        && updated == desired
        && new_replicas == desired
        && available == desired
        && old_total == 0
        && total == desired;
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds);
    let current = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned();
    if paused {
        set_condition(
            &mut conditions,
            "Progressing",
            false,
            "DeploymentPaused",
            "Deployment is paused",
            now,
            false,
        );
        // Upstream reports Unknown while paused.
        if let Some(c) = conditions.iter_mut().find(|c| c.type_ == "Progressing") {
            c.status = "Unknown".into();
        }
    } else if complete {
        set_condition(
            &mut conditions,
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
            now,
            false,
        );
    } else if created {
        set_condition(
            &mut conditions,
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{name}\""),
            now,
            true,
        );
    } else if changed {
        set_condition(
            &mut conditions,
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{name}\" is progressing."),
            now,
            true,
        );
    } else if current.is_none() {
        set_condition(
            &mut conditions,
            "Progressing",
            true,
            "FoundNewReplicaSet",
            &format!("Found new replica set \"{name}\""),
            now,
            true,
        );
    } else if let (Some(c), Some(secs)) = (current, deadline) {
        let last = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
        let timed_out = c.reason.as_deref() != Some("NewReplicaSetAvailable")
            && last + jiff::SignedDuration::from_secs(i64::from(secs)) < now;
        if timed_out {
            set_condition(
                &mut conditions,
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{name}\" has timed out progressing."),
                now,
                true,
            );
        }
    }
    // Upstream lists Available before Progressing.
    conditions.sort_by_key(|c| if c.type_ == "Available" { 0 } else { 1 });
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((desired - available).max(0)),
        conditions: Some(conditions),
        collision_count: old.collision_count,
        terminating_replicas: None,
    }
}

/// Sets a condition; lastTransitionTime moves only when the status flips,
/// lastUpdateTime when anything changes (or `touch` asks, for progress).
fn set_condition(
    conds: &mut Vec<DeploymentCondition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
    touch: bool,
) {
    let status = if ok { "True" } else { "False" };
    let t = Some(Time(now));
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let same = c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message);
            if c.status != status {
                c.last_transition_time = t.clone();
            }
            if !same || touch {
                c.last_update_time = t;
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
        }
        None => conds.push(DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: t.clone(),
            last_update_time: t,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn deploy(
        replicas: i32,
        image: &str,
        strategy: &str,
        surge: IntOrString,
        unavail: IntOrString,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d1".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..Default::default()
                },
                template: template(image),
                strategy: Some(DeploymentStrategy {
                    type_: Some(strategy.into()),
                    rolling_update: (strategy == "RollingUpdate").then_some(
                        RollingUpdateDeployment {
                            max_surge: Some(surge),
                            max_unavailable: Some(unavail),
                        },
                    ),
                }),
                revision_history_limit: Some(1),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A ReplicaSet of `d` with the template of `image`: spec replicas, status replicas, available, revision, age.
    fn rs(
        d: &Deployment,
        image: &str,
        spec: i32,
        have: i32,
        avail: i32,
        rev: i64,
        created: i64,
    ) -> ReplicaSet {
        let mut d2 = d.clone();
        if let Some(s) = d2.spec.as_mut() {
            s.template = template(image);
        }
        let mut r = new_replica_set(&d2, spec, rev, 0);
        r.metadata.name = Some(format!("web-{image}"));
        r.metadata.creation_timestamp = Some(Time(ts(created)));
        r.status = Some(ReplicaSetStatus {
            replicas: have,
            ready_replicas: Some(avail),
            available_replicas: Some(avail),
            ..Default::default()
        });
        r
    }

    fn i(v: i32) -> IntOrString {
        IntOrString::Int(v)
    }

    fn p(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn scaled_values() {
        type Row = (Option<IntOrString>, i32, bool, Result<i32, DeploymentError>);
        let cases: Vec<Row> = vec![
            (None, 10, true, Ok(0)),
            (Some(i(3)), 10, true, Ok(3)),
            (Some(p("25%")), 10, true, Ok(3)),
            (Some(p("25%")), 10, false, Ok(2)),
            (Some(p("100%")), 3, false, Ok(3)),
            (Some(p("0%")), 3, true, Ok(0)),
            (
                Some(p("abc")),
                3,
                true,
                Err(DeploymentError::BadIntOrPercent("abc".into())),
            ),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(
                scaled_value(v.as_ref(), total, up),
                want,
                "{v:?} of {total}"
            );
        }
        assert_eq!(
            DeploymentError::BadIntOrPercent("x".into()).to_string(),
            "invalid value for IntOrString: invalid type: string is not a percentage: \"x\""
        );
        assert_eq!(
            fenceposts(&deploy(4, "a", "RollingUpdate", i(0), i(0))),
            Ok((0, 1))
        );
        assert_eq!(
            fenceposts(&deploy(4, "a", "RollingUpdate", p("25%"), p("25%"))),
            Ok((1, 1))
        );
    }

    /// (name, deployment, [(image, spec, have, avail, rev, created)], old pods running,
    /// want created RS (name, replicas), want scales, want deletes)
    type Case = (
        &'static str,
        Deployment,
        Vec<(&'static str, i32, i32, i32, i64, i64)>,
        usize,
        Option<i32>,
        Vec<(&'static str, i32, i32)>,
        Vec<&'static str>,
    );

    #[test]
    fn plans() {
        let roll = |n: i32, img: &str| deploy(n, img, "RollingUpdate", i(1), i(1));
        let cases: Vec<Case> = vec![
            (
                "first rollout creates the RS at full size",
                roll(3, "v1"),
                vec![],
                0,
                Some(3),
                vec![],
                vec![],
            ),
            (
                "steady state does nothing",
                roll(3, "v1"),
                vec![("v1", 3, 3, 3, 1, 0)],
                0,
                None,
                vec![],
                vec![],
            ),
            (
                "scale up",
                roll(5, "v1"),
                vec![("v1", 3, 3, 3, 1, 0)],
                0,
                None,
                vec![("web-v1", 3, 5)],
                vec![],
            ),
            (
                "scale down",
                roll(1, "v1"),
                vec![("v1", 3, 3, 3, 1, 0)],
                0,
                None,
                vec![("web-v1", 3, 1)],
                vec![],
            ),
            // New template: surge 1 over 3 → new RS with 1.
            (
                "rolling starts with the surge",
                roll(3, "v2"),
                vec![("v1", 3, 3, 3, 1, 0)],
                0,
                Some(1),
                vec![],
                vec![],
            ),
            // New RS at 1 not yet available: old may lose only maxUnavailable (1).
            (
                "old side respects maxUnavailable",
                roll(3, "v2"),
                vec![("v1", 3, 3, 3, 1, 0), ("v2", 1, 1, 0, 2, 1)],
                0,
                None,
                vec![("web-v1", 3, 2)],
                vec![],
            ),
            // Total 3 = 2 old + 1 new, surge room 1 → new to 2.
            (
                "new side grows into the surge",
                roll(3, "v2"),
                vec![("v1", 2, 2, 2, 1, 0), ("v2", 1, 1, 1, 2, 1)],
                0,
                None,
                vec![("web-v2", 1, 2)],
                vec![],
            ),
            // Nothing available anywhere beyond min: no scale-down.
            (
                "no availability to spend",
                roll(3, "v2"),
                vec![("v1", 2, 2, 2, 1, 0), ("v2", 2, 2, 0, 2, 1)],
                0,
                None,
                vec![],
                vec![],
            ),
            // Unhealthy old pods go regardless of the healthy budget.
            (
                "unhealthy old replicas first",
                roll(3, "v2"),
                vec![("v1", 3, 3, 1, 1, 0), ("v2", 1, 1, 0, 2, 1)],
                0,
                None,
                vec![("web-v1", 3, 2)],
                vec![],
            ),
            (
                "done rolling: history beyond the limit goes",
                roll(3, "v3"),
                vec![
                    ("v1", 0, 0, 0, 1, 0),
                    ("v2", 0, 0, 0, 2, 1),
                    ("v3", 3, 3, 3, 3, 2),
                ],
                0,
                None,
                vec![],
                vec!["web-v1"],
            ),
            (
                "recreate scales old to zero first",
                deploy(2, "v2", "Recreate", i(0), i(0)),
                vec![("v1", 2, 2, 2, 1, 0)],
                2,
                None,
                vec![("web-v1", 2, 0)],
                vec![],
            ),
            (
                "recreate waits for old pods",
                deploy(2, "v2", "Recreate", i(0), i(0)),
                vec![("v1", 0, 1, 0, 1, 0)],
                1,
                None,
                vec![],
                vec![],
            ),
            (
                "recreate then creates the new RS",
                deploy(2, "v2", "Recreate", i(0), i(0)),
                vec![("v1", 0, 0, 0, 1, 0)],
                0,
                Some(2),
                vec![],
                vec![],
            ),
        ];
        for (name, d, sets, running, want_create, want_scale, want_delete) in cases {
            let owned: Vec<ReplicaSet> = sets
                .iter()
                .map(|(img, s, h, a, r, c)| rs(&d, img, *s, *h, *a, *r, *c))
                .collect();
            let refs: Vec<&ReplicaSet> = owned.iter().collect();
            let got = match plan(&d, &refs, running, ts(100)) {
                Ok(p) => p,
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(
                got.create
                    .as_ref()
                    .and_then(|r| r.spec.as_ref())
                    .and_then(|s| s.replicas),
                want_create,
                "{name}: create"
            );
            let scales: Vec<(String, i32, i32)> = got
                .scale
                .iter()
                .map(|s| (s.name.clone(), s.from, s.to))
                .collect();
            let want_scale: Vec<(String, i32, i32)> = want_scale
                .iter()
                .map(|(n, f, t)| ((*n).to_owned(), *f, *t))
                .collect();
            assert_eq!(scales, want_scale, "{name}: scale");
            assert_eq!(got.delete, want_delete, "{name}: delete");
        }
    }

    #[test]
    fn new_rs_shape() {
        let d = deploy(3, "v1", "RollingUpdate", i(1), i(1));
        let r = new_replica_set(&d, 1, 4, 1);
        let h = hash::pod_template_hash(&template("v1"), None);
        assert_eq!(r.metadata.name, Some(format!("web-{h}")));
        let ann = r.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(ANNOTATION_REVISION).map(String::as_str), Some("4"));
        assert_eq!(ann.get(ANNOTATION_DESIRED).map(String::as_str), Some("3"));
        assert_eq!(ann.get(ANNOTATION_MAX).map(String::as_str), Some("4"));
        let spec = r.spec.clone().unwrap_or_default();
        assert_eq!(
            spec.selector
                .match_labels
                .unwrap_or_default()
                .get(hash::LABEL),
            Some(&h)
        );
        assert!(is_new_rs(&d, &r));
        assert!(!is_new_rs(
            &deploy(3, "v2", "RollingUpdate", i(1), i(1)),
            &r
        ));
    }

    #[test]
    fn status_and_conditions() {
        let d = deploy(3, "v1", "RollingUpdate", i(1), i(1));
        let r = rs(&d, "v1", 3, 3, 3, 1, 0);
        let got = plan(&d, &[&r], 0, ts(5)).unwrap_or_default();
        let s = got.status;
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas,
                s.observed_generation
            ),
            (Some(3), Some(3), Some(3), Some(3), Some(0), Some(2))
        );
        let conds: Vec<(String, String, String, String)> = s
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                (
                    c.type_,
                    c.status,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            conds,
            [
                (
                    "Available".into(),
                    "True".into(),
                    "MinimumReplicasAvailable".into(),
                    "Deployment has minimum availability.".into()
                ),
                (
                    "Progressing".into(),
                    "True".into(),
                    "NewReplicaSetAvailable".into(),
                    "ReplicaSet \"web-v1\" has successfully progressed.".into()
                ),
            ]
        );
        let short = rs(&d, "v1", 3, 3, 1, 1, 0);
        let s = plan(&d, &[&short], 0, ts(5)).unwrap_or_default().status;
        let avail = s
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Available")
            .unwrap_or_default();
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("False", Some("MinimumReplicasUnavailable"))
        );
    }

    #[test]
    fn scale_messages() {
        let cases = [
            (
                Scale {
                    name: "web-1".into(),
                    from: 0,
                    to: 3,
                },
                "Scaled up replica set web-1 to 3",
            ),
            (
                Scale {
                    name: "web-1".into(),
                    from: 3,
                    to: 1,
                },
                "Scaled down replica set web-1 to 1 from 3",
            ),
            (
                Scale {
                    name: "web-1".into(),
                    from: 1,
                    to: 2,
                },
                "Scaled up replica set web-1 to 2 from 1",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.message(), want);
        }
    }
}

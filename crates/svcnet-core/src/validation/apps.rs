//! Deployment and ReplicaSet validation (upstream `apps/validation`), including the selector rules.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::validate_pod_template_spec;
use super::{go_label_selector, go_map, int_or_string_value};
use crate::field_errors::{BadValue, ErrorList, FieldError, Path};
use crate::names::{
    FIELD_IMMUTABLE, name_is_dns_subdomain, regex_error, validate_nonnegative,
    validate_object_meta, validate_object_meta_update,
};
use crate::selector::{Selector, validate_label_selector};

fn is_empty_selector(ls: &LabelSelector) -> bool {
    ls.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && ls.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// The selector checks shared by Deployments and ReplicaSets, then the
/// template against it (upstream `ValidatePodTemplateSpecForReplicaSet`).
fn validate_selector_and_template(
    selector: &LabelSelector,
    template: Option<&PodTemplateSpec>,
    path: &Path,
) -> ErrorList {
    let mut errs = validate_label_selector(selector, &path.child("selector"));
    if is_empty_selector(selector) {
        // Upstream says "deployment" for ReplicaSets too.
        errs.push(FieldError::invalid(
            &path.child("selector"),
            go_label_selector(selector),
            "empty selector is invalid for deployment",
        ));
    }
    let tpath = path.child("template");
    match Selector::from_label_selector(Some(selector)) {
        Err(_) => errs.push(FieldError::invalid(
            &path.child("selector"),
            go_label_selector(selector),
            "invalid label selector",
        )),
        Ok(sel) => {
            let Some(t) = template else {
                errs.push(FieldError::required(&tpath, ""));
                return errs;
            };
            let labels = t.metadata.as_ref().and_then(|m| m.labels.as_ref());
            if !sel.is_empty() {
                let empty = Default::default();
                if !sel.matches(labels.unwrap_or(&empty)) {
                    errs.push(FieldError::invalid(
                        &tpath.child("metadata").child("labels"),
                        BadValue::Raw(go_map(labels)),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            errs.extend(validate_pod_template_spec(t, &tpath));
            let spec = t.spec.as_ref();
            let rp = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("");
            if rp != "Always" {
                errs.push(FieldError::not_supported(
                    &tpath.child("spec").child("restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
            if spec.and_then(|s| s.active_deadline_seconds).is_some() {
                errs.push(FieldError::forbidden(
                    &tpath.child("spec").child("activeDeadlineSeconds"),
                    "activeDeadlineSeconds in ReplicaSet is not Supported",
                ));
            }
        }
    }
    errs
}

fn int_or_percent(v: &IntOrString) -> (i64, bool) {
    match v {
        IntOrString::Int(i) => (i64::from(*i), false),
        IntOrString::String(s) => (
            s.strip_suffix('%')
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0),
            true,
        ),
    }
}

fn is_valid_percent(s: &str) -> bool {
    s.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Upstream `ValidatePositiveIntOrPercent`.
fn validate_positive_int_or_percent(v: &IntOrString, path: &Path) -> ErrorList {
    match v {
        IntOrString::String(s) => {
            if is_valid_percent(s) {
                Vec::new()
            } else {
                vec![FieldError::invalid(
                    path,
                    int_or_string_value(v),
                    regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                )]
            }
        }
        IntOrString::Int(i) => validate_nonnegative(i64::from(*i), path),
    }
}

fn validate_strategy(s: Option<&DeploymentStrategy>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let ty = s.and_then(|s| s.type_.as_deref()).unwrap_or("");
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    match ty {
        "Recreate" => {
            if ru.is_some() {
                errs.push(FieldError::forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let rpath = path.child("rollingUpdate");
            let Some(ru) = ru else {
                errs.push(FieldError::required(
                    &rpath,
                    "this should be defaulted and never be nil",
                ));
                return errs;
            };
            let zero = IntOrString::Int(0);
            let mu = ru.max_unavailable.as_ref().unwrap_or(&zero);
            let ms = ru.max_surge.as_ref().unwrap_or(&zero);
            errs.extend(validate_positive_int_or_percent(
                mu,
                &rpath.child("maxUnavailable"),
            ));
            errs.extend(validate_positive_int_or_percent(
                ms,
                &rpath.child("maxSurge"),
            ));
            if int_or_percent(mu).0 == 0 && int_or_percent(ms).0 == 0 {
                errs.push(FieldError::invalid(
                    &rpath.child("maxUnavailable"),
                    int_or_string_value(mu),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            let (v, pct) = int_or_percent(mu);
            if pct && v > 100 {
                errs.push(FieldError::invalid(
                    &rpath.child("maxUnavailable"),
                    int_or_string_value(mu),
                    "must not be greater than 100%",
                ));
            }
        }
        other => {
            let ru_text = if ru.is_some() {
                "(*apps.RollingUpdateDeployment)(…)"
            } else {
                "(*apps.RollingUpdateDeployment)(nil)"
            };
            errs.push(FieldError::not_supported(
                path,
                BadValue::Raw(format!(
                    "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{ru_text}}}",
                    crate::field_errors::go_quote(other)
                )),
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
    errs
}

fn validate_deployment_spec(spec: &DeploymentSpec, path: &Path) -> ErrorList {
    let mut errs = validate_nonnegative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
    );
    errs.extend(validate_selector_and_template(
        &spec.selector,
        Some(&spec.template),
        path,
    ));
    errs.extend(validate_strategy(
        spec.strategy.as_ref(),
        &path.child("strategy"),
    ));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(validate_nonnegative(
        i64::from(min_ready),
        &path.child("minReadySeconds"),
    ));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(
            i64::from(r),
            &path.child("revisionHistoryLimit"),
        ));
    }
    if let Some(p) = spec.progress_deadline_seconds {
        errs.extend(validate_nonnegative(
            i64::from(p),
            &path.child("progressDeadlineSeconds"),
        ));
        if p <= min_ready {
            errs.push(FieldError::invalid(
                &path.child("progressDeadlineSeconds"),
                p,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// Upstream `ValidateDeployment` for a defaulted apps/v1 Deployment.
pub fn validate_deployment(d: &Deployment) -> ErrorList {
    let mut errs = validate_object_meta(
        &d.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let empty = DeploymentSpec::default();
    errs.extend(validate_deployment_spec(
        d.spec.as_ref().unwrap_or(&empty),
        &Path::new("spec"),
    ));
    errs
}

fn selector_immutable(new: &LabelSelector, old: &LabelSelector) -> ErrorList {
    // Semantic equality: nil and empty collections compare equal.
    let norm = |ls: &LabelSelector| {
        (
            ls.match_labels.clone().unwrap_or_default(),
            ls.match_expressions.clone().unwrap_or_default(),
        )
    };
    if norm(new) == norm(old) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            &Path::new("spec").child("selector"),
            go_label_selector(new),
            FIELD_IMMUTABLE,
        )]
    }
}

/// Upstream `ValidateDeploymentUpdate` plus the apps/v1 rule that
/// `spec.selector` is immutable.
pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let empty = DeploymentSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_deployment_spec(ns, &Path::new("spec")));
    let os = old.spec.as_ref().unwrap_or(&empty);
    errs.extend(selector_immutable(&ns.selector, &os.selector));
    errs
}

fn validate_replica_set_spec(spec: &ReplicaSetSpec, path: &Path) -> ErrorList {
    let mut errs = validate_nonnegative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
    );
    errs.extend(validate_nonnegative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
    ));
    errs.extend(validate_selector_and_template(
        &spec.selector,
        spec.template.as_ref(),
        path,
    ));
    errs
}

/// Upstream `ValidateReplicaSet` for a defaulted apps/v1 ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> ErrorList {
    let mut errs = validate_object_meta(
        &rs.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let empty = ReplicaSetSpec::default();
    errs.extend(validate_replica_set_spec(
        rs.spec.as_ref().unwrap_or(&empty),
        &Path::new("spec"),
    ));
    errs
}

/// Upstream `ValidateReplicaSetUpdate` plus the apps/v1 immutable selector.
pub fn validate_replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let empty = ReplicaSetSpec::default();
    let ns = new.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_replica_set_spec(ns, &Path::new("spec")));
    let os = old.spec.as_ref().unwrap_or(&empty);
    errs.extend(selector_immutable(&ns.selector, &os.selector));
    errs
}

/// Non-negative counters no larger than `status.replicas` (and available
/// ≤ ready), as upstream's `ValidateDeploymentStatus` / `ValidateReplicaSetStatus`.
fn validate_replica_counts(
    counts: &[(&str, i64)],
    replicas: i64,
    ready: i64,
    available: i64,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    for (name, v) in counts {
        errs.extend(validate_nonnegative(*v, &path.child(name)));
    }
    let msg = "cannot be greater than status.replicas";
    for (name, v) in counts {
        if matches!(
            *name,
            "updatedReplicas" | "readyReplicas" | "availableReplicas" | "fullyLabeledReplicas"
        ) && *v > replicas
        {
            errs.push(FieldError::invalid(&path.child(name), *v, msg));
        }
    }
    if available > ready {
        errs.push(FieldError::invalid(
            &path.child("availableReplicas"),
            available,
            "cannot be greater than readyReplicas",
        ));
    }
    errs
}

fn collision_decremented(new: Option<i32>, old: Option<i32>, path: &Path) -> ErrorList {
    match (new, old) {
        (n, Some(o)) if n.is_none_or(|n| n < o) => vec![FieldError::invalid(
            &path.child("collisionCount"),
            i64::from(n.unwrap_or(0)),
            "cannot be decremented",
        )],
        _ => Vec::new(),
    }
}

/// Upstream `ValidateDeploymentStatusUpdate`.
pub fn validate_deployment_status_update(new: &Deployment, old: &Deployment) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let p = Path::new("status");
    let st = new.status.clone().unwrap_or_default();
    let i = |v: Option<i32>| i64::from(v.unwrap_or(0));
    let mut counts = vec![
        ("observedGeneration", st.observed_generation.unwrap_or(0)),
        ("replicas", i(st.replicas)),
        ("updatedReplicas", i(st.updated_replicas)),
        ("readyReplicas", i(st.ready_replicas)),
        ("availableReplicas", i(st.available_replicas)),
        ("unavailableReplicas", i(st.unavailable_replicas)),
    ];
    if let Some(c) = st.collision_count {
        counts.push(("collisionCount", i64::from(c)));
    }
    errs.extend(validate_replica_counts(
        &counts,
        i(st.replicas),
        i(st.ready_replicas),
        i(st.available_replicas),
        &p,
    ));
    let old_cc = old.status.as_ref().and_then(|s| s.collision_count);
    errs.extend(collision_decremented(st.collision_count, old_cc, &p));
    errs
}

/// Upstream `ValidateReplicaSetStatusUpdate`.
pub fn validate_replica_set_status_update(new: &ReplicaSet, old: &ReplicaSet) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let st = new.status.clone().unwrap_or_default();
    let i = |v: Option<i32>| i64::from(v.unwrap_or(0));
    let counts = [
        ("replicas", i64::from(st.replicas)),
        ("fullyLabeledReplicas", i(st.fully_labeled_replicas)),
        ("readyReplicas", i(st.ready_replicas)),
        ("availableReplicas", i(st.available_replicas)),
        ("observedGeneration", st.observed_generation.unwrap_or(0)),
    ];
    errs.extend(validate_replica_counts(
        &counts,
        i64::from(st.replicas),
        i(st.ready_replicas),
        i(st.available_replicas),
        &Path::new("status"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{default_deployment, default_replica_set};
    use serde_json::{Value, json};

    fn deployment(spec: Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": spec
        }))
        .expect("deployment json");
        default_deployment(&mut d);
        d
    }

    fn base() -> Value {
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        })
    }

    fn with(mut v: Value, path: &[&str], val: Value) -> Value {
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = val;
        v
    }

    fn check(spec: Value) -> Vec<String> {
        validate_deployment(&deployment(spec))
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn valid_deployment() {
        assert_eq!(check(base()), Vec::<String>::new());
        assert_eq!(
            check(with(base(), &["strategy"], json!({"type": "Recreate"}))),
            Vec::<String>::new()
        );
        assert_eq!(
            check(with(
                base(),
                &["selector"],
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn invalid_deployments() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                with(
                    base(),
                    &["template", "metadata", "labels"],
                    json!({"app": "other"}),
                ),
                vec![
                    r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#,
                ],
            ),
            (
                with(base(), &["selector"], json!({})),
                vec![
                    "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
                ],
            ),
            (
                with(base(), &["replicas"], json!(-1)),
                vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                with(
                    base(),
                    &["strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
                ],
            ),
            (
                with(
                    base(),
                    &["strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "0%"}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0",
                ],
            ),
            (
                with(
                    base(),
                    &["strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%",
                ],
            ),
            (
                with(
                    base(),
                    &["strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "ten"}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate.maxSurge: Invalid value: ten: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ],
            ),
            (
                with(
                    base(),
                    &["strategy"],
                    json!({"type": "Recreate", "rollingUpdate": {}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
                ],
            ),
            (
                with(base(), &["strategy"], json!({"type": "BlueGreen"})),
                vec![
                    r#"spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate""#,
                ],
            ),
            (
                with(
                    base(),
                    &["template", "spec", "restartPolicy"],
                    json!("Never"),
                ),
                vec![
                    r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
                ],
            ),
            (
                with(base(), &["template", "spec", "containers"], json!([])),
                vec!["spec.template.spec.containers: Required value"],
            ),
            (with(base(), &["progressDeadlineSeconds"], json!(5)), vec![]),
            (
                with(
                    with(base(), &["progressDeadlineSeconds"], json!(5)),
                    &["minReadySeconds"],
                    json!(10),
                ),
                vec![
                    "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds",
                ],
            ),
            (
                with(
                    base(),
                    &["selector"],
                    json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Near"}]}),
                ),
                vec![
                    r#"spec.selector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator"#,
                    r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"tier", Operator:"Near", Values:[]string(nil)}}}: invalid label selector"#,
                ],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(check(spec.clone()), want, "{spec}");
        }
    }

    #[test]
    fn deployment_updates() {
        let old = deployment(base());
        let mut new = deployment(with(base(), &["replicas"], json!(3)));
        new.metadata = old.metadata.clone();
        assert_eq!(validate_deployment_update(&new, &old), Vec::new());
        let new = deployment(with(
            with(
                base(),
                &["selector"],
                json!({"matchLabels": {"app": "web", "v": "2"}}),
            ),
            &["template", "metadata", "labels"],
            json!({"app": "web", "v": "2"}),
        ));
        let got: Vec<String> = validate_deployment_update(&new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
            ]
        );
        assert_eq!(
            crate::field_errors::invalid_message(
                "Deployment.apps",
                "web",
                &validate_deployment_update(&new, &old)
            ),
            r#"Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        );
    }

    #[test]
    fn status_updates() {
        let old = deployment(base());
        let mut new = old.clone();
        new.status = serde_json::from_value(json!({
            "replicas": 2, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 2, "collisionCount": -1
        }))
        .ok();
        let got: Vec<String> = validate_deployment_status_update(&new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "status.collisionCount: Invalid value: -1: must be greater than or equal to 0",
                "status.updatedReplicas: Invalid value: 3: cannot be greater than status.replicas",
                "status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas",
            ]
        );
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "default", "resourceVersion": "1"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}},
            "status": {"replicas": 1, "readyReplicas": 2}
        }))
        .expect("rs");
        default_replica_set(&mut rs);
        let got: Vec<String> = validate_replica_set_status_update(&rs, &rs)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"]
        );
    }

    #[test]
    fn replica_sets() {
        let mk = |spec: Value| {
            let mut rs: ReplicaSet = serde_json::from_value(json!({
                "metadata": {"name": "web-abc", "namespace": "default", "resourceVersion": "1"}, "spec": spec
            }))
            .expect("rs json");
            default_replica_set(&mut rs);
            rs
        };
        let good = mk(base());
        assert_eq!(validate_replica_set(&good), Vec::new());
        let no_template = mk(json!({"selector": {"matchLabels": {"app": "web"}}}));
        let got: Vec<String> = validate_replica_set(&no_template)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(got, vec!["spec.template: Required value"]);
        let mismatch = mk(with(base(), &["template", "metadata", "labels"], json!({})));
        let got: Vec<String> = validate_replica_set(&mismatch)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{}: `selector` does not match template `labels`"
            ]
        );
        let mut changed = mk(with(
            base(),
            &["selector", "matchLabels", "app"],
            json!("x"),
        ));
        changed.metadata = good.metadata.clone();
        let got: Vec<String> = validate_replica_set_update(&changed, &good)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got.last().map(String::as_str),
            Some(
                r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
            )
        );
    }
}

//! Field ownership (managedFields, FieldsV1) and server-side apply.
//!
//! A simplified structured-merge-diff: an object is a tree of fields; maps
//! are merged per key, lists with list-map keys (Service ports by port and
//! protocol, containers by name, ...) per element, other lists are atomic.
//! Each manager owns a set of leaf paths. Apply merges the applied
//! configuration into the live object, removes fields the manager applied
//! before and no longer applies (unless someone else owns them), and
//! reports fields owned by other managers whose values would change as a
//! 409 conflict unless `force` is set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Cause};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Elem {
    /// A map field: `f:<name>`.
    Field(String),
    /// A list element by its key fields: `k:{"port":80,"protocol":"TCP"}`.
    Key(String),
    /// A member of a set of scalars: `v:"x"`.
    Member(String),
}

pub type FieldPath = Vec<Elem>;

/// List-map keys of associative lists, by the list field's name and parent.
fn list_keys(parent: Option<&str>, field: &str) -> Option<&'static [&'static str]> {
    Some(match (parent, field) {
        (
            _,
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets",
        ) => &["name"],
        (Some("spec"), "ports") => &["port", "protocol"],
        (_, "ports") => &["containerPort", "protocol"],
        (_, "volumeMounts") => &["mountPath"],
        (_, "conditions") => &["type"],
        (_, "ownerReferences") => &["uid"],
        (_, "addresses") if parent == Some("status") => &["type"],
        _ => return None,
    })
}

/// Lists of scalars treated as sets.
fn is_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn key_of(item: &Value, keys: &[&str], field: &str) -> String {
    let mut m = Map::new();
    for k in keys {
        let mut v = item.get(*k).cloned().unwrap_or(Value::Null);
        // protocol defaults to TCP for ports
        if v.is_null() && *k == "protocol" && field == "ports" {
            v = json!("TCP");
        }
        if !v.is_null() {
            m.insert((*k).to_string(), v);
        }
    }
    Value::Object(m).to_string()
}

/// Server-owned fields that nobody manages.
fn ignored(path: &[Elem]) -> bool {
    matches!(path, [Elem::Field(a), ..] if a == "apiVersion" || a == "kind")
        || matches!(path, [Elem::Field(m), Elem::Field(f), ..] if m == "metadata" && matches!(f.as_str(),
            "uid" | "resourceVersion" | "creationTimestamp" | "generation" | "managedFields" | "deletionTimestamp" | "deletionGracePeriodSeconds" | "selfLink" | "name" | "namespace"))
}

/// The leaf paths of `v` (maps descend, keyed lists descend, others are leaves).
pub fn leaves(v: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    walk(v, None, &mut Vec::new(), &mut out);
    out.retain(|p| !ignored(p));
    out
}

fn walk(v: &Value, parent: Option<&str>, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let _ = parent;
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(Elem::Field(k.clone()));
                let grand = path.len().checked_sub(2).and_then(|i| match &path[i] {
                    Elem::Field(f) => Some(f.clone()),
                    _ => None,
                });
                match child {
                    Value::Array(items) if !items.is_empty() => {
                        if let Some(keys) = list_keys(grand.as_deref(), k) {
                            for item in items {
                                path.push(Elem::Key(key_of(item, keys, k)));
                                walk(item, Some(k), path, out);
                                path.pop();
                            }
                        } else if is_set(k) {
                            for item in items {
                                path.push(Elem::Member(item.to_string()));
                                out.insert(path.clone());
                                path.pop();
                            }
                        } else {
                            out.insert(path.clone());
                        }
                    }
                    _ => walk(child, Some(k), path, out),
                }
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The value at a path, if present.
fn get<'a>(v: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut cur = v;
    let mut last_field = "";
    let mut parent_field: Option<String> = None;
    for e in path {
        match e {
            Elem::Field(f) => {
                parent_field = Some(last_field.to_string());
                cur = cur.get(f)?;
                last_field = f;
            }
            Elem::Key(k) => {
                let keys = list_keys(
                    parent_field.as_deref().filter(|s| !s.is_empty()),
                    last_field,
                )?;
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|i| key_of(i, keys, last_field) == *k)?;
            }
            Elem::Member(m) => {
                cur = cur.as_array()?.iter().find(|i| i.to_string() == *m)?;
            }
        }
    }
    Some(cur)
}

/// Renders a path like upstream's conflict messages: `.spec.ports[port=80,protocol="TCP"].targetPort`.
pub fn render(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let m: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Elem::Member(m) => s.push_str(&format!("[={m}]")),
        }
    }
    s
}

/// Encodes a set of leaf paths as FieldsV1.
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for (i, e) in p.iter().enumerate() {
            let k = match e {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
                Elem::Member(m) => format!("v:{m}"),
            };
            let entry = cur.entry(k).or_insert_with(|| json!({}));
            if matches!(e, Elem::Key(_))
                && i + 1 < p.len()
                && let Some(m) = entry.as_object_mut()
            {
                m.entry(".").or_insert_with(|| json!({}));
            }
            cur = match entry.as_object_mut() {
                Some(m) => m,
                None => break,
            };
        }
    }
    Value::Object(root)
}

/// Metadata fields nobody manages (see [`ignored`]).
const UNMANAGED_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "name",
    "namespace",
];

/// FieldsV1 of every managed leaf of `v`: what `to_fields_v1(&leaves(v))`
/// gives, built in one walk without the intermediate paths (a create
/// records all its fields, on every request).
pub fn all_fields_v1(v: &Value) -> Value {
    let mut root = Map::new();
    if let Value::Object(m) = v {
        for (k, child) in m {
            match (k.as_str(), child) {
                ("apiVersion" | "kind", _) => {}
                ("metadata", Value::Object(meta)) if !meta.is_empty() => {
                    let mut out = Map::new();
                    for (mk, mc) in meta {
                        if !UNMANAGED_META.contains(&mk.as_str()) {
                            field_v1(&mut out, Some("metadata"), mk, mc);
                        }
                    }
                    if !out.is_empty() {
                        root.insert("f:metadata".into(), Value::Object(out));
                    }
                }
                _ => field_v1(&mut root, None, k, child),
            }
        }
    }
    Value::Object(root)
}

/// Adds field `k` (of an object that is field `parent`) with its leaves to `out`.
fn field_v1(out: &mut Map<String, Value>, parent: Option<&str>, k: &str, child: &Value) {
    let slot = sub(out, format!("f:{k}"));
    match child {
        Value::Array(items) if !items.is_empty() => {
            if let Some(keys) = list_keys(parent, k) {
                for item in items {
                    let entry = sub(slot, format!("k:{}", key_of(item, keys, k)));
                    if let Value::Object(m) = item
                        && !m.is_empty()
                    {
                        entry.entry(".").or_insert_with(|| json!({}));
                        for (ik, ic) in m {
                            field_v1(entry, None, ik, ic);
                        }
                    }
                }
            } else if is_set(k) {
                for item in items {
                    sub(slot, format!("v:{item}"));
                }
            }
        }
        Value::Object(m) if !m.is_empty() => {
            for (ck, cc) in m {
                field_v1(slot, Some(k), ck, cc);
            }
        }
        _ => {}
    }
}

/// The object under `key` in `m`, made empty if missing.
fn sub(m: &mut Map<String, Value>, key: String) -> &mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// Decodes FieldsV1 into leaf paths.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != ".").collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            let e = if let Some(f) = k.strip_prefix("f:") {
                Elem::Field(f.to_string())
            } else if let Some(f) = k.strip_prefix("k:") {
                Elem::Key(f.to_string())
            } else if let Some(f) = k.strip_prefix("v:") {
                Elem::Member(f.to_string())
            } else {
                continue;
            };
            path.push(e);
            rec(child, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One managedFields entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    fields: BTreeSet<FieldPath>,
    time: Value,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    fields: from_fields_v1(&e["fieldsV1"]),
                    time: e.get("time").cloned().unwrap_or(Value::Null),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, es: &[Entry]) {
    let arr: Vec<Value> = es
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if arr.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(arr);
    }
}

fn now() -> Value {
    json!(crate::handlers::rfc3339(k8s_openapi::jiff::Timestamp::now()))
}

/// Records that `manager` wrote `new` (an Update or an Apply on create):
/// it takes the fields that changed from `old` (all fields on create).
pub fn record_manager(
    new: &mut Value,
    old: Option<&Value>,
    manager: &str,
    operation: &str,
    api_version: &str,
) {
    let unmanaged = new["metadata"]["managedFields"]
        .as_array()
        .is_none_or(|a| a.is_empty());
    if old.is_none() && unmanaged {
        // A create without managedFields: one entry with every field.
        let fields = all_fields_v1(new);
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            if fields.as_object().is_some_and(|m| m.is_empty()) {
                meta.remove("managedFields");
            } else {
                meta.insert(
                    "managedFields".into(),
                    json!([{
                        "manager": manager,
                        "operation": operation,
                        "apiVersion": api_version,
                        "time": now(),
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields,
                    }]),
                );
            }
            return;
        }
    }
    let new_leaves = leaves(new);
    let changed: BTreeSet<FieldPath> = match old {
        None => new_leaves.clone(),
        Some(o) => {
            let old_leaves = leaves(o);
            new_leaves
                .iter()
                .filter(|p| !old_leaves.contains(*p) || get(new, p) != get(o, p))
                .cloned()
                .collect()
        }
    };
    if changed.is_empty() && old.is_some() {
        return;
    }
    let mut es = entries(new);
    for e in es.iter_mut() {
        if !(e.manager == manager && e.operation == operation) {
            e.fields.retain(|p| !changed.contains(p));
        }
        // Fields that no longer exist are owned by nobody.
        e.fields.retain(|p| new_leaves.contains(p));
    }
    match es
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == operation)
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now();
        }
        None => es.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            subresource: None,
            fields: changed,
            time: now(),
        }),
    }
    set_entries(new, &es);
}

/// The object to create for an apply to a missing object.
pub fn apply_create(res: &Resource, patch: &Value, _manager: &str) -> ApiResult<Value> {
    let mut obj = patch.clone();
    check_applied(res, &obj)?;
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    Ok(obj)
}

fn check_applied(res: &Resource, patch: &Value) -> ApiResult<()> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "apply patch must be a JSON/YAML object",
        ));
    }
    let kind = patch["kind"].as_str().unwrap_or("");
    let av = patch["apiVersion"].as_str().unwrap_or("");
    if kind != res.kind || av != res.api_version() {
        return Err(ApiError::bad_request(format!(
            "apply patch must name kind {} and apiVersion {} (got kind {kind:?}, apiVersion {av:?})",
            res.kind,
            res.api_version()
        )));
    }
    Ok(())
}

/// Merges `patch` into `live` per the list-map rules.
fn merge(live: &mut Value, patch: &Value, parent: Option<&str>, field: Option<&str>) {
    match (live, patch) {
        (Value::Object(l), Value::Object(p)) => {
            for (k, pv) in p {
                if pv.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => merge(lv, pv, field, Some(k)),
                    None => {
                        l.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(p)) => {
            let f = field.unwrap_or("");
            if let Some(keys) = list_keys(parent, f) {
                for pi in p {
                    let k = key_of(pi, keys, f);
                    match l.iter_mut().find(|li| key_of(li, keys, f) == k) {
                        Some(li) => merge(li, pi, Some(f), None),
                        None => l.push(pi.clone()),
                    }
                }
            } else if is_set(f) {
                for pi in p {
                    if !l.contains(pi) {
                        l.push(pi.clone());
                    }
                }
            } else {
                *l = p.clone();
            }
        }
        (l, p) => *l = p.clone(),
    }
}

/// Removes the value at `path` from `v`.
fn remove_path(v: &mut Value, path: &[Elem], parent: Option<&str>, last: &str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match first {
        Elem::Field(f) => {
            let Some(m) = v.as_object_mut() else { return };
            if rest.is_empty() {
                m.remove(f);
            } else if let Some(child) = m.get_mut(f) {
                remove_path(child, rest, Some(last), f);
                if child.as_object().is_some_and(Map::is_empty)
                    || child.as_array().is_some_and(Vec::is_empty)
                {
                    m.remove(f);
                }
            }
        }
        Elem::Key(k) => {
            let parent = parent.filter(|s| !s.is_empty());
            let Some(keys) = list_keys(parent, last) else {
                return;
            };
            let Some(a) = v.as_array_mut() else { return };
            if rest.is_empty() {
                a.retain(|i| key_of(i, keys, last) != *k);
            } else if let Some(item) = a.iter_mut().find(|i| key_of(i, keys, last) == *k) {
                remove_path(item, rest, Some(last), "");
            }
        }
        Elem::Member(m) => {
            if let (Some(a), Ok(mv)) = (v.as_array_mut(), serde_json::from_str::<Value>(m)) {
                a.retain(|i| *i != mv);
            }
        }
    }
}

/// Server-side apply of `patch` by `manager` onto `live`.
pub fn apply(
    res: &Resource,
    live: &Value,
    patch: &Value,
    manager: &str,
    force: bool,
) -> ApiResult<Value> {
    check_applied(res, patch)?;
    let mut patch = patch.clone();
    if let Some(m) = patch["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    let applied = leaves(&patch);
    let mut es = entries(live);
    // Conflicts: fields another manager owns whose value the apply changes.
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for e in &es {
        if e.manager == manager && e.operation == "Apply" {
            continue;
        }
        for p in applied.intersection(&e.fields) {
            if get(live, p) != get(&patch, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), render(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(
            res,
            crate::storage::name_of(live),
            &conflicts,
        ));
    }
    let previously: BTreeSet<FieldPath> = es
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut out = live.clone();
    // Fields this manager applied before and no longer applies go, unless others own them.
    for p in previously.difference(&applied) {
        let owned_elsewhere = es
            .iter()
            .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p));
        if !owned_elsewhere {
            remove_path(&mut out, p, None, "");
        }
    }
    merge(&mut out, &patch, None, None);
    for e in es.iter_mut() {
        if !(e.manager == manager && e.operation == "Apply") {
            // On force (or equal values) the applier takes shared fields over only when they changed.
            e.fields
                .retain(|p| !(applied.contains(p) && get(live, p) != get(&patch, p)));
        }
    }
    match es
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply")
    {
        Some(e) => {
            e.fields = applied;
            e.time = now();
        }
        None => es.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: res.api_version(),
            subresource: None,
            fields: applied,
            time: now(),
        }),
    }
    set_entries(&mut out, &es);
    Ok(out)
}

fn conflict_error(res: &Resource, name: &str, conflicts: &[(String, String, String)]) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(m, v, f)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{m}\" using {v}"),
            field: f.clone(),
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (m, v, f) = &conflicts[0];
        format!("Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {f}")
    } else {
        let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (m, v, f) in conflicts {
            by.entry((m.clone(), v.clone()))
                .or_default()
                .push(f.clone());
        }
        let parts: Vec<String> = by
            .iter()
            .map(|((m, v), fs)| format!("conflicts with \"{m}\" using {v}:\n- {}", fs.join("\n- ")))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    let mut e = ApiError::invalid(res, name, causes, message);
    e.code = 409;
    e.reason = "Conflict";
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_fields_v1_matches_the_leaf_paths() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "a", "tier": "t"},
                             "finalizers": ["x/y", "z"], "ownerReferences": [{"uid": "o1", "kind": "ReplicaSet", "name": "rs"}],
                             "annotations": {}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}],
                                         "env": [{"name": "A", "value": "1"}], "args": ["-x", "-y"],
                                         "resources": {"requests": {"cpu": "10m"}}, "volumeMounts": [{"mountPath": "/m", "name": "v"}]}],
                         "volumes": [{"name": "v", "emptyDir": {}}], "nodeSelector": {}, "tolerations": []}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"type": "NodePort", "selector": {"app": "a"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}],
                         "externalIPs": ["1.2.3.4"]},
                "status": {"loadBalancer": {}, "conditions": [{"type": "Ready", "status": "True"}]}}),
            // Only unmanaged metadata; a scalar where a list item is expected; duplicate keys.
            json!({"metadata": {"name": "x", "resourceVersion": "3"}, "spec": {"containers": ["odd", {"name": "a"}, {"name": "a", "image": "i"}]}}),
            json!({"metadata": {}, "data": {"k": "v"}}),
            json!("not an object"),
            json!({}),
        ];
        for o in &objects {
            assert_eq!(all_fields_v1(o), to_fields_v1(&leaves(o)), "{o}");
        }
    }

    use super::*;
    use crate::resources::find;

    fn svc(target: i64) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "labels": {"a": "1"}},
               "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": target}], "selector": {"app": "x"}}})
    }

    #[test]
    fn fields_v1_roundtrip() {
        let l = leaves(&svc(5000));
        let fv = to_fields_v1(&l);
        assert!(
            fv["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]["f:targetPort"]
                .is_object()
        );
        assert!(fv["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]["."].is_object());
        assert_eq!(from_fields_v1(&fv), l);
        assert!(!l.iter().any(|p| render(p) == ".kind"));
    }

    #[test]
    fn apply_conflicts_and_force() {
        let res = find("", "v1", "services").unwrap();
        let mut live = svc(5000);
        record_manager(&mut live, None, "kubectl-client-side-apply", "Update", "v1");
        let err = apply(res, &live, &svc(8080), "kubectl", false).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
        // Same values: no conflict, shared ownership.
        let same = apply(res, &live, &svc(5000), "kubectl", false).unwrap();
        assert_eq!(same["spec"]["ports"][0]["targetPort"], 5000);
        let forced = apply(res, &live, &svc(8080), "kubectl", true).unwrap();
        assert_eq!(forced["spec"]["ports"][0]["targetPort"], 8080);
        let mf = forced["metadata"]["managedFields"].as_array().unwrap();
        assert!(
            mf.iter()
                .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply")
        );
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let res = find("", "v1", "services").unwrap();
        let live =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}});
        let mut with_label = svc(5000);
        let first = apply(res, &live, &with_label, "mgr", false).unwrap();
        assert_eq!(first["metadata"]["labels"]["a"], "1");
        with_label["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        let second = apply(res, &first, &with_label, "mgr", false).unwrap();
        assert!(second["metadata"].get("labels").is_none(), "{second}");
        assert_eq!(second["spec"]["selector"]["app"], "x");
    }
}

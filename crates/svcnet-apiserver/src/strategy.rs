//! Per-kind rules: defaulting, validation, status-subresource handling, generation.
//!
//! The decisions themselves live in `svcnet-core`; this module maps a
//! resource to them and converts between JSON and the typed objects.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use svcnet_core::field_errors::{ErrorList, FieldError, Path, invalid_message};
use svcnet_core::{defaults, validation};

use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Cause};

/// Converts field errors into a 422 Invalid.
pub fn invalid(res: &Resource, name: &str, errs: &[FieldError]) -> ApiError {
    let causes = errs
        .iter()
        .map(|e| Cause {
            reason: e.error_type.cause_reason().to_string(),
            message: e.body(),
            field: e.field.clone(),
        })
        .collect();
    let kind = if res.group.is_empty() {
        res.kind.to_string()
    } else {
        format!("{}.{}", res.kind, res.group)
    };
    ApiError::invalid(res, name, causes, invalid_message(&kind, name, errs))
}

fn cannot_handle(res: &Resource, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {}",
        res.kind, res.version, res.kind, e
    ))
}

/// Deserializes from the borrowed value (no copy of the tree first).
fn typed<T: DeserializeOwned>(res: &Resource, v: &Value) -> ApiResult<T> {
    T::deserialize(v).map_err(|e| cannot_handle(res, e))
}

fn untyped<T: Serialize>(t: &T) -> ApiResult<Value> {
    serde_json::to_value(t).map_err(|e| ApiError::internal(e.to_string()))
}

/// Fields in `input` that the typed round trip dropped: unknown fields.
pub fn unknown_fields(input: &Value, known: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, known, &mut Vec::new(), &mut out);
    out
}

/// One step of the path to a field, rendered only for an unknown field.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `spec.ports[0].name`, rendered as every field path is.
fn render(path: &[Step<'_>]) -> String {
    path.iter()
        .fold(Path::none(), |p, step| match step {
            Step::Key(k) => p.child(k),
            Step::Index(i) => p.index(*i),
        })
        .to_string()
}

fn walk_unknown<'a>(
    input: &'a Value,
    known: &Value,
    path: &mut Vec<Step<'a>>,
    out: &mut Vec<String>,
) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, iv) in i {
                path.push(Step::Key(key));
                match k.get(key) {
                    Some(kv) => walk_unknown(iv, kv, path, out),
                    None if iv.is_null() => {}
                    // Maps of strings (labels, selector, ...) round-trip as-is, so
                    // a missing key really is a dropped field.
                    None => out.push(render(path)),
                }
                path.pop();
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                path.push(Step::Index(idx));
                walk_unknown(iv, kv, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// What a write is.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Create,
    Update { old: &'a Value },
    Status { old: &'a Value },
}

/// A registry step: the object, its previous version on update, the
/// cluster's Service IP families (primary first).
type Begin<T> = fn(&mut T, Option<&T>, &[&str]) -> ErrorList;

/// The rules of one kind: defaulting (create and update), validation of
/// creates, updates and status updates.
struct Rules<T> {
    default: fn(&mut T),
    default_update: fn(&mut T, &T),
    /// The registry's step between defaulting and validation of creates and
    /// updates (upstream's BeginCreate / BeginUpdate): for Services the IP
    /// families of the cluster's configured families (primary first). Its
    /// errors are answered as a 422 before validation runs.
    begin: Option<Begin<T>>,
    validate: fn(&T) -> ErrorList,
    validate_update: fn(&T, &T) -> ErrorList,
    validate_status: fn(&T, &T) -> ErrorList,
}

fn run<T: DeserializeOwned + Serialize>(
    res: &Resource,
    obj: &Value,
    write: Write<'_>,
    service_families: &[&str],
    r: Rules<T>,
) -> ApiResult<(Value, Vec<String>)> {
    let name = crate::storage::name_of(obj).to_string();
    let mut t: T = typed(res, obj)?;
    let begin = |t: &mut T, old: Option<&T>| match r.begin {
        Some(f) => {
            let errs = f(t, old, service_families);
            if errs.is_empty() {
                Ok(())
            } else {
                Err(invalid(res, &name, &errs))
            }
        }
        None => Ok(()),
    };
    let errs = match write {
        Write::Create => {
            (r.default)(&mut t);
            begin(&mut t, None)?;
            (r.validate)(&t)
        }
        Write::Update { old } => {
            let o: T = typed(res, old)?;
            (r.default_update)(&mut t, &o);
            begin(&mut t, Some(&o))?;
            (r.validate_update)(&t, &o)
        }
        Write::Status { old } => {
            let o: T = typed(res, old)?;
            (r.default_update)(&mut t, &o);
            (r.validate_status)(&t, &o)
        }
    };
    if !errs.is_empty() {
        return Err(invalid(res, &name, &errs));
    }
    let out = untyped(&t)?;
    // Unknown fields are what the typed round trip drops. Compared with the
    // defaulted result first (one serialization less on the common path):
    // a field the type does not know is in no serialization of it, so every
    // unknown field shows up here as long as defaulting neither shortens a
    // list of objects (lists are compared item by item) nor replaces an
    // object with something else. What defaulting cleared shows up too; for
    // any finding the plain round trip decides.
    let mut unknown = unknown_fields(obj, &out);
    if !unknown.is_empty() {
        unknown = unknown_fields(obj, &untyped(&typed::<T>(res, obj)?)?);
    }
    Ok((out, unknown))
}

/// Kinds whose rules only concern metadata.
fn meta_rules<T>() -> Rules<T>
where
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
{
    Rules {
        default: |_| {},
        default_update: |_, _| {},
        begin: None,
        validate: validate_meta_only::<T>,
        validate_update: |n, _| validate_meta_only(n),
        validate_status: |n, _| validate_meta_only(n),
    }
}

/// Defaults and validates `obj` for `res`; returns the typed round trip and
/// the unknown fields of the input (for fieldValidation). `service_families`
/// are the cluster's Service IP families, primary first (`["IPv4", "IPv6"]`).
pub fn admit(
    res: &Resource,
    obj: &Value,
    write: Write<'_>,
    service_families: &[&str],
) -> ApiResult<(Value, Vec<String>)> {
    use defaults as d;
    use validation as v;
    match res.kind {
        "Service" => run::<Service>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_service,
                default_update: |n, o| {
                    d::default_service_update(n, o);
                    d::default_load_balancer_status(n);
                },
                begin: Some(d::init_service_ip_families),
                validate: v::validate_service,
                validate_update: v::validate_service_update,
                validate_status: v::validate_service_status_update,
            },
        ),
        "Pod" => run::<Pod>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_pod,
                default_update: |n, _| d::default_pod(n),
                begin: None,
                validate: v::validate_pod_create,
                validate_update: v::validate_pod_update,
                validate_status: v::validate_pod_status_update,
            },
        ),
        "Deployment" => run::<Deployment>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_deployment,
                default_update: |n, _| d::default_deployment(n),
                begin: None,
                validate: v::validate_deployment,
                validate_update: v::validate_deployment_update,
                validate_status: v::validate_deployment_status_update,
            },
        ),
        "ReplicaSet" => run::<ReplicaSet>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_replica_set,
                default_update: |n, _| d::default_replica_set(n),
                begin: None,
                validate: v::validate_replica_set,
                validate_update: v::validate_replica_set_update,
                validate_status: v::validate_replica_set_status_update,
            },
        ),
        "Endpoints" => run::<Endpoints>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_endpoints,
                default_update: |n, _| d::default_endpoints(n),
                begin: None,
                validate: v::validate_endpoints,
                validate_update: v::validate_endpoints_update,
                validate_status: v::validate_endpoints_update,
            },
        ),
        "EndpointSlice" => run::<EndpointSlice>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_endpoint_slice,
                default_update: |n, _| d::default_endpoint_slice(n),
                begin: None,
                validate: v::validate_endpoint_slice,
                validate_update: v::validate_endpoint_slice_update,
                validate_status: v::validate_endpoint_slice_update,
            },
        ),
        "Namespace" => run::<Namespace>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_namespace,
                default_update: |n, _| d::default_namespace(n),
                begin: None,
                validate: v::validate_namespace,
                validate_update: v::validate_namespace_update,
                validate_status: v::validate_namespace_update,
            },
        ),
        "Node" => run::<Node>(
            res,
            obj,
            write,
            service_families,
            Rules {
                default: d::default_node,
                default_update: |n, _| d::default_node(n),
                begin: None,
                validate: v::validate_node,
                validate_update: v::validate_node_update,
                validate_status: v::validate_node_update,
            },
        ),
        "Event" => run::<Event>(res, obj, write, service_families, meta_rules()),
        "Lease" => run::<Lease>(res, obj, write, service_families, meta_rules()),
        _ => Ok((obj.clone(), Vec::new())),
    }
}

fn validate_meta_only<
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    t: &T,
) -> ErrorList {
    svcnet_core::names::validate_object_meta(
        t.metadata(),
        true,
        svcnet_core::names::name_is_dns_subdomain,
        &Path::new("metadata"),
    )
}

/// Resets fields users may not set on create (status of most kinds).
pub fn prepare_create(res: &Resource, obj: &mut Value) {
    match res.kind {
        "Pod" => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "Deployment" | "ReplicaSet" => obj["status"] = json!({}),
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        _ => {}
    }
}

/// Kinds whose metadata.generation follows spec changes.
pub fn tracks_generation(res: &Resource) -> bool {
    matches!(res.kind, "Deployment" | "ReplicaSet" | "Pod")
}

/// Carries over what a main-resource update may not change (status), or
/// what a status update may not change (everything but status).
pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value, status_write: bool) {
    if status_write {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(o) = merged.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        // Status writers may still carry metadata changes upstream drops;
        // keep the stored metadata except resourceVersion (the guard).
        if let Some(rv) = new
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .cloned()
        {
            merged["metadata"]["resourceVersion"] = rv;
        } else if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        *new = merged;
    } else if res.has_status() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if res.kind == "Namespace"
        && !status_write
        && let Some(spec) = old.get("spec")
    {
        new["spec"] = spec.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_paths() {
        let input = json!({"spec": {"ports": [{"port": 80, "bogus": 1}], "foo": "x", "type": "ClusterIP"}, "n": null});
        let known = json!({"spec": {"ports": [{"port": 80}], "type": "ClusterIP"}});
        assert_eq!(
            unknown_fields(&input, &known),
            vec!["spec.foo".to_string(), "spec.ports[0].bogus".to_string()]
        );
    }

    #[test]
    fn status_rules() {
        let svc = crate::resources::find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut main =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 3}, "status": {"replicas": 9}});
        prepare_update(svc, &mut main, &old, false);
        assert_eq!(main["status"]["replicas"], 1);
        assert_eq!(main["spec"]["replicas"], 3);
        let mut st = json!({"metadata": {"name": "a", "resourceVersion": "4"}, "spec": {"replicas": 7}, "status": {"replicas": 2}});
        prepare_update(svc, &mut st, &old, true);
        assert_eq!(st["spec"]["replicas"], 1);
        assert_eq!(st["status"]["replicas"], 2);
        assert_eq!(st["metadata"]["labels"]["x"], "1");
        assert_eq!(st["metadata"]["resourceVersion"], "4");
    }
}

//! Row cells per kind, computed as upstream's `pkg/printers/internalversion/printers.go` (wide output, as the API server generates it).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::duration::{since, unix_seconds};

const NONE: &str = "<none>";

/// The field at a dotted path, if present.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, path: &str) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        s.to_owned()
    }
}

fn age(obj: &Value, now: i64) -> String {
    since(get(obj, "metadata.creationTimestamp"), now)
}

fn name(obj: &Value) -> String {
    text(obj, "metadata.name").to_owned()
}

/// `labels.FormatLabels`: sorted `k=v` joined by `,`, `<none>` when empty.
fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else {
        return NONE.to_owned();
    };
    // serde_json maps may keep insertion order; labels print sorted.
    let pairs: BTreeSet<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    or_none(&pairs.into_iter().collect::<Vec<_>>().join(","))
}

/// `LabelSelectorAsSelector(sel).String()`: requirements sorted by key; `Err` for an invalid operator.
fn label_selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in list(sel, "matchExpressions") {
        let key = text(e, "key");
        let mut values: Vec<&str> = list(e, "values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let s = match text(e, "operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_owned(), s));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(","))
}

/// `layoutContainerCells`: container names and images, each joined by `,`.
fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "image")).collect();
    (names.join(","), images.join(","))
}

pub(crate) fn service(obj: &Value, _now: i64) -> Vec<Value> {
    let svc_type = text(obj, "spec.type");
    let cluster_ip = list(obj, "spec.clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or(NONE);
    let external_ips: Vec<&str> = list(obj, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            // Ingress IPs (or hostnames) as a sorted set; the server prints wide, so no clipping.
            let lb: BTreeSet<&str> = list(obj, "status.loadBalancer.ingress")
                .iter()
                .map(|i| {
                    if text(i, "ip").is_empty() {
                        text(i, "hostname")
                    } else {
                        text(i, "ip")
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            let mut all: Vec<&str> = lb.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(obj, "spec.externalName").to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = list(obj, "spec.ports")
        .iter()
        .map(|p| {
            let (port, proto, node_port) =
                (int(p, "port"), text(p, "protocol"), int(p, "nodePort"));
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    vec![
        json!(name(obj)),
        json!(svc_type),
        json!(cluster_ip),
        json!(external),
        json!(or_none(&ports.join(","))),
        json!(age(obj, _now)),
        json!(format_labels(get(obj, "spec.selector"))),
    ]
}

/// `formatEndpoints`: up to three `ip:port`, then ` + N more...`; `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(obj, "subsets");
    if subsets.is_empty() {
        return NONE.to_owned();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    for ss in subsets {
        let addresses = list(ss, "addresses");
        let ports = list(ss, "ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, "ip").to_owned());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(a, "ip"), int(p, "port")));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(crate) fn endpoints(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        json!(name(obj)),
        json!(format_endpoints(obj)),
        json!(age(obj, now)),
    ]
}

/// `listWithMoreString`: `<unset>` for an empty list.
fn list_with_more(shown: &[String], count: usize, max: usize) -> String {
    let joined = shown.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".to_owned()
    } else {
        joined
    }
}

pub(crate) fn endpoint_slice(obj: &Value, now: i64) -> Vec<Value> {
    const MAX: usize = 3;
    let ports_all = list(obj, "ports");
    let ports: Vec<String> = ports_all
        .iter()
        .take(MAX)
        .map(|p| match get(p, "port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => get(p, "name")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_owned(),
        })
        .collect();
    let addresses: Vec<&str> = list(obj, "endpoints")
        .iter()
        .flat_map(|e| list(e, "addresses").iter().filter_map(Value::as_str))
        .collect();
    let shown: Vec<String> = addresses
        .iter()
        .take(MAX)
        .map(|s| (*s).to_owned())
        .collect();
    vec![
        json!(name(obj)),
        json!(text(obj, "addressType")),
        json!(list_with_more(&ports, ports_all.len(), MAX)),
        json!(list_with_more(&shown, addresses.len(), MAX)),
        json!(age(obj, now)),
    ]
}

fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions
        .iter()
        .any(|c| text(c, "type") == ty && text(c, "status") == "True")
}

fn is_restartable_init(spec_init: &[Value], container_name: &str) -> bool {
    spec_init
        .iter()
        .find(|c| text(c, "name") == container_name)
        .is_some_and(|c| text(c, "restartPolicy") == "Always")
}

/// The pod row, with upstream's STATUS reasoning (init containers, waiting/terminated reasons, Terminating).
pub(crate) fn pod(obj: &Value, now: i64) -> Vec<Value> {
    let spec_init = list(obj, "spec.initContainers");
    let conditions = list(obj, "status.conditions");
    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let total = list(obj, "spec.containers").len()
        + spec_init
            .iter()
            .filter(|c| text(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut last_restart: Option<i64> = None;
    let mut last_restartable_restart: Option<i64> = None;
    let later = |cur: Option<i64>, t: Option<i64>| match (cur, t) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let phase = text(obj, "status.phase");
    let mut reason = phase.to_owned();
    if !text(obj, "status.reason").is_empty() {
        reason = text(obj, "status.reason").to_owned();
    }
    if conditions
        .iter()
        .any(|c| text(c, "type") == "PodScheduled" && text(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }

    let mut initializing = false;
    for (i, c) in list(obj, "status.initContainerStatuses").iter().enumerate() {
        let cname = text(c, "name");
        restarts += int(c, "restartCount");
        let finished =
            get(c, "lastState.terminated.finishedAt").and_then(|v| unix_seconds(Some(v)));
        if get(c, "lastState.terminated").is_some() {
            last_restart = later(last_restart, finished);
        }
        let restartable = is_restartable_init(spec_init, cname);
        if restartable {
            restartable_restarts += int(c, "restartCount");
            if get(c, "lastState.terminated").is_some() {
                last_restartable_restart = later(last_restartable_restart, finished);
            }
        }
        let terminated = get(c, "state.terminated");
        let waiting_reason = text(c, "state.waiting.reason");
        if terminated.is_some() && int(c, "state.terminated.exitCode") == 0 {
            continue;
        }
        if restartable && get(c, "started").and_then(Value::as_bool) == Some(true) {
            if get(c, "ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match (text(t, "reason"), int(t, "signal")) {
                ("", 0) => format!("Init:ExitCode:{}", int(t, "exitCode")),
                ("", sig) => format!("Init:Signal:{sig}"),
                (r, _) => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in list(obj, "status.containerStatuses").iter().rev() {
            restarts += int(c, "restartCount");
            if get(c, "lastState.terminated").is_some() {
                let finished =
                    get(c, "lastState.terminated.finishedAt").and_then(|v| unix_seconds(Some(v)));
                last_restart = later(last_restart, finished);
            }
            let waiting = text(c, "state.waiting.reason");
            let terminated = get(c, "state.terminated");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(t) = terminated {
                reason = match (text(t, "reason"), int(t, "signal")) {
                    ("", 0) => format!("ExitCode:{}", int(t, "exitCode")),
                    ("", sig) => format!("Signal:{sig}"),
                    (r, _) => r.to_owned(),
                };
            } else if get(c, "ready").and_then(Value::as_bool) == Some(true)
                && get(c, "state.running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not "Completed".
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }

    let deleting = get(obj, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null());
    if deleting && text(obj, "status.reason") == "NodeLost" {
        reason = "Unknown".to_owned();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_owned();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            super::duration::human_duration(now - t)
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = list(obj, "status.podIPs")
        .first()
        .map_or("", |p| text(p, "ip"));
    let gates = list(obj, "spec.readinessGates");
    let readiness_gates = if gates.is_empty() {
        NONE.to_owned()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = text(g, "conditionType");
                conditions
                    .iter()
                    .find(|c| text(c, "type") == ty)
                    .is_some_and(|c| text(c, "status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(name(obj)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(obj, now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(obj, "spec.nodeName"))),
        json!(or_none(text(obj, "status.nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

/// Replicas as the internal (defaulted) type holds them: 1 when unset.
fn spec_replicas(obj: &Value) -> i64 {
    get(obj, "spec.replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

pub(crate) fn deployment(obj: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(list(obj, "spec.template.spec.containers"));
    let selector = label_selector_string(get(obj, "spec.selector"))
        .unwrap_or_else(|()| "<invalid>".to_owned());
    vec![
        json!(name(obj)),
        json!(format!(
            "{}/{}",
            int(obj, "status.readyReplicas"),
            spec_replicas(obj)
        )),
        json!(int(obj, "status.updatedReplicas")),
        json!(int(obj, "status.availableReplicas")),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

pub(crate) fn replica_set(obj: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(list(obj, "spec.template.spec.containers"));
    // `metav1.FormatLabelSelector`: `<none>` when empty, `<error>` when invalid.
    let selector = match label_selector_string(get(obj, "spec.selector")) {
        Ok(s) if s.is_empty() => NONE.to_owned(),
        Ok(s) => s,
        Err(()) => "<error>".to_owned(),
    };
    vec![
        json!(name(obj)),
        json!(spec_replicas(obj)),
        json!(int(obj, "status.replicas")),
        json!(int(obj, "status.readyReplicas")),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

pub(crate) fn node(obj: &Value, now: i64) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    // Only the Ready condition counts; the last one of that type wins, as in upstream's map.
    if let Some(c) = list(obj, "status.conditions")
        .iter()
        .rev()
        .find(|c| text(c, "type") == "Ready")
    {
        status.push(if text(c, "status") == "True" {
            "Ready".to_owned()
        } else {
            "NotReady".to_owned()
        });
    }
    if status.is_empty() {
        status.push("Unknown".to_owned());
    }
    if get(obj, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".to_owned());
    }
    let mut roles: BTreeSet<String> = BTreeSet::new();
    if let Some(labels) = get(obj, "metadata.labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_owned());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(v.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let address = |ty: &str| {
        list(obj, "status.addresses")
            .iter()
            .find(|a| text(a, "type") == ty)
            .map_or_else(|| NONE.to_owned(), |a| text(a, "address").to_owned())
    };
    let info = |field: &str| {
        let s = text(obj, &format!("status.nodeInfo.{field}"));
        if s.is_empty() {
            "<unknown>".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        json!(name(obj)),
        json!(status.join(",")),
        json!(or_none(&roles.into_iter().collect::<Vec<_>>().join(","))),
        json!(age(obj, now)),
        json!(text(obj, "status.nodeInfo.kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

pub(crate) fn namespace(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        json!(name(obj)),
        json!(text(obj, "status.phase")),
        json!(age(obj, now)),
    ]
}

pub(crate) fn lease(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        json!(name(obj)),
        json!(text(obj, "spec.holderIdentity")),
        json!(age(obj, now)),
    ]
}

pub(crate) fn event(obj: &Value, now: i64) -> Vec<Value> {
    let first = if unix_seconds(get(obj, "firstTimestamp")).is_some() {
        since(get(obj, "firstTimestamp"), now)
    } else {
        since(get(obj, "eventTime"), now)
    };
    let mut last = if unix_seconds(get(obj, "lastTimestamp")).is_some() {
        since(get(obj, "lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = int(obj, "count");
    if get(obj, "series").is_some_and(Value::is_object) {
        last = since(get(obj, "series.lastObservedTime"), now);
        count = int(obj, "series.count");
    } else if count == 0 {
        count = 1;
    }
    let kind = text(obj, "involvedObject.kind").to_lowercase();
    let involved = text(obj, "involvedObject.name");
    let target = if involved.is_empty() {
        kind
    } else {
        format!("{kind}/{involved}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            a.to_owned()
        }
    };
    let component = first_non_empty(
        text(obj, "source.component"),
        text(obj, "reportingComponent"),
    );
    let instance = first_non_empty(text(obj, "source.host"), text(obj, "reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(obj, "type")),
        json!(text(obj, "reason")),
        json!(target),
        json!(text(obj, "involvedObject.fieldPath")),
        json!(source),
        json!(text(obj, "message").trim()),
        json!(first),
        json!(count),
        json!(name(obj)),
    ]
}

/// The default printer for kinds without their own: name and creation time.
pub(crate) fn default(obj: &Value, _now: i64) -> Vec<Value> {
    vec![
        json!(name(obj)),
        get(obj, "metadata.creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
    ]
}

//! Server-side Tables (`meta.k8s.io/v1` Table) for `kubectl get`, with upstream's columns and cells.

mod cells;
mod duration;

use serde::Serialize;
use serde_json::{Value, json};

pub use duration::human_duration;

/// One column of a Table, as `metav1.TableColumnDefinition` (every field is always serialized).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

/// Which object each row carries (`?includeObject=`); kubectl asks for `Metadata` by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; `None` for an unknown value.
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "None" => Some(IncludeObject::None),
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// List metadata the API server passes through to the Table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableMeta {
    pub resource_version: Option<String>,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}
const fn wide(name: &'static str, description: &'static str) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_: "string",
        format: "",
        description,
        priority: 1,
    }
}
const NAME: ColumnDefinition = ColumnDefinition {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: ColumnDefinition = col("Age", "string", AGE_DOC);

/// The columns upstream's printers declare for `kind` (the default Name / Created At for others).
pub fn column_definitions(kind: &str) -> Vec<ColumnDefinition> {
    match kind {
        "Service" => vec![
            NAME,
            col(
                "Type",
                "string",
                "type determines how the Service is exposed.",
            ),
            col(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            col(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            col(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            wide(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "Endpoints" => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                "The set of all endpoints is the union of all subsets.",
            ),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            col(
                "AddressType",
                "string",
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            col(
                "Ports",
                "string",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            col(
                "Endpoints",
                "string",
                "endpoints is a list of unique endpoints in this slice.",
            ),
            AGE,
        ],
        "Pod" => vec![
            NAME,
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            wide(
                "IP",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            wide(
                "Node",
                "NodeName indicates in which node this pod is scheduled.",
            ),
            wide(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            wide(
                "Readiness Gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "Deployment" => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "string",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "string",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            wide("Containers", CONTAINERS_DOC),
            wide("Images", IMAGES_DOC),
            wide("Selector", "Label selector for pods."),
        ],
        "ReplicaSet" => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "Replicas is the number of desired replicas.",
            ),
            col(
                "Current",
                "integer",
                "Replicas is the most recently observed number of replicas.",
            ),
            col(
                "Ready",
                "integer",
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            wide("Containers", CONTAINERS_DOC),
            wide("Images", IMAGES_DOC),
            wide(
                "Selector",
                "Selector is a label query over pods that should match the replica count.",
            ),
        ],
        "Node" => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide("Internal-IP", "List of addresses reachable to the node."),
            wide("External-IP", "List of addresses reachable to the node."),
            wide(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "Namespace" => vec![
            NAME,
            col("Status", "string", "The status of the namespace"),
            AGE,
        ],
        "Event" => vec![
            col(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            col(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            col(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            col("Object", "string", "The object that this event is about."),
            wide(
                "Subobject",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            ),
            wide(
                "Source",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            wide("Count", "The number of times this event has occurred."),
            ColumnDefinition {
                name: "Name",
                type_: "string",
                format: "name",
                description: NAME_DOC,
                priority: 1,
            },
        ],
        "Lease" => vec![
            NAME,
            col(
                "Holder",
                "string",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        _ => vec![NAME, col("Created At", "date", AGE_DOC)],
    }
}

/// The cells of one object's row (all columns, wide ones included, as
/// the API server always prints wide and kubectl hides priority 1).
/// `now` is unix seconds, for the ages.
pub fn row_cells(kind: &str, obj: &Value, now: i64) -> Vec<Value> {
    let f = match kind {
        "Service" => cells::service,
        "Endpoints" => cells::endpoints,
        "EndpointSlice" => cells::endpoint_slice,
        "Pod" => cells::pod,
        "Deployment" => cells::deployment,
        "ReplicaSet" => cells::replica_set,
        "Node" => cells::node,
        "Namespace" => cells::namespace,
        "Event" => cells::event,
        "Lease" => cells::lease,
        _ => cells::default,
    };
    f(obj, now)
}

/// Row conditions upstream sets on finished pods (kubectl uses them to grey out completed rows).
fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match obj.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => ("Succeeded", "The pod has completed successfully."),
        Some("Failed") => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// A `meta.k8s.io/v1` Table of `objects` (all of kind `kind`).
pub fn table(
    kind: &str,
    objects: &[Value],
    now: i64,
    include: IncludeObject,
    meta: &TableMeta,
) -> Value {
    let rows = objects
        .iter()
        .map(|obj| table_row(kind, obj, now, include))
        .collect();
    table_of_rows(kind, rows, meta)
}

/// One row of a Table: its cells, conditions and the object as `include` asks.
pub fn table_row(kind: &str, obj: &Value, now: i64, include: IncludeObject) -> Value {
    let mut row = json!({"cells": row_cells(kind, obj, now)});
    if let Some(c) = row_conditions(kind, obj) {
        row["conditions"] = c;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of rows made with [`table_row`] (a list can be turned into rows
/// one object at a time, without holding every object).
pub fn table_of_rows(kind: &str, rows: Vec<Value>, meta: &TableMeta) -> Value {
    let mut list_meta = serde_json::Map::new();
    if let Some(rv) = &meta.resource_version {
        list_meta.insert("resourceVersion".into(), json!(rv));
    }
    if let Some(c) = &meta.continue_token {
        list_meta.insert("continue".into(), json!(c));
    }
    if let Some(n) = meta.remaining_item_count {
        list_meta.insert("remainingItemCount".into(), json!(n));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests;

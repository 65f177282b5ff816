//! Per-kind patch metadata (upstream's `patchStrategy`/`patchMergeKey` struct tags) as a table.
//!
//! Upstream reads these tags from the Go structs by reflection. We keep the
//! same facts as data: a JSON path (field names from the object root, list
//! elements transparent) maps to how that field merges. Fields not listed
//! use the default: maps merge recursively, lists are replaced.

use std::collections::HashMap;

/// How a field takes part in a strategic merge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// No tag: maps merge recursively, lists are replaced.
    #[default]
    Default,
    /// `patchStrategy:"merge"`: lists merge, by `merge_key` for lists of
    /// objects, as sets for lists of primitives.
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the field.
    Replace,
}

/// Patch metadata of one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldMeta {
    pub strategy: Strategy,
    /// `patchMergeKey`: the field that identifies an element of a merged list of objects.
    pub merge_key: Option<&'static str>,
    /// `retainKeys` is part of the strategy; it matters to patch *generation*
    /// (the client builds `$retainKeys`), the apply side honours the
    /// directive wherever it appears.
    pub retain_keys: bool,
}

impl FieldMeta {
    const fn merge(key: &'static str) -> Self {
        FieldMeta {
            strategy: Strategy::Merge,
            merge_key: Some(key),
            retain_keys: false,
        }
    }
    const fn merge_retain(key: &'static str) -> Self {
        FieldMeta {
            strategy: Strategy::Merge,
            merge_key: Some(key),
            retain_keys: true,
        }
    }
    const fn merge_primitive() -> Self {
        FieldMeta {
            strategy: Strategy::Merge,
            merge_key: None,
            retain_keys: false,
        }
    }
    const fn retain() -> Self {
        FieldMeta {
            strategy: Strategy::Default,
            merge_key: None,
            retain_keys: true,
        }
    }
}

/// Where the merge strategy of a field comes from.
pub trait MergeSchema {
    /// Metadata of the field at `path` (field names from the object root;
    /// list elements do not add a segment, so `spec.containers.env` is the
    /// `env` list of any container).
    fn field(&self, path: &[String]) -> FieldMeta;
}

/// A schema that knows no tags: every list is replaced, every map merged.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTags;

impl MergeSchema for NoTags {
    fn field(&self, _path: &[String]) -> FieldMeta {
        FieldMeta::default()
    }
}

/// The patch metadata of one built-in kind.
#[derive(Clone, Debug)]
pub struct KindSchema {
    fields: HashMap<String, FieldMeta>,
}

impl MergeSchema for KindSchema {
    fn field(&self, path: &[String]) -> FieldMeta {
        self.fields
            .get(&path.join("."))
            .copied()
            .unwrap_or_default()
    }
}

/// Fields of `ObjectMeta` (`meta/v1/types.go`).
const OBJECT_META: &[(&str, FieldMeta)] = &[
    ("finalizers", FieldMeta::merge_primitive()),
    ("ownerReferences", FieldMeta::merge("uid")),
];

/// Fields of `Container` / `EphemeralContainerCommon` (`core/v1/types.go`).
const CONTAINER: &[(&str, FieldMeta)] = &[
    ("ports", FieldMeta::merge("containerPort")),
    ("env", FieldMeta::merge("name")),
    ("volumeMounts", FieldMeta::merge("mountPath")),
    ("volumeDevices", FieldMeta::merge("devicePath")),
];

/// Fields of `PodSpec` other than the container lists.
const POD_SPEC: &[(&str, FieldMeta)] = &[
    ("volumes", FieldMeta::merge_retain("name")),
    ("imagePullSecrets", FieldMeta::merge("name")),
    ("hostAliases", FieldMeta::merge("ip")),
    ("topologySpreadConstraints", FieldMeta::merge("topologyKey")),
    ("schedulingGates", FieldMeta::merge("name")),
    ("resourceClaims", FieldMeta::merge_retain("name")),
];

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Fields of `PodStatus`.
const POD_STATUS: &[(&str, FieldMeta)] = &[
    ("conditions", FieldMeta::merge("type")),
    ("hostIPs", FieldMeta::merge("ip")),
    ("podIPs", FieldMeta::merge("ip")),
    ("resourceClaimStatuses", FieldMeta::merge_retain("name")),
    (
        "containerStatuses.volumeMounts",
        FieldMeta::merge("mountPath"),
    ),
    (
        "containerStatuses.allocatedResourcesStatus",
        FieldMeta::merge("name"),
    ),
    (
        "initContainerStatuses.volumeMounts",
        FieldMeta::merge("mountPath"),
    ),
    (
        "initContainerStatuses.allocatedResourcesStatus",
        FieldMeta::merge("name"),
    ),
    (
        "ephemeralContainerStatuses.volumeMounts",
        FieldMeta::merge("mountPath"),
    ),
    (
        "ephemeralContainerStatuses.allocatedResourcesStatus",
        FieldMeta::merge("name"),
    ),
];

/// Status types whose only tagged field is `conditions` merged by `type`.
const CONDITIONS: &[(&str, FieldMeta)] = &[("conditions", FieldMeta::merge("type"))];

/// Builds a table by mounting field groups at prefixes.
#[derive(Default)]
struct Builder {
    fields: HashMap<String, FieldMeta>,
}

impl Builder {
    fn group(mut self, prefix: &str, group: &[(&str, FieldMeta)]) -> Self {
        for (path, meta) in group {
            let key = if prefix.is_empty() {
                (*path).to_owned()
            } else {
                format!("{prefix}.{path}")
            };
            self.fields.insert(key, *meta);
        }
        self
    }

    fn one(self, path: &str, meta: FieldMeta) -> Self {
        self.group("", &[(path, meta)])
    }

    fn pod_template(self, prefix: &str) -> Self {
        self.group(&format!("{prefix}.metadata"), OBJECT_META)
            .pod_spec(&format!("{prefix}.spec"))
    }

    fn pod_spec(mut self, prefix: &str) -> Self {
        self = self.group(prefix, POD_SPEC);
        for list in CONTAINER_LISTS {
            self = self
                .one(&format!("{prefix}.{list}"), FieldMeta::merge("name"))
                .group(&format!("{prefix}.{list}"), CONTAINER);
        }
        self
    }

    fn build(self) -> KindSchema {
        KindSchema {
            fields: self.fields,
        }
    }
}

/// The patch metadata of a built-in kind svcnet serves, or `None` for kinds
/// it has no Go struct for (upstream applies JSON merge patch semantics to
/// those, as to custom resources).
pub fn schema_for_kind(kind: &str) -> Option<KindSchema> {
    let b = Builder::default().group("metadata", OBJECT_META);
    let b = match kind {
        "Pod" => b.pod_spec("spec").group("status", POD_STATUS),
        "PodTemplate" => b.pod_template("template"),
        "Deployment" => b
            .pod_template("spec.template")
            .one("spec.strategy", FieldMeta::retain())
            .group("status", CONDITIONS),
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" | "Job" => {
            b.pod_template("spec.template").group("status", CONDITIONS)
        }
        "CronJob" => b
            .group("spec.jobTemplate.metadata", OBJECT_META)
            .pod_template("spec.jobTemplate.spec.template"),
        "Service" => b
            .one("spec.ports", FieldMeta::merge("port"))
            .group("status", CONDITIONS),
        "Node" => b
            .one("spec.podCIDRs", FieldMeta::merge_primitive())
            .group("status", CONDITIONS)
            .one("status.addresses", FieldMeta::merge("type")),
        "Namespace" => b.group("status", CONDITIONS),
        "ServiceAccount" => b.one("secrets", FieldMeta::merge("name")),
        "PersistentVolumeClaim" => b.group("status", CONDITIONS),
        "Endpoints" | "EndpointSlice" | "Event" | "ConfigMap" | "Secret" | "Lease"
        | "LimitRange" | "ResourceQuota" | "Binding" | "Scale" => b,
        _ => return None,
    };
    Some(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn lookups_match_upstream_tags() {
        let merge = |k| FieldMeta::merge(k);
        let cases: &[(&str, &str, FieldMeta)] = &[
            ("Pod", "spec.containers", merge("name")),
            ("Pod", "spec.initContainers.env", merge("name")),
            (
                "Pod",
                "spec.ephemeralContainers.volumeMounts",
                merge("mountPath"),
            ),
            ("Pod", "spec.containers.ports", merge("containerPort")),
            ("Pod", "spec.containers.volumeDevices", merge("devicePath")),
            ("Pod", "spec.volumes", FieldMeta::merge_retain("name")),
            ("Pod", "spec.hostAliases", merge("ip")),
            (
                "Pod",
                "spec.topologySpreadConstraints",
                merge("topologyKey"),
            ),
            ("Pod", "spec.tolerations", FieldMeta::default()),
            ("Pod", "spec.containers.args", FieldMeta::default()),
            ("Pod", "status.conditions", merge("type")),
            ("Pod", "status.podIPs", merge("ip")),
            ("Pod", "metadata.finalizers", FieldMeta::merge_primitive()),
            ("Pod", "metadata.ownerReferences", merge("uid")),
            (
                "Deployment",
                "spec.template.spec.containers.env",
                merge("name"),
            ),
            (
                "Deployment",
                "spec.template.metadata.finalizers",
                FieldMeta::merge_primitive(),
            ),
            ("Deployment", "spec.strategy", FieldMeta::retain()),
            ("Deployment", "status.conditions", merge("type")),
            ("Deployment", "spec.containers", FieldMeta::default()),
            ("ReplicaSet", "status.conditions", merge("type")),
            (
                "CronJob",
                "spec.jobTemplate.spec.template.spec.containers",
                merge("name"),
            ),
            ("Service", "spec.ports", merge("port")),
            ("Service", "spec.externalIPs", FieldMeta::default()),
            ("Node", "status.addresses", merge("type")),
            ("Node", "status.conditions", merge("type")),
            ("Node", "spec.podCIDRs", FieldMeta::merge_primitive()),
            ("Node", "spec.taints", FieldMeta::default()),
            ("Endpoints", "subsets", FieldMeta::default()),
            ("ServiceAccount", "secrets", merge("name")),
        ];
        for (kind, p, want) in cases {
            let schema = schema_for_kind(kind).expect(kind);
            assert_eq!(schema.field(&path(p)), *want, "{kind} {p}");
        }
    }

    #[test]
    fn unknown_kinds_have_no_schema() {
        for kind in ["Widget", "pod", ""] {
            assert!(schema_for_kind(kind).is_none(), "{kind}");
        }
    }
}

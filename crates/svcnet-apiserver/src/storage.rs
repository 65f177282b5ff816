//! Objects in the store: keys, JSON encoding, resourceVersion injection.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`; on every
//! read the key's mod_revision is put there, so resourceVersion is always
//! the store revision of the last write (as upstream's etcd3 storage does).

use std::sync::Arc;

use serde_json::Value;
use svcnet_store::{KeyValue, Revision, Store};

use crate::resources::Resource;

/// The store key of an object.
pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> Vec<u8> {
    match (res.namespaced, namespace) {
        (true, Some(ns)) => format!("/registry/{}/{}/{}", res.qualified(), ns, name).into_bytes(),
        _ => format!("/registry/{}/{}", res.qualified(), name).into_bytes(),
    }
}

/// The key prefix of a collection (all namespaces when `namespace` is None).
pub fn prefix(res: &Resource, namespace: Option<&str>) -> Vec<u8> {
    match (res.namespaced, namespace) {
        (true, Some(ns)) => format!("/registry/{}/{}/", res.qualified(), ns).into_bytes(),
        _ => format!("/registry/{}/", res.qualified()).into_bytes(),
    }
}

/// Decodes a stored value and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
    set_rv(&mut v, kv.mod_revision);
    Some(v)
}

/// Sets `metadata.resourceVersion`.
pub fn set_rv(obj: &mut Value, rev: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Encodes an object for storage (without resourceVersion), without
/// copying it first.
pub fn encode(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&WithoutRv(obj)).unwrap_or_default()
}

/// An object serialized without `metadata.resourceVersion`.
struct WithoutRv<'a>(&'a Value);

impl serde::Serialize for WithoutRv<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(m) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &MetaWithoutRv(meta))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct MetaWithoutRv<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for MetaWithoutRv<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != "resourceVersion" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// Shared handle to the store.
pub type StoreRef = Arc<dyn Store>;

/// Reads `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Name and namespace of an object.
pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn keys() {
        let svc = find("", "v1", "services").unwrap();
        let ns = find("", "v1", "namespaces").unwrap();
        let dep = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            key(svc, Some("default"), "web"),
            b"/registry/services/default/web"
        );
        assert_eq!(key(ns, None, "dev"), b"/registry/namespaces/dev");
        assert_eq!(prefix(dep, Some("a")), b"/registry/deployments.apps/a/");
        assert_eq!(prefix(svc, None), b"/registry/services/");
    }

    #[test]
    fn rv_roundtrip() {
        let obj = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let enc = encode(&obj);
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: enc,
            create_revision: 7,
            mod_revision: 9,
        };
        let dec = decode(&kv).unwrap();
        assert_eq!(dec["metadata"]["resourceVersion"], "9");
        assert!(!String::from_utf8_lossy(&kv.value).contains("resourceVersion"));
    }

    #[test]
    fn encode_drops_only_the_resource_version() {
        use serde_json::json;
        let cases = [
            (
                json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "5", "labels": {"resourceVersion": "x"}}, "spec": {"resourceVersion": 1}}),
                json!({"kind": "Pod", "metadata": {"name": "a", "labels": {"resourceVersion": "x"}}, "spec": {"resourceVersion": 1}}),
            ),
            (json!({"metadata": "odd"}), json!({"metadata": "odd"})),
            (json!([1, 2]), json!([1, 2])),
        ];
        for (obj, want) in cases {
            assert_eq!(encode(&obj), serde_json::to_vec(&want).unwrap(), "{obj}");
        }
    }
}

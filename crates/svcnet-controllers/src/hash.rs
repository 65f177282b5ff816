//! The `pod-template-hash` that names a Deployment's ReplicaSets.
//!
//! Upstream hashes a spew dump of the template with FNV-32a, mixes in the
//! collision count and encodes the decimal digits with its "safe"
//! alphabet. We hash the canonical JSON of the template instead (the Go
//! dump format cannot be reproduced), so the values differ from a real
//! cluster's, but keep the same shape: stable, short, only
//! `[bcdfghjklmnpqrstvwxz2456789]`.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Label carrying the hash on ReplicaSets and their pods.
pub const LABEL: &str = "pod-template-hash";

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: each byte mapped into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// The hash of `template` (without its own `pod-template-hash` label) and
/// the Deployment's `collisionCount`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(LABEL);
    }
    // Serializing a k8s-openapi struct cannot fail (no maps with non-string keys).
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str, hash_label: Option<&str>) -> PodTemplateSpec {
        let mut labels = std::collections::BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        if let Some(h) = hash_label {
            labels.insert(LABEL.into(), h.into());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
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

    #[test]
    fn fnv_known_values() {
        // Published FNV-1a 32-bit test vectors.
        for (input, want) in [
            ("", 0x811c_9dc5u32),
            ("a", 0xe40c_292c),
            ("foobar", 0xbf9c_f968),
        ] {
            assert_eq!(fnv32a(input.as_bytes(), 0x811c_9dc5), want, "{input:?}");
        }
    }

    #[test]
    fn safe_encoding() {
        for (input, want) in [("0", "4"), ("123", "567"), ("", "")] {
            assert_eq!(safe_encode(input), want, "{input:?}");
        }
    }

    #[test]
    fn hash_properties() {
        let a = pod_template_hash(&template("nginx:1", None), None);
        assert!(!a.is_empty() && a.len() <= 10, "{a}");
        assert!(a.bytes().all(|b| SAFE.contains(&b)), "{a}");
        let cases = [
            ("same template", template("nginx:1", None), None, true),
            (
                "own label ignored",
                template("nginx:1", Some("xyz")),
                None,
                true,
            ),
            ("new image", template("nginx:2", None), None, false),
            ("collision count", template("nginx:1", None), Some(1), false),
        ];
        for (name, t, cc, same) in cases {
            assert_eq!(pod_template_hash(&t, cc) == a, same, "{name}");
        }
    }
}

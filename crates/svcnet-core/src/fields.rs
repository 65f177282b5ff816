//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Failed`) and the fields each kind exposes.
//!
//! Syntax, escaping and messages follow upstream `apimachinery/pkg/fields`;
//! the per-kind field sets follow upstream's `*ToSelectableFields` and field
//! label conversion functions.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A field selector that could not be parsed or uses an unsupported field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Syntax { selector: String, term: String },
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// Upstream prints the rune with `%v`, i.e. as its number.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// `=`/`==` (equal) or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// AND of terms; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parse upstream's syntax: comma-separated `k=v`, `k==v`, `k!=v`; in
    /// values `\`, `,` and `=` are escaped with a backslash.
    pub fn parse(selector: &str) -> Result<FieldSelector, FieldSelectorError> {
        let mut parts = split_terms(selector);
        // Upstream sorts the raw terms, which fixes the canonical order.
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(FieldSelectorError::Syntax {
                    selector: selector.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(FieldTerm {
                field: lhs.to_string(),
                op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether an object whose fields are looked up with `get` matches; a
    /// missing field counts as the empty string, as upstream's `fields.Set`.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let have = get(&t.field).unwrap_or_default();
            match t.op {
                FieldOp::Equals => have == t.value,
                FieldOp::NotEquals => have != t.value,
            }
        })
    }

    /// Match against a field set from [`object_fields`].
    pub fn matches_fields(&self, fields: &BTreeMap<String, String>) -> bool {
        self.matches(|f| fields.get(f).cloned())
    }

    /// The value `field` must equal, if a term pins it (used to narrow
    /// watches such as `spec.nodeName=<node>`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op == FieldOp::Equals)
            .map(|t| t.value.as_str())
    }

    /// Reject terms on fields `kind` does not support, with upstream's message.
    pub fn check_supported(&self, kind: &str) -> Result<(), FieldSelectorError> {
        let supported = supported_fields(kind);
        match self
            .terms
            .iter()
            .find(|t| !supported.contains(&t.field.as_str()))
        {
            Some(t) => Err(FieldSelectorError::UnsupportedField(t.field.clone())),
            None => Ok(()),
        }
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// Split at commas not preceded by a backslash (the backslash is kept).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first operator occurrence splits; `!=` and `==` are tried before `=`.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, rhs));
            }
        }
    }
    None
}

/// Upstream `UnescapeValue`.
pub fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(FieldSelectorError::InvalidEscape(format!("\\{other}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscape("\\".into()));
    }
    Ok(out)
}

/// Upstream `EscapeValue`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Canonical lower-case plural resource name for a kind or resource name.
fn resource_of(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    match k.as_str() {
        "pod" => "pods".into(),
        "event" => "events".into(),
        "node" => "nodes".into(),
        "namespace" => "namespaces".into(),
        "secret" => "secrets".into(),
        "replicaset" => "replicasets".into(),
        "replicationcontroller" => "replicationcontrollers".into(),
        "job" => "jobs".into(),
        _ => k,
    }
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const REPLICAS_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The field labels a kind (`Pod` or `pods`) supports in field selectors.
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match resource_of(kind).as_str() {
        "pods" => POD_FIELDS,
        "events" => EVENT_FIELDS,
        "nodes" => NODE_FIELDS,
        "namespaces" => NAMESPACE_FIELDS,
        "secrets" => SECRET_FIELDS,
        "replicasets" | "replicationcontrollers" => REPLICAS_FIELDS,
        "jobs" => JOB_FIELDS,
        _ => META_FIELDS,
    }
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

fn bool_at(obj: &Value, path: &[&str]) -> bool {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return false,
        }
    }
    v.as_bool().unwrap_or(false)
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return 0,
        }
    }
    v.as_i64().unwrap_or(0)
}

/// The selectable fields of an object (JSON as stored), keyed by field label,
/// missing values as "" like upstream. `None` when `obj` is not an object.
pub fn object_fields(kind: &str, obj: &Value) -> Option<BTreeMap<String, String>> {
    if !obj.is_object() {
        return None;
    }
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put(
        "metadata.name",
        str_at(obj, &["metadata", "name"]).to_string(),
    );
    let res = resource_of(kind);
    if !matches!(res.as_str(), "nodes" | "namespaces") {
        put(
            "metadata.namespace",
            str_at(obj, &["metadata", "namespace"]).to_string(),
        );
    }
    match res.as_str() {
        "pods" => {
            for (label, path) in [
                ("spec.nodeName", &["spec", "nodeName"][..]),
                ("spec.restartPolicy", &["spec", "restartPolicy"]),
                ("spec.schedulerName", &["spec", "schedulerName"]),
                ("spec.serviceAccountName", &["spec", "serviceAccountName"]),
                ("status.phase", &["status", "phase"]),
                ("status.nominatedNodeName", &["status", "nominatedNodeName"]),
            ] {
                put(label, str_at(obj, path).to_string());
            }
            put(
                "spec.hostNetwork",
                bool_at(obj, &["spec", "hostNetwork"]).to_string(),
            );
            // Upstream takes the first of status.podIPs.
            let ip = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .unwrap_or_else(|| str_at(obj, &["status", "podIP"]));
            put("status.podIP", ip.to_string());
        }
        "events" => {
            for f in [
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ] {
                put(
                    &format!("involvedObject.{f}"),
                    str_at(obj, &["involvedObject", f]).to_string(),
                );
            }
            put("reason", str_at(obj, &["reason"]).to_string());
            put(
                "reportingComponent",
                str_at(obj, &["reportingComponent"]).to_string(),
            );
            // Upstream falls back to reportingController for events.k8s.io-style events.
            let source = match str_at(obj, &["source", "component"]) {
                "" => str_at(obj, &["reportingController"]),
                s => s,
            };
            put("source", source.to_string());
            put("type", str_at(obj, &["type"]).to_string());
        }
        "nodes" => put(
            "spec.unschedulable",
            bool_at(obj, &["spec", "unschedulable"]).to_string(),
        ),
        "namespaces" => put(
            "status.phase",
            str_at(obj, &["status", "phase"]).to_string(),
        ),
        "secrets" => put("type", str_at(obj, &["type"]).to_string()),
        "replicasets" | "replicationcontrollers" => {
            put(
                "status.replicas",
                int_at(obj, &["status", "replicas"]).to_string(),
            );
        }
        "jobs" => put(
            "status.successful",
            int_at(obj, &["status", "succeeded"]).to_string(),
        ),
        _ => {}
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_renders() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("b=c,a=b", "a=b,b=c"),
            ("a=", "a="),
            ("a=x\\,y", "a=x\\,y"),
            ("a=x\\=y\\\\", "a=x\\=y\\\\"),
            (
                "spec.nodeName=n1,status.phase!=Failed",
                "spec.nodeName=n1,status.phase!=Failed",
            ),
            (",a=b,", "a=b"),
        ];
        for (input, want) in cases {
            let s = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(s.to_string(), want, "{input:?}");
        }
        let s = FieldSelector::parse("a=x\\,y").expect("valid");
        assert_eq!(s.terms()[0].value, "x,y");
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=x\\y",
                "invalid field selector: invalid escape sequence: \\y",
            ),
            (
                "a=x\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (input, want) in cases {
            let e = FieldSelector::parse(input).expect_err(input);
            assert_eq!(e.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn matches_pods() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}]}
        });
        let fields = object_fields("Pod", &pod).expect("object");
        let cases = [
            ("spec.nodeName=n1", true),
            ("spec.nodeName=n2", false),
            ("spec.nodeName!=n2", true),
            ("status.phase!=Failed,spec.nodeName=n1", true),
            ("status.podIP=10.244.1.5", true),
            ("status.nominatedNodeName=", true),
            ("spec.hostNetwork=false", true),
            ("metadata.name=web-1,metadata.namespace=default", true),
            ("", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).expect("valid");
            assert_eq!(s.check_supported("pods"), Ok(()), "{sel}");
            assert_eq!(s.matches_fields(&fields), want, "{sel}");
        }
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n1")
                .expect("valid")
                .requires_exact_match("spec.nodeName"),
            Some("n1")
        );
    }

    #[test]
    fn per_kind_support() {
        let cases = [
            (
                "pods",
                "foo=bar",
                Err(FieldSelectorError::UnsupportedField("foo".into())),
            ),
            ("Service", "metadata.name=a", Ok(())),
            (
                "services",
                "spec.clusterIP=a",
                Err(FieldSelectorError::UnsupportedField(
                    "spec.clusterIP".into(),
                )),
            ),
            ("nodes", "spec.unschedulable=false", Ok(())),
            (
                "nodes",
                "metadata.namespace=x",
                Err(FieldSelectorError::UnsupportedField(
                    "metadata.namespace".into(),
                )),
            ),
            ("namespaces", "status.phase=Active", Ok(())),
            (
                "events",
                "involvedObject.name=web,type=Warning,source=kubelet",
                Ok(()),
            ),
        ];
        for (kind, sel, want) in cases {
            assert_eq!(
                FieldSelector::parse(sel)
                    .expect("valid")
                    .check_supported(kind),
                want,
                "{kind} {sel}"
            );
        }
        assert_eq!(
            FieldSelectorError::UnsupportedField("foo".into()).to_string(),
            "field label not supported: foo"
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "[a-z.=!,\\\\ é]{0,30}") {
            if let Ok(sel) = FieldSelector::parse(&s) {
                // Term order follows the raw text, so compare as sets.
                let key = |f: &FieldSelector| {
                    let mut v: Vec<(String, bool, String)> = f
                        .terms()
                        .iter()
                        .map(|t| (t.field.clone(), t.op == FieldOp::Equals, t.value.clone()))
                        .collect();
                    v.sort();
                    v
                };
                let again = FieldSelector::parse(&sel.to_string());
                proptest::prop_assert!(again.is_ok(), "{:?}", again);
                proptest::prop_assert_eq!(again.map(|a| key(&a)).unwrap_or_default(), key(&sel));
            }
        }
    }

    #[test]
    fn event_node_namespace_fields() {
        let ev = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Started", "type": "Normal", "source": {"component": "kubelet"}
        });
        let f = object_fields("events", &ev).expect("object");
        let ev2 = json!({"metadata": {"name": "e2"}, "reportingController": "svcnet-agent"});
        let f2 = object_fields("Event", &ev2).expect("object");
        assert_eq!(f2.get("source").map(String::as_str), Some("svcnet-agent"));
        assert_eq!(
            f.get("involvedObject.kind").map(String::as_str),
            Some("Pod")
        );
        assert_eq!(f.get("source").map(String::as_str), Some("kubelet"));
        assert_eq!(f.get("involvedObject.uid").map(String::as_str), Some(""));
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let f = object_fields("Node", &node).expect("object");
        assert_eq!(
            f.get("spec.unschedulable").map(String::as_str),
            Some("true")
        );
        assert!(!f.contains_key("metadata.namespace"));
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        let f = object_fields("namespaces", &ns).expect("object");
        assert_eq!(f.get("status.phase").map(String::as_str), Some("Active"));
        assert_eq!(object_fields("pods", &json!("x")), None);
    }
}

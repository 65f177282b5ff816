//! Kubernetes-style field errors (`field.Error`), field paths and the `… is invalid: […]` message.
//!
//! Rendering follows upstream `apimachinery/pkg/util/validation/field/errors.go`
//! byte for byte, because kubectl users read (and scripts grep) these strings.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// Why a field is invalid; mirrors upstream's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// Human text, as upstream's `ErrorType.String()`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
            ErrorType::TypeInvalid => "Invalid value",
        }
    }

    /// The `Status.details.causes[].reason` value.
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    Index(usize),
    Key(String),
}

/// A field path such as `spec.ports[0].port`; built like upstream's `field.Path`.
///
/// A path shares its parent (validation derives a child for every field it
/// visits, and most never end up in an error): deriving one allocates one
/// step, cloning one is a reference count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    last: Option<Arc<Step>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Step {
    parent: Option<Arc<Step>>,
    segment: Segment,
}

impl Path {
    /// A root path (`Path::new("spec")`).
    pub fn new(name: &str) -> Path {
        Path::none().push(Segment::Name(name.to_string()))
    }

    /// The empty path; renders as `<nil>` like upstream's nil `*field.Path`.
    pub fn none() -> Path {
        Path::default()
    }

    fn push(&self, segment: Segment) -> Path {
        Path {
            last: Some(Arc::new(Step {
                parent: self.last.clone(),
                segment,
            })),
        }
    }

    /// `.name`
    pub fn child(&self, name: &str) -> Path {
        self.push(Segment::Name(name.to_string()))
    }

    /// `[i]`
    pub fn index(&self, i: usize) -> Path {
        self.push(Segment::Index(i))
    }

    /// `[key]`
    pub fn key(&self, key: &str) -> Path {
        self.push(Segment::Key(key.to_string()))
    }

    /// True for [`Path::none`].
    pub fn is_none(&self) -> bool {
        self.last.is_none()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut segments = Vec::new();
        let mut at = self.last.as_deref();
        while let Some(step) = at {
            segments.push(&step.segment);
            at = step.parent.as_deref();
        }
        if segments.is_empty() {
            return f.write_str("<nil>");
        }
        for (i, s) in segments.iter().rev().enumerate() {
            match s {
                Segment::Name(n) if i == 0 => f.write_str(n)?,
                Segment::Name(n) => write!(f, ".{n}")?,
                Segment::Index(ix) => write!(f, "[{ix}]")?,
                Segment::Key(k) => write!(f, "[{k}]")?,
            }
        }
        Ok(())
    }
}

/// The offending value of a field error, rendered as Go's `%v` / `%q` / `%#v` would.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// Rendered quoted (`%q`).
    Str(String),
    /// Rendered bare.
    Int(i64),
    /// Rendered bare.
    Bool(bool),
    /// Rendered as `[]string{"a", "b"}` (Go's `%#v`).
    StrList(Vec<String>),
    /// Rendered as `null` (a nil value).
    Null,
    /// Not rendered at all (upstream's `omitValue`).
    Omit,
    /// Already rendered text, printed as is (for Go structs printed with `%#v`).
    Raw(String),
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::StrList(v) => {
                let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
                write!(f, "[]string{{{}}}", items.join(", "))
            }
            BadValue::Null => f.write_str("null"),
            BadValue::Omit => Ok(()),
            BadValue::Raw(s) => f.write_str(s),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<i64> for BadValue {
    fn from(i: i64) -> Self {
        BadValue::Int(i)
    }
}
impl From<i32> for BadValue {
    fn from(i: i32) -> Self {
        BadValue::Int(i64::from(i))
    }
}
impl From<usize> for BadValue {
    fn from(i: usize) -> Self {
        BadValue::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<bool> for BadValue {
    fn from(b: bool) -> Self {
        BadValue::Bool(b)
    }
}
impl From<Vec<String>> for BadValue {
    fn from(v: Vec<String>) -> Self {
        BadValue::StrList(v)
    }
}
impl From<&[String]> for BadValue {
    fn from(v: &[String]) -> Self {
        BadValue::StrList(v.to_vec())
    }
}

/// Quote like Go's `strconv.Quote` (`%q`): printable Unicode kept, the rest escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One field-level validation error (upstream `field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub error_type: ErrorType,
    pub field: String,
    pub bad_value: Option<BadValue>,
    pub detail: String,
}

/// A list of field errors, in the order they were found.
pub type ErrorList = Vec<FieldError>;

impl FieldError {
    fn new(t: ErrorType, path: &Path, value: Option<BadValue>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: t,
            field: path.to_string(),
            bad_value: value,
            detail: detail.into(),
        }
    }

    /// `Invalid value: <v>: <detail>`
    pub fn invalid(path: &Path, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, path, Some(value.into()), detail)
    }

    /// `Invalid value: <v>: <detail>` with the schema-type flavour.
    pub fn type_invalid(
        path: &Path,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::TypeInvalid, path, Some(value.into()), detail)
    }

    /// `Not found: <v>`
    pub fn not_found(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, path, Some(value.into()), "")
    }

    /// `Required value[: <detail>]`
    pub fn required(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, path, None, detail)
    }

    /// `Duplicate value: <v>`
    pub fn duplicate(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, Some(value.into()), "")
    }

    /// `Unsupported value: <v>: supported values: "a", "b"`
    pub fn not_supported(path: &Path, value: impl Into<BadValue>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, Some(value.into()), detail)
    }

    /// `Forbidden[: <detail>]`
    pub fn forbidden(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, path, None, detail)
    }

    /// `Too long: must have at most <max> bytes` (the value is never shown).
    pub fn too_long(path: &Path, value: impl Into<BadValue>, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            path,
            Some(value.into()),
            format!("must have at most {max} bytes"),
        )
    }

    /// `Too many: <actual>: must have at most <max> items`; a negative
    /// `actual` omits it, a negative `max` says only "has too many items".
    pub fn too_many(path: &Path, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("must have at most {max} items")
        } else {
            "has too many items".to_string()
        };
        let value = if actual >= 0 {
            BadValue::Int(actual)
        } else {
            BadValue::Omit
        };
        Self::new(ErrorType::TooMany, path, Some(value), detail)
    }

    /// `Internal error: <detail>`
    pub fn internal(path: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, path, Some(BadValue::Null), detail)
    }

    /// The message without the field name (upstream `ErrorBody`), used as
    /// `Status.details.causes[].message`.
    pub fn body(&self) -> String {
        let mut s = String::from(self.error_type.as_str());
        let omit_value = matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if !omit_value {
            match &self.bad_value {
                Some(BadValue::Omit) => {}
                Some(v) => s.push_str(&format!(": {v}")),
                None => s.push_str(": null"),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The cause entry for a `Status` object.
    pub fn to_cause(&self) -> StatusCause {
        StatusCause {
            field: Some(self.field.clone()),
            message: Some(self.body()),
            reason: Some(self.error_type.cause_reason().to_string()),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Upstream's aggregate rendering: one error alone, several as `[e1, e2]`,
/// with duplicate messages dropped.
pub fn aggregate_message(errs: &[FieldError]) -> String {
    let mut seen = BTreeSet::new();
    let mut msgs = Vec::new();
    for e in errs {
        let m = e.to_string();
        if seen.insert(m.clone()) {
            msgs.push(m);
        }
    }
    match msgs.len() {
        0 => String::new(),
        1 => msgs.remove(0),
        _ => format!("[{}]", msgs.join(", ")),
    }
}

/// The message of a 422 `Status`: `Service "bad" is invalid: <errors>`.
///
/// `kind` is the qualified kind as upstream prints it (`Service`,
/// `Deployment.apps`).
pub fn invalid_message(kind: &str, name: &str, errs: &[FieldError]) -> String {
    let agg = aggregate_message(errs);
    if agg.is_empty() {
        format!("{kind} {} is invalid", go_quote(name))
    } else {
        format!("{kind} {} is invalid: {agg}", go_quote(name))
    }
}

/// Upstream `errors.NewInvalid`: the 422 `Status` for `errs` on object
/// `name` of `kind` in API `group` ("" for core). The message uses the
/// qualified kind (`Deployment.apps`); causes keep every error in order.
pub fn invalid_status(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Status {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    Status {
        code: Some(422),
        details: Some(StatusDetails {
            causes: Some(causes(errs)),
            group: Some(group.to_string()).filter(|g| !g.is_empty()),
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        }),
        message: Some(invalid_message(&qualified, name, errs)),
        metadata: Default::default(),
        reason: Some("Invalid".to_string()),
        status: Some("Failure".to_string()),
    }
}

/// Status causes for a list of errors, in order (duplicates kept, as upstream).
pub fn causes(errs: &[FieldError]) -> Vec<StatusCause> {
    errs.iter().map(FieldError::to_cause).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_upstream() {
        let cases = [
            (
                Path::new("spec").child("ports").index(0).child("port"),
                "spec.ports[0].port",
            ),
            (
                Path::new("metadata").child("labels").key("app"),
                "metadata.labels[app]",
            ),
            (Path::new("spec"), "spec"),
            (Path::none(), "<nil>"),
            (Path::none().child("key"), "key"),
        ];
        for (p, want) in cases {
            assert_eq!(p.to_string(), want);
        }
    }

    #[test]
    fn errors_render_like_upstream() {
        let port = Path::new("spec").child("ports").index(0);
        let cases: Vec<(FieldError, &str)> = vec![
            (
                FieldError::invalid(
                    &port.child("port"),
                    0,
                    "must be between 1 and 65535, inclusive",
                ),
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
            (
                FieldError::required(&port.child("name"), ""),
                "spec.ports[0].name: Required value",
            ),
            (
                FieldError::required(&Path::new("spec").child("x"), "must be set"),
                "spec.x: Required value: must be set",
            ),
            (
                FieldError::not_supported(
                    &Path::new("spec").child("type"),
                    "Foo",
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ),
                r#"spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            ),
            (
                FieldError::invalid(
                    &Path::new("spec").child("clusterIPs"),
                    vec!["10.96.0.1".to_string()],
                    "bad",
                ),
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.1"}: bad"#,
            ),
            (
                FieldError::invalid(&Path::new("a"), Vec::<String>::new(), "x"),
                r#"a: Invalid value: []string{}: x"#,
            ),
            (
                FieldError::duplicate(&port.child("name"), "http"),
                r#"spec.ports[0].name: Duplicate value: "http""#,
            ),
            (
                FieldError::forbidden(
                    &port.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ),
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ),
            (
                FieldError::too_long(&Path::new("metadata").child("annotations"), "", 262144),
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ),
            (
                FieldError::too_many(&Path::new("spec").child("ips"), 3, 2),
                "spec.ips: Too many: 3: must have at most 2 items",
            ),
            (
                FieldError::too_many(&Path::new("spec").child("ips"), -1, -1),
                "spec.ips: Too many: has too many items",
            ),
            (
                FieldError::internal(&Path::new("spec"), "boom"),
                "spec: Internal error: boom",
            ),
            (
                FieldError::not_found(&Path::new("spec").child("x"), "y"),
                r#"spec.x: Not found: "y""#,
            ),
            (
                FieldError::invalid(&Path::new("a"), "tab\there \"q\" \\ é", "d"),
                r#"a: Invalid value: "tab\there \"q\" \\ é": d"#,
            ),
            (
                FieldError::invalid(&Path::new("a"), true, ""),
                "a: Invalid value: true",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn cause_reasons() {
        let e = FieldError::required(&Path::new("spec").child("ports"), "");
        let c = e.to_cause();
        assert_eq!(c.reason.as_deref(), Some("FieldValueRequired"));
        assert_eq!(c.message.as_deref(), Some("Required value"));
        assert_eq!(c.field.as_deref(), Some("spec.ports"));
        assert_eq!(ErrorType::Internal.cause_reason(), "InternalError");
        assert_eq!(ErrorType::TypeInvalid.as_str(), "Invalid value");
    }

    #[test]
    fn invalid_status_object() {
        let errs = vec![FieldError::invalid(
            &Path::new("spec").child("replicas"),
            -1,
            "must be greater than or equal to 0",
        )];
        let st = invalid_status("apps", "Deployment", "web", &errs);
        assert_eq!(
            serde_json::to_value(&st).expect("json"),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "reason": "Invalid", "code": 422,
                "details": {"name": "web", "group": "apps", "kind": "Deployment", "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: must be greater than or equal to 0",
                    "field": "spec.replicas"
                }]}
            })
        );
        let st = invalid_status("", "Service", "s", &errs);
        assert_eq!(st.details.as_ref().and_then(|d| d.group.clone()), None);
        assert!(
            st.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Service \"s\" is invalid: "))
        );
    }

    #[test]
    fn invalid_messages() {
        let a = FieldError::required(&Path::new("spec").child("ports"), "");
        let b = FieldError::invalid(&Path::new("metadata").child("name"), "Bad", "x");
        let cases: Vec<(Vec<FieldError>, &str)> = vec![
            (vec![], r#"Service "bad" is invalid"#),
            (
                vec![a.clone()],
                r#"Service "bad" is invalid: spec.ports: Required value"#,
            ),
            (
                vec![a.clone(), b.clone(), a.clone()],
                r#"Service "bad" is invalid: [spec.ports: Required value, metadata.name: Invalid value: "Bad": x]"#,
            ),
            (
                vec![a.clone(), a.clone()],
                r#"Service "bad" is invalid: spec.ports: Required value"#,
            ),
        ];
        for (errs, want) in cases {
            assert_eq!(invalid_message("Service", "bad", &errs), want);
        }
    }
}

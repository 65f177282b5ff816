//! Name, label and port-name syntax checks, and `metadata` validation, with upstream's messages.
//!
//! The checkers return `Vec<String>` of messages (empty = valid) exactly as
//! upstream's `apimachinery/pkg/util/validation` functions do, so callers
//! wrap each message in a [`FieldError`] at the right path.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::field_errors::{BadValue, ErrorList, FieldError, Path};

pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Upstream `TotalAnnotationSizeLimitB` (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream `IsNegativeErrorMsg`.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";

/// Upstream `MaxLenError`.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream `RegexError` (note the double space before each ` or`, as upstream).
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// Upstream `EmptyError`.
pub fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Upstream `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            lower_alnum(f) && lower_alnum(l) && b.iter().all(|&c| lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_lowercase()
                && lower_alnum(l)
                && b.iter().all(|&c| lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

/// DNS-1123 label (≤63, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// DNS-1123 subdomain (≤253, dot-separated labels).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn matches_label_with_underscore(s: &str) -> bool {
    // `_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?`
    let s = s.strip_prefix('_').unwrap_or(s);
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            lower_alnum(f)
                && lower_alnum(l)
                && b.iter().all(|&c| lower_alnum(c) || c == b'-' || c == b'_')
        }
        _ => false,
    }
}

/// DNS-1123 subdomain where labels may contain `_` (and start with one),
/// as upstream's `IsDNS1123SubdomainWithUnderscore` (DNS search paths).
pub fn is_dns1123_subdomain_with_underscore(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(matches_label_with_underscore) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
            "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    errs
}

/// DNS-1035 label (≤63, `[a-z]([-a-z0-9]*[a-z0-9])?`): Service names.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Qualified name = label key: optional DNS-1123 subdomain prefix + `/` + name.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Label key check (same as [`is_qualified_name`]).
pub fn is_label_key(value: &str) -> Vec<String> {
    is_qualified_name(value)
}

/// Label value: ≤63, may be empty, same characters as a qualified name.
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// IANA service name (port names): ≤15, `[-a-z0-9]`, a letter, no `--`, no edge `-`.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| lower_alnum(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Port number 1–65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Inclusive range check.
pub fn is_in_range(value: i64, min: i64, max: i64) -> Vec<String> {
    if value >= min && value <= max {
        Vec::new()
    } else {
        vec![inclusive_range_error(min, max)]
    }
}

/// A name validator as upstream's `ValidateNameFunc`: `prefix` is true
/// when checking a `generateName`, which may end in `-`.
pub type NameFn = fn(&str, bool) -> Vec<String>;

/// Upstream `maskTrailingDash`: a generateName may end in `-`, so the last
/// two bytes are replaced by `a` before checking (keeping the length bound).
fn mask_trailing_dash(name: &str, prefix: bool) -> std::borrow::Cow<'_, str> {
    if prefix && name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]).into();
        }
    }
    name.into()
}

/// Names that must be DNS-1123 subdomains (most kinds).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// Names that must be DNS-1123 labels (namespaces).
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_trailing_dash(name, prefix))
}

/// Names that must be DNS-1035 labels (services).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_trailing_dash(name, prefix))
}

/// One `Invalid` error per message at `path`.
pub fn errs_at(path: &Path, value: &str, msgs: Vec<String>) -> ErrorList {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

/// Upstream `ValidateDNS1123Label`.
pub fn validate_dns1123_label(value: &str, path: &Path) -> ErrorList {
    errs_at(path, value, is_dns1123_label(value))
}

/// Upstream `ValidateDNS1123Subdomain`.
pub fn validate_dns1123_subdomain(value: &str, path: &Path) -> ErrorList {
    errs_at(path, value, is_dns1123_subdomain(value))
}

/// Upstream `ValidateQualifiedName`.
pub fn validate_qualified_name(value: &str, path: &Path) -> ErrorList {
    errs_at(path, value, is_qualified_name(value))
}

/// Upstream `ValidateLabels`: keys and values are reported at the map's
/// path (not per key), as upstream does.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels {
        errs.extend(errs_at(path, k, is_qualified_name(k)));
        errs.extend(errs_at(path, v, is_label_value(v)));
    }
    errs
}

/// Upstream `ValidateAnnotations`: keys are case-insensitive qualified
/// names; the total size of keys and values is at most 256 KiB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        errs.extend(errs_at(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Upstream `ValidateNonnegativeField`.
pub fn validate_nonnegative(value: i64, path: &Path) -> ErrorList {
    if value < 0 {
        vec![FieldError::invalid(path, value, IS_NEGATIVE_ERROR_MSG)]
    } else {
        Vec::new()
    }
}

/// Upstream `ValidateObjectMeta`: name / generateName through `name_fn`,
/// namespace required (and a DNS label) for namespaced kinds and forbidden
/// otherwise, generation, labels, annotations, finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        errs.extend(errs_at(
            &path.child("generateName"),
            generate_name,
            name_fn(generate_name, true),
        ));
    }
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        errs.extend(errs_at(&path.child("name"), name, name_fn(name, false)));
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            errs.extend(errs_at(
                &path.child("namespace"),
                namespace,
                name_is_dns_label(namespace, false),
            ));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.generation {
        errs.extend(validate_nonnegative(g, &path.child("generation")));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(
            annotations,
            &path.child("annotations"),
        ));
    }
    if let Some(refs) = &meta.owner_references {
        errs.extend(validate_owner_references(
            refs,
            &path.child("ownerReferences"),
        ));
    }
    if let Some(finalizers) = &meta.finalizers {
        errs.extend(validate_finalizers(finalizers, &path.child("finalizers")));
    }
    errs
}

/// Go's `time.Time.String()` of a timestamp (as `%v` prints it in
/// "field is immutable" errors), from its RFC 3339 wire form.
fn go_time(v: &impl serde::Serialize) -> BadValue {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(t)) => {
            let t = t.trim_end_matches('Z').replacen('T', " ", 1);
            BadValue::Raw(format!("{t} +0000 UTC"))
        }
        _ => BadValue::Raw("<nil>".into()),
    }
}

fn opt_value<T>(v: Option<T>, f: impl FnOnce(T) -> BadValue) -> BadValue {
    v.map_or(BadValue::Null, f)
}

/// Upstream `ValidateOwnerReferences`.
pub fn validate_owner_references(refs: &[OwnerReference], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        // "v1" or "group/version": the version is the last segment.
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("kind"),
                r.kind.as_str(),
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("name"),
                r.name.as_str(),
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("uid"),
                r.uid.as_str(),
                "must not be empty",
            ));
        }
        if r.api_version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                BadValue::Raw(format!("{r:?}")),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let cur = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    BadValue::Raw(format!("{refs:?}")),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {cur}"),
                )),
                None => first_controller = Some(cur),
            }
        }
    }
    errs
}

/// Upstream `ValidateFinalizers`: qualified names, and `orphan` and
/// `foregroundDeletion` not both.
pub fn validate_finalizers(finalizers: &[String], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for f in finalizers {
        errs.extend(validate_qualified_name(f, path));
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            finalizers.to_vec(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Upstream `ValidateObjectMetaUpdate`: generation may not go down, and
/// name, namespace, uid, creation and deletion timestamps may not change.
///
/// Upstream also requires `resourceVersion`, but its store fills that in
/// for unconditional updates before validating, so users never see it; that
/// check is [`validate_resource_version_present`], for callers that do not
/// fill it in.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if old.deletion_timestamp.is_some() {
        let old_f: std::collections::BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        let extra: std::collections::BTreeSet<&String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_f.contains(f))
            .collect();
        if !extra.is_empty() {
            let list: Vec<String> = extra.into_iter().cloned().collect();
            errs.push(FieldError::forbidden(
                &path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    BadValue::StrList(list)
                ),
            ));
        }
    }

    let (ng, og) = (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if ng < og {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            ng,
            "must not be decremented",
        ));
    }
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    for (name, a, b) in [
        ("name", s(&new.name), s(&old.name)),
        ("namespace", s(&new.namespace), s(&old.namespace)),
        ("uid", s(&new.uid), s(&old.uid)),
    ] {
        if a != b {
            errs.push(FieldError::invalid(&path.child(name), a, FIELD_IMMUTABLE));
        }
    }
    if new.creation_timestamp != old.creation_timestamp {
        let v = match &new.creation_timestamp {
            Some(t) => go_time(t),
            // A zero metav1.Time prints as Go's zero time.
            None => BadValue::Raw("0001-01-01 00:00:00 +0000 UTC".into()),
        };
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            v,
            FIELD_IMMUTABLE,
        ));
    }
    if new.deletion_timestamp != old.deletion_timestamp {
        let v = opt_value(new.deletion_timestamp.as_ref(), go_time);
        errs.push(FieldError::invalid(
            &path.child("deletionTimestamp"),
            v,
            FIELD_IMMUTABLE,
        ));
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        let v = opt_value(new.deletion_grace_period_seconds, BadValue::Int);
        errs.push(FieldError::invalid(
            &path.child("deletionGracePeriodSeconds"),
            v,
            FIELD_IMMUTABLE,
        ));
    }
    if let Some(labels) = &new.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &new.annotations {
        errs.extend(validate_annotations(
            annotations,
            &path.child("annotations"),
        ));
    }
    if let Some(refs) = &new.owner_references {
        errs.extend(validate_owner_references(
            refs,
            &path.child("ownerReferences"),
        ));
    }
    errs
}

/// Upstream's "must be specified for an update" check on `metadata.resourceVersion`.
pub fn validate_resource_version_present(new: &ObjectMeta, path: &Path) -> ErrorList {
    if new.resource_version.as_deref().unwrap_or("").is_empty() {
        vec![FieldError::invalid(
            &path.child("resourceVersion"),
            "",
            "must be specified for an update",
        )]
    } else {
        Vec::new()
    }
}

/// Upstream `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn dns1123_labels() {
        let long = "a".repeat(64);
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("a", vec![]),
            ("my-name", vec![]),
            ("123-abc", vec![]),
            ("0", vec![]),
            ("", vec![LABEL_MSG.into()]),
            ("A", vec![LABEL_MSG.into()]),
            ("-a", vec![LABEL_MSG.into()]),
            ("a-", vec![LABEL_MSG.into()]),
            ("a_b", vec![LABEL_MSG.into()]),
            ("a.b", vec!["must not contain dots".into()]),
            (&long, vec!["must be no more than 63 characters".into()]),
        ];
        for (v, want) in cases {
            assert_eq!(is_dns1123_label(v), want, "{v:?}");
        }
    }

    #[test]
    fn dns1123_subdomains() {
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(60));
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("example.com", vec![]),
            ("a.b.c", vec![]),
            ("a..b", vec![SUBDOMAIN_MSG.into()]),
            (".a", vec![SUBDOMAIN_MSG.into()]),
            ("a.", vec![SUBDOMAIN_MSG.into()]),
            ("Example.com", vec![SUBDOMAIN_MSG.into()]),
            (&long, vec!["must be no more than 253 characters".into()]),
        ];
        for (v, want) in cases {
            assert_eq!(is_dns1123_subdomain(v), want, "{v:?}");
        }
    }

    #[test]
    fn dns1035_labels() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("my-svc", vec![]),
            ("a1", vec![]),
            ("1a", vec![DNS1035_MSG.into()]),
            ("a.b", vec![DNS1035_MSG.into()]),
            ("Svc", vec![DNS1035_MSG.into()]),
        ];
        for (v, want) in cases {
            assert_eq!(is_dns1035_label(v), want, "{v:?}");
        }
    }

    #[test]
    fn qualified_names() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("app", vec![]),
            ("MyName", vec![]),
            ("my.name", vec![]),
            ("k8s.io/app", vec![]),
            ("app.kubernetes.io/name", vec![]),
            ("_zoo", vec![NAME_PART_MSG.into()]),
            ("", vec!["name part must be non-empty".into(), NAME_PART_MSG.into()]),
            ("/a", vec!["prefix part must be non-empty".into()]),
            ("k8s.io/", vec!["name part must be non-empty".into(), NAME_PART_MSG.into()]),
            ("Bad_Prefix/a", vec![format!("prefix part {SUBDOMAIN_MSG}")]),
            (
                "a/b/c",
                vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into()],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(is_qualified_name(v), want, "{v:?}");
        }
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters".to_string()]
        );
    }

    #[test]
    fn label_values() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("", vec![]),
            ("v1", vec![]),
            ("my_value", vec![]),
            ("a b", vec![VALUE_MSG.into()]),
            ("-a", vec![VALUE_MSG.into()]),
            ("a/b", vec![VALUE_MSG.into()]),
        ];
        for (v, want) in cases {
            assert_eq!(is_label_value(v), want, "{v:?}");
        }
        assert_eq!(is_label_value(&"a".repeat(64)), vec![max_len_error(63)]);
    }

    #[test]
    fn port_names() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("http", vec![]),
            ("h2c", vec![]),
            ("my-port", vec![]),
            ("1234", vec!["must contain at least one letter (a-z)"]),
            ("a--b", vec!["must not contain consecutive hyphens"]),
            ("-ab", vec!["must not begin or end with a hyphen"]),
            (
                "HTTP",
                vec![
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    "must contain at least one letter (a-z)",
                ],
            ),
            (
                "abcdefghijklmnop",
                vec!["must be no more than 15 characters"],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(is_valid_port_name(v), want, "{v:?}");
        }
    }

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()).filter(|n| !n.is_empty()),
            namespace: ns.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn object_meta_updates() {
        let md = Path::new("metadata");
        let render = |errs: ErrorList| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        let old: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "a", "namespace": "default", "uid": "u1", "resourceVersion": "5", "generation": 2,
            "creationTimestamp": "2026-12-01T10:00:00Z"
        }))
        .expect("meta");
        let mut same = old.clone();
        same.labels = Some([("app".to_string(), "x".to_string())].into_iter().collect());
        assert_eq!(
            render(validate_object_meta_update(&same, &old, &md)),
            Vec::<String>::new()
        );
        let new: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "b", "namespace": "default", "uid": "u2", "generation": 1,
            "creationTimestamp": "2026-12-01T11:00:00Z"
        }))
        .expect("meta");
        assert_eq!(
            render(validate_object_meta_update(&new, &old, &md)),
            vec![
                "metadata.generation: Invalid value: 1: must not be decremented",
                r#"metadata.name: Invalid value: "b": field is immutable"#,
                r#"metadata.uid: Invalid value: "u2": field is immutable"#,
                "metadata.creationTimestamp: Invalid value: 2026-12-01 11:00:00 +0000 UTC: field is immutable",
            ]
        );
        assert_eq!(
            render(validate_resource_version_present(&new, &md)),
            vec![r#"metadata.resourceVersion: Invalid value: "": must be specified for an update"#]
        );
        assert!(validate_resource_version_present(&old, &md).is_empty());
        let mut deleting = old.clone();
        deleting.deletion_timestamp =
            serde_json::from_value(serde_json::json!("2026-12-01T12:00:00Z")).ok();
        let mut more = deleting.clone();
        more.finalizers = Some(vec!["example.com/x".into()]);
        assert_eq!(
            render(validate_object_meta_update(&more, &deleting, &md)),
            vec![
                r#"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/x"}"#
            ]
        );
    }

    #[test]
    fn owner_references_and_finalizers() {
        let md = Path::new("metadata");
        let render = |errs: ErrorList| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        let mut m = meta("ok", Some("default"));
        m.owner_references = Some(vec![
            OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: "u".into(),
                controller: Some(true),
                ..Default::default()
            },
            OwnerReference {
                api_version: "apps/".into(),
                kind: "".into(),
                name: "".into(),
                uid: "".into(),
                ..Default::default()
            },
        ]);
        m.finalizers = Some(vec!["orphan".into(), "foregroundDeletion".into()]);
        assert_eq!(
            render(validate_object_meta(&m, true, name_is_dns_subdomain, &md)),
            vec![
                r#"metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty"#,
                r#"metadata.ownerReferences.kind: Invalid value: "": must not be empty"#,
                r#"metadata.ownerReferences.name: Invalid value: "": must not be empty"#,
                r#"metadata.ownerReferences.uid: Invalid value: "": must not be empty"#,
                r#"metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer orphan and foregroundDeletion cannot be both set"#,
            ]
        );
    }

    #[test]
    fn object_meta() {
        let md = Path::new("metadata");
        let render = |errs: ErrorList| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert!(
            validate_object_meta(
                &meta("ok", Some("default")),
                true,
                name_is_dns_subdomain,
                &md
            )
            .is_empty()
        );
        assert_eq!(
            render(validate_object_meta(
                &meta("", Some("default")),
                true,
                name_is_dns_subdomain,
                &md
            )),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(
            render(validate_object_meta(
                &meta("ok", None),
                true,
                name_is_dns_subdomain,
                &md
            )),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            render(validate_object_meta(
                &meta("ok", Some("x")),
                false,
                name_is_dns_subdomain,
                &md
            )),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        assert_eq!(
            render(validate_object_meta(
                &meta("1svc", Some("default")),
                true,
                name_is_dns1035_label,
                &md
            )),
            vec![format!(
                "metadata.name: Invalid value: \"1svc\": {DNS1035_MSG}"
            )]
        );
        let mut m = meta("ok", Some("default"));
        m.generate_name = Some("web-".into());
        assert!(validate_object_meta(&m, true, name_is_dns_subdomain, &md).is_empty());
        m.labels = Some(
            [("_zoo".to_string(), "a b".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            render(validate_object_meta(&m, true, name_is_dns_subdomain, &md)),
            vec![
                format!("metadata.labels: Invalid value: \"_zoo\": {NAME_PART_MSG}"),
                format!("metadata.labels: Invalid value: \"a b\": {VALUE_MSG}"),
            ]
        );
        let mut m = meta("ok", Some("default"));
        m.annotations = Some(
            [("big".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            render(validate_object_meta(&m, true, name_is_dns_subdomain, &md)),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
        m.annotations = Some(
            [("Example.COM/Key".to_string(), "x".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(validate_object_meta(&m, true, name_is_dns_subdomain, &md).is_empty());
    }
}

//! Validation of API objects with upstream's field errors and messages (what a 422 `Invalid` carries).
//!
//! Each `validate_*` function takes the object as the API server holds it
//! *after* defaulting (see [`crate::defaults`]) and returns every problem
//! found, in upstream's order, so the aggregate message matches a real
//! cluster's. An empty list means valid.

mod apps;
mod other;
mod pod;
mod service;

pub use apps::{
    validate_deployment, validate_deployment_status_update, validate_deployment_update,
    validate_replica_set, validate_replica_set_status_update, validate_replica_set_update,
};
pub use other::{
    validate_endpoint_slice, validate_endpoint_slice_update, validate_endpoints,
    validate_endpoints_update, validate_namespace, validate_namespace_update, validate_node,
    validate_node_update,
};
pub use pod::{
    validate_pod, validate_pod_create, validate_pod_spec, validate_pod_status_update,
    validate_pod_template_spec, validate_pod_update,
};
pub use service::{
    validate_service, validate_service_cluster_ips_related_fields, validate_service_status_update,
    validate_service_update,
};

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field_errors::{BadValue, ErrorList, FieldError, Path, go_quote};
use crate::names::{is_valid_port_name, is_valid_port_num};

/// Upstream's supported port protocols, sorted as `sets.List` sorts them.
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `Required` when empty, `Unsupported value` when not one of `valid`.
fn required_enum(value: Option<&str>, path: &Path, valid: &[&str]) -> ErrorList {
    match value.unwrap_or("") {
        "" => vec![FieldError::required(path, "")],
        v if valid.contains(&v) => Vec::new(),
        v => vec![FieldError::not_supported(path, v, valid)],
    }
}

/// Upstream `ValidatePortNumOrName`.
fn validate_port_num_or_name(port: &IntOrString, path: &Path) -> ErrorList {
    match port {
        IntOrString::Int(n) => is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| FieldError::invalid(path, *n, m))
            .collect(),
        IntOrString::String(s) => is_valid_port_name(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, s.as_str(), m))
            .collect(),
    }
}

const IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Upstream `IsValidIPForLegacyField` (non-strict mode).
fn validate_ip(value: &str, path: &Path) -> ErrorList {
    if value.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec![FieldError::invalid(path, value, IP_ERR)]
    }
}

/// Upstream `ValidateNonSpecialIP` / `ValidateEndpointIP`.
fn validate_non_special_ip(value: &str, path: &Path) -> ErrorList {
    let Ok(ip) = value.parse::<IpAddr>() else {
        return vec![FieldError::invalid(
            path,
            value,
            "must be a valid IP address",
        )];
    };
    let mut errs = ErrorList::new();
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be unspecified (0.0.0.0)",
        ));
    }
    if ip.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local, ll_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            ((s[0] & 0xffc0) == 0xfe80, (s[0] & 0xff0f) == 0xff02)
        }
    };
    if link_local {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if ll_multicast {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// Upstream `IsValidCIDRForLegacyField` (non-strict mode).
fn validate_cidr(value: &str, path: &Path) -> ErrorList {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32 && !bits.starts_with('+'),
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128 && !bits.starts_with('+'),
            _ => false,
        }
    });
    if ok {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    }
}

/// Go's `%#v` of a `map[string]string` (keys sorted, as fmt prints maps).
fn go_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

fn go_str_slice(v: Option<&Vec<String>>) -> String {
    match v {
        None => "[]string(nil)".into(),
        Some(v) => BadValue::StrList(v.clone()).to_string(),
    }
}

/// Go's `%#v` of a `v1.LabelSelector`, as upstream prints it in selector errors.
fn go_label_selector(ls: &LabelSelector) -> BadValue {
    let exprs = match &ls.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(e) => {
            let items: Vec<String> = e
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator),
                        go_str_slice(r.values.as_ref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    BadValue::Raw(format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_map(ls.match_labels.as_ref()),
        exprs
    ))
}

/// Go's `%v` of an `intstr.IntOrString` (its `String()`: bare, unquoted).
fn int_or_string_value(v: &IntOrString) -> BadValue {
    match v {
        IntOrString::Int(i) => BadValue::Int(i64::from(*i)),
        IntOrString::String(s) => BadValue::Raw(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ips() {
        let p = Path::new("spec").child("externalIPs").index(0);
        let cases = [
            ("1.2.3.4", vec![]),
            (
                "0.0.0.0",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)",
                ],
            ),
            (
                "127.0.0.1",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                ],
            ),
            (
                "169.254.1.1",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                ],
            ),
            (
                "224.0.0.5",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
                ],
            ),
            (
                "fe80::1",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"fe80::1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                ],
            ),
            (
                "ff02::1",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"ff02::1\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
                ],
            ),
            (
                "::1",
                vec![
                    "spec.externalIPs[0]: Invalid value: \"::1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                ],
            ),
            ("2001:db8::1", vec![]),
        ];
        for (ip, want) in cases {
            let got: Vec<String> = validate_non_special_ip(ip, &p)
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert_eq!(got, want, "{ip}");
        }
    }

    #[test]
    fn cidrs() {
        let p = Path::new("c");
        for ok in ["10.0.0.0/8", "10.244.1.0/24", "2001:db8::/64", "0.0.0.0/0"] {
            assert!(validate_cidr(ok, &p).is_empty(), "{ok}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129", "10.0.0.0/+8"] {
            assert_eq!(
                validate_cidr(bad, &p)
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>(),
                vec![format!(
                    "c: Invalid value: \"{bad}\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
                )]
            );
        }
    }

    #[test]
    fn go_renderings() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["x"]}]
        }))
        .expect("selector");
        assert_eq!(
            go_label_selector(&ls).to_string(),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"a":"1", "b":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"k", Operator:"In", Values:[]string{"x"}}}}"#
        );
        assert_eq!(
            go_label_selector(&LabelSelector::default()).to_string(),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }
}

//! Endpoints, EndpointSlice, Namespace and Node validation (upstream core and discovery validation).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints, Namespace, Node};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{PROTOCOLS, required_enum, validate_cidr, validate_ip, validate_non_special_ip};
use crate::field_errors::{ErrorList, FieldError, Path};
use crate::names::{
    is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name, name_is_dns_label,
    name_is_dns_subdomain, validate_dns1123_label, validate_labels, validate_object_meta,
    validate_object_meta_update, validate_qualified_name,
};

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_SLICE_ADDRESSES: usize = 100;
const MAX_SLICE_PORTS: usize = 20000;

fn validate_node_name_at(name: &str, path: &Path) -> ErrorList {
    is_dns1123_subdomain(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, name, m))
        .collect()
}

fn validate_endpoint_address(a: &EndpointAddress, path: &Path) -> ErrorList {
    let mut errs = validate_ip(&a.ip, &path.child("ip"));
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        errs.extend(validate_dns1123_label(h, &path.child("hostname")));
    }
    if let Some(n) = &a.node_name {
        errs.extend(validate_node_name_at(n, &path.child("nodeName")));
    }
    errs.extend(validate_non_special_ip(&a.ip, &path.child("ip")));
    errs
}

fn validate_endpoint_port(p: &EndpointPort, require_name: bool, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
    }
    for m in crate::names::is_valid_port_num(i64::from(p.port)) {
        errs.push(FieldError::invalid(&path.child("port"), p.port, m));
    }
    errs.extend(required_enum(
        p.protocol.as_deref(),
        &path.child("protocol"),
        PROTOCOLS,
    ));
    if let Some(ap) = &p.app_protocol {
        errs.extend(validate_qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

/// Upstream `ValidateEndpoints` (create). Note: like upstream, loopback and
/// link-local addresses are rejected.
pub fn validate_endpoints(ep: &Endpoints) -> ErrorList {
    let mut errs = validate_object_meta(
        &ep.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let sp = Path::new("subsets");
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let p = sp.index(i);
        let addrs = ss.addresses.as_deref().unwrap_or_default();
        let not_ready = ss.not_ready_addresses.as_deref().unwrap_or_default();
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            errs.extend(validate_endpoint_address(a, &p.child("addresses").index(j)));
        }
        for (j, a) in not_ready.iter().enumerate() {
            errs.extend(validate_endpoint_address(
                a,
                &p.child("notReadyAddresses").index(j),
            ));
        }
        let ports = ss.ports.as_deref().unwrap_or_default();
        for (j, port) in ports.iter().enumerate() {
            errs.extend(validate_endpoint_port(
                port,
                ports.len() > 1,
                &p.child("ports").index(j),
            ));
        }
    }
    errs
}

/// Upstream discovery `ValidateEndpointSlice`.
pub fn validate_endpoint_slice(es: &EndpointSlice) -> ErrorList {
    let mut errs = validate_object_meta(
        &es.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let at = es.address_type.as_str();
    errs.extend(required_enum(
        Some(at),
        &Path::new("addressType"),
        ADDRESS_TYPES,
    ));
    let ep = Path::new("endpoints");
    if es.endpoints.len() > MAX_SLICE_ENDPOINTS {
        errs.push(FieldError::too_many(
            &ep,
            es.endpoints.len() as i64,
            MAX_SLICE_ENDPOINTS as i64,
        ));
    }
    for (i, e) in es.endpoints.iter().enumerate() {
        let p = ep.index(i);
        let ap = p.child("addresses");
        if e.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if e.addresses.len() > MAX_SLICE_ADDRESSES {
            errs.push(FieldError::too_many(
                &ap,
                e.addresses.len() as i64,
                MAX_SLICE_ADDRESSES as i64,
            ));
        }
        for (j, addr) in e.addresses.iter().enumerate() {
            let aj = ap.index(j);
            match at {
                "IPv4" | "IPv6" => {
                    let ip_errs = validate_ip(addr, &aj);
                    if !ip_errs.is_empty() {
                        errs.extend(ip_errs);
                        continue;
                    }
                    let is_v4 = addr.parse::<std::net::Ipv4Addr>().is_ok();
                    if at == "IPv4" && !is_v4 {
                        errs.push(FieldError::invalid(
                            &ap,
                            addr.as_str(),
                            "must be an IPv4 address",
                        ));
                    }
                    if at == "IPv6" && is_v4 {
                        errs.push(FieldError::invalid(
                            &ap,
                            addr.as_str(),
                            "must be an IPv6 address",
                        ));
                    }
                    errs.extend(validate_non_special_ip(addr, &aj));
                }
                "FQDN" => errs.extend(validate_fqdn(addr, &aj)),
                _ => {}
            }
        }
        if let Some(n) = &e.node_name {
            errs.extend(validate_node_name_at(n, &p.child("nodeName")));
        }
        if let Some(t) = &e.deprecated_topology {
            errs.extend(validate_labels(t, &p.child("deprecatedTopology")));
        }
        if let Some(h) = &e.hostname {
            errs.extend(validate_dns1123_label(h, &p.child("hostname")));
        }
    }
    let pp = Path::new("ports");
    let ports = es.ports.as_deref().unwrap_or_default();
    if ports.len() > MAX_SLICE_PORTS {
        errs.push(FieldError::too_many(
            &pp,
            ports.len() as i64,
            MAX_SLICE_PORTS as i64,
        ));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = pp.index(i);
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(validate_dns1123_label(name, &p.child("name")));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        }
        match port.protocol.as_deref() {
            None => errs.push(FieldError::required(&p.child("protocol"), "")),
            Some(proto) if !PROTOCOLS.contains(&proto) => {
                errs.push(FieldError::not_supported(
                    &p.child("protocol"),
                    proto,
                    PROTOCOLS,
                ));
            }
            Some(_) => {}
        }
        if let Some(n) = port.port {
            for m in crate::names::is_valid_port_num(i64::from(n)) {
                errs.push(FieldError::invalid(&p.child("port"), n, m));
            }
        }
        if let Some(ap) = &port.app_protocol {
            errs.extend(validate_qualified_name(ap, &p.child("appProtocol")));
        }
    }
    errs
}

/// Upstream `ValidateEndpointsUpdate`: metadata rules plus [`validate_endpoints`].
pub fn validate_endpoints_update(new: &Endpoints, old: &Endpoints) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_endpoints(new));
    errs
}

/// Upstream `ValidateEndpointSliceUpdate`: metadata rules, the new slice
/// valid, and `addressType` immutable.
pub fn validate_endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_endpoint_slice(new));
    if new.address_type != old.address_type {
        errs.push(FieldError::invalid(
            &Path::new("addressType"),
            new.address_type.as_str(),
            crate::names::FIELD_IMMUTABLE,
        ));
    }
    errs
}

/// Upstream `IsFullyQualifiedDomainName`.
fn validate_fqdn(name: &str, path: &Path) -> ErrorList {
    if name.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        return vec![FieldError::invalid(path, name, msgs.join(","))];
    }
    if name.split('.').count() < 2 {
        return vec![FieldError::invalid(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        )];
    }
    for label in name.split('.') {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            return vec![FieldError::invalid(path, label, msgs.join(","))];
        }
    }
    Vec::new()
}

/// Upstream finalizer names: qualified names, with a domain unless they
/// are one of the standard ones.
fn validate_finalizer(name: &str, path: &Path) -> ErrorList {
    let mut errs: ErrorList = is_qualified_name(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, name, m))
        .collect();
    if errs.is_empty()
        && !name.contains('/')
        && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

/// Upstream `ValidateNamespace`: a DNS-1123 label name, no namespace of
/// its own, valid finalizers.
pub fn validate_namespace(ns: &Namespace) -> ErrorList {
    let mut errs = validate_object_meta(
        &ns.metadata,
        false,
        name_is_dns_label,
        &Path::new("metadata"),
    );
    let fp = Path::new("spec").child("finalizers");
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        errs.extend(validate_finalizer(f, &fp));
    }
    errs
}

/// Upstream `ValidateNamespaceUpdate` (metadata rules; spec changes go
/// through the finalize subresource).
pub fn validate_namespace_update(new: &Namespace, old: &Namespace) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_namespace(new));
    errs
}

fn validate_taints(taints: &[k8s_openapi::api::core::v1::Taint], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let tp = path.index(i);
        for m in is_qualified_name(&t.key) {
            errs.push(FieldError::invalid(&tp.child("key"), t.key.as_str(), m));
        }
        let value = t.value.as_deref().unwrap_or("");
        let msgs = is_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                &tp.child("value"),
                value,
                msgs.join(";"),
            ));
        }
        errs.extend(required_enum(
            Some(t.effect.as_str()),
            &tp.child("effect"),
            TAINT_EFFECTS,
        ));
        if !seen.insert((t.key.clone(), t.effect.clone())) {
            let mut e = FieldError::duplicate(
                &tp,
                crate::field_errors::BadValue::Raw(format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:<nil>}}",
                    crate::field_errors::go_quote(&t.key),
                    crate::field_errors::go_quote(value),
                    crate::field_errors::go_quote(&t.effect)
                )),
            );
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    errs
}

/// Upstream `ValidateNode` (the parts svcnet uses): name, taints, pod CIDRs.
pub fn validate_node(node: &Node) -> ErrorList {
    let md = Path::new("metadata");
    let mut errs = validate_object_meta(&node.metadata, false, name_is_dns_subdomain, &md);
    let Some(spec) = &node.spec else { return errs };
    // Upstream reports taints under `metadata`, not `spec`.
    errs.extend(validate_taints(
        spec.taints.as_deref().unwrap_or_default(),
        &md.child("taints"),
    ));
    let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
    let cp = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(validate_cidr(c, &cp.index(i)));
    }
    if cidrs.len() > 1 {
        let v4 = cidrs
            .iter()
            .filter(|c| {
                c.split('/')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            })
            .count();
        if cidrs.len() > 2 || v4 != 1 {
            errs.push(FieldError::invalid(
                &cp,
                cidrs.clone(),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c.clone()) {
                errs.push(FieldError::duplicate(&cp.index(i), c.as_str()));
            }
        }
    }
    errs
}

/// Upstream `ValidateNodeUpdate`: metadata rules, pod CIDRs and providerID
/// may only be set once, taints valid.
pub fn validate_node_update(new: &Node, old: &Node) -> ErrorList {
    let md = Path::new("metadata");
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata, &md);
    let empty = Default::default();
    let (ns, os) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );
    let old_cidrs = os.pod_cidrs.clone().unwrap_or_default();
    let new_cidrs = ns.pod_cidrs.clone().unwrap_or_default();
    let msg = "node updates may not change podCIDR except from \"\" to valid";
    if !old_cidrs.is_empty() {
        if old_cidrs.len() != new_cidrs.len() {
            errs.push(FieldError::forbidden(
                &Path::new("spec").child("podCIDRs"),
                msg,
            ));
        } else {
            for (a, b) in old_cidrs.iter().zip(&new_cidrs) {
                if a != b {
                    errs.push(FieldError::forbidden(
                        &Path::new("spec").child("podCIDRs"),
                        msg,
                    ));
                }
            }
        }
    }
    let old_pid = os.provider_id.as_deref().unwrap_or("");
    if !old_pid.is_empty() && old_pid != ns.provider_id.as_deref().unwrap_or("") {
        errs.push(FieldError::forbidden(
            &Path::new("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs.extend(validate_taints(
        ns.taints.as_deref().unwrap_or_default(),
        &md.child("taints"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{default_endpoint_slice, default_endpoints, default_namespace};
    use serde_json::{Value, json};

    fn render(errs: ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    fn endpoints(subsets: Value) -> Vec<String> {
        let mut ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"}, "subsets": subsets
        }))
        .expect("endpoints json");
        default_endpoints(&mut ep);
        render(validate_endpoints(&ep))
    }

    #[test]
    fn endpoints_cases() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!([{"addresses": [{"ip": "10.244.1.5", "nodeName": "n1"}], "ports": [{"port": 80}]}]),
                vec![],
            ),
            (
                json!([{"ports": [{"port": 80}]}]),
                vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"],
            ),
            (
                json!([{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}, {"name": "b", "port": 81}]}]),
                vec!["subsets[0].ports[0].name: Required value"],
            ),
            (
                json!([{"notReadyAddresses": [{"ip": "x"}]}]),
                vec![
                    r#"subsets[0].notReadyAddresses[0].ip: Invalid value: "x": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                    r#"subsets[0].notReadyAddresses[0].ip: Invalid value: "x": must be a valid IP address"#,
                ],
            ),
            (
                json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 0}]}]),
                vec![
                    r#"subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#,
                    "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
        ];
        for (subsets, want) in cases {
            assert_eq!(endpoints(subsets.clone()), want, "{subsets}");
        }
    }

    fn slice(v: Value) -> Vec<String> {
        let mut base = json!({"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4", "endpoints": []});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in o {
                b.insert(k.clone(), val.clone());
            }
        }
        let mut es: EndpointSlice = serde_json::from_value(base).expect("slice json");
        default_endpoint_slice(&mut es);
        render(validate_endpoint_slice(&es))
    }

    #[test]
    fn endpoint_slice_cases() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"}], "ports": [{"name": "http", "port": 80}]}),
                vec![],
            ),
            (json!({}), vec![]),
            (
                json!({"addressType": "IPX"}),
                vec![
                    r#"addressType: Unsupported value: "IPX": supported values: "FQDN", "IPv4", "IPv6""#,
                ],
            ),
            (
                json!({"endpoints": [{"addresses": []}]}),
                vec!["endpoints[0].addresses: Required value: must contain at least 1 address"],
            ),
            (
                json!({"endpoints": [{"addresses": ["fd00::1"]}]}),
                vec![
                    r#"endpoints[0].addresses: Invalid value: "fd00::1": must be an IPv4 address"#,
                ],
            ),
            (
                json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
                vec![r#"ports[1].name: Duplicate value: "a""#],
            ),
            (
                json!({"addressType": "FQDN", "endpoints": [{"addresses": ["example.com", "x"]}]}),
                vec![
                    r#"endpoints[0].addresses[1]: Invalid value: "x": should be a domain with at least two segments separated by dots"#,
                ],
            ),
            (
                json!({"endpoints": [{"addresses": ["10.0.0.1"], "hostname": "Web"}]}),
                vec![
                    r#"endpoints[0].hostname: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
                ],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(slice(v.clone()), want, "{v}");
        }
        let mut old: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "resourceVersion": "1"},
            "addressType": "IPv4", "endpoints": []
        }))
        .expect("slice");
        default_endpoint_slice(&mut old);
        let mut new = old.clone();
        new.address_type = "IPv6".into();
        assert_eq!(
            render(validate_endpoint_slice_update(&new, &old)),
            vec![r#"addressType: Invalid value: "IPv6": field is immutable"#]
        );
        let many: Vec<Value> = (0..101)
            .map(|i| json!(format!("10.0.{}.{}", i / 250, i % 250 + 1)))
            .collect();
        assert_eq!(
            slice(json!({"endpoints": [{"addresses": many}]})),
            vec!["endpoints[0].addresses: Too many: 101: must have at most 100 items"]
        );
    }

    #[test]
    fn namespaces() {
        let mk = |name: &str| {
            let mut ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "resourceVersion": "1"}}))
                    .expect("ns json");
            default_namespace(&mut ns);
            ns
        };
        assert_eq!(
            render(validate_namespace(&mk("team-a"))),
            Vec::<String>::new()
        );
        assert_eq!(
            render(validate_namespace(&mk("team.a"))),
            vec![r#"metadata.name: Invalid value: "team.a": must not contain dots"#]
        );
        let mut ns = mk("x");
        ns.metadata.namespace = Some("default".into());
        assert_eq!(
            render(validate_namespace(&ns)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let mut ns = mk("x");
        if let Some(s) = ns.spec.as_mut() {
            s.finalizers = Some(vec!["custom".into()]);
        }
        assert_eq!(
            render(validate_namespace(&ns)),
            vec![
                r#"spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
            ]
        );
        let old = mk("x");
        let mut renamed = old.clone();
        renamed.metadata.name = Some("y".into());
        assert_eq!(
            render(validate_namespace_update(&renamed, &old)),
            vec![r#"metadata.name: Invalid value: "y": field is immutable"#]
        );
    }

    #[test]
    fn nodes() {
        let mk = |v: Value| -> Node { serde_json::from_value(v).expect("node json") };
        assert_eq!(
            render(validate_node(&mk(
                json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}})
            ))),
            Vec::<String>::new()
        );
        assert_eq!(
            render(validate_node(&mk(
                json!({"metadata": {"name": "node-1"}, "spec": {"podCIDRs": ["10.244.1.0"], "taints": [{"key": "k", "effect": "Sometimes"}]}})
            ))),
            vec![
                r#"metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#,
                r#"spec.podCIDRs[0]: Invalid value: "10.244.1.0": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
            ]
        );
        assert_eq!(
            render(validate_node(&mk(
                json!({"metadata": {"name": "n"}, "spec": {
                "podCIDRs": ["10.244.1.0/24", "10.244.2.0/24"],
                "taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule", "value": "v"}]}})
            ))),
            vec![
                r#"metadata.taints[1]: Duplicate value: core.Taint{Key:"k", Value:"v", Effect:"NoSchedule", TimeAdded:<nil>}: taints must be unique by key and effect pair"#,
                r#"spec.podCIDRs: Invalid value: []string{"10.244.1.0/24", "10.244.2.0/24"}: may specify no more than one CIDR for each IP family"#,
            ]
        );
        let old = mk(
            json!({"metadata": {"name": "n", "resourceVersion": "1"}, "spec": {"podCIDRs": ["10.244.1.0/24"], "providerID": "p1"}}),
        );
        let unset = mk(json!({"metadata": {"name": "n", "resourceVersion": "1"}}));
        assert_eq!(
            render(validate_node_update(&old, &unset)),
            Vec::<String>::new()
        );
        let changed = mk(
            json!({"metadata": {"name": "n", "resourceVersion": "1"}, "spec": {"podCIDRs": ["10.244.9.0/24"], "providerID": "p2"}}),
        );
        assert_eq!(
            render(validate_node_update(&changed, &old)),
            vec![
                r#"spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid"#,
                r#"spec.providerID: Forbidden: node updates may not change providerID except from "" to valid"#,
            ]
        );
        assert_eq!(
            render(validate_node(&mk(json!({"metadata": {"name": "Node_1"}})))),
            vec![
                r#"metadata.name: Invalid value: "Node_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
    }
}

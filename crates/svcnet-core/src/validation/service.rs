//! Service validation (upstream `ValidateService` / `ValidateServiceUpdate`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::{
    PROTOCOLS, required_enum, validate_ip, validate_non_special_ip, validate_port_num_or_name,
};
use crate::field_errors::{BadValue, ErrorList, FieldError, Path};
use crate::names::{
    is_valid_port_num, name_is_dns1035_label, validate_dns1123_label, validate_dns1123_subdomain,
    validate_labels, validate_object_meta, validate_object_meta_update, validate_qualified_name,
};

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const TRAFFIC_DISTRIBUTIONS: &[&str] = &["PreferClose"];
/// Upstream `MaxClientIPServiceAffinitySeconds`.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;

fn spec_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("")
}

fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    spec.cluster_ips.clone().unwrap_or_default()
}

/// Upstream `isHeadlessService`: exactly `clusterIPs: [None]`.
fn is_headless(spec: &ServiceSpec) -> bool {
    matches!(spec.cluster_ips.as_deref(), Some([only]) if only == "None")
}

fn externally_accessible(spec: &ServiceSpec) -> bool {
    matches!(spec_type(spec), "NodePort" | "LoadBalancer")
        || (spec_type(spec) == "ClusterIP"
            && spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()))
}

fn needs_health_check(spec: &ServiceSpec) -> bool {
    spec_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// Go's `%#v` of the `core.ServicePort{Protocol, Port}` key upstream reports
/// for duplicate ports.
fn port_key(p: &ServicePort) -> BadValue {
    BadValue::Raw(format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        crate::field_errors::go_quote(p.protocol.as_deref().unwrap_or("")),
        p.port
    ))
}

fn validate_service_port(
    sp: &ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = sp.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&path.child("name"), name));
        }
    }
    for m in is_valid_port_num(i64::from(sp.port)) {
        errs.push(FieldError::invalid(&path.child("port"), sp.port, m));
    }
    errs.extend(required_enum(
        sp.protocol.as_deref(),
        &path.child("protocol"),
        PROTOCOLS,
    ));
    if let Some(tp) = &sp.target_port {
        errs.extend(validate_port_num_or_name(tp, &path.child("targetPort")));
    }
    if let Some(ap) = &sp.app_protocol {
        errs.extend(validate_qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

fn validate_client_ip_affinity(spec: &ServiceSpec, path: &Path) -> ErrorList {
    let detail = "when session affinity type is ClientIP";
    let Some(cfg) = &spec.session_affinity_config else {
        return vec![FieldError::required(path, detail)];
    };
    let Some(cip) = &cfg.client_ip else {
        return vec![FieldError::required(&path.child("clientIP"), detail)];
    };
    let tpath = path.child("clientIP").child("timeoutSeconds");
    match cip.timeout_seconds {
        None => vec![FieldError::required(&tpath, detail)],
        Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => vec![FieldError::invalid(
            &tpath,
            t,
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )],
        Some(_) => Vec::new(),
    }
}

/// Upstream `ValidateServiceClusterIPsRelatedFields`.
pub fn validate_service_cluster_ips_related_fields(spec: &ServiceSpec) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec_type(spec) == "ExternalName" {
        return errs;
    }
    let sp = Path::new("spec");
    let ips_path = sp.child("clusterIPs");
    let ips = cluster_ips(spec);
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    if !ip.is_empty() {
        match ips.first() {
            None => errs.push(FieldError::required(&ips_path, "")),
            Some(first) if first != ip => {
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips.clone(),
                    "first value must match `clusterIP`",
                ));
            }
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, fam) in spec.ip_families.iter().flatten().enumerate() {
        let p = sp.child("ipFamilies").index(i);
        if !IP_FAMILIES.contains(&fam.as_str()) {
            errs.push(FieldError::not_supported(&p, fam.as_str(), IP_FAMILIES));
        }
        if !seen.insert(fam.clone()) {
            errs.push(FieldError::duplicate(&p, fam.as_str()));
        }
    }
    if let Some(policy) = &spec.ip_family_policy
        && !IP_FAMILY_POLICIES.contains(&policy.as_str())
    {
        errs.push(FieldError::not_supported(
            &sp.child("ipFamilyPolicy"),
            policy.as_str(),
            IP_FAMILY_POLICIES,
        ));
    }
    let mut invalid_ips = false;
    for (i, cip) in ips.iter().enumerate() {
        if i == 0 && cip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let e = validate_ip(cip, &ips_path.index(i));
        invalid_ips |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips.clone(),
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v4 = ips
            .iter()
            .filter(|s| s.parse::<std::net::Ipv4Addr>().is_ok())
            .count();
        let dual = ips.len() == 2 && v4 == 1;
        if !dual {
            errs.push(FieldError::invalid(
                &ips_path,
                ips.clone(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) {
        let fams = spec.ip_families.clone().unwrap_or_default();
        for (i, cip) in ips.iter().enumerate() {
            let Some(fam) = fams.get(i) else { break };
            let is_v6 = cip.parse::<std::net::Ipv6Addr>().is_ok();
            if fam == "IPv4" && is_v6 {
                errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    cip.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == "IPv6" && !is_v6 {
                errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    cip.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn validate_traffic_policies(spec: &ServiceSpec) -> ErrorList {
    let mut errs = ErrorList::new();
    let sp = Path::new("spec");
    let etp = spec.external_traffic_policy.as_deref().unwrap_or("");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                &sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        errs.extend(required_enum(
            Some(etp),
            &sp.child("externalTrafficPolicy"),
            TRAFFIC_POLICIES,
        ));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                &sp.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Upstream also requires it here, but its allocator has always set
        // it by then; svcnet validates before allocating, so 0 means "to be
        // allocated".
        for m in is_valid_port_num(i64::from(hc)) {
            errs.push(FieldError::invalid(&sp.child("healthCheckNodePort"), hc, m));
        }
    }
    let itp_path = sp.child("internalTrafficPolicy");
    match &spec.internal_traffic_policy {
        None => {
            if matches!(spec_type(spec), "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(FieldError::required(&itp_path, ""));
            }
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p.as_str()) => {
            errs.push(FieldError::not_supported(
                &itp_path,
                p.as_str(),
                TRAFFIC_POLICIES,
            ));
        }
        Some(_) => {}
    }
    if let Some(td) = &spec.traffic_distribution
        && !TRAFFIC_DISTRIBUTIONS.contains(&td.as_str())
    {
        errs.push(FieldError::not_supported(
            &sp.child("trafficDistribution"),
            td.as_str(),
            TRAFFIC_DISTRIBUTIONS,
        ));
    }
    errs
}

/// Upstream `ValidateService`, for a defaulted Service.
pub fn validate_service(svc: &Service) -> ErrorList {
    let mut errs = validate_object_meta(
        &svc.metadata,
        true,
        name_is_dns1035_label,
        &Path::new("metadata"),
    );
    let empty = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    let ports: &[ServicePort] = spec.ports.as_deref().unwrap_or_default();
    let headless = is_headless(spec);
    let ty = spec_type(spec);

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(&sp.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" if headless => {
            errs.push(FieldError::invalid(
                &sp.child("clusterIPs").index(0),
                "None",
                "may not be set to 'None' for LoadBalancer services",
            ));
        }
        "NodePort" if headless => {
            errs.push(FieldError::invalid(
                &sp.child("clusterIPs").index(0),
                "None",
                "may not be set to 'None' for NodePort services",
            ));
        }
        "ExternalName" => {
            if spec.cluster_ips.as_ref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::forbidden(
                    &sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::forbidden(
                    &sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    &sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // A trailing dot marks the CNAME target as fully qualified.
            let raw = spec.external_name.as_deref().unwrap_or("");
            let cname = raw.strip_suffix('.').unwrap_or(raw);
            if cname.is_empty() {
                errs.push(FieldError::required(&sp.child("externalName"), ""));
            } else {
                errs.extend(validate_dns1123_subdomain(cname, &sp.child("externalName")));
            }
        }
        _ => {}
    }

    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &sp.child("ports").index(i),
        ));
    }
    if let Some(sel) = &spec.selector {
        errs.extend(validate_labels(sel, &sp.child("selector")));
    }
    let affinity = spec.session_affinity.as_deref().unwrap_or("");
    errs.extend(required_enum(
        Some(affinity),
        &sp.child("sessionAffinity"),
        AFFINITIES,
    ));
    if affinity == "ClientIP" {
        errs.extend(validate_client_ip_affinity(
            spec,
            &sp.child("sessionAffinityConfig"),
        ));
    } else if affinity == "None" && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            &sp.child("sessionAffinityConfig"),
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_service_cluster_ips_related_fields(spec));
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let p = sp.child("externalIPs").index(i);
        let e = validate_ip(ip, &p);
        if e.is_empty() {
            errs.extend(validate_non_special_ip(ip, &p));
        } else {
            errs.extend(e);
        }
    }
    errs.extend(required_enum(Some(ty), &sp.child("type"), SERVICE_TYPES));
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    &sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((p.protocol.clone(), np)) {
            errs.push(FieldError::duplicate(
                &sp.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut seen_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        if !seen_ports.insert((p.protocol.clone(), p.port)) {
            errs.push(FieldError::duplicate(
                &sp.child("ports").index(i),
                port_key(p),
            ));
        }
    }
    if spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        // Upstream spells this path with a capital L.
        let p = sp.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .enumerate()
        {
            errs.extend(super::validate_cidr(r.trim(), &p.index(i)));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        // Upstream reports this at a root path.
        errs.push(FieldError::required(
            &Path::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    if let Some(class) = &spec.load_balancer_class {
        let p = sp.child("loadBalancerClass");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        } else {
            errs.extend(validate_qualified_name(class, &p));
        }
    }
    errs.extend(validate_traffic_policies(spec));
    errs
}

/// Go's `%v` of a `*IPFamilyPolicy` / `*string`: `null` or the quoted value.
fn opt_str(v: Option<&String>) -> BadValue {
    match v {
        Some(s) => BadValue::Str(s.clone()),
        None => BadValue::Null,
    }
}

fn validate_upgrade_downgrade_cluster_ips(old: &ServiceSpec, new: &ServiceSpec) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec_type(new) == "ExternalName" || spec_type(old) == "ExternalName" {
        return errs;
    }
    if is_headless(old) && is_headless(new) {
        return errs;
    }
    let (o, n) = (cluster_ips(old), cluster_ips(new));
    let ips_path = Path::new("spec").child("clusterIPs");
    let p0 = ips_path.index(0);
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    n.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid(
                &p0,
                n.clone(),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                &p0,
                n.clone(),
                "may not change once set",
            ));
        }
        if n.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                &Path::new("spec").child("ipFamilyPolicy"),
                opt_str(new.ip_family_policy.as_ref()),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(
            &p0,
            n.clone(),
            "may not change once set",
        ));
    }
    errs
}

fn validate_upgrade_downgrade_ip_families(old: &ServiceSpec, new: &ServiceSpec) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec_type(new) == "ExternalName" || spec_type(old) == "ExternalName" {
        return errs;
    }
    // Changing to or from headless, or staying headless, may change families.
    if is_headless(old) || is_headless(new) {
        return errs;
    }
    let (o, n) = (
        old.ip_families.clone().unwrap_or_default(),
        new.ip_families.clone().unwrap_or_default(),
    );
    let p0 = Path::new("spec").child("ipFamilies").index(0);
    let new_ips = cluster_ips(new);
    if o.len() == n.len() {
        for (a, b) in o.iter().zip(&n) {
            if a != b {
                errs.push(FieldError::invalid(
                    &p0,
                    n.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        // Upstream tests clusterIPs here, not ipFamilies.
        if new_ips.is_empty() {
            errs.push(FieldError::invalid(
                &p0,
                n.clone(),
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                &p0,
                new_ips.clone(),
                "may not change once set",
            ));
        }
        if n.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                &Path::new("spec").child("ipFamilyPolicy"),
                opt_str(new.ip_family_policy.as_ref()),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(&p0, new_ips, "may not change once set"));
    }
    errs
}

/// Upstream `ValidateServiceUpdate`: metadata update rules, cluster IPs and
/// IP families may not change (except to, from or on ExternalName), the
/// loadBalancerClass and healthCheckNodePort of a LoadBalancer are fixed,
/// plus everything [`validate_service`] checks on the new object.
pub fn validate_service_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let empty = ServiceSpec::default();
    let (ns, os) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );
    errs.extend(validate_upgrade_downgrade_cluster_ips(os, ns));
    errs.extend(validate_upgrade_downgrade_ip_families(os, ns));
    let class_path = Path::new("spec").child("loadBalancerClass");
    if spec_type(os) == "LoadBalancer" && spec_type(ns) == "LoadBalancer" {
        if os.load_balancer_class != ns.load_balancer_class {
            errs.push(FieldError::invalid(
                &class_path,
                opt_str(ns.load_balancer_class.as_ref()),
                "may not change once set",
            ));
        }
        // Upstream checks the format here as well as in validate_service.
        if let Some(class) = &ns.load_balancer_class {
            errs.extend(validate_qualified_name(class, &class_path));
        }
    } else if spec_type(ns) != "LoadBalancer" && ns.load_balancer_class.is_some() {
        errs.push(FieldError::forbidden(
            &class_path,
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if needs_health_check(os)
        && needs_health_check(ns)
        && os.health_check_node_port != ns.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            &Path::new("spec").child("healthCheckNodePort"),
            crate::names::FIELD_IMMUTABLE,
        ));
    }
    errs.extend(validate_service(new));
    errs
}

/// Upstream `ValidateServiceStatusUpdate` / `ValidateLoadBalancerStatus`:
/// ingress entries only for LoadBalancer Services, valid IPs with an
/// `ipMode` (default it with [`crate::defaults::default_load_balancer_status`]),
/// DNS hostnames that are not IPs.
pub fn validate_service_status_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let empty = ServiceSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let ingress = new
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    let ip = Path::new("status").child("loadBalancer").child("ingress");
    if spec_type(spec) != "LoadBalancer" && !ingress.is_empty() {
        errs.push(FieldError::forbidden(
            &ip,
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return errs;
    }
    for (i, ing) in ingress.iter().enumerate() {
        let p = ip.index(i);
        let addr = ing.ip.as_deref().unwrap_or("");
        if !addr.is_empty() {
            errs.extend(validate_ip(addr, &p.child("ip")));
        }
        match (&ing.ip_mode, addr.is_empty()) {
            (Some(_), true) => {
                errs.push(FieldError::forbidden(
                    &p.child("ipMode"),
                    "may not be set when `ip` is not set",
                ));
            }
            (Some(m), false) if !["Proxy", "VIP"].contains(&m.as_str()) => {
                errs.push(FieldError::not_supported(
                    &p.child("ipMode"),
                    m.as_str(),
                    &["Proxy", "VIP"],
                ));
            }
            (None, false) => {
                errs.push(FieldError::required(
                    &p.child("ipMode"),
                    "must be specified when `ip` is set",
                ));
            }
            _ => {}
        }
        let host = ing.hostname.as_deref().unwrap_or("");
        if !host.is_empty() {
            for m in crate::names::is_dns1123_subdomain(host) {
                errs.push(FieldError::invalid(&p.child("hostname"), host, m));
            }
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    &p.child("hostname"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::default_service;
    use serde_json::{Value, json};

    fn svc(spec: Value) -> Service {
        let mut s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": spec
        }))
        .expect("service json");
        default_service(&mut s);
        // As the registry on a single-stack IPv4 cluster; its errors are
        // not the subject here (validation reports the same inputs).
        let _ = crate::defaults::init_service_ip_families(&mut s, None, &["IPv4"]);
        s
    }

    fn check(spec: Value) -> Vec<String> {
        validate_service(&svc(spec))
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn valid_services() {
        let cases = vec![
            json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
            json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}]}),
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            json!({"type": "LoadBalancer", "ports": [{"port": 80}], "externalTrafficPolicy": "Local", "healthCheckNodePort": 30100}),
            json!({"type": "ExternalName", "externalName": "example.com."}),
            json!({"clusterIP": "None", "selector": {"app": "db"}}),
            json!({"clusterIP": "10.96.0.20", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
            json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}),
            json!({"ports": [{"port": 80}], "externalIPs": ["192.0.2.10"], "externalTrafficPolicy": "Local"}),
            json!({"ports": [{"port": 80, "protocol": "SCTP", "appProtocol": "kubernetes.io/h2c"}], "internalTrafficPolicy": "Local"}),
        ];
        for spec in cases {
            assert_eq!(check(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn invalid_services() {
        let cases: Vec<(Value, Vec<String>)> = vec![
            (json!({"ports": [{"port": 0}]}), vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
            ]),
            (json!({"ports": [{"port": 70000, "targetPort": 80}]}), vec![
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
            ]),
            (json!({}), vec!["spec.ports: Required value".into()]),
            (json!({"ports": [{"port": 80}, {"port": 81}]}), vec![
                "spec.ports[0].name: Required value".into(),
                "spec.ports[1].name: Required value".into(),
            ]),
            (json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}), vec![
                r#"spec.ports[1].name: Duplicate value: "a""#.into(),
            ]),
            (json!({"ports": [{"name": "Web", "port": 80}]}), vec![
                format!(r#"spec.ports[0].name: Invalid value: "Web": {LABEL_MSG}"#),
            ]),
            (json!({"ports": [{"port": 80, "protocol": "HTTP"}]}), vec![
                r#"spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#.into(),
            ]),
            (json!({"ports": [{"port": 80, "targetPort": "my--port"}]}), vec![
                r#"spec.ports[0].targetPort: Invalid value: "my--port": must not contain consecutive hyphens"#.into(),
            ]),
            (json!({"ports": [{"port": 80, "targetPort": 99999}]}), vec![
                "spec.ports[0].targetPort: Invalid value: 99999: must be between 1 and 65535, inclusive".into(),
            ]),
            (json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}), vec![
                r#"spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}"#.into(),
            ]),
            (json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30001}]}), vec![
                "spec.ports[1].nodePort: Duplicate value: 30001".into(),
            ]),
            (json!({"type": "Foo", "ports": [{"port": 80}]}), vec![
                r#"spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#.into(),
            ]),
            (json!({"ports": [{"port": 80, "nodePort": 30080}]}), vec![
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into(),
            ]),
            (json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}), vec![
                r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#.into(),
            ]),
            (json!({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 10250}]}), vec![
                r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for LoadBalancer services"#.into(),
            ]),
            (json!({"type": "ExternalName"}), vec!["spec.externalName: Required value".into()]),
            (json!({"type": "ExternalName", "externalName": "Bad_Name"}), vec![
                r#"spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#.into(),
            ]),
            (json!({"type": "ExternalName", "externalName": "a.b", "clusterIP": "10.96.0.5"}), vec![
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services".into(),
            ]),
            (json!({"ports": [{"port": 80}], "sessionAffinity": "Sticky"}), vec![
                r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}), vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400".into(),
            ]),
            (json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": -1}}}), vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: -1: must be greater than 0 and less than 86400".into(),
            ]),
            (json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}), vec![
                r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#.into(),
            ]),
            (json!({"type": "NodePort", "ports": [{"port": 80}], "externalTrafficPolicy": "Nearest"}), vec![
                r#"spec.externalTrafficPolicy: Unsupported value: "Nearest": supported values: "Cluster", "Local""#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "internalTrafficPolicy": "Node"}), vec![
                r#"spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local""#.into(),
            ]),
            (json!({"type": "NodePort", "ports": [{"port": 80}], "healthCheckNodePort": 30100}), vec![
                "spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'".into(),
            ]),
            (json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.300"}), vec![
                r#"spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.2"]}), vec![
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.2"}: first value must match `clusterIP`"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "clusterIPs": ["10.96.0.2"]}), vec![
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.2"}: must be empty when `clusterIP` is not specified"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "10.96.0.2"], "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}), vec![
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.1", "10.96.0.2"}: may specify no more than one IP for each IP family"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "ipFamilies": ["IPv5"]}), vec![
                r#"spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6""#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "ipFamilyPolicy": "Sometimes"}), vec![
                r#"spec.ipFamilyPolicy: Unsupported value: "Sometimes": supported values: "PreferDualStack", "RequireDualStack", "SingleStack""#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "externalIPs": ["127.0.0.1", "nope"]}), vec![
                r#"spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#.into(),
                r#"spec.externalIPs[1]: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "selector": {"app": "a b"}}), vec![
                r#"spec.selector: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#.into(),
            ]),
            (json!({"type": "LoadBalancer", "ports": [{"port": 80}], "externalTrafficPolicy": "Local", "healthCheckNodePort": 70000}), vec![
                "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
            ]),
            (json!({"type": "LoadBalancer", "ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0"]}), vec![
                r#"spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#.into(),
            ]),
            (json!({"ports": [{"port": 80}], "loadBalancerClass": "example.com/lb"}), vec![
                "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'".into(),
            ]),
            (json!({"ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8"]}), vec![
                "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'".into(),
            ]),
        ];
        for (spec, want) in cases {
            assert_eq!(check(spec.clone()), want, "{spec}");
        }
    }

    #[test]
    fn invalid_name_message() {
        let mut s = svc(json!({"ports": [{"port": 0}]}));
        s.metadata.name = Some("1web".into());
        let errs = validate_service(&s);
        assert_eq!(
            crate::field_errors::invalid_message("Service", "1web", &errs),
            "Service \"1web\" is invalid: [metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?'), spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]"
        );
    }

    fn allocated(spec: Value) -> Service {
        let mut s = svc(spec);
        if let Some(sp) = s.spec.as_mut()
            && sp.cluster_ip.is_none()
            && sp.type_.as_deref() != Some("ExternalName")
        {
            sp.cluster_ip = Some("10.96.0.10".into());
            sp.cluster_ips = Some(vec!["10.96.0.10".into()]);
        }
        s
    }

    #[test]
    fn status_updates() {
        let old =
            allocated(json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]}));
        let with = |ing: Value| {
            let mut s = old.clone();
            s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": ing}})).ok();
            s
        };
        let mut good = with(json!([{"ip": "192.0.2.10"}]));
        crate::defaults::default_load_balancer_status(&mut good);
        assert_eq!(validate_service_status_update(&good, &old), Vec::new());
        let got: Vec<String> = validate_service_status_update(
            &with(json!([{"ip": "192.0.2.10"}, {"ipMode": "VIP"}, {"ip": "bad", "ipMode": "Tunnel"}, {"hostname": "10.0.0.1"}])),
            &old,
        )
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(
            got,
            vec![
                "status.loadBalancer.ingress[0].ipMode: Required value: must be specified when `ip` is set",
                "status.loadBalancer.ingress[1].ipMode: Forbidden: may not be set when `ip` is not set",
                r#"status.loadBalancer.ingress[2].ip: Invalid value: "bad": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                r#"status.loadBalancer.ingress[2].ipMode: Unsupported value: "Tunnel": supported values: "Proxy", "VIP""#,
                r#"status.loadBalancer.ingress[3].hostname: Invalid value: "10.0.0.1": must be a DNS name, not an IP address"#,
            ]
        );
        let mut cip = allocated(json!({"ports": [{"port": 80}]}));
        cip.status = good.status.clone();
        let got: Vec<String> = validate_service_status_update(&cip, &cip)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
            ]
        );
    }

    #[test]
    fn updates() {
        let old = allocated(json!({"ports": [{"port": 80}]}));
        // Unchanged: valid.
        assert_eq!(validate_service_update(&old, &old), Vec::new());
        // clusterIP change: rejected.
        let mut new = old.clone();
        if let Some(sp) = new.spec.as_mut() {
            sp.cluster_ip = Some("10.96.0.11".into());
            sp.cluster_ips = Some(vec!["10.96.0.11".into()]);
        }
        let got: Vec<String> = validate_service_update(&new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set"#
            ]
        );
        // To ExternalName: the server drops what ClusterIP owned: valid.
        let mut ext = old.clone();
        if let Some(sp) = ext.spec.as_mut() {
            sp.type_ = Some("ExternalName".into());
            sp.external_name = Some("example.com".into());
        }
        crate::defaults::default_service_update(&mut ext, &old);
        assert_eq!(validate_service_update(&ext, &old), Vec::new());
        // ... unless the user also sets a clusterIP.
        let mut bad = ext.clone();
        if let Some(sp) = bad.spec.as_mut() {
            sp.cluster_ip = Some("10.96.0.30".into());
        }
        crate::defaults::default_service_update(&mut bad, &ext);
        let got: Vec<String> = validate_service_update(&bad, &ext)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
        );
        // From ExternalName back to ClusterIP with a new IP: valid.
        let back = allocated(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.12"}));
        assert_eq!(validate_service_update(&back, &ext), Vec::new());
        // LoadBalancer: class and health-check port are fixed.
        let lb_old = allocated(
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}],
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 30100, "loadBalancerClass": "a.io/x"}),
        );
        let mut lb_new = lb_old.clone();
        if let Some(sp) = lb_new.spec.as_mut() {
            sp.health_check_node_port = Some(30101);
            sp.load_balancer_class = Some("b.io/y".into());
        }
        let got: Vec<String> = validate_service_update(&lb_new, &lb_old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.loadBalancerClass: Invalid value: "b.io/y": may not change once set"#,
                "spec.healthCheckNodePort: Forbidden: field is immutable",
            ]
        );
        // Releasing the secondary IP needs SingleStack.
        let mut dual = old.clone();
        if let Some(sp) = dual.spec.as_mut() {
            sp.cluster_ips = Some(vec!["10.96.0.10".into(), "fd00::10".into()]);
            sp.ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
            sp.ip_family_policy = Some("PreferDualStack".into());
        }
        let mut single = dual.clone();
        if let Some(sp) = single.spec.as_mut() {
            sp.cluster_ips = Some(vec!["10.96.0.10".into()]);
            sp.ip_families = Some(vec!["IPv4".into()]);
        }
        let got: Vec<String> = validate_service_update(&single, &dual)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be set to 'SingleStack' when releasing the secondary clusterIP"#,
                r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be set to 'SingleStack' when releasing the secondary ipFamily"#,
            ]
        );
        // Name change is rejected.
        let mut renamed = old.clone();
        renamed.metadata.name = Some("other".into());
        let got: Vec<String> = validate_service_update(&renamed, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![r#"metadata.name: Invalid value: "other": field is immutable"#]
        );
        // IP family change is rejected.
        let mut fam = old.clone();
        if let Some(sp) = fam.spec.as_mut() {
            sp.ip_families = Some(vec!["IPv6".into()]);
        }
        let got: Vec<String> = validate_service_update(&fam, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got[0],
            r#"spec.ipFamilies[0]: Invalid value: []string{"IPv6"}: may not change once set"#
        );
    }
}

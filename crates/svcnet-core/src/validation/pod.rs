//! Pod and pod-template validation (upstream `ValidatePodCreate`, `ValidatePodSpec`, `ValidatePodUpdate`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, LifecycleHandler, Pod, PodSpec, PodTemplateSpec, Probe,
    Volume,
};

use super::{PROTOCOLS, validate_ip, validate_port_num_or_name};
use crate::field_errors::{BadValue, ErrorList, FieldError, Path};
use crate::names::{
    inclusive_range_error, is_dns1123_subdomain, is_dns1123_subdomain_with_underscore,
    is_valid_port_name, is_valid_port_num, name_is_dns_subdomain, validate_annotations,
    validate_dns1123_label, validate_labels, validate_nonnegative, validate_object_meta,
    validate_object_meta_update,
};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const HTTP_SCHEMES: &[&str] = &["HTTP", "HTTPS"];
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `Required` when empty, `Unsupported value` (in the given order) otherwise.
fn enum_field(value: Option<&str>, path: &Path, valid: &[&str]) -> ErrorList {
    match value.unwrap_or("") {
        "" => vec![FieldError::required(path, "")],
        v if valid.contains(&v) => Vec::new(),
        v => vec![FieldError::not_supported(path, v, valid)],
    }
}

/// Volume names and exactly one source each; returns the known names.
fn validate_volumes(volumes: &[Volume], path: &Path) -> (BTreeSet<String>, ErrorList) {
    let mut names = BTreeSet::new();
    let mut errs = ErrorList::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        if v.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            errs.extend(validate_dns1123_label(&v.name, &p.child("name")));
        }
        if !v.name.is_empty() && !names.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(&p.child("name"), v.name.as_str()));
        }
        // Count the sources through the wire form: every key but `name` is one.
        let sources: Vec<String> = match serde_json::to_value(v) {
            Ok(serde_json::Value::Object(m)) => {
                m.keys().filter(|k| *k != "name").cloned().collect()
            }
            _ => Vec::new(),
        };
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&p, "must specify a volume type")),
            [_] => {}
            [_, extra, ..] => errs.push(FieldError::forbidden(
                &p.child(extra),
                "may not specify more than 1 volume type",
            )),
        }
    }
    (names, errs)
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(&p.child("name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(&p.child("containerPort"), ""));
        } else {
            for m in is_valid_port_num(i64::from(port.container_port)) {
                errs.push(FieldError::invalid(
                    &p.child("containerPort"),
                    port.container_port,
                    m,
                ));
            }
        }
        let hp = port.host_port.unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(i64::from(hp)) {
                errs.push(FieldError::invalid(&p.child("hostPort"), hp, m));
            }
        }
        let mut sorted = PROTOCOLS.to_vec();
        sorted.sort_unstable();
        errs.extend(enum_field(
            port.protocol.as_deref(),
            &p.child("protocol"),
            &sorted,
        ));
    }
    errs
}

/// Upstream `ValidateEnv` with relaxed names (printable ASCII but `=`), the
/// 1.33 default.
fn validate_env(env: &[EnvVar], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
            errs.push(FieldError::invalid(
                &p.child("name"),
                "",
                "environment variable name must be non-empty",
            ));
        } else if ev
            .name
            .chars()
            .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
        {
            errs.push(FieldError::invalid(
                &p.child("name"),
                ev.name.as_str(),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if let Some(vf) = &ev.value_from {
            let vp = p.child("valueFrom");
            let n = [
                vf.field_ref.is_some(),
                vf.resource_field_ref.is_some(),
                vf.config_map_key_ref.is_some(),
                vf.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if let Some(fr) = &vf.field_ref {
                let fp = vp.child("fieldRef");
                if fr.api_version.as_deref().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(&fp.child("apiVersion"), ""));
                } else if fr.field_path.is_empty() {
                    errs.push(FieldError::required(&fp.child("fieldPath"), ""));
                }
            }
            if n == 0 {
                errs.push(FieldError::invalid(
                    &vp,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            } else if ev.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    &vp,
                    "",
                    "may not be specified when `value` is not empty",
                ));
            } else if n > 1 {
                errs.push(FieldError::invalid(
                    &vp,
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
        }
    }
    errs
}

struct Handler<'a> {
    exec: Option<&'a k8s_openapi::api::core::v1::ExecAction>,
    http_get: Option<&'a k8s_openapi::api::core::v1::HTTPGetAction>,
    tcp_socket: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&'a k8s_openapi::api::core::v1::GRPCAction>,
    sleep: bool,
}

impl<'a> Handler<'a> {
    fn of_probe(p: &'a Probe) -> Self {
        Handler {
            exec: p.exec.as_ref(),
            http_get: p.http_get.as_ref(),
            tcp_socket: p.tcp_socket.as_ref(),
            grpc: p.grpc.as_ref(),
            sleep: false,
        }
    }
    fn of_lifecycle(h: &'a LifecycleHandler) -> Self {
        Handler {
            exec: h.exec.as_ref(),
            http_get: h.http_get.as_ref(),
            tcp_socket: h.tcp_socket.as_ref(),
            grpc: None,
            sleep: h.sleep.is_some(),
        }
    }
}

/// Upstream `validateHandler`: exactly one handler type, each well-formed.
fn validate_handler(h: &Handler<'_>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut n = 0;
    let mut one = |name: &str, present: bool, errs: &mut ErrorList| -> bool {
        if !present {
            return false;
        }
        if n > 0 {
            errs.push(FieldError::forbidden(
                &path.child(name),
                "may not specify more than 1 handler type",
            ));
            return false;
        }
        n += 1;
        true
    };
    if one("exec", h.exec.is_some(), &mut errs)
        && h.exec
            .and_then(|e| e.command.as_ref())
            .is_none_or(|c| c.is_empty())
    {
        errs.push(FieldError::required(
            &path.child("exec").child("command"),
            "",
        ));
    }
    if one("httpGet", h.http_get.is_some(), &mut errs)
        && let Some(g) = h.http_get
    {
        let gp = path.child("httpGet");
        if g.path.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(&gp.child("path"), ""));
        }
        errs.extend(validate_port_num_or_name(&g.port, &gp.child("port")));
        let scheme = g.scheme.as_deref().unwrap_or("");
        if !HTTP_SCHEMES.contains(&scheme) {
            errs.push(FieldError::not_supported(
                &gp.child("scheme"),
                scheme,
                HTTP_SCHEMES,
            ));
        }
    }
    if one("tcpSocket", h.tcp_socket.is_some(), &mut errs)
        && let Some(t) = h.tcp_socket
    {
        errs.extend(validate_port_num_or_name(
            &t.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if one("grpc", h.grpc.is_some(), &mut errs)
        && let Some(g) = h.grpc
    {
        for m in is_valid_port_num(i64::from(g.port)) {
            errs.push(FieldError::invalid(
                &path.child("grpc").child("port"),
                g.port,
                m,
            ));
        }
    }
    one("sleep", h.sleep, &mut errs);
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn validate_probe(p: &Probe, path: &Path) -> ErrorList {
    let mut errs = validate_handler(&Handler::of_probe(p), path);
    for (name, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        errs.extend(validate_nonnegative(
            i64::from(v.unwrap_or(0)),
            &path.child(name),
        ));
    }
    if let Some(t) = p.termination_grace_period_seconds
        && t <= 0
    {
        errs.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

fn validate_liveness_or_startup(p: &Probe, path: &Path) -> ErrorList {
    let mut errs = validate_probe(p, path);
    let st = p.success_threshold.unwrap_or(0);
    if st != 1 {
        errs.push(FieldError::invalid(
            &path.child("successThreshold"),
            st,
            "must be 1",
        ));
    }
    errs
}

fn validate_readiness(p: &Probe, path: &Path) -> ErrorList {
    let mut errs = validate_probe(p, path);
    if let Some(t) = p.termination_grace_period_seconds {
        errs.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            t,
            "must not be set for readinessProbes",
        ));
    }
    errs
}

/// Upstream `validateContainerCommon`.
fn validate_container_common(c: &Container, volumes: &BTreeSet<String>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        errs.extend(validate_dns1123_label(&c.name, &path.child("name")));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    errs.extend(enum_field(
        c.termination_message_policy.as_deref(),
        &path.child("terminationMessagePolicy"),
        TERMINATION_MESSAGE_POLICIES,
    ));
    errs.extend(validate_container_ports(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
    ));
    let mut mount_points = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(&mp.child("name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(&mp.child("name"), m.name.as_str()));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&mp.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.clone()) {
            errs.push(FieldError::invalid(
                &mp.child("mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            ));
        }
    }
    errs.extend(enum_field(
        c.image_pull_policy.as_deref(),
        &path.child("imagePullPolicy"),
        PULL_POLICIES,
    ));
    errs
}

fn validate_lifecycle(c: &Container, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(l) = &c.lifecycle {
        if let Some(h) = &l.post_start {
            errs.extend(validate_handler(
                &Handler::of_lifecycle(h),
                &path.child("postStart"),
            ));
        }
        if let Some(h) = &l.pre_stop {
            errs.extend(validate_handler(
                &Handler::of_lifecycle(h),
                &path.child("preStop"),
            ));
        }
    }
    errs
}

/// Upstream `AccumulateUniqueHostPorts`: `<protocol>/<hostIP>/<hostPort>` must be unique.
fn host_port_conflicts(containers: &[Container], path: &Path) -> ErrorList {
    let mut seen = BTreeSet::new();
    let mut errs = ErrorList::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{hp}",
                p.protocol.as_deref().unwrap_or(""),
                p.host_ip.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    &path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

fn validate_containers(
    containers: &[Container],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> ErrorList {
    if containers.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let mut errs = ErrorList::new();
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(&p.child("name"), c.name.as_str()));
        }
        errs.extend(validate_lifecycle(c, &p.child("lifecycle")));
        if let Some(pr) = &c.liveness_probe {
            errs.extend(validate_liveness_or_startup(pr, &p.child("livenessProbe")));
        }
        if let Some(pr) = &c.readiness_probe {
            errs.extend(validate_readiness(pr, &p.child("readinessProbe")));
        }
        if let Some(pr) = &c.startup_probe {
            errs.extend(validate_liveness_or_startup(pr, &p.child("startupProbe")));
        }
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                &p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(containers, path));
    errs
}

fn validate_init_containers(
    inits: &[Container],
    regular: &[Container],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut names: BTreeSet<String> = regular.iter().map(|c| c.name.clone()).collect();
    for (i, c) in inits.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        if names.contains(&c.name) {
            errs.push(FieldError::duplicate(&p.child("name"), c.name.as_str()));
        } else if !c.name.is_empty() {
            names.insert(c.name.clone());
        }
        // Init containers run one by one, so only ports within one conflict.
        errs.extend(host_port_conflicts(std::slice::from_ref(c), path));
        let sidecar = match c.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.push(FieldError::not_supported(
                    &p.child("restartPolicy"),
                    other,
                    &["Always"],
                ));
                false
            }
        };
        if sidecar {
            errs.extend(validate_lifecycle(c, &p.child("lifecycle")));
            if let Some(pr) = &c.liveness_probe {
                errs.extend(validate_liveness_or_startup(pr, &p.child("livenessProbe")));
            }
            if let Some(pr) = &c.readiness_probe {
                errs.extend(validate_readiness(pr, &p.child("readinessProbe")));
            }
            if let Some(pr) = &c.startup_probe {
                errs.extend(validate_liveness_or_startup(pr, &p.child("startupProbe")));
            }
        } else {
            let msg = "may not be set for init containers without restartPolicy=Always";
            if c.lifecycle.is_some() {
                errs.push(FieldError::forbidden(&p.child("lifecycle"), msg));
            }
            if c.liveness_probe.is_some() {
                errs.push(FieldError::forbidden(&p.child("livenessProbe"), msg));
            }
            if c.readiness_probe.is_some() {
                errs.push(FieldError::forbidden(&p.child("readinessProbe"), msg));
            }
            if c.startup_probe.is_some() {
                errs.push(FieldError::forbidden(&p.child("startupProbe"), msg));
            }
        }
    }
    errs
}

fn validate_dns_config(spec: &PodSpec, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let none = spec.dns_policy.as_deref() == Some("None");
    let Some(cfg) = &spec.dns_config else {
        if none {
            errs.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
        }
        return errs;
    };
    let ns = cfg.nameservers.clone().unwrap_or_default();
    if none && ns.is_empty() {
        errs.push(FieldError::required(
            &path.child("nameservers"),
            "must provide at least one DNS nameserver when `dnsPolicy` is None",
        ));
        return errs;
    }
    if ns.len() > MAX_DNS_NAMESERVERS {
        errs.push(FieldError::invalid(
            &path.child("nameservers"),
            ns.clone(),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        errs.extend(validate_ip(n, &path.child("nameservers").index(i)));
    }
    let searches = cfg.searches.clone().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(FieldError::invalid(
            &path.child("searches"),
            searches.clone(),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(FieldError::invalid(
            &path.child("searches"),
            searches.clone(),
            format!("must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"),
        ));
    }
    // Relaxed search validation (on by default since 1.33): "." and
    // underscores are allowed.
    for (i, s) in searches.iter().enumerate() {
        if s == "." {
            continue;
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        for m in is_dns1123_subdomain_with_underscore(trimmed) {
            errs.push(FieldError::invalid(
                &path.child("searches").index(i),
                trimmed,
                m,
            ));
        }
    }
    for (i, o) in cfg.options.iter().flatten().enumerate() {
        if o.name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
    errs
}

/// Upstream `ValidatePodSpec` (the parts svcnet runs): volumes, containers,
/// init containers, restart and DNS policies, node selector, names.
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> ErrorList {
    pod_spec_errors(spec, path, false)
}

/// `is_pod` is upstream's `ResourceIsPod`: stricter rules for real pods
/// than for templates.
fn pod_spec_errors(spec: &PodSpec, path: &Path, is_pod: bool) -> ErrorList {
    let (volumes, mut errs) = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
    );
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        &path.child("containers"),
    ));
    errs.extend(validate_init_containers(
        spec.init_containers.as_deref().unwrap_or_default(),
        &spec.containers,
        &volumes,
        &path.child("initContainers"),
    ));
    if spec.host_network.unwrap_or(false) {
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let hp = p.host_port.unwrap_or(0);
                if (is_pod || hp != 0) && hp != p.container_port {
                    errs.push(FieldError::invalid(
                        &path
                            .child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    errs.extend(enum_field(
        spec.restart_policy.as_deref(),
        &path.child("restartPolicy"),
        RESTART_POLICIES,
    ));
    errs.extend(enum_field(
        spec.dns_policy.as_deref(),
        &path.child("dnsPolicy"),
        DNS_POLICIES,
    ));
    if let Some(ns) = &spec.node_selector {
        errs.extend(validate_labels(ns, &path.child("nodeSelector")));
    }
    errs.extend(validate_dns_config(spec, &path.child("dnsConfig")));
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        for m in is_dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                &path.child("serviceAccountName"),
                sa,
                m,
            ));
        }
    }
    if let Some(n) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for m in is_dns1123_subdomain(n) {
            errs.push(FieldError::invalid(&path.child("nodeName"), n, m));
        }
    }
    if let Some(ads) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            ads,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(h) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(h, &path.child("hostname")));
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(s, &path.child("subdomain")));
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        errs.extend(validate_nonnegative(
            g,
            &path.child("terminationGracePeriodSeconds"),
        ));
    }
    errs
}

/// Upstream `validatePodMetadataAndSpec` for a defaulted Pod (what both
/// create and update check on the new object).
pub fn validate_pod(pod: &Pod) -> ErrorList {
    let mut errs = validate_object_meta(
        &pod.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    errs.extend(pod_spec_errors(spec, &Path::new("spec"), true));
    // Upstream `validateContainerOnlyForPod`.
    let sp = Path::new("spec");
    let no_inits = Vec::new();
    for (list, name) in [
        (&spec.containers, "containers"),
        (
            spec.init_containers.as_ref().unwrap_or(&no_inits),
            "initContainers",
        ),
    ] {
        for (i, c) in list.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or("");
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    &sp.child(name).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

/// Upstream `ValidatePodCreate`: [`validate_pod`] plus the create-only rules.
pub fn validate_pod_create(pod: &Pod) -> ErrorList {
    let mut errs = validate_pod(pod);
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errs.push(FieldError::forbidden(
            &sp.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        && spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        errs.push(FieldError::forbidden(
            &sp.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

/// Upstream `ValidatePodStatusUpdate` (the parts an agent can trip over):
/// metadata rules, and `spec.nodeName` may not change through status.
pub fn validate_pod_status_update(new: &Pod, old: &Pod) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    if node(new) != node(old) {
        errs.push(FieldError::forbidden(
            &Path::new("status").child("nodeName"),
            "may not be changed directly",
        ));
    }
    errs
}

/// Upstream `ValidatePodTemplateSpec`: labels and annotations at
/// `<path>.labels` / `<path>.annotations`, then the pod spec.
pub fn validate_pod_template_spec(t: &PodTemplateSpec, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(md) = &t.metadata {
        if let Some(l) = &md.labels {
            errs.extend(validate_labels(l, &path.child("labels")));
        }
        if let Some(a) = &md.annotations {
            errs.extend(validate_annotations(a, &path.child("annotations")));
        }
    }
    let empty = PodSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, &path.child("spec")));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

fn container_updates(new: &[Container], old: &[Container], path: &Path) -> (ErrorList, bool) {
    if new.len() != old.len() {
        return (
            vec![FieldError::forbidden(
                path,
                "pod updates may not add or remove containers",
            )],
            true,
        );
    }
    let mut errs = ErrorList::new();
    for (i, c) in new.iter().enumerate() {
        let image = c.image.as_deref().unwrap_or("");
        if image.is_empty() {
            errs.push(FieldError::required(&path.index(i).child("image"), ""));
        }
        if image.trim() != image {
            errs.push(FieldError::invalid(
                &path.index(i).child("image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }
    (errs, false)
}

/// A short account of which spec fields differ; upstream prints a Go
/// `cmp.Diff` here, which we cannot reproduce byte for byte.
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let to_map = |s: &PodSpec| -> BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(s) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    };
    let (o, n) = (to_map(old), to_map(new));
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a != b {
            if let Some(a) = a {
                out.push_str(&format!("-\t{k}: {a},\n"));
            }
            if let Some(b) = b {
                out.push_str(&format!("+\t{k}: {b},\n"));
            }
        }
    }
    out.push_str("  }\n");
    out
}

/// Upstream `ValidatePodUpdate`: only images, activeDeadlineSeconds
/// (set or lowered), added tolerations and a negative grace period set to 1
/// may change in the spec.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> ErrorList {
    let mut errs =
        validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_pod(new));
    let empty = PodSpec::default();
    let (ns, os) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );
    let sp = Path::new("spec");
    let (e, stop) = container_updates(&ns.containers, &os.containers, &sp.child("containers"));
    errs.extend(e);
    if stop {
        return errs;
    }
    let no_inits = Vec::new();
    let (new_inits, old_inits) = (
        ns.init_containers.as_ref().unwrap_or(&no_inits),
        os.init_containers.as_ref().unwrap_or(&no_inits),
    );
    let (e, stop) = container_updates(new_inits, old_inits, &sp.child("initContainers"));
    errs.extend(e);
    if stop {
        return errs;
    }
    let ads_path = sp.child("activeDeadlineSeconds");
    match (ns.active_deadline_seconds, os.active_deadline_seconds) {
        (Some(n), _) if n < 0 || n > i64::from(i32::MAX) => {
            errs.push(FieldError::invalid(
                &ads_path,
                n,
                inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                &ads_path,
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                &ads_path,
                BadValue::Null,
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    let old_tols = os.tolerations.clone().unwrap_or_default();
    let new_tols = ns.tolerations.clone().unwrap_or_default();
    for t in &old_tols {
        let same = |n: &k8s_openapi::api::core::v1::Toleration| {
            let mut o = t.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        };
        if !new_tols.iter().any(same) {
            errs.push(FieldError::forbidden(
                &sp.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    if ns == os {
        return errs;
    }
    let mut munged = ns.clone();
    for (c, o) in munged.containers.iter_mut().zip(&os.containers) {
        c.image = o.image.clone();
    }
    for (c, o) in munged.init_containers.iter_mut().flatten().zip(old_inits) {
        c.image = o.image.clone();
    }
    munged.active_deadline_seconds = os.active_deadline_seconds;
    munged.scheduling_gates = os.scheduling_gates.clone();
    munged.tolerations = os.tolerations.clone();
    if os.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    if munged != *os {
        errs.push(FieldError::forbidden(
            &sp,
            format!("{POD_UPDATE_MSG}\n{}", spec_diff(os, &munged)),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::default_pod;
    use serde_json::{Value, json};

    fn pod(spec: Value) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default", "resourceVersion": "1"},
            "spec": spec
        }))
        .expect("pod json");
        default_pod(&mut p);
        p
    }

    fn check(spec: Value) -> Vec<String> {
        validate_pod(&pod(spec))
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn valid_pods() {
        let cases = vec![
            json!({"containers": [{"name": "c", "image": "nginx"}]}),
            json!({"containers": [{"name": "web", "image": "agnhost:2.47", "args": ["netexec"],
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 8081, "protocol": "UDP"}],
                "readinessProbe": {"httpGet": {"port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 5},
                "env": [{"name": "MY.VAR-1", "value": "x"}, {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
                "restartPolicy": "Never", "dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local."]},
                "hostname": "web-0", "subdomain": "web", "nodeName": "node-1"}),
        ];
        for spec in cases {
            assert_eq!(check(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn invalid_pods() {
        let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (json!({"containers": []}), vec!["spec.containers: Required value".into()]),
            (json!({"containers": [{"name": "c"}]}), vec!["spec.containers[0].image: Required value".into()]),
            (json!({"containers": [{"name": "C", "image": "x"}]}), vec![
                format!(r#"spec.containers[0].name: Invalid value: "C": {label}"#),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}), vec![
                r#"spec.containers[1].name: Duplicate value: "c""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": " x"}]}), vec![
                r#"spec.containers[0].image: Invalid value: " x": must not have leading or trailing whitespace"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 0}, {"containerPort": 70000}]}]}), vec![
                "spec.containers[0].ports[0].containerPort: Required value".into(),
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}, {"name": "Bad", "containerPort": 82}]}]}), vec![
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#.into(),
                r#"spec.containers[0].ports[2].name: Invalid value: "Bad": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "protocol": "ICMP"}]}]}), vec![
                r#"spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {}}]}), vec![
                "spec.containers[0].readinessProbe: Required value: must specify a handler type".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]}), vec![
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2, "initialDelaySeconds": -1}}]}), vec![
                "spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0".into(),
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {"exec": {}}}]}), vec![
                "spec.containers[0].readinessProbe.exec.command: Required value".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {"httpGet": {"port": 0, "scheme": "FTP"}}}]}), vec![
                "spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
                r#"spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Sometimes"}), vec![
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "dnsPolicy": "Google"}), vec![
                r#"spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "dnsPolicy": "None"}), vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": -1}), vec![
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Sometimes"}]}), vec![
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B"}]}]}), vec![
                r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}), vec![
                r#"spec.containers[0].volumeMounts[0].name: Not found: "nope""#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "initContainers": [{"name": "c", "image": "y", "readinessProbe": {"exec": {"command": ["x"]}}}]}), vec![
                r#"spec.initContainers[0].name: Duplicate value: "c""#.into(),
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always".into(),
            ]),
            (json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                                   {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}]}), vec![
                r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#.into(),
            ]),
            (json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 81}]}]}), vec![
                "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}), vec![
                r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "valueFrom": {}}]}]}), vec![
                r#"spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "env": [{"name": ""}]}]}), vec![
                "spec.containers[0].env[0].name: Required value".into(),
                r#"spec.containers[0].env[0].name: Invalid value: "": environment variable name must be non-empty"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/a"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}]}), vec![
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}), vec![
                "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "dnsConfig": {"searches": ["_svc.cluster.local", ".", "Bad..x"], "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}), vec![
                r#"spec.dnsConfig.nameservers: Invalid value: []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"}: must not have more than 3 nameservers"#.into(),
                r#"spec.dnsConfig.searches[2]: Invalid value: "Bad..x": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*')"#.into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "dnsPolicy": "None", "dnsConfig": {"searches": ["a"]}}), vec![
                "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None".into(),
            ]),
            (json!({"containers": [{"name": "c", "image": "x"}], "activeDeadlineSeconds": 0}), vec![
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".into(),
            ]),
        ];
        for (spec, want) in cases {
            assert_eq!(check(spec.clone()), want, "{spec}");
        }
    }

    #[test]
    fn sourceless_volume_without_defaulting() {
        // Defaulting turns it into an emptyDir; validation alone rejects it.
        let mut p = pod(json!({"containers": [{"name": "c", "image": "x"}]}));
        if let Some(s) = p.spec.as_mut() {
            s.volumes = Some(vec![Volume {
                name: "v".into(),
                ..Default::default()
            }]);
        }
        let got: Vec<String> = validate_pod(&p).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            vec!["spec.volumes[0]: Required value: must specify a volume type"]
        );
    }

    #[test]
    fn pod_updates() {
        let old = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}]}));
        assert_eq!(validate_pod_update(&old, &old), Vec::new());
        // Image change: allowed.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.containers[0].image = Some("nginx:2".into());
        }
        assert_eq!(validate_pod_update(&new, &old), Vec::new());
        // Labels change: allowed.
        let mut new = old.clone();
        new.metadata.labels = Some([("a".to_string(), "b".to_string())].into_iter().collect());
        assert_eq!(validate_pod_update(&new, &old), Vec::new());
        // Restart policy change: forbidden with upstream's message.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            s.restart_policy = Some("Never".into());
        }
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with(&format!("spec: Forbidden: {POD_UPDATE_MSG}\n")),
            "{msg}"
        );
        assert!(
            msg.contains("-\trestartPolicy: \"Always\",\n+\trestartPolicy: \"Never\","),
            "{msg}"
        );
        // Adding a container: forbidden.
        let mut new = old.clone();
        if let Some(s) = new.spec.as_mut() {
            let c = s.containers[0].clone();
            s.containers.push(Container {
                name: "d".into(),
                ..c
            });
        }
        let got: Vec<String> = validate_pod_update(&new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        // Status updates may not move the pod.
        let mut moved = old.clone();
        if let Some(s) = moved.spec.as_mut() {
            s.node_name = Some("node-2".into());
        }
        let got: Vec<String> = validate_pod_status_update(&moved, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["status.nodeName: Forbidden: may not be changed directly"]
        );
        // Ephemeral containers cannot be set on create.
        let eph = pod(
            json!({"containers": [{"name": "c", "image": "x"}], "ephemeralContainers": [{"name": "e", "image": "x"}]}),
        );
        let got: Vec<String> = validate_pod_create(&eph)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"]
        );
        // activeDeadlineSeconds may be set, then only lowered.
        let mut a = old.clone();
        if let Some(s) = a.spec.as_mut() {
            s.active_deadline_seconds = Some(100);
        }
        assert_eq!(validate_pod_update(&a, &old), Vec::new());
        let mut b = a.clone();
        if let Some(s) = b.spec.as_mut() {
            s.active_deadline_seconds = Some(200);
        }
        let got: Vec<String> = validate_pod_update(&b, &a)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
            ]
        );
    }
}

//! Defaulting of stored objects, as upstream's `SetDefaults_*` and the Service registry's IP-family logic.
//!
//! The API server calls these before validation, on create and update, so
//! that `kubectl get -o yaml` shows what a real cluster would show. The
//! IP-family step of Services depends on the cluster's configured families,
//! so it is separate: the Service registry calls [`init_ip_family_fields`]
//! (or [`init_service_ip_families`]) with them and reports its errors.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Container, Endpoints, Namespace, NamespaceSpec, NamespaceStatus, Node, Pod,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Service, ServiceSpec,
    SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field_errors::{BadValue, ErrorList, FieldError, Path};

/// Upstream `DefaultClientIPServiceAffinitySeconds`.
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;
/// Default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Default `schedulerName`.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Default file mode of secret / configMap / projected / downwardAPI volumes (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

fn set_if_none<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

fn set_if_empty(slot: &mut Option<String>, v: &str) {
    if slot.as_deref().unwrap_or("").is_empty() {
        *slot = Some(v.to_string());
    }
}

/// True for `NodePort`, `LoadBalancer`, and `ClusterIP` with `externalIPs`
/// (upstream `ExternallyAccessible`).
pub fn externally_accessible(spec: &ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("NodePort") | Some("LoadBalancer") => true,
        Some("ClusterIP") | None | Some("") => {
            spec.external_ips.as_ref().is_some_and(|v| !v.is_empty())
        }
        _ => false,
    }
}

/// True for `clusterIP: None` (checked on `clusterIPs[0]` too).
pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
        || spec
            .cluster_ips
            .as_ref()
            .and_then(|v| v.first())
            .is_some_and(|ip| ip == "None")
}

/// Upstream `SetDefaults_Service` and `NormalizeClusterIPs` of a create.
/// IP families are not defaulted here: that needs the cluster's families
/// (see [`init_service_ip_families`]).
pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    default_service_spec(spec);
    normalize_cluster_ips(spec, None);
    default_load_balancer_status(svc);
}

/// [`init_ip_family_fields`] on a Service (and the previous version on
/// update), for a cluster serving `cluster_families` (primary first).
pub fn init_service_ip_families(
    svc: &mut Service,
    old: Option<&Service>,
    cluster_families: &[&str],
) -> ErrorList {
    let spec = svc.spec.get_or_insert_with(Default::default);
    init_ip_family_fields(spec, old.and_then(|o| o.spec.as_ref()), cluster_families)
}

/// LoadBalancer ingress IPs get `ipMode: VIP` (upstream `SetDefaults_Service`,
/// also applied to status updates).
pub fn default_load_balancer_status(svc: &mut Service) {
    if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        return;
    }
    let ingress = svc
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .and_then(|lb| lb.ingress.as_mut());
    for ing in ingress.into_iter().flatten() {
        if ing.ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
            set_if_none(&mut ing.ip_mode, "VIP".to_string());
        }
    }
}

/// The static part of `SetDefaults_Service` (no cluster knowledge).
pub fn default_service_spec(spec: &mut ServiceSpec) {
    set_if_empty(&mut spec.session_affinity, "None");
    if spec.session_affinity.as_deref() == Some("None") {
        spec.session_affinity_config = None;
    }
    set_if_empty(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if externally_accessible(spec) {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if spec.internal_traffic_policy.is_none()
        && matches!(
            spec.type_.as_deref(),
            Some("ClusterIP" | "NodePort" | "LoadBalancer")
        )
    {
        spec.internal_traffic_policy = Some("Cluster".to_string());
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        set_if_none(&mut spec.allocate_load_balancer_node_ports, true);
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let has_timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .is_some();
        if !has_timeout {
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                }),
            });
        }
    }
}

/// Keep `clusterIP` and `clusterIPs` consistent, as upstream's
/// `NormalizeClusterIPs`: a lone `clusterIP` fills `clusterIPs`; on update a
/// changed `clusterIP` with unchanged `clusterIPs` rewrites (or, when
/// cleared, clears) `clusterIPs`.
pub fn normalize_cluster_ips(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ips_empty = spec.cluster_ips.as_ref().is_none_or(|v| v.is_empty());
    if !ip.is_empty() && ips_empty {
        spec.cluster_ips = Some(vec![ip]);
        return;
    }
    let Some(old) = old else { return };
    let old_ip = old.cluster_ip.clone().unwrap_or_default();
    if old_ip == ip || !same_cluster_ips(spec, old) {
        return;
    }
    if ip.is_empty() {
        spec.cluster_ips = None;
    } else if let Some(first) = spec.cluster_ips.as_mut().and_then(|v| v.first_mut()) {
        *first = ip;
    }
}

fn same_cluster_ips(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.cluster_ips.clone().unwrap_or_default() == b.cluster_ips.clone().unwrap_or_default()
}

fn needs_cluster_ip(s: &ServiceSpec) -> bool {
    s.type_.as_deref() != Some("ExternalName")
}

fn needs_node_port(s: &ServiceSpec) -> bool {
    matches!(s.type_.as_deref(), Some("NodePort" | "LoadBalancer"))
}

fn needs_hc_node_port(s: &ServiceSpec) -> bool {
    s.type_.as_deref() == Some("LoadBalancer")
        && s.external_traffic_policy.as_deref() == Some("Local")
}

/// Upstream `dropTypeDependentFields`: on a type change, wipe what the old
/// type owned (cluster IPs and families when moving to ExternalName,
/// nodePorts when leaving NodePort/LoadBalancer, …) unless the user changed
/// it in the same request, in which case validation decides.
pub fn drop_type_dependent_fields(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same_cluster_ips(new, old) {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if new.ip_families.clone().unwrap_or_default()
            == old.ip_families.clone().unwrap_or_default()
        {
            new.ip_families = None;
        }
        if new.ip_family_policy == old.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    if needs_node_port(old) && !needs_node_port(new) {
        let np = |s: &ServiceSpec| -> Vec<i32> {
            s.ports
                .iter()
                .flatten()
                .map(|p| p.node_port.unwrap_or(0))
                .collect()
        };
        if np(new) == np(old) {
            for p in new.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
    }
    if needs_hc_node_port(old)
        && !needs_hc_node_port(new)
        && new.health_check_node_port == old.health_check_node_port
    {
        new.health_check_node_port = None;
    }
    let lb = |s: &ServiceSpec| s.type_.as_deref() == Some("LoadBalancer");
    if lb(old) && !lb(new) {
        if new.allocate_load_balancer_node_ports.is_some()
            && new.allocate_load_balancer_node_ports == old.allocate_load_balancer_node_ports
        {
            new.allocate_load_balancer_node_ports = None;
        }
        if new.load_balancer_class == old.load_balancer_class {
            new.load_balancer_class = None;
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && new.external_traffic_policy == old.external_traffic_policy
    {
        new.external_traffic_policy = None;
    }
}

/// Everything the server does to an updated Service before validating it
/// (upstream's `PrepareForUpdate` and the registry's `beginUpdate`, except
/// the IP-family step, see [`init_service_ip_families`]): static defaults,
/// keep allocated values the client left out, sync clusterIP(s), drop fields
/// the old type owned. The LoadBalancer status is cleared when the type is
/// no longer LoadBalancer.
pub fn default_service_update(new: &mut Service, old: &Service) {
    let empty = ServiceSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let spec = new.spec.get_or_insert_with(Default::default);
    default_service_spec(spec);
    patch_allocated_values(spec, old_spec);
    normalize_cluster_ips(spec, Some(old_spec));
    drop_type_dependent_fields(spec, old_spec);
    if spec.type_.as_deref() != Some("LoadBalancer")
        && let Some(st) = new.status.as_mut()
    {
        st.load_balancer = None;
    }
}

/// On update, keep what the server allocated when the new object leaves it
/// out (upstream `patchAllocatedValues`): clusterIP(s), nodePorts of ports
/// with the same port and protocol, and healthCheckNodePort.
pub fn patch_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(new) && needs_cluster_ip(old) {
        if new.cluster_ip.as_deref().unwrap_or("").is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if new.cluster_ips.as_ref().is_none_or(|v| v.is_empty()) {
            new.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_port(new) && needs_node_port(old) {
        // Upstream matches ports by name and never reuses a nodePort the new
        // object already holds.
        let used_in = |s: &ServiceSpec| -> std::collections::BTreeSet<i32> {
            s.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port)
                .filter(|n| *n != 0)
                .collect()
        };
        let used: std::collections::BTreeSet<i32> =
            used_in(old).intersection(&used_in(new)).copied().collect();
        let by_name: std::collections::BTreeMap<String, i32> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.node_port.unwrap_or(0)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) != 0 {
                continue;
            }
            let old_val = by_name
                .get(p.name.as_deref().unwrap_or(""))
                .copied()
                .unwrap_or(0);
            if old_val != 0 && !used.contains(&old_val) {
                p.node_port = Some(old_val);
            }
        }
    }
    if needs_hc_node_port(new)
        && needs_hc_node_port(old)
        && new.health_check_node_port.unwrap_or(0) == 0
    {
        new.health_check_node_port = old.health_check_node_port;
    }
}

fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some("IPv4"),
        Ok(std::net::IpAddr::V6(_)) => Some("IPv6"),
        Err(_) => None,
    }
}

fn same_ip_families(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.ip_families.clone().unwrap_or_default() == b.ip_families.clone().unwrap_or_default()
}

/// Upstream `isMatchingPreferDualStackClusterIPFields`: an update of a
/// PreferDualStack Service that keeps its type, clusterIPs and families is
/// neither upgraded nor downgraded when the cluster's families changed.
fn is_matching_prefer_dual_stack(spec: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
    let Some(old) = old else { return false };
    let Some(policy) = spec.ip_family_policy.as_deref() else {
        return false;
    };
    let ty = |s: &ServiceSpec| s.type_.clone().unwrap_or_default();
    ty(spec) == ty(old)
        && matches!(ty(spec).as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
        && policy == "PreferDualStack"
        && old
            .ip_family_policy
            .as_deref()
            .is_none_or(|p| p == "PreferDualStack")
        && same_cluster_ips(spec, old)
        && same_ip_families(spec, old)
}

/// Whether an update shortens a non-empty list (upstream `reducedClusterIPs`
/// and `reducedIPFamilies`).
fn reduced(new: &Option<Vec<String>>, old: &Option<Vec<String>>) -> bool {
    let n = new.as_ref().map_or(0, Vec::len);
    n != 0 && n < old.as_ref().map_or(0, Vec::len)
}

/// The registry's IP-family defaulting (upstream `initIPFamilyFields`) for a
/// cluster serving `cluster_families` (first = primary), on create (`old`
/// None) and update. Returns the errors upstream reports here as a 422, such
/// as `IPv6 is not configured on this cluster` or `this cluster is not
/// configured for dual-stack services`.
pub fn init_ip_family_fields(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    cluster_families: &[&str],
) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec.type_.as_deref() == Some("ExternalName") {
        return errs;
    }
    if is_matching_prefer_dual_stack(spec, old) {
        return errs;
    }
    let primary = cluster_families.first().copied().unwrap_or("IPv4");
    let headless_selectorless = spec.cluster_ip.as_deref() == Some("None")
        && spec.selector.as_ref().is_none_or(|s| s.is_empty());
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(p) => Some(p),
            None if headless_selectorless => Some("RequireDualStack".into()),
            None => Some("SingleStack".into()),
        };
    }
    // Loose pre-validation, as upstream: never infer from inputs that are
    // already wrong (validation reports them).
    let pre = crate::validation::validate_service_cluster_ips_related_fields(spec);
    if !pre.is_empty() {
        return pre;
    }
    let policy = spec.ip_family_policy.clone().unwrap_or_default();
    let policy_path = Path::new("spec").child("ipFamilyPolicy");
    if let Some(old) = old {
        if policy == "SingleStack" {
            // Clear intent to downgrade while the lists are unchanged;
            // clusterIPs[0] is immutable, so it stays.
            if same_cluster_ips(spec, old)
                && let Some(v) = spec.cluster_ips.as_mut().filter(|v| v.len() > 1)
            {
                v.truncate(1);
            }
            if same_ip_families(spec, old)
                && let Some(v) = spec.ip_families.as_mut().filter(|v| v.len() > 1)
            {
                v.truncate(1);
            }
        } else {
            if reduced(&spec.cluster_ips, &old.cluster_ips) {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if reduced(&spec.ip_families, &old.ip_families) {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    let n_ips = spec.cluster_ips.as_ref().map_or(0, Vec::len);
    let n_fams = spec.ip_families.as_ref().map_or(0, Vec::len);
    if policy == "SingleStack" {
        if n_ips == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if n_fams == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Infer families from the given IPs.
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    for (i, ip) in ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        let Some(fam) = family_of(ip) else { continue };
        let families = spec.ip_families.get_or_insert_with(Vec::new);
        if i >= families.len() {
            if cluster_families.contains(&fam) {
                families.push(fam.to_string());
            } else {
                errs.push(FieldError::invalid(
                    &Path::new("spec").child("clusterIPs").index(i),
                    BadValue::StrList(ips.clone()),
                    format!("{fam} is not configured on this cluster"),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if headless_selectorless {
        let families = spec.ip_families.get_or_insert_with(Vec::new);
        if families.is_empty() {
            families.push(primary.to_string());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let alt = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(alt.to_string());
        }
        return errs;
    }
    if policy == "RequireDualStack" && cluster_families.len() < 2 {
        errs.push(FieldError::invalid(
            &policy_path,
            policy.as_str(),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, fam) in spec.ip_families.iter().flatten().enumerate() {
        if !cluster_families.contains(&fam.as_str()) {
            errs.push(FieldError::invalid(
                &Path::new("spec").child("ipFamilies").index(i),
                fam.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    let families = spec.ip_families.get_or_insert_with(Vec::new);
    if families.is_empty() {
        families.push(primary.to_string());
    }
    if policy != "SingleStack" && families.len() == 1 && cluster_families.len() == 2 {
        let alt = if families[0] == "IPv4" {
            "IPv6"
        } else {
            "IPv4"
        };
        families.push(alt.to_string());
    }
    errs
}

/// Upstream's image pull policy rule: `Always` for `:latest` or no tag
/// (and no digest), else `IfNotPresent`.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.rsplit_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

/// Set when unset or zero: upstream's probe fields are plain ints, so an
/// explicit 0 is defaulted too.
fn set_if_zero(slot: &mut Option<i32>, v: i32) {
    if slot.unwrap_or(0) == 0 {
        *slot = Some(v);
    }
}

fn default_probe(p: &mut Probe) {
    set_if_zero(&mut p.timeout_seconds, 1);
    set_if_zero(&mut p.period_seconds, 10);
    set_if_zero(&mut p.success_threshold, 1);
    set_if_zero(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        set_if_empty(&mut h.path, "/");
        set_if_empty(&mut h.scheme, "HTTP");
    }
}

fn default_container(c: &mut Container) {
    set_if_empty(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_if_empty(&mut c.termination_message_policy, "File");
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        let policy = default_image_pull_policy(c.image.as_deref().unwrap_or(""));
        c.image_pull_policy = Some(policy.to_string());
    }
    for p in c.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    for lh in c
        .lifecycle
        .iter_mut()
        .flat_map(|l| [l.post_start.as_mut(), l.pre_stop.as_mut()])
        .flatten()
    {
        if let Some(h) = lh.http_get.as_mut() {
            set_if_empty(&mut h.path, "/");
            set_if_empty(&mut h.scheme, "HTTP");
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_if_empty(&mut f.api_version, "v1");
        }
    }
}

/// Upstream `SetDefaults_PodSpec` and the container / probe / volume
/// defaults below it (what a pod template gets).
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(
        &mut spec.termination_grace_period_seconds,
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set_if_none(&mut spec.security_context, PodSecurityContext::default());
    set_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    // The deprecated alias mirrors serviceAccountName, as upstream's conversion does.
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        if let Some(sa) = spec.service_account.clone().filter(|s| !s.is_empty()) {
            spec.service_account_name = Some(sa);
        }
    } else if spec.service_account.as_deref().unwrap_or("").is_empty() {
        spec.service_account = spec.service_account_name.clone();
    }
    for c in spec.containers.iter_mut() {
        default_container(c);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        // A volume with no source at all becomes an emptyDir (upstream
        // `SetDefaults_Volume`); the wire form tells whether any is set.
        let has_source =
            matches!(serde_json::to_value(&*v), Ok(serde_json::Value::Object(m)) if m.len() > 1);
        if !has_source {
            v.empty_dir = Some(Default::default());
        }
        if let Some(h) = v.host_path.as_mut() {
            set_if_none(&mut h.type_, String::new());
        }
        if let Some(s) = v.secret.as_mut() {
            set_if_none(&mut s.default_mode, DEFAULT_VOLUME_MODE);
        }
        if let Some(s) = v.config_map.as_mut() {
            set_if_none(&mut s.default_mode, DEFAULT_VOLUME_MODE);
        }
        if let Some(s) = v.projected.as_mut() {
            set_if_none(&mut s.default_mode, DEFAULT_VOLUME_MODE);
            for src in s.sources.iter_mut().flatten() {
                if let Some(t) = src.service_account_token.as_mut() {
                    set_if_none(&mut t.expiration_seconds, 3600);
                }
            }
        }
        if let Some(s) = v.downward_api.as_mut() {
            set_if_none(&mut s.default_mode, DEFAULT_VOLUME_MODE);
        }
    }
}

/// Upstream `SetDefaults_Pod` + `SetDefaults_PodSpec`: restartPolicy
/// Always, dnsPolicy ClusterFirst, enableServiceLinks true, grace period
/// 30, default-scheduler, container and probe defaults, `securityContext: {}`,
/// requests defaulted from limits, hostPorts for hostNetwork pods.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    set_if_none(&mut spec.enable_service_links, true);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(r) = c.resources.as_mut()
            && let Some(limits) = r.limits.clone()
        {
            let req = r.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        }
        if host_network {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
}

fn default_template(t: &mut PodTemplateSpec) {
    default_pod_spec(t.spec.get_or_insert_with(Default::default));
}

/// Upstream apps/v1 `SetDefaults_Deployment`.
pub fn default_deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set_if_none(&mut ru.max_unavailable, IntOrString::String("25%".into()));
        set_if_none(&mut ru.max_surge, IntOrString::String("25%".into()));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    set_if_none(&mut spec.progress_deadline_seconds, 600);
    default_template(&mut spec.template);
}

/// Upstream apps/v1 `SetDefaults_ReplicaSet`.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    if let Some(t) = spec.template.as_mut() {
        default_template(t);
    }
}

/// Namespace defaults: `status.phase: Active` (upstream
/// `SetDefaults_NamespaceStatus`), plus what the namespace strategy adds on
/// create: the `kubernetes` finalizer and the
/// `kubernetes.io/metadata.name` label.
pub fn default_namespace(ns: &mut Namespace) {
    let status = ns.status.get_or_insert_with(NamespaceStatus::default);
    set_if_empty(&mut status.phase, "Active");
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == "kubernetes") {
        finalizers.push("kubernetes".into());
    }
    if let Some(name) = ns.metadata.name.clone() {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
}

/// Upstream `SetDefaults_Endpoints`: port protocol TCP.
pub fn default_endpoints(ep: &mut Endpoints) {
    for s in ep.subsets.iter_mut().flatten() {
        for p in s.ports.iter_mut().flatten() {
            set_if_empty(&mut p.protocol, "TCP");
        }
    }
}

/// Upstream `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub fn default_node(node: &mut Node) {
    if let Some(st) = node.status.as_mut()
        && st.allocatable.is_none()
    {
        st.allocatable = st.capacity.clone();
    }
}

/// Upstream discovery/v1 `SetDefaults_EndpointPort`: name "" and protocol TCP.
pub fn default_endpoint_slice(es: &mut EndpointSlice) {
    for p in es.ports.iter_mut().flatten() {
        set_if_none(&mut p.name, String::new());
        set_if_empty(&mut p.protocol, "TCP");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).expect("service json")
    }

    fn spec_json(s: &Service) -> Value {
        serde_json::to_value(s.spec.as_ref().expect("spec")).expect("to json")
    }

    #[test]
    fn service_defaults() {
        // (input spec, expected spec after defaulting)
        let cases = vec![
            (
                json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
                json!({
                    "selector": {"app": "web"},
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "type": "ClusterIP", "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
                }),
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http", "protocol": "UDP"}],
                       "sessionAffinity": "ClientIP"}),
                json!({
                    "type": "NodePort",
                    "ports": [{"port": 80, "protocol": "UDP", "targetPort": "http"}],
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                    "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
                }),
            ),
            (
                json!({"type": "LoadBalancer", "ports": [{"port": 443}], "clusterIP": "10.96.0.20"}),
                json!({
                    "type": "LoadBalancer",
                    "ports": [{"port": 443, "protocol": "TCP", "targetPort": 443}],
                    "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                    "sessionAffinity": "None", "allocateLoadBalancerNodePorts": true,
                    "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
                }),
            ),
            (
                json!({"type": "ExternalName", "externalName": "example.com"}),
                json!({"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}),
            ),
            (
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
                json!({
                    "clusterIP": "None", "clusterIPs": ["None"],
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]
                }),
            ),
            (
                json!({"clusterIP": "None", "selector": {"a": "b"}}),
                json!({
                    "clusterIP": "None", "clusterIPs": ["None"], "selector": {"a": "b"},
                    "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
                }),
            ),
            (
                json!({"externalIPs": ["1.2.3.4"], "ports": [{"port": 80, "targetPort": 0}],
                       "sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}),
                json!({
                    "externalIPs": ["1.2.3.4"],
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "type": "ClusterIP", "sessionAffinity": "None",
                    "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
                }),
            ),
        ];
        for (input, want) in cases {
            let mut s = svc(json!({"metadata": {"name": "s"}, "spec": input.clone()}));
            default_service(&mut s);
            let errs = init_service_ip_families(&mut s, None, &["IPv4"]);
            assert!(errs.is_empty(), "{input}: {errs:?}");
            assert_eq!(spec_json(&s), want, "{input}");
        }
    }

    /// Create on clusters of different families, as the registry does it:
    /// defaults, IP families, then allocation from one range per family.
    #[test]
    fn ip_families_by_cluster() {
        use crate::alloc::IpAllocator;
        use crate::alloc::service::{ServiceAllocError, allocate_create};
        const V4: &str = "10.96.0.0/24";
        const V6: &str = "fd00::/120";
        let single: &[&str] = &[V4];
        let dual: &[&str] = &[V4, V6];
        let dual6: &[&str] = &[V6, V4];
        let v6only: &[&str] = &[V6];
        let ok = |policy: &str, fams: &[&str], ips: &[&str]| -> Result<Value, Vec<String>> {
            Ok(json!({"ipFamilyPolicy": policy, "ipFamilies": fams, "clusterIPs": ips}))
        };
        let err = |e: &[&str]| -> Result<Value, Vec<String>> {
            Err(e.iter().map(|s| s.to_string()).collect())
        };
        // (cluster ranges, input spec, policy/families/clusterIPs or errors);
        // random IPs come out as each range's first above the static band
        // (.17 and ::11), as the rng always answers 0.
        type Case<'a> = (&'a [&'a str], Value, Result<Value, Vec<String>>);
        let cases: Vec<Case<'_>> = vec![
            (
                single,
                json!({}),
                ok("SingleStack", &["IPv4"], &["10.96.0.17"]),
            ),
            (
                dual,
                json!({}),
                ok("SingleStack", &["IPv4"], &["10.96.0.17"]),
            ),
            (
                dual6,
                json!({}),
                ok("SingleStack", &["IPv6"], &["fd00::11"]),
            ),
            (
                single,
                json!({"ipFamilyPolicy": "PreferDualStack"}),
                ok("PreferDualStack", &["IPv4"], &["10.96.0.17"]),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "PreferDualStack"}),
                ok(
                    "PreferDualStack",
                    &["IPv4", "IPv6"],
                    &["10.96.0.17", "fd00::11"],
                ),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "RequireDualStack"}),
                ok(
                    "RequireDualStack",
                    &["IPv4", "IPv6"],
                    &["10.96.0.17", "fd00::11"],
                ),
            ),
            (
                dual6,
                json!({"ipFamilyPolicy": "RequireDualStack"}),
                ok(
                    "RequireDualStack",
                    &["IPv6", "IPv4"],
                    &["fd00::11", "10.96.0.17"],
                ),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}),
                ok(
                    "PreferDualStack",
                    &["IPv6", "IPv4"],
                    &["fd00::11", "10.96.0.17"],
                ),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["fd00::50"], "clusterIP": "fd00::50"}),
                ok(
                    "RequireDualStack",
                    &["IPv6", "IPv4"],
                    &["fd00::50", "10.96.0.17"],
                ),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9", "fd00::9"]}),
                ok(
                    "PreferDualStack",
                    &["IPv4", "IPv6"],
                    &["10.96.0.9", "fd00::9"],
                ),
            ),
            (
                v6only,
                json!({"ipFamilyPolicy": "PreferDualStack"}),
                ok("PreferDualStack", &["IPv6"], &["fd00::11"]),
            ),
            (
                single,
                json!({"ipFamilyPolicy": "RequireDualStack"}),
                err(&[
                    r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
                ]),
            ),
            (
                v6only,
                json!({"ipFamilyPolicy": "RequireDualStack"}),
                err(&[
                    r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
                ]),
            ),
            (
                single,
                json!({"clusterIP": "fd00::1"}),
                err(&[
                    r#"spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: IPv6 is not configured on this cluster"#,
                ]),
            ),
            (
                single,
                json!({"ipFamilies": ["IPv6"]}),
                err(&[
                    r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#,
                ]),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "SingleStack", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9", "fd00::9"]}),
                err(&[
                    r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"#,
                ]),
            ),
            (
                dual,
                json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}),
                err(&[
                    r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"#,
                ]),
            ),
            // Headless without selector: dual families even on one family.
            (
                single,
                json!({"clusterIP": "None"}),
                ok("RequireDualStack", &["IPv4", "IPv6"], &["None"]),
            ),
        ];
        for (cluster, input, want) in cases {
            let mut spec = input.clone();
            spec["ports"] = json!([{"port": 80}]);
            let mut s = svc(json!({"metadata": {"name": "s"}, "spec": spec}));
            default_service(&mut s);
            let families: Vec<&str> = cluster
                .iter()
                .map(|c| if c.contains(':') { "IPv6" } else { "IPv4" })
                .collect();
            let errs: Vec<String> = init_service_ip_families(&mut s, None, &families)
                .iter()
                .map(|e| e.to_string())
                .collect();
            let got = if errs.is_empty() {
                let mut ips: Vec<IpAllocator> = cluster
                    .iter()
                    .map(|c| IpAllocator::new(c).expect("cidr"))
                    .collect();
                let mut first = || 0u64;
                let mut ports = crate::alloc::PortAllocator::new(
                    crate::alloc::PortRange::parse("30000-32767").expect("range"),
                );
                let spec = s.spec.as_mut().expect("spec");
                match allocate_create(&mut ips, &mut ports, spec, &mut first) {
                    Ok(_) => Ok(json!({
                        "ipFamilyPolicy": spec.ip_family_policy,
                        "ipFamilies": spec.ip_families,
                        "clusterIPs": spec.cluster_ips,
                    })),
                    Err(ServiceAllocError::Invalid(e)) => Err(vec![e.to_string()]),
                    Err(ServiceAllocError::Internal(m)) => Err(vec![m]),
                }
            } else {
                Err(errs)
            };
            assert_eq!(got, want, "{cluster:?} {input}");
        }
    }

    /// Updates on a dual-stack cluster: upgrade, downgrade, and what a
    /// PreferDualStack Service keeps.
    #[test]
    fn ip_families_on_update() {
        let dual = ["IPv4", "IPv6"];
        let single = ["IPv4"];
        let spec = |v: Value| -> ServiceSpec { serde_json::from_value(v).expect("spec") };
        let one = json!({"type": "ClusterIP", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                         "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]});
        let two = json!({"type": "ClusterIP", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"],
                         "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]});
        let with = |base: &Value, k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        // (cluster, old, new, policy/families/clusterIPs after or errors)
        type Case<'a> = (&'a [&'a str], Value, Value, Result<Value, Vec<&'a str>>);
        let cases: Vec<Case<'_>> = vec![
            // Upgrade: families grow, the second IP is left to allocation.
            (
                &dual,
                one.clone(),
                with(&one, "ipFamilyPolicy", json!("PreferDualStack")),
                Ok(json!(["PreferDualStack", ["IPv4", "IPv6"], ["10.96.0.5"]])),
            ),
            (
                &single,
                one.clone(),
                with(&one, "ipFamilyPolicy", json!("RequireDualStack")),
                Err(vec![
                    r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
                ]),
            ),
            // Downgrade by policy alone: both lists truncated.
            (
                &dual,
                two.clone(),
                with(&two, "ipFamilyPolicy", json!("SingleStack")),
                Ok(json!(["SingleStack", ["IPv4"], ["10.96.0.5"]])),
            ),
            // Removing the second IP without SingleStack.
            (
                &dual,
                two.clone(),
                with(&two, "clusterIPs", json!(["10.96.0.5"])),
                Err(vec![
                    r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be 'SingleStack' to release the secondary cluster IP"#,
                ]),
            ),
            // PreferDualStack unchanged on a cluster that became single-stack: kept.
            (
                &single,
                two.clone(),
                two.clone(),
                Ok(json!([
                    "PreferDualStack",
                    ["IPv4", "IPv6"],
                    ["10.96.0.5", "fd00::5"]
                ])),
            ),
            // No policy given: the old one.
            (
                &dual,
                two.clone(),
                with(&two, "ipFamilyPolicy", Value::Null),
                Ok(json!([
                    "PreferDualStack",
                    ["IPv4", "IPv6"],
                    ["10.96.0.5", "fd00::5"]
                ])),
            ),
        ];
        for (cluster, old, new, want) in cases {
            let old = spec(old);
            let mut new = spec(new);
            let errs: Vec<String> = init_ip_family_fields(&mut new, Some(&old), cluster)
                .iter()
                .map(|e| e.to_string())
                .collect();
            let got = if errs.is_empty() {
                Ok(json!([
                    new.ip_family_policy,
                    new.ip_families,
                    new.cluster_ips
                ]))
            } else {
                Err(errs)
            };
            let want = want.map_err(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{cluster:?} {new:?}");
        }
    }

    #[test]
    fn ip_family_errors() {
        let mut spec: ServiceSpec = serde_json::from_value(
            json!({"clusterIP": "fd00::1", "clusterIPs": ["fd00::1"], "type": "ClusterIP"}),
        )
        .expect("spec");
        let errs: Vec<String> = init_ip_family_fields(&mut spec, None, &["IPv4"])
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            vec![
                r#"spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: IPv6 is not configured on this cluster"#
            ]
        );
        let mut spec: ServiceSpec = serde_json::from_value(
            json!({"ipFamilyPolicy": "RequireDualStack", "type": "ClusterIP"}),
        )
        .expect("spec");
        let errs: Vec<String> = init_ip_family_fields(&mut spec, None, &["IPv4"])
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            vec![
                r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#
            ]
        );
        let mut spec: ServiceSpec =
            serde_json::from_value(json!({"ipFamilies": ["IPv6"], "type": "ClusterIP"}))
                .expect("spec");
        let errs: Vec<String> = init_ip_family_fields(&mut spec, None, &["IPv4"])
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            vec![r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#]
        );
    }

    #[test]
    fn update_keeps_allocations() {
        let old: ServiceSpec = serde_json::from_value(json!({
            "type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
                      {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30081}]
        }))
        .expect("old");
        let mut new: ServiceSpec = serde_json::from_value(json!({
            "type": "NodePort",
            "ports": [{"name": "a", "port": 8080, "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30080},
                      {"name": "c", "port": 82, "protocol": "TCP"}]
        }))
        .expect("new");
        patch_allocated_values(&mut new, &old);
        // "a" keeps nothing (30080 is now b's), "c" was not there before.
        assert_eq!(
            serde_json::to_value(&new).expect("json"),
            json!({"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                   "ports": [{"name": "a", "port": 8080, "protocol": "TCP"},
                             {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30080},
                             {"name": "c", "port": 82, "protocol": "TCP"}]})
        );
        // To ExternalName: nothing carried over.
        let mut ext: ServiceSpec =
            serde_json::from_value(json!({"type": "ExternalName", "externalName": "a.b"}))
                .expect("ext");
        patch_allocated_values(&mut ext, &old);
        assert_eq!(ext.cluster_ip, None);
    }

    #[test]
    fn type_changes_drop_owned_fields() {
        let mut old = svc(
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        default_service(&mut old);
        if let Some(sp) = old.spec.as_mut() {
            sp.cluster_ip = Some("10.96.0.5".into());
            sp.cluster_ips = Some(vec!["10.96.0.5".into()]);
            if let Some(p) = sp.ports.as_mut() {
                p[0].node_port = Some(30080);
            }
        }
        // kubectl apply of an ExternalName manifest: the merged object still
        // carries the allocated fields.
        let mut new = old.clone();
        if let Some(sp) = new.spec.as_mut() {
            sp.type_ = Some("ExternalName".into());
            sp.external_name = Some("example.com".into());
        }
        default_service_update(&mut new, &old);
        assert_eq!(
            spec_json(&new),
            json!({"type": "ExternalName", "externalName": "example.com",
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                   "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"})
        );
        // And back: a new clusterIP will be allocated, families defaulted.
        let mut back = new.clone();
        if let Some(sp) = back.spec.as_mut() {
            sp.type_ = Some("ClusterIP".into());
        }
        default_service_update(&mut back, &new);
        assert!(init_service_ip_families(&mut back, Some(&new), &["IPv4"]).is_empty());
        let sp = back.spec.as_ref().expect("spec");
        assert_eq!(sp.cluster_ip, None);
        assert_eq!(sp.ip_families, Some(vec!["IPv4".to_string()]));
        assert_eq!(sp.ip_family_policy.as_deref(), Some("SingleStack"));
        // A PUT without clusterIP keeps the allocated one.
        let mut put = svc(
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        default_service_update(&mut put, &old);
        let sp = put.spec.as_ref().expect("spec");
        assert_eq!(sp.cluster_ips, Some(vec!["10.96.0.5".to_string()]));
        assert_eq!(sp.ports.as_ref().and_then(|p| p[0].node_port), Some(30080));
    }

    #[test]
    fn normalizes_cluster_ips_on_update() {
        let old: ServiceSpec =
            serde_json::from_value(json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}))
                .expect("old");
        let mut new = old.clone();
        new.cluster_ip = Some("10.96.0.6".into());
        normalize_cluster_ips(&mut new, Some(&old));
        assert_eq!(new.cluster_ips, Some(vec!["10.96.0.6".to_string()]));
        let mut new = old.clone();
        new.cluster_ip = None;
        normalize_cluster_ips(&mut new, Some(&old));
        assert_eq!(new.cluster_ips, None);
    }

    #[test]
    fn volume_node_and_lb_status_defaults() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "a"}, {"name": "b", "hostPath": {"path": "/x"}},
                                 {"name": "c", "configMap": {"name": "cm"}}]}
        }))
        .expect("pod");
        default_pod(&mut pod);
        assert_eq!(
            serde_json::to_value(pod.spec.as_ref().and_then(|s| s.volumes.as_ref())).expect("json"),
            json!([{"name": "a", "emptyDir": {}}, {"name": "b", "hostPath": {"path": "/x", "type": ""}},
                   {"name": "c", "configMap": {"name": "cm", "defaultMode": 420}}])
        );
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}
        }))
        .expect("node");
        default_node(&mut node);
        assert_eq!(
            serde_json::to_value(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
                .expect("json"),
            json!({"cpu": "2"})
        );
        let mut lb = svc(
            json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example.com"}]}}}),
        );
        default_service(&mut lb);
        assert_eq!(
            serde_json::to_value(lb.status.as_ref()).expect("json"),
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}, {"hostname": "lb.example.com"}]}})
        );
    }

    #[test]
    fn image_pull_policies() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            (
                "registry.k8s.io/e2e-test-images/agnhost:2.47",
                "IfNotPresent",
            ),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("app@sha256:abcd", "IfNotPresent"),
            ("app:latest@sha256:abcd", "Always"),
        ];
        for (image, want) in cases {
            assert_eq!(default_image_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pod_defaults() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "c", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"port": 80}},
                "resources": {"limits": {"cpu": "1"}}
            }]}
        }))
        .expect("pod");
        default_pod(&mut pod);
        assert_eq!(
            serde_json::to_value(pod.spec.as_ref().expect("spec")).expect("json"),
            json!({
                "containers": [{
                    "name": "c", "image": "nginx", "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                    "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30, "securityContext": {},
                "schedulerName": "default-scheduler", "enableServiceLinks": true
            })
        );
    }

    #[test]
    fn deployment_and_replica_set_defaults() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}
        }))
        .expect("deployment");
        default_deployment(&mut d);
        let spec = serde_json::to_value(d.spec.as_ref().expect("spec")).expect("json");
        assert_eq!(spec["replicas"], json!(1));
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
        assert_eq!(spec["progressDeadlineSeconds"], json!(600));
        assert_eq!(spec["template"]["spec"]["restartPolicy"], json!("Always"));
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            json!("IfNotPresent")
        );
        // Templates do not get the pod-only enableServiceLinks default.
        assert_eq!(spec["template"]["spec"].get("enableServiceLinks"), None);

        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}, "strategy": {"type": "Recreate"}}
        }))
        .expect("deployment");
        default_deployment(&mut d);
        let spec = serde_json::to_value(d.spec.as_ref().expect("spec")).expect("json");
        assert_eq!(spec["strategy"], json!({"type": "Recreate"}));

        let mut rs: ReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "r"}, "spec": {"selector": {}}}))
                .expect("rs");
        default_replica_set(&mut rs);
        assert_eq!(rs.spec.as_ref().and_then(|s| s.replicas), Some(1));
    }

    #[test]
    fn namespace_and_endpoint_defaults() {
        let mut ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("ns");
        default_namespace(&mut ns);
        assert_eq!(
            serde_json::to_value(&ns).expect("json"),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
        let mut ep: Endpoints = serde_json::from_value(
            json!({"metadata": {"name": "e"}, "subsets": [{"ports": [{"port": 80}]}]}),
        )
        .expect("ep");
        default_endpoints(&mut ep);
        assert_eq!(
            ep.subsets
                .as_ref()
                .and_then(|s| s[0].ports.as_ref())
                .and_then(|p| p[0].protocol.clone()),
            Some("TCP".into())
        );
        let mut es: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]
        }))
        .expect("es");
        default_endpoint_slice(&mut es);
        assert_eq!(
            serde_json::to_value(es.ports.as_ref().expect("ports")).expect("json"),
            json!([{"name": "", "port": 80, "protocol": "TCP"}])
        );
    }
}

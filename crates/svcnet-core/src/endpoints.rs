//! Which endpoints a Service has: Endpoints and EndpointSlices computed from pods, and slices mirrored from user-managed Endpoints.
//!
//! This follows upstream's endpoints controller (`pkg/controller/endpoint`),
//! EndpointSlice reconciler (`k8s.io/endpointslice`) and EndpointSlice
//! mirroring controller. Everything here is a pure function: the
//! controllers list objects, call these, and write what comes back.
//!
//! Where upstream's order comes from hashes or map iteration (subset and
//! port order, which endpoint lands in which new slice) we pick a
//! deterministic order instead, so that the same input always gives the
//! same output and an unchanged input gives no writes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod,
    Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Label set on Endpoints and slices of Services without a ClusterIP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label on Endpoints that the mirroring controller must leave alone.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// `managed-by` value of the EndpointSlice controller.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// `managed-by` value of the EndpointSlice mirroring controller.
pub const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Annotation upstream sets on Endpoints truncated to [`MAX_ENDPOINTS_CAPACITY`].
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Annotations the mirroring controller does not copy onto slices.
const MIRROR_SKIPPED_ANNOTATIONS: &[&str] = &[
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];
/// Upstream's default `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream's default `--mirroring-max-endpoints-per-subset`.
pub const DEFAULT_MIRRORING_MAX_ENDPOINTS: usize = 1000;
/// Most addresses an Endpoints object carries before it is truncated.
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;

/// What a controller must write to make the slices of one Service right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceDiff {
    /// New slices (with `generateName`, no name).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Existing slices to delete.
    pub delete: Vec<EndpointSlice>,
}

impl SliceDiff {
    /// True when nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Knobs of the slice reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceOptions {
    /// Most endpoints in one slice (upstream default 100).
    pub max_endpoints_per_slice: usize,
    /// Zone per node name (from the node's `topology.kubernetes.io/zone`
    /// label); nodes missing here get no zone.
    pub node_zones: BTreeMap<String, String>,
    /// The nodes that exist, when known. Pods bound to a node not in this
    /// set are left out (unless the Service publishes not-ready
    /// addresses), as upstream does so a pod on a vanished node does not
    /// linger; `None` skips the check.
    pub known_nodes: Option<BTreeSet<String>>,
}

impl Default for SliceOptions {
    fn default() -> Self {
        SliceOptions {
            max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            node_zones: BTreeMap::new(),
            known_nodes: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers the controllers need.

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the pod has a deletionTimestamp.
pub fn pod_is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|p| p.ip.as_str()).collect(),
        _ => status
            .pod_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .into_iter()
            .collect(),
    }
}

/// Upstream's `ShouldPodBeInEndpoints`: not Succeeded/Failed, has an IP,
/// and not terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(pod_phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || !pod_is_terminating(pod)
}

/// Whether the endpoint of `pod` carries a hostname for `svc`: the pod sets
/// `hostname` and its `subdomain` is the Service's name, in its namespace.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.is_some()
        && spec.subdomain == svc.metadata.name
        && pod.metadata.namespace == svc.metadata.namespace
}

fn protocol_of(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// The pod port a Service port targets: a number as is, a name looked up
/// in the pod's container ports (and sidecar init containers) with the
/// same protocol. None when a name does not resolve.
pub fn find_port(pod: &Pod, svc_port: &ServicePort) -> Option<i32> {
    match svc_port.target_port.as_ref() {
        None | Some(IntOrString::Int(0)) => Some(svc_port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // Like upstream, a string is always a port name (validation
            // rejects numeric strings).
            let spec = pod.spec.as_ref()?;
            let proto = protocol_of(svc_port.protocol.as_deref());
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol_of(p.protocol.as_deref()) == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// Whether every `selector` pair is in `labels` (upstream's `SelectorFromSet`).
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Service's selector when it manages endpoints; None for selector-less
/// Services (an empty selector counts as none, as after a storage round trip
/// upstream).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// The pods of `pods` that `svc` selects (same namespace, selector subset).
pub fn pods_for_service<'a>(svc: &Service, pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let Some(selector) = service_selector(svc) else {
        return Vec::new();
    };
    pods.iter()
        .copied()
        .filter(|p| p.metadata.namespace == svc.metadata.namespace)
        .filter(|p| selector_matches(selector, p.metadata.labels.as_ref()))
        .collect()
}

/// The Services of `services` that select `pod`, for routing pod events
/// to the Services to resync.
pub fn services_for_pod<'a>(pod: &Pod, services: &[&'a Service]) -> Vec<&'a Service> {
    services
        .iter()
        .copied()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| {
            service_selector(s)
                .is_some_and(|sel| selector_matches(sel, pod.metadata.labels.as_ref()))
        })
        .collect()
}

fn is_service_ip_set(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

fn is_ipv6(ip: &str) -> bool {
    matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
}

fn is_ip(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok()
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Labels of the objects we derive from `svc`: its own, plus the headless
/// marker when it has no ClusterIP.
fn derived_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_service_ip_set(svc) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

// ---------------------------------------------------------------------------
// Endpoints.

/// The pod IP of the Service's primary family, as upstream's
/// `podToEndpointAddressForService` picks it.
fn pod_ip_for_service<'a>(svc: &Service, pod: &'a Pod) -> Option<&'a str> {
    let spec = svc.spec.as_ref();
    let ips = pod_ips(pod);
    let want_v6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(family) => family == "IPv6",
        None => match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() && ip != "None" => is_ipv6(ip),
            _ => ips.first().is_some_and(|ip| is_ipv6(ip)),
        },
    };
    ips.into_iter().find(|ip| is_ipv6(ip) == want_v6)
}

/// The Endpoints object upstream's endpoints controller wants for `svc`,
/// or None when the Service has no selector (its Endpoints are the user's).
/// `pods` may hold any pods; those of other namespaces or not selected are
/// ignored.
pub fn compute_endpoints(svc: &Service, pods: &[&Pod]) -> Option<Endpoints> {
    service_selector(svc)?;
    let tolerate = publish_not_ready(svc);
    let ports = service_ports(svc);
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut subsets = Vec::new();
    for pod in pods_for_service(svc, pods) {
        if !should_pod_be_in_endpoints(pod, tolerate) {
            continue;
        }
        let Some(ip) = pod_ip_for_service(svc, pod) else {
            continue;
        };
        let addr = EndpointAddress {
            ip: ip.to_owned(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            hostname: should_set_hostname(pod, svc)
                .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
                .flatten(),
        };
        let ready = tolerate || pod_is_ready(pod);
        if ports.is_empty() {
            // Only headless Services may have no ports.
            if headless {
                subsets.push(single_subset(addr, None, ready));
            }
            continue;
        }
        for sp in ports {
            let Some(num) = find_port(pod, sp) else {
                continue;
            };
            let port = CorePort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: num,
                protocol: Some(protocol_of(sp.protocol.as_deref()).to_owned()),
                app_protocol: sp.app_protocol.clone(),
            };
            subsets.push(single_subset(addr.clone(), Some(port), ready));
        }
    }
    let mut subsets = repack_subsets(subsets);
    let mut annotations = BTreeMap::new();
    if truncate_subsets(&mut subsets) {
        annotations.insert(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned());
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(derived_labels(svc)),
            annotations: non_empty_map(annotations),
            ..Default::default()
        },
        subsets: non_empty(subsets),
    })
}

fn non_empty_map(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

fn single_subset(addr: EndpointAddress, port: Option<CorePort>, ready: bool) -> EndpointSubset {
    let (addresses, not_ready) = if ready {
        (Some(vec![addr]), None)
    } else {
        (None, Some(vec![addr]))
    };
    EndpointSubset {
        addresses,
        not_ready_addresses: not_ready,
        ports: port.map(|p| vec![p]),
    }
}

/// What Endpoints to write given the existing object: None when `existing`
/// already has the desired subsets, labels and capacity annotation (so the
/// controller writes only on change); otherwise `desired` content on top of
/// `existing`'s metadata (keeping its resourceVersion and other annotations).
pub fn endpoints_update(existing: Option<&Endpoints>, desired: &Endpoints) -> Option<Endpoints> {
    let Some(existing) = existing else {
        return Some(desired.clone());
    };
    let over = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_OVER_CAPACITY).cloned())
    };
    let same_subsets = normalized_subsets(existing) == normalized_subsets(desired);
    let same_labels = existing.metadata.labels.clone().unwrap_or_default()
        == desired.metadata.labels.clone().unwrap_or_default();
    if same_subsets && same_labels && over(existing) == over(desired) {
        return None;
    }
    let mut out = existing.clone();
    out.subsets = desired.subsets.clone();
    out.metadata.labels = desired.metadata.labels.clone();
    let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
    match over(desired) {
        Some(v) => {
            annotations.insert(ANNOTATION_OVER_CAPACITY.to_owned(), v);
        }
        None => {
            annotations.remove(ANNOTATION_OVER_CAPACITY);
        }
    }
    out.metadata.annotations = non_empty_map(annotations);
    Some(out)
}

/// Subsets with empty lists as None and targetRef resourceVersions dropped,
/// for comparing what is stored with what is wanted.
fn normalized_subsets(e: &Endpoints) -> Vec<EndpointSubset> {
    let norm_addrs = |a: &Option<Vec<EndpointAddress>>| {
        a.as_ref()
            .map(|v| {
                v.iter()
                    .cloned()
                    .map(|mut a| {
                        if let Some(t) = a.target_ref.as_mut() {
                            t.resource_version = None;
                        }
                        a
                    })
                    .collect::<Vec<_>>()
            })
            .and_then(non_empty)
    };
    e.subsets
        .iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: norm_addrs(&s.addresses),
            not_ready_addresses: norm_addrs(&s.not_ready_addresses),
            ports: s.ports.clone().and_then(non_empty),
        })
        .collect()
}

/// Sort key of an Endpoints port.
type CorePortKey = (String, i32, String, String);

fn core_port_key(p: &CorePort) -> CorePortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        protocol_of(p.protocol.as_deref()).to_owned(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// Address identity in upstream's repacking: IP plus target UID.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|t| t.uid.clone())
            .unwrap_or_default(),
    )
}

/// Upstream's `endpoints.RepackSubsets`: one subset per distinct set of
/// addresses, with all the ports those addresses share. An address that is
/// not ready for some port is not ready there (not-ready wins). Addresses
/// are sorted by IP then UID, ports by name, number and protocol, subsets
/// by their first port.
pub fn repack_subsets(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    let mut all_addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // A port of None stands for "no ports" (headless without ports).
    // Per port: the port itself and each address's readiness on it.
    type PortAddrs = (Option<CorePort>, BTreeMap<AddrKey, bool>);
    let mut port_to_addrs: BTreeMap<Option<CorePortKey>, PortAddrs> = BTreeMap::new();
    for subset in &subsets {
        let ports: Vec<Option<&CorePort>> = match subset.ports.as_deref() {
            Some(ps) if !ps.is_empty() => ps.iter().map(Some).collect(),
            _ => vec![None],
        };
        let addrs = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        for (addr, ready) in addrs {
            let key = addr_key(addr);
            all_addrs.entry(key.clone()).or_insert_with(|| addr.clone());
            for port in &ports {
                let entry = port_to_addrs
                    .entry(port.map(core_port_key))
                    .or_insert_with(|| (port.cloned(), BTreeMap::new()));
                let slot = entry.1.entry(key.clone()).or_insert(ready);
                *slot = *slot && ready;
            }
        }
    }
    // Group ports by the exact address set (with readiness) they map to.
    let mut by_addr_set: BTreeMap<Vec<(AddrKey, bool)>, Vec<CorePort>> = BTreeMap::new();
    for (_, (port, addrs)) in port_to_addrs {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        let ports = by_addr_set.entry(set).or_default();
        if let Some(p) = port {
            ports.push(p);
        }
    }
    let mut out: Vec<EndpointSubset> = by_addr_set
        .into_iter()
        .map(|(set, mut ports)| {
            ports.sort_by_key(core_port_key);
            let pick = |want: bool| {
                set.iter()
                    .filter(|(_, r)| *r == want)
                    .filter_map(|(k, _)| all_addrs.get(k).cloned())
                    .collect::<Vec<_>>()
            };
            EndpointSubset {
                addresses: non_empty(pick(true)),
                not_ready_addresses: non_empty(pick(false)),
                ports: non_empty(ports),
            }
        })
        .collect();
    out.sort_by_key(subset_sort_key);
    out
}

fn subset_sort_key(s: &EndpointSubset) -> (Vec<CorePortKey>, Vec<AddrKey>, Vec<AddrKey>) {
    (
        s.ports.iter().flatten().map(core_port_key).collect(),
        s.addresses.iter().flatten().map(addr_key).collect(),
        s.not_ready_addresses
            .iter()
            .flatten()
            .map(addr_key)
            .collect(),
    )
}

/// Upstream's `truncateEndpoints`: keep at most [`MAX_ENDPOINTS_CAPACITY`]
/// addresses, ready ones first, each subset keeping its proportion.
/// Returns whether anything was cut.
fn truncate_subsets(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_ENDPOINTS_CAPACITY;
    let (max, num_total) = if truncate_ready {
        (MAX_ENDPOINTS_CAPACITY, total_ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - total_ready, total_not_ready)
    };
    let mut can_be_added = max;
    for s in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            count(&s.addresses)
        } else {
            count(&s.not_ready_addresses)
        };
        // Proportional share, rounded up, like upstream's math.Ceil.
        let share = (in_subset * max)
            .div_ceil(num_total.max(1))
            .min(can_be_added);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
            can_be_added -= count(&s.addresses);
        } else {
            if let Some(a) = s.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            can_be_added -= count(&s.not_ready_addresses);
        }
        if s.addresses.as_ref().is_some_and(Vec::is_empty) {
            s.addresses = None;
        }
        if s.not_ready_addresses.as_ref().is_some_and(Vec::is_empty) {
            s.not_ready_addresses = None;
        }
    }
    true
}

// ---------------------------------------------------------------------------
// EndpointSlices.

/// Canonical identity of a slice's port list (order-insensitive).
type PortMapKey = Vec<(String, i32, String, String)>;

fn port_map_key(ports: Option<&[EndpointPort]>) -> PortMapKey {
    let mut key: PortMapKey = ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                protocol_of(p.protocol.as_deref()).to_owned(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// Identity of an endpoint inside a port mapping, as upstream's endpoint
/// hash: addresses, hostname and target namespace/name.
type EndpointKey = (Vec<String>, String, String, String);

fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    let (ns, name) = ep
        .target_ref
        .as_ref()
        .map(|t| {
            (
                t.namespace.clone().unwrap_or_default(),
                t.name.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    (addrs, ep.hostname.clone().unwrap_or_default(), ns, name)
}

/// An endpoint as compared for "did it change": targetRef resourceVersion
/// ignored, address order ignored.
fn endpoint_norm(ep: &Endpoint) -> Endpoint {
    let mut e = ep.clone();
    e.addresses.sort();
    if let Some(t) = e.target_ref.as_mut() {
        t.resource_version = None;
    }
    e
}

/// The address types (`IPv4`, `IPv6`) the Service's slices use.
pub fn address_types_for_service(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let mut out: BTreeSet<String> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter(|f| *f == "IPv4" || *f == "IPv6")
        .cloned()
        .collect();
    if !out.is_empty() {
        return out;
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            out.insert(if is_ipv6(ip) { "IPv6" } else { "IPv4" }.to_owned());
        }
        // Headless without families: both, as upstream does until defaulted.
        _ => {
            out.insert("IPv4".to_owned());
            out.insert("IPv6".to_owned());
        }
    }
    out
}

/// The slice ports of `pod` for `svc`: every Service port whose target
/// resolves on this pod, in Service order.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            let num = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(num),
                protocol: Some(protocol_of(sp.protocol.as_deref()).to_owned()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The slice endpoint of `pod` for `svc` and one address type.
pub fn pod_to_endpoint(
    pod: &Pod,
    svc: &Service,
    address_type: &str,
    opts: &SliceOptions,
) -> Endpoint {
    let serving = pod_is_ready(pod);
    let terminating = pod_is_terminating(pod);
    // Ready is never true for a terminating pod unless the Service
    // publishes not-ready addresses, for compatibility with Endpoints.
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let v6 = address_type == "IPv6";
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    Endpoint {
        addresses: pod_ips(pod)
            .into_iter()
            .filter(|ip| is_ip(ip) && is_ipv6(ip) == v6)
            .map(str::to_owned)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(target_ref(pod)),
        zone: node_name
            .as_ref()
            .and_then(|n| opts.node_zones.get(n).cloned()),
        node_name,
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

fn owner_ref(svc: &Service, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: kind.to_owned(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, uid: &str, kind: &str) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == kind && o.api_version == "v1")
}

/// `<name>-`, or the bare name when the dash would make it too long.
fn slice_prefix(name: &str) -> String {
    if name.len() < 253 {
        format!("{name}-")
    } else {
        name.to_owned()
    }
}

fn is_reserved_label(k: &str) -> bool {
    k == LABEL_SERVICE_NAME || k == LABEL_MANAGED_BY || k == LABEL_HEADLESS
}

/// Upstream's `setEndpointSliceLabels`: the Service's labels (without the
/// reserved ones), the headless marker, service-name and managed-by; and
/// whether the slice's non-reserved labels differ from the Service's.
fn slice_labels(
    existing: Option<&EndpointSlice>,
    svc: &Service,
    controller: &str,
) -> (BTreeMap<String, String>, bool) {
    let strip = |m: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        m.into_iter()
            .flatten()
            .filter(|(k, _)| !is_reserved_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let slice_own = strip(existing.and_then(|s| s.metadata.labels.as_ref()));
    let mut labels = strip(svc.metadata.labels.as_ref());
    let changed = slice_own != labels;
    if !is_service_ip_set(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.to_owned(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_owned(), controller.to_owned());
    (labels, changed)
}

fn new_slice(svc: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let (labels, _) = slice_labels(None, svc, ENDPOINTSLICE_CONTROLLER);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(
                svc.metadata.name.as_deref().unwrap_or_default(),
            )),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref(svc, "Service")]),
            ..Default::default()
        },
        address_type: address_type.to_owned(),
        endpoints: Vec::new(),
        ports: non_empty(ports),
    }
}

/// Upstream's placeholder comparison: same namespace, labels, owners,
/// address type and (empty) ports and endpoints.
fn placeholder_equal(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.metadata.namespace == b.metadata.namespace
        && a.metadata.labels.clone().unwrap_or_default()
            == b.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references.clone().unwrap_or_default()
            == b.metadata.owner_references.clone().unwrap_or_default()
        && a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports.clone().unwrap_or_default() == b.ports.clone().unwrap_or_default()
}

/// The EndpointSlice changes for `svc` given the `pods` (any; unselected
/// ones are ignored) and the `existing` slices managed by the EndpointSlice
/// controller for this Service (label `kubernetes.io/service-name=<svc>`
/// and managed-by). Uses upstream's default of 100 endpoints per slice.
pub fn compute_endpoint_slices(
    svc: &Service,
    pods: &[&Pod],
    existing: &[EndpointSlice],
) -> SliceDiff {
    compute_endpoint_slices_with(svc, pods, existing, &SliceOptions::default())
}

/// [`compute_endpoint_slices`] with explicit options. A selector-less
/// Service gets a diff deleting every existing controller-managed slice.
pub fn compute_endpoint_slices_with(
    svc: &Service,
    pods: &[&Pod],
    existing: &[EndpointSlice],
    opts: &SliceOptions,
) -> SliceDiff {
    let mut diff = SliceDiff::default();
    if service_selector(svc).is_none() {
        diff.delete = existing.to_vec();
        return diff;
    }
    let max = opts.max_endpoints_per_slice.max(1);
    let pods = pods_for_service(svc, pods);
    let types = address_types_for_service(svc);
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if types.contains(&slice.address_type) {
            by_type
                .entry(slice.address_type.as_str())
                .or_default()
                .push(slice);
        } else {
            diff.delete.push(slice.clone());
        }
    }
    for address_type in &types {
        let mut slices = by_type.remove(address_type.as_str()).unwrap_or_default();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let d = reconcile_address_type(svc, &pods, &slices, address_type, max, opts);
        diff.create.extend(d.create);
        diff.update.extend(d.update);
        diff.delete.extend(d.delete);
    }
    diff
}

fn reconcile_address_type(
    svc: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    address_type: &str,
    max: usize,
    opts: &SliceOptions,
) -> SliceDiff {
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let mut to_create = Vec::new();
    let mut to_update = Vec::new();
    let mut to_delete: Vec<EndpointSlice> = Vec::new();

    let mut existing_by_ports: BTreeMap<PortMapKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, &uid, "Service") {
            existing_by_ports
                .entry(port_map_key(slice.ports.as_deref()))
                .or_default()
                .push(slice);
        } else {
            to_delete.push((*slice).clone());
        }
    }

    let mut desired: BTreeMap<PortMapKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        if let Some(nodes) = &opts.known_nodes {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or("");
            if !nodes.contains(node) && !publish_not_ready(svc) {
                continue;
            }
        }
        let ports = endpoint_ports(svc, pod);
        let key = port_map_key(Some(&ports));
        let entry = desired
            .entry(key)
            .or_insert_with(|| (ports, BTreeMap::new()));
        let mut ep = pod_to_endpoint(pod, svc, address_type, opts);
        ep.addresses.sort();
        if !ep.addresses.is_empty() {
            entry.1.insert(endpoint_key(&ep), ep);
        }
    }

    for (key, (ports, endpoints)) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).cloned().unwrap_or_default();
        let d = reconcile_port_mapping(svc, &slices, endpoints, ports, address_type, max);
        to_create.extend(d.create);
        to_update.extend(d.update);
        to_delete.extend(d.delete);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            to_delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }

    // With nothing else left, keep (or create) one empty placeholder slice.
    if existing.len() == to_delete.len() && to_create.is_empty() {
        let placeholder = new_slice(svc, Vec::new(), address_type);
        if to_delete.len() == 1 && placeholder_equal(&to_delete[0], &placeholder) {
            to_delete.clear();
        } else {
            to_create.push(placeholder);
        }
    }

    // Turn creates into updates of slices that would be deleted anyway.
    let mut i = 0;
    while i < to_delete.len() && !to_create.is_empty() {
        if to_delete[i].address_type == address_type && owned_by(&to_delete[i], &uid, "Service") {
            let old = to_delete.remove(i);
            if let Some(mut slice) = to_create.pop() {
                adopt_identity(&mut slice, &old);
                to_update.push(slice);
            }
        } else {
            i += 1;
        }
    }
    // No new slices for a Service being deleted: the garbage collector
    // would race with us.
    if svc.metadata.deletion_timestamp.is_some() {
        to_create.clear();
    }
    SliceDiff {
        create: to_create,
        update: to_update,
        delete: to_delete,
    }
}

/// Gives a freshly built slice the identity of the stored one it replaces.
fn adopt_identity(slice: &mut EndpointSlice, old: &EndpointSlice) {
    slice.metadata.name = old.metadata.name.clone();
    slice.metadata.generate_name = old.metadata.generate_name.clone();
    slice.metadata.resource_version = old.metadata.resource_version.clone();
    slice.metadata.uid = old.metadata.uid.clone();
    slice.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
}

/// Upstream's `reconcileByPortMapping`: keep endpoints in the slices they
/// are in, update what changed, fill updated slices, then the fullest
/// unchanged slice that fits, then new slices.
fn reconcile_port_mapping(
    svc: &Service,
    existing: &[&EndpointSlice],
    desired: &mut BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    max: usize,
) -> SliceDiff {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();

    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                if endpoint_norm(&want) != endpoint_norm(ep) {
                    changed = true;
                }
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(Some(slice), svc, ENDPOINTSLICE_CONTROLLER);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                by_name.insert(name, (*slice).clone());
            } else {
                let mut s = (*slice).clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels);
                to_update.insert(name.clone());
                by_name.insert(name, s);
            }
        } else if labels_changed {
            let mut s = (*slice).clone();
            s.metadata.labels = Some(labels);
            to_update.insert(name.clone());
            by_name.insert(name, s);
        } else {
            unchanged.insert(name.clone());
            by_name.insert(name, (*slice).clone());
        }
    }

    // Fill slices already being updated, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<String> = to_update.iter().cloned().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name.get(n).map_or(0, |s| s.endpoints.len())));
        for n in names {
            if let Some(s) = by_name.get_mut(&n) {
                while s.endpoints.len() < max {
                    let Some((_, ep)) = desired.pop_first() else {
                        break;
                    };
                    s.endpoints.push(ep);
                }
            }
        }
    }

    let mut to_create = Vec::new();
    while !desired.is_empty() {
        let mut fill: Option<String> = None;
        if desired.len() < max && !unchanged.is_empty() {
            // The unchanged slice that ends up closest to full.
            let mut best = max;
            for n in &unchanged {
                let len = by_name.get(n).map_or(0, |s| s.endpoints.len());
                if desired.len() + len <= max && max - (desired.len() + len) < best {
                    best = max - (desired.len() + len);
                    fill = Some(n.clone());
                }
            }
        }
        match fill {
            Some(n) => {
                if let Some(s) = by_name.get_mut(&n) {
                    while s.endpoints.len() < max {
                        let Some((_, ep)) = desired.pop_first() else {
                            break;
                        };
                        s.endpoints.push(ep);
                    }
                }
                unchanged.remove(&n);
                to_update.insert(n);
            }
            None => {
                let mut s = new_slice(svc, ports.to_vec(), address_type);
                while s.endpoints.len() < max {
                    let Some((_, ep)) = desired.pop_first() else {
                        break;
                    };
                    s.endpoints.push(ep);
                }
                to_create.push(s);
            }
        }
    }

    SliceDiff {
        create: to_create,
        update: to_update
            .iter()
            .filter_map(|n| by_name.get(n).cloned())
            .collect(),
        delete: to_delete
            .iter()
            .filter_map(|n| by_name.get(n).cloned())
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// The `kubernetes` Service.

/// The Endpoints of `default/kubernetes` the API server keeps: its own
/// addresses on port `https`, labelled so the mirroring controller leaves
/// them alone (the API server writes the slice itself).
pub fn kubernetes_endpoints(api_server_ips: &[IpAddr], port: i32) -> Endpoints {
    let mut ips: Vec<IpAddr> = api_server_ips.to_vec();
    ips.sort();
    ips.dedup();
    let addresses: Vec<EndpointAddress> = ips
        .iter()
        .map(|ip| EndpointAddress {
            ip: ip.to_string(),
            ..Default::default()
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: Some("kubernetes".to_owned()),
            namespace: Some("default".to_owned()),
            labels: Some([(LABEL_SKIP_MIRROR.to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        subsets: (!addresses.is_empty()).then(|| {
            vec![EndpointSubset {
                addresses: Some(addresses),
                not_ready_addresses: None,
                ports: Some(vec![CorePort {
                    name: Some("https".to_owned()),
                    port,
                    protocol: Some("TCP".to_owned()),
                    app_protocol: None,
                }]),
            }]
        }),
    }
}

/// The EndpointSlice the API server writes next to [`kubernetes_endpoints`]:
/// named like the Endpoints, labelled only with the service name, IPv6 when
/// all addresses are.
pub fn kubernetes_endpoint_slice(ep: &Endpoints) -> EndpointSlice {
    let subset = ep.subsets.as_ref().and_then(|s| s.first());
    let ready: Vec<&EndpointAddress> = subset
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .collect();
    let not_ready: Vec<&EndpointAddress> = subset
        .iter()
        .flat_map(|s| s.not_ready_addresses.iter().flatten())
        .collect();
    let all_v6 = !ready.is_empty() && ready.iter().chain(&not_ready).all(|a| is_ipv6(&a.ip));
    let address_type = if all_v6 { "IPv6" } else { "IPv4" };
    let endpoints = ready
        .iter()
        .map(|a| (a, true))
        .chain(not_ready.iter().map(|a| (a, false)))
        .filter(|(a, _)| is_ip(&a.ip) && is_ipv6(&a.ip) == all_v6)
        .map(|(a, ready)| Endpoint {
            addresses: vec![a.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                ..Default::default()
            }),
            node_name: a.node_name.clone(),
            target_ref: a.target_ref.clone(),
            ..Default::default()
        })
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            name: ep.metadata.name.clone(),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(
                [(
                    LABEL_SERVICE_NAME.to_owned(),
                    ep.metadata.name.clone().unwrap_or_default(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        address_type: address_type.to_owned(),
        endpoints,
        ports: subset.and_then(|s| s.ports.as_ref()).map(|ps| {
            ps.iter()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: Some(protocol_of(p.protocol.as_deref()).to_owned()),
                    app_protocol: None,
                })
                .collect()
        }),
    }
}

// ---------------------------------------------------------------------------
// Mirroring.

fn address_to_endpoint(addr: &EndpointAddress, ready: bool) -> Option<(Endpoint, &'static str)> {
    let ip: IpAddr = addr.ip.parse().ok()?;
    let address_type = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
    Some((
        Endpoint {
            // Re-printed so irregular spellings become canonical.
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                ..Default::default()
            }),
            target_ref: addr.target_ref.clone(),
            node_name: addr.node_name.clone(),
            hostname: addr.hostname.clone().filter(|h| !h.is_empty()),
            ..Default::default()
        },
        address_type,
    ))
}

fn mirror_ports(ports: Option<&[CorePort]>) -> Vec<EndpointPort> {
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(protocol_of(p.protocol.as_deref()).to_owned()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn mirror_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    ep.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !MIRROR_SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn mirror_labels(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        LABEL_SERVICE_NAME.to_owned(),
        ep.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_owned(), MIRRORING_CONTROLLER.to_owned());
    labels
}

/// Whether the mirroring controller mirrors `ep` of `svc`: the Service has
/// no selector, and the Endpoints neither opt out nor hold a leader lock.
pub fn should_mirror(ep: &Endpoints, svc: &Service) -> bool {
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("control-plane.alpha.kubernetes.io/leader"));
    service_selector(svc).is_none() && !skip && !leader
}

/// The mirrored slices of user-managed Endpoints `ep` of a selector-less
/// `svc`, given the `existing` slices the mirroring controller manages for
/// it. One slice per (address type, ports) with up to 1000 endpoints, owned
/// by the Endpoints object, as upstream. When `ep` must not be mirrored
/// (the Service has a selector, or `ep` is labelled skip-mirror) every
/// existing mirrored slice is deleted.
pub fn mirror_endpoints_to_slices(
    ep: &Endpoints,
    svc: &Service,
    existing: &[EndpointSlice],
) -> SliceDiff {
    mirror_endpoints_to_slices_with(ep, svc, existing, DEFAULT_MIRRORING_MAX_ENDPOINTS)
}

/// [`mirror_endpoints_to_slices`] with an explicit per-subset limit.
pub fn mirror_endpoints_to_slices_with(
    ep: &Endpoints,
    svc: &Service,
    existing: &[EndpointSlice],
    max_per_subset: usize,
) -> SliceDiff {
    let mut diff = SliceDiff::default();
    if !should_mirror(ep, svc) {
        diff.delete = existing.to_vec();
        return diff;
    }
    // (address type, ports) → ports, endpoints.
    type MirrorKey = (String, PortMapKey);
    let mut desired: BTreeMap<MirrorKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for subset in repack_subsets(ep.subsets.clone().unwrap_or_default()) {
        let ports = mirror_ports(subset.ports.as_deref());
        let pkey = port_map_key(Some(&ports));
        let mut added = 0;
        let addrs = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        for (addr, ready) in addrs {
            if added >= max_per_subset {
                break;
            }
            let Some((endpoint, address_type)) = address_to_endpoint(addr, ready) else {
                continue;
            };
            added += 1;
            desired
                .entry((address_type.to_owned(), pkey.clone()))
                .or_insert_with(|| (ports.clone(), BTreeMap::new()))
                .1
                .insert(endpoint_key(&endpoint), endpoint);
        }
    }

    let mut existing_by_key: BTreeMap<MirrorKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        existing_by_key
            .entry((
                slice.address_type.clone(),
                port_map_key(slice.ports.as_deref()),
            ))
            .or_default()
            .push(slice);
    }
    for slices in existing_by_key.values_mut() {
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }

    let annotations = mirror_annotations(ep);
    let labels = mirror_labels(ep);
    let owner = OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Endpoints".to_owned(),
        name: ep.metadata.name.clone().unwrap_or_default(),
        uid: ep.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    for (key, (ports, endpoints)) in &desired {
        let slices = existing_by_key.get(key).cloned().unwrap_or_default();
        if let Some((first, rest)) = slices.split_first() {
            diff.delete.extend(rest.iter().map(|s| (*s).clone()));
            let mut have: Vec<Endpoint> = first.endpoints.iter().map(endpoint_norm).collect();
            let mut want: Vec<Endpoint> = endpoints.values().map(endpoint_norm).collect();
            have.sort_by_key(endpoint_key);
            want.sort_by_key(endpoint_key);
            let same = have == want
                && first.metadata.labels.clone().unwrap_or_default() == labels
                && first.metadata.annotations.clone().unwrap_or_default() == annotations;
            if same {
                continue;
            }
        }
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                namespace: ep.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                annotations: non_empty_map(annotations.clone()),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            address_type: key.0.clone(),
            endpoints: endpoints.values().cloned().collect(),
            ports: non_empty(ports.clone()),
        };
        match slices.first() {
            Some(old) => {
                adopt_identity(&mut slice, old);
                diff.update.push(slice);
            }
            None => {
                slice.metadata.generate_name = Some(slice_prefix(
                    ep.metadata.name.as_deref().unwrap_or_default(),
                ));
                diff.create.push(slice);
            }
        }
    }
    for (key, slices) in &existing_by_key {
        if !desired.contains_key(key) {
            diff.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    // Reuse slices about to be deleted for slices about to be created (any
    // create of the same address type, where upstream only tries the last).
    let mut i = 0;
    while i < diff.delete.len() && !diff.create.is_empty() {
        let same_type = diff
            .create
            .iter()
            .rposition(|c| c.address_type == diff.delete[i].address_type);
        if let Some(pos) = same_type {
            let old = diff.delete.remove(i);
            let mut slice = diff.create.remove(pos);
            adopt_identity(&mut slice, &old);
            diff.update.push(slice);
        } else {
            i += 1;
        }
    }
    diff
}

#[cfg(test)]
mod tests;

//! The change tracker: Service and EndpointSlice events in, one desired state per node out.
//!
//! Like upstream's ServiceChangeTracker / EndpointsChangeTracker it keeps
//! the current objects in a compact form, drops no-op updates, and at sync
//! time re-plans only the Services that changed. Sans-IO: no sockets, no clock
//! other than the `Instant`s the caller hands in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::plan::{
    EndpointInfo, Family, PortKey, PortPlan, Proto, ServiceInfo, ServicePortInfo, plan_service,
};

/// Label naming the Service a slice belongs to.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Upstream's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// `(namespace, name)` of a Service.
pub type ServiceKey = (String, String);

/// The whole desired state of this node: every service port's plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    pub ports: BTreeMap<PortKey, Arc<PortPlan>>,
}

impl DesiredState {
    /// Builds a state from plans (tests and benchmarks).
    pub fn from_plans(plans: impl IntoIterator<Item = PortPlan>) -> DesiredState {
        DesiredState {
            ports: plans
                .into_iter()
                .map(|p| (p.key.clone(), Arc::new(p)))
                .collect(),
        }
    }
}

/// Extracts what the proxy needs from a Service; `None` for Services the
/// proxy skips (ExternalName, headless). ClusterIPs of both families are
/// kept in `spec.clusterIPs` order (the primary family first).
pub fn service_info(svc: &Service) -> Option<ServiceInfo> {
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = svc.metadata.name.clone()?;
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.clone());
    }
    let cluster_ips: Vec<IpAddr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
    if cluster_ips.is_empty() {
        return None;
    }
    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    let lb_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    let node_ports_allowed = matches!(
        spec.type_.as_deref(),
        Some("NodePort") | Some("LoadBalancer")
    );
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePortInfo {
                port_name: p.name.clone().unwrap_or_default(),
                proto: Proto::parse(p.protocol.as_deref())?,
                port: u16::try_from(p.port).ok().filter(|p| *p > 0)?,
                node_port: p
                    .node_port
                    .filter(|_| node_ports_allowed)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
            })
        })
        .collect();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    Some(ServiceInfo {
        namespace,
        name,
        cluster_ips,
        external_ips,
        lb_ips,
        ports,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        affinity,
    })
}

/// The Service a slice belongs to and its endpoints, one per (endpoint, port).
/// IPv4 and IPv6 slices both count; an address not of the slice's
/// `addressType` is skipped, and FQDN slices have no endpoints.
pub fn slice_endpoints(slice: &EndpointSlice) -> Option<(ServiceKey, Vec<EndpointInfo>)> {
    let namespace = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let svc = slice
        .metadata
        .labels
        .as_ref()?
        .get(LABEL_SERVICE_NAME)?
        .clone();
    let mut out = Vec::new();
    if let Some(fam) = Family::parse(&slice.address_type) {
        for port in slice.ports.iter().flatten() {
            let Some(proto) = Proto::parse(port.protocol.as_deref()) else {
                continue;
            };
            let Some(num) = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
            else {
                continue;
            };
            for ep in &slice.endpoints {
                // Upstream uses the first address only.
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .filter(|ip| Family::of(*ip) == fam)
                else {
                    continue;
                };
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                out.push(EndpointInfo {
                    port_name: port.name.clone().unwrap_or_default(),
                    proto,
                    addr: SocketAddr::new(ip, num),
                    node: ep.node_name.clone(),
                    ready,
                    serving: c.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                });
            }
        }
    }
    Some(((namespace, svc), out))
}

/// Tracks Services and slices and re-plans changed Services on demand.
#[derive(Debug)]
pub struct Tracker {
    node: String,
    services: BTreeMap<ServiceKey, ServiceInfo>,
    slices: BTreeMap<ServiceKey, (ServiceKey, Vec<EndpointInfo>)>,
    by_service: BTreeMap<ServiceKey, BTreeSet<ServiceKey>>,
    planned: BTreeMap<ServiceKey, Vec<PortKey>>,
    dirty: BTreeSet<ServiceKey>,
    state: Arc<DesiredState>,
    /// When the oldest change not yet synced arrived (network programming latency).
    pending_since: Option<Instant>,
}

impl Tracker {
    pub fn new(node: impl Into<String>) -> Tracker {
        Tracker {
            node: node.into(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            by_service: BTreeMap::new(),
            planned: BTreeMap::new(),
            dirty: BTreeSet::new(),
            state: Arc::default(),
            pending_since: None,
        }
    }

    fn mark(&mut self, key: ServiceKey, now: Instant) {
        self.dirty.insert(key);
        self.pending_since.get_or_insert(now);
    }

    /// A Service was added or updated. Returns whether anything the proxy uses changed.
    pub fn service_updated(&mut self, svc: &Service, now: Instant) -> bool {
        let key = (
            svc.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        match service_info(svc) {
            Some(info) => {
                if self.services.get(&key) == Some(&info) {
                    return false;
                }
                self.services.insert(key.clone(), info);
            }
            None => {
                if self.services.remove(&key).is_none() {
                    return false;
                }
            }
        }
        self.mark(key, now);
        true
    }

    pub fn service_deleted(&mut self, namespace: &str, name: &str, now: Instant) -> bool {
        let key = (namespace.to_string(), name.to_string());
        if self.services.remove(&key).is_none() {
            return false;
        }
        self.mark(key, now);
        true
    }

    pub fn slice_updated(&mut self, slice: &EndpointSlice, now: Instant) -> bool {
        let skey = (
            slice
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            slice.metadata.name.clone().unwrap_or_default(),
        );
        let Some((svc, mut eps)) = slice_endpoints(slice) else {
            return self.slice_deleted(&skey.0, &skey.1, now);
        };
        eps.sort();
        if self.slices.get(&skey) == Some(&(svc.clone(), eps.clone())) {
            return false;
        }
        if let Some((old, _)) = self.slices.insert(skey.clone(), (svc.clone(), eps))
            && old != svc
        {
            self.unlink(&old, &skey, now);
        }
        self.by_service.entry(svc.clone()).or_default().insert(skey);
        self.mark(svc, now);
        true
    }

    fn unlink(&mut self, svc: &ServiceKey, skey: &ServiceKey, now: Instant) {
        if let Some(set) = self.by_service.get_mut(svc) {
            set.remove(skey);
            if set.is_empty() {
                self.by_service.remove(svc);
            }
        }
        self.mark(svc.clone(), now);
    }

    pub fn slice_deleted(&mut self, namespace: &str, name: &str, now: Instant) -> bool {
        let skey = (namespace.to_string(), name.to_string());
        let Some((svc, _)) = self.slices.remove(&skey) else {
            return false;
        };
        self.unlink(&svc, &skey, now);
        true
    }

    /// Replaces every Service (after a relist): only real differences mark Services dirty.
    pub fn replace_services(&mut self, all: &[Service], now: Instant) {
        let keep: BTreeSet<ServiceKey> = all
            .iter()
            .map(|s| {
                (
                    s.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    s.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for (ns, n) in gone {
            self.service_deleted(&ns, &n, now);
        }
        for s in all {
            self.service_updated(s, now);
        }
    }

    /// Replaces every slice (after a relist).
    pub fn replace_slices(&mut self, all: &[EndpointSlice], now: Instant) {
        let keep: BTreeSet<ServiceKey> = all
            .iter()
            .map(|s| {
                (
                    s.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    s.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let gone: Vec<ServiceKey> = self
            .slices
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for (ns, n) in gone {
            self.slice_deleted(&ns, &n, now);
        }
        for s in all {
            self.slice_updated(s, now);
        }
    }

    /// Are there changes not yet taken by [`Tracker::take_state`]?
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Re-plans changed Services and returns the whole desired state and the
    /// arrival time of the oldest change it includes.
    ///
    /// The state is shared, not copied: while the backend holds the previous
    /// one, the first change copies it (copy-on-write); once it has let go,
    /// changes apply in place (a copy of 20,000 plans costs milliseconds).
    pub fn take_state(&mut self) -> (Arc<DesiredState>, Option<Instant>) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            let state = Arc::make_mut(&mut self.state);
            for pk in self.planned.remove(&key).unwrap_or_default() {
                state.ports.remove(&pk);
            }
            let Some(info) = self.services.get(&key) else {
                continue;
            };
            let eps: Vec<EndpointInfo> = self
                .by_service
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|s| self.slices.get(s))
                .flat_map(|(_, e)| e.iter().cloned())
                .collect();
            let plans = plan_service(info, &eps, &self.node);
            self.planned
                .insert(key, plans.iter().map(|p| p.key.clone()).collect());
            let state = Arc::make_mut(&mut self.state);
            for p in plans {
                state.ports.insert(p.key.clone(), Arc::new(p));
            }
        }
        (self.state.clone(), self.pending_since.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).expect("valid Service")
    }

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).expect("valid slice")
    }

    fn web() -> Service {
        svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                     "externalIPs": ["192.0.2.10"], "sessionAffinity": "ClientIP",
                     "externalTrafficPolicy": "Local",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}
        }))
    }

    fn web_slice(ready: bool) -> EndpointSlice {
        slice(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "nodeName": "n1", "conditions": {"ready": ready}},
                {"addresses": ["10.244.2.2"], "nodeName": "n2"}
            ]
        }))
    }

    #[test]
    fn service_fields_extracted() {
        let info = service_info(&web()).expect("planned");
        assert_eq!(
            format!("{info:?}"),
            "ServiceInfo { namespace: \"default\", name: \"web\", cluster_ips: [10.96.0.20], external_ips: [192.0.2.10], lb_ips: [192.0.2.50], ports: [ServicePortInfo { port_name: \"http\", proto: Tcp, port: 80, node_port: Some(30080) }], internal_local: false, external_local: true, affinity: Some(10800) }"
        );
    }

    #[test]
    fn skipped_services() {
        let rows = [
            (
                "headless",
                serde_json::json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            ),
            (
                "external name",
                serde_json::json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            ),
            (
                "headless dual-stack",
                serde_json::json!({"metadata": {"name": "h6"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}}),
            ),
            ("no spec", serde_json::json!({"metadata": {"name": "x"}})),
        ];
        for (case, j) in rows {
            assert_eq!(service_info(&svc(j)), None, "{case}");
        }
    }

    #[test]
    fn tracker_replans_only_on_change() {
        let now = Instant::now();
        let mut t = Tracker::new("n1");
        assert!(t.service_updated(&web(), now));
        assert!(!t.service_updated(&web(), now), "same object is a no-op");
        assert!(t.slice_updated(&web_slice(true), now));
        let (state, since) = t.take_state();
        assert_eq!(since, Some(now));
        let plan = state.ports.values().next().expect("one port");
        assert_eq!(
            format!("{:?}", plan.external),
            "Endpoints([10.244.1.2:8080])"
        );
        assert_eq!(
            format!("{:?}", plan.internal),
            "Endpoints([10.244.1.2:8080, 10.244.2.2:8080])"
        );
        assert!(!t.is_dirty());
        assert!(!t.slice_updated(&web_slice(true), now));
        assert!(t.slice_updated(&web_slice(false), now));
        let (state, _) = t.take_state();
        let plan = state.ports.values().next().expect("one port");
        assert_eq!(format!("{:?}", plan.external), "Drop");
        assert!(t.slice_deleted("default", "web-abc", now));
        let (state, _) = t.take_state();
        assert_eq!(
            format!("{:?}", state.ports.values().next().map(|p| &p.internal)),
            "Some(Reject)"
        );
        t.replace_services(&[], now);
        let (state, _) = t.take_state();
        assert!(state.ports.is_empty());
    }

    #[test]
    fn dual_stack_service_and_slices() {
        let now = Instant::now();
        let mut t = Tracker::new("n1");
        let ds = svc(serde_json::json!({
            "metadata": {"name": "ds", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.21", "clusterIPs": ["10.96.0.21", "fd00:10:96::21"],
                     "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                     "externalIPs": ["192.0.2.10", "2001:db8::10"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30090}]}
        }));
        let v6only = svc(serde_json::json!({
            "metadata": {"name": "v6", "namespace": "default"},
            "spec": {"clusterIP": "fd00:10:96::22", "clusterIPs": ["fd00:10:96::22"], "ipFamilies": ["IPv6"],
                     "ports": [{"name": "http", "port": 80}]}
        }));
        let sl = |name: &str, svc: &str, ty: &str, addrs: &[&str]| {
            let eps: Vec<serde_json::Value> = addrs
                .iter()
                .map(|a| serde_json::json!({"addresses": [a], "nodeName": "n1"}))
                .collect();
            slice(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
                "addressType": ty,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": eps
            }))
        };
        t.service_updated(&ds, now);
        t.service_updated(&v6only, now);
        t.slice_updated(&sl("ds-4", "ds", "IPv4", &["10.244.1.2"]), now);
        // A v6 slice carrying a v4 address (invalid) contributes only its v6 one.
        t.slice_updated(
            &sl("ds-6", "ds", "IPv6", &["fd00:10:244:1::2", "10.244.1.3"]),
            now,
        );
        // The v6-only Service has only a v4 slice: no endpoints of its family.
        t.slice_updated(&sl("v6-4", "v6", "IPv4", &["10.244.1.4"]), now);
        t.slice_updated(&sl("fq", "v6", "FQDN", &["example.com"]), now);
        let (state, _) = t.take_state();
        let got: Vec<String> = state
            .ports
            .values()
            .map(|p| {
                format!(
                    "{} {:?} {:?} {:?} {:?}",
                    p.key, p.cluster_ips, p.external_ips, p.node_port, p.internal
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "default/ds:http/TCP [10.96.0.21] [192.0.2.10] Some(30090) Endpoints([10.244.1.2:8080])",
                "default/ds:http/TCP/IPv6 [fd00:10:96::21] [2001:db8::10] Some(30090) Endpoints([[fd00:10:244:1::2]:8080])",
                "default/v6:http/TCP/IPv6 [fd00:10:96::22] [] None Reject",
            ]
        );
    }
}

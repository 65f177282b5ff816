//! The Service registry: ClusterIP and NodePort allocation in the same store
//! transaction as the Service write, release on delete and on type changes.
//!
//! The allocators (from `svcnet_core::alloc`) are persisted as snapshots under
//! `/registry/ranges/…`; each Service write guards them by revision, so a
//! second API server writing meanwhile makes the transaction fail and this
//! one reloads and retries. At start the state is rebuilt from the stored
//! Services and rewritten if the snapshot is missing or disagrees.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};
use svcnet_core::alloc::{
    self, AllocError, AllocFieldError, AllocSnapshot, IpAllocator, PortAllocator, PortRange,
};
use svcnet_core::field_errors::{BadValue, ErrorType, FieldError};
use svcnet_store::{Compare, Op, RangeRequest, Revision, Store};
use tokio::sync::Mutex;

use crate::handlers::{guard, put};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::strategy;
use crate::{Api, storage};

const IP_KEY: &[u8] = b"/registry/ranges/serviceips";
const PORT_KEY: &[u8] = b"/registry/ranges/servicenodeports";
const SERVICES_PREFIX: &[u8] = b"/registry/services/";

#[derive(Debug, Clone)]
struct Allocs {
    ips: IpAllocator,
    ports: PortAllocator,
    ip_rev: Option<Revision>,
    port_rev: Option<Revision>,
}

/// Allocation state shared by all Service writes of this API server.
#[derive(Debug)]
pub struct ServiceRegistry {
    cidr: String,
    range: PortRange,
    state: Mutex<Option<Allocs>>,
}

fn rng() -> impl FnMut() -> u64 {
    || rand::random::<u64>()
}

fn spec_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn wants_ip(svc: &Value) -> bool {
    spec_type(svc) != "ExternalName" && svc["spec"]["clusterIP"].as_str() != Some("None")
}

fn wants_node_ports(svc: &Value) -> bool {
    match spec_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc["spec"]["allocateLoadBalancerNodePorts"].as_bool() != Some(false),
        _ => false,
    }
}

fn wants_health_port(svc: &Value) -> bool {
    spec_type(svc) == "LoadBalancer"
        && svc["spec"]["externalTrafficPolicy"].as_str() == Some("Local")
}

fn ip_of(svc: &Value) -> Option<IpAddr> {
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn node_ports(svc: &Value) -> BTreeSet<i32> {
    let mut s: BTreeSet<i32> = svc["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["nodePort"].as_i64())
                .filter(|n| *n > 0)
                .map(|n| n as i32)
                .collect()
        })
        .unwrap_or_default();
    if let Some(h) = svc["spec"]["healthCheckNodePort"]
        .as_i64()
        .filter(|n| *n > 0)
    {
        s.insert(h as i32);
    }
    s
}

fn field_error(res: &Resource, svc: &Value, e: AllocFieldError) -> ApiError {
    let fe = FieldError {
        error_type: ErrorType::Invalid,
        field: e.field,
        bad_value: Some(BadValue::Raw(e.value)),
        detail: e.detail,
    };
    strategy::invalid(res, storage::name_of(svc), &[fe])
}

impl ServiceRegistry {
    pub fn new(cidr: &str, range: &str) -> Result<Self, AllocError> {
        IpAllocator::new(cidr)?;
        let range = PortRange::parse(range)?;
        Ok(ServiceRegistry {
            cidr: cidr.to_string(),
            range,
            state: Mutex::new(None),
        })
    }

    /// The `kubernetes` Service's IP: the first of the range.
    pub fn first_ip(&self) -> String {
        IpAllocator::new(&self.cidr)
            .map(|a| a.first_ip().to_string())
            .unwrap_or_default()
    }

    /// Loads (or rebuilds) the allocators; called at start and after a lost race.
    async fn load(&self, store: &dyn Store) -> ApiResult<Allocs> {
        let internal = |e: svcnet_store::StoreError| {
            ApiError::internal(format!("loading service allocations: {e}"))
        };
        let mut ips =
            IpAllocator::new(&self.cidr).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut ports = PortAllocator::new(self.range);
        // Rebuild from the Services themselves: they are the truth.
        let mut start = None;
        let mut rev = None;
        loop {
            let r = store
                .range(RangeRequest {
                    prefix: SERVICES_PREFIX.to_vec(),
                    start,
                    limit: 1000,
                    revision: rev,
                })
                .await
                .map_err(internal)?;
            rev = Some(r.revision);
            for kv in &r.kvs {
                if let Some(svc) = storage::decode(kv) {
                    if let Some(ip) = ip_of(&svc) {
                        let _ = ips.allocate(ip);
                    }
                    for p in node_ports(&svc) {
                        let _ = ports.allocate(p);
                    }
                }
            }
            if !r.more {
                break;
            }
            let mut next = r.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
            next.push(0);
            start = Some(next);
        }
        let ip_kv = store.get(IP_KEY).await.map_err(internal)?;
        let port_kv = store.get(PORT_KEY).await.map_err(internal)?;
        let stored = |kv: &Option<svcnet_store::KeyValue>| -> Option<AllocSnapshot> {
            kv.as_ref()
                .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        };
        let mut allocs = Allocs {
            ip_rev: ip_kv.as_ref().map(|k| k.mod_revision),
            port_rev: port_kv.as_ref().map(|k| k.mod_revision),
            ips,
            ports,
        };
        let (ip_ok, port_ok) = (
            stored(&ip_kv).as_ref() == Some(&allocs.ips.snapshot()),
            stored(&port_kv).as_ref() == Some(&allocs.ports.snapshot()),
        );
        if !ip_ok || !port_ok {
            if ip_kv.is_some() || port_kv.is_some() {
                tracing::warn!(
                    "service allocation snapshot missing or inconsistent with stored Services; rewriting it"
                );
            }
            let compares = vec![
                guard(IP_KEY, allocs.ip_rev),
                guard(PORT_KEY, allocs.port_rev),
            ];
            let ops = vec![self.ip_op(&allocs.ips), self.port_op(&allocs.ports)];
            let r = store.txn(compares, ops).await.map_err(internal)?;
            if r.succeeded {
                allocs.ip_rev = Some(r.revision);
                allocs.port_rev = Some(r.revision);
            }
        }
        Ok(allocs)
    }

    fn ip_op(&self, a: &IpAllocator) -> Op {
        Op::Put(
            IP_KEY.to_vec(),
            serde_json::to_vec(&a.snapshot()).unwrap_or_default(),
        )
    }

    fn port_op(&self, a: &PortAllocator) -> Op {
        Op::Put(
            PORT_KEY.to_vec(),
            serde_json::to_vec(&a.snapshot()).unwrap_or_default(),
        )
    }

    /// Rebuilds the allocation state now (at start).
    pub async fn init(&self, store: &dyn Store) -> ApiResult<()> {
        let a = self.load(store).await?;
        *self.state.lock().await = Some(a);
        Ok(())
    }

    /// Carries allocated values over an update that omitted them, and drops
    /// the ones a type change makes meaningless (as upstream's registry does).
    pub fn carry_over(&self, new: &mut Value, old: &Value) {
        let new_type = spec_type(new).to_string();
        let old_type = spec_type(old).to_string();
        let no_ip = new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty);
        if new_type == "ExternalName" {
            if old_type != "ExternalName" {
                let same_ip = new["spec"]["clusterIP"] == old["spec"]["clusterIP"] || no_ip;
                if let Some(spec) = new["spec"].as_object_mut() {
                    if same_ip {
                        spec.remove("clusterIP");
                        spec.remove("clusterIPs");
                    }
                    spec.remove("ipFamilies");
                    spec.remove("ipFamilyPolicy");
                }
            }
        } else if no_ip && old_type != "ExternalName" && old["spec"]["clusterIP"].is_string() {
            new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            for f in ["ipFamilies", "ipFamilyPolicy"] {
                if new["spec"].get(f).is_none_or(Value::is_null)
                    && let Some(v) = old["spec"].get(f)
                {
                    new["spec"][f] = v.clone();
                }
            }
        }
        let needs = wants_node_ports(new);
        let old_ports: Vec<Value> = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let find_old = |p: &Value| {
            old_ports.iter().find(|o| {
                o["port"] == p["port"]
                    && o["protocol"].as_str().unwrap_or("TCP")
                        == p["protocol"].as_str().unwrap_or("TCP")
            })
        };
        if let Some(ports) = new["spec"]["ports"].as_array_mut() {
            for p in ports.iter_mut() {
                let has = p["nodePort"].as_i64().is_some_and(|n| n > 0);
                let old_np = find_old(p)
                    .and_then(|o| o["nodePort"].as_i64())
                    .filter(|n| *n > 0);
                if needs && !has {
                    if let Some(n) = old_np {
                        p["nodePort"] = json!(n);
                    }
                } else if !needs
                    && has
                    && old_np == p["nodePort"].as_i64()
                    && let Some(m) = p.as_object_mut()
                {
                    m.remove("nodePort");
                }
            }
        }
        let hc = new["spec"]["healthCheckNodePort"]
            .as_i64()
            .filter(|n| *n > 0);
        if wants_health_port(new) && hc.is_none() {
            if let Some(h) = old["spec"]["healthCheckNodePort"]
                .as_i64()
                .filter(|n| *n > 0)
            {
                new["spec"]["healthCheckNodePort"] = json!(h);
            }
        } else if !wants_health_port(new)
            && hc.is_some()
            && hc == old["spec"]["healthCheckNodePort"].as_i64()
            && let Some(spec) = new["spec"].as_object_mut()
        {
            spec.remove("healthCheckNodePort");
        }
    }

    /// Allocates what `svc` needs given what `old` already held; mutates the
    /// working copies of the allocators and fills in the values.
    fn assign(
        &self,
        res: &Resource,
        a: &mut Allocs,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let old_ip = old.and_then(ip_of);
        let old_ports = old.map(node_ports).unwrap_or_default();
        // ClusterIP.
        if wants_ip(svc) {
            match svc["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()) {
                Some(s) => {
                    let ip: IpAddr = s.parse().map_err(|_| {
                        field_error(
                            res,
                            svc,
                            alloc::cluster_ip_field_error(
                                &[s.to_string()],
                                s,
                                &AllocError::InvalidCidr(s.to_string()),
                            ),
                        )
                    })?;
                    if old_ip != Some(ip)
                        && let Err(e) = a.ips.allocate(ip)
                    {
                        let ips: Vec<String> = svc["spec"]["clusterIPs"]
                            .as_array()
                            .map(|v| {
                                v.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .filter(|v: &Vec<String>| !v.is_empty())
                            .unwrap_or_else(|| vec![s.to_string()]);
                        return Err(field_error(
                            res,
                            svc,
                            alloc::cluster_ip_field_error(&ips, s, &e),
                        ));
                    }
                }
                None => {
                    let ip = a
                        .ips
                        .allocate_next(&mut rng())
                        .map_err(|e| ApiError::internal(alloc::cluster_ip_internal_message(&e)))?;
                    svc["spec"]["clusterIP"] = json!(ip.to_string());
                }
            }
            let ip = svc["spec"]["clusterIP"].clone();
            svc["spec"]["clusterIPs"] = json!([ip]);
            let fam = if a.ips.is_ipv6() { "IPv6" } else { "IPv4" };
            if svc["spec"]["ipFamilies"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                svc["spec"]["ipFamilies"] = json!([fam]);
            }
            if svc["spec"]["ipFamilyPolicy"].is_null() {
                svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        if let Some(ip) = old_ip
            && (ip_of(svc) != Some(ip) || !wants_ip(svc))
        {
            a.ips.release(ip);
        }
        // NodePorts: the same number may serve TCP and UDP of one port.
        let mut taken: BTreeSet<i32> = BTreeSet::new();
        if wants_node_ports(svc) {
            let n = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
            for i in 0..n {
                let given = svc["spec"]["ports"][i]["nodePort"]
                    .as_i64()
                    .filter(|n| *n > 0)
                    .map(|n| n as i32);
                match given {
                    Some(p) => {
                        if !old_ports.contains(&p) && !taken.contains(&p) {
                            a.ports.allocate(p).map_err(|e| {
                                field_error(res, svc, alloc::node_port_field_error(i, p, &e))
                            })?;
                        }
                        taken.insert(p);
                    }
                    None => {
                        let p = a.ports.allocate_next(&mut rng()).map_err(|e| {
                            ApiError::internal(alloc::node_port_internal_message(&e))
                        })?;
                        svc["spec"]["ports"][i]["nodePort"] = json!(p);
                        taken.insert(p);
                    }
                }
            }
        }
        if wants_health_port(svc) {
            match svc["spec"]["healthCheckNodePort"]
                .as_i64()
                .filter(|n| *n > 0)
                .map(|n| n as i32)
            {
                Some(p) => {
                    if !old_ports.contains(&p) && !taken.contains(&p) {
                        a.ports.allocate(p).map_err(|e| {
                            ApiError::invalid(
                                res,
                                storage::name_of(svc),
                                vec![],
                                alloc::health_check_node_port_message(p, &e),
                            )
                        })?;
                    }
                    taken.insert(p);
                }
                None => {
                    let p = a
                        .ports
                        .allocate_next(&mut rng())
                        .map_err(|e| ApiError::internal(alloc::node_port_internal_message(&e)))?;
                    svc["spec"]["healthCheckNodePort"] = json!(p);
                    taken.insert(p);
                }
            }
        }
        for p in old_ports.difference(&taken) {
            a.ports.release(*p);
        }
        Ok(())
    }

    /// Runs `write` (which returns the store ops for the Service itself and
    /// its guard) under the allocation lock, in one transaction with the
    /// allocator snapshots. Retries after another server changed them.
    async fn transact(
        &self,
        api: &Api,
        res: &Resource,
        svc_key: Vec<u8>,
        svc_guard: Option<Revision>,
        new: Option<&mut Value>,
        old: Option<&Value>,
    ) -> ApiResult<Revision> {
        let name = new
            .as_deref()
            .or(old)
            .map(|v| storage::name_of(v).to_string())
            .unwrap_or_default();
        let mut new = new;
        let mut guard_state = self.state.lock().await;
        for _ in 0..5 {
            if guard_state.is_none() {
                *guard_state = Some(self.load(api.store.as_ref()).await?);
            }
            let Some(cur) = guard_state.as_ref() else {
                continue;
            };
            let mut work = cur.clone();
            let mut working_obj = new.as_deref().cloned();
            match working_obj.as_mut() {
                Some(obj) => self.assign(res, &mut work, obj, old)?,
                None => {
                    // Delete: release everything the old object held.
                    if let Some(o) = old {
                        if let Some(ip) = ip_of(o) {
                            work.ips.release(ip);
                        }
                        for p in node_ports(o) {
                            work.ports.release(p);
                        }
                    }
                }
            }
            let mut compares = vec![
                guard(&svc_key, svc_guard),
                guard(IP_KEY, work.ip_rev),
                guard(PORT_KEY, work.port_rev),
            ];
            let mut ops = Vec::new();
            match &working_obj {
                Some(obj) => ops.push(put(svc_key.clone(), obj)),
                None => ops.push(Op::Delete(svc_key.clone())),
            }
            let ip_changed = work.ips.snapshot() != cur.ips.snapshot();
            let port_changed = work.ports.snapshot() != cur.ports.snapshot();
            if ip_changed {
                ops.push(self.ip_op(&work.ips));
            } else {
                compares.retain(|c| !matches!(c, Compare::ModRevision(k, _) | Compare::Absent(k) if k == IP_KEY));
            }
            if port_changed {
                ops.push(self.port_op(&work.ports));
            } else {
                compares.retain(|c| !matches!(c, Compare::ModRevision(k, _) | Compare::Absent(k) if k == PORT_KEY));
            }
            let r = api
                .store
                .txn(compares, ops)
                .await
                .map_err(|e| ApiError::from_store(e, res, &name))?;
            if r.succeeded {
                if ip_changed {
                    work.ip_rev = Some(r.revision);
                }
                if port_changed {
                    work.port_rev = Some(r.revision);
                }
                *guard_state = Some(work);
                if let (Some(n), Some(w)) = (new.as_deref_mut(), working_obj) {
                    *n = w;
                }
                return Ok(r.revision);
            }
            // Lost: the Service itself changed (or exists), or the allocators did.
            let now = api
                .store
                .get(&svc_key)
                .await
                .map_err(|e| ApiError::from_store(e, res, &name))?;
            match (svc_guard, now) {
                (None, Some(_)) => return Err(ApiError::already_exists(res, &name)),
                (Some(_), None) => return Err(ApiError::not_found(res, &name)),
                (Some(g), Some(kv)) if kv.mod_revision != g => {
                    return Err(ApiError::stale(res, &name));
                }
                _ => *guard_state = None,
            }
        }
        Err(ApiError::internal(
            "could not update service allocations after several attempts",
        ))
    }

    pub async fn create(
        &self,
        api: &Api,
        res: &Resource,
        key: Vec<u8>,
        svc: &mut Value,
    ) -> ApiResult<Revision> {
        self.transact(api, res, key, None, Some(svc), None).await
    }

    pub async fn update(
        &self,
        api: &Api,
        res: &Resource,
        key: Vec<u8>,
        svc: &mut Value,
        old: &Value,
        rev: Revision,
    ) -> ApiResult<Revision> {
        self.transact(api, res, key, Some(rev), Some(svc), Some(old))
            .await
    }

    pub async fn delete(
        &self,
        api: &Api,
        res: &Resource,
        key: Vec<u8>,
        old: &Value,
        rev: Revision,
    ) -> ApiResult<Revision> {
        self.transact(api, res, key, Some(rev), None, Some(old))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_over_rules() {
        let r = ServiceRegistry::new("10.96.0.0/16", "30000-32767").unwrap();
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
        // PUT without allocated values keeps them.
        let mut put = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        r.carry_over(&mut put, &old);
        assert_eq!(put["spec"]["clusterIP"], "10.96.0.5");
        assert_eq!(put["spec"]["ports"][0]["nodePort"], 30001);
        // NodePort -> ClusterIP drops the unchanged nodePort.
        let mut to_cip = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5", "ports": [{"port": 80, "nodePort": 30001}]}});
        r.carry_over(&mut to_cip, &old);
        assert!(to_cip["spec"]["ports"][0].get("nodePort").is_none());
        // -> ExternalName clears the clusterIP.
        let mut to_en = json!({"spec": {"type": "ExternalName", "externalName": "a.b", "clusterIP": "10.96.0.5", "ports": [{"port": 80, "nodePort": 30001}]}});
        r.carry_over(&mut to_en, &old);
        assert!(to_en["spec"].get("clusterIP").is_none());
        assert!(to_en["spec"]["ports"][0].get("nodePort").is_none());
    }
}

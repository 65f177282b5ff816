//! The Service registry: ClusterIP and NodePort allocation in the same store
//! transaction as the Service write, release on delete and on type changes.
//!
//! The allocators (from `svcnet_core::alloc`) are persisted as snapshots under
//! `/registry/ranges/…`; each Service write guards them by revision, so a
//! second API server writing meanwhile makes the transaction fail and this
//! one reloads and retries. At start the state is rebuilt from the stored
//! Services and rewritten if the snapshot is missing or disagrees.

use k8s_openapi::api::core::v1::ServiceSpec;
use serde_json::Value;
use svcnet_core::alloc::service::{self as svc_alloc, ServiceAllocError};
use svcnet_core::alloc::{
    AllocError, AllocFieldError, AllocSnapshot, IpAllocator, PortAllocator, PortRange,
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
                let spec = storage::decode(kv).and_then(|svc| {
                    serde_json::from_value::<ServiceSpec>(svc["spec"].clone()).ok()
                });
                if let Some(spec) = spec {
                    for ip in svc_alloc::service_cluster_ips(&spec) {
                        let _ = ips.allocate(ip);
                    }
                    for p in svc_alloc::service_node_ports(&spec) {
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

    /// Allocates what `svc` needs (given what `old` held) on the working
    /// copies of the allocators, with the decisions of `core::alloc::service`.
    fn assign(
        &self,
        res: &Resource,
        a: &mut Allocs,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let spec_of = |v: &Value| -> ApiResult<ServiceSpec> {
            serde_json::from_value(v["spec"].clone())
                .map_err(|e| ApiError::internal(format!("service spec: {e}")))
        };
        let mut spec = spec_of(svc)?;
        let ips = std::slice::from_mut(&mut a.ips);
        let result = match old {
            None => svc_alloc::allocate_create(ips, &mut a.ports, &mut spec, &mut rng()),
            Some(o) => {
                svc_alloc::allocate_update(ips, &mut a.ports, &mut spec, &spec_of(o)?, &mut rng())
            }
        };
        match result {
            Ok(_) => {
                svc["spec"] =
                    serde_json::to_value(&spec).map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(())
            }
            Err(ServiceAllocError::Invalid(fe)) => Err(field_error(res, svc, fe)),
            Err(ServiceAllocError::Internal(m)) => Err(ApiError::internal(m)),
        }
    }

    fn release(a: &mut Allocs, old: &Value) {
        if let Ok(spec) = serde_json::from_value::<ServiceSpec>(old["spec"].clone()) {
            svc_alloc::release_service(std::slice::from_mut(&mut a.ips), &mut a.ports, &spec);
        }
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
                    if let Some(o) = old {
                        Self::release(&mut work, o);
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

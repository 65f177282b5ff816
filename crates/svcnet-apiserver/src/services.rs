//! The Service registry: ClusterIP and NodePort allocation in the same store
//! transaction as the Service write, release on delete and on type changes.
//!
//! Every allocated ClusterIP and node port is a key of its own
//! (`/registry/allocations/serviceips/<ip>`, `…/servicenodeports/<port>`,
//! the value naming the owning Service), like upstream's IPAddress objects.
//! A Service write carries `Absent` guards for what it newly takes and
//! deletes what it gives up, in the same transaction as the Service, so
//! concurrent writes of different Services never conflict and the store's
//! group commit batches them. In memory each API server keeps bitmaps of
//! what is taken (the `svcnet_core::alloc` allocators) to choose free values:
//! a choice is reserved there under a short lock before the transaction,
//! undone if the transaction fails, and values given up are released only
//! after it commits. A lost race (another API server took a value) reloads
//! the bitmaps from the store and retries.
//!
//! At start the bitmaps are rebuilt from the stored Services (they are the
//! truth) and the allocation keys repaired against them: missing keys are
//! written, keys no Service holds are deleted.
//!
//! The cluster has one or two Service CIDRs (`--service-cluster-ip-range`,
//! comma-separated, one per family, primary first), so one IP bitmap per
//! family; the keys of both families share the `serviceips/` prefix. The
//! configured families also drive the IP-family defaulting of Services
//! (`families`, used by `strategy::admit` before validation).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Mutex, MutexGuard};
use svcnet_core::alloc::service::{self as svc_alloc, AllocChanges, ServiceAllocError};
use svcnet_core::alloc::{AllocError, AllocFieldError, IpAllocator, PortAllocator, PortRange};
use svcnet_core::field_errors::{BadValue, ErrorType, FieldError};
use svcnet_store::{Compare, KeyValue, Op, RangeRequest, Revision, Store};

use crate::handlers::{guard, put};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::strategy;
use crate::{Api, storage};

const IP_PREFIX: &str = "/registry/allocations/serviceips/";
const PORT_PREFIX: &str = "/registry/allocations/servicenodeports/";
const SERVICES_PREFIX: &[u8] = b"/registry/services/";
/// Snapshot keys of the previous layout (one bitmap per range); removed at start.
const LEGACY_KEYS: [&[u8]; 2] = [
    b"/registry/ranges/serviceips",
    b"/registry/ranges/servicenodeports",
];

fn ip_key(ip: IpAddr) -> Vec<u8> {
    format!("{IP_PREFIX}{ip}").into_bytes()
}

fn port_key(port: i32) -> Vec<u8> {
    format!("{PORT_PREFIX}{port}").into_bytes()
}

/// The value of an allocation key: who holds it.
fn owner_value(owner: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "service": owner })).unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Allocs {
    /// One per configured family, primary first.
    ips: Vec<IpAllocator>,
    ports: PortAllocator,
}

/// Allocation state shared by all Service writes of this API server.
#[derive(Debug)]
pub struct ServiceRegistry {
    /// The Service CIDRs, canonical, primary first (one or two families).
    cidrs: Vec<String>,
    /// Their families (`IPv4`, `IPv6`), in the same order.
    families: Vec<&'static str>,
    range: PortRange,
    /// `None` until loaded, and after a lost race (reloaded on next use).
    /// A blocking mutex held for microseconds, never across an await: an
    /// async (fair, hand-off) mutex here formed convoys under 100 writers,
    /// each hand-off waiting for the next task to be scheduled.
    state: Mutex<Option<Allocs>>,
    /// Serializes (re)loads, which read every Service.
    loading: tokio::sync::Mutex<()>,
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

fn spec_of(v: &Value) -> ApiResult<ServiceSpec> {
    ServiceSpec::deserialize(&v["spec"])
        .map_err(|e| ApiError::internal(format!("service spec: {e}")))
}

/// `namespace/name` of a stored Service.
fn owner_of(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        storage::name_of(v)
    )
}

/// Reads every key under `prefix` at `revision` (or the current one).
async fn range_all(
    store: &dyn Store,
    prefix: &[u8],
    revision: Option<Revision>,
) -> Result<(Vec<KeyValue>, Revision), svcnet_store::StoreError> {
    let mut out = Vec::new();
    let (mut start, mut rev) = (None, revision);
    loop {
        let r = store
            .range(RangeRequest {
                prefix: prefix.to_vec(),
                start,
                limit: 1000,
                revision: rev,
            })
            .await?;
        rev = Some(r.revision);
        let more = r.more;
        let mut next = r.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
        out.extend(r.kvs);
        if !more {
            return Ok((out, r.revision));
        }
        next.push(0);
        start = Some(next);
    }
}

/// What to write so that the allocation keys match the Services: the
/// compares and ops of one repair transaction (pure).
fn repair_plan(
    ip_owners: &BTreeMap<IpAddr, String>,
    port_owners: &BTreeMap<i32, String>,
    ip_keys: &[KeyValue],
    port_keys: &[KeyValue],
) -> (Vec<Compare>, Vec<Op>) {
    let (mut compares, mut ops) = (Vec::new(), Vec::new());
    let mut sync = |want: BTreeMap<Vec<u8>, &String>, have: &[KeyValue]| {
        let have: BTreeMap<&[u8], Revision> = have
            .iter()
            .map(|kv| (kv.key.as_slice(), kv.mod_revision))
            .collect();
        for (k, owner) in &want {
            if !have.contains_key(k.as_slice()) {
                compares.push(Compare::Absent(k.clone()));
                ops.push(Op::Put(k.clone(), owner_value(owner)));
            }
        }
        for (k, rev) in have {
            if !want.contains_key(k) {
                compares.push(Compare::ModRevision(k.to_vec(), rev));
                ops.push(Op::Delete(k.to_vec()));
            }
        }
    };
    sync(
        ip_owners.iter().map(|(ip, o)| (ip_key(*ip), o)).collect(),
        ip_keys,
    );
    sync(
        port_owners.iter().map(|(p, o)| (port_key(*p), o)).collect(),
        port_keys,
    );
    (compares, ops)
}

/// The store compares and ops that take `changes` for `owner`: an `Absent`
/// guard and a put per value taken, a delete per value given up (pure).
fn allocation_ops(changes: &AllocChanges, owner: &str) -> (Vec<Compare>, Vec<Op>) {
    let (mut compares, mut ops) = (Vec::new(), Vec::new());
    let taken = changes
        .allocated_ips
        .iter()
        .map(|ip| ip_key(*ip))
        .chain(changes.allocated_ports.iter().map(|p| port_key(*p)));
    for k in taken {
        compares.push(Compare::Absent(k.clone()));
        ops.push(Op::Put(k, owner_value(owner)));
    }
    let given = changes
        .released_ips
        .iter()
        .map(|ip| ip_key(*ip))
        .chain(changes.released_ports.iter().map(|p| port_key(*p)));
    ops.extend(given.map(Op::Delete));
    (compares, ops)
}

/// The family name of a range.
fn family_name(a: &IpAllocator) -> &'static str {
    if a.is_ipv6() { "IPv6" } else { "IPv4" }
}

/// Parses `--service-cluster-ip-range`: one CIDR, or two of different
/// families separated by a comma (primary first). Errors as upstream's
/// kube-apiserver flag validation words them.
pub fn parse_service_cidrs(text: &str) -> Result<Vec<IpAllocator>, String> {
    const FLAG: &str = "--service-cluster-ip-range";
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(format!("{FLAG} must contain at least one valid cidr"));
    }
    if entries.len() > 2 {
        return Err(format!("{FLAG} must not contain more than two entries"));
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        out.push(IpAllocator::new(e).map_err(|err| format!("{FLAG}[{i}]: {err}"))?);
    }
    if out.len() == 2 && out[0].is_ipv6() == out[1].is_ipv6() {
        return Err(format!(
            "{FLAG}[0] and {FLAG}[1] must be of different IP family"
        ));
    }
    Ok(out)
}

impl Allocs {
    /// The range `ip` belongs to.
    fn range_of(&mut self, ip: IpAddr) -> Option<&mut IpAllocator> {
        self.ips.iter_mut().find(|a| a.contains(ip))
    }

    fn take(&mut self, ips: &[IpAddr], ports: &[i32]) {
        for ip in ips {
            if let Some(a) = self.range_of(*ip) {
                let _ = a.allocate(*ip);
            }
        }
        for p in ports {
            let _ = self.ports.allocate(*p);
        }
    }

    fn give(&mut self, ips: &[IpAddr], ports: &[i32]) {
        for ip in ips {
            if let Some(a) = self.range_of(*ip) {
                a.release(*ip);
            }
        }
        for p in ports {
            self.ports.release(*p);
        }
    }
}

impl ServiceRegistry {
    /// `cidrs`: one Service CIDR or two of different families,
    /// comma-separated, primary first; `range`: the node port range.
    pub fn new(cidrs: &str, range: &str) -> Result<Self, String> {
        let ips = parse_service_cidrs(cidrs)?;
        let range = PortRange::parse(range)
            .map_err(|e: AllocError| format!("--service-node-port-range: {e}"))?;
        Ok(ServiceRegistry {
            cidrs: ips.iter().map(|a| a.cidr().to_string()).collect(),
            families: ips.iter().map(family_name).collect(),
            range,
            state: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    /// The `kubernetes` Service's IP: the first of the primary range.
    pub fn first_ip(&self) -> String {
        self.cidrs
            .first()
            .and_then(|c| IpAllocator::new(c).ok())
            .map(|a| a.first_ip().to_string())
            .unwrap_or_default()
    }

    /// The configured IP families, primary first (`["IPv4"]`,
    /// `["IPv4", "IPv6"]`, `["IPv6", "IPv4"]`, …).
    pub fn families(&self) -> &[&'static str] {
        &self.families
    }

    /// The Service CIDRs, canonical, primary first.
    pub fn cidrs(&self) -> &[String] {
        &self.cidrs
    }

    fn allocators(&self) -> Result<Vec<IpAllocator>, AllocError> {
        self.cidrs.iter().map(|c| IpAllocator::new(c)).collect()
    }

    /// Rebuilds the bitmaps from the stored Services and repairs the
    /// allocation keys; called at start and after a lost race.
    async fn load(&self, store: &dyn Store) -> ApiResult<Allocs> {
        let internal = |e: svcnet_store::StoreError| {
            ApiError::internal(format!("loading service allocations: {e}"))
        };
        let mut ips = self
            .allocators()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut ports = PortAllocator::new(self.range);
        // Services and allocation keys read at one revision: consistent.
        let (svcs, rev) = range_all(store, SERVICES_PREFIX, None)
            .await
            .map_err(internal)?;
        let (ip_keys, _) = range_all(store, IP_PREFIX.as_bytes(), Some(rev))
            .await
            .map_err(internal)?;
        let (port_keys, _) = range_all(store, PORT_PREFIX.as_bytes(), Some(rev))
            .await
            .map_err(internal)?;
        let (mut ip_owners, mut port_owners) = (BTreeMap::new(), BTreeMap::new());
        for kv in &svcs {
            let Some(svc) = storage::decode(kv) else {
                continue;
            };
            let Ok(spec) = spec_of(&svc) else { continue };
            let owner = owner_of(&svc);
            for ip in svc_alloc::service_cluster_ips(&spec) {
                let Some(range) = ips.iter_mut().find(|a| a.contains(ip)) else {
                    continue;
                };
                if range.allocate(ip).is_ok() {
                    ip_owners.insert(ip, owner.clone());
                }
            }
            for p in svc_alloc::service_node_ports(&spec) {
                if ports.allocate(p).is_ok() {
                    port_owners.insert(p, owner.clone());
                }
            }
        }
        let (compares, mut ops) = repair_plan(&ip_owners, &port_owners, &ip_keys, &port_keys);
        for k in LEGACY_KEYS {
            if store.get(k).await.map_err(internal)?.is_some() {
                ops.push(Op::Delete(k.to_vec()));
            }
        }
        if !ops.is_empty() {
            tracing::warn!(
                changes = ops.len(),
                "service allocation keys disagree with the stored Services; repairing them"
            );
            // Guards make this a no-op if a Service write raced it; the
            // next load repairs what is left.
            let r = store.txn(compares, ops).await.map_err(internal)?;
            if !r.succeeded {
                tracing::info!(
                    "service allocation repair raced a Service write; retried on next load"
                );
            }
        }
        Ok(Allocs { ips, ports })
    }

    /// Rebuilds the allocation state now (at start).
    pub async fn init(&self, store: &dyn Store) -> ApiResult<()> {
        let a = self.load(store).await?;
        *self.lock() = Some(a);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Allocs>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the state unless another request did meanwhile.
    async fn ensure_loaded(&self, store: &dyn Store) -> ApiResult<()> {
        let _one = self.loading.lock().await;
        if self.lock().is_none() {
            let a = self.load(store).await?;
            *self.lock() = Some(a);
        }
        Ok(())
    }

    /// Chooses what `spec` needs (given what `old` held) with the decisions
    /// of `core::alloc::service`, reserving it in `a`; what `old` gives up
    /// stays reserved until the write commits. `spec: None` is a delete.
    fn choose(
        a: &mut Allocs,
        spec: Option<&mut ServiceSpec>,
        old: Option<&ServiceSpec>,
    ) -> Result<AllocChanges, ServiceAllocError> {
        let Some(spec) = spec else {
            let empty = ServiceSpec::default();
            let old = old.unwrap_or(&empty);
            return Ok(AllocChanges {
                released_ips: svc_alloc::service_cluster_ips(old),
                released_ports: svc_alloc::service_node_ports(old),
                ..AllocChanges::default()
            });
        };
        let ips = a.ips.as_mut_slice();
        let changes = match old {
            None => svc_alloc::allocate_create(ips, &mut a.ports, spec, &mut rng())?,
            Some(o) => svc_alloc::allocate_update(ips, &mut a.ports, spec, o, &mut rng())?,
        };
        a.take(&changes.released_ips, &changes.released_ports);
        Ok(changes)
    }

    /// After the transaction: a commit releases what was given up, a failure
    /// undoes what was reserved.
    fn settle(&self, changes: &AllocChanges, committed: bool) {
        if let Some(a) = self.lock().as_mut() {
            if committed {
                a.give(&changes.released_ips, &changes.released_ports);
            } else {
                a.give(&changes.allocated_ips, &changes.allocated_ports);
            }
        }
    }

    /// Writes the Service (or deletes it when `new` is `None`) with its
    /// allocation keys in one transaction. Retries after another API server
    /// took a value this one chose.
    async fn transact(
        &self,
        api: &Api,
        res: &Resource,
        svc_key: Vec<u8>,
        svc_guard: Option<Revision>,
        mut new: Option<&mut Value>,
        old: Option<&Value>,
    ) -> ApiResult<Revision> {
        let name = new
            .as_deref()
            .or(old)
            .map(|v| storage::name_of(v).to_string())
            .unwrap_or_default();
        let owner = new.as_deref().or(old).map(owner_of).unwrap_or_default();
        let new_spec = new.as_deref().map(spec_of).transpose()?;
        let old_spec = old.map(spec_of).transpose()?;
        for _ in 0..5 {
            // Choose and reserve under the lock (microseconds: the JSON work
            // is done outside it); the transaction runs without it.
            let mut spec = new_spec.clone();
            let chosen = loop {
                if let Some(a) = self.lock().as_mut() {
                    break Self::choose(a, spec.as_mut(), old_spec.as_ref());
                }
                self.ensure_loaded(api.store.as_ref()).await?;
            };
            let changes = match chosen {
                Ok(c) => c,
                Err(ServiceAllocError::Invalid(fe)) => {
                    return Err(field_error(
                        res,
                        new.as_deref().or(old).unwrap_or(&Value::Null),
                        fe,
                    ));
                }
                Err(ServiceAllocError::Internal(m)) => return Err(ApiError::internal(m)),
            };
            // The chosen spec goes into the object in place: every attempt
            // writes it afresh, and callers drop the object on an error.
            if let (Some(obj), Some(spec)) = (new.as_deref_mut(), &spec) {
                match serde_json::to_value(spec) {
                    Ok(v) => obj["spec"] = v,
                    Err(e) => {
                        self.settle(&changes, false);
                        return Err(ApiError::internal(e.to_string()));
                    }
                }
            }
            let (alloc_compares, alloc_ops) = allocation_ops(&changes, &owner);
            let mut compares = vec![guard(&svc_key, svc_guard)];
            compares.extend(alloc_compares);
            let mut ops = vec![match new.as_deref() {
                Some(obj) => put(svc_key.clone(), obj),
                None => Op::Delete(svc_key.clone()),
            }];
            ops.extend(alloc_ops);
            let r = api.store.txn(compares, ops).await;
            self.settle(&changes, matches!(&r, Ok(r) if r.succeeded));
            let r = r.map_err(|e| ApiError::from_store(e, res, &name))?;
            if r.succeeded {
                return Ok(r.revision);
            }
            // Lost: the Service itself changed (or exists), or another API
            // server took a value chosen here.
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
                _ => *self.lock() = None,
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

    fn kv(key: Vec<u8>, rev: Revision) -> KeyValue {
        KeyValue {
            key,
            value: owner_value("x/y"),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    #[test]
    fn allocation_ops_guard_taken_and_delete_given() {
        let ip: IpAddr = "10.96.0.7".parse().expect("ip");
        let old_ip: IpAddr = "10.96.0.9".parse().expect("ip");
        let cases: Vec<(AllocChanges, usize, usize)> = vec![
            (AllocChanges::default(), 0, 0),
            (
                AllocChanges {
                    allocated_ips: vec![ip],
                    allocated_ports: vec![30001, 30002],
                    ..Default::default()
                },
                3,
                3,
            ),
            (
                AllocChanges {
                    released_ips: vec![old_ip],
                    released_ports: vec![30003],
                    ..Default::default()
                },
                0,
                2,
            ),
        ];
        for (changes, n_compares, n_ops) in cases {
            let (c, o) = allocation_ops(&changes, "default/web");
            assert_eq!((c.len(), o.len()), (n_compares, n_ops), "{changes:?}");
            for cmp in &c {
                assert!(matches!(cmp, Compare::Absent(_)));
            }
        }
        let (c, o) = allocation_ops(
            &AllocChanges {
                allocated_ips: vec![ip],
                released_ports: vec![30003],
                ..Default::default()
            },
            "default/web",
        );
        assert!(
            matches!(&c[0], Compare::Absent(k) if k == b"/registry/allocations/serviceips/10.96.0.7")
        );
        assert!(
            matches!(&o[0], Op::Put(k, _) if k == b"/registry/allocations/serviceips/10.96.0.7")
        );
        assert!(
            matches!(&o[1], Op::Delete(k) if k == b"/registry/allocations/servicenodeports/30003")
        );
    }

    #[test]
    fn service_cidrs() {
        // (flag value, canonical CIDRs or error)
        let cases: Vec<(&str, Result<Vec<&str>, &str>)> = vec![
            ("10.96.0.0/16", Ok(vec!["10.96.0.0/16"])),
            (
                "10.96.0.0/16,fd00:10:96::/112",
                Ok(vec!["10.96.0.0/16", "fd00:10:96::/112"]),
            ),
            (
                " fd00:10:96::/112 , 10.96.0.0/16",
                Ok(vec!["fd00:10:96::/112", "10.96.0.0/16"]),
            ),
            (
                "10.96.0.0/16,10.97.0.0/16",
                Err(
                    "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family",
                ),
            ),
            (
                "fd00::/112,fd01::/112",
                Err(
                    "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family",
                ),
            ),
            (
                "10.96.0.0/16,fd00::/112,10.97.0.0/16",
                Err("--service-cluster-ip-range must not contain more than two entries"),
            ),
            (
                "",
                Err("--service-cluster-ip-range must contain at least one valid cidr"),
            ),
        ];
        for (text, want) in cases {
            let got = parse_service_cidrs(text)
                .map(|v| v.iter().map(|a| a.cidr().to_string()).collect::<Vec<_>>());
            let want = want
                .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "{text:?}");
        }
        let bad = parse_service_cidrs("10.96.0.0/16,nonsense").expect_err("bad cidr");
        assert!(bad.starts_with("--service-cluster-ip-range[1]: "), "{bad}");
        let reg =
            ServiceRegistry::new("fd00:10:96::/112,10.96.0.0/16", "30000-32767").expect("registry");
        assert_eq!(reg.families(), ["IPv6", "IPv4"]);
        assert_eq!(reg.first_ip(), "fd00:10:96::1");
    }

    #[test]
    fn repair_writes_missing_and_deletes_orphans() {
        let a: IpAddr = "10.96.0.1".parse().expect("ip");
        let b: IpAddr = "10.96.0.2".parse().expect("ip");
        let ips = BTreeMap::from([(a, "default/kubernetes".to_string()), (b, "d/web".into())]);
        let ports = BTreeMap::from([(30080, "d/web".to_string())]);
        // Table: (ip keys present, port keys present) → (puts, deletes).
        let cases = vec![
            (vec![ip_key(a), ip_key(b)], vec![port_key(30080)], 0, 0),
            (vec![ip_key(a)], vec![port_key(30080)], 1, 0),
            (vec![], vec![], 3, 0),
            (
                vec![
                    ip_key(a),
                    ip_key(b),
                    ip_key("10.96.0.3".parse().expect("ip")),
                ],
                vec![port_key(30080), port_key(30099)],
                0,
                2,
            ),
        ];
        for (ipk, portk, puts, deletes) in cases {
            let ipk: Vec<KeyValue> = ipk.into_iter().map(|k| kv(k, 5)).collect();
            let portk: Vec<KeyValue> = portk.into_iter().map(|k| kv(k, 6)).collect();
            let (c, o) = repair_plan(&ips, &ports, &ipk, &portk);
            let p = o.iter().filter(|o| matches!(o, Op::Put(..))).count();
            let d = o.iter().filter(|o| matches!(o, Op::Delete(..))).count();
            assert_eq!((p, d), (puts, deletes));
            assert_eq!(c.len(), o.len(), "one guard per op");
        }
    }
}

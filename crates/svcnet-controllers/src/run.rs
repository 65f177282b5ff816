//! The controllers' edges: watch caches, routing of changes to work queues, and the workers that apply the pure decisions.
//!
//! Each watched kind feeds one [`Cache`]; every change is routed to the
//! queues of the controllers that care (a pod change queues the Services
//! selecting it, its ReplicaSet, ...). Workers take keys from their queue,
//! read the caches, call the decision functions and write the difference.
//! A write's answer goes straight back into the cache, so the next
//! decision already sees it. Failed keys are retried after a pause, and
//! every queue is refilled periodically (a resync) in case a watch missed
//! something.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, Endpoints, Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use svcnet_core::endpoints as ep;
use svcnet_core::selector::Selector;

use crate::cache::{Cache, key, key_of, split_key};
use crate::events::{Kind, Recorder, reference};
use crate::lbpool::{Assignment, Pool};
use crate::leader::{Elector, LeaderError, Settings};
use crate::nodelifecycle::{Decision, Timing, Tracker};
use crate::queue::Queue;
use crate::replicaset::{claim, controller_of, controller_ref, is_active};
use crate::{deployment, gc, lbpool, nodelifecycle, replicaset, scheduler};

/// Errors of a controller run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Leader election failed or the lease was lost.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The decision code refused the object.
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = RunError> = std::result::Result<T, E>;

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Api { what, source }
}

fn code(e: &RunError) -> Option<u16> {
    match e {
        RunError::Api {
            source: kube::Error::Api(s),
            ..
        } => Some(s.code),
        _ => None,
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// LoadBalancer address pool; None or empty leaves LoadBalancer Services `<pending>`.
    pub lb_pool: Option<Pool>,
    /// The `loadBalancerClass` this LoadBalancer controller serves (None: Services without a class).
    pub lb_class: Option<String>,
    /// Node heartbeat grace and pod eviction timeout.
    pub timing: Timing,
    /// Leader election; None runs without it.
    pub leader: Option<Settings>,
    /// How often every queue is refilled.
    pub resync: Duration,
    /// Name of the scheduler (pods naming another `schedulerName` are left alone).
    pub scheduler_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lb_pool: None,
            lb_class: None,
            timing: Timing::default(),
            leader: None,
            resync: Duration::from_secs(30),
            scheduler_name: "default-scheduler".into(),
        }
    }
}

/// The controller manager: every controller of this crate, on one client.
#[derive(Clone)]
pub struct Controllers {
    client: kube::Client,
    cfg: Config,
}

impl std::fmt::Debug for Controllers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controllers")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Caches {
    pods: Cache<Pod>,
    services: Cache<Service>,
    endpoints: Cache<Endpoints>,
    slices: Cache<EndpointSlice>,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    deployments: Cache<Deployment>,
    replicasets: Cache<ReplicaSet>,
}

#[derive(Default)]
struct Queues {
    endpoints: Queue,
    slices: Queue,
    mirror: Queue,
    replicasets: Queue,
    deployments: Queue,
    scheduler: Queue,
    lb: Queue,
    gc: Queue,
}

struct Shared {
    client: kube::Client,
    cfg: Config,
    c: Caches,
    q: Queues,
    events: Recorder,
    start: Instant,
    tracker: Mutex<Tracker>,
    /// Pods bound but not yet seen bound in the cache: key → node.
    assumed: Mutex<HashMap<String, String>>,
    /// Last warning per object, so a repeated failure is reported once.
    warned: Mutex<HashMap<String, String>>,
}

/// Aborts the tasks when dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Controllers {
    /// Controllers talking to the API through `client`.
    pub fn new(client: kube::Client, cfg: Config) -> Self {
        Controllers { client, cfg }
    }

    /// Runs until `shutdown` completes, or returns an error when leadership is lost.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            r = self.run() => r,
            _ = shutdown => Ok(()),
        }
    }

    /// Runs forever (leading first, when leader election is configured).
    pub async fn run(self) -> Result<()> {
        let mut elector = self
            .cfg
            .leader
            .clone()
            .map(|s| Elector::new(self.client.clone(), s));
        if let Some(e) = elector.as_mut() {
            e.acquire().await;
        }
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            events: Recorder::new(self.client.clone()),
            cfg: self.cfg,
            c: Caches::default(),
            q: Queues::default(),
            start: Instant::now(),
            tracker: Mutex::new(Tracker::new()),
            assumed: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashMap::new()),
        });
        let _tasks = start(&shared);
        match elector.as_mut() {
            Some(e) => Err(RunError::Leader(e.keep().await)),
            None => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

/// Records our own write in the cache and routes it like a watch event
/// (the watch event that follows carries the same version and is dropped).
fn saw<K: Resource + Clone>(s: &Shared, cache: &Cache<K>, route: Route<K>, obj: K) {
    if let Some((old, new)) = cache.observe(obj) {
        route(s, old.as_deref(), new.as_deref());
    }
}

fn saw_deleted<K: Resource + Clone>(
    s: &Shared,
    cache: &Cache<K>,
    route: Route<K>,
    key: &str,
    rv: u64,
) {
    if let Some((old, new)) = cache.observe_deleted(key, rv) {
        route(s, old.as_deref(), new.as_deref());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- wiring

type Route<K> = fn(&Shared, Option<&K>, Option<&K>);

fn informer<K>(
    s: &Arc<Shared>,
    api: Api<K>,
    cache: &Cache<K>,
    route: Route<K>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let s = s.clone();
    let cache = cache.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    for (old, new) in cache.apply(ev) {
                        route(&s, old.as_deref(), new.as_deref());
                    }
                }
                Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch"),
            }
        }
    })
}

/// Keys one controller reconciles at the same time.
const WORKER_CONCURRENCY: usize = 8;

type Reconcile = for<'a> fn(&'a Arc<Shared>, &'a str) -> futures::future::BoxFuture<'a, Result<()>>;

fn worker(
    s: &Arc<Shared>,
    name: &'static str,
    queue: fn(&Shared) -> &Queue,
    f: Reconcile,
) -> tokio::task::JoinHandle<()> {
    // The scheduler places one pod at a time so each decision sees the previous one.
    let concurrency = if name == "scheduler" {
        1
    } else {
        WORKER_CONCURRENCY
    };
    let s = s.clone();
    tokio::spawn(async move {
        all_synced(&s).await;
        loop {
            let batch = queue(&s).next_batch().await;
            // Keys of one batch are distinct, so they may run side by side;
            // the next batch waits, so one key never runs twice at once.
            futures::stream::iter(batch)
                .for_each_concurrent(concurrency, |k| {
                    let s = s.clone();
                    async move {
                        tracing::trace!(controller = name, key = %k, "sync");
                        if let Err(e) = f(&s, &k).await {
                            let conflict = code(&e) == Some(409);
                            if conflict {
                                tracing::debug!(controller = name, key = %k, error = %e, "conflict; retrying");
                            } else {
                                tracing::warn!(controller = name, key = %k, error = %e, "reconcile failed; retrying");
                            }
                            let delay = if conflict { Duration::from_millis(100) } else { Duration::from_secs(1) };
                            queue(&s).add_after(k, delay);
                        }
                    }
                })
                .await;
        }
    })
}

async fn all_synced(s: &Shared) {
    s.c.pods.wait_synced().await;
    s.c.services.wait_synced().await;
    s.c.endpoints.wait_synced().await;
    s.c.slices.wait_synced().await;
    s.c.nodes.wait_synced().await;
    s.c.leases.wait_synced().await;
    s.c.deployments.wait_synced().await;
    s.c.replicasets.wait_synced().await;
}

fn start(s: &Arc<Shared>) -> Tasks {
    let cl = &s.client;
    let mut t = vec![
        informer(s, Api::all(cl.clone()), &s.c.pods, route_pod),
        informer(s, Api::all(cl.clone()), &s.c.services, route_service),
        informer(s, Api::all(cl.clone()), &s.c.endpoints, route_endpoints),
        informer(s, Api::all(cl.clone()), &s.c.slices, route_slice),
        informer(s, Api::all(cl.clone()), &s.c.nodes, route_node),
        informer(
            s,
            Api::namespaced(cl.clone(), "kube-node-lease"),
            &s.c.leases,
            |_, _, _| {},
        ),
        informer(s, Api::all(cl.clone()), &s.c.deployments, route_deployment),
        informer(s, Api::all(cl.clone()), &s.c.replicasets, route_replicaset),
        worker(
            s,
            "endpoints",
            |s| &s.q.endpoints,
            |s, k| Box::pin(sync_endpoints(s, k)),
        ),
        worker(
            s,
            "endpointslice",
            |s| &s.q.slices,
            |s, k| Box::pin(sync_slices(s, k)),
        ),
        worker(
            s,
            "endpointslicemirroring",
            |s| &s.q.mirror,
            |s, k| Box::pin(sync_mirror(s, k)),
        ),
        worker(
            s,
            "replicaset",
            |s| &s.q.replicasets,
            |s, k| Box::pin(sync_replicaset(s, k)),
        ),
        worker(
            s,
            "deployment",
            |s| &s.q.deployments,
            |s, k| Box::pin(sync_deployment(s, k)),
        ),
        worker(
            s,
            "scheduler",
            |s| &s.q.scheduler,
            |s, k| Box::pin(schedule_pod(s, k)),
        ),
        worker(
            s,
            "garbage-collector",
            |s| &s.q.gc,
            |s, _| Box::pin(collect_garbage(s)),
        ),
    ];
    if s.cfg.lb_pool.as_ref().is_some_and(|p| !p.is_empty()) {
        t.push(worker(
            s,
            "service-lb",
            |s| &s.q.lb,
            |s, _| Box::pin(sync_load_balancers(s)),
        ));
    }
    let s2 = s.clone();
    t.push(tokio::spawn(async move { node_lifecycle(s2).await }));
    let s3 = s.clone();
    t.push(tokio::spawn(async move {
        all_synced(&s3).await;
        loop {
            resync(&s3);
            tokio::time::sleep(s3.cfg.resync).await;
        }
    }));
    Tasks(t)
}

/// Queues every object for every controller.
fn resync(s: &Shared) {
    for svc in s.c.services.list() {
        let k = key_of(svc.as_ref());
        s.q.endpoints.add(k.clone());
        s.q.slices.add(k.clone());
        s.q.mirror.add(k);
    }
    for rs in s.c.replicasets.list() {
        s.q.replicasets.add(key_of(rs.as_ref()));
    }
    for d in s.c.deployments.list() {
        s.q.deployments.add(key_of(d.as_ref()));
    }
    queue_pending(s);
    s.q.lb.add("all");
    s.q.gc.add("all");
}

fn queue_pending(s: &Shared) {
    for p in s.c.pods.list() {
        if unscheduled(&p) {
            s.q.scheduler.add(key_of(p.as_ref()));
        }
    }
}

fn unscheduled(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && p.metadata.deletion_timestamp.is_none()
        && is_active(p)
}

fn gc_relevant<K: Resource>(old: Option<&K>, new: Option<&K>) -> bool {
    match (old, new) {
        (_, None) => true,
        (None, Some(n)) => n
            .meta()
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty()),
        (Some(_), Some(n)) => n.meta().deletion_timestamp.is_some(),
    }
}

fn route_pod(s: &Shared, old: Option<&Pod>, new: Option<&Pod>) {
    let services = s.c.services.list();
    let svc_refs: Vec<&Service> = services.iter().map(|x| x.as_ref()).collect();
    for p in old.into_iter().chain(new) {
        for svc in ep::services_for_pod(p, &svc_refs) {
            let k = key_of(svc);
            s.q.endpoints.add(k.clone());
            s.q.slices.add(k);
        }
        let ns = p.metadata.namespace.as_deref().unwrap_or("");
        match controller_of(&p.metadata) {
            Some(r) if r.kind == "ReplicaSet" => {
                let rk = key(ns, &r.name);
                s.q.replicasets.add(rk.clone());
                // Recreate waits for old pods to go: tell the Deployment.
                if let Some(rs) = s.c.replicasets.get(&rk)
                    && let Some(d) = controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    s.q.deployments.add(key(ns, &d.name));
                }
            }
            Some(_) => {}
            None => {
                // An orphan: any ReplicaSet here may adopt it.
                for rs in s.c.replicasets.list_ns(ns) {
                    s.q.replicasets.add(key_of(rs.as_ref()));
                }
            }
        }
    }
    match new {
        Some(p) if unscheduled(p) => s.q.scheduler.add(key_of(p)),
        Some(p) => {
            lock(&s.assumed).remove(&key_of(p));
        }
        None => {
            if let Some(p) = old {
                lock(&s.assumed).remove(&key_of(p));
            }
        }
    }
    // A pod leaving a node may let a pending pod fit.
    if new.is_none() && old.is_some_and(|p| !unscheduled(p)) {
        queue_pending(s);
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_service(s: &Shared, old: Option<&Service>, new: Option<&Service>) {
    let k = new.or(old).map(key_of).unwrap_or_default();
    s.q.endpoints.add(k.clone());
    s.q.slices.add(k.clone());
    s.q.mirror.add(k);
    s.q.lb.add("all");
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_endpoints(s: &Shared, old: Option<&Endpoints>, new: Option<&Endpoints>) {
    let k = new.or(old).map(key_of).unwrap_or_default();
    s.q.mirror.add(k.clone());
    // Someone else changed or removed the Endpoints of a Service we know:
    // put them back. Endpoints without a (known) Service are left alone, as
    // upstream: a user may write them before the Service, and the Service's
    // own delete event is what removes its Endpoints.
    if s.c.services.get(&k).is_some() {
        s.q.endpoints.add(k);
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_slice(s: &Shared, old: Option<&EndpointSlice>, new: Option<&EndpointSlice>) {
    for sl in old.into_iter().chain(new) {
        let labels = sl.metadata.labels.clone().unwrap_or_default();
        let Some(svc) = labels.get(ep::LABEL_SERVICE_NAME) else {
            continue;
        };
        let k = key(sl.metadata.namespace.as_deref().unwrap_or(""), svc);
        match labels.get(ep::LABEL_MANAGED_BY).map(String::as_str) {
            Some(ep::ENDPOINTSLICE_CONTROLLER) => s.q.slices.add(k),
            Some(ep::MIRRORING_CONTROLLER) => s.q.mirror.add(k),
            _ => {}
        }
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_node(s: &Shared, old: Option<&Node>, new: Option<&Node>) {
    queue_pending(s);
    // Slices leave out pods of unknown nodes and carry zones: resync on node set changes.
    let changed_set = old.is_none() || new.is_none();
    let zone = |n: Option<&Node>| {
        n.and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get("topology.kubernetes.io/zone").cloned())
    };
    if changed_set || zone(old) != zone(new) {
        for svc in s.c.services.list() {
            s.q.slices.add(key_of(svc.as_ref()));
        }
    }
    if let Some(n) = old.filter(|_| new.is_none()) {
        lock(&s.tracker).forget(n.metadata.name.as_deref().unwrap_or(""));
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_deployment(s: &Shared, old: Option<&Deployment>, new: Option<&Deployment>) {
    if let Some(d) = new.or(old) {
        s.q.deployments.add(key_of(d));
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

fn route_replicaset(s: &Shared, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
    for rs in old.into_iter().chain(new) {
        s.q.replicasets.add(key_of(rs));
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        match controller_of(&rs.metadata) {
            Some(d) if d.kind == "Deployment" => s.q.deployments.add(key(ns, &d.name)),
            Some(_) => {}
            None => {
                for d in s.c.deployments.list_ns(ns) {
                    s.q.deployments.add(key_of(d.as_ref()));
                }
            }
        }
    }
    if gc_relevant(old, new) {
        s.q.gc.add("all");
    }
}

// ---------------------------------------------------------------- endpoints

async fn sync_endpoints(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, name) = split_key(k);
    let api: Api<Endpoints> = Api::namespaced(s.client.clone(), ns);
    let Some(svc) = s.c.services.get(k) else {
        // The Service is gone: so are its Endpoints (upstream deletes them
        // whoever wrote them). The Endpoints watch may run ahead of the
        // Services watch, so a user's Endpoints created right after their
        // Service can arrive first: ask the server before deleting, and
        // delete only the version we looked at.
        if let Some(cur) = s.c.endpoints.get(k) {
            let services: Api<Service> = Api::namespaced(s.client.clone(), ns);
            if services
                .get_opt(name)
                .await
                .map_err(api_err(format!("reading service {k}")))?
                .is_some()
            {
                return Ok(());
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: cur.metadata.resource_version.clone(),
                    uid: cur.metadata.uid.clone(),
                }),
                ..Default::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {
                    saw_deleted(s, &s.c.endpoints, route_endpoints, k, rv(&cur.metadata));
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api_err(format!("deleting endpoints {k}"))(e)),
            }
        }
        return Ok(());
    };
    let pods = s.c.pods.list_ns(ns);
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let Some(desired) = ep::compute_endpoints(&svc, &refs) else {
        return Ok(());
    };
    let existing = s.c.endpoints.get(k);
    let Some(write) = ep::endpoints_update(existing.as_deref(), &desired) else {
        tracing::debug!(key = k, "endpoints unchanged");
        return Ok(());
    };
    tracing::debug!(key = k, create = existing.is_none(), "writing endpoints");
    let res = if existing.is_some() {
        api.replace(name, &PostParams::default(), &write).await
    } else {
        api.create(&PostParams::default(), &write).await
    };
    let obj = res.map_err(api_err(format!("writing endpoints {k}")))?;
    tracing::debug!(key = k, rv = ?obj.metadata.resource_version, "wrote endpoints");
    saw(s, &s.c.endpoints, route_endpoints, obj);
    Ok(())
}

fn rv(m: &ObjectMeta) -> u64 {
    m.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn slice_opts(s: &Shared) -> ep::SliceOptions {
    let nodes = s.c.nodes.list();
    ep::SliceOptions {
        max_endpoints_per_slice: ep::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        node_zones: nodes
            .iter()
            .filter_map(|n| {
                let zone = n
                    .metadata
                    .labels
                    .as_ref()?
                    .get("topology.kubernetes.io/zone")?;
                Some((n.metadata.name.clone()?, zone.clone()))
            })
            .collect(),
        known_nodes: Some(
            nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
        ),
    }
}

fn slices_of(s: &Shared, ns: &str, svc: &str, managed_by: &str) -> Vec<EndpointSlice> {
    s.c.slices
        .list_ns(ns)
        .into_iter()
        .filter(|sl| {
            let l = sl.metadata.labels.clone().unwrap_or_default();
            l.get(ep::LABEL_SERVICE_NAME).map(String::as_str) == Some(svc)
                && l.get(ep::LABEL_MANAGED_BY).map(String::as_str) == Some(managed_by)
        })
        .map(|sl| (*sl).clone())
        .collect()
}

async fn apply_slice_diff(s: &Shared, ns: &str, diff: ep::SliceDiff) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(s.client.clone(), ns);
    for sl in diff.delete {
        let name = sl.metadata.name.clone().unwrap_or_default();
        tracing::debug!(slice = %key(ns, &name), "deleting endpointslice");
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                saw_deleted(
                    s,
                    &s.c.slices,
                    route_slice,
                    &key(ns, &name),
                    rv(&sl.metadata),
                );
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("deleting endpointslice {ns}/{name}"))(e)),
        }
    }
    for sl in diff.update {
        let name = sl.metadata.name.clone().unwrap_or_default();
        tracing::debug!(slice = %key(ns, &name), "updating endpointslice");
        let obj = api
            .replace(&name, &PostParams::default(), &sl)
            .await
            .map_err(api_err(format!("updating endpointslice {ns}/{name}")))?;
        saw(s, &s.c.slices, route_slice, obj);
    }
    for sl in diff.create {
        let obj = api
            .create(&PostParams::default(), &sl)
            .await
            .map_err(api_err(format!("creating an endpointslice in {ns}")))?;
        tracing::debug!(slice = %key_of(&obj), rv = ?obj.metadata.resource_version, "created endpointslice");
        saw(s, &s.c.slices, route_slice, obj);
    }
    Ok(())
}

async fn sync_slices(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, name) = split_key(k);
    let existing = slices_of(s, ns, name, ep::ENDPOINTSLICE_CONTROLLER);
    let Some(svc) = s.c.services.get(k) else {
        return apply_slice_diff(
            s,
            ns,
            ep::SliceDiff {
                delete: existing,
                ..Default::default()
            },
        )
        .await;
    };
    // Upstream gives ExternalName Services no slices (and leaves existing ones).
    if svc.spec.as_ref().and_then(|x| x.type_.as_deref()) == Some("ExternalName") {
        return Ok(());
    }
    let pods = s.c.pods.list_ns(ns);
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let diff = ep::compute_endpoint_slices_with(&svc, &refs, &existing, &slice_opts(s));
    apply_slice_diff(s, ns, diff).await
}

async fn sync_mirror(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, name) = split_key(k);
    let existing = slices_of(s, ns, name, ep::MIRRORING_CONTROLLER);
    let diff = match (s.c.services.get(k), s.c.endpoints.get(k)) {
        (Some(svc), Some(e)) => ep::mirror_endpoints_to_slices(&e, &svc, &existing),
        _ => ep::SliceDiff {
            delete: existing,
            ..Default::default()
        },
    };
    apply_slice_diff(s, ns, diff).await
}

// ---------------------------------------------------------------- replicasets

fn selector_of(
    ls: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Selector> {
    Selector::from_label_selector(Some(ls)).map_err(|e| RunError::Invalid(e.to_string()))
}

async fn set_owner_refs(
    api: &Api<DynamicObject>,
    meta: &ObjectMeta,
    refs: Vec<OwnerReference>,
) -> Result<DynamicObject> {
    let name = meta.name.clone().unwrap_or_default();
    let patch =
        json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err(format!("setting owners of {name}")))
}

fn dynamic<K: Resource<DynamicType = ()>>(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::erase::<K>(&());
    if ns.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    }
}

fn typed<K: DeserializeOwned>(o: DynamicObject) -> Option<K> {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

async fn sync_replicaset(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, _) = split_key(k);
    let Some(rs) = s.c.replicasets.get(k) else {
        return Ok(());
    };
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let spec = rs.spec.clone().unwrap_or_default();
    let sel = selector_of(&spec.selector)?;
    let pods = s.c.pods.list_ns(ns);
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let claims = claim(&rs.metadata, &sel, &refs);
    let dynpods = dynamic::<Pod>(&s.client, ns);
    for p in &claims.adopt {
        let mut owners = p.metadata.owner_references.clone().unwrap_or_default();
        owners.push(controller_ref(rs.as_ref()));
        if let Some(pod) = typed::<Pod>(set_owner_refs(&dynpods, &p.metadata, owners).await?) {
            saw(s, &s.c.pods, route_pod, pod);
        }
    }
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    for p in &claims.release {
        let owners: Vec<OwnerReference> = p
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.uid != uid)
            .collect();
        if let Some(pod) = typed::<Pod>(set_owner_refs(&dynpods, &p.metadata, owners).await?) {
            saw(s, &s.c.pods, route_pod, pod);
        }
    }
    let mut owned: Vec<&Pod> = claims.owned.clone();
    owned.extend(claims.adopt.iter().copied());
    let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let diff = replicaset::pod_diff(spec.replicas.unwrap_or(1), &active);
    let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
    let rsref = reference(rs.as_ref());
    let mut failure = None;
    for _ in 0..diff.create {
        match api
            .create(&PostParams::default(), &replicaset::new_pod(&rs))
            .await
        {
            Ok(p) => {
                let msg = format!("Created pod: {}", p.metadata.name.as_deref().unwrap_or(""));
                s.events.record(
                    "replicaset-controller",
                    rsref.clone(),
                    Kind::Normal,
                    "SuccessfulCreate",
                    &msg,
                );
                saw(s, &s.c.pods, route_pod, p);
            }
            Err(e) => {
                let msg = format!("Error creating: {}", kube_message(&e));
                s.events.record(
                    "replicaset-controller",
                    rsref.clone(),
                    Kind::Warning,
                    "FailedCreate",
                    &msg,
                );
                failure = Some(api_err(format!("creating pods for {k}"))(e));
                break;
            }
        }
    }
    for name in &diff.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(either) => {
                s.events.record(
                    "replicaset-controller",
                    rsref.clone(),
                    Kind::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                );
                match either {
                    either::Either::Left(p) => {
                        saw(s, &s.c.pods, route_pod, p);
                    }
                    either::Either::Right(_) => {
                        let last =
                            s.c.pods
                                .get(&key(ns, name))
                                .map(|p| rv(&p.metadata))
                                .unwrap_or(0);
                        saw_deleted(s, &s.c.pods, route_pod, &key(ns, name), last);
                    }
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let msg = format!("Error deleting: {}", kube_message(&e));
                s.events.record(
                    "replicaset-controller",
                    rsref.clone(),
                    Kind::Warning,
                    "FailedDelete",
                    &msg,
                );
                failure = Some(api_err(format!("deleting pod {ns}/{name}"))(e));
                break;
            }
        }
    }
    // Status from what the cache holds now (our writes included).
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let now_pods: Vec<Arc<Pod>> =
        s.c.pods
            .list_ns(ns)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
            .collect();
    let owned_now: Vec<&Pod> = now_pods.iter().map(|p| p.as_ref()).collect();
    let status = replicaset::status(&rs, &owned_now, Timestamp::now());
    if rs.status.as_ref() != Some(&status) {
        let rsapi: Api<ReplicaSet> = Api::namespaced(s.client.clone(), ns);
        let mut upd = (*rs).clone();
        upd.status = Some(status.clone());
        let obj = rsapi
            .replace_status(
                rs.metadata.name.as_deref().unwrap_or(""),
                &PostParams::default(),
                &upd,
            )
            .await
            .map_err(api_err(format!("updating status of replicaset {k}")))?;
        saw(s, &s.c.replicasets, route_replicaset, obj);
    }
    // Pods ready but not yet available need another look once minReadySeconds pass.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0 && status.ready_replicas != status.available_replicas {
        s.q.replicasets
            .add_after(k.to_owned(), Duration::from_secs(min_ready as u64));
    }
    failure.map_or(Ok(()), Err)
}

fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- deployments

async fn sync_deployment(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, name) = split_key(k);
    let Some(d) = s.c.deployments.get(k) else {
        return Ok(());
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let spec = d.spec.clone().unwrap_or_default();
    let sel = selector_of(&spec.selector)?;
    let dref = reference(d.as_ref());
    if sel.is_empty() {
        let msg = "This deployment has an empty selector: it would select all pods and will not be synced.";
        warn_once(s, k, dref, "SelectingAll", msg);
        return Ok(());
    }
    let rses = s.c.replicasets.list_ns(ns);
    let refs: Vec<&ReplicaSet> = rses.iter().map(|r| r.as_ref()).collect();
    let claims = claim(&d.metadata, &sel, &refs);
    let dynrs = dynamic::<ReplicaSet>(&s.client, ns);
    let uid = d.metadata.uid.clone().unwrap_or_default();
    for r in &claims.adopt {
        let mut owners = r.metadata.owner_references.clone().unwrap_or_default();
        owners.push(controller_ref(d.as_ref()));
        if let Some(x) = typed::<ReplicaSet>(set_owner_refs(&dynrs, &r.metadata, owners).await?) {
            saw(s, &s.c.replicasets, route_replicaset, x);
        }
    }
    for r in &claims.release {
        let owners = r
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.uid != uid)
            .collect();
        if let Some(x) = typed::<ReplicaSet>(set_owner_refs(&dynrs, &r.metadata, owners).await?) {
            saw(s, &s.c.replicasets, route_replicaset, x);
        }
    }
    let mut owned: Vec<&ReplicaSet> = claims.owned.clone();
    owned.extend(claims.adopt.iter().copied());
    let old_uids: BTreeSet<String> = owned
        .iter()
        .filter(|r| !deployment::is_new_rs(&d, r))
        .filter_map(|r| r.metadata.uid.clone())
        .collect();
    let old_running =
        s.c.pods
            .list_ns(ns)
            .iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid)))
            .filter(|p| {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|x| x.phase.as_deref())
                    .unwrap_or("");
                phase != "Succeeded" && phase != "Failed"
            })
            .count();
    let plan = deployment::plan(&d, &owned, old_running, Timestamp::now())
        .map_err(|e| RunError::Invalid(e.to_string()))?;
    let rsapi: Api<ReplicaSet> = Api::namespaced(s.client.clone(), ns);
    let mut status = plan.status.clone();
    if let Some(new) = &plan.create {
        match rsapi.create(&PostParams::default(), new).await {
            Ok(r) => {
                let n = r.spec.as_ref().and_then(|x| x.replicas).unwrap_or(0);
                if n > 0 {
                    let msg = deployment::Scale {
                        name: r.metadata.name.clone().unwrap_or_default(),
                        from: 0,
                        to: n,
                    }
                    .message();
                    s.events.record(
                        "deployment-controller",
                        dref.clone(),
                        Kind::Normal,
                        "ScalingReplicaSet",
                        &msg,
                    );
                }
                saw(s, &s.c.replicasets, route_replicaset, r);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Same name, other template (or not ours): a hash collision. Upstream bumps collisionCount.
                let nm = new.metadata.name.clone().unwrap_or_default();
                let theirs = rsapi
                    .get_opt(&nm)
                    .await
                    .map_err(api_err(format!("reading replicaset {ns}/{nm}")))?;
                match theirs {
                    Some(t)
                        if deployment::is_new_rs(&d, &t)
                            && controller_of(&t.metadata).is_some_and(|o| o.uid == uid) =>
                    {
                        saw(s, &s.c.replicasets, route_replicaset, t);
                    }
                    _ => {
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    }
                }
            }
            Err(e) => return Err(api_err(format!("creating replicaset for {k}"))(e)),
        }
    }
    if let Some((rsname, rev)) = &plan.set_revision {
        let patch = json!({"metadata": {"annotations": {deployment::ANNOTATION_REVISION: rev}}});
        let r = rsapi
            .patch(rsname, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("setting the revision of {ns}/{rsname}")))?;
        saw(s, &s.c.replicasets, route_replicaset, r);
    }
    for sc in &plan.scale {
        let cur = s.c.replicasets.get(&key(ns, &sc.name));
        let patch = json!({
            "metadata": {
                "annotations": {
                    deployment::ANNOTATION_DESIRED: plan.scale_annotations.0.to_string(),
                    deployment::ANNOTATION_MAX: plan.scale_annotations.1.to_string(),
                },
                "resourceVersion": cur.and_then(|c| c.metadata.resource_version.clone()),
            },
            "spec": {"replicas": sc.to},
        });
        let r = rsapi
            .patch(&sc.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("scaling replicaset {ns}/{}", sc.name)))?;
        s.events.record(
            "deployment-controller",
            dref.clone(),
            Kind::Normal,
            "ScalingReplicaSet",
            &sc.message(),
        );
        saw(s, &s.c.replicasets, route_replicaset, r);
    }
    for old in &plan.delete {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match rsapi.delete(old, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_err(format!("deleting old replicaset {ns}/{old}"))(e)),
        }
    }
    let dapi: Api<Deployment> = Api::namespaced(s.client.clone(), ns);
    let mut cur = (*d).clone();
    if let Some(rev) = &plan.deployment_revision {
        let patch = json!({"metadata": {"annotations": {deployment::ANNOTATION_REVISION: rev}}});
        cur = dapi
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("setting the revision of deployment {k}")))?;
    }
    if cur.status.as_ref() != Some(&status) {
        cur.status = Some(status);
        let obj = dapi
            .replace_status(name, &PostParams::default(), &cur)
            .await
            .map_err(api_err(format!("updating status of deployment {k}")))?;
        saw(s, &s.c.deployments, route_deployment, obj);
    } else if plan.deployment_revision.is_some() {
        saw(s, &s.c.deployments, route_deployment, cur);
    }
    // Progress deadlines and minReadySeconds move with time alone.
    let wait = spec.min_ready_seconds.unwrap_or(0).max(1) as u64;
    if !plan.scale.is_empty() || plan.create.is_some() {
        s.q.deployments
            .add_after(k.to_owned(), Duration::from_secs(wait));
    }
    Ok(())
}

fn warn_once(s: &Shared, k: &str, obj: ObjectReference, reason: &str, msg: &str) {
    let mut w = lock(&s.warned);
    let tag = format!("{reason}: {msg}");
    if w.get(k) != Some(&tag) {
        w.insert(k.to_owned(), tag);
        let component = match reason {
            "FailedScheduling" => "default-scheduler",
            "AllocationFailed" => "service-lb-controller",
            _ => "deployment-controller",
        };
        s.events.record(component, obj, Kind::Warning, reason, msg);
    }
}

// ---------------------------------------------------------------- scheduler

async fn schedule_pod(s: &Arc<Shared>, k: &str) -> Result<()> {
    let (ns, name) = split_key(k);
    let Some(pod) = s.c.pods.get(k) else {
        return Ok(());
    };
    if !unscheduled(&pod) || lock(&s.assumed).contains_key(k) {
        return Ok(());
    }
    let wanted = pod
        .spec
        .as_ref()
        .and_then(|x| x.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if wanted != s.cfg.scheduler_name {
        return Ok(());
    }
    let nodes = s.c.nodes.list();
    let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let pods = s.c.pods.list();
    // Pods bound by us but not yet seen bound count where we put them.
    let assumed = lock(&s.assumed).clone();
    let placed: Vec<Pod> = pods
        .iter()
        .map(|p| {
            let mut p = (**p).clone();
            if let Some(n) = assumed.get(&key_of(&p)) {
                p.spec.get_or_insert_with(Default::default).node_name = Some(n.clone());
            }
            p
        })
        .collect();
    let placed_refs: Vec<&Pod> = placed.iter().collect();
    match scheduler::schedule(&pod, &node_refs, &placed_refs) {
        Ok(node) => {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(ns.to_owned()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node_name.clone()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
            let res: std::result::Result<serde_json::Value, kube::Error> = api
                .create_subresource("binding", name, &PostParams::default(), &binding)
                .await;
            match res {
                Ok(_) => {
                    lock(&s.assumed).insert(k.to_owned(), node_name.clone());
                    lock(&s.warned).remove(k);
                    let msg = format!("Successfully assigned {ns}/{name} to {node_name}");
                    s.events.record(
                        "default-scheduler",
                        reference(pod.as_ref()),
                        Kind::Normal,
                        "Scheduled",
                        &msg,
                    );
                    Ok(())
                }
                // Already bound by someone: the watch will tell.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
                Err(e) => Err(api_err(format!("binding pod {k}"))(e)),
            }
        }
        Err(fit) => {
            let msg = fit.to_string();
            let first = lock(&s.warned).get(k) != Some(&format!("FailedScheduling: {msg}"));
            warn_once(s, k, reference(pod.as_ref()), "FailedScheduling", &msg);
            if first {
                let api: Api<Pod> = Api::namespaced(s.client.clone(), ns);
                let patch = json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                    "lastTransitionTime": Timestamp::now().to_string(),
                }]}});
                if let Ok(p) = api
                    .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    saw(s, &s.c.pods, route_pod, p);
                }
            }
            s.q.scheduler
                .add_after(k.to_owned(), Duration::from_secs(5));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- LoadBalancer

async fn sync_load_balancers(s: &Arc<Shared>) -> Result<()> {
    let Some(pool) = s.cfg.lb_pool.as_ref() else {
        return Ok(());
    };
    let services = s.c.services.list();
    let refs: Vec<&Service> = services.iter().map(|x| x.as_ref()).collect();
    let plan = lbpool::assign(&refs, pool, s.cfg.lb_class.as_deref());
    let mut failure = None;
    for (k, a) in plan {
        let Some(svc) = s.c.services.get(&k) else {
            continue;
        };
        let (ns, name) = split_key(&k);
        let cur = lbpool::current_ingress(&svc);
        let (want, event) = match &a {
            Assignment::Ip(ip) => (
                lbpool::ingress(*ip),
                Some(("EnsuredLoadBalancer", "Ensured load balancer")),
            ),
            Assignment::Release => (
                Vec::new(),
                Some(("DeletedLoadBalancer", "Deleted load balancer")),
            ),
            Assignment::Pending(msg) => {
                warn_once(s, &k, reference(svc.as_ref()), "AllocationFailed", msg);
                let ours = cur.iter().any(|i| {
                    i.ip.as_deref()
                        .and_then(|ip| ip.parse().ok())
                        .is_some_and(|ip| pool.contains(ip))
                });
                if !ours {
                    continue;
                }
                (Vec::new(), None)
            }
        };
        if cur == want {
            continue;
        }
        let api: Api<Service> = Api::namespaced(s.client.clone(), ns);
        let ingress = if want.is_empty() {
            serde_json::Value::Null
        } else {
            json!(want)
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(obj) => {
                if let Some((reason, msg)) = event {
                    s.events.record(
                        "service-lb-controller",
                        reference(&obj),
                        Kind::Normal,
                        reason,
                        msg,
                    );
                }
                lock(&s.warned).remove(&k);
                saw(s, &s.c.services, route_service, obj);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                failure = Some(api_err(format!("setting the load balancer status of {k}"))(
                    e,
                ))
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

// ---------------------------------------------------------------- node lifecycle

async fn node_lifecycle(s: Arc<Shared>) {
    all_synced(&s).await;
    let tick = (s.cfg.timing.grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        if let Err(e) = node_lifecycle_once(&s).await {
            tracing::warn!(error = %e, "node lifecycle");
        }
        tokio::time::sleep(tick).await;
    }
}

async fn node_lifecycle_once(s: &Arc<Shared>) -> Result<()> {
    let now_mono = s.start.elapsed();
    let now = Timestamp::now();
    let nodes_api: Api<Node> = Api::all(s.client.clone());
    for node in s.c.nodes.list() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = s.c.leases.get(&key("kube-node-lease", &name));
        let renew = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|x| x.renew_time.as_ref())
            .map(|t| t.0);
        let hb = nodelifecycle::heartbeat(&node, renew);
        let (decision, lost_for) = {
            let mut t = lock(&s.tracker);
            (
                t.observe(&name, hb, now_mono, s.cfg.timing),
                t.lost_for(&name, now_mono),
            )
        };
        let lost = decision != Decision::Healthy;
        if let Some(taints) = nodelifecycle::taints(&node, lost, now) {
            let patch = json!({"spec": {"taints": taints}, "metadata": {"resourceVersion": node.metadata.resource_version}});
            let obj = nodes_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("tainting node {name}")))?;
            saw(s, &s.c.nodes, route_node, obj);
        }
        if !lost {
            continue;
        }
        let cur = s.c.nodes.get(&name).unwrap_or(node.clone());
        if let Some(conds) = nodelifecycle::unknown_conditions(&cur, now) {
            let patch = json!({"status": {"conditions": conds}});
            let obj = nodes_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("marking node {name} unknown")))?;
            let msg = format!("Node {name} status is now: NodeNotReady");
            s.events.record(
                "node-controller",
                reference(&obj),
                Kind::Normal,
                "NodeNotReady",
                &msg,
            );
            saw(s, &s.c.nodes, route_node, obj);
        }
        let on_node: Vec<Arc<Pod>> = s
            .c
            .pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|x| x.node_name.as_deref()) == Some(name.as_str()))
            .collect();
        for p in on_node {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let pname = p.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
            if let Some(conds) = nodelifecycle::not_ready_conditions(&p, now) {
                let patch = json!({"status": {"conditions": conds}});
                match api
                    .patch_status(&pname, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(obj) => {
                        saw(s, &s.c.pods, route_pod, obj);
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => {
                        return Err(api_err(format!("marking pod {ns}/{pname} not ready"))(e));
                    }
                }
            }
            let due = nodelifecycle::eviction_delay(&p, s.cfg.timing.eviction);
            if p.metadata.deletion_timestamp.is_none()
                && due.zip(lost_for).is_some_and(|(d, l)| l >= d)
            {
                match api.delete(&pname, &DeleteParams::default()).await {
                    Ok(either::Either::Left(obj)) => {
                        saw(s, &s.c.pods, route_pod, obj);
                    }
                    Ok(either::Either::Right(_)) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(api_err(format!("evicting pod {ns}/{pname}"))(e)),
                }
                let msg = format!("Marking for deletion Pod {ns}/{pname}");
                s.events.record(
                    "taint-eviction-controller",
                    reference(p.as_ref()),
                    Kind::Normal,
                    "TaintManagerEviction",
                    &msg,
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- garbage collection

fn gc_kind<K: Resource<DynamicType = ()>>() -> String {
    format!("{}/{}", K::api_version(&()), K::kind(&()))
}

fn gc_nodes<K: Resource<DynamicType = ()> + Clone>(c: &Cache<K>, out: &mut Vec<gc::Node>) {
    let kind = gc_kind::<K>();
    for o in c.list() {
        let m = o.meta();
        out.push(gc::Node {
            kind: kind.clone(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        });
    }
}

fn resource_for(kind: &str) -> Option<(ApiResource, bool)> {
    Some(match kind {
        "v1/Pod" => (ApiResource::erase::<Pod>(&()), true),
        "v1/Service" => (ApiResource::erase::<Service>(&()), true),
        "v1/Endpoints" => (ApiResource::erase::<Endpoints>(&()), true),
        "v1/Node" => (ApiResource::erase::<Node>(&()), false),
        "apps/v1/ReplicaSet" => (ApiResource::erase::<ReplicaSet>(&()), true),
        "apps/v1/Deployment" => (ApiResource::erase::<Deployment>(&()), true),
        "discovery.k8s.io/v1/EndpointSlice" => (ApiResource::erase::<EndpointSlice>(&()), true),
        "coordination.k8s.io/v1/Lease" => (ApiResource::erase::<Lease>(&()), true),
        _ => return None,
    })
}

fn dyn_api(s: &Shared, kind: &str, ns: &str) -> Option<Api<DynamicObject>> {
    let (ar, namespaced) = resource_for(kind)?;
    Some(if namespaced {
        Api::namespaced_with(s.client.clone(), ns, &ar)
    } else {
        Api::all_with(s.client.clone(), &ar)
    })
}

/// Whether an owner really is gone (or deleting in the foreground), read live.
async fn owner_gone(s: &Shared, ns: &str, r: &OwnerReference) -> Result<bool> {
    let kind = format!("{}/{}", r.api_version, r.kind);
    let Some(api) = dyn_api(s, &kind, ns) else {
        return Ok(false);
    };
    match api
        .get_opt(&r.name)
        .await
        .map_err(api_err(format!("reading owner {}/{}", r.kind, r.name)))?
    {
        None => Ok(true),
        Some(o) if o.metadata.uid.as_deref() != Some(r.uid.as_str()) => Ok(true),
        Some(o) => Ok(o.metadata.deletion_timestamp.is_some()
            && o.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == gc::FOREGROUND)),
    }
}

async fn collect_garbage(s: &Arc<Shared>) -> Result<()> {
    // Let a burst of deletes settle into one pass.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.q.gc.drain();
    let mut objs = Vec::new();
    gc_nodes(&s.c.pods, &mut objs);
    gc_nodes(&s.c.services, &mut objs);
    gc_nodes(&s.c.endpoints, &mut objs);
    gc_nodes(&s.c.slices, &mut objs);
    gc_nodes(&s.c.nodes, &mut objs);
    gc_nodes(&s.c.deployments, &mut objs);
    gc_nodes(&s.c.replicasets, &mut objs);
    gc_nodes(&s.c.leases, &mut objs);
    let watched: BTreeSet<String> = [
        gc_kind::<Pod>(),
        gc_kind::<Service>(),
        gc_kind::<Endpoints>(),
        gc_kind::<EndpointSlice>(),
        gc_kind::<Node>(),
        gc_kind::<Deployment>(),
        gc_kind::<ReplicaSet>(),
    ]
    .into_iter()
    .collect();
    let mut failure = None;
    for a in gc::plan(&objs, &watched) {
        if let Err(e) = gc_apply(s, a).await
            && code(&e) != Some(404)
        {
            failure = Some(e);
        }
    }
    if failure.is_some() {
        // Retry the whole pass shortly.
        s.q.gc.add_after("all".into(), Duration::from_millis(500));
    }
    failure.map_or(Ok(()), Err)
}

async fn gc_apply(s: &Shared, a: gc::Action) -> Result<()> {
    match a {
        gc::Action::Delete {
            kind,
            namespace,
            name,
            uid,
            policy,
            owners,
        } => {
            for r in &owners {
                if !owner_gone(s, &namespace, r).await? {
                    return Ok(());
                }
            }
            let Some(api) = dyn_api(s, &kind, &namespace) else {
                return Ok(());
            };
            let dp = DeleteParams {
                propagation_policy: Some(match policy {
                    gc::Policy::Background => PropagationPolicy::Background,
                    gc::Policy::Foreground => PropagationPolicy::Foreground,
                }),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            tracing::debug!(%kind, %namespace, %name, "collecting garbage");
            api.delete(&name, &dp)
                .await
                .map_err(api_err(format!("collecting {kind} {namespace}/{name}")))?;
            Ok(())
        }
        gc::Action::RemoveOwners {
            kind,
            namespace,
            name,
            uids,
        } => {
            let Some(api) = dyn_api(s, &kind, &namespace) else {
                return Ok(());
            };
            let cur = api
                .get(&name)
                .await
                .map_err(api_err(format!("reading {kind} {namespace}/{name}")))?;
            let keep: Vec<OwnerReference> = cur
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !uids.contains(&o.uid))
                .collect();
            set_owner_refs(&api, &cur.metadata, keep).await?;
            Ok(())
        }
        gc::Action::RemoveFinalizer {
            kind,
            namespace,
            name,
            finalizer,
        } => {
            let Some(api) = dyn_api(s, &kind, &namespace) else {
                return Ok(());
            };
            let cur = api
                .get(&name)
                .await
                .map_err(api_err(format!("reading {kind} {namespace}/{name}")))?;
            let keep: Vec<String> = cur
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| *f != finalizer)
                .collect();
            let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": cur.metadata.resource_version}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("finalizing {kind} {namespace}/{name}")))?;
            Ok(())
        }
    }
}

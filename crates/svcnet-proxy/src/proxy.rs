//! The proxy loop: watches Services, EndpointSlices and this Node, feeds the tracker, and syncs the backend on schedule.
//!
//! The backend runs on its own thread (optionally inside a network
//! namespace), so blocking `nft`/`iptables-restore` calls never stall the
//! watchers, and the API connection stays in the caller's namespace.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::oneshot;

use crate::backend::{Backend, BackendError, Exec, SyncReport, SystemExec};
use crate::config::{Mode, ProxyConfig};
use crate::iptables::IptBackend;
use crate::metrics::{self, Metrics};
use crate::nftables::NftBackend;
use crate::plan::Family;
use crate::runner::Schedule;
use crate::tracker::{DesiredState, Tracker};
use crate::userspace::UserspaceBackend;

/// Errors of the proxy loop.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("entering network namespace {path}: {message}")]
    Netns { path: String, message: String },
    #[error("starting the backend thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("backend thread stopped")]
    WorkerGone,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("node name is empty: pass --hostname-override or set hostnameOverride")]
    NoNodeName,
    #[error("API client: {0}")]
    Client(String),
}

pub type Result<T, E = ProxyError> = std::result::Result<T, E>;

type Job = (
    Arc<DesiredState>,
    bool,
    oneshot::Sender<Result<SyncReport, BackendError>>,
);

/// The backend on its own thread.
#[derive(Debug)]
pub struct Worker {
    tx: std::sync::mpsc::Sender<Job>,
    mode: &'static str,
}

fn enter_netns(path: &PathBuf) -> Result<()> {
    let err = |m: String| ProxyError::Netns {
        path: path.display().to_string(),
        message: m,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(e.to_string()))?;
    Ok(())
}

impl Worker {
    /// Starts the backend thread; `make` builds the backend there (after entering `netns`).
    pub fn spawn<F>(netns: Option<PathBuf>, make: F) -> Result<Worker>
    where
        F: FnOnce(tokio::runtime::Handle) -> Result<Box<dyn Backend>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<&'static str>>();
        std::thread::Builder::new()
            .name("svcnet-proxy-backend".into())
            .spawn(move || {
                if let Some(p) = &netns
                    && let Err(e) = enter_netns(p)
                {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                // Runtime threads are created from here, so they share the namespace.
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ProxyError::Thread(e)));
                        return;
                    }
                };
                let mut backend = match make(rt.handle().clone()) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(backend.mode()));
                while let Ok((state, full, reply)) = rx.recv() {
                    let r = backend.sync(&state, full);
                    // Dropped before replying: the tracker then owns the only
                    // reference and updates the state in place, without a copy.
                    drop(state);
                    let _ = reply.send(r);
                }
                drop(rt);
            })
            .map_err(ProxyError::Thread)?;
        let mode = ready_rx.recv().map_err(|_| ProxyError::WorkerGone)??;
        Ok(Worker { tx, mode })
    }

    pub fn mode(&self) -> &'static str {
        self.mode
    }

    pub async fn sync(&self, state: Arc<DesiredState>, full: bool) -> Result<SyncReport> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((state, full, tx))
            .map_err(|_| ProxyError::WorkerGone)?;
        Ok(rx.await.map_err(|_| ProxyError::WorkerGone)??)
    }
}

/// Builds the backend `cfg.mode` names; `auto` picks nftables, then iptables, then userspace.
pub fn make_backend(cfg: &ProxyConfig, handle: tokio::runtime::Handle) -> Result<Box<dyn Backend>> {
    let mut probe = SystemExec;
    let mode = match cfg.mode {
        Mode::Auto => {
            if NftBackend::usable(&mut probe) {
                tracing::info!("proxy mode auto: using nftables (nft works here)");
                Mode::Nftables
            } else if IptBackend::usable(&mut probe, "iptables") {
                tracing::info!("proxy mode auto: using iptables (nft unusable)");
                Mode::Iptables
            } else {
                tracing::info!("proxy mode auto: using userspace (no usable netfilter)");
                Mode::Userspace
            }
        }
        m => m,
    };
    let s = cfg.settings.clone();
    Ok(match mode {
        Mode::Nftables => {
            let families = NftBackend::usable_families(&mut probe);
            if !families.contains(&Family::V6) {
                tracing::warn!(
                    "nftables: no ip6 table possible here; IPv6 Services are not served"
                );
            }
            Box::new(NftBackend::new(Box::new(SystemExec), s).with_families(families))
        }
        Mode::Iptables => {
            let families = IptBackend::usable_families(&mut probe, "iptables");
            Box::new(IptBackend::new(Box::new(SystemExec), s, "iptables").with_families(families))
        }
        _ => {
            let node_ips = local_ips(&mut probe);
            Box::new(
                UserspaceBackend::new(
                    handle,
                    Box::new(SystemExec),
                    s,
                    &cfg.userspace_iface,
                    node_ips,
                )
                .with_congestion_control(&cfg.userspace_congestion_control),
            )
        }
    })
}

/// This namespace's addresses of both families (for NodePorts restricted
/// by nodePortAddresses, and whether IPv6 NodePorts are served).
fn local_ips(exec: &mut dyn Exec) -> Vec<std::net::IpAddr> {
    let out = exec
        .run("ip", &["-o", "addr", "show"], "")
        .unwrap_or_default();
    parse_addrs(&out)
}

/// Addresses from `ip -o addr show` lines (`inet` and `inet6`).
fn parse_addrs(out: &str) -> Vec<std::net::IpAddr> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.position(|x| x == "inet" || x == "inet6")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// A client from a kubeconfig file, or inferred (in-cluster, $KUBECONFIG, ~/.kube/config).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    svcnet_client::client(kubeconfig)
        .await
        .map_err(|e| ProxyError::Client(e.to_string()))
}

/// One watch event of any kind.
#[derive(Debug)]
enum Update {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
    Node(Box<Event<Node>>),
    Error(String),
}

fn events(client: kube::Client, node: &str) -> impl Stream<Item = Update> + Send + use<> {
    let svc = watcher::watcher(
        kube::Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| {
        e.map(|e| Update::Service(Box::new(e)))
            .unwrap_or_else(|e| Update::Error(e.to_string()))
    });
    let slices = watcher::watcher(
        kube::Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| {
        e.map(|e| Update::Slice(Box::new(e)))
            .unwrap_or_else(|e| Update::Error(e.to_string()))
    });
    let nodes = watcher::watcher(
        kube::Api::<Node>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={node}")),
    )
    .default_backoff()
    .map(|e| {
        e.map(|e| Update::Node(Box::new(e)))
            .unwrap_or_else(|e| Update::Error(e.to_string()))
    });
    futures::stream::select(futures::stream::select(svc, slices), nodes)
}

/// Watch state: objects buffered during a relist, and whether the first list is done.
#[derive(Debug, Default)]
struct Lists {
    services: Option<Vec<Service>>,
    slices: Option<Vec<EndpointSlice>>,
    services_synced: bool,
    slices_synced: bool,
}

impl Lists {
    /// Applies one event to the tracker; returns whether a sync is needed.
    fn apply(&mut self, t: &mut Tracker, u: Update, now: Instant) -> bool {
        match u {
            Update::Service(e) => match *e {
                Event::Apply(s) => t.service_updated(&s, now),
                Event::Delete(s) => t.service_deleted(
                    s.metadata.namespace.as_deref().unwrap_or("default"),
                    s.metadata.name.as_deref().unwrap_or(""),
                    now,
                ),
                Event::Init => {
                    self.services = Some(Vec::new());
                    false
                }
                Event::InitApply(s) => {
                    self.services.get_or_insert_default().push(s);
                    false
                }
                Event::InitDone => {
                    t.replace_services(&self.services.take().unwrap_or_default(), now);
                    self.services_synced = true;
                    true
                }
            },
            Update::Slice(e) => match *e {
                Event::Apply(s) => t.slice_updated(&s, now),
                Event::Delete(s) => t.slice_deleted(
                    s.metadata.namespace.as_deref().unwrap_or("default"),
                    s.metadata.name.as_deref().unwrap_or(""),
                    now,
                ),
                Event::Init => {
                    self.slices = Some(Vec::new());
                    false
                }
                Event::InitApply(s) => {
                    self.slices.get_or_insert_default().push(s);
                    false
                }
                Event::InitDone => {
                    t.replace_slices(&self.slices.take().unwrap_or_default(), now);
                    self.slices_synced = true;
                    true
                }
            },
            Update::Node(e) => {
                if let Event::Apply(n) | Event::InitApply(n) = *e {
                    tracing::debug!(node = ?n.metadata.name, "node seen");
                }
                false
            }
            Update::Error(e) => {
                // The watcher retries with backoff; the rules stay as they are.
                tracing::warn!(error = %e, "watch failed; keeping the current rules");
                false
            }
        }
    }
}

/// Runs the proxy until `shutdown` resolves. Rules stay in place afterwards, as upstream's do.
pub async fn run(
    client: kube::Client,
    cfg: ProxyConfig,
    worker: Worker,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    if cfg.node_name.is_empty() {
        return Err(ProxyError::NoNodeName);
    }
    let metrics = Arc::new(Mutex::new(Metrics::new(worker.mode(), cfg.sync_period)));
    for (what, addr) in [("metrics", cfg.metrics_bind), ("healthz", cfg.healthz_bind)] {
        if let Some(addr) = addr {
            let l = metrics::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { what, addr, source })?;
            tokio::spawn(metrics::serve(l, metrics.clone()));
        }
    }
    tracing::info!(mode = worker.mode(), node = %cfg.node_name, "proxy starting");
    let mut tracker = Tracker::new(cfg.node_name.clone());
    let mut lists = Lists::default();
    let mut schedule = Schedule::new(cfg.min_sync_period, cfg.sync_period);
    let mut stream = std::pin::pin!(events(client, &cfg.node_name));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut pending_since: Option<Instant> = None;
    loop {
        let ready = lists.services_synced && lists.slices_synced;
        let wake = schedule.next(Instant::now());
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            u = stream.next() => {
                let Some(u) = u else { return Ok(()) };
                let now = Instant::now();
                if lists.apply(&mut tracker, u, now) || tracker.is_dirty() {
                    schedule.request();
                    pending_since.get_or_insert(now);
                    let mut m = metrics.lock().unwrap_or_else(|e| e.into_inner());
                    m.last_queued = Some(SystemTime::now());
                    m.pending_since = pending_since;
                }
            }
            _ = tokio::time::sleep_until(wake.into()), if ready => {
                let now = Instant::now();
                let Some(full) = schedule.due(now) else { continue };
                let (state, since) = tracker.take_state();
                let started = Instant::now();
                let res = worker.sync(state, full).await;
                let took = started.elapsed().as_secs_f64();
                let done = Instant::now();
                schedule.ran(done, res.is_ok());
                let mut m = metrics.lock().unwrap_or_else(|e| e.into_inner());
                match res {
                    Ok(r) => {
                        m.sync.observe(took);
                        if r.full { m.sync_full.observe(took) } else { m.sync_partial.observe(took) }
                        if let Some(s) = since {
                            m.programming.observe(done.duration_since(s).as_secs_f64());
                        }
                        m.service_changes += r.changed_ports as u64;
                        m.last_sync = Some(SystemTime::now());
                        pending_since = None;
                        m.pending_since = None;
                        tracing::debug!(full = r.full, changed = r.changed_ports, seconds = took, "synced");
                    }
                    Err(e) => {
                        m.sync_failures += 1;
                        // Re-plan everything next time: the failed state must be re-sent whole.
                        tracing::error!(error = %e, "sync failed; retrying as a full sync");
                    }
                }
            }
        }
    }
}

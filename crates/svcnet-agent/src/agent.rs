//! The agent proper: watches the pods bound to its node, runs one worker per pod, serves the runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::ipam::{Cidr, Ipam};
use crate::podfiles::{DnsSettings, ResolvConf};

/// Errors that stop the agent (per-pod problems only show on the pod).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("root dir {path}: {source}")]
    RootDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Node agent settings (see `svcnet agent --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// Logs, per-pod files and allocator state.
    pub root_dir: PathBuf,
    /// The pod bridge in the node namespace (its address is the pod CIDR's first address).
    pub bridge: String,
    /// How to start the helper: program and leading arguments (`[svcnet, builtin]`).
    pub helper: Vec<String>,
    /// Port advertised as the node's kubelet endpoint (the streaming server).
    pub streaming_port: u16,
    /// Rotate a container's log past this size.
    pub log_max_size: u64,
    /// The node's resolver configuration for dnsPolicy Default.
    pub host_resolv_conf: PathBuf,
    /// Lease renewal and node status intervals.
    pub lease_interval: Duration,
    pub status_interval: Duration,
}

impl Config {
    /// Defaults for a node; the helper is this executable's `builtin` subcommand.
    pub fn new(node_name: &str, node_ip: Ipv4Addr, pod_cidr: Cidr, root_dir: PathBuf) -> Config {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/proc/self/exe".into());
        Config {
            node_name: node_name.into(),
            node_ip,
            pod_cidr,
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            root_dir,
            bridge: "svcpods0".into(),
            helper: vec![exe, "builtin".into()],
            streaming_port: 10250,
            log_max_size: 10 * 1024 * 1024,
            host_resolv_conf: "/etc/resolv.conf".into(),
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(10),
        }
    }
}

/// Shared agent state.
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) client: kube::Client,
    pub(crate) dns: DnsSettings,
    pub(crate) ipam: Mutex<Ipam>,
    pub(crate) pods: Mutex<HashMap<String, PodEntry>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) tx: watch::Sender<Pod>,
    pub(crate) shared: Arc<crate::pod::PodShared>,
}

/// A running node agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

impl Agent {
    pub fn new(cfg: Config, client: kube::Client) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&cfg.root_dir).map_err(|source| AgentError::RootDir {
            path: cfg.root_dir.clone(),
            source,
        })?;
        let host = std::fs::read_to_string(&cfg.host_resolv_conf)
            .map(|t| ResolvConf::parse(&t))
            .unwrap_or_default();
        let dns = DnsSettings {
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            host,
        };
        let ipam = Ipam::open(cfg.pod_cidr, cfg.root_dir.join("ipam.json"));
        Ok(Agent {
            inner: Arc::new(Inner {
                cfg,
                client,
                dns,
                ipam: Mutex::new(ipam),
                pods: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The runtime for the streaming server.
    pub fn runtime(&self) -> Arc<dyn crate::runtime::PodRuntime> {
        Arc::new(self.clone())
    }

    /// Registers the node, then runs pods until `shutdown` resolves. Pods keep running after
    /// the agent stops only as far as their processes do; the agent stops its workers.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let cfg = &self.inner.cfg;
        crate::net::ensure_bridge(&cfg.bridge, cfg.pod_cidr).await?;
        crate::node::register(&self.inner).await?;
        let hb = tokio::spawn(crate::node::heartbeat(self.inner.clone()));
        let pods: Api<Pod> = Api::all(self.inner.client.clone());
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
        let mut stream = std::pin::pin!(watcher(pods, wc));
        let mut listed: Option<Vec<String>> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = stream.next() => match ev {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pod watch failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Some(Ok(ev)) => match ev {
                        watcher::Event::Init => listed = Some(Vec::new()),
                        watcher::Event::InitApply(p) => {
                            if let (Some(l), Some(uid)) = (listed.as_mut(), p.metadata.uid.clone()) {
                                l.push(uid);
                            }
                            self.apply(p);
                        }
                        watcher::Event::InitDone => {
                            if let Some(l) = listed.take() {
                                self.forget_except(&l);
                            }
                        }
                        watcher::Event::Apply(p) => self.apply(p),
                        watcher::Event::Delete(p) => {
                            if let Some(uid) = p.metadata.uid.as_deref() {
                                self.removed(uid);
                            }
                        }
                    },
                }
            }
        }
        hb.abort();
        self.stop_all().await;
        Ok(())
    }

    fn apply(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = pods.get(&uid) {
            e.tx.send_replace(pod);
            return;
        }
        let shared = Arc::new(crate::pod::PodShared::new(&self.inner.cfg, &pod));
        let (tx, rx) = watch::channel(pod);
        pods.insert(
            uid,
            PodEntry {
                tx,
                shared: shared.clone(),
            },
        );
        tokio::spawn(crate::pod::run(self.inner.clone(), shared, rx));
    }

    /// The pod object is gone from the API: stop its processes right away.
    fn removed(&self, uid: &str) {
        let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = pods.get(uid) {
            e.shared.force_stop();
        }
    }

    fn forget_except(&self, keep: &[String]) {
        let uids: Vec<String> = {
            let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.keys().filter(|u| !keep.contains(u)).cloned().collect()
        };
        for u in uids {
            self.removed(&u);
        }
    }

    async fn stop_all(&self) {
        let shared: Vec<Arc<crate::pod::PodShared>> = {
            let pods = self.inner.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.values().map(|e| e.shared.clone()).collect()
        };
        for s in &shared {
            s.force_stop();
        }
        for s in &shared {
            s.wait_finished().await;
        }
    }
}

impl Inner {
    pub(crate) fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Services whose variables a pod starting now gets: its namespace's and default's.
    pub(crate) async fn services_for(&self, ns: &str) -> Result<Vec<Service>, kube::Error> {
        let mut out = Vec::new();
        let own: Api<Service> = Api::namespaced(self.client.clone(), ns);
        out.extend(own.list(&ListParams::default()).await?.items);
        if ns != "default" {
            let def: Api<Service> = Api::namespaced(self.client.clone(), "default");
            if let Ok(k) = def.get("kubernetes").await {
                out.push(k);
            }
        }
        Ok(out)
    }

    pub(crate) async fn patch_status(&self, ns: &str, name: &str, status: serde_json::Value) {
        let api = self.pod_api(ns);
        let body = serde_json::json!({"status": status});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "status update failed");
        }
    }

    /// Confirms a graceful deletion (grace 0, only this incarnation).
    pub(crate) async fn confirm_delete(&self, ns: &str, name: &str, uid: &str) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = self.pod_api(ns).delete(name, &dp).await {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "confirming deletion failed");
        }
    }

    pub(crate) fn forget(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        let _ = self
            .ipam
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(uid);
    }

    pub(crate) fn find(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Option<Arc<crate::pod::PodShared>> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.values()
            .map(|e| e.shared.clone())
            .find(|s| s.namespace == ns && s.name == name && uid.is_none_or(|u| u == s.uid))
    }
}

/// Data of ConfigMaps or Secrets by name.
pub(crate) type DataByName = BTreeMap<String, BTreeMap<String, String>>;

/// ConfigMap and Secret data a pod's environment refers to.
pub(crate) async fn env_sources(inner: &Inner, pod: &Pod) -> (DataByName, DataByName) {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut cms = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut cm_names = Vec::new();
    let mut secret_names = Vec::new();
    for c in &spec.containers {
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value_from {
                cm_names.extend(v.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secret_names.extend(v.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
        for f in c.env_from.iter().flatten() {
            cm_names.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
            secret_names.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    let cm_api: Api<ConfigMap> = Api::namespaced(inner.client.clone(), ns);
    for n in cm_names {
        if let Ok(cm) = cm_api.get(&n).await {
            cms.insert(n, cm.data.unwrap_or_default());
        }
    }
    let s_api: Api<Secret> = Api::namespaced(inner.client.clone(), ns);
    for n in secret_names {
        if let Ok(s) = s_api.get(&n).await {
            let mut d: BTreeMap<String, String> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            d.extend(s.string_data.unwrap_or_default());
            secrets.insert(n, d);
        }
    }
    (cms, secrets)
}

//! svcnet's Kubernetes-compatible API server.
//!
//! REST semantics over HTTPS for the resources in [`resources::RESOURCES`]:
//! create/get/list/watch/update/patch/delete with resourceVersions taken from
//! the store revision, server-side Tables, discovery, OpenAPI v3, Status
//! errors, and the Service registry that allocates ClusterIPs and NodePorts
//! in the same store transaction as the Service.
//!
//! **Architecture invariant:** the API server is the only writer of the
//! store; every decision about object content (defaulting, validation,
//! allocation choices, patch semantics, table cells) comes from
//! `svcnet-core`.

pub mod apply;
pub mod codec;
pub mod connect;
pub mod discovery;
pub mod filter;
pub mod handlers;
pub mod openapi;
pub mod protobuf;
pub mod query;
pub mod request;
pub mod resources;
pub mod services;
pub mod status;
pub mod storage;
pub mod strategy;
pub mod tables;
pub mod tls;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use svcnet_store::Store;
use tokio::net::TcpListener;

use crate::handlers::Ctx;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] svcnet_store::StoreError),
    #[error("bootstrap: {0}")]
    Bootstrap(ApiError),
}

/// API server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Certificates, tokens and the admin kubeconfig live here.
    pub data_dir: PathBuf,
    /// HTTPS listen address.
    pub bind: SocketAddr,
    /// The address put into the `kubernetes` Endpoints and the kubeconfig.
    pub advertise_address: String,
    /// Service CIDRs (`--service-cluster-ip-range`): one, or two of
    /// different families comma-separated, primary first, e.g.
    /// `10.96.0.0/16,fd00:10:96::/112`. The primary family is the default of
    /// single-stack Services and holds the `kubernetes` Service's IP.
    /// Checked at start.
    pub service_cidr: String,
    pub node_port_range: String,
    /// Optional plain-HTTP port, always bound to 127.0.0.1, no authentication.
    pub insecure_port: Option<u16>,
    /// Token file (`token,user,uid,"groups"`); generated in data_dir if None.
    pub token_file: Option<PathBuf>,
    /// Supplied serving certificate and key (PEM); generated if None.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Extra names/IPs for the serving certificate.
    pub extra_sans: Vec<String>,
    pub max_watches_per_client: usize,
    pub request_timeout: Duration,
    pub cluster_domain: String,
    /// Bearer token presented to node agents when relaying log, exec,
    /// attach and portforward; without one those subresources answer 503.
    pub agent_token: Option<String>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 6443)),
            advertise_address: "127.0.0.1".into(),
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: "30000-32767".into(),
            insecure_port: None,
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            extra_sans: Vec::new(),
            max_watches_per_client: 2000,
            request_timeout: Duration::from_secs(60),
            cluster_domain: "cluster.local".into(),
            agent_token: None,
        }
    }
}

/// Hook for streaming subresources (log, exec, attach, portforward), served
/// by relaying to the pod's node agent.
pub trait Connector: Send + Sync + std::fmt::Debug {
    fn connect(
        &self,
        api: Arc<Api>,
        namespace: String,
        pod: String,
        sub: String,
        req: Request<Body>,
    ) -> futures::future::BoxFuture<'static, ApiResult<Response>>;
}

/// Shared state of the API server.
#[derive(Debug)]
pub struct Api {
    pub store: Arc<dyn Store>,
    pub cfg: Config,
    pub services: services::ServiceRegistry,
    /// Flips to true on shutdown: watches end cleanly.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    watches: StdMutex<HashMap<String, usize>>,
    tokens: HashMap<String, tls::User>,
    connector: StdMutex<Option<Arc<dyn Connector>>>,
    /// Pods waiting for their grace period to end: (deadline, ns, name).
    pod_deadlines: tokio::sync::mpsc::UnboundedSender<(Timestamp, String, String)>,
    pod_deadline_rx:
        StdMutex<Option<tokio::sync::mpsc::UnboundedReceiver<(Timestamp, String, String)>>>,
}

/// A held watch slot; released on drop.
#[derive(Debug)]
pub struct WatchPermit {
    api: Arc<Api>,
    client: String,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        if let Ok(mut m) = self.api.watches.lock()
            && let Some(n) = m.get_mut(&self.client)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

fn res(group: &str, plural: &str) -> &'static Resource {
    // The table is static and these names are in it.
    resources::find(group, "v1", plural).unwrap_or(&resources::RESOURCES[0])
}

impl Api {
    /// Takes a watch slot for `client`, or 429 when it has too many.
    pub fn watch_permit_for(self: &Arc<Self>, client: &str) -> ApiResult<WatchPermit> {
        let mut m = self
            .watches
            .lock()
            .map_err(|_| ApiError::internal("watch table poisoned"))?;
        let n = m.entry(client.to_string()).or_insert(0);
        if *n >= self.cfg.max_watches_per_client {
            return Err(ApiError::too_many_requests(format!(
                "too many concurrent watches for this client (limit {})",
                self.cfg.max_watches_per_client
            )));
        }
        *n += 1;
        Ok(WatchPermit {
            api: self.clone(),
            client: client.to_string(),
        })
    }

    /// Installs the relay for log/exec/attach/portforward.
    pub fn set_connector(&self, c: Arc<dyn Connector>) {
        if let Ok(mut g) = self.connector.lock() {
            *g = Some(c);
        }
    }

    pub(crate) async fn connect(
        self: Arc<Self>,
        _res: &Resource,
        ns: String,
        pod: String,
        sub: String,
        req: Request<Body>,
    ) -> ApiResult<Response> {
        let c = self.connector.lock().ok().and_then(|g| g.clone());
        match c {
            Some(c) => c.connect(self.clone(), ns, pod, sub, req).await,
            None => Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!(
                    "pods/{sub} is not available: no node agent relay is configured on this API server"
                ),
            )),
        }
    }

    /// Called when a namespace turned Terminating.
    pub(crate) fn namespace_deleted(self: &Arc<Self>, name: String) {
        let api = self.clone();
        tokio::spawn(async move { api.finalize_namespace(name).await });
    }

    /// Called when a pod got a deletionTimestamp.
    pub(crate) fn pod_deadline(&self, at: Timestamp, ns: String, name: String) {
        let _ = self.pod_deadlines.send((at, ns, name));
    }

    fn internal_ctx(
        self: &Arc<Self>,
        res: &'static Resource,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Ctx {
        Ctx {
            api: self.clone(),
            res,
            ns: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: None,
            q: query::Query::default(),
            headers: Default::default(),
            out: codec::Output::Json,
            table: false,
            client: "svcnet-apiserver".into(),
        }
    }

    /// Deletes everything in a terminating namespace, then the namespace.
    async fn finalize_namespace(self: Arc<Self>, ns: String) {
        let nsres = res("", "namespaces");
        loop {
            let mut left = 0usize;
            for r in resources::RESOURCES.iter().filter(|r| r.namespaced) {
                let ctx = self.internal_ctx(r, Some(&ns), None);
                let Ok(listed) = handlers::list_objects(&ctx).await else {
                    continue;
                };
                for obj in listed.items {
                    left += 1;
                    let one = self.internal_ctx(r, Some(&ns), Some(storage::name_of(&obj)));
                    if let Err(e) = handlers::delete_one(&one, &json!({})).await
                        && e.code != 404
                    {
                        tracing::warn!(namespace = %ns, error = %e, "namespace cleanup");
                    }
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for _ in 0..10 {
            let Ok(Some((obj, kv))) = handlers::read(&self, nsres, None, &ns).await else {
                return;
            };
            let _ = obj;
            match self
                .store
                .delete(&storage::key(nsres, None, &ns), Some(kv.mod_revision))
                .await
            {
                Ok(_) => return,
                Err(svcnet_store::StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "removing namespace");
                    return;
                }
            }
        }
    }

    /// Removes pods whose grace period ended without their node confirming.
    async fn pod_reaper(self: Arc<Self>) {
        let Some(mut rx) = self.pod_deadline_rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        let mut pending: std::collections::BTreeSet<(Timestamp, String, String)> =
            Default::default();
        // Pods already terminating when we start.
        let podres = res("", "pods");
        let ctx = self.internal_ctx(podres, None, None);
        if let Ok(l) = handlers::list_objects(&ctx).await {
            for p in l.items {
                if let Some(ts) = p["metadata"]["deletionTimestamp"]
                    .as_str()
                    .and_then(|s| s.parse::<Timestamp>().ok())
                {
                    pending.insert((
                        ts,
                        storage::meta_str(&p, "namespace").unwrap_or("").to_string(),
                        storage::name_of(&p).to_string(),
                    ));
                }
            }
        }
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let wait = pending
                .first()
                .map(|(t, _, _)| {
                    let d = t.as_millisecond() - Timestamp::now().as_millisecond() + 2000;
                    Duration::from_millis(d.max(0) as u64)
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.changed() => return,
                item = rx.recv() => match item {
                    Some(i) => { pending.insert(i); }
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {
                    let now = Timestamp::now();
                    while let Some(first) = pending.first().cloned() {
                        if first.0.as_millisecond() + 2000 > now.as_millisecond() {
                            break;
                        }
                        pending.remove(&first);
                        let (_, ns, name) = first;
                        let one = self.internal_ctx(podres, Some(&ns), Some(&name));
                        if let Ok(Some((pod, kv))) = handlers::read(&self, podres, Some(&ns), &name).await {
                            let due = pod["metadata"]["deletionTimestamp"].as_str().and_then(|s| s.parse::<Timestamp>().ok());
                            let finalizers = pod["metadata"]["finalizers"].as_array().is_some_and(|a| !a.is_empty());
                            if due.is_some_and(|d| d.as_millisecond() + 2000 <= now.as_millisecond()) && !finalizers {
                                let _ = self.store.delete(&storage::key(podres, Some(&ns), &name), Some(kv.mod_revision)).await;
                            }
                        }
                        drop(one);
                    }
                }
            }
        }
    }

    /// Default namespaces and the `kubernetes` Service, Endpoints and EndpointSlice.
    async fn bootstrap(self: &Arc<Self>) -> ApiResult<()> {
        let nsres = res("", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if handlers::read(self, nsres, None, ns).await?.is_none() {
                let ctx = self.internal_ctx(nsres, None, None);
                let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
                match handlers::create_object(&ctx, obj, "kube-apiserver", "Update").await {
                    Ok(_) => {}
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let port = self.cfg.bind.port();
        let svcres = res("", "services");
        if handlers::read(self, svcres, Some("default"), "kubernetes")
            .await?
            .is_none()
        {
            let ctx = self.internal_ctx(svcres, Some("default"), None);
            let obj = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": self.services.first_ip(), "sessionAffinity": "None",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            });
            match handlers::create_object(&ctx, obj, "kube-apiserver", "Update").await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let addr = self.cfg.advertise_address.clone();
        let ep = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        });
        let family = if addr.contains(':') { "IPv6" } else { "IPv4" };
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": family,
            "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        });
        // Written directly: the advertised address may be loopback, which
        // user-facing validation of Endpoints rightly refuses.
        for (plural, group, obj) in [
            ("endpoints", "", ep),
            ("endpointslices", "discovery.k8s.io", slice),
        ] {
            let r = res(group, plural);
            let key = storage::key(r, Some("default"), "kubernetes");
            match handlers::read(self, r, Some("default"), "kubernetes").await? {
                None => {
                    let mut obj = obj;
                    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                    obj["metadata"]["creationTimestamp"] =
                        json!(handlers::rfc3339(Timestamp::now()));
                    match self.store.create(&key, &storage::encode(&obj)).await {
                        Ok(_) | Err(svcnet_store::StoreError::AlreadyExists) => {}
                        Err(e) => return Err(ApiError::from_store(e, r, "kubernetes")),
                    }
                }
                Some((cur, kv)) => {
                    let mut new = cur.clone();
                    for f in ["subsets", "endpoints", "ports", "addressType"] {
                        if let Some(v) = obj.get(f) {
                            new[f] = v.clone();
                        }
                    }
                    if new != cur {
                        self.store
                            .update(&key, &storage::encode(&new), kv.mod_revision)
                            .await
                            .map_err(|e| ApiError::from_store(e, r, "kubernetes"))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A started API server, ready to serve.
#[derive(Debug)]
pub struct Server {
    api: Arc<Api>,
    listener: TcpListener,
    insecure: Option<TcpListener>,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    kubeconfig: PathBuf,
}

impl Server {
    /// Binds the ports, prepares certificates and tokens, initialises the
    /// allocators and the default objects.
    pub async fn start(cfg: Config, store: Arc<dyn Store>) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| ServerError::Config(format!("{}: {e}", cfg.data_dir.display())))?;
        let listener = TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let insecure = match cfg.insecure_port {
            Some(p) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], p));
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServerError::Bind { addr, source })?,
                )
            }
            None => None,
        };
        let mut cfg = cfg;
        cfg.bind = local;
        let services = services::ServiceRegistry::new(&cfg.service_cidr, &cfg.node_port_range)
            .map_err(|e| ServerError::Config(format!("service ranges: {e}")))?;
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", cfg.cluster_domain),
            services.first_ip(),
            cfg.advertise_address.clone(),
        ];
        if !local.ip().is_unspecified() {
            sans.push(local.ip().to_string());
        }
        sans.extend(cfg.extra_sans.iter().cloned());
        sans.sort();
        sans.dedup();
        let pki = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(c), Some(k)) => tls::load_pki(c, k, None)?,
            _ => tls::ensure_pki(&cfg.data_dir.join("pki"), &sans)?,
        };
        let tls_cfg = tls::server_config(&pki)?;
        let token_path = cfg
            .token_file
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("tokens.csv"));
        let admin_token = tls::ensure_token_file(&token_path)?;
        let tokens_text = std::fs::read_to_string(&token_path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", token_path.display())))?;
        let tokens: HashMap<String, tls::User> = tls::parse_tokens(&tokens_text)
            .map_err(|e| ServerError::Config(format!("{}: {e}", token_path.display())))?
            .into_iter()
            .collect();
        let host = if local.ip().is_unspecified() {
            cfg.advertise_address.clone()
        } else {
            local.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let kubeconfig = tls::write_kubeconfig(
            &cfg.data_dir.join("kubeconfig"),
            &format!("https://{host}:{}", local.port()),
            &pki.ca_cert_pem,
            &admin_token,
        )?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let api = Arc::new(Api {
            store,
            services,
            shutdown: tokio::sync::watch::channel(false).0,
            watches: StdMutex::new(HashMap::new()),
            tokens,
            connector: StdMutex::new(None),
            pod_deadlines: tx,
            pod_deadline_rx: StdMutex::new(Some(rx)),
            cfg,
        });
        if let Some(t) = api.cfg.agent_token.clone() {
            api.set_connector(Arc::new(connect::AgentConnector::new(t)));
        }
        api.services
            .init(api.store.as_ref())
            .await
            .map_err(ServerError::Bootstrap)?;
        api.bootstrap().await.map_err(ServerError::Bootstrap)?;
        // Resume namespace cleanups interrupted by a restart.
        let ctx = api.internal_ctx(res("", "namespaces"), None, None);
        if let Ok(l) = handlers::list_objects(&ctx).await {
            for ns in l
                .items
                .iter()
                .filter(|n| n["status"]["phase"] == "Terminating")
            {
                api.namespace_deleted(storage::name_of(ns).to_string());
            }
        }
        tokio::spawn(api.clone().pod_reaper());
        Ok(Server {
            api,
            listener,
            insecure,
            tls: tls_cfg,
            kubeconfig,
        })
    }

    pub fn api(&self) -> Arc<Api> {
        self.api.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.api.cfg.bind
    }

    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Serves until `shutdown` completes, then ends watches and drains
    /// connections (for at most 10 seconds).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let api = self.api.clone();
        tokio::pin!(shutdown);
        let insecure = self.insecure;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a.map(|(s, p)| (s, p, true)),
                a = async {
                    match &insecure {
                        Some(l) => l.accept().await,
                        None => futures::future::pending().await,
                    }
                } => a.map(|(s, p)| (s, p, false)),
            };
            let (stream, peer, secure) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let api = api.clone();
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let api = api.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            entry(api, req.map(Body::new), secure, peer).await,
                        )
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if secure {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                } else {
                    let conn = builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            });
        }
        let _ = self.api.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
        Ok(())
    }
}

fn bearer(req: &Request<Body>) -> Option<&str> {
    let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Authentication, request timeout, then the handlers.
async fn entry(api: Arc<Api>, req: Request<Body>, secure: bool, _peer: SocketAddr) -> Response {
    let path = req.uri().path().to_string();
    let public = matches!(path.as_str(), "/healthz" | "/livez" | "/readyz");
    let user = if secure {
        match bearer(&req).and_then(|t| api.tokens.get(t)) {
            Some(u) => Some(u.name.clone()),
            None if public => None,
            None => return ApiError::unauthorized().into_response(),
        }
    } else {
        Some("insecure".to_string())
    };
    let streaming = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "watch=true" || p == "watch=1" || p == "follow=true")
    }) || path.ends_with("/exec")
        || path.ends_with("/attach")
        || path.ends_with("/portforward");
    let mut req = req;
    req.extensions_mut()
        .insert(RequestUser(user.unwrap_or_default()));
    if streaming {
        return handlers::handle(api, req).await;
    }
    let timeout = api.cfg.request_timeout;
    match tokio::time::timeout(timeout, handlers::handle(api, req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            504,
            "Timeout",
            format!("request did not complete within {}s", timeout.as_secs()),
        )
        .into_response(),
    }
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct RequestUser(pub String);

/// Unused-value guard so that `Value` stays imported for docs.
#[allow(dead_code)]
fn _assert_types(_: Value) {}

//! The svcnet binary: thin wiring of the library crates.

/// mimalloc: the API server allocates many short-lived JSON trees; glibc malloc spent ~20% of
/// its CPU there under load and fragmented badly (benchmark: crates/svcnet-apiserver/examples).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

mod up;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "svcnet",
    version,
    about = "Kubernetes Service networking, end to end"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Kubernetes-compatible API server.
    Apiserver(ApiserverArgs),
    #[command(flatten)]
    Lab(up::LabCommand),
    /// Run cluster DNS (Kubernetes DNS spec 1.1.0) from the API's Services and EndpointSlices.
    Dns(DnsArgs),
    /// Run the node agent: register the Node and run the pods bound to it.
    Agent(svcnet_agent::AgentArgs),
    /// Internal: enter a pod's namespaces or run a built-in image (started by the agent).
    #[command(hide = true)]
    Builtin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the node proxy (kube-proxy): Services and EndpointSlices → nftables, iptables or userspace rules.
    Proxy(ProxyArgs),
    /// Run the controllers (deployments, replicasets, scheduler, endpoints, LoadBalancer IPs, node lifecycle, GC).
    Controllers(svcnet_controllers::cli::ControllersArgs),
}

#[derive(Debug, clap::Args)]
struct ApiserverArgs {
    /// Directory for certificates, tokens, the admin kubeconfig and the embedded store.
    #[arg(long, default_value = "/var/lib/svcnet")]
    data_dir: PathBuf,
    /// Store: a directory path / file:///dir (embedded, the default: <data-dir>/store)
    /// or etcd://host:port[,host:port].
    #[arg(long)]
    store: Option<String>,
    /// HTTPS listen address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    bind_address: SocketAddr,
    /// Address advertised in the `kubernetes` Endpoints (defaults to the bind address,
    /// or 127.0.0.1 when binding to all addresses).
    #[arg(long)]
    advertise_address: Option<String>,
    /// Service ClusterIP ranges: one CIDR, or two of different IP families
    /// comma-separated for dual-stack Services, primary first (e.g.
    /// `10.96.0.0/16,fd00:10:96::/112`). The primary family is the default of
    /// single-stack Services and holds the `kubernetes` Service's IP.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cluster_ip_range: String,
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Also serve plain HTTP without authentication on 127.0.0.1:<port>.
    #[arg(long)]
    insecure_port: Option<u16>,
    /// Static token file (token,user,uid,"groups"); generated in the data dir when absent.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Extra names or IPs for the generated serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// File holding the bearer token presented to node agents for log,
    /// exec, attach and port-forward.
    #[arg(long)]
    agent_token_file: Option<PathBuf>,
}

/// Lifts the soft limit on open files to the hard one, as Go programs
/// (kube-proxy, kube-apiserver) do at start: the userspace proxy holds a
/// socket per listener and core, the API server one per connection and
/// watch, and the usual soft limit of 1,024 is far below either at scale.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "could not raise the open files limit");
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    raise_open_files_limit();
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Apiserver(a) => apiserver(a).await,
        Command::Lab(c) => up::run(c).await,
        Command::Dns(a) => dns(a).await,
        Command::Agent(a) => agent(a).await,
        Command::Builtin { args } => std::process::exit(svcnet_agent::builtin_main(args).await),
        Command::Proxy(a) => proxy(a).await,
        Command::Controllers(a) => controllers(a).await,
    }
}

async fn apiserver(a: ApiserverArgs) -> anyhow::Result<()> {
    let store_url = a
        .store
        .clone()
        .unwrap_or_else(|| a.data_dir.join("store").display().to_string());
    let store = svcnet_store::open(&store_url)
        .await
        .with_context(|| format!("opening the store {store_url}"))?;
    let mut cfg = svcnet_apiserver::Config::new(&a.data_dir);
    cfg.bind = a.bind_address;
    cfg.advertise_address = a.advertise_address.unwrap_or_else(|| {
        if a.bind_address.ip().is_unspecified() {
            "127.0.0.1".into()
        } else {
            a.bind_address.ip().to_string()
        }
    });
    cfg.service_cidr = a.service_cluster_ip_range;
    cfg.node_port_range = a.service_node_port_range;
    cfg.insecure_port = a.insecure_port;
    cfg.token_file = a.token_auth_file;
    cfg.tls_cert_file = a.tls_cert_file;
    cfg.tls_key_file = a.tls_private_key_file;
    cfg.extra_sans = a.tls_san;
    if let Some(p) = &a.agent_token_file {
        let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        cfg.agent_token = Some(t.trim().to_string());
    }
    let server = svcnet_apiserver::Server::start(cfg, store)
        .await
        .context("starting the API server")?;
    eprintln!(
        "svcnet apiserver listening on https://{}\n  export KUBECONFIG={}",
        server.local_addr(),
        server.kubeconfig().display()
    );
    server.serve(shutdown_signal()).await?;
    Ok(())
}

#[derive(Debug, clap::Args)]
struct DnsArgs {
    /// Kubeconfig of the API server (default: in-cluster, $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// UDP and TCP listen address.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Upstream resolvers for names outside the zone: IP or IP:port, comma-separated
    /// (default: the nameservers of --resolv-conf).
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<String>,
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: String,
    /// HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9153")]
    metrics_listen: SocketAddr,
}

async fn dns(a: DnsArgs) -> anyhow::Result<()> {
    use svcnet_dns::upstream;
    let mut ups = if a.upstream.is_empty() {
        upstream::from_resolv_conf(&a.resolv_conf)?
    } else {
        a.upstream
            .iter()
            .map(|u| upstream::parse_upstream(u))
            .collect::<Result<Vec<_>, _>>()?
    };
    // Forwarding to ourselves would loop.
    ups.retain(|u| {
        !(u.port() == a.listen.port()
            && (u.ip() == a.listen.ip() || a.listen.ip().is_unspecified()))
    });
    if ups.is_empty() {
        tracing::warn!(
            "no upstream resolvers: names outside {} get SERVFAIL",
            a.cluster_domain
        );
    }
    let client = svcnet_dns::client(a.kubeconfig.as_deref()).await?;
    let mut cfg = svcnet_dns::Config::new(a.listen, ups);
    cfg.cluster_domain = a.cluster_domain;
    cfg.metrics_listen = Some(a.metrics_listen);
    svcnet_dns::run(
        cfg,
        client,
        |b| {
            eprintln!(
                "svcnet dns listening on {} (udp, tcp), metrics on {:?}",
                b.dns, b.metrics
            )
        },
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// Kubeconfig of the API server (default: in-cluster, $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long, alias = "node-name")]
    hostname_override: Option<String>,
    /// auto, nftables, iptables or userspace.
    #[arg(long)]
    proxy_mode: Option<String>,
    /// KubeProxyConfiguration YAML file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pod CIDR: ClusterIP traffic from outside it is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// CIDRs NodePorts listen on, comma-separated (default: every node address).
    #[arg(long, value_delimiter = ',')]
    node_port_addresses: Option<Vec<String>>,
    #[arg(long)]
    masquerade_all: bool,
    /// Go-style duration, e.g. 1s.
    #[arg(long)]
    min_sync_period: Option<String>,
    /// Go-style duration, e.g. 30s.
    #[arg(long)]
    sync_period: Option<String>,
    /// ip:port for /metrics ("0" disables).
    #[arg(long)]
    metrics_bind_address: Option<String>,
    /// ip:port for /healthz ("0" disables).
    #[arg(long)]
    healthz_bind_address: Option<String>,
    /// TCP congestion control of the userspace proxy's sockets (default cubic; "" keeps the system's).
    #[arg(long)]
    userspace_congestion_control: Option<String>,
}

async fn proxy(a: ProxyArgs) -> anyhow::Result<()> {
    use svcnet_proxy::{config, proxy};
    let text = match &a.config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let path = a
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let node = a.hostname_override.clone().or_else(|| nix_hostname().ok());
    let o = config::Overrides {
        mode: a.proxy_mode,
        node_name: node,
        cluster_cidr: a.cluster_cidr,
        node_port_addresses: a.node_port_addresses,
        masquerade_all: a.masquerade_all.then_some(true),
        min_sync_period: a.min_sync_period,
        sync_period: a.sync_period,
        metrics_bind: a.metrics_bind_address,
        healthz_bind: a.healthz_bind_address,
        userspace_congestion_control: a.userspace_congestion_control,
    };
    let cfg = config::resolve(text.as_deref().map(|t| (path.as_str(), t)), &o)?;
    let client = proxy::client(a.kubeconfig.as_deref()).await?;
    let c = cfg.clone();
    let worker = proxy::Worker::spawn(None, move |h| proxy::make_backend(&c, h))?;
    eprintln!(
        "svcnet proxy on node {} in {} mode",
        cfg.node_name,
        worker.mode()
    );
    proxy::run(client, cfg, worker, shutdown_signal()).await?;
    Ok(())
}

fn nix_hostname() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_string())
}

async fn agent(a: svcnet_agent::AgentArgs) -> anyhow::Result<()> {
    svcnet_agent::run(a, shutdown_signal())
        .await
        .context("running the node agent")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return futures_pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn futures_pending() {
    std::future::pending::<()>().await
}

async fn controllers(a: svcnet_controllers::cli::ControllersArgs) -> anyhow::Result<()> {
    let identity = svcnet_controllers::cli::identity();
    let cfg = a.config(&identity)?;
    let client = svcnet_controllers::cli::client(a.kubeconfig.as_deref()).await?;
    eprintln!(
        "svcnet controllers as {identity} (leader election {}, LoadBalancer pool {})",
        if cfg.leader.is_some() { "on" } else { "off" },
        if cfg.lb_pool.is_some() {
            a.lb_pool_file
                .as_ref()
                .map_or(a.lb_pool.clone(), |p| p.display().to_string())
        } else {
            "none".into()
        }
    );
    svcnet_controllers::Controllers::new(client, cfg)
        .run_until(shutdown_signal())
        .await
        .context("controllers")
}

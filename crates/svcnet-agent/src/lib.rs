//! svcnet node agent: registers its Node, runs the pods bound to it as processes in their own namespaces.

pub mod agent;
pub mod builtins;
pub mod container;
pub mod helper;
pub mod ipam;
pub mod logs;
pub mod net;
mod node;
mod pod;
pub mod podfiles;
pub mod probe;
pub mod runtime;
mod runtime_impl;
pub mod status;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use agent::{Agent, AgentError, Config};
pub use runtime::{PodRef, PodRuntime};

/// `svcnet agent` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Kubeconfig for the API server (default: in-cluster / $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub node_name: String,
    /// The node's address (its InternalIP).
    #[arg(long)]
    pub node_ip: Ipv4Addr,
    /// This node's pod CIDR, e.g. 10.244.1.0/24; the pod bridge gets its first address.
    #[arg(long)]
    pub pod_cidr: String,
    #[arg(long, value_delimiter = ',', default_value = "10.96.0.10")]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Logs, pod files and allocator state.
    #[arg(long, default_value = "/var/lib/svcnet/agent")]
    pub root_dir: PathBuf,
    /// Address of the streaming server (exec, port-forward, logs); its port is the node's
    /// kubelet endpoint.
    #[arg(long, default_value = "0.0.0.0:10250")]
    pub streaming_listen: std::net::SocketAddr,
    /// File with the bearer token the API server presents to the streaming
    /// server. Without it the streaming server is not started.
    #[arg(long)]
    pub streaming_token_file: Option<PathBuf>,
    /// The pod bridge in the node's namespace.
    #[arg(long, default_value = "svcpods0")]
    pub bridge: String,
}

/// Errors of turning flags into a running agent.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cidr(#[from] ipam::IpamError),
    #[error(transparent)]
    Client(#[from] svcnet_client::ClientError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("streaming server on {addr}: {source}")]
    Streaming {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl AgentArgs {
    /// The agent configuration these flags describe.
    pub fn config(&self) -> Result<Config, RunError> {
        let cidr = ipam::Cidr::parse(&self.pod_cidr)?;
        let mut cfg = Config::new(&self.node_name, self.node_ip, cidr, self.root_dir.clone());
        cfg.cluster_dns = self.cluster_dns.clone();
        cfg.cluster_domain = self.cluster_domain.clone();
        cfg.streaming_port = self.streaming_listen.port();
        cfg.bridge = self.bridge.clone();
        Ok(cfg)
    }

    /// A client from `--kubeconfig` or the environment.
    pub async fn client(&self) -> Result<kube::Client, RunError> {
        Ok(svcnet_client::client(self.kubeconfig.as_deref()).await?)
    }
}

/// Runs the agent from flags until `shutdown`, with the streaming server
/// (exec, attach, port-forward, logs) on `--streaming-listen` when a token
/// file is given.
pub async fn run(
    args: AgentArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let cfg = args.config()?;
    let client = args.client().await?;
    let agent = Agent::new(cfg, client)?;
    if let Some(path) = &args.streaming_token_file {
        let addr = args.streaming_listen;
        let token = std::fs::read_to_string(path)
            .map_err(|source| RunError::Streaming { addr, source })?
            .trim()
            .to_string();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Streaming { addr, source })?;
        let runtime = agent.runtime();
        tokio::spawn(async move {
            if let Err(e) = svcnet_streaming::serve(listener, runtime, token).await {
                tracing::error!(error = %e, "streaming server stopped");
            }
        });
    }
    agent.run(shutdown).await?;
    Ok(())
}

/// `svcnet builtin ...`: returns the exit code.
pub async fn builtin_main(args: Vec<String>) -> i32 {
    helper::main(args).await
}

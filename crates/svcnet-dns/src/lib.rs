//! svcnet-dns: cluster DNS (Kubernetes DNS-based service discovery 1.1.0) over UDP and TCP.
//!
//! `answer` decides (sans IO) from an immutable `index::Index`; `watch` keeps the index
//! current from the API; `server` owns the sockets; `forward` asks upstream resolvers.

pub mod answer;
mod batch;
pub mod convert;
pub mod forward;
pub mod index;
pub mod metrics;
pub mod server;
pub mod upstream;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use server::{Config, Server, ServerError};

/// A running server's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub dns: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Binds, reports the bound addresses through `on_bound`, then serves cluster DNS from the API
/// until `shutdown` completes.
pub async fn run(
    cfg: Config,
    client: kube::Client,
    on_bound: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let shared = index::Shared::new();
    let server = Server::bind(&cfg, shared.clone()).await?;
    on_bound(Bound {
        dns: server.dns_addr(),
        metrics: server.metrics_addr(),
    });
    let watch = tokio::spawn(watch::run(client, shared));
    server.serve(shutdown).await;
    watch.abort();
    Ok(())
}

pub use svcnet_client::ClientError;

/// An API client from a kubeconfig file, or inferred (in-cluster, `$KUBECONFIG`, `~/.kube/config`).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ClientError> {
    svcnet_client::client(kubeconfig).await
}

/// Convenience for callers that hold the shared index themselves (tests, benchmarks, `up`).
pub fn new_shared() -> Arc<index::Shared> {
    index::Shared::new()
}

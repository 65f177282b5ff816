//! Kubelet-like streaming server of the svcnet node agent.
//!
//! Serves `exec`, `attach`, `portForward` and `containerLogs` for the pods of
//! one node, with the protocols kubectl speaks: WebSocket channels
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`), SPDY/3.1 port-forward tunnelled
//! in WebSocket (`SPDY/3.1+portforward.k8s.io`), and the SPDY/3.1 upgrade
//! fallback. The API server relays kubectl's requests here unchanged.
//!
//! **Architecture invariant:** this crate knows nothing about the API or the
//! store; pods are reached only through [`PodRuntime`].

pub mod portforward;
pub mod remotecommand;
pub mod runtime;
pub mod server;
pub mod session;
pub mod spdy;

pub use remotecommand::ExecRequest;
pub use runtime::{
    ExecSession, ExitStatus, LogOptions, PodRef, PodRuntime, Reader, RuntimeError, TerminalResizer,
    Writer,
};
pub use server::{ServeError, serve};

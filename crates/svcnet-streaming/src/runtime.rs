//! The pod runtime interface that the streaming server (exec, attach, port-forward, logs) calls; the node agent implements it.
//!
//! Shape as first written by the agent in `svcnet-agent/src/runtime.rs`, moved here so
//! that svcnet-streaming does not depend on the agent. The streaming server parses
//! kubelet-style URLs (`/exec/{namespace}/{pod}/{container}`, `/attach/...`,
//! `/portForward/{namespace}/{pod}`, `/containerLogs/{namespace}/{pod}/{container}`) into
//! a [`PodRef`] and calls the methods below. Everything here is already inside the pod:
//! processes run in the pod's namespaces with its environment; port-forward sockets
//! connect from inside the pod's network namespace to `127.0.0.1:<port>`, as kubelet does.

use std::pin::Pin;
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite};

/// Which pod (and optionally which exact incarnation, by uid) a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// When set, the pod must have this uid (kubelet URLs may carry it).
    pub uid: Option<String>,
}

/// Errors a runtime call reports; the streaming server turns them into HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// 404: the pod is not running on this node.
    #[error("pod {namespace}/{name} not found on this node")]
    PodNotFound { namespace: String, name: String },
    /// 400 in upstream: the container name is not in the pod.
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    /// 400: the container exists but has no running process (exec/attach) or no logs yet.
    #[error("container {container} in pod {pod} is not running")]
    ContainerNotRunning { pod: String, container: String },
    /// `previous=true` logs asked for a container that never restarted.
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPreviousLogs { pod: String, container: String },
    /// Bad request parameters (empty command, port 0, ...).
    #[error("{0}")]
    BadRequest(String),
    /// Anything the OS refused (namespace entry, spawn, connect).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// The HTTP status code the error maps to.
    pub fn http_code(&self) -> u16 {
        match self {
            RuntimeError::PodNotFound { .. } => 404,
            RuntimeError::Io { .. } => 500,
            _ => 400,
        }
    }
}

/// Result alias for [`PodRuntime`] calls.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Options of a container log request, as in `kubectl logs` / the `pods/log` subresource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
    /// Only the last N lines (before following).
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this time (`sinceSeconds` is converted by the caller).
    pub since_time: Option<SystemTime>,
    /// Prefix each line with its RFC 3339 timestamp and a space.
    pub timestamps: bool,
    /// The logs of the previous (terminated) instance of the container.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// Exit code as kubelet reports it (128 + signal for signals).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Boxed async byte source.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// Boxed async byte sink.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Resizes the terminal of a tty exec session (width and height in characters).
pub trait TerminalResizer: Send + Sync + std::fmt::Debug {
    fn resize(&self, width: u16, height: u16) -> std::io::Result<()>;
}

/// A process started by [`PodRuntime::exec`]. With `tty`, `stdout` carries the terminal
/// output (stdout and stderr merged) and `stderr` is `None`. Dropping the session before
/// `wait` resolves should stop the process: the client went away.
pub struct ExecSession {
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    pub resize: Option<Box<dyn TerminalResizer>>,
    /// Resolves when the process exits.
    pub wait: Pin<Box<dyn std::future::Future<Output = std::io::Result<ExitStatus>> + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.resize.is_some())
            .finish()
    }
}

/// What the streaming server needs from the node agent.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + std::fmt::Debug {
    /// Starts `command` (argv, looked up in PATH) in the container's namespaces, with the
    /// container's environment and working directory. `stdin` false closes the process' stdin.
    /// `container` None picks the pod's first container, as kubectl's default.
    async fn exec(
        &self,
        pod: &PodRef,
        container: Option<&str>,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession>;

    /// Attaches to the container's main process (`pods/attach`). Runtimes that keep no
    /// attachable stdio keep this default, which kubectl shows as the error.
    async fn attach(
        &self,
        pod: &PodRef,
        container: Option<&str>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession> {
        let _ = (stdin, tty);
        Err(RuntimeError::BadRequest(format!(
            "attach to container {} in pod {}/{} is not supported by this node",
            container.unwrap_or(""),
            pod.namespace,
            pod.name
        )))
    }

    /// A TCP connection to `127.0.0.1:port` made from inside the pod's network namespace.
    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<tokio::net::TcpStream>;

    /// The container's log (the raw bytes it wrote, stdout and stderr interleaved), honouring
    /// `opts`. With `follow`, the stream ends when the container instance exits.
    async fn logs(&self, pod: &PodRef, container: Option<&str>, opts: LogOptions)
    -> Result<Reader>;
}

//! The pod runtime the streaming server drives; the node agent implements it.

use std::fmt::Debug;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A byte source owned by the server.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A byte sink owned by the server.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A two-way byte stream, e.g. a TCP connection inside the pod's network namespace.
/// `poll_shutdown` must half-close (FIN) the writing direction only.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Which pod a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `pods/exec` (with a command) or `pods/attach` (command empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub pod: PodRef,
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Terminal size as kubectl sends it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A started exec/attach session.
///
/// With `tty`, `stdout` carries the terminal output and `stderr` is None.
/// Dropping `wait` before it completes must stop the process (the client went away).
pub struct Process {
    pub stdin: Option<BoxWrite>,
    pub stdout: Option<BoxRead>,
    pub stderr: Option<BoxRead>,
    /// Terminal resizes, when `tty` was asked for.
    pub resize: Option<mpsc::UnboundedSender<TerminalSize>>,
    /// Resolves to the exit code.
    pub wait: BoxFuture<'static, Result<i32, RuntimeError>>,
}

impl Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// `pods/log` options (query parameters of PodLogOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub since_seconds: Option<i64>,
    pub timestamps: bool,
    pub previous: bool,
}

/// What a runtime reports; the text reaches kubectl users.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("pod {0} not found on this node")]
    PodNotFound(PodRef),
    #[error("container {container} not found in pod {pod}")]
    ContainerNotFound { pod: PodRef, container: String },
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Exec, attach, port-forward and logs for the pods on this node.
pub trait PodRuntime: Send + Sync + Debug {
    /// Starts `req.command` inside the container's namespaces.
    fn exec(&self, req: ExecRequest) -> BoxFuture<'_, Result<Process, RuntimeError>>;
    /// Attaches to the container's main process (`req.command` is empty).
    fn attach(&self, req: ExecRequest) -> BoxFuture<'_, Result<Process, RuntimeError>>;
    /// Connects to TCP `port` inside the pod's network namespace.
    fn port_forward(&self, pod: PodRef, port: u16) -> BoxFuture<'_, Result<Box<dyn Duplex>, RuntimeError>>;
    /// The container's log; with `follow` the reader stays open while the container runs.
    fn logs(&self, pod: PodRef, container: String, opts: LogOptions) -> BoxFuture<'_, Result<BoxRead, RuntimeError>>;
}

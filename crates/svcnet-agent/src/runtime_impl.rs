//! The agent's implementation of [`PodRuntime`]: exec, port-forward and logs inside its pods.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::agent::{Agent, Inner};
use crate::pod::{Instance, PodShared};
use crate::probe::Outcome;
use crate::runtime::{
    ExecSession, ExitStatus, LogOptions, PodRef, PodRuntime, Reader, Result, RuntimeError,
};

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

fn container_index(s: &PodShared, container: Option<&str>) -> Result<usize> {
    match container {
        None => {
            if s.container_names.is_empty() {
                Err(RuntimeError::ContainerNotFound {
                    pod: s.name.clone(),
                    container: String::new(),
                })
            } else {
                Ok(0)
            }
        }
        Some(c) => s
            .container_names
            .iter()
            .position(|n| n == c)
            .ok_or_else(|| RuntimeError::ContainerNotFound {
                pod: s.name.clone(),
                container: c.into(),
            }),
    }
}

fn exit_of(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(sg)) => ExitStatus::Signal(sg),
        _ => ExitStatus::Code(-1),
    }
}

/// The current instance of container `idx`, which must have started.
fn started_instance(s: &PodShared, idx: usize) -> Result<Instance> {
    let inst = s
        .instances
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(idx)
        .cloned()
        .unwrap_or_default();
    if !inst.started {
        return Err(RuntimeError::ContainerNotRunning {
            pod: s.name.clone(),
            container: s.container_names.get(idx).cloned().unwrap_or_default(),
        });
    }
    Ok(inst)
}

/// A command for `argv` entering the pod, with the container's environment.
fn pod_command(
    inner: &Inner,
    s: &PodShared,
    idx: usize,
    argv: Vec<String>,
    tty: bool,
) -> Result<tokio::process::Command> {
    let inst = started_instance(s, idx)?;
    let run = s.run_args(argv, inst.workdir.clone(), tty);
    let mut cmd = tokio::process::Command::new(&inner.cfg.helper[0]);
    cmd.args(&inner.cfg.helper[1..])
        .args(run.to_args())
        .env_clear()
        .envs(inst.env.iter().cloned())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs an exec probe: success on exit 0 within the timeout; the failure message is the output.
pub(crate) async fn exec_probe(
    inner: &Inner,
    s: &PodShared,
    idx: usize,
    cmd: Vec<String>,
    timeout: Duration,
) -> Outcome {
    if cmd.is_empty() {
        return Outcome::Failure("exec probe has no command".into());
    }
    let mut c = match pod_command(inner, s, idx, cmd.clone(), false) {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(e.to_string()),
    };
    c.stdin(std::process::Stdio::null());
    match tokio::time::timeout(timeout, c.output()).await {
        Ok(Ok(o)) if o.status.success() => Outcome::Success,
        Ok(Ok(o)) => {
            let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&o.stderr));
            Outcome::Failure(out.trim_end().to_string())
        }
        Ok(Err(e)) => Outcome::Failure(e.to_string()),
        Err(_) => Outcome::Failure(format!("command {cmd:?} timed out")),
    }
}

impl Agent {
    fn lookup(&self, pod: &PodRef) -> Result<Arc<PodShared>> {
        self.inner
            .find(&pod.namespace, &pod.name, pod.uid.as_deref())
            .ok_or_else(|| RuntimeError::PodNotFound {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            })
    }
}

#[async_trait::async_trait]
impl PodRuntime for Agent {
    async fn exec(
        &self,
        pod: &PodRef,
        container: Option<&str>,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecSession> {
        if command.is_empty() {
            return Err(RuntimeError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        let s = self.lookup(pod)?;
        let idx = container_index(&s, container)?;
        let mut cmd = pod_command(&self.inner, &s, idx, command, tty)?;
        if tty {
            let pty = nix::pty::openpty(None, None).map_err(|e| io("openpty")(e.into()))?;
            let slave = std::fs::File::from(pty.slave);
            cmd.stdin(slave.try_clone().map_err(io("pty"))?)
                .stdout(slave.try_clone().map_err(io("pty"))?)
                .stderr(slave);
            let child = cmd.spawn().map_err(io("starting the exec process"))?;
            let master = std::fs::File::from(pty.master);
            let reader = tokio::fs::File::from_std(master.try_clone().map_err(io("pty"))?);
            let writer = tokio::fs::File::from_std(master);
            return Ok(ExecSession {
                stdin: stdin.then(|| Box::pin(writer) as crate::runtime::Writer),
                stdout: Some(Box::pin(reader)),
                stderr: None,
                // nix has no safe TIOCSWINSZ; the terminal keeps its initial size.
                resize: None,
                wait: Box::pin(async move {
                    let mut child = child;
                    child.wait().await.map(exit_of)
                }),
            });
        }
        cmd.stdin(if stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(io("starting the exec process"))?;
        let stdin_w = child
            .stdin
            .take()
            .map(|w| Box::pin(w) as crate::runtime::Writer);
        let stdout = child.stdout.take().map(|r| Box::pin(r) as Reader);
        let stderr = child.stderr.take().map(|r| Box::pin(r) as Reader);
        Ok(ExecSession {
            stdin: stdin_w,
            stdout,
            stderr,
            resize: None,
            wait: Box::pin(async move { child.wait().await.map(exit_of) }),
        })
    }

    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<tokio::net::TcpStream> {
        if port == 0 {
            return Err(RuntimeError::BadRequest("invalid port 0".into()));
        }
        let s = self.lookup(pod)?;
        let ns = s.net.netns_path();
        // A socket keeps the namespace it was created in: connect from a short-lived thread
        // that joined the pod's network namespace.
        let stream =
            tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpStream> {
                let f = std::fs::File::open(&ns)?;
                std::thread::scope(|sc| {
                    sc.spawn(|| {
                        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                        let st = std::net::TcpStream::connect_timeout(
                            &([127, 0, 0, 1], port).into(),
                            Duration::from_secs(5),
                        )?;
                        st.set_nonblocking(true)?;
                        Ok(st)
                    })
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("port-forward thread panicked")))
                })
            })
            .await
            .map_err(|e| io("port-forward")(std::io::Error::other(e)))?
            .map_err(io(format!("connecting to port {port} in pod {}", s.name)))?;
        tokio::net::TcpStream::from_std(stream).map_err(io("port-forward socket"))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: Option<&str>,
        opts: LogOptions,
    ) -> Result<Reader> {
        let s = self.lookup(pod)?;
        let idx = container_index(&s, container)?;
        let name = s.container_names[idx].clone();
        let inst = started_instance(&s, idx)?;
        let number = if opts.previous {
            if inst.number == 0 {
                return Err(RuntimeError::NoPreviousLogs {
                    pod: s.name.clone(),
                    container: name,
                });
            }
            inst.number - 1
        } else {
            inst.number
        };
        let path = crate::logs::log_path(&s.log_dir(), &name, number);
        let records = crate::logs::read_records(&path)
            .map_err(|e| io("reading logs")(std::io::Error::other(e)))?;
        let head = crate::logs::render(&records, &opts);
        let running = inst.pid.is_some();
        if !opts.follow || opts.previous || !running {
            return Ok(Box::pin(std::io::Cursor::new(head)));
        }
        // Follow: send what exists, then poll for new records until this instance ends.
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut end = s.instance_end.subscribe();
        let seen = records.len();
        tokio::spawn(async move {
            if tx.write_all(&head).await.is_err() {
                return;
            }
            let mut seen = seen;
            let mut last_round = false;
            loop {
                let recs = crate::logs::read_records(&path).unwrap_or_default();
                // Rotation shrinks the list; start over from its beginning then.
                if recs.len() < seen {
                    seen = 0;
                }
                for r in &recs[seen..] {
                    if tx
                        .write_all(&crate::logs::render_one(r, opts.timestamps))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                seen = recs.len();
                if last_round {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = end.changed() => last_round = true,
                }
            }
        });
        Ok(Box::pin(rx))
    }
}

//! One pod's lifecycle on the node: sandbox (netns, IP, resolv.conf, hosts), containers with
//! probes and restarts, status reports, graceful termination and deletion confirmation.

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, watch};

use crate::agent::{Config, Inner};
use crate::container::{DEFAULT_PATH, Entrypoint, EnvContext, StartError};
use crate::helper::RunArgs;
use crate::logs::{LogWriter, Stream};
use crate::net::PodNet;
use crate::probe::{Outcome, Timing, Verdict};
use crate::status::{State, Tracked};

/// How the pod is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Run,
    /// Graceful deletion: SIGTERM now, SIGKILL at the deadline.
    Graceful(Instant),
    /// The pod object is gone: kill at once.
    Force,
}

/// What exec and logs need to know about a container instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Instance {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) workdir: Option<String>,
    pub(crate) pid: Option<i32>,
    /// restartCount of the current (or last) instance; its log file number.
    pub(crate) number: u32,
    pub(crate) started: bool,
}

/// State shared between a pod's worker, its container tasks and the runtime.
#[derive(Debug)]
pub(crate) struct PodShared {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) hostname: String,
    pub(crate) net: PodNet,
    pub(crate) dir: PathBuf,
    pub(crate) container_names: Vec<String>,
    pub(crate) ip: Mutex<Option<Ipv4Addr>>,
    pub(crate) tracked: Mutex<Vec<Tracked>>,
    pub(crate) instances: Mutex<Vec<Instance>>,
    /// Bumped whenever an instance ends (log followers stop there).
    pub(crate) instance_end: watch::Sender<u64>,
    stop: watch::Sender<Stop>,
    finished: watch::Sender<bool>,
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PodShared {
    pub(crate) fn new(cfg: &Config, pod: &Pod) -> PodShared {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
        let tracked = spec
            .containers
            .iter()
            .map(|c| Tracked::new(&c.name, c.image.as_deref().unwrap_or("")))
            .collect();
        PodShared {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            hostname: crate::podfiles::pod_hostname(pod),
            net: PodNet::for_uid(&uid),
            dir: cfg.root_dir.join("pods").join(&uid),
            uid,
            instances: Mutex::new(vec![Instance::default(); names.len()]),
            container_names: names,
            ip: Mutex::new(None),
            tracked: Mutex::new(tracked),
            instance_end: watch::channel(0).0,
            stop: watch::channel(Stop::Run).0,
            finished: watch::channel(false).0,
            changed: Notify::new(),
        }
    }

    pub(crate) fn force_stop(&self) {
        self.stop.send_replace(Stop::Force);
    }

    pub(crate) async fn wait_finished(&self) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut Tracked)) {
        if let Some(t) = lock(&self.tracked).get_mut(idx) {
            f(t);
        }
        self.changed.notify_one();
    }

    /// The helper invocation that enters this pod.
    pub(crate) fn run_args(
        &self,
        argv: Vec<String>,
        workdir: Option<String>,
        tty: bool,
    ) -> RunArgs {
        RunArgs {
            netns: Some(self.net.netns_path()),
            resolv: Some(self.dir.join("resolv.conf")),
            hosts: Some(self.dir.join("hosts")),
            hostname: Some(self.hostname.clone()),
            workdir: workdir.map(PathBuf::from),
            tty,
            argv,
        }
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

fn stopping(s: Stop) -> bool {
    s != Stop::Run
}

/// Waits until the pod is asked to stop (or `d` passes); true when stopping.
async fn sleep_or_stop(rx: &mut watch::Receiver<Stop>, d: Duration) -> bool {
    if stopping(*rx.borrow()) {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = rx.wait_for(|s| stopping(*s)) => return true,
    }
    stopping(*rx.borrow())
}

/// The pod worker.
pub(crate) async fn run(
    inner: Arc<Inner>,
    shared: Arc<PodShared>,
    mut pod_rx: watch::Receiver<Pod>,
) {
    let first = pod_rx.borrow().clone();
    let start_time = first
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let finished_before = matches!(
        first.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let mut stop_rx = shared.stop.subscribe();
    let reporter = {
        let (inner, shared, pod_rx) = (inner.clone(), shared.clone(), pod_rx.clone());
        tokio::spawn(report_loop(inner, shared, pod_rx, start_time))
    };
    if !finished_before && !first_deleting(&first) {
        if sandbox(&inner, &shared, &first, &mut stop_rx).await {
            let service_env = match inner.services_for(&shared.namespace).await {
                Ok(svcs) => {
                    let refs: Vec<&k8s_openapi::api::core::v1::Service> = svcs.iter().collect();
                    let links = first
                        .spec
                        .as_ref()
                        .and_then(|s| s.enable_service_links)
                        .unwrap_or(true);
                    svcnet_core::envvars::service_env_vars(&refs, &shared.namespace, links)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing services for pod env");
                    Vec::new()
                }
            };
            let service_env = Arc::new(service_env);
            let mut tasks = Vec::new();
            for idx in 0..shared.container_names.len() {
                tasks.push(tokio::spawn(container_loop(
                    inner.clone(),
                    shared.clone(),
                    idx,
                    pod_rx.clone(),
                    service_env.clone(),
                )));
            }
            // Deletion requests arrive as pod updates.
            let watcher = {
                let shared = shared.clone();
                let mut pod_rx = pod_rx.clone();
                tokio::spawn(async move {
                    loop {
                        let p = pod_rx.borrow_and_update().clone();
                        if let Some(deadline) = deletion_deadline(&p) {
                            shared.stop.send_if_modified(|s| {
                                if *s == Stop::Run {
                                    *s = Stop::Graceful(deadline);
                                    true
                                } else {
                                    false
                                }
                            });
                        }
                        if pod_rx.changed().await.is_err() {
                            return;
                        }
                    }
                })
            };
            for t in tasks {
                let _ = t.await;
            }
            watcher.abort();
        }
        crate::net::teardown(&shared.net).await;
    }
    // Containers are done (completed, or stopped for deletion).
    shared.changed.notify_one();
    loop {
        let p = pod_rx.borrow_and_update().clone();
        if first_deleting(&p) || *stop_rx.borrow() == Stop::Force {
            break;
        }
        tokio::select! {
            r = pod_rx.changed() => if r.is_err() { break },
            _ = stop_rx.changed() => {}
        }
    }
    // Let the final status go out before confirming.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reporter.abort();
    let last = pod_rx.borrow().clone();
    report(&inner, &shared, &last, start_time).await;
    if *stop_rx.borrow() != Stop::Force {
        inner
            .confirm_delete(&shared.namespace, &shared.name, &shared.uid)
            .await;
    }
    let _ = std::fs::remove_dir_all(&shared.dir);
    inner.forget(&shared.uid);
    shared.finished.send_replace(true);
}

fn first_deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn deletion_deadline(p: &Pod) -> Option<Instant> {
    p.metadata.deletion_timestamp.as_ref()?;
    let grace = p
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0) as u64;
    Some(Instant::now() + Duration::from_secs(grace))
}

/// Network namespace, IP and pod files; retried until it works or the pod stops.
async fn sandbox(
    inner: &Inner,
    shared: &PodShared,
    pod: &Pod,
    stop: &mut watch::Receiver<Stop>,
) -> bool {
    loop {
        match try_sandbox(inner, shared, pod).await {
            Ok(()) => return true,
            Err(message) => {
                tracing::warn!(pod = %shared.name, %message, "pod sandbox");
                for i in 0..shared.container_names.len() {
                    shared.update(i, |t| {
                        t.state = State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: Some(format!("failed to set up the pod sandbox: {message}")),
                        }
                    });
                }
                if sleep_or_stop(stop, Duration::from_secs(5)).await {
                    return false;
                }
            }
        }
    }
}

async fn try_sandbox(inner: &Inner, shared: &PodShared, pod: &Pod) -> Result<(), String> {
    let cfg = &inner.cfg;
    let ip = lock(&inner.ipam)
        .allocate(&shared.uid)
        .map_err(|e| e.to_string())?;
    crate::net::setup(&shared.net, &cfg.bridge, ip, cfg.pod_cidr)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&shared.dir).map_err(|e| e.to_string())?;
    let resolv = crate::podfiles::pod_resolv_conf(pod, &inner.dns).render();
    let hosts = crate::podfiles::pod_hosts_file(pod, &[ip.to_string()], &cfg.cluster_domain);
    std::fs::write(shared.dir.join("resolv.conf"), resolv).map_err(|e| e.to_string())?;
    std::fs::write(shared.dir.join("hosts"), hosts).map_err(|e| e.to_string())?;
    *lock(&shared.ip) = Some(ip);
    shared.changed.notify_one();
    Ok(())
}

/// A container's argv and environment.
type Prepared = (Vec<String>, Vec<(String, String)>);

/// What starting a container needs, or why it cannot start.
fn prepare(
    inner: &Inner,
    shared: &PodShared,
    pod: &Pod,
    c: &Container,
    service_env: &[k8s_openapi::api::core::v1::EnvVar],
    sources: &(crate::agent::DataByName, crate::agent::DataByName),
) -> Result<Prepared, StartError> {
    let ctx = EnvContext {
        pod_ips: lock(&shared.ip).iter().map(|i| i.to_string()).collect(),
        host_ips: vec![inner.cfg.node_ip.to_string()],
        node_name: inner.cfg.node_name.clone(),
        config_maps: sources.0.clone(),
        secrets: sources.1.clone(),
    };
    let mut env = crate::container::container_env(pod, c, service_env, &ctx)?;
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.insert(1, ("HOSTNAME".into(), shared.hostname.clone()));
    }
    let vars: std::collections::BTreeMap<String, String> = env.iter().cloned().collect();
    let ep = crate::container::entrypoint(c, &|s| crate::container::expand(s, &vars))?;
    let argv = match ep {
        Entrypoint::Builtin(args) => {
            let mut v = inner.cfg.helper.clone();
            v.extend(args);
            v
        }
        Entrypoint::Host(argv) => {
            let path = vars.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
            let wd = std::path::PathBuf::from(c.working_dir.clone().unwrap_or_else(|| "/".into()));
            if crate::container::look_path(&argv[0], path, &wd).is_none() {
                return Err(StartError {
                    reason: "RunContainerError",
                    message: format!(
                        "failed to start container process: exec: {:?}: executable file not found in $PATH",
                        argv[0]
                    ),
                });
            }
            argv
        }
    };
    Ok((argv, env))
}

/// Sends `sig` to the container's process group.
fn signal(pid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid), sig);
}

/// SIGTERM, then SIGKILL at `deadline`; returns once the process is gone.
async fn kill_gracefully(
    child: &mut tokio::process::Child,
    pid: i32,
    deadline: Instant,
) -> std::io::Result<std::process::ExitStatus> {
    signal(pid, Signal::SIGTERM);
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            signal(pid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

async fn container_loop(
    inner: Arc<Inner>,
    shared: Arc<PodShared>,
    idx: usize,
    pod_rx: watch::Receiver<Pod>,
    service_env: Arc<Vec<k8s_openapi::api::core::v1::EnvVar>>,
) {
    let mut stop_rx = shared.stop.subscribe();
    let mut crashes: u32 = 0;
    loop {
        if stopping(*stop_rx.borrow()) {
            break;
        }
        let pod = pod_rx.borrow().clone();
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(c) = spec.containers.get(idx).cloned() else {
            break;
        };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let sources = crate::agent::env_sources(&inner, &pod).await;
        let (argv, env) = match prepare(&inner, &shared, &pod, &c, &service_env, &sources) {
            Ok(v) => v,
            Err(e) => {
                shared.update(idx, |t| {
                    t.state = State::Waiting {
                        reason: e.reason.into(),
                        message: Some(e.message.clone()),
                    };
                });
                let delay = crate::status::backoff(crashes + 1);
                crashes += 1;
                if sleep_or_stop(&mut stop_rx, delay).await {
                    break;
                }
                continue;
            }
        };
        let number = lock(&shared.tracked)
            .get(idx)
            .map_or(0, |t| t.restart_count as u32);
        let run = shared.run_args(argv, c.working_dir.clone(), false);
        let mut cmd = tokio::process::Command::new(&inner.cfg.helper[0]);
        cmd.args(&inner.cfg.helper[1..])
            .args(run.to_args())
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let started_at = Timestamp::now();
        let ran_from = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                shared.update(idx, |t| {
                    t.state = State::Waiting {
                        reason: "RunContainerError".into(),
                        message: Some(format!("failed to start the container helper: {e}")),
                    };
                });
                crashes += 1;
                if sleep_or_stop(&mut stop_rx, crate::status::backoff(crashes)).await {
                    break;
                }
                continue;
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        {
            let mut inst = lock(&shared.instances);
            if let Some(i) = inst.get_mut(idx) {
                *i = Instance {
                    env: env.clone(),
                    workdir: c.working_dir.clone(),
                    pid: Some(pid),
                    number,
                    started: true,
                };
            }
        }
        let has_startup = c.startup_probe.is_some();
        let has_readiness = c.readiness_probe.is_some();
        shared.update(idx, |t| {
            t.state = State::Running { started_at };
            t.started = !has_startup;
            t.ready = !has_startup && !has_readiness;
            t.container_id = Some(format!("svcnet://{}-{}-{number}", shared.uid, c.name));
        });
        // Logs.
        let log_path = crate::logs::log_path(&shared.log_dir(), &c.name, number);
        let writer = LogWriter::open(log_path.clone(), inner.cfg.log_max_size)
            .ok()
            .map(|w| Arc::new(Mutex::new(w)));
        let mut pumps = Vec::new();
        for (stream, reader) in [
            (
                Stream::Stdout,
                child
                    .stdout
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                Stream::Stderr,
                child
                    .stderr
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            if let Some(mut r) = reader {
                let w = writer.clone();
                pumps.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if let Some(w) = &w {
                            let _ = lock(w).write(stream, &buf[..n]);
                        }
                    }
                }));
            }
        }
        // Probes; a failed liveness or startup probe asks for a restart.
        let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<String>(1);
        let probes = tokio::spawn(probe_loop(
            inner.clone(),
            shared.clone(),
            idx,
            c.clone(),
            kill_tx,
        ));
        let grace =
            Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
        let mut killed_for: Option<String> = None;
        let status = tokio::select! {
            r = child.wait() => r,
            s = async { stop_rx.wait_for(|s| stopping(*s)).await.map(|g| *g) } => {
                let deadline = match s {
                    Ok(Stop::Graceful(d)) => d,
                    _ => Instant::now(),
                };
                kill_gracefully(&mut child, pid, deadline).await
            }
            Some(why) = kill_rx.recv() => {
                killed_for = Some(why);
                kill_gracefully(&mut child, pid, Instant::now() + grace).await
            }
        };
        probes.abort();
        // Whatever the process group left behind goes too.
        signal(pid, Signal::SIGKILL);
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        if let Some(w) = &writer {
            let _ = lock(w).finish();
        }
        if let Some(i) = lock(&shared.instances).get_mut(idx) {
            i.pid = None;
        }
        shared.instance_end.send_modify(|n| *n += 1);
        let (code, sig) = match &status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (c, None),
                (None, Some(sg)) => (128 + sg, Some(sg)),
                _ => (-1, None),
            },
            Err(_) => (-1, None),
        };
        let finished_at = Timestamp::now();
        let mut term = State::exited(code, sig, Some(started_at), finished_at);
        if code != 0
            && let State::Terminated { message, .. } = &mut term
        {
            *message = log_tail(&log_path);
        }
        if let Some(why) = &killed_for
            && let State::Terminated { message, .. } = &mut term
        {
            *message = Some(why.clone());
        }
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !restart || stopping(*stop_rx.borrow()) {
            shared.update(idx, |t| {
                t.state = term.clone();
                t.ready = false;
                t.started = false;
            });
            break;
        }
        // Running ten minutes resets the back-off, as kubelet's back-off expiry.
        if ran_from.elapsed() >= Duration::from_secs(600) {
            crashes = 0;
        }
        let delay = crate::status::backoff(crashes);
        crashes += 1;
        shared.update(idx, |t| {
            t.last = Some(term.clone());
            t.restart_count += 1;
            t.ready = false;
            t.started = false;
            t.state = if delay.is_zero() {
                State::creating()
            } else {
                State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        delay.as_secs(),
                        c.name,
                        shared.name,
                        shared.namespace,
                        shared.uid
                    )),
                }
            };
        });
        if sleep_or_stop(&mut stop_rx, delay).await {
            break;
        }
    }
}

/// The last bytes of a failed container's log, like `FallbackToLogsOnError` (so `kubectl
/// describe` shows why it failed).
fn log_tail(path: &std::path::Path) -> Option<String> {
    let recs = crate::logs::read_records(path).ok()?;
    let bytes: Vec<u8> = recs
        .iter()
        .rev()
        .take(10)
        .rev()
        .flat_map(|r| r.content.clone())
        .collect();
    let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
    let start = text.len().saturating_sub(2048);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    (!text.is_empty()).then(|| text[start..].to_string())
}

async fn run_probe(
    inner: &Inner,
    shared: &PodShared,
    idx: usize,
    c: &Container,
    p: &k8s_openapi::api::core::v1::Probe,
    t: &Timing,
) -> Outcome {
    let ip = lock(&shared.ip).map(|i| i.to_string()).unwrap_or_default();
    if let Some(h) = &p.http_get {
        let port = match crate::probe::resolve_port(&h.port, c) {
            Ok(p) => p,
            Err(m) => return Outcome::Failure(m),
        };
        let host = h.host.clone().filter(|s| !s.is_empty()).unwrap_or(ip);
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return crate::probe::http(
            &host,
            port,
            h.path.as_deref().unwrap_or("/"),
            &headers,
            t.timeout,
        )
        .await;
    }
    if let Some(s) = &p.tcp_socket {
        let port = match crate::probe::resolve_port(&s.port, c) {
            Ok(p) => p,
            Err(m) => return Outcome::Failure(m),
        };
        let host = s.host.clone().filter(|s| !s.is_empty()).unwrap_or(ip);
        return crate::probe::tcp(&host, port, t.timeout).await;
    }
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return crate::runtime_impl::exec_probe(inner, shared, idx, cmd, t.timeout).await;
    }
    Outcome::Failure("probe has no handler".into())
}

async fn probe_loop(
    inner: Arc<Inner>,
    shared: Arc<PodShared>,
    idx: usize,
    c: Container,
    kill: tokio::sync::mpsc::Sender<String>,
) {
    if let Some(p) = &c.startup_probe {
        let t = Timing::of(p);
        let mut v = Verdict::new(false);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            let out = run_probe(&inner, &shared, idx, &c, p, &t).await;
            let ok = out == Outcome::Success;
            if v.record(ok, &t) == Some(true) {
                break;
            }
            if !ok {
                failures += 1;
                if failures >= t.failure_threshold {
                    let msg = match out {
                        Outcome::Failure(m) => m,
                        Outcome::Success => String::new(),
                    };
                    let _ = kill.send(format!("Startup probe failed: {msg}")).await;
                    return;
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
    let has_readiness = c.readiness_probe.is_some();
    shared.update(idx, |tr| {
        tr.started = true;
        if !has_readiness {
            tr.ready = true;
        }
    });
    let readiness = async {
        let Some(p) = &c.readiness_probe else { return };
        let t = Timing::of(p);
        let mut v = Verdict::new(false);
        tokio::time::sleep(t.initial_delay).await;
        loop {
            let ok = run_probe(&inner, &shared, idx, &c, p, &t).await == Outcome::Success;
            if let Some(now) = v.record(ok, &t) {
                shared.update(idx, |tr| tr.ready = now);
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(p) = &c.liveness_probe else {
            return std::future::pending::<()>().await;
        };
        let t = Timing::of(p);
        let mut v = Verdict::new(true);
        tokio::time::sleep(t.initial_delay).await;
        loop {
            let out = run_probe(&inner, &shared, idx, &c, p, &t).await;
            if v.record(out == Outcome::Success, &t) == Some(false) {
                let msg = match out {
                    Outcome::Failure(m) => m,
                    Outcome::Success => String::new(),
                };
                let _ = kill.send(format!("Liveness probe failed: {msg}")).await;
                return;
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::join!(readiness, liveness);
}

/// Reports status on every change (coalesced) and every 10 s.
async fn report_loop(
    inner: Arc<Inner>,
    shared: Arc<PodShared>,
    pod_rx: watch::Receiver<Pod>,
    start: Timestamp,
) {
    loop {
        let pod = pod_rx.borrow().clone();
        report(&inner, &shared, &pod, start).await;
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        // Coalesce bursts (a container start changes several fields).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn report(inner: &Inner, shared: &PodShared, pod: &Pod, start: Timestamp) {
    let tracked = lock(&shared.tracked).clone();
    let ip = *lock(&shared.ip);
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let prev = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Timestamp::now();
    let conditions = crate::status::conditions(&tracked, ip.is_some(), &prev, now);
    let statuses: Vec<_> = tracked.iter().map(Tracked::to_k8s).collect();
    let node_ip = inner.cfg.node_ip.to_string();
    let mut status = json!({
        "phase": crate::status::phase(&tracked, &policy),
        "conditions": conditions,
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "startTime": start.to_string(),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    inner
        .patch_status(&shared.namespace, &shared.name, status)
        .await;
}

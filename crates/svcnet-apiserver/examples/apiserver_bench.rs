//! API server benchmark (not a test): list, create and watch latency and server RSS with many Services and Pods stored.
//!
//! `cargo run --release -p svcnet-apiserver --example apiserver_bench -- [flags]`
//!
//! The server runs in a child process (this example re-executed with
//! `--serve <dir>`, the same `Server::start` over an embedded store that
//! `svcnet apiserver` runs; or the real binary with `--server-binary
//! <path>`), so its resident memory can be read from `/proc`. Everything
//! goes through the real HTTPS API on loopback with kube-rs clients.
//!
//! Flags (defaults in brackets): `--services N` [10000], `--pods N` [50000],
//! `--namespaces N` [100], `--writers N` [100] concurrent creators,
//! `--creates N` [2000] timed creates per kind, `--watchers N` [100],
//! `--watch-events N` [200], `--populate-concurrency N` [64],
//! `--server-binary PATH`, `--client-nice N` [10].
//!
//! The load generator shares the machine's cores with the server. Once the
//! server runs, this process lowers its own scheduling priority to nice
//! `--client-nice` (the server keeps 0), so the server is not preempted by
//! its own clients as it would not be by clients on other machines;
//! `--client-nice 0` measures both at equal priority.
//!
//! Each create row also gives the CPU steal over its timed phase (from
//! /proc/stat): on a shared VM host, time taken by other guests lowers the
//! rate and raises the latencies of the same build several-fold, so runs
//! are only comparable at similar (low) steal.

/// The same allocator as the `svcnet` binary, so the served child measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{AsyncBufReadExt, StreamExt};
use hyper::Request;
use serde_json::{Value, json};

/// Label values cycle with this period, so a selector matches about 1/7.
const APPS: usize = 7;
/// The namespace the watch measurement writes to.
const WATCH_NS: &str = "bench-watch";
/// Kubernetes' server-side Table request, as kubectl sends it.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, Clone)]
struct Opts {
    services: usize,
    pods: usize,
    namespaces: usize,
    writers: usize,
    creates: usize,
    watchers: usize,
    watch_events: usize,
    populate_concurrency: usize,
    server_binary: Option<PathBuf>,
    client_nice: i32,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        services: 10_000,
        pods: 50_000,
        namespaces: 100,
        writers: 100,
        creates: 2000,
        watchers: 100,
        watch_events: 200,
        populate_concurrency: 64,
        server_binary: None,
        client_nice: 10,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("flag {flag} needs a value"))?;
        let num = || -> Result<usize> {
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag} {value:?}: not a number"))?;
            if n == 0 && flag != "--services" && flag != "--pods" {
                bail!("{flag} must be at least 1");
            }
            Ok(n)
        };
        match flag.as_str() {
            "--services" => o.services = num()?,
            "--pods" => o.pods = num()?,
            "--namespaces" => o.namespaces = num()?,
            "--writers" => o.writers = num()?,
            "--creates" => o.creates = num()?,
            "--watchers" => o.watchers = num()?,
            "--watch-events" => o.watch_events = num()?,
            "--populate-concurrency" => o.populate_concurrency = num()?,
            "--server-binary" => o.server_binary = Some(PathBuf::from(value)),
            "--client-nice" => o.client_nice = value.parse().context("--client-nice")?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [serve, dir] = args.as_slice()
        && serve == "--serve"
    {
        return serve_child(Path::new(dir));
    }
    let opts = parse_opts(&args)?;
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(run(opts))
}

/// Child mode: the API server over an embedded store in `dir`, until stdin closes.
fn serve_child(dir: &Path) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async {
        let store = svcnet_store::open(&dir.join("store").display().to_string()).await?;
        let mut cfg = svcnet_apiserver::Config::new(dir);
        cfg.bind = "127.0.0.1:0".parse()?;
        let server = svcnet_apiserver::Server::start(cfg, store).await?;
        // The same line `svcnet apiserver` prints, so one parser serves both.
        eprintln!(
            "svcnet apiserver listening on https://{}\n  export KUBECONFIG={}",
            server.local_addr(),
            server.kubeconfig().display()
        );
        // The parent holds our stdin; when it goes away, so do we.
        let eof = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        });
        server
            .serve(async move {
                let _ = eof.await;
            })
            .await?;
        Ok(())
    })
}

/// The server child; killed on drop, also when the benchmark fails.
struct ServerProc {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProc {
    fn start(opts: &Opts) -> Result<ServerProc> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let mut cmd = match &opts.server_binary {
            Some(bin) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let mut c = Command::new(bin);
                c.arg("apiserver")
                    .arg(format!("--data-dir={}", dir.path().display()))
                    .arg(format!("--bind-address=127.0.0.1:{port}"));
                c
            }
            None => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("--serve").arg(dir.path());
                c
            }
        };
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the API server")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let mut proc = ServerProc {
            child,
            kubeconfig: PathBuf::new(),
            _dir: dir,
        };
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(k) = line.trim().strip_prefix("export KUBECONFIG=") {
                proc.kubeconfig = PathBuf::from(k);
                break;
            }
            seen.push(line);
        }
        if proc.kubeconfig.as_os_str().is_empty() {
            bail!("API server did not start:\n{}", seen.join("\n"));
        }
        // Keep draining its log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines {
                match line {
                    Ok(l) => eprintln!("[server] {l}"),
                    Err(_) => break,
                }
            }
        });
        Ok(proc)
    }

    /// CPU time the server process has used so far (all threads, user and system).
    fn cpu(&self) -> Option<Duration> {
        process_cpu(&format!("/proc/{}/stat", self.child.id()))
    }

    /// (VmRSS, VmHWM) of the server process in bytes.
    fn memory(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} missing in /proc status"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .context("malformed /proc status")?
                .parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn ns_name(i: usize) -> String {
    format!("bench-{i:03}")
}

fn service_body(ns: &str, name: &str, app: usize) -> Vec<u8> {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": format!("app-{app}")}},
        "spec": {"selector": {"app": format!("app-{app}")},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    })
    .to_string()
    .into_bytes()
}

fn pod_body(ns: &str, name: &str, app: usize) -> Vec<u8> {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": format!("app-{app}"), "tier": "bench"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                  "ports": [{"containerPort": 8080}],
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
    .to_string()
    .into_bytes()
}

/// One POST; returns its latency.
async fn post(client: &kube::Client, path: &str, body: Vec<u8>) -> Result<Duration> {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(body)?;
    let t0 = Instant::now();
    client
        .request_text(req)
        .await
        .with_context(|| format!("POST {path}"))?;
    Ok(t0.elapsed())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    Pod,
}

impl Kind {
    fn singular(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Pod => "pod",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Pod => "pods",
        }
    }

    fn body(self, ns: &str, name: &str, app: usize) -> Vec<u8> {
        match self {
            Kind::Service => service_body(ns, name, app),
            Kind::Pod => pod_body(ns, name, app),
        }
    }
}

/// Creates `count` objects named `<prefix>-<i>` round-robin over the
/// namespaces from `concurrency` concurrent writers (one task each, taking
/// the next index in turn); returns every latency.
async fn create_many(
    client: &kube::Client,
    kind: Kind,
    prefix: &str,
    count: usize,
    namespaces: usize,
    concurrency: usize,
) -> Result<Vec<Duration>> {
    // Each writer is its own task, so the load generator's runtime spreads
    // them over its threads (a stream polled by one task would serialize
    // every request's client-side work on that task's thread).
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A JoinSet: when one writer fails, dropping the set stops the others.
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, prefix) = (client.clone(), next.clone(), prefix.to_string());
        writers.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let ns = ns_name(i % namespaces);
                let body = kind.body(&ns, &format!("{prefix}-{i}"), i % APPS);
                let path = format!("/api/v1/namespaces/{ns}/{}", kind.plural());
                lat.push(post(&client, &path, body).await?);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = writers.join_next().await {
        all.extend(done.context("a writer task failed")??);
    }
    Ok(all)
}

/// Times GET `path` `n` times; returns (median latency, bytes, items).
async fn time_list(
    client: &kube::Client,
    path: &str,
    accept: &str,
    n: usize,
) -> Result<(Duration, usize, usize)> {
    let mut lat = Vec::new();
    let (mut bytes, mut items) = (0, 0);
    for _ in 0..n {
        let req = Request::get(path)
            .header("accept", accept)
            .body(Vec::new())?;
        let t0 = Instant::now();
        let text = client
            .request_text(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        lat.push(t0.elapsed());
        bytes = text.len();
        let v: Value = serde_json::from_str(&text)?;
        items = v["items"]
            .as_array()
            .or(v["rows"].as_array())
            .map_or(0, Vec::len);
    }
    lat.sort();
    Ok((lat[lat.len() / 2], bytes, items))
}

/// The machine's CPU time and the part of it stolen by the hypervisor
/// (jiffies, the `cpu` line of /proc/stat); `None` where it cannot be read.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    Some((fields.iter().sum(), *fields.get(7)?))
}

/// utime + stime of the process whose stat file is `path`.
fn process_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// sysconf(_SC_CLK_TCK), the unit of /proc times.
fn clock_ticks() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// The CPU counters a timed phase is judged by, read at its start and end.
struct CpuSample {
    /// The machine's (total, steal), see [`cpu_times`].
    machine: Option<(u64, u64)>,
    server: Option<Duration>,
    load_generator: Option<Duration>,
}

impl CpuSample {
    fn take(server: &ServerProc) -> CpuSample {
        CpuSample {
            machine: cpu_times(),
            server: server.cpu(),
            load_generator: process_cpu("/proc/self/stat"),
        }
    }
}

/// CPU microseconds per operation between two readings.
fn cpu_per_op(before: Option<Duration>, after: Option<Duration>, ops: usize) -> String {
    match (before, after) {
        (Some(a), Some(b)) if ops > 0 => {
            format!("{:.0} us", (b - a).as_secs_f64() * 1e6 / ops as f64)
        }
        _ => "n/a".into(),
    }
}

/// Steal between two readings as a percentage: the share of the run this
/// VM's CPUs were taken by others (the figures are not comparable when high).
fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> String {
    match (before, after) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => {
            format!("{:.0}%", 100.0 * (s1 - s0) as f64 / (t1 - t0) as f64)
        }
        _ => "n/a".into(),
    }
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// 100 watchers on one namespace's Pods; `events` Pods created one by one.
/// Latency is from the create's response to the ADDED event's arrival
/// (zero when the event arrived first), and from sending the create.
async fn watch_latency(
    client: &kube::Client,
    watchers: usize,
    events: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    post(
        client,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WATCH_NS}})
            .to_string()
            .into_bytes(),
    )
    .await?;
    let list: Value = serde_json::from_str(
        &client
            .request_text(
                Request::get(format!("/api/v1/namespaces/{WATCH_NS}/pods")).body(Vec::new())?,
            )
            .await?,
    )?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let path = format!(
            "/api/v1/namespaces/{WATCH_NS}/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
        );
        let stream = client
            .request_stream(Request::get(path).body(Vec::new())?)
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            let mut lines = stream.lines();
            while seen.len() < events {
                let Some(line) = lines.next().await else {
                    bail!("watch ended after {} events", seen.len());
                };
                let at = Instant::now();
                let ev: Value = serde_json::from_str(&line?)?;
                if ev["type"] == "ADDED"
                    && let Some(name) = ev["object"]["metadata"]["name"].as_str()
                {
                    seen.insert(name.to_string(), at);
                }
            }
            Ok(seen)
        }));
    }
    let mut acked = HashMap::new();
    for i in 0..events {
        let name = format!("watched-{i}");
        let issued = Instant::now();
        post(
            client,
            &format!("/api/v1/namespaces/{WATCH_NS}/pods"),
            pod_body(WATCH_NS, &name, i % APPS),
        )
        .await?;
        acked.insert(name, (issued, Instant::now()));
        // Paced, so this measures delivery and not a backlog.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut from_ack, mut from_issue) = (Vec::new(), Vec::new());
    for t in tasks {
        let seen = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .context("watchers did not get every event within 60 s")???;
        for (name, at) in seen {
            let (issued, ack) = acked.get(&name).context("event for a pod never created")?;
            from_ack.push(at.saturating_duration_since(*ack));
            from_issue.push(at.saturating_duration_since(*issued));
        }
    }
    from_ack.sort();
    from_issue.sort();
    Ok((from_ack, from_issue))
}

struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>, target: &str) {
        self.rows
            .push((what.into(), value.into(), target.to_string()));
    }

    fn print(&self) {
        let w = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let v = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        println!("{:<w$}  {:<v$}  target", "measurement", "value");
        for (what, value, target) in &self.rows {
            println!("{what:<w$}  {value:<v$}  {target}");
        }
    }
}

fn verdict(ok: bool, target: &str) -> String {
    format!("{target} {}", if ok { "(met)" } else { "(MISSED)" })
}

/// Sets the niceness of every thread of this process (threads started
/// later inherit it from their creator).
fn set_own_niceness(nice: i32) -> Result<()> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let tid = task?.file_name().to_string_lossy().into_owned();
        let st = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", &tid])
            .stdout(Stdio::null())
            .status()
            .context("running renice")?;
        if !st.success() {
            bail!("renice -n {nice} -p {tid} failed");
        }
    }
    Ok(())
}

async fn run(opts: Opts) -> Result<()> {
    let server = ServerProc::start(&opts)?;
    set_own_niceness(opts.client_nice)?;
    let client = client(&server.kubeconfig).await?;
    let mut report = Report { rows: Vec::new() };
    report.row(
        "load generator niceness (server: 0)",
        opts.client_nice.to_string(),
        "-",
    );

    eprintln!("creating {} namespaces", opts.namespaces);
    for i in 0..opts.namespaces {
        let body =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name(i)}});
        post(&client, "/api/v1/namespaces", body.to_string().into_bytes()).await?;
    }
    for (kind, count) in [(Kind::Service, opts.services), (Kind::Pod, opts.pods)] {
        eprintln!("creating {count} {}", kind.plural());
        let t0 = Instant::now();
        create_many(
            &client,
            kind,
            "obj",
            count,
            opts.namespaces,
            opts.populate_concurrency,
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        report.row(
            format!(
                "populate {count} {} ({} concurrent)",
                kind.plural(),
                opts.populate_concurrency
            ),
            format!("{:.1} s, {:.0}/s", secs, count as f64 / secs),
            "-",
        );
    }
    let (rss_loaded, _) = server.memory()?;

    eprintln!("timing lists");
    let lists = [
        (
            "list all services (JSON)",
            "/api/v1/services".to_string(),
            "application/json",
        ),
        (
            "list all services (Table)",
            "/api/v1/services".to_string(),
            TABLE_ACCEPT,
        ),
        (
            "list all pods (JSON)",
            "/api/v1/pods".to_string(),
            "application/json",
        ),
        (
            "list pods in one namespace, label selector (JSON)",
            format!(
                "/api/v1/namespaces/{}/pods?labelSelector=app%3Dapp-0",
                ns_name(0)
            ),
            "application/json",
        ),
    ];
    for (what, path, accept) in lists {
        let (lat, bytes, items) = time_list(&client, &path, accept, 5).await?;
        report.row(
            format!("{what}: {items} items, {:.1} MB", bytes as f64 / 1e6),
            format!("{} (median of 5)", ms(lat)),
            "-",
        );
    }

    let (rss_lists, _) = server.memory()?;

    for kind in [Kind::Service, Kind::Pod] {
        // Untimed warm-up at full concurrency: opens the client's connections
        // (one TLS handshake each), so the timed run measures creates, not handshakes.
        create_many(
            &client,
            kind,
            "warm",
            opts.writers * 2,
            opts.namespaces,
            opts.writers,
        )
        .await?;
        eprintln!("timing {} {} creates", opts.creates, kind.plural());
        let cpu0 = CpuSample::take(&server);
        let t0 = Instant::now();
        let mut lat = create_many(
            &client,
            kind,
            "timed",
            opts.creates,
            opts.namespaces,
            opts.writers,
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = CpuSample::take(&server);
        let steal = steal_percent(cpu0.machine, cpu1.machine);
        lat.sort();
        let p99 = pct(&lat, 99);
        // CPU per create does not depend on steal the way rates do: the
        // figure to compare builds by on a busy host.
        report.row(
            format!(
                "CPU per {} create: server / load generator",
                kind.singular()
            ),
            format!(
                "{} / {}",
                cpu_per_op(cpu0.server, cpu1.server, lat.len()),
                cpu_per_op(cpu0.load_generator, cpu1.load_generator, lat.len())
            ),
            "-",
        );
        report.row(
            format!(
                "create {} p50 / p99 / max ({} writers, {:.0}/s, steal {steal})",
                kind.plural(),
                opts.writers,
                lat.len() as f64 / secs
            ),
            format!(
                "{} / {} / {}",
                ms(pct(&lat, 50)),
                ms(p99),
                ms(lat.last().copied().unwrap_or_default())
            ),
            &verdict(p99 < Duration::from_millis(20), "p99 < 20 ms"),
        );
    }

    eprintln!("timing watch delivery to {} watchers", opts.watchers);
    let (from_ack, from_issue) = watch_latency(&client, opts.watchers, opts.watch_events).await?;
    for (what, lat) in [
        ("from the write's ack", from_ack),
        ("from sending the write", from_issue),
    ] {
        let p99 = pct(&lat, 99);
        report.row(
            format!(
                "watch delivery {what} p50 / p99 / max ({} watchers x {} events)",
                opts.watchers, opts.watch_events
            ),
            format!(
                "{} / {} / {}",
                ms(pct(&lat, 50)),
                ms(p99),
                ms(lat.last().copied().unwrap_or_default())
            ),
            &verdict(p99 < Duration::from_millis(50), "p99 < 50 ms"),
        );
    }

    let (rss, peak) = server.memory()?;
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0));
    report.row("server RSS after populating", mib(rss_loaded), "-");
    report.row("server RSS after the lists", mib(rss_lists), "-");
    report.row(
        "server RSS at the end / peak (VmHWM)",
        format!("{} / {}", mib(rss), mib(peak)),
        &verdict(peak < 1 << 30, "< 1 GiB"),
    );
    println!();
    report.print();
    Ok(())
}

//! `svcnet up`, `svcnet down` and `svcnet shell`: a whole cluster on this machine, on the network lab.
//!
//! `up` builds the lab, then runs every component as a child process of this
//! binary: the API server and controllers in the host namespace, DNS and each
//! node's agent and proxy inside the node namespaces (spawned from a thread
//! that entered the namespace). It records the children in `DIR/up.json` so
//! that a later `up` or `down` can clean up after a crash.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use svcnet_netlab::netns;
use svcnet_netlab::{LabConfig, Plan};

/// Lab lifecycle subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Bring up a whole cluster on this machine (needs root): API server, controllers,
    /// DNS, and per node an agent and a proxy in the node's network namespace.
    Up(UpArgs),
    /// Remove the lab and everything a crashed `svcnet up` left behind.
    Down(DownArgs),
    /// Open a shell (or run a command) inside a node's network namespace.
    Shell(ShellArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProxyMode {
    Auto,
    Nftables,
    Iptables,
    Userspace,
}

impl ProxyMode {
    fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Auto => "auto",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Userspace => "userspace",
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    #[arg(long, value_enum, default_value_t = ProxyMode::Auto)]
    proxy_mode: ProxyMode,
    /// Store, certificates, logs and the admin kubeconfig (DIR/kubeconfig).
    #[arg(long, default_value = "/var/lib/svcnet")]
    data_dir: PathBuf,
    /// Lab name: namespaces are svcnet-<cluster>-node<i>.
    #[arg(long, default_value = "lab")]
    cluster: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DownArgs {
    /// Only this cluster's lab (default: every svcnet lab on the machine).
    #[arg(long)]
    cluster: Option<String>,
    /// Data directory of the `svcnet up` whose processes to stop.
    #[arg(long, default_value = "/var/lib/svcnet")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShellArgs {
    /// Node name, e.g. node0.
    node: String,
    #[arg(long, default_value = "lab")]
    cluster: String,
    /// Command to run instead of $SHELL.
    #[arg(last = true)]
    command: Vec<String>,
}

/// Where the API server listens: the host end of the lab veth.
const API_PORT: u16 = 6443;
const DNS_IP: &str = "10.96.0.10";
const CLUSTER_DOMAIN: &str = "cluster.local";
/// LoadBalancer pool of the controllers, inside the node network above the
/// nodes; the host routes `LB_CIDR` to node 0 so the addresses answer from the host.
const LB_POOL: &str = "172.18.0.200-172.18.0.250";
const LB_CIDR: &str = "172.18.0.192/26";
const STATE_FILE: &str = "up.json";

pub(crate) async fn run(cmd: LabCommand) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Up(a) => up(a).await,
        LabCommand::Down(a) => down(a).await,
        LabCommand::Shell(a) => shell(a),
    }
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if !netns::has_net_admin() {
        bail!(
            "svcnet {what} works on network namespaces and needs root (CAP_NET_ADMIN): run `sudo svcnet {what} ...`"
        );
    }
    Ok(())
}

fn lab_config(cluster: &str, nodes: u32) -> anyhow::Result<LabConfig> {
    Ok(LabConfig {
        cluster: cluster.to_string(),
        nodes,
        lb_cidr: Some(LB_CIDR.parse()?),
        ..LabConfig::default()
    })
}

/// Pids of the children of an `up`, for cleanup after a crash.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct UpState {
    cluster: String,
    pids: Vec<u32>,
}

fn read_state(dir: &Path) -> Option<UpState> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(dir: &Path, s: &UpState) -> anyhow::Result<()> {
    let p = dir.join(STATE_FILE);
    std::fs::write(&p, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", p.display()))
}

/// Stops the recorded children of a crashed `up` that still run this binary.
fn stop_recorded(dir: &Path) -> usize {
    let Some(state) = read_state(dir) else {
        return 0;
    };
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok());
    let mut n = 0;
    for pid in state.pids {
        let ours = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| PathBuf::from(p.to_string_lossy().trim_end_matches(" (deleted)")));
        // Only ours: the pid may have been reused by an unrelated process.
        if ours.is_some() && ours == exe {
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            n += 1;
        }
    }
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    n
}

fn signal_group(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        // Each child leads its own process group: that reaches its children too.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-p), sig);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// One started (or missing) component.
#[derive(Debug)]
struct Component {
    name: String,
    child: Option<tokio::process::Child>,
    note: Option<String>,
    log: PathBuf,
}

/// The subcommands this binary has, with their `--help` text.
fn help_of(sub: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args([sub, "--help"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Keeps the flags the component knows (from its `--help`), so that `up`
/// works while components and their flags are still changing.
fn known_flags(help: &str, flags: &[(&str, String)]) -> (Vec<String>, Vec<String>) {
    let mut args = Vec::new();
    let mut dropped = Vec::new();
    for (flag, value) in flags {
        let listed = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .any(|w| w == *flag);
        if listed {
            args.push(flag.to_string());
            args.push(value.clone());
        } else {
            dropped.push(flag.to_string());
        }
    }
    (args, dropped)
}

async fn start(
    name: &str,
    sub: &str,
    flags: &[(&str, String)],
    netns_name: Option<&str>,
    logs: &Path,
) -> Component {
    let log = logs.join(format!("{name}.log"));
    let Some(help) = help_of(sub) else {
        return Component {
            name: name.into(),
            child: None,
            note: Some(format!(
                "missing: this svcnet build has no `{sub}` subcommand"
            )),
            log,
        };
    };
    let (args, dropped) = known_flags(&help, flags);
    let note = (!dropped.is_empty()).then(|| {
        format!(
            "started without {} (not known to `svcnet {sub}`)",
            dropped.join(", ")
        )
    });
    let spawned = (|| -> anyhow::Result<tokio::process::Child> {
        let exe = std::env::current_exe()?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg(sub)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let rt = tokio::runtime::Handle::current();
        let child = netns::run_in(netns_name, move || {
            let _g = rt.enter();
            cmd.spawn()
        })??;
        Ok(child)
    })();
    match spawned {
        Ok(child) => Component {
            name: name.into(),
            child: Some(child),
            note,
            log,
        },
        Err(e) => Component {
            name: name.into(),
            child: None,
            note: Some(format!("failed to start: {e:#}")),
            log,
        },
    }
}

fn step(msg: &str) {
    eprintln!("• {msg}");
}

/// Chooses the proxy mode for `auto`: nftables where `nft` works in a node
/// namespace, else iptables, else userspace; says why.
fn choose_mode(requested: ProxyMode, node_ns: &str) -> (ProxyMode, String) {
    if requested != ProxyMode::Auto {
        return (requested, "requested with --proxy-mode".into());
    }
    let works = |prog: &str, args: &[&str]| -> Result<(), String> {
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = netns::spawn_in(node_ns, &mut cmd).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("failed")
                .to_string())
        }
    };
    match works("nft", &["list", "tables"]) {
        Ok(()) => (
            ProxyMode::Nftables,
            "auto: nftables works in the node namespaces".into(),
        ),
        Err(nft) => match works("iptables", &["-w", "5", "-L", "-n"]) {
            Ok(()) => (
                ProxyMode::Iptables,
                format!("auto: nftables unusable ({nft}), iptables works"),
            ),
            Err(ipt) => (
                ProxyMode::Userspace,
                format!("auto: nftables ({nft}) and iptables ({ipt}) unusable"),
            ),
        },
    }
}

async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    Ok(svcnet_client::client(Some(kubeconfig)).await?)
}

/// The `kube-dns` Service on the cluster DNS IP, with Endpoints and an
/// EndpointSlice pointing at the DNS server in node 0 (no pods behind it).
async fn publish_dns(client: &kube::Client, dns_at: Ipv4Addr) -> anyhow::Result<()> {
    let pp = PatchParams::apply("svcnet-up").force();
    let ports = serde_json::json!([
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]);
    let svc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": DNS_IP, "ports": ports},
    });
    Api::<Service>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns", &pp, &Patch::Apply(&svc))
        .await?;
    let ep = serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": dns_at.to_string(), "nodeName": "node0"}],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}],
    });
    Api::<Endpoints>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns", &pp, &Patch::Apply(&ep))
        .await?;
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-svcnet", "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "svcnet-up"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [dns_at.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "node0"}],
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
    });
    Api::<EndpointSlice>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns-svcnet", &pp, &Patch::Apply(&slice))
        .await?;
    Ok(())
}

/// A DNS A query for `name`, as sent on the wire (RFC 1035 §4.1).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// True when `resp` answers query `id` with NOERROR and at least one answer.
fn dns_answered(id: u16, resp: &[u8]) -> bool {
    resp.len() >= 12
        && resp[..2] == id.to_be_bytes()
        && resp[2] & 0x80 != 0
        && resp[3] & 0x0f == 0
        && u16::from_be_bytes([resp[6], resp[7]]) > 0
}

fn dns_up(server: SocketAddr) -> bool {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let name = format!("kubernetes.default.svc.{CLUSTER_DOMAIN}");
    let id = 0x5e11;
    if sock.send_to(&dns_query(id, &name), server).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    sock.recv(&mut buf)
        .is_ok_and(|n| dns_answered(id, &buf[..n]))
}

async fn ready_nodes(client: &kube::Client) -> BTreeMap<String, bool> {
    let Ok(list) = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return BTreeMap::new();
    };
    list.items
        .into_iter()
        .map(|n| {
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (n.metadata.name.unwrap_or_default(), ready)
        })
        .collect()
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    need_root("up")?;
    let plan = svcnet_netlab::plan(&lab_config(&a.cluster, a.nodes)?)?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating {}", a.data_dir.display()))?;
    let dir = a.data_dir.canonicalize()?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;

    // A previous run that crashed: stop what it left and remove its lab.
    let stopped = stop_recorded(&dir);
    let p2 = plan.clone();
    let removed =
        tokio::task::spawn_blocking(move || svcnet_netlab::destroy_cluster(&p2.cluster, Some(&p2)))
            .await??;
    if stopped > 0 || !removed.is_empty() {
        step(&format!(
            "cleaned up a previous run: stopped {stopped} components, {removed}"
        ));
    }

    step(&format!(
        "building the lab: {} nodes on {}, host {} on {}",
        plan.nodes.len(),
        plan.node_cidr,
        plan.host_ip,
        plan.host_link
    ));
    let p2 = plan.clone();
    tokio::task::spawn_blocking(move || svcnet_netlab::create(&p2)).await??;

    let result = run_cluster(&a, &plan, &dir, &logs).await;
    step("removing the lab");
    let p2 = plan.clone();
    let removed = tokio::task::spawn_blocking(move || svcnet_netlab::destroy(&p2)).await??;
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    eprintln!("svcnet stopped: {removed}");
    result
}

async fn run_cluster(a: &UpArgs, plan: &Plan, dir: &Path, logs: &Path) -> anyhow::Result<()> {
    let kubeconfig = dir.join("kubeconfig");
    let kc = kubeconfig.display().to_string();
    let node0 = &plan.nodes[0];
    let mut comps: Vec<Component> = Vec::new();
    let mut state = UpState {
        cluster: plan.cluster.clone(),
        pids: Vec::new(),
    };
    let record = |c: &Component, state: &mut UpState| {
        if let Some(pid) = c.child.as_ref().and_then(|ch| ch.id()) {
            state.pids.push(pid);
            let _ = write_state(dir, state);
        }
    };

    // The shared secret the API server presents to the agents' streaming
    // servers (exec, port-forward, logs).
    let agent_token_file = dir.join("agent-token");
    if !agent_token_file.exists() {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(&agent_token_file, token)?;
    }
    step("starting the API server on https://172.18.0.1:6443");
    let _ = std::fs::remove_file(&kubeconfig);
    let api = start(
        "apiserver",
        "apiserver",
        &[
            ("--data-dir", dir.display().to_string()),
            (
                "--bind-address",
                SocketAddr::from((plan.host_ip, API_PORT)).to_string(),
            ),
            ("--advertise-address", plan.host_ip.to_string()),
            ("--service-cluster-ip-range", plan.service_cidr.to_string()),
            ("--agent-token-file", agent_token_file.display().to_string()),
        ],
        None,
        logs,
    )
    .await;
    record(&api, &mut state);
    if api.child.is_none() {
        bail!(
            "the API server did not start: {}",
            api.note.unwrap_or_default()
        );
    }
    comps.push(api);

    let client = wait_api(&kubeconfig, &mut comps[0]).await?;
    publish_dns(&client, node0.ip)
        .await
        .context("creating the kube-dns Service")?;

    let (mode, why) = tokio::task::block_in_place(|| choose_mode(a.proxy_mode, &node0.netns));
    step(&format!("proxy mode {} ({why})", mode.as_str()));

    step("starting controllers and DNS");
    let c = start(
        "controllers",
        "controllers",
        &[("--kubeconfig", kc.clone()), ("--lb-pool", LB_POOL.into())],
        None,
        logs,
    )
    .await;
    record(&c, &mut state);
    comps.push(c);
    let d = start(
        "dns",
        "dns",
        &[
            ("--kubeconfig", kc.clone()),
            ("--listen", "0.0.0.0:53".into()),
            ("--cluster-domain", CLUSTER_DOMAIN.into()),
            ("--metrics-listen", format!("{}:9153", node0.ip)),
        ],
        Some(&node0.netns),
        logs,
    )
    .await;
    record(&d, &mut state);
    comps.push(d);

    for n in &plan.nodes {
        step(&format!(
            "starting {}: agent and proxy in {}",
            n.name, n.netns
        ));
        let agent = start(
            &format!("agent-{}", n.name),
            "agent",
            &[
                ("--kubeconfig", kc.clone()),
                ("--node-name", n.name.clone()),
                ("--node-ip", n.ip.to_string()),
                ("--pod-cidr", n.pod_cidr.to_string()),
                ("--cluster-dns", DNS_IP.into()),
                ("--cluster-domain", CLUSTER_DOMAIN.into()),
                (
                    "--root-dir",
                    dir.join("nodes").join(&n.name).display().to_string(),
                ),
                ("--streaming-listen", format!("{}:10250", n.ip)),
                (
                    "--streaming-token-file",
                    agent_token_file.display().to_string(),
                ),
                ("--bridge", svcnet_netlab::plan::POD_BRIDGE.into()),
            ],
            Some(&n.netns),
            logs,
        )
        .await;
        record(&agent, &mut state);
        comps.push(agent);
        let proxy = start(
            &format!("proxy-{}", n.name),
            "proxy",
            &[
                ("--kubeconfig", kc.clone()),
                ("--hostname-override", n.name.clone()),
                ("--proxy-mode", mode.as_str().into()),
                ("--cluster-cidr", plan.pod_cidr.to_string()),
            ],
            Some(&n.netns),
            logs,
        )
        .await;
        record(&proxy, &mut state);
        comps.push(proxy);
    }

    // Status: wait (bounded) for nodes and DNS, then report what is there.
    let dns_at = SocketAddr::from((node0.ip, 53));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut nodes, mut dns) = (BTreeMap::new(), false);
    while Instant::now() < deadline {
        nodes = ready_nodes(&client).await;
        dns = tokio::task::spawn_blocking(move || dns_up(dns_at))
            .await
            .unwrap_or(false);
        if dns && nodes.values().filter(|r| **r).count() >= plan.nodes.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for c in &mut comps {
        if let Some(ch) = c.child.as_mut()
            && let Ok(Some(st)) = ch.try_wait()
        {
            c.note = Some(format!("exited ({st}); see {}", c.log.display()));
            c.child = None;
        }
    }
    println!(
        "{}",
        status_text(plan, &nodes, dns, mode, &why, &comps, &kubeconfig, logs)
    );

    // Run until Ctrl-C / SIGTERM, or until the API server exits.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reported = vec![false; comps.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (i, c) in comps.iter_mut().enumerate() {
            if let Some(ch) = c.child.as_mut()
                && let Ok(Some(st)) = ch.try_wait()
                && !reported[i]
            {
                reported[i] = true;
                eprintln!("! {} exited ({st}); see {}", c.name, c.log.display());
            }
        }
        if reported[0] {
            eprintln!("! the API server is gone: stopping");
            break;
        }
    }
    step("stopping components");
    stop_all(&mut comps).await;
    Ok(())
}

async fn wait_api(kubeconfig: &Path, api: &mut Component) -> anyhow::Result<kube::Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(ch) = api.child.as_mut()
            && let Ok(Some(st)) = ch.try_wait()
        {
            let tail = std::fs::read_to_string(&api.log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the API server exited ({st}):\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        if kubeconfig.exists()
            && let Ok(c) = kube_client(kubeconfig).await
            && c.apiserver_version().await.is_ok()
        {
            return Ok(c);
        }
        if Instant::now() > deadline {
            bail!(
                "the API server did not answer within 60s; see {}",
                api.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops components in reverse start order (proxies and agents first, the
/// API server last, so agents can still report): SIGTERM, then SIGKILL after 10s.
async fn stop_all(comps: &mut [Component]) {
    for c in comps.iter_mut().rev() {
        let Some(ch) = c.child.as_mut() else { continue };
        let Some(pid) = ch.id() else { continue };
        signal_group(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), ch.wait())
            .await
            .is_err()
        {
            eprintln!("! {} did not stop within 10s: killing it", c.name);
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = ch.wait().await;
        }
        // Its pods and helpers, if any outlived it.
        signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[allow(clippy::too_many_arguments)]
fn status_text(
    plan: &Plan,
    nodes: &BTreeMap<String, bool>,
    dns: bool,
    mode: ProxyMode,
    why: &str,
    comps: &[Component],
    kubeconfig: &Path,
    logs: &Path,
) -> String {
    let mut s = String::new();
    let ready = nodes.values().filter(|r| **r).count();
    let _ = writeln!(
        s,
        "svcnet is up: cluster {:?}, {} nodes",
        plan.cluster,
        plan.nodes.len()
    );
    let list: Vec<String> = plan
        .nodes
        .iter()
        .map(|n| {
            let st = match nodes.get(&n.name) {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "not registered",
            };
            format!("{} {} {st}", n.name, n.ip)
        })
        .collect();
    let _ = writeln!(
        s,
        "  nodes:  {ready}/{} Ready ({})",
        plan.nodes.len(),
        list.join(", ")
    );
    let node0 = &plan.nodes[0];
    let _ = writeln!(
        s,
        "  dns:    {} on {DNS_IP} (served from {} {}:53)",
        if dns { "up" } else { "not answering yet" },
        node0.name,
        node0.ip
    );
    let _ = writeln!(s, "  proxy:  {} ({why})", mode.as_str());
    for c in comps.iter().filter(|c| c.note.is_some()) {
        let _ = writeln!(s, "  {}: {}", c.name, c.note.as_deref().unwrap_or_default());
    }
    let _ = writeln!(s, "  logs:   {}", logs.display());
    let _ = writeln!(s, "\n  export KUBECONFIG={}", kubeconfig.display());
    let _ = writeln!(s, "  kubectl get nodes");
    let _ = writeln!(
        s,
        "  svcnet shell {}      # a shell inside {}",
        node0.name, node0.name
    );
    let _ = write!(s, "\nPress Ctrl-C to stop the cluster and remove the lab.");
    s
}

async fn down(a: DownArgs) -> anyhow::Result<()> {
    need_root("down")?;
    let stopped = stop_recorded(&a.data_dir);
    let removed = match a.cluster {
        Some(c) => {
            // The plan `up` would have used finds its routes even without the state file.
            let fallback = svcnet_netlab::plan(&lab_config(&c, 1)?).ok();
            tokio::task::spawn_blocking(move || {
                svcnet_netlab::destroy_cluster(&c, fallback.as_ref())
            })
            .await??
        }
        None => tokio::task::spawn_blocking(svcnet_netlab::down_all).await??,
    };
    if stopped > 0 {
        println!(
            "stopped {stopped} svcnet components of {}",
            a.data_dir.display()
        );
    }
    println!("svcnet down: {removed}");
    Ok(())
}

fn shell(a: ShellArgs) -> anyhow::Result<()> {
    svcnet_netlab::plan::check_cluster_name(&a.cluster)?;
    let ns = format!(
        "{}{}",
        svcnet_netlab::plan::netns_prefix(&a.cluster),
        a.node
    );
    if !netns::exists(&ns) {
        let prefix = svcnet_netlab::plan::netns_prefix(&a.cluster);
        let nodes: Vec<String> = netns::list()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
            .filter(|n| n.starts_with("node"))
            .collect();
        if nodes.is_empty() {
            bail!(
                "no node {:?}: the lab {:?} is not up (start it with `svcnet up`)",
                a.node,
                a.cluster
            );
        }
        bail!(
            "no node {:?} in the lab {:?}; nodes: {}",
            a.node,
            a.cluster,
            nodes.join(", ")
        );
    }
    need_root("shell")?;
    let mut cmd = match a.command.split_first() {
        Some((prog, args)) => {
            let mut c = std::process::Command::new(prog);
            c.args(args);
            c
        }
        None => {
            std::process::Command::new(std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into()))
        }
    };
    cmd.env("SVCNET_NODE", &a.node)
        .env("PS1", format!("[{}] \\w# ", a.node));
    Err(netns::exec_in(&ns, &mut cmd).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_flags_keeps_what_help_lists() {
        let help = "Usage: svcnet proxy [OPTIONS]\n\nOptions:\n      --kubeconfig <KUBECONFIG>\n      --node-name <NODE_NAME>\n      --mode=<MODE>\n  -h, --help\n";
        let flags = [
            ("--kubeconfig", "/k".to_string()),
            ("--proxy-mode", "nftables".to_string()),
            ("--mode", "nftables".to_string()),
            ("--node", "x".to_string()),
        ];
        let (args, dropped) = known_flags(help, &flags);
        assert_eq!(args, ["--kubeconfig", "/k", "--mode", "nftables"]);
        assert_eq!(dropped, ["--proxy-mode", "--node"]);
    }

    #[test]
    fn dns_wire_format() {
        let q = dns_query(0x1234, "kubernetes.default.svc.cluster.local.");
        let mut want = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in ["kubernetes", "default", "svc", "cluster", "local"] {
            want.push(l.len() as u8);
            want.extend_from_slice(l.as_bytes());
        }
        want.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(q, want);
        let cases: &[(&[u8], bool)] = &[
            (&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0], true),
            (&[0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0], false), // NXDOMAIN
            (&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0], false), // no answer
            (&[0x12, 0x35, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0], false), // other id
            (&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 1, 0, 0, 0, 0], false), // a query, not a response
            (&[0x12, 0x34], false),
        ];
        for (resp, want) in cases {
            assert_eq!(dns_answered(0x1234, resp), *want, "{resp:?}");
        }
    }

    #[test]
    fn status_reports_nodes_dns_proxy_and_missing_components() {
        let plan = svcnet_netlab::plan(&lab_config("lab", 2).unwrap()).unwrap();
        let nodes = BTreeMap::from([("node0".to_string(), true), ("node1".to_string(), false)]);
        let comps = vec![Component {
            name: "agent-node0".into(),
            child: None,
            note: Some("missing: this svcnet build has no `agent` subcommand".into()),
            log: "/d/logs/agent-node0.log".into(),
        }];
        let text = status_text(
            &plan,
            &nodes,
            true,
            ProxyMode::Nftables,
            "auto: nftables works in the node namespaces",
            &comps,
            Path::new("/d/kubeconfig"),
            Path::new("/d/logs"),
        );
        assert_eq!(
            text,
            "svcnet is up: cluster \"lab\", 2 nodes
  nodes:  1/2 Ready (node0 172.18.0.10 Ready, node1 172.18.0.11 NotReady)
  dns:    up on 10.96.0.10 (served from node0 172.18.0.10:53)
  proxy:  nftables (auto: nftables works in the node namespaces)
  agent-node0: missing: this svcnet build has no `agent` subcommand
  logs:   /d/logs

  export KUBECONFIG=/d/kubeconfig
  kubectl get nodes
  svcnet shell node0      # a shell inside node0

Press Ctrl-C to stop the cluster and remove the lab."
        );
    }

    #[test]
    fn lab_plan_routes_load_balancer_ips_to_node0() {
        let plan = svcnet_netlab::plan(&lab_config("lab", 3).unwrap()).unwrap();
        let routes: Vec<String> = plan.host_routes.iter().map(|r| r.to_string()).collect();
        assert!(
            routes.contains(&"172.18.0.192/26 via 172.18.0.10".to_string()),
            "{routes:?}"
        );
    }
}

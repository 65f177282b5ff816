//! Root-only end-to-end tests: a real API server, an agent inside a node network namespace that
//! the test creates, and pods as real processes in their own namespaces.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use svcnet_agent::{PodRef, PodRuntime};
use tokio::io::AsyncReadExt;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let _ = std::process::Command::new("ip").args(args).output();
}

/// A node namespace with an agent in it; everything is removed on drop, also when a test fails.
struct Node {
    name: String,
    netns: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    runtime: Arc<dyn PodRuntime>,
    _root: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        ip(&["netns", "del", &self.netns]);
    }
}

async fn start_node(cluster: &svcnet_testkit::Cluster, cidr: &str) -> Node {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let netns = format!("svct-{}-{n}", std::process::id());
    ip(&["netns", "del", &netns]);
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &netns])
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip netns add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ip(&["-n", &netns, "link", "set", "lo", "up"]);
    let ns_path = format!("/run/netns/{netns}");
    // The API server listens on the host's loopback; forward the node's loopback port to it.
    let port = cluster.addr.port();
    let listener = {
        let p = ns_path.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(p).expect("netns");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind in node");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .join()
        .expect("listener thread")
    };
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let api = cluster.addr;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(api).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let root = tempfile::tempdir().expect("tempdir");
    let args = svcnet_agent::AgentArgs {
        kubeconfig: Some(cluster.kubeconfig.clone()),
        node_name: format!("node-{n}"),
        node_ip: "172.31.0.2".parse().expect("ip"),
        pod_cidr: cidr.into(),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        root_dir: root.path().to_path_buf(),
        streaming_listen: "0.0.0.0:10250".parse().expect("addr"),
        streaming_token_file: None,
        bridge: "svcpods0".into(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (rt_tx, rt_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).expect("netns");
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        // Runtime threads start from this one and so live in the node namespace too.
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let mut cfg = args.config().expect("config");
            cfg.helper = vec![env!("CARGO_BIN_EXE_svcnet-agent").into(), "builtin".into()];
            let client = args.client().await.expect("client");
            let agent = svcnet_agent::Agent::new(cfg, client).expect("agent");
            let _ = rt_tx.send(agent.runtime());
            if let Err(e) = agent
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
            {
                eprintln!("agent stopped: {e}");
            }
        });
    });
    let runtime = rt_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("agent started");
    Node {
        name: format!("node-{n}"),
        netns,
        stop: Some(stop_tx),
        thread: Some(thread),
        runtime,
        _root: root,
    }
}

async fn create_pod(api: &Api<Pod>, node: &str, v: serde_json::Value) -> Pod {
    let mut v = v;
    v["spec"]["nodeName"] = json!(node);
    v["spec"]["terminationGracePeriodSeconds"] = v["spec"]["terminationGracePeriodSeconds"]
        .take()
        .as_i64()
        .map_or(json!(2), |g| json!(g));
    let pod: Pod = serde_json::from_value(v).expect("pod json");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// Polls the pod until `f` says yes (30 s at most); panics with the last status otherwise.
async fn wait_pod(api: &Api<Pod>, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let p = api.get(name).await.expect("get pod");
        if f(&p) {
            return p;
        }
        if Instant::now() > until {
            panic!(
                "{name}: timed out waiting for {what}; status {}",
                serde_json::to_string_pretty(&p.status).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(p: &Pod, t: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

fn cstatus(p: &Pod, i: usize) -> serde_json::Value {
    let s = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    s.get(i)
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .unwrap_or_default()
}

async fn exec_out(rt: &Arc<dyn PodRuntime>, ns: &str, pod: &str, cmd: &[&str]) -> (String, i32) {
    let r = PodRef {
        namespace: ns.into(),
        name: pod.into(),
        uid: None,
    };
    let mut s = rt
        .exec(
            &r,
            None,
            cmd.iter().map(|c| c.to_string()).collect(),
            false,
            false,
        )
        .await
        .expect("exec");
    let mut out = String::new();
    if let Some(mut o) = s.stdout.take() {
        let _ = tokio::time::timeout(Duration::from_secs(20), o.read_to_string(&mut out)).await;
    }
    let code = s.wait.await.expect("wait").code();
    (out, code)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_with_ips_env_restarts_and_graceful_deletion() {
    assert!(is_root(), "these tests need root (network namespaces)");
    let cluster = svcnet_testkit::Cluster::start().await;
    let node = start_node(&cluster, "10.250.1.0/24").await;
    let client = cluster.client().await;
    let node_name = node.name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = |name: &str| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379, "targetPort": 6379}]}})).expect("svc")
    };
    let before = svcs
        .create(&PostParams::default(), &svc("redis-master"))
        .await
        .expect("svc");
    let redis_ip = before.spec.and_then(|s| s.cluster_ip).expect("cluster ip");
    let tmp = tempfile::tempdir().expect("tempdir");
    let pidfile = tmp.path().join("pid");

    // A shell container and a built-in agnhost netexec server.
    create_pod(
        &pods,
        &node_name,
        json!({"metadata": {"name": "client"}, "spec": {"containers": [{
        "name": "sh", "image": "busybox",
        "command": ["sh", "-c", // `$$` is an escaped `$` in Kubernetes command expansion, as upstream.
        format!("echo $$$$ > {}; exec sleep 3600", pidfile.display())]}]}}),
    )
    .await;
    create_pod(
        &pods,
        &node_name,
        json!({"metadata": {"name": "server"}, "spec": {"containers": [{
        "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}),
    )
    .await;
    let ready = |p: &Pod| condition(p, "Ready").as_deref() == Some("True");
    let client_pod = wait_pod(&pods, "client", "Ready", ready).await;
    let server_pod = wait_pod(&pods, "server", "Ready", ready).await;
    let st = client_pod.status.clone().unwrap_or_default();
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.host_ip.as_deref(), Some("172.31.0.2"));
    let server_ip = server_pod.status.and_then(|s| s.pod_ip).expect("server ip");
    assert!(server_ip.starts_with("10.250.1."), "{server_ip}");

    // Service created after the pods: not in their environment.
    svcs.create(&PostParams::default(), &svc("redis-late"))
        .await
        .expect("svc");
    let rt = node.runtime.clone();
    let (env, code) = exec_out(&rt, "default", "client", &["sh", "-c", "env | sort"]).await;
    assert_eq!(code, 0);
    for want in [
        format!("REDIS_MASTER_SERVICE_HOST={redis_ip}"),
        "REDIS_MASTER_SERVICE_PORT=6379".into(),
        format!("REDIS_MASTER_PORT=tcp://{redis_ip}:6379"),
        format!("REDIS_MASTER_PORT_6379_TCP_ADDR={redis_ip}"),
        "REDIS_MASTER_PORT_6379_TCP_PROTO=tcp".into(),
        "KUBERNETES_SERVICE_PORT=443".into(),
        "HOSTNAME=client".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in\n{env}");
    }
    assert!(
        !env.contains("REDIS_LATE"),
        "late service leaked into env:\n{env}"
    );

    // Pod files and pod-to-pod traffic by IP.
    let (resolv, _) = exec_out(&rt, "default", "client", &["cat", "/etc/resolv.conf"]).await;
    assert!(
        resolv.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(
        resolv.contains("nameserver 10.96.0.10\n") && resolv.ends_with("options ndots:5\n"),
        "{resolv}"
    );
    let (hosts, _) = exec_out(&rt, "default", "client", &["cat", "/etc/hosts"]).await;
    let client_ip = st.pod_ip.clone().expect("client ip");
    assert!(
        hosts.ends_with(&format!("{client_ip}\tclient\n")),
        "{hosts}"
    );
    let url = format!("http://{server_ip}:8080/hostname");
    let (answer, code) = exec_out(
        &rt,
        "default",
        "client",
        &["curl", "-s", "--max-time", "5", &url],
    )
    .await;
    assert_eq!((answer.as_str(), code), ("server", 0));
    let (echo, _) = exec_out(
        &rt,
        "default",
        "client",
        &[
            "curl",
            "-s",
            "--max-time",
            "5",
            &format!("http://{server_ip}:8080/clientip"),
        ],
    )
    .await;
    assert!(echo.starts_with(&format!("{client_ip}:")), "{echo}");

    // A killed container process is restarted.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let restarted = wait_pod(&pods, "client", "a restart", |p| {
        cstatus(p, 0)["restartCount"] == json!(1) && cstatus(p, 0)["state"]["running"].is_object()
    })
    .await;
    let last = &cstatus(&restarted, 0)["lastState"]["terminated"];
    assert_eq!(
        (last["exitCode"].clone(), last["reason"].clone()),
        (json!(137), json!("Error")),
        "{last}"
    );

    // Graceful deletion: SIGTERM first, SIGKILL after the grace period, then the pod is gone.
    let marker = tmp.path().join("term");
    create_pod(&pods, &node_name, json!({"metadata": {"name": "stubborn"}, "spec": {
        "terminationGracePeriodSeconds": 3,
        "containers": [{"name": "sh", "image": "busybox", "command": ["sh", "-c",
            format!("trap 'echo TERM >> {}' TERM; while true; do sleep 0.1; done", marker.display())]}]}})).await;
    wait_pod(&pods, "stubborn", "Running", |p| {
        cstatus(p, 0)["state"]["running"].is_object()
    })
    .await;
    let t0 = Instant::now();
    pods.delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    let until = Instant::now() + Duration::from_secs(30);
    while pods.get_opt("stubborn").await.expect("get").is_some() {
        assert!(Instant::now() < until, "pod was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_secs(15),
        "deletion took {took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "TERM\n"
    );

    // Logs: what the container printed.
    let r = PodRef {
        namespace: "default".into(),
        name: "server".into(),
        uid: None,
    };
    let mut logs = String::new();
    node.runtime
        .logs(&r, None, Default::default())
        .await
        .expect("logs")
        .read_to_string(&mut logs)
        .await
        .expect("read");
    assert_eq!(logs, "Started HTTP server on port 8080\n");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_shows_reasons_and_the_agent_keeps_serving() {
    assert!(is_root(), "these tests need root (network namespaces)");
    let cluster = svcnet_testkit::Cluster::start().await;
    let node = start_node(&cluster, "10.250.2.0/24").await;
    let node_name = node.name.clone();
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "default");
    let tmp = tempfile::tempdir().expect("tempdir");
    let flag = tmp.path().join("ready");
    create_pod(&pods, &node_name, json!({"metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "c", "image": "redis:7"}]}})).await;
    create_pod(&pods, &node_name, json!({"metadata": {"name": "noexec"}, "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["/no/such/program"]}]}})).await;
    create_pod(
        &pods,
        &node_name,
        json!({"metadata": {"name": "clash"}, "spec": {"containers": [
        {"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27"}]}}),
    )
    .await;
    create_pod(&pods, &node_name, json!({"metadata": {"name": "gated"}, "spec": {"containers": [{"name": "c", "image": "busybox",
        "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["test", "-f", flag.display().to_string()]}, "periodSeconds": 1}}]}})).await;

    let waiting = |reason: &'static str| {
        move |p: &Pod| cstatus(p, 0)["state"]["waiting"]["reason"] == json!(reason)
    };
    let p = wait_pod(&pods, "noimage", "ErrImagePull", waiting("ErrImagePull")).await;
    let msg = cstatus(&p, 0)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with(
            "image \"redis:7\" is not available: svcnet runs containers from the node's filesystem"
        ),
        "{msg}"
    );
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    let p = wait_pod(
        &pods,
        "noexec",
        "RunContainerError",
        waiting("RunContainerError"),
    )
    .await;
    assert_eq!(
        cstatus(&p, 0)["state"]["waiting"]["message"],
        json!(
            "failed to start container process: exec: \"/no/such/program\": executable file not found in $PATH"
        )
    );

    // Two nginx containers on port 80: one of them fails to listen and says why.
    let p = wait_pod(&pods, "clash", "a port conflict", |p| {
        (0..2).any(|i| {
            cstatus(p, i)["lastState"]["terminated"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("listen on 0.0.0.0:80"))
        })
    })
    .await;
    let msgs: Vec<String> = (0..2)
        .filter_map(|i| {
            cstatus(&p, i)["lastState"]["terminated"]["message"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("Address in use")
            || m.contains("address already in use")
            || m.contains("Address already in use")),
        "{msgs:?}"
    );

    // Readiness gates Ready: not ready while the probe fails, ready once it passes.
    let p = wait_pod(&pods, "gated", "Running", |p| {
        cstatus(p, 0)["state"]["running"].is_object()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p2 = pods.get("gated").await.expect("get");
    assert_eq!(
        condition(&p2, "Ready").as_deref(),
        Some("False"),
        "{:?}",
        p.status
    );
    assert_eq!(condition(&p2, "ContainersReady").as_deref(), Some("False"));
    let ready_msg = p2
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "Ready")
                .and_then(|c| c.message.clone())
        });
    assert_eq!(
        ready_msg.as_deref(),
        Some("containers with unready status: [c]")
    );
    std::fs::write(&flag, "").expect("flag");
    wait_pod(&pods, "gated", "Ready", |p| {
        condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    drop(node);
}

//! Shared helpers for the controller integration tests: a cluster with fake nodes, a fake kubelet, bounded waits.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use svcnet_controllers::{Config, Controllers};
use svcnet_testkit::Cluster;

/// Polls `f` every 50 ms until it returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Aborts the task on drop (controllers, fake kubelet, heartbeats).
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn spawn_controllers(client: kube::Client, cfg: Config) -> Task {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "svcnet_controllers=warn".into()),
        )
        .with_test_writer()
        .try_init();
    Task(tokio::spawn(async move {
        if let Err(e) = Controllers::new(client, cfg).run().await {
            eprintln!("controllers stopped: {e}");
        }
    }))
}

/// Test config: node timings long enough that nodes without heartbeats stay Ready during a test.
pub fn config() -> Config {
    Config {
        timing: svcnet_controllers::nodelifecycle::Timing {
            grace: Duration::from_secs(300),
            eviction: Duration::from_secs(300),
        },
        ..Config::default()
    }
}

pub async fn apply(client: &kube::Client, ns: Option<&str>, v: serde_json::Value) {
    let kind = v["kind"].as_str().unwrap_or("").to_owned();
    let name = v["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let body = serde_json::to_vec(&v).expect("json");
    let url = match (kind.as_str(), ns) {
        ("Deployment", Some(ns)) => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        ("ReplicaSet", Some(ns)) => format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
        ("Service", Some(ns)) => format!("/api/v1/namespaces/{ns}/services"),
        ("Pod", Some(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
        ("Endpoints", Some(ns)) => format!("/api/v1/namespaces/{ns}/endpoints"),
        ("Namespace", None) => "/api/v1/namespaces".to_owned(),
        ("Node", None) => "/api/v1/nodes".to_owned(),
        other => panic!("apply: unsupported {other:?}"),
    };
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let r: Result<serde_json::Value, _> = client.request(req).await;
    if let Err(e) = r {
        panic!("creating {kind} {name}: {e}");
    }
}

/// Registers a Ready node with a Lease.
pub async fn add_node(client: &kube::Client, name: &str) {
    apply(client, None, json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).await;
    set_node_ready(client, name).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}});
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(lease).expect("lease"),
        )
        .await
        .expect("create lease");
}

pub async fn set_node_ready(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("node ready");
}

pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Renews the Leases of the nodes in `alive` every 300 ms.
pub fn heartbeats(client: kube::Client, alive: Arc<Mutex<BTreeSet<String>>>) -> Task {
    Task(tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let names: Vec<String> = alive
                .lock()
                .map(|a| a.iter().cloned().collect())
                .unwrap_or_default();
            for n in names {
                let patch = json!({"spec": {"renewTime": now_micro()}});
                let _ = leases
                    .patch(&n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }))
}

static NEXT_IP: AtomicU32 = AtomicU32::new(2);

pub fn next_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 1)
}

/// Marks a pod Running and Ready (or not) with an IP, as a kubelet would.
pub async fn set_pod_status(client: &kube::Client, ns: &str, name: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let cur = pods.get(name).await.expect("pod");
    let ip = cur
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(next_ip);
    let now = jiff::Timestamp::now().to_string();
    let st = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": st, "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": st, "lastTransitionTime": now}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pod status");
}

/// A fake kubelet for the nodes in `alive`: makes bound pods Ready after
/// `delay` and confirms deletions of terminating ones.
pub fn kubelet(client: kube::Client, alive: Arc<Mutex<BTreeSet<String>>>, delay: Duration) -> Task {
    Task(tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let mut first_seen: std::collections::HashMap<String, Instant> = Default::default();
        loop {
            let names: BTreeSet<String> = alive.lock().map(|a| a.clone()).unwrap_or_default();
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                        continue;
                    };
                    if !names.contains(&node) {
                        continue;
                    }
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    if p.metadata.deletion_timestamp.is_some() {
                        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                        let _ = api
                            .delete(
                                &name,
                                &DeleteParams {
                                    grace_period_seconds: Some(0),
                                    ..Default::default()
                                },
                            )
                            .await;
                        continue;
                    }
                    let ready = svcnet_core::endpoints::pod_is_ready(&p);
                    let seen = *first_seen.entry(uid).or_insert_with(Instant::now);
                    if !ready && seen.elapsed() >= delay {
                        set_pod_status(&client, &ns, &name, true).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
}

pub fn alive(names: &[&str]) -> Arc<Mutex<BTreeSet<String>>> {
    Arc::new(Mutex::new(names.iter().map(|s| (*s).to_owned()).collect()))
}

pub async fn cluster() -> (Cluster, kube::Client) {
    let c = Cluster::start().await;
    let client = c.client().await;
    (c, client)
}

pub async fn namespace(client: &kube::Client, ns: &str) {
    apply(
        client,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .await;
}

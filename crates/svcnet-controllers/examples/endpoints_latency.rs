//! Benchmark: Kubernetes' "Service endpoints latency" — 200 Services created 15 at a time, each selecting one running pod.
//!
//! Prints p50/p90/p99 of the time from the create call until a watch sees
//! the Service's Endpoints with an address. Upstream's conformance limits
//! are p50 ≤ 20 s and p99 ≤ 50 s; svcnet's target is p99 ≤ 100 ms.
//! Run: `cargo run --release -p svcnet-controllers --example endpoints_latency`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use svcnet_controllers::{Config, Controllers};

const SERVICES: usize = 200;
const PARALLEL: usize = 15;

#[tokio::main]
async fn main() {
    let cluster = svcnet_testkit::Cluster::start().await;
    let client = cluster.client().await;
    let ctl = tokio::spawn(Controllers::new(client.clone(), Config::default()).run());

    // One running, ready pod on one Ready node.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let now = jiff::Timestamp::now().to_string();
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("node ready");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "pause", "labels": {"app": "latency"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let st = json!({"status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("pause", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .expect("pod status");

    // When a watch first saw each Endpoints with an address.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let seen_w = seen.clone();
    let watch = tokio::spawn(async move {
        let stream = watcher(eps, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(e)) = stream.next().await {
            let has = e
                .subsets
                .iter()
                .flatten()
                .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
            if has && let (Some(name), Ok(mut m)) = (e.metadata.name.clone(), seen_w.lock()) {
                m.entry(name).or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (client, next, seen, latencies) = (
            client.clone(),
            next.clone(),
            seen.clone(),
            latencies.clone(),
        );
        workers.push(tokio::spawn(async move {
            let svcs: Api<Service> = Api::namespaced(client, "default");
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= SERVICES {
                    return;
                }
                let name = format!("latency-svc-{i:03}");
                let svc: Service = serde_json::from_value(json!({"metadata": {"name": name},
                    "spec": {"selector": {"app": "latency"}, "ports": [{"port": 80, "targetPort": 80}]}}))
                .expect("service");
                let t0 = Instant::now();
                svcs.create(&PostParams::default(), &svc).await.expect("create service");
                let deadline = t0 + Duration::from_secs(60);
                loop {
                    if let Some(t) = seen.lock().ok().and_then(|m| m.get(&name).copied()) {
                        if let Ok(mut l) = latencies.lock() {
                            l.push(t.saturating_duration_since(t0));
                        }
                        break;
                    }
                    assert!(Instant::now() < deadline, "{name}: no endpoints within 60 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let total = started.elapsed();
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "Service endpoints latency: {} services, {PARALLEL} at a time, {total:.2?} total",
        l.len()
    );
    println!(
        "  p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        l.last().copied().unwrap_or_default()
    );
    println!("  upstream limits: p50 <= 20s, p99 <= 50s; svcnet target: p99 <= 100ms");
    watch.abort();
    ctl.abort();
}

//! Deployments, ReplicaSets, scheduling, node loss, garbage collection and leader election against a real API server.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use serde_json::json;
use svcnet_controllers::leader::Settings;
use svcnet_controllers::nodelifecycle::Timing;

fn deployment(
    name: &str,
    replicas: i32,
    image: &str,
    strategy: serde_json::Value,
) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 80}]}]}}}})
}

/// Active (not terminating) pods of app `app`: (name, node, ready).
async fn pods_of(client: &kube::Client, ns: &str, app: &str) -> Vec<(String, String, bool)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let l = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut v: Vec<(String, String, bool)> = l
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let ready = svcnet_core::endpoints::pod_is_ready(&p);
            (
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_default(),
                ready,
            )
        })
        .collect();
    v.sort();
    v
}

async fn ready_count(client: &kube::Client, ns: &str, app: &str) -> usize {
    pods_of(client, ns, app)
        .await
        .iter()
        .filter(|p| p.2)
        .count()
}

async fn deployment_status(client: &kube::Client, ns: &str, name: &str) -> (i32, i32, i32, i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let s = api
        .get(name)
        .await
        .ok()
        .and_then(|d| d.status)
        .unwrap_or_default();
    (
        s.replicas.unwrap_or(0),
        s.updated_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

async fn wait_rolled_out(client: &kube::Client, ns: &str, name: &str, n: i32) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    eventually(&format!("deployment {name} at {n}/{n}"), 30, || async {
        let st = deployment_status(client, ns, name).await;
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .ok()?;
        let observed = d.status.and_then(|s| s.observed_generation) >= d.metadata.generation;
        // Old ReplicaSets scaled to zero too.
        let rs = api
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .ok()?;
        let active: i32 = rs
            .items
            .iter()
            .filter_map(|r| r.status.as_ref())
            .map(|s| s.replicas)
            .sum();
        let wanted: i32 = rs
            .items
            .iter()
            .filter_map(|r| r.spec.as_ref()?.replicas)
            .sum();
        (observed && st == (n, n, n, n) && active == n && wanted == n).then_some(())
    })
    .await;
}

async fn event_reasons(c: &svcnet_testkit::Cluster) -> Vec<String> {
    let out = c
        .ok(&[
            "get",
            "events",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ])
        .await;
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_scales_spreads_and_replaces_pods() {
    let (c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    add_node(&client, "n1").await;
    add_node(&client, "n2").await;
    let nodes = alive(&["n1", "n2"]);
    let _kubelet = kubelet(client.clone(), nodes.clone(), Duration::from_millis(0));
    let ns = "default";
    apply(
        &client,
        Some(ns),
        deployment("web", 4, "nginx:1", json!({"type": "RollingUpdate"})),
    )
    .await;
    wait_rolled_out(&client, ns, "web", 4).await;
    let pods = pods_of(&client, ns, "web").await;
    let per_node = |pods: &[(String, String, bool)]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for p in pods {
            *m.entry(p.1.clone()).or_default() += 1;
        }
        m
    };
    assert_eq!(
        per_node(&pods),
        BTreeMap::from([("n1".to_owned(), 2), ("n2".to_owned(), 2)])
    );
    // The kubectl view users see.
    let out = c.ok(&["get", "deploy", "web", "--no-headers"]).await;
    assert_eq!(
        out.split_whitespace().take(4).collect::<Vec<_>>(),
        ["web", "4/4", "4", "4"]
    );
    let out = c
        .ok(&["rollout", "status", "deployment/web", "--timeout=10s"])
        .await;
    assert_eq!(out.trim(), "deployment \"web\" successfully rolled out");

    // Scale up and down through the scale subresource.
    c.ok(&["scale", "deployment/web", "--replicas=6"]).await;
    wait_rolled_out(&client, ns, "web", 6).await;
    c.ok(&["scale", "deployment/web", "--replicas=2"]).await;
    wait_rolled_out(&client, ns, "web", 2).await;
    assert_eq!(pods_of(&client, ns, "web").await.len(), 2);

    // A deleted pod is replaced.
    let victim = pods_of(&client, ns, "web").await[0].0.clone();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.delete(
        &victim,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    let replaced = eventually("a replacement pod", 15, || async {
        let p = pods_of(&client, ns, "web").await;
        (p.len() == 2 && p.iter().all(|x| x.0 != victim && x.2)).then_some(p)
    })
    .await;
    assert_eq!(replaced.len(), 2);

    // A pod that cannot fit anywhere: FailedScheduling with upstream's message.
    apply(&client, Some(ns), json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "nginx"}]}})).await;
    let msg = eventually("FailedScheduling", 15, || async {
        let out = c
            .ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=picky,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[0].message}",
            ])
            .await;
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let reasons = event_reasons(&c).await;
    for want in [
        "FailedScheduling",
        "Scheduled",
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "SuccessfulDelete",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "missing event {want} in {reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_minimum_ready_and_recreate_replaces_all() {
    let (c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    add_node(&client, "n1").await;
    add_node(&client, "n2").await;
    let nodes = alive(&["n1", "n2"]);
    let _kubelet = kubelet(client.clone(), nodes.clone(), Duration::from_millis(300));
    let ns = "default";
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    apply(
        &client,
        Some(ns),
        deployment("roll", 4, "nginx:1", strategy),
    )
    .await;
    wait_rolled_out(&client, ns, "roll", 4).await;

    // Watch the ready count at every moment of the rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let min_seen = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (client, stop, min_seen) = (client.clone(), stop.clone(), min_seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = ready_count(&client, "default", "roll").await;
                min_seen.fetch_min(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    c.ok(&["set", "image", "deployment/roll", "c=nginx:2"])
        .await;
    wait_rolled_out(&client, ns, "roll", 4).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let min = min_seen.load(Ordering::Relaxed);
    assert!(
        (3..=4).contains(&min),
        "replicas - maxUnavailable = 3 ready pods at every moment, saw {min}"
    );
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let sets = rs
        .list(&ListParams::default().labels("app=roll"))
        .await
        .expect("rs")
        .items;
    let mut revs: Vec<(String, i32)> = sets
        .iter()
        .map(|r| {
            let rev = r
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .get("deployment.kubernetes.io/revision")
                .cloned()
                .unwrap_or_default();
            (rev, r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1))
        })
        .collect();
    revs.sort();
    assert_eq!(revs, vec![("1".to_owned(), 0), ("2".to_owned(), 4)]);
    let hist = c.ok(&["rollout", "history", "deployment/roll"]).await;
    let rows: Vec<&str> = hist
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(rows, ["1", "2"]);

    // Recreate: no new pod before every old one is gone.
    let dapi: Api<Deployment> = Api::namespaced(client.clone(), ns);
    dapi.patch(
        "roll",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}})),
    )
    .await
    .expect("recreate");
    c.ok(&["set", "image", "deployment/roll", "c=nginx:3"])
        .await;
    wait_rolled_out(&client, ns, "roll", 4).await;
    let images: Vec<String> = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=roll"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            p.spec
                .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        })
        .collect();
    assert_eq!(images, vec!["nginx:3"; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_node_endpoints_go_not_ready_and_pods_move() {
    let (_c, client) = cluster().await;
    let mut cfg = config();
    cfg.timing = Timing {
        grace: Duration::from_secs(2),
        eviction: Duration::from_secs(2),
    };
    let _ctl = spawn_controllers(client.clone(), cfg);
    add_node(&client, "n1").await;
    add_node(&client, "n2").await;
    let nodes = alive(&["n1", "n2"]);
    let _hb = heartbeats(client.clone(), nodes.clone());
    let _kubelet = kubelet(client.clone(), nodes.clone(), Duration::from_millis(0));
    let ns = "default";
    apply(
        &client,
        Some(ns),
        deployment("app", 2, "nginx", json!({"type": "RollingUpdate"})),
    )
    .await;
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80}]}}),
    )
    .await;
    wait_rolled_out(&client, ns, "app", 2).await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    // (ready nodes, not-ready nodes) of the Service's endpoints.
    let ep_nodes = || async {
        let e = eps.get("app").await.ok()?;
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for s in e.subsets.unwrap_or_default() {
            ready.extend(
                s.addresses
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| a.node_name),
            );
            not_ready.extend(
                s.not_ready_addresses
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| a.node_name),
            );
        }
        ready.sort();
        not_ready.sort();
        Some((ready, not_ready))
    };
    let two = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
    eventually("endpoints on both nodes", 15, || async {
        ep_nodes().await.filter(|e| e.0 == two("n1", "n2"))
    })
    .await;

    // n2 goes silent.
    if let Ok(mut a) = nodes.lock() {
        a.remove("n2");
    }
    eventually("n2's endpoint not ready", 15, || async {
        ep_nodes()
            .await
            .filter(|e| e.0 == vec!["n1".to_owned()] && e.1 == vec!["n2".to_owned()])
    })
    .await;
    let node: k8s_openapi::api::core::v1::Node =
        Api::all(client.clone()).get("n2").await.expect("node");
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap_or_default();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    // Evicted and recreated on n1.
    eventually("both endpoints on n1", 20, || async {
        ep_nodes()
            .await
            .filter(|e| e.0 == two("n1", "n1") && e.1.is_empty())
    })
    .await;
    let pods = pods_of(&client, ns, "app").await;
    assert_eq!(
        pods.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        ["n1", "n1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_background_foreground_orphan() {
    let (_c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    let ns = "default";
    // No nodes: pods stay pending and are deleted at once.
    for name in ["bg", "fg", "orph"] {
        apply(
            &client,
            Some(ns),
            deployment(name, 2, "nginx", json!({"type": "RollingUpdate"})),
        )
        .await;
    }
    for name in ["bg", "fg", "orph"] {
        eventually(&format!("{name} pods"), 15, || async {
            let p = pods_of(&client, ns, name).await;
            (p.len() == 2).then_some(())
        })
        .await;
    }
    let dapi: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rsapi: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let del = |p: PropagationPolicy| DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    };
    dapi.delete("bg", &del(PropagationPolicy::Background))
        .await
        .expect("bg");
    dapi.delete("fg", &del(PropagationPolicy::Foreground))
        .await
        .expect("fg");
    for name in ["bg", "fg"] {
        eventually(&format!("{name} collected"), 15, || async {
            let rs = rsapi
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await
                .ok()?
                .items;
            let d = dapi.get_opt(name).await.ok()?;
            (rs.is_empty() && d.is_none() && pods_of(&client, ns, name).await.is_empty())
                .then_some(())
        })
        .await;
    }
    // Orphan: the ReplicaSet goes, its pods stay without an owner.
    let rs = rsapi
        .list(&ListParams::default().labels("app=orph"))
        .await
        .expect("rs")
        .items;
    let rsname = rs[0].metadata.name.clone().unwrap_or_default();
    dapi.delete("orph", &del(PropagationPolicy::Orphan))
        .await
        .expect("orphan deployment");
    rsapi
        .delete(&rsname, &del(PropagationPolicy::Orphan))
        .await
        .expect("orphan rs");
    eventually("orphaned pods", 15, || async {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let l = pods
            .list(&ListParams::default().labels("app=orph"))
            .await
            .ok()?
            .items;
        let gone = rsapi.get_opt(&rsname).await.ok()?.is_none();
        (gone
            && l.len() == 2
            && l.iter().all(|p| {
                p.metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default()
                    .is_empty()
            }))
        .then_some(())
    })
    .await;
}

fn leader(id: &str) -> Settings {
    Settings {
        namespace: "kube-system".into(),
        name: "svcnet-controller-manager".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_hand_over_when_the_leader_dies() {
    let (_c, client) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = || async {
        leases
            .get_opt("svcnet-controller-manager")
            .await
            .ok()?
            .and_then(|l| l.spec?.holder_identity)
    };
    let mut a_cfg = config();
    a_cfg.leader = Some(leader("a"));
    let a = spawn_controllers(client.clone(), a_cfg);
    eventually("a leads", 10, || async {
        holder().await.filter(|h| h == "a")
    })
    .await;
    let mut b_cfg = config();
    b_cfg.leader = Some(leader("b"));
    let _b = spawn_controllers(client.clone(), b_cfg);
    // b waits while a renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder().await.as_deref(), Some("a"));
    // a's controllers work.
    apply(
        &client,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eventually("endpoints from a", 10, || async {
        eps.get_opt("one").await.ok()?
    })
    .await;
    // Kill a (no release): b takes over after the lease duration and serves.
    drop(a);
    eventually("b leads", 10, || async {
        holder().await.filter(|h| h == "b")
    })
    .await;
    let l = leases
        .get("svcnet-controller-manager")
        .await
        .expect("lease");
    assert_eq!(l.spec.and_then(|s| s.lease_transitions), Some(1));
    apply(
        &client,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "two"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
    )
    .await;
    eventually("endpoints from b", 10, || async {
        eps.get_opt("two").await.ok()?
    })
    .await;
}

//! Endpoints, EndpointSlice, mirroring and LoadBalancer controllers against a real API server on loopback.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use svcnet_controllers::lbpool::Pool;

fn pod_json(
    name: &str,
    labels: serde_json::Value,
    node: &str,
    ports: serde_json::Value,
) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9", "ports": ports}]}})
}

/// Endpoints as `{ip-less pod name: [ports]}` per readiness, like upstream's `validateEndpointsPortsOrFail`.
async fn endpoint_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Option<(BTreeMap<String, Vec<i32>>, BTreeMap<String, Vec<i32>>)> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let ep = api.get_opt(name).await.ok()??;
    let mut ready: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut not_ready: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for ss in ep.subsets.unwrap_or_default() {
        let ports: Vec<i32> = ss.ports.iter().flatten().map(|p| p.port).collect();
        for (addrs, out) in [
            (ss.addresses, &mut ready),
            (ss.not_ready_addresses, &mut not_ready),
        ] {
            for a in addrs.unwrap_or_default() {
                let pod = a.target_ref.and_then(|t| t.name).unwrap_or_default();
                let e = out.entry(pod).or_default();
                e.extend(ports.iter().copied());
                e.sort();
            }
        }
    }
    Some((ready, not_ready))
}

fn m(pairs: &[(&str, &[i32])]) -> BTreeMap<String, Vec<i32>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect()
}

/// Slices of a Service as sorted rows "ports | pod:ready/serving/terminating ...".
async fn slice_rows(client: &kube::Client, ns: &str, svc: &str) -> Vec<String> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let mut rows: Vec<String> = api
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let mut ports: Vec<String> = s
                .ports
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or(0)
                    )
                })
                .collect();
            ports.sort();
            let mut eps: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.clone().unwrap_or_default();
                    let f = |b: Option<bool>| if b.unwrap_or(false) { "1" } else { "0" };
                    format!(
                        "{}:{}{}{}",
                        e.target_ref
                            .as_ref()
                            .and_then(|t| t.name.clone())
                            .unwrap_or_default(),
                        f(c.ready),
                        f(c.serving),
                        f(c.terminating)
                    )
                })
                .collect();
            eps.sort();
            format!("{} | {}", ports.join(","), eps.join(" "))
        })
        .collect();
    rows.sort();
    rows
}

async fn wait_endpoints(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ready: BTreeMap<String, Vec<i32>>,
    not_ready: BTreeMap<String, Vec<i32>>,
) {
    let want = (ready, not_ready);
    let mut last = None;
    let found = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            let got = endpoint_map(client, ns, name).await;
            if got.as_ref() == Some(&want) {
                return;
            }
            last = got;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "endpoints {ns}/{name}: want {want:?}, last {last:?}"
    );
}

async fn wait_slices(client: &kube::Client, ns: &str, svc: &str, want: &[&str]) {
    let mut last = Vec::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            let got = slice_rows(client, ns, svc).await;
            if got == want {
                return;
            }
            last = got;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "slices of {ns}/{svc}: want {want:?}, last {last:?}"
    );
}

async fn delete_pod_now(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("delete pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_basic_and_multiport_endpoints_from_pods() {
    let (_c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    add_node(&client, "n1").await;
    let ns = "default";

    // "should serve a basic endpoint from pods"
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "basic"},
        "spec": {"selector": {"app": "basic"}, "ports": [{"port": 80, "targetPort": 80}]}}),
    )
    .await;
    wait_endpoints(&client, ns, "basic", m(&[]), m(&[])).await;
    wait_slices(&client, ns, "basic", &[" | "]).await;
    apply(
        &client,
        Some(ns),
        pod_json(
            "pod1",
            json!({"app": "basic"}),
            "n1",
            json!([{"containerPort": 80}]),
        ),
    )
    .await;
    set_pod_status(&client, ns, "pod1", true).await;
    wait_endpoints(&client, ns, "basic", m(&[("pod1", &[80])]), m(&[])).await;
    apply(
        &client,
        Some(ns),
        pod_json(
            "pod2",
            json!({"app": "basic"}),
            "n1",
            json!([{"containerPort": 80}]),
        ),
    )
    .await;
    set_pod_status(&client, ns, "pod2", true).await;
    wait_endpoints(
        &client,
        ns,
        "basic",
        m(&[("pod1", &[80]), ("pod2", &[80])]),
        m(&[]),
    )
    .await;
    wait_slices(&client, ns, "basic", &["=80 | pod1:110 pod2:110"]).await;
    delete_pod_now(&client, ns, "pod1").await;
    wait_endpoints(&client, ns, "basic", m(&[("pod2", &[80])]), m(&[])).await;
    delete_pod_now(&client, ns, "pod2").await;
    wait_endpoints(&client, ns, "basic", m(&[]), m(&[])).await;

    // "should serve multiport endpoints from pods", with named targetPorts
    // whose numbers differ per pod.
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "multi"},
        "spec": {"selector": {"app": "multi"}, "ports": [
            {"name": "portname1", "port": 80, "targetPort": "svc1"},
            {"name": "portname2", "port": 81, "targetPort": "svc2"}]}}),
    )
    .await;
    apply(
        &client,
        Some(ns),
        pod_json(
            "mp1",
            json!({"app": "multi"}),
            "n1",
            json!([{"name": "svc1", "containerPort": 100}]),
        ),
    )
    .await;
    set_pod_status(&client, ns, "mp1", true).await;
    wait_endpoints(&client, ns, "multi", m(&[("mp1", &[100])]), m(&[])).await;
    apply(
        &client,
        Some(ns),
        pod_json(
            "mp2",
            json!({"app": "multi"}),
            "n1",
            json!([{"name": "svc2", "containerPort": 101}]),
        ),
    )
    .await;
    set_pod_status(&client, ns, "mp2", true).await;
    wait_endpoints(
        &client,
        ns,
        "multi",
        m(&[("mp1", &[100]), ("mp2", &[101])]),
        m(&[]),
    )
    .await;
    apply(
        &client,
        Some(ns),
        pod_json(
            "mp3",
            json!({"app": "multi"}),
            "n1",
            json!([{"name": "svc1", "containerPort": 200}, {"name": "svc2", "containerPort": 201}]),
        ),
    )
    .await;
    set_pod_status(&client, ns, "mp3", true).await;
    wait_endpoints(
        &client,
        ns,
        "multi",
        m(&[("mp1", &[100]), ("mp2", &[101]), ("mp3", &[200, 201])]),
        m(&[]),
    )
    .await;
    wait_slices(
        &client,
        ns,
        "multi",
        &[
            "portname1=100 | mp1:110",
            "portname1=200,portname2=201 | mp3:110",
            "portname2=101 | mp2:110",
        ],
    )
    .await;

    // A deleted slice comes back.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels("kubernetes.io/service-name=multi");
    for s in slices.list(&lp).await.expect("slices").items {
        slices
            .delete(
                s.metadata.name.as_deref().unwrap_or(""),
                &DeleteParams::default(),
            )
            .await
            .expect("delete slice");
    }
    wait_slices(
        &client,
        ns,
        "multi",
        &[
            "portname1=100 | mp1:110",
            "portname1=200,portname2=201 | mp3:110",
            "portname2=101 | mp2:110",
        ],
    )
    .await;
    // Deleted Endpoints come back too.
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    eps.delete("multi", &DeleteParams::default())
        .await
        .expect("delete endpoints");
    wait_endpoints(
        &client,
        ns,
        "multi",
        m(&[("mp1", &[100]), ("mp2", &[101]), ("mp3", &[200, 201])]),
        m(&[]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_terminating_and_publish_not_ready() {
    let (_c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    add_node(&client, "n1").await;
    let ns = "default";
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    apply(&client, Some(ns), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-all"},
        "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": true, "ports": [{"port": 80}]}})).await;
    apply(
        &client,
        Some(ns),
        pod_json("p", json!({"app": "web"}), "n1", json!([])),
    )
    .await;
    set_pod_status(&client, ns, "p", false).await;
    wait_endpoints(&client, ns, "web", m(&[]), m(&[("p", &[80])])).await;
    wait_slices(&client, ns, "web", &["=80 | p:000"]).await;
    wait_endpoints(&client, ns, "web-all", m(&[("p", &[80])]), m(&[])).await;
    wait_slices(&client, ns, "web-all", &["=80 | p:100"]).await;

    set_pod_status(&client, ns, "p", true).await;
    wait_endpoints(&client, ns, "web", m(&[("p", &[80])]), m(&[])).await;
    wait_slices(&client, ns, "web", &["=80 | p:110"]).await;

    // Graceful delete: terminating, still serving; Endpoints drop it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(60),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    wait_slices(&client, ns, "web", &["=80 | p:011"]).await;
    wait_endpoints(&client, ns, "web", m(&[]), m(&[])).await;
    // publishNotReadyAddresses keeps it ready.
    wait_slices(&client, ns, "web-all", &["=80 | p:111"]).await;
    wait_endpoints(&client, ns, "web-all", m(&[("p", &[80])]), m(&[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_endpoints_split_across_slices() {
    let (_c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    add_node(&client, "n1").await;
    let ns = "default";
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "big"},
        "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}}),
    )
    .await;
    for i in 0..130 {
        let name = format!("big-{i:03}");
        apply(
            &client,
            Some(ns),
            pod_json(&name, json!({"app": "big"}), "n1", json!([])),
        )
        .await;
        set_pod_status(&client, ns, &name, true).await;
    }
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let sizes = eventually("slices of 100 + 30", 20, || async {
        let l = api
            .list(&ListParams::default().labels("kubernetes.io/service-name=big"))
            .await
            .ok()?;
        let mut sizes: Vec<usize> = l.items.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        (sizes.iter().sum::<usize>() == 130).then_some(sizes)
    })
    .await;
    assert_eq!(sizes, vec![30, 100]);
    let (ready, _) = eventually("130 ready addresses", 20, || async {
        let got = endpoint_map(&client, ns, "big").await;
        got.filter(|(r, _)| r.len() == 130)
    })
    .await;
    assert_eq!(ready.len(), 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectorless_service_endpoints_are_mirrored_and_left_alone() {
    let (_c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    let ns = "default";
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
        "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    apply(&client, Some(ns), json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "http", "port": 8080}]}]})).await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let s = eventually("a mirrored slice", 15, || first_slice_of(&slices, "ext")).await;
    let labels = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslicemirroring-controller.k8s.io")
    );
    assert_eq!(
        s.endpoints
            .iter()
            .map(|e| e.addresses.clone())
            .collect::<Vec<_>>(),
        vec![vec!["192.0.2.10".to_owned()]]
    );
    assert_eq!(
        s.ports
            .clone()
            .unwrap_or_default()
            .first()
            .and_then(|p| p.port),
        Some(8080)
    );
    // The user's Endpoints stay as written.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let e = eps.get("ext").await.expect("endpoints");
    let ips: Vec<String> = e
        .subsets
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.addresses.clone().unwrap_or_default())
        .map(|a| a.ip)
        .collect();
    assert_eq!(ips, vec!["192.0.2.10".to_owned()]);

    // Endpoints written before their Service (a manifest listing them
    // first) are mirrored once the Service comes, and Endpoints without any
    // Service are left alone, as upstream.
    let ep_json = |name: &str, ip: &str| {
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 8080}]}]})
    };
    apply(&client, Some(ns), ep_json("early", "192.0.2.11")).await;
    apply(&client, Some(ns), ep_json("orphan", "192.0.2.12")).await;
    apply(
        &client,
        Some(ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "early"},
        "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    eventually("a mirrored slice of Endpoints written first", 15, || {
        first_slice_of(&slices, "early")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for name in ["early", "orphan"] {
        assert!(
            eps.get_opt(name).await.expect("get endpoints").is_some(),
            "Endpoints {name} were deleted"
        );
    }
}

/// The first EndpointSlice labelled for Service `svc`, if any.
async fn first_slice_of(slices: &Api<EndpointSlice>, svc: &str) -> Option<EndpointSlice> {
    let sel = format!("kubernetes.io/service-name={svc}");
    slices
        .list(&ListParams::default().labels(&sel))
        .await
        .ok()?
        .items
        .into_iter()
        .next()
}

async fn ingress_ip(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let s = api.get(name).await.ok()?;
    s.status?.load_balancer?.ingress?.first()?.ip.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_type_changes_and_load_balancer_ips() {
    let (c, client) = cluster().await;
    let mut cfg = config();
    cfg.lb_pool = Some(Pool::parse("172.18.0.200-172.18.0.201").expect("pool"));
    let _ctl = spawn_controllers(client.clone(), cfg);
    add_node(&client, "n1").await;
    let ns = "default";
    apply(
        &client,
        Some(ns),
        pod_json("p", json!({"app": "t"}), "n1", json!([])),
    )
    .await;
    set_pod_status(&client, ns, "p", true).await;
    apply(&client, Some(ns), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"},
        "spec": {"type": "ExternalName", "externalName": "example.com", "selector": {"app": "t"}, "ports": [{"port": 80}]}})).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let set_type = |v: serde_json::Value| {
        let svcs = svcs.clone();
        async move {
            svcs.patch("t", &PatchParams::default(), &Patch::Merge(&v))
                .await
                .expect("patch service");
        }
    };
    // ExternalName → ClusterIP: endpoints are served.
    set_type(json!({"spec": {"type": "ClusterIP", "externalName": null}})).await;
    wait_endpoints(&client, ns, "t", m(&[("p", &[80])]), m(&[])).await;
    wait_slices(&client, ns, "t", &["=80 | p:110"]).await;
    // → NodePort → LoadBalancer: an address from the pool.
    set_type(json!({"spec": {"type": "NodePort"}})).await;
    set_type(json!({"spec": {"type": "LoadBalancer"}})).await;
    let ip = eventually("an ingress IP", 15, || ingress_ip(&client, ns, "t")).await;
    assert_eq!(ip, "172.18.0.200");
    let out = c
        .ok(&[
            "get",
            "svc",
            "t",
            "-o",
            "jsonpath={.spec.type} {.status.loadBalancer.ingress[0].ip}",
        ])
        .await;
    assert_eq!(out, "LoadBalancer 172.18.0.200");
    // A second one gets the next address, a third stays pending.
    for (name, want) in [("lb2", Some("172.18.0.201")), ("lb3", None)] {
        apply(
            &client,
            Some(ns),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": "t"}, "ports": [{"port": 80}]}}),
        )
        .await;
        if let Some(want) = want {
            let got = eventually("second ingress IP", 15, || ingress_ip(&client, ns, name)).await;
            assert_eq!(got, want);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let row = c
        .ok(&[
            "get",
            "svc",
            "lb3",
            "--no-headers",
            "-o",
            "custom-columns=EXTERNAL:.status.loadBalancer.ingress[0].ip",
        ])
        .await;
    assert_eq!(row.trim(), "<none>");
    let events = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=lb3",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await;
    assert_eq!(events, "no addresses left in the LoadBalancer pool");
    // Back to ClusterIP: the address is released and goes to the pending one.
    set_type(json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": null}]}}))
        .await;
    eventually("released ingress", 15, || async {
        ingress_ip(&client, ns, "t").await.is_none().then_some(())
    })
    .await;
    let got = eventually("pending service gets the freed address", 15, || {
        ingress_ip(&client, ns, "lb3")
    })
    .await;
    assert_eq!(got, "172.18.0.200");
    // → ExternalName: endpoints controller keeps serving selected pods as upstream; slices are left as they were.
    set_type(json!({"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": null, "clusterIPs": null}})).await;
    wait_slices(&client, ns, "t", &["=80 | p:110"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_without_pool_stays_pending() {
    let (c, client) = cluster().await;
    let _ctl = spawn_controllers(client.clone(), config());
    apply(
        &client,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}}),
    )
    .await;
    wait_endpoints(&client, "default", "lb", m(&[]), m(&[])).await;
    let out = c.ok(&["get", "svc", "lb", "--no-headers"]).await;
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        cols.get(1..4),
        Some(
            &[
                "LoadBalancer",
                cols.get(2).copied().unwrap_or(""),
                "<pending>"
            ][..]
        )
    );
    assert!(cols.get(4).is_some_and(|p| p.starts_with("80:3")), "{out}");
}

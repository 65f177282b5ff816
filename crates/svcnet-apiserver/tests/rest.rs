//! REST semantics over real HTTPS with curl: concurrency, pagination, watch,
//! deletion rules, patches, limits, Service allocation across type changes.

use std::time::Duration;

use serde_json::{Value, json};
use svcnet_testkit::Cluster;

struct Http<'a> {
    c: &'a Cluster,
    token: String,
}

impl<'a> Http<'a> {
    fn new(c: &'a Cluster) -> Self {
        Http {
            token: c.token(),
            c,
        }
    }

    /// One request; returns (HTTP code, body as JSON or a string value).
    fn call(&self, method: &str, path: &str, body: Option<&Value>, ct: &str) -> (u16, Value) {
        let url = format!("https://{}{}", self.c.addr, path);
        let mut cmd = std::process::Command::new("curl");
        // HTTP/1.1: curl reports an early 413 on HTTP/2 as a transfer error.
        cmd.args(["-s", "--http1.1", "-m", "20", "-X", method, "--cacert"])
            .arg(self.c.ca())
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", &format!("Content-Type: {ct}")])
            .args(["-w", "\n%{http_code}"]);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        if let Some(b) = body {
            std::fs::write(file.path(), b.to_string()).expect("write body");
            cmd.arg("--data-binary")
                .arg(format!("@{}", file.path().display()));
        }
        let out = cmd.arg(&url).output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (code.trim().parse().unwrap_or(0), v)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, "application/json")
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&body), "application/json")
    }
    fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(&body), "application/json")
    }
    fn patch(&self, path: &str, body: Value, ct: &str) -> (u16, Value) {
        self.call("PATCH", path, Some(&body), ct)
    }
    fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call("DELETE", path, body.as_ref(), "application/json")
    }
}

fn lease(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "labels": labels}, "spec": {"holderIdentity": "x"}})
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
const SVCS: &str = "/api/v1/namespaces/default/services";
const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_concurrency_generate_name_and_patches() {
    let c = Cluster::start().await;
    let h = Http::new(&c);
    let (code, created) = h.post(LEASES, lease("a", json!({"x": "1"})));
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut upd = created.clone();
    upd["spec"]["holderIdentity"] = json!("y");
    let (code, after) = h.put(&format!("{LEASES}/a"), upd.clone());
    assert_eq!(code, 200, "{after}");
    assert!(
        after["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv.parse::<i64>().unwrap()
    );
    // The same stale resourceVersion again: 409.
    let (code, err) = h.put(&format!("{LEASES}/a"), upd);
    assert_eq!(code, 409);
    assert_eq!(err["reason"], "Conflict");
    assert_eq!(
        err["message"],
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // generateName.
    let (code, g) = h.post(
        LEASES,
        json!({"metadata": {"generateName": "gen-"}, "spec": {}}),
    );
    assert_eq!(code, 201, "{g}");
    let name = g["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    // Merge patch, JSON patch, strategic merge patch.
    let (code, p) = h.patch(
        &format!("{LEASES}/a"),
        json!({"metadata": {"labels": {"y": "2"}}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["metadata"]["labels"], json!({"x": "1", "y": "2"}));
    let (code, p) = h.patch(
        &format!("{LEASES}/a"),
        json!([{"op": "remove", "path": "/metadata/labels/x"}, {"op": "replace", "path": "/spec/holderIdentity", "value": "z"}]),
        "application/json-patch+json",
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["metadata"]["labels"], json!({"y": "2"}));
    assert_eq!(p["spec"]["holderIdentity"], "z");
    let (code, p) = h.patch(
        &format!("{LEASES}/a"),
        json!([{"op": "test", "path": "/spec/holderIdentity", "value": "nope"}]),
        "application/json-patch+json",
    );
    assert_eq!(code, 422, "{p}");
    // A no-op update does not change the resourceVersion.
    let (_, cur) = h.get(&format!("{LEASES}/a"));
    let (code, same) = h.put(&format!("{LEASES}/a"), cur.clone());
    assert_eq!(code, 200);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        cur["metadata"]["resourceVersion"]
    );
    // Missing object.
    let (code, nf) = h.patch(
        &format!("{LEASES}/none"),
        json!({}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 404);
    assert_eq!(
        nf["message"],
        "leases.coordination.k8s.io \"none\" not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_selectors_and_deletecollection() {
    let c = Cluster::start().await;
    let h = Http::new(&c);
    for i in 0..7 {
        let team = if i % 2 == 0 { "a" } else { "b" };
        assert_eq!(
            h.post(LEASES, lease(&format!("l{i}"), json!({"team": team})))
                .0,
            201
        );
    }
    let (code, page) = h.get(&format!("{LEASES}?limit=3"));
    assert_eq!(code, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["metadata"]["remainingItemCount"], 4);
    let rv = page["metadata"]["resourceVersion"].clone();
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    // A write in between does not show up in the continued (consistent) list.
    assert_eq!(h.post(LEASES, lease("l99", json!({"team": "a"}))).0, 201);
    let mut cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let (code, p) = h.get(&format!("{LEASES}?limit=3&continue={cont}"));
        assert_eq!(code, 200, "{p}");
        assert_eq!(p["metadata"]["resourceVersion"], rv);
        names.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match p["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    assert_eq!(names, ["l0", "l1", "l2", "l3", "l4", "l5", "l6"]);
    let (_, sel) = h.get(&format!("{LEASES}?labelSelector=team%3Da"));
    assert_eq!(sel["items"].as_array().unwrap().len(), 5);
    let (_, sel) = h.get(&format!("{LEASES}?labelSelector=team%20notin%20(a)"));
    assert_eq!(sel["items"].as_array().unwrap().len(), 3);
    let (_, sel) = h.get(&format!("{LEASES}?fieldSelector=metadata.name%3Dl3"));
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let (code, bad) = h.get(&format!("{LEASES}?labelSelector=team%20in%20(a"));
    assert_eq!(code, 400, "{bad}");
    let (code, bad) = h.get(&format!("{PODS}?fieldSelector=spec.bogus%3Dx"));
    assert_eq!(code, 400, "{bad}");
    let (code, _) = h.delete(&format!("{LEASES}?labelSelector=team%3Db"), None);
    assert_eq!(code, 200);
    let (_, left) = h.get(LEASES);
    assert_eq!(left["items"].as_array().unwrap().len(), 5);
    // Consistent read at an exact past revision.
    let (code, old) = h.get(&format!(
        "{LEASES}?resourceVersion={}&resourceVersionMatch=Exact",
        rv.as_str().unwrap()
    ));
    assert_eq!(code, 200, "{old}");
    assert_eq!(old["items"].as_array().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expired_after_compaction_and_limits() {
    let c = Cluster::start().await;
    let h = Http::new(&c);
    let (_, a) = h.post(LEASES, lease("w1", json!({})));
    let old_rv: i64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..3 {
        h.post(LEASES, lease(&format!("w{}", i + 2), json!({})));
    }
    let cur = c.api.store.current_revision().await.unwrap();
    c.api.store.compact(cur).await.unwrap();
    let (code, body) = h.get(&format!(
        "{LEASES}?watch=true&resourceVersion={old_rv}&timeoutSeconds=2"
    ));
    assert_eq!(code, 200);
    let text = body.to_string();
    assert!(
        text.contains("\"ERROR\"") && text.contains("410") && text.contains("Expired"),
        "{text}"
    );
    // A watch from now with a timeout ends by itself and shows later changes.
    let h2 = Http::new(&c);
    let path = format!("{LEASES}?watch=true&resourceVersion={cur}&timeoutSeconds=3");
    let waiter = std::thread::spawn(move || {
        let _ = h2.c;
        path
    });
    let path = waiter.join().unwrap();
    let token = c.token();
    let ca = c.ca();
    let addr = c.addr;
    let watch = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "-N", "-m", "10", "--cacert"])
            .arg(ca)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("https://{addr}{path}"))
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    h.post(LEASES, lease("after", json!({})));
    let out = watch.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "after");
    // Bodies over the limit are refused.
    let big =
        json!({"metadata": {"name": "big", "annotations": {"a": "x".repeat(4 * 1024 * 1024)}}});
    let (code, err) = h.post(LEASES, big);
    assert_eq!(code, 413, "{err}");
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "p"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "args": ["pause"]}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_grace_finalizers_and_namespaces() {
    let c = Cluster::start().await;
    let h = Http::new(&c);
    // Unbound pods go at once; bound pods get a deletionTimestamp first.
    assert_eq!(h.post(PODS, pod("free", None)).0, 201);
    assert_eq!(h.delete(&format!("{PODS}/free"), None).0, 200);
    assert_eq!(h.get(&format!("{PODS}/free")).0, 404);
    assert_eq!(h.post(PODS, pod("bound", Some("node1"))).0, 201);
    let (code, d) = h.delete(
        &format!("{PODS}/bound"),
        Some(json!({"gracePeriodSeconds": 30})),
    );
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, still) = h.get(&format!("{PODS}/bound"));
    assert_eq!(code, 200);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    // The node confirms with grace 0.
    assert_eq!(
        h.delete(
            &format!("{PODS}/bound"),
            Some(json!({"gracePeriodSeconds": 0}))
        )
        .0,
        200
    );
    assert_eq!(h.get(&format!("{PODS}/bound")).0, 404);
    // A short grace period ends by itself.
    assert_eq!(h.post(PODS, pod("short", Some("node1"))).0, 201);
    h.delete(
        &format!("{PODS}/short"),
        Some(json!({"gracePeriodSeconds": 1})),
    );
    let mut gone = false;
    for _ in 0..40 {
        if h.get(&format!("{PODS}/short")).0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "pod past its grace period was removed");
    // Finalizers hold an object until they are removed.
    let mut l = lease("fin", json!({}));
    l["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(h.post(LEASES, l).0, 201);
    let (code, d) = h.delete(&format!("{LEASES}/fin"), None);
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(h.get(&format!("{LEASES}/fin")).0, 200);
    let (code, _) = h.patch(
        &format!("{LEASES}/fin"),
        json!({"metadata": {"finalizers": null}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200);
    assert_eq!(h.get(&format!("{LEASES}/fin")).0, 404);
    // Foreground deletion leaves the object with the foregroundDeletion finalizer.
    assert_eq!(h.post(LEASES, lease("fg", json!({}))).0, 201);
    let (_, d) = h.delete(
        &format!("{LEASES}/fg"),
        Some(json!({"propagationPolicy": "Foreground"})),
    );
    assert_eq!(d["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    // Preconditions.
    assert_eq!(h.post(LEASES, lease("pre", json!({}))).0, 201);
    let (code, err) = h.delete(
        &format!("{LEASES}/pre"),
        Some(json!({"preconditions": {"uid": "nope"}})),
    );
    assert_eq!(code, 409, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: nope"),
        "{err}"
    );
    // A deleted namespace takes its objects with it.
    assert_eq!(
        h.post("/api/v1/namespaces", json!({"metadata": {"name": "tmp"}}))
            .0,
        201
    );
    assert_eq!(
        h.post(
            "/apis/coordination.k8s.io/v1/namespaces/tmp/leases",
            lease("x", json!({}))
        )
        .0,
        201
    );
    let (code, ns) = h.delete("/api/v1/namespaces/tmp", None);
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, err) = h.post(
        "/apis/coordination.k8s.io/v1/namespaces/tmp/leases",
        lease("y", json!({})),
    );
    assert!(code == 403 || code == 404, "{code} {err}");
    let mut gone = false;
    for _ in 0..40 {
        if h.get("/api/v1/namespaces/tmp").0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "namespace removed after its content");
    assert_eq!(
        h.get("/apis/coordination.k8s.io/v1/namespaces/tmp/leases/x")
            .0,
        404
    );
    // Creating in a namespace that does not exist.
    let (code, err) = h.post(
        "/apis/coordination.k8s.io/v1/namespaces/nope/leases",
        lease("z", json!({})),
    );
    assert_eq!(code, 404);
    assert_eq!(err["message"], "namespaces \"nope\" not found");
}

fn svc(name: &str, typ: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"type": typ, "selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_type_changes_allocate_and_release() {
    let c = Cluster::start().await;
    let h = Http::new(&c);
    let (code, s) = h.post(SVCS, svc("t", "ClusterIP"));
    assert_eq!(code, 201, "{s}");
    let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(s["spec"]["ports"][0].get("nodePort").is_none());
    // ClusterIP -> NodePort: keeps the IP, gets a nodePort.
    let (code, s) = h.patch(
        &format!("{SVCS}/t"),
        json!({"spec": {"type": "NodePort"}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["spec"]["clusterIP"], ip.as_str());
    let np = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    // NodePort -> ExternalName: releases both.
    let (code, s) = h.patch(
        &format!("{SVCS}/t"),
        json!({"spec": {"type": "ExternalName", "externalName": "example.com", "selector": null, "externalTrafficPolicy": null}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{s}");
    assert!(s["spec"].get("clusterIP").is_none(), "{s}");
    assert!(s["spec"]["ports"][0].get("nodePort").is_none(), "{s}");
    // The released IP and port can be taken by another Service.
    let mut other = svc("other", "NodePort");
    other["spec"]["clusterIP"] = json!(ip);
    other["spec"]["ports"][0]["nodePort"] = json!(np);
    let (code, o) = h.post(SVCS, other);
    assert_eq!(code, 201, "{o}");
    // ExternalName -> ClusterIP: allocates a new IP.
    let (code, s) = h.patch(
        &format!("{SVCS}/t"),
        json!({"spec": {"type": "ClusterIP", "externalName": null, "selector": {"app": "x"}}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{s}");
    let ip2 = s["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip2.starts_with("10.96.") && ip2 != ip, "{s}");
    // clusterIP is immutable.
    let (code, err) = h.patch(
        &format!("{SVCS}/t"),
        json!({"spec": {"clusterIP": "10.96.0.77"}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"t\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.77\"}: may not change once set"
    );
    // Deleting releases: the IP can be requested again.
    assert_eq!(h.delete(&format!("{SVCS}/other"), None).0, 200);
    let mut again = svc("again", "ClusterIP");
    again["spec"]["clusterIP"] = json!(ip);
    assert_eq!(h.post(SVCS, again).0, 201);
    // Out of range and duplicate requests.
    let mut bad = svc("bad", "ClusterIP");
    bad["spec"]["clusterIP"] = json!("10.0.0.1");
    let (code, err) = h.post(SVCS, bad);
    assert_eq!(code, 422);
    assert_eq!(
        err["message"],
        "Service \"bad\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16"
    );
    let (code, err) = h.post(SVCS, svc("again", "ClusterIP"));
    assert_eq!(code, 409);
    assert_eq!(err["message"], "services \"again\" already exists");
    // Headless services get no IP.
    let mut hl = svc("headless", "ClusterIP");
    hl["spec"]["clusterIP"] = json!("None");
    let (code, s) = h.post(SVCS, hl);
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["spec"]["clusterIP"], "None");
    // Unknown kinds of body are refused without storing.
    let (code, _) = h.call(
        "POST",
        SVCS,
        Some(&json!("just a string")),
        "application/json",
    );
    assert_eq!(code, 400);
}

/// Allocation keys of the store, as sorted strings.
async fn alloc_keys(c: &Cluster, prefix: &str) -> Vec<String> {
    let r = c
        .api
        .store
        .range(svcnet_store::RangeRequest {
            prefix: prefix.as_bytes().to_vec(),
            start: None,
            limit: 0,
            revision: None,
        })
        .await
        .expect("range");
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string())
        .collect()
}

const IPS: &str = "/registry/allocations/serviceips/";
const PORTS: &str = "/registry/allocations/servicenodeports/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_writes_get_distinct_allocations_and_repair_after_restart() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, "default");
    // 40 NodePort Services created at once: distinct ClusterIPs and node ports.
    let creates = (0..40).map(|i| {
        let api = api.clone();
        async move {
            let s: k8s_openapi::api::core::v1::Service =
                serde_json::from_value(svc(&format!("c{i}"), "NodePort")).expect("svc");
            api.create(&Default::default(), &s).await.expect("create")
        }
    });
    let made = futures::future::join_all(creates).await;
    let mut ips: Vec<String> = made
        .iter()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    let mut ports: Vec<String> = made
        .iter()
        .map(|s| {
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
                .node_port
                .unwrap()
                .to_string()
        })
        .collect();
    ips.push("10.96.0.1".into()); // default/kubernetes
    ips.sort();
    ports.sort();
    let (n_ips, n_ports) = (ips.len(), ports.len());
    ips.dedup();
    ports.dedup();
    assert_eq!((ips.len(), ports.len()), (n_ips, n_ports), "duplicates");
    let mut want_ips = ips.clone();
    want_ips.sort();
    assert_eq!(alloc_keys(&c, IPS).await, want_ips);
    assert_eq!(alloc_keys(&c, PORTS).await, ports);
    // Deleting half of them at once releases exactly their keys.
    let deletes = (0..20).map(|i| {
        let api = api.clone();
        async move {
            api.delete(&format!("c{i}"), &Default::default())
                .await
                .expect("delete")
        }
    });
    futures::future::join_all(deletes).await;
    assert_eq!(alloc_keys(&c, IPS).await.len(), 21);
    assert_eq!(alloc_keys(&c, PORTS).await.len(), 20);
    // A taken node port is refused with upstream's message.
    let mut dup = svc("dup", "NodePort");
    let taken: i32 = alloc_keys(&c, PORTS).await[0].parse().unwrap();
    dup["spec"]["ports"][0]["nodePort"] = json!(taken);
    let (code, err) = Http::new(&c).post(SVCS, dup);
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        format!(
            "Service \"dup\" is invalid: spec.ports[0].nodePort: Invalid value: {taken}: provided port is already allocated"
        )
    );
    // Damage the keys while stopped: one missing, one orphan, a legacy snapshot.
    let store = c.api.store.clone();
    let lost = format!("{PORTS}{taken}");
    store
        .delete(lost.as_bytes(), None)
        .await
        .expect("delete key");
    store
        .create(format!("{IPS}10.96.200.200").as_bytes(), b"{}")
        .await
        .expect("orphan");
    store
        .create(b"/registry/ranges/serviceips", b"{}")
        .await
        .expect("legacy");
    drop(store);
    let dir = c.stop().await;
    let c = Cluster::start_in(dir).await;
    let ips_after = alloc_keys(&c, IPS).await;
    assert_eq!(ips_after.len(), 21, "{ips_after:?}");
    assert!(!ips_after.contains(&"10.96.200.200".to_string()));
    assert!(alloc_keys(&c, PORTS).await.contains(&taken.to_string()));
    assert!(
        c.api
            .store
            .get(b"/registry/ranges/serviceips")
            .await
            .expect("get")
            .is_none()
    );
    // And the repaired state is in use: the port is still refused.
    let mut dup = svc("dup2", "NodePort");
    dup["spec"]["ports"][0]["nodePort"] = json!(taken);
    assert_eq!(Http::new(&c).post(SVCS, dup).0, 422);
}

const DUAL: &str = "10.96.0.0/16,fd00:10:96::/112";

fn family(ip: &str) -> &'static str {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "IPv4",
        Ok(std::net::IpAddr::V6(_)) => "IPv6",
        Err(_) => "?",
    }
}

/// The clusterIPs of a returned Service, after checking that they match
/// `families` one to one and that clusterIP is the first.
fn cluster_ips(s: &Value, families: &[&str]) -> Vec<String> {
    let ips: Vec<String> = s["spec"]["clusterIPs"]
        .as_array()
        .unwrap_or_else(|| panic!("clusterIPs: {s}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(s["spec"]["ipFamilies"], json!(families), "{s}");
    let fams: Vec<&str> = ips.iter().map(|ip| family(ip)).collect();
    assert_eq!(fams, families, "{s}");
    assert_eq!(s["spec"]["clusterIP"], ips[0].as_str(), "{s}");
    ips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_services_get_one_cluster_ip_per_family() {
    let c = Cluster::start_with(|cfg| cfg.service_cidr = DUAL.into()).await;
    let h = Http::new(&c);
    // The kubernetes Service stays single-stack on the primary family.
    let (code, k) = h.get(&format!("{SVCS}/kubernetes"));
    assert_eq!(code, 200, "{k}");
    assert_eq!(cluster_ips(&k, &["IPv4"]), ["10.96.0.1"]);
    assert_eq!(k["spec"]["ipFamilyPolicy"], "SingleStack");
    // No policy: SingleStack on the primary family.
    let (code, s) = h.post(SVCS, svc("single", "ClusterIP"));
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
    let single = cluster_ips(&s, &["IPv4"]);
    // PreferDualStack and RequireDualStack: one IP per family, primary first.
    let mut prefer = svc("prefer", "NodePort");
    prefer["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
    let (code, s) = h.post(SVCS, prefer);
    assert_eq!(code, 201, "{s}");
    let prefer_ips = cluster_ips(&s, &["IPv4", "IPv6"]);
    assert!(prefer_ips[0].starts_with("10.96."), "{s}");
    assert!(prefer_ips[1].starts_with("fd00:10:96::"), "{s}");
    let mut require = svc("require", "ClusterIP");
    require["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    require["spec"]["ipFamilies"] = json!(["IPv6"]);
    let (code, s) = h.post(SVCS, require);
    assert_eq!(code, 201, "{s}");
    let require_ips = cluster_ips(&s, &["IPv6", "IPv4"]);
    // Requested IPs of both families.
    let mut asked = svc("asked", "ClusterIP");
    asked["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    asked["spec"]["clusterIPs"] = json!(["fd00:10:96::77", "10.96.0.77"]);
    asked["spec"]["clusterIP"] = json!("fd00:10:96::77");
    let (code, s) = h.post(SVCS, asked);
    assert_eq!(code, 201, "{s}");
    assert_eq!(
        cluster_ips(&s, &["IPv6", "IPv4"]),
        ["fd00:10:96::77", "10.96.0.77"]
    );
    // Server-side apply goes through the same defaulting.
    let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "applied"},
        "spec": {"ipFamilyPolicy": "PreferDualStack", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
    let (code, s) = h.patch(
        &format!("{SVCS}/applied?fieldManager=test"),
        applied,
        "application/apply-patch+yaml",
    );
    assert_eq!(code, 201, "{s}");
    let applied_ips = cluster_ips(&s, &["IPv4", "IPv6"]);
    // Every IP has its allocation key.
    let mut want: Vec<String> = ["10.96.0.1", "fd00:10:96::77", "10.96.0.77"]
        .iter()
        .map(|s| s.to_string())
        .chain(single.iter().cloned())
        .chain(prefer_ips.iter().cloned())
        .chain(require_ips.iter().cloned())
        .chain(applied_ips.iter().cloned())
        .collect();
    want.sort();
    assert_eq!(alloc_keys(&c, IPS).await, want);
    // SingleStack with two IPs is refused before validation, as upstream.
    let mut bad = svc("bad", "ClusterIP");
    bad["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    bad["spec"]["clusterIPs"] = json!(["10.96.8.8", "fd00:10:96::88"]);
    bad["spec"]["clusterIP"] = json!("10.96.8.8");
    let (code, err) = h.post(SVCS, bad);
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"bad\" is invalid: spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"
    );
    assert_eq!(err["details"]["causes"][0]["field"], "spec.ipFamilyPolicy");
    // Upgrade by merge patch: the second family's IP is allocated.
    let (code, s) = h.patch(
        &format!("{SVCS}/single"),
        json!({"spec": {"ipFamilyPolicy": "PreferDualStack"}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 200, "{s}");
    let upgraded = cluster_ips(&s, &["IPv4", "IPv6"]);
    assert_eq!(upgraded[0], single[0]);
    assert!(alloc_keys(&c, IPS).await.contains(&upgraded[1]));
    // Dropping the second IP needs SingleStack ...
    let (code, err) = h.patch(
        &format!("{SVCS}/single"),
        json!({"spec": {"clusterIPs": [single[0].clone()]}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"single\" is invalid: spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be 'SingleStack' to release the secondary cluster IP"
    );
    // ... which alone downgrades (strategic merge patch) and releases it.
    let (code, s) = h.patch(
        &format!("{SVCS}/single"),
        json!({"spec": {"ipFamilyPolicy": "SingleStack"}}),
        "application/strategic-merge-patch+json",
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(cluster_ips(&s, &["IPv4"]), single);
    assert!(!alloc_keys(&c, IPS).await.contains(&upgraded[1]));
    // A PUT without the allocated fields keeps both IPs.
    let (code, cur) = h.get(&format!("{SVCS}/prefer"));
    assert_eq!(code, 200);
    let mut put = svc("prefer", "NodePort");
    put["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
    put["spec"]["ports"][0]["nodePort"] = cur["spec"]["ports"][0]["nodePort"].clone();
    let (code, s) = h.put(&format!("{SVCS}/prefer"), put);
    assert_eq!(code, 200, "{s}");
    assert_eq!(cluster_ips(&s, &["IPv4", "IPv6"]), prefer_ips);
    // Deleting releases both families' keys.
    assert_eq!(h.delete(&format!("{SVCS}/require"), None).0, 200);
    let keys = alloc_keys(&c, IPS).await;
    assert!(!keys.contains(&require_ips[0]) && !keys.contains(&require_ips[1]));
    // A restart with the same ranges keeps (and repairs nothing of) both families.
    let before = alloc_keys(&c, IPS).await;
    let dir = c.stop().await;
    let c = Cluster::start_in_with(dir, |cfg| cfg.service_cidr = DUAL.into()).await;
    assert_eq!(alloc_keys(&c, IPS).await, before);
    let mut again = svc("again", "ClusterIP");
    again["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    again["spec"]["clusterIPs"] = json!([prefer_ips[0].clone(), "fd00:10:96::99"]);
    again["spec"]["clusterIP"] = json!(prefer_ips[0].clone());
    let (code, err) = Http::new(&c).post(SVCS, again);
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"].as_str().unwrap().ends_with(&format!(
            "failed to allocate IP {}: provided IP is already allocated",
            prefer_ips[0]
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_primary_and_single_stack_errors() {
    let c =
        Cluster::start_with(|cfg| cfg.service_cidr = "fd00:10:96::/112,10.96.0.0/16".into()).await;
    let h = Http::new(&c);
    let (code, k) = h.get(&format!("{SVCS}/kubernetes"));
    assert_eq!(code, 200, "{k}");
    assert_eq!(cluster_ips(&k, &["IPv6"]), ["fd00:10:96::1"]);
    let (code, s) = h.post(SVCS, svc("v6", "ClusterIP"));
    assert_eq!(code, 201, "{s}");
    cluster_ips(&s, &["IPv6"]);
    let mut prefer = svc("prefer", "ClusterIP");
    prefer["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
    let (code, s) = h.post(SVCS, prefer);
    assert_eq!(code, 201, "{s}");
    cluster_ips(&s, &["IPv6", "IPv4"]);
    drop(h);
    drop(c);

    // Single-stack IPv4: upstream's 422s, on create and on update.
    let c = Cluster::start().await;
    let h = Http::new(&c);
    let mut require = svc("require", "ClusterIP");
    require["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    let (code, err) = h.post(SVCS, require);
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"require\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    );
    let mut v6 = svc("v6", "ClusterIP");
    v6["spec"]["clusterIP"] = json!("fd00::1");
    let (code, err) = h.post(SVCS, v6);
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"v6\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"fd00::1\"}: IPv6 is not configured on this cluster"
    );
    // PreferDualStack stays single here.
    let mut prefer = svc("prefer", "ClusterIP");
    prefer["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
    let (code, s) = h.post(SVCS, prefer);
    assert_eq!(code, 201, "{s}");
    cluster_ips(&s, &["IPv4"]);
    let (code, err) = h.patch(
        &format!("{SVCS}/prefer"),
        json!({"spec": {"ipFamilyPolicy": "RequireDualStack"}}),
        "application/merge-patch+json",
    );
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Service \"prefer\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    );
    // Nothing was stored by the refused creates.
    assert_eq!(h.get(&format!("{SVCS}/require")).0, 404);
    assert_eq!(h.get(&format!("{SVCS}/v6")).0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_cidrs_are_checked_at_start() {
    for (cidrs, want) in [
        (
            "10.96.0.0/16,10.97.0.0/16",
            "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family",
        ),
        (
            "10.96.0.0/16,fd00::/112,10.97.0.0/16",
            "--service-cluster-ip-range must not contain more than two entries",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = svcnet_store::open(&dir.path().join("store").display().to_string())
            .await
            .expect("store");
        let mut cfg = svcnet_apiserver::Config::new(dir.path());
        cfg.bind = "127.0.0.1:0".parse().unwrap();
        cfg.service_cidr = cidrs.into();
        let err = svcnet_apiserver::Server::start(cfg, store)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(want), "{err}");
    }
}

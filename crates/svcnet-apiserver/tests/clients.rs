//! Other real clients against the API server: the official Python client and a kube-rs watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use svcnet_testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let c = Cluster::start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_client.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(&c.kubeconfig)
            .output(),
    )
    .await
    .expect("python client finished in time")
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "python client ok"
    );
}

fn svc(name: &str, port: i32) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"port": port}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_sees_every_change_in_order() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let cfg = watcher::Config::default().labels("w=1");
    let mut stream = watcher(api.clone(), cfg).boxed();
    // The initial list (empty) completes first.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("watch ended"),
        }
    }
    let mut expected = Vec::new();
    for i in 0..20 {
        let mut s = svc(&format!("w{i}"), 80 + i);
        s.metadata.labels = Some([("w".to_string(), "1".to_string())].into());
        api.create(&PostParams::default(), &s).await.unwrap();
        expected.push(format!("apply w{i} {}", 80 + i));
        if i % 3 == 0 {
            let p = serde_json::json!({"spec": {"ports": [{"port": 80 + i, "targetPort": 9000}]}});
            api.patch(&format!("w{i}"), &PatchParams::default(), &Patch::Merge(&p))
                .await
                .unwrap();
            expected.push(format!("apply w{i} {}", 80 + i));
        }
        if i % 4 == 0 {
            api.delete(&format!("w{i}"), &DeleteParams::default())
                .await
                .unwrap();
            expected.push(format!("delete w{i}"));
        }
    }
    let mut seen = Vec::new();
    let mut last_rv = 0i64;
    while seen.len() < expected.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("event in time")
            .expect("watch ok")
            .expect("stream open");
        let (what, s) = match ev {
            watcher::Event::Apply(s) => ("apply", s),
            watcher::Event::Delete(s) => ("delete", s),
            _ => continue,
        };
        let rv: i64 = s
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            rv > last_rv,
            "resourceVersions increase: {rv} after {last_rv}"
        );
        last_rv = rv;
        let name = s.metadata.name.clone().unwrap();
        seen.push(match what {
            "apply" => format!("apply {name} {}", s.spec.unwrap().ports.unwrap()[0].port),
            _ => format!("delete {name}"),
        });
    }
    assert_eq!(seen, expected);
}

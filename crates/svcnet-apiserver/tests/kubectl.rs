//! The real kubectl against the API server on loopback (fresh HOME, default validation).

use svcnet_testkit::{Cluster, example};

fn lines(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_manifests_apply_get_describe_delete() {
    let c = Cluster::start().await;
    let out = c
        .ok(&["apply", "-f", &example("frontend-deploy.yaml")])
        .await;
    assert_eq!(out.trim(), "deployment.apps/frontend created");
    let out = c.ok(&["apply", "-f", &example("frontend-svc.yaml")]).await;
    assert_eq!(out.trim(), "service/frontend-svc created");
    let out = c.ok(&["apply", "-f", &example("frontend-svc.yaml")]).await;
    assert_eq!(out.trim(), "service/frontend-svc unchanged");

    // No endpoints controller runs in this test: Endpoints are written by hand.
    let ep = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: frontend-svc\nsubsets:\n- addresses:\n  - ip: 10.244.1.5\n  - ip: 10.244.2.4\n  - ip: 10.244.3.9\n  - ip: 10.244.1.7\n  ports:\n  - port: 5000\n    protocol: TCP\n";
    let o = c.apply_text(ep).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = c.ok(&["get", "svc,ep", "frontend-svc"]).await;
    let rows = lines(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(rows[1][0], "service/frontend-svc");
    assert_eq!(rows[1][1], "ClusterIP");
    assert!(rows[1][2].starts_with("10.96."), "{out}");
    assert_eq!(rows[1][3], "<none>");
    assert_eq!(rows[1][4], "80/TCP");
    let ep_row = rows
        .iter()
        .find(|r| r[0] == "endpoints/frontend-svc")
        .expect("endpoints row");
    assert_eq!(
        ep_row[1..4],
        [
            "10.244.1.5:5000,10.244.2.4:5000,10.244.3.9:5000".to_string(),
            "+".into(),
            "1".into()
        ],
        "{out}"
    );
    let wide = c.ok(&["get", "svc", "-o", "wide"]).await;
    let rows = lines(&wide);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let fe = rows
        .iter()
        .find(|r| r[0] == "frontend-svc")
        .expect("frontend-svc row");
    assert_eq!(fe[6], "app=frontend");
    let k = rows
        .iter()
        .find(|r| r[0] == "kubernetes")
        .expect("kubernetes service");
    assert_eq!(k[2], "10.96.0.1");
    assert_eq!(k[4], "443/TCP");
    assert_eq!(k[6], "<none>");

    let all = c.ok(&["get", "svc", "-A"]).await;
    assert_eq!(lines(&all)[0][0], "NAMESPACE");
    assert!(
        all.contains("default     frontend-svc")
            || all
                .lines()
                .any(|l| l.starts_with("default") && l.contains("frontend-svc")),
        "{all}"
    );

    let labels = c.ok(&["get", "deploy", "--show-labels"]).await;
    assert!(labels.contains("app=frontend"), "{labels}");

    let yaml = c.ok(&["get", "svc", "frontend-svc", "-o", "yaml"]).await;
    for want in [
        "kind: Service",
        "sessionAffinity: None",
        "type: ClusterIP",
        "targetPort: 5000",
        "protocol: TCP",
        "ipFamilyPolicy: SingleStack",
        "- IPv4",
        "kubectl.kubernetes.io/last-applied-configuration",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }

    let desc = c.ok(&["describe", "svc", "frontend-svc"]).await;
    for want in [
        "Name:",
        "frontend-svc",
        "Selector:",
        "app=frontend",
        "Type:",
        "ClusterIP",
        "TargetPort:",
        "5000/TCP",
        "Session Affinity:",
        "None",
    ] {
        assert!(desc.contains(want), "missing {want:?} in\n{desc}");
    }

    let out = c.ok(&["delete", "svc", "frontend-svc"]).await;
    assert_eq!(out.trim(), "service \"frontend-svc\" deleted");
    let err = c.fails(&["get", "svc", "frontend-svc"]).await;
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): services \"frontend-svc\" not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_changed_ports_and_server_side() {
    let c = Cluster::start().await;
    c.ok(&["apply", "-f", &example("my-service.yaml")]).await;
    let out = c.ok(&["get", "svc", "my-service"]).await;
    assert_eq!(lines(&out)[1][4], "8080:31080/TCP,8443:31443/TCP");
    // Edit: drop https, add metrics.
    let edited = std::fs::read_to_string(example("my-service.yaml"))
        .unwrap()
        .replace("  - name: https\n    protocol: TCP\n    port: 8443\n    targetPort: 443\n    nodePort: 31443\n", "  - name: metrics\n    protocol: TCP\n    port: 9090\n    targetPort: 9090\n");
    let o = c.apply_text(&edited).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "service/my-service configured"
    );
    let out = c
        .ok(&[
            "get",
            "svc",
            "my-service",
            "-o",
            "jsonpath={range .spec.ports[*]}{.name}:{.port}:{.nodePort} {end}",
        ])
        .await;
    let parts: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(parts.len(), 2, "{out}");
    assert_eq!(parts[0], "http:8080:31080");
    assert!(parts[1].starts_with("metrics:9090:3"), "{out}");

    // Server-side apply: creates a missing object, then updates it.
    let ssa = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ssa-svc\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    let o = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(ssa))
        .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "service/ssa-svc serverside-applied"
    );
    let o = c
        .kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&ssa.replace("8080", "9090")),
        )
        .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tp = c
        .ok(&[
            "get",
            "svc",
            "ssa-svc",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(tp, "9090");
    // Another manager changing the same field conflicts.
    let o = c
        .kubectl_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&ssa.replace("8080", "7070")),
        )
        .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("conflict with \"kubectl\""), "{err}");
    assert!(
        err.contains(".spec.ports[port=80,protocol=\"TCP\"].targetPort"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expose_create_scale_and_namespaces() {
    let c = Cluster::start().await;
    c.ok(&["apply", "-f", &example("frontend-deploy.yaml")])
        .await;
    let out = c
        .ok(&[
            "expose",
            "deploy",
            "frontend",
            "--name=frontend-svc",
            "--port=80",
            "--target-port=5000",
        ])
        .await;
    assert_eq!(out.trim(), "service/frontend-svc exposed");
    let sel = c
        .ok(&[
            "get",
            "svc",
            "frontend-svc",
            "-o",
            "jsonpath={.spec.selector.app} {.spec.ports[0].targetPort} {.spec.type}",
        ])
        .await;
    assert_eq!(sel, "frontend 5000 ClusterIP");

    // kubectl create sends protobuf.
    let out = c
        .ok(&[
            "create",
            "service",
            "nodeport",
            "frontend-pb",
            "--tcp=80:5000",
            "--node-port=32233",
        ])
        .await;
    assert_eq!(out.trim(), "service/frontend-pb created");
    let row = c.ok(&["get", "svc", "frontend-pb", "--no-headers"]).await;
    assert_eq!(lines(&row)[0][4], "80:32233/TCP");
    // The same nodePort again collides.
    let err = c
        .fails(&[
            "create",
            "service",
            "nodeport",
            "frontend-pb2",
            "--tcp=80:5000",
            "--node-port=32233",
        ])
        .await;
    assert_eq!(
        err.trim(),
        "error: failed to create NodePort service: Service \"frontend-pb2\" is invalid: spec.ports[0].nodePort: Invalid value: 32233: provided port is already allocated"
    );
    let err = c
        .fails(&[
            "create",
            "service",
            "nodeport",
            "frontend-pb3",
            "--tcp=80:5000",
            "--node-port=40000",
        ])
        .await;
    assert_eq!(
        err.trim(),
        "error: failed to create NodePort service: Service \"frontend-pb3\" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // A random nodePort, allocated after 32233 was taken (before, it could
    // have drawn 32233 itself: a 1-in-2,700 test failure).
    let out = c
        .ok(&[
            "expose",
            "deploy",
            "frontend",
            "--name=frontend-np",
            "--port=80",
            "--target-port=5000",
            "--type=NodePort",
        ])
        .await;
    assert_eq!(out.trim(), "service/frontend-np exposed");
    let np = c
        .ok(&[
            "get",
            "svc",
            "frontend-np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .await;
    let np: u16 = np.parse().expect("a nodePort was allocated");
    assert!((30000..=32767).contains(&np));
    let err = c
        .fails(&[
            "create",
            "service",
            "clusterip",
            "frontend-svc",
            "--tcp=80:5000",
        ])
        .await;
    assert_eq!(
        err.trim(),
        "error: failed to create ClusterIP service: services \"frontend-svc\" already exists"
    );

    let out = c.ok(&["scale", "deploy", "frontend", "--replicas=5"]).await;
    assert_eq!(out.trim(), "deployment.apps/frontend scaled");
    let r = c
        .ok(&[
            "get",
            "deploy",
            "frontend",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(r, "5");

    let out = c.ok(&["create", "namespace", "my-ns"]).await;
    assert_eq!(out.trim(), "namespace/my-ns created");
    let ns = c.ok(&["get", "ns"]).await;
    let rows = lines(&ns);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    for want in ["default", "kube-system", "kube-public", "my-ns"] {
        assert!(
            rows.iter().any(|r| r[0] == want && r[1] == "Active"),
            "{want} in {ns}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_get_upstream_messages() {
    let c = Cluster::start().await;
    let bad_port =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 0\n";
    let o = c.apply_text(bad_port).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    // Upstream defaults targetPort to port, so both fields are reported.
    assert_eq!(
        err.trim(),
        "The Service \"bad\" is invalid: \n* spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n* spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"
    );
    let unknown = "apiVersion: v1\nkind: Service\nmetadata:\n  name: typo\nspec:\n  portz:\n  - port: 80\n  ports:\n  - port: 80\n";
    let o = c.apply_text(unknown).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown field \"spec.portz\""), "{err}");
    // Nothing was stored by either.
    let err = c.fails(&["get", "svc", "bad"]).await;
    assert!(err.contains("NotFound"), "{err}");
    let err = c.fails(&["get", "svc", "typo"]).await;
    assert!(err.contains("NotFound"), "{err}");
    // The seed's ClusterIP Service with externalTrafficPolicy is rejected as upstream does.
    let local = "apiVersion: v1\nkind: Service\nmetadata:\n  name: frontend-svc\nspec:\n  selector:\n    app: frontend\n  ports:\n    - protocol: TCP\n      port: 80\n      targetPort: 5000\n  internalTrafficPolicy: Local\n  externalTrafficPolicy: Local\n";
    let o = c.apply_text(local).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("spec.externalTrafficPolicy: Invalid value: \"Local\""),
        "{err}"
    );
    // As a NodePort Service it is accepted.
    c.ok(&["apply", "-f", &example("frontend-svc-local.yaml")])
        .await;
    let pol = c
        .ok(&[
            "get",
            "svc",
            "frontend-svc",
            "-o",
            "jsonpath={.spec.internalTrafficPolicy}/{.spec.externalTrafficPolicy}",
        ])
        .await;
    assert_eq!(pol, "Local/Local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_an_update() {
    let c = Cluster::start().await;
    c.ok(&["apply", "-f", &example("frontend-svc.yaml")]).await;
    let home = c.home();
    let mut child = tokio::process::Command::new("kubectl")
        .args(["get", "svc", "frontend-svc", "-w", "--output-watch-events"])
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .env("HOME", &home)
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    c.ok(&["label", "svc", "frontend-svc", "tier=web"]).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = lines(&text);
    assert_eq!(
        rows[0][..2],
        ["EVENT".to_string(), "NAME".to_string()],
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r[0] == "ADDED" && r[1] == "frontend-svc"),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r[0] == "MODIFIED" && r[1] == "frontend-svc"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_unauthorized_and_state_survives_restart() {
    let c = Cluster::start().await;
    let url = format!("https://{}/api/v1/namespaces", c.addr);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &c.ca().display().to_string(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &c.ca().display().to_string(),
            &format!("https://{}/readyz", c.addr),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    c.ok(&[
        "create",
        "service",
        "nodeport",
        "keep",
        "--tcp=80:5000",
        "--node-port=30500",
    ])
    .await;
    let ip = c
        .ok(&["get", "svc", "keep", "-o", "jsonpath={.spec.clusterIP}"])
        .await;
    let dir = c.stop().await;
    let c = Cluster::start_in(dir).await;
    let ip2 = c
        .ok(&["get", "svc", "keep", "-o", "jsonpath={.spec.clusterIP}"])
        .await;
    assert_eq!(ip, ip2);
    // The allocator state survived: the same nodePort is still taken.
    let err = c
        .fails(&[
            "create",
            "service",
            "nodeport",
            "again",
            "--tcp=80:5000",
            "--node-port=30500",
        ])
        .await;
    assert!(err.contains("provided port is already allocated"), "{err}");
    let err = c
        .fails(&[
            "create",
            "service",
            "clusterip",
            "again2",
            "--tcp=80:5000",
            &format!("--clusterip={ip}"),
        ])
        .await;
    assert!(err.contains("provided IP is already allocated"), "{err}");
}

const DUAL_SVCS: &str = "apiVersion: v1
kind: Service
metadata:
  name: dual
spec:
  ipFamilyPolicy: PreferDualStack
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: dual6
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6]
  selector:
    app: web
  ports:
  - port: 80
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_services_and_single_stack_errors() {
    let c =
        Cluster::start_with(|cfg| cfg.service_cidr = "10.96.0.0/16,fd00:10:96::/112".into()).await;
    let o = c.apply_text(DUAL_SVCS).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "service/dual created\nservice/dual6 created"
    );
    let ips = |name: &str| {
        let c = &c;
        let name = name.to_string();
        async move {
            let out = c
                .ok(&["get", "svc", &name, "-o", "jsonpath={.spec.clusterIPs}"])
                .await;
            serde_json::from_str::<Vec<String>>(&out).expect("clusterIPs")
        }
    };
    let dual = ips("dual").await;
    let dual6 = ips("dual6").await;
    assert!(
        dual.len() == 2 && dual[0].starts_with("10.96.") && dual[1].starts_with("fd00:10:96::"),
        "{dual:?}"
    );
    assert!(
        dual6.len() == 2 && dual6[0].starts_with("fd00:10:96::") && dual6[1].starts_with("10.96."),
        "{dual6:?}"
    );
    let fams = c
        .ok(&[
            "get",
            "svc",
            "dual",
            "dual6",
            "-o",
            "jsonpath={range .items[*]}{.spec.ipFamilyPolicy}:{.spec.ipFamilies}{\"\\n\"}{end}",
        ])
        .await;
    assert_eq!(
        fams.trim(),
        "PreferDualStack:[\"IPv4\",\"IPv6\"]\nRequireDualStack:[\"IPv6\",\"IPv4\"]"
    );
    // The CLUSTER-IP column shows the first clusterIP only, as upstream.
    let wide = c.ok(&["get", "svc", "-o", "wide"]).await;
    let rows = lines(&wide);
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} row: {wide}"))
            .clone()
    };
    assert_eq!(
        row("dual")[1..],
        [
            "ClusterIP",
            &dual[0],
            "<none>",
            "80/TCP",
            &row("dual")[5],
            "app=web"
        ],
        "{wide}"
    );
    assert_eq!(row("dual6")[2], dual6[0], "{wide}");
    assert_eq!(row("kubernetes")[2], "10.96.0.1", "{wide}");
    // describe lists both.
    let d = c.ok(&["describe", "svc", "dual"]).await;
    let field = |k: &str| {
        d.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("{k} in {d}"))
    };
    assert_eq!(field("IP Family Policy:"), "PreferDualStack");
    assert_eq!(field("IP Families:"), "IPv4,IPv6");
    assert_eq!(field("IPs:"), dual.join(","));

    // A single-stack cluster answers upstream's errors, verbatim.
    let c = Cluster::start().await;
    let o = c.apply_text(DUAL_SVCS).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    // Both causes, as upstream's initIPFamilyFields collects them.
    assert_eq!(
        err.trim(),
        "The Service \"dual6\" is invalid: \n* spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services\n* spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
    );
    let req = "apiVersion: v1\nkind: Service\nmetadata:\n  name: req\nspec:\n  ipFamilyPolicy: RequireDualStack\n  ports:\n  - port: 80\n";
    let o = c.apply_text(req).await;
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "The Service \"req\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    );
    // PreferDualStack falls back to one family here.
    assert_eq!(
        c.ok(&["get", "svc", "dual", "-o", "jsonpath={.spec.clusterIPs}"])
            .await
            .matches("10.96.")
            .count(),
        1
    );
    let v6 = "apiVersion: v1\nkind: Service\nmetadata:\n  name: v6\nspec:\n  clusterIP: fd00::1\n  ports:\n  - port: 80\n";
    let o = c.apply_text(v6).await;
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "The Service \"v6\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"fd00::1\"}: IPv6 is not configured on this cluster"
    );
    // Also on update (server-side apply of a changed policy).
    let err = c
        .fails(&[
            "patch",
            "svc",
            "dual",
            "-p",
            "{\"spec\":{\"ipFamilyPolicy\":\"RequireDualStack\"}}",
        ])
        .await;
    assert_eq!(
        err.trim(),
        "The Service \"dual\" is invalid: spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
    );
    let err = c.fails(&["get", "svc", "v6"]).await;
    assert!(err.contains("NotFound"), "{err}");
}

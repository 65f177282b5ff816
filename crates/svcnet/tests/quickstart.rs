//! The README quick start, end to end: `svcnet up` (root, real namespaces),
//! the seed Deployment and Service, a client pod reaching the Service by
//! name through exec, a node reaching the ClusterIP, a NodePort from the
//! host, then SIGTERM and a clean host.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER: &str = "qstest";

fn examples(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Up {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Up {
    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).ok();
        let out = Command::new("kubectl")
            .arg(format!("--cache-dir={}", home.join("cache").display()))
            .args(args)
            .env("HOME", &home)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    }
}

/// Polls `f` until it returns Some, for at most `secs`.
fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever is left (a failed test, a crash) goes too.
        let _ = Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args(["down", "--cluster", CLUSTER, "--data-dir"])
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn readme_quick_start() {
    assert!(
        is_root(),
        "this test builds network namespaces and needs root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args(["up", "--nodes", "2", "--cluster", CLUSTER, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("svcnet up starts");
    let mut up = Up { child, dir };
    // Wait for the ready banner.
    let stdout = up.child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(120);
    let mut banner = String::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("svcnet up reports ready in time");
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    assert!(banner.contains("2/2 Ready"), "{banner}");
    assert!(banner.contains("dns:    up"), "{banner}");

    up.ok(&[
        "apply",
        "-f",
        &examples("frontend-deploy.yaml"),
        "-f",
        &examples("frontend-svc.yaml"),
    ]);
    wait(90, "3 endpoints", || {
        let (_, out, _) = up.kubectl(&[
            "get",
            "ep",
            "frontend-svc",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        (out.split_whitespace().count() == 3).then_some(())
    });
    let table = up.ok(&["get", "svc,ep", "frontend-svc"]);
    assert!(
        table.contains("service/frontend-svc") && table.contains(":5000"),
        "{table}"
    );

    up.ok(&[
        "run",
        "client",
        "--image=registry.k8s.io/e2e-test-images/agnhost:2.53",
        "--",
        "pause",
    ]);
    wait(60, "client pod running", || {
        let (_, out, _) = up.kubectl(&["get", "pod", "client", "-o", "jsonpath={.status.phase}"]);
        (out == "Running").then_some(())
    });
    // Through DNS, the ClusterIP and the proxy: answers from more than one pod.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (ok, out, _) = up.kubectl(&[
            "exec",
            "client",
            "--",
            "curl",
            "-s",
            "-m",
            "3",
            "frontend-svc:80",
        ]);
        if ok && out.trim().starts_with("frontend-") {
            seen.insert(out.trim().to_string());
        }
        if seen.len() >= 2 {
            break;
        }
    }
    assert!(seen.len() >= 2, "answers from different pods: {seen:?}");

    // From a node, like ssh-ing into it.
    let cip = up.ok(&[
        "get",
        "svc",
        "frontend-svc",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    // A few attempts, like the pod's: one CI run saw a single attempt time
    // out right after the pods' check (not reproduced since).
    let mut tries = Vec::new();
    for _ in 0..5 {
        let out = Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args([
                "shell",
                "--cluster",
                CLUSTER,
                "node0",
                "--",
                "curl",
                "-s",
                "-m",
                "3",
                &format!("{cip}:80"),
            ])
            .output()
            .expect("svcnet shell runs");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if text.starts_with("frontend-") {
            break;
        }
        tries.push(format!("{text:?} {}", String::from_utf8_lossy(&out.stderr)));
    }
    assert!(tries.len() < 5, "node to ClusterIP: {tries:?}");
    if !tries.is_empty() {
        eprintln!(
            "node to ClusterIP answered after {} failed attempts: {tries:?}",
            tries.len()
        );
    }

    // NodePort from the host.
    up.ok(&[
        "patch",
        "svc",
        "frontend-svc",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let port = up.ok(&[
        "get",
        "svc",
        "frontend-svc",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let answer = wait(30, "NodePort answer", || {
        let out = Command::new("curl")
            .args(["-s", "-m", "3", &format!("172.18.0.10:{port}")])
            .output()
            .ok()?;
        let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
        t.starts_with("frontend-").then_some(t)
    });
    assert!(answer.starts_with("frontend-"));

    // SIGTERM stops everything and removes the lab.
    let pid = up.child.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = wait(40, "svcnet up to exit", || {
        up.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "svcnet up exit status {status:?}");
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        !netns.contains(&format!("svcnet-{CLUSTER}")),
        "namespaces left: {netns}"
    );
    let links =
        String::from_utf8_lossy(&Command::new("ip").args(["link"]).output().unwrap().stdout)
            .to_string();
    assert!(
        !links.contains(&format!("svcnet-{CLUSTER}")),
        "links left: {links}"
    );
}

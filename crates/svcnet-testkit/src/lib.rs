//! Test support: an API server on loopback with an embedded store, the real kubectl, kube clients.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use svcnet_apiserver::{Config, Server};

#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub addr: std::net::SocketAddr,
    pub api: Arc<svcnet_apiserver::Api>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Cluster {
        Self::start_in_with(dir, |_| {}).await
    }

    /// An API server whose Config `configure` adjusts (e.g. two Service
    /// CIDRs), in a fresh directory.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in_with(dir, configure).await
    }

    /// [`Cluster::start_with`] on an existing data directory (restarts).
    pub async fn start_in_with(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Config),
    ) -> Cluster {
        let store = svcnet_store::open(&dir.path().join("store").display().to_string())
            .await
            .expect("store");
        let mut cfg = Config::new(dir.path());
        cfg.bind = "127.0.0.1:0".parse().unwrap();
        configure(&mut cfg);
        let server = Server::start(cfg, store).await.expect("server start");
        let kubeconfig = server.kubeconfig().to_path_buf();
        let addr = server.local_addr();
        let api = server.api();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Cluster {
            dir,
            kubeconfig,
            addr,
            api,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and returns its data directory (to restart on it).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Runs the real kubectl with a fresh HOME and cache dir.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let home = self.home();
        std::fs::create_dir_all(&home).ok();
        let mut cmd = tokio::process::Command::new("kubectl");
        // Global flags first: after `exec ... --` they would reach the command.
        cmd.arg(format!("--cache-dir={}", home.join("cache").display()))
            .args(args)
            .env("HOME", &home)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .kill_on_drop(true)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl is installed");
        if let Some(s) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut w = child.stdin.take().unwrap();
            w.write_all(s.as_bytes()).await.unwrap();
            drop(w);
        }
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran")
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args).await;
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// kubectl that must fail; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let o = self.kubectl(args).await;
        assert!(
            !o.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).to_string()
    }

    pub async fn apply_text(&self, yaml: &str) -> Output {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml)).await
    }

    pub fn token(&self) -> String {
        let t = std::fs::read_to_string(self.dir.path().join("tokens.csv")).unwrap();
        t.split(',').next().unwrap().to_string()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pki/ca.crt")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Path of a file under the repository's `examples/`.
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

impl Cluster {
    /// A kube-rs client authenticated with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        svcnet_client::client(Some(&self.kubeconfig))
            .await
            .expect("kube client from the admin kubeconfig")
    }
}

//! Test fixtures: an embedded store in a temp dir and a real etcd on loopback, both cleaned up on drop.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use svcnet_store::{EmbeddedConfig, EmbeddedStore, Store};

/// A store under test plus whatever must live as long as it.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

/// Short intervals so progress and compaction tests finish quickly.
pub fn test_config() -> EmbeddedConfig {
    EmbeddedConfig {
        progress_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

pub async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open_with(dir.path().join("data"), test_config())
        .await
        .expect("open embedded store");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// A throwaway single-member etcd on free loopback ports. Killed on drop,
/// also when the test fails.
pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

impl EtcdServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start /usr/bin/etcd");
        EtcdServer {
            child,
            endpoint,
            _dir: dir,
        }
    }
}

#[cfg(feature = "etcd")]
pub async fn etcd_with(config: impl FnOnce(&mut svcnet_store::EtcdConfig)) -> Fixture {
    let server = EtcdServer::start();
    let mut cfg = svcnet_store::EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        prefix: b"/svcnet-test".to_vec(),
        progress_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    config(&mut cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match svcnet_store::EtcdStore::connect_with(cfg.clone()).await {
            Ok(store) => {
                return Fixture {
                    store: Arc::new(store),
                    _guard: Box::new(server),
                };
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd did not come up at {}: {e}", server.endpoint),
        }
    }
}

#[cfg(feature = "etcd")]
pub async fn etcd() -> Fixture {
    etcd_with(|_| {}).await
}

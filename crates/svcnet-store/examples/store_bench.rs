//! Store benchmark (not a test): writes/s, reads/s and watch delivery latency for each backend, as one table.
//!
//! `cargo run --release -p svcnet-store --example store_bench --features etcd`
//! starts a throwaway `/usr/bin/etcd` on loopback for the etcd row; without
//! the feature only the embedded row is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use svcnet_store::{EmbeddedStore, Store, WatchEvent};

const SEQ_WRITES: usize = 300;
const PAR_WRITES: usize = 1600;
const WRITERS: usize = 16;
const READS: usize = 8000;
const WATCH_SAMPLES: usize = 300;

struct Row {
    backend: &'static str,
    seq_writes: f64,
    par_writes: f64,
    reads: f64,
    p50: Duration,
    p99: Duration,
}

async fn bench(backend: &'static str, store: Arc<dyn Store>) -> Row {
    let value = vec![b'x'; 1024];
    let start = Instant::now();
    for i in 0..SEQ_WRITES {
        store
            .create(format!("/bench/seq/{i:06}").as_bytes(), &value)
            .await
            .expect("write");
    }
    let seq_writes = SEQ_WRITES as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, value) = (store.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PAR_WRITES / WRITERS {
                store
                    .create(format!("/bench/par/{w:02}/{i:06}").as_bytes(), &value)
                    .await
                    .expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let par_writes = PAR_WRITES as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..READS / WRITERS {
                let key = format!("/bench/seq/{:06}", (i * 7 + r) % SEQ_WRITES);
                assert!(store.get(key.as_bytes()).await.expect("read").is_some());
            }
        }));
    }
    for t in tasks {
        t.await.expect("reader");
    }
    let reads = READS as f64 / start.elapsed().as_secs_f64();

    // Delivery latency: from issuing a write to its event arriving at a watcher.
    let from = store.current_revision().await.expect("revision");
    let mut watch = store
        .watch(b"/bench/watch/", from, false)
        .await
        .expect("watch");
    let mut lat = Vec::with_capacity(WATCH_SAMPLES);
    for i in 0..WATCH_SAMPLES {
        let t0 = Instant::now();
        let rev = store
            .create(format!("/bench/watch/{i:06}").as_bytes(), &value)
            .await
            .expect("write");
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Put { kv, .. })) if kv.mod_revision == rev => break,
                Some(Ok(_)) => {}
                other => panic!("watch failed: {other:?}"),
            }
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    Row {
        backend,
        seq_writes,
        par_writes,
        reads,
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
    }
}

#[cfg(feature = "etcd")]
struct Etcd {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

#[cfg(feature = "etcd")]
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "etcd")]
async fn etcd() -> (Etcd, Arc<dyn Store>) {
    let port = |l: std::net::TcpListener| l.local_addr().expect("addr").port();
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (client, peer) = (port(bind()), port(bind()));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = std::process::Command::new("/usr/bin/etcd")
        .arg("--name=bench")
        .arg(format!("--data-dir={}", dir.path().display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=bench={peer_url}"))
        .arg("--log-level=error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start /usr/bin/etcd");
    let guard = Etcd { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match svcnet_store::EtcdStore::connect(&[url.as_str()], b"/svcnet-bench").await {
            Ok(s) => return (guard, Arc::new(s)),
            Err(e) if Instant::now() > deadline => panic!("etcd did not start: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.expect("open"));
    let rows = vec![
        bench("embedded", embedded).await,
        #[cfg(feature = "etcd")]
        {
            let (_guard, store) = etcd().await;
            bench("etcd", store).await
        },
    ];
    println!(
        "{:<10} {:>14} {:>16} {:>14} {:>12} {:>12}",
        "backend",
        "writes/s (1)",
        format!("writes/s ({WRITERS})"),
        format!("reads/s ({WRITERS})"),
        "watch p50",
        "watch p99"
    );
    for r in rows {
        println!(
            "{:<10} {:>14.0} {:>16.0} {:>14.0} {:>12} {:>12}",
            r.backend,
            r.seq_writes,
            r.par_writes,
            r.reads,
            format!("{:.2?}", r.p50),
            format!("{:.2?}", r.p99)
        );
    }
    println!("(1 KiB values; watch latency = issuing a write until its event arrives)");
}

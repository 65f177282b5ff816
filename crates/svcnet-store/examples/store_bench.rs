//! Store benchmark (not a test): writes/s at 1, 16 and 100 concurrent writers, reads/s and watch delivery latency per backend.
//!
//! `cargo run --release -p svcnet-store --example store_bench --features etcd`
//! starts a throwaway `/usr/bin/etcd` on loopback for the etcd row; without
//! the feature only the embedded row is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use svcnet_store::{EmbeddedStore, Store, WatchEvent};

/// Concurrent writer counts measured; 1 is the sequential case.
const WRITER_COUNTS: [usize; 3] = [1, 16, 100];
/// Writes per measurement (split evenly between the writers).
const WRITES: usize = 2000;
/// Readers for the read measurement.
const READERS: usize = 16;
const READS: usize = 8000;
const WATCH_SAMPLES: usize = 300;

struct Row {
    backend: &'static str,
    /// Writes/s and p99 write latency for each entry of `WRITER_COUNTS`.
    writes: Vec<(f64, Duration)>,
    reads: f64,
    p50: Duration,
    p99: Duration,
}

/// `WRITES` creates of 1 KiB from `writers` concurrent tasks: writes/s and p99 latency.
async fn write_rate(store: &Arc<dyn Store>, writers: usize, value: &[u8]) -> (f64, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value) = (store.clone(), value.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..WRITES / writers {
                let t0 = Instant::now();
                store
                    .create(
                        format!("/bench/w{writers}/{w:03}/{i:06}").as_bytes(),
                        &value,
                    )
                    .await
                    .expect("write");
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat[lat.len() * 99 / 100])
}

async fn bench(backend: &'static str, store: Arc<dyn Store>) -> Row {
    let value = vec![b'x'; 1024];
    let mut writes = Vec::new();
    for n in WRITER_COUNTS {
        writes.push(write_rate(&store, n, &value).await);
    }

    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..READERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..READS / READERS {
                let key = format!("/bench/w1/000/{:06}", (i * 7 + r) % WRITES);
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
        writes,
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
    let mut header = format!("{:<10}", "backend");
    for n in WRITER_COUNTS {
        header += &format!(" {:>15} {:>10}", format!("writes/s ({n})"), "p99");
    }
    header += &format!(
        " {:>14} {:>10} {:>10}",
        format!("reads/s ({READERS})"),
        "watch p50",
        "watch p99"
    );
    println!("{header}");
    for r in rows {
        let mut line = format!("{:<10}", r.backend);
        for (rate, p99) in &r.writes {
            line += &format!(" {:>15.0} {:>10}", rate, format!("{p99:.2?}"));
        }
        line += &format!(
            " {:>14.0} {:>10} {:>10}",
            r.reads,
            format!("{:.2?}", r.p50),
            format!("{:.2?}", r.p99)
        );
        println!("{line}");
    }
    println!(
        "(1 KiB creates, {WRITES} per column split across the writers; p99 = write latency; \
         watch latency = issuing a write until its event arrives)"
    );
}

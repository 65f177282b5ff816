//! Crash test: a writer is SIGKILLed at random moments; every acknowledged write must survive.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use svcnet_store::{EmbeddedStore, RangeRequest, Store};

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut rng = rand::rng();
    let mut acked_total: Vec<(String, i64)> = Vec::new();
    for round in 0..ROUNDS {
        let prefix = format!("/crash/{round:02}/");
        let mut child = Command::new(env!("CARGO_BIN_EXE_svcnet-store-crash-writer"))
            .arg(&dir)
            .arg(&prefix)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crash writer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.is_empty() {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        // Kill at a random moment once writing is under way.
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "round {round}: writer never wrote: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let lines = reader.join().expect("reader thread");
        let mut acked = Vec::new();
        for line in &lines {
            let (key, rev) = line.split_once(' ').expect("key and revision");
            acked.push((key.to_string(), rev.parse::<i64>().expect("revision")));
        }
        assert!(!acked.is_empty());
        for w in acked.windows(2) {
            assert!(
                w[0].1 < w[1].1,
                "round {round}: revisions must increase: {w:?}"
            );
        }
        if let (Some(last), Some(first)) = (acked_total.last(), acked.first()) {
            assert!(
                last.1 < first.1,
                "round {round}: revisions must increase across restarts"
            );
        }
        acked_total.extend(acked);

        // Reopen: every acknowledged key from every round is there, unchanged.
        let store = EmbeddedStore::open(&dir)
            .await
            .expect("reopen after SIGKILL");
        let all = store
            .range(RangeRequest {
                prefix: b"/crash/".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        let current = store.current_revision().await.unwrap();
        let found: std::collections::HashMap<String, i64> = all
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect();
        for (key, rev) in &acked_total {
            assert_eq!(
                found.get(key),
                Some(rev),
                "round {round}: acknowledged {key} lost"
            );
        }
        // Stored keys (acknowledged or not) have strictly increasing
        // revisions in write order, and none is beyond the current revision.
        let mut revs: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "round {round}: revisions out of order"
        );
        revs.dedup();
        assert_eq!(revs.len(), all.kvs.len());
        assert!(revs.last().is_none_or(|r| *r <= current));
        // At most one write beyond the acknowledged ones (killed before printing).
        assert!(all.kvs.len() - acked_total.len() <= round + 1);
    }
}

//! Embedded backend specifics: restart, bad data directories, automatic compaction, slow watchers.

mod common;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use svcnet_store::{
    DB_FILE, EmbeddedConfig, EmbeddedStore, KeyValue, RangeRequest, Store, StoreError, WatchEvent,
};

fn config() -> EmbeddedConfig {
    common::test_config()
}

async fn open(dir: &Path, cfg: EmbeddedConfig) -> Result<EmbeddedStore, StoreError> {
    EmbeddedStore::open_with(dir, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_watch_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (r1, r4) = {
        let s = open(&dir, config()).await.unwrap();
        let r1 = s.create(b"/a", b"1").await.unwrap();
        let r2 = s.update(b"/a", b"2", r1).await.unwrap();
        s.delete(b"/a", Some(r2)).await.unwrap();
        let r4 = s.create(b"/b", b"b").await.unwrap();
        (r1, r4)
    };
    let s = open(&dir, config()).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), r4);
    assert_eq!(
        s.get(b"/b").await.unwrap(),
        Some(KeyValue {
            key: b"/b".to_vec(),
            value: b"b".to_vec(),
            create_revision: r4,
            mod_revision: r4
        })
    );
    let mut w = s.watch(b"/", r1 - 1, false).await.unwrap();
    let mut revs = Vec::new();
    for _ in 0..4 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        revs.push((ev.revision(), matches!(ev, WatchEvent::Delete { .. })));
    }
    assert_eq!(
        revs,
        vec![(r1, false), (r1 + 1, false), (r1 + 2, true), (r4, false)]
    );
    // Revisions keep growing after the restart.
    assert_eq!(s.create(b"/c", b"c").await.unwrap(), r4 + 1);
}

#[tokio::test]
async fn second_open_of_one_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open(tmp.path(), config()).await.unwrap();
    let err = open(tmp.path(), config()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store backend unavailable: {}: database is already open (another svcnet process uses this data directory)",
            tmp.path().join(DB_FILE).display()
        )
    );
}

/// Builds a valid store in `dir` and closes it.
async fn make_store(dir: &Path) {
    let s = open(dir, config()).await.unwrap();
    for i in 0..50 {
        s.create(format!("/k/{i}").as_bytes(), &[b'v'; 300])
            .await
            .unwrap();
    }
}

/// Rewrites the store's meta record `name` with `value` using redb directly.
fn set_meta(file: &Path, name: &str, value: &[u8]) {
    const META: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
    let db = redb::Database::open(file).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(name, value).unwrap();
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_directories_are_refused_and_left_alone() {
    type Setup = fn(&Path);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "a file instead of a directory",
            |d| std::fs::write(d, b"hello").unwrap(),
            "store at {dir}: exists and is not a directory",
        ),
        (
            "a directory with other data",
            |d| {
                std::fs::create_dir_all(d.join("member")).unwrap();
                std::fs::write(d.join("a.txt"), b"x").unwrap();
            },
            "store at {dir}: directory is not empty but holds no store.redb (found: a.txt, member); \
             refusing to create a store over other data — use an empty or new directory",
        ),
        (
            "a store file that is not a database",
            |d| {
                std::fs::create_dir_all(d).unwrap();
                std::fs::write(d.join(DB_FILE), b"this is not a database\n".repeat(200)).unwrap();
            },
            "store at {file}: not a svcnet store database: Not a redb database: magic number mismatch",
        ),
        (
            "a redb database written by another program",
            |d| {
                std::fs::create_dir_all(d).unwrap();
                const T: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("x");
                let db = redb::Database::create(d.join(DB_FILE)).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(T).unwrap().insert("a", 1).unwrap();
                txn.commit().unwrap();
            },
            "store at {file}: not a svcnet store: the redb file has no meta table (written by another program?)",
        ),
    ];
    for (what, setup, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        setup(&dir);
        let before = snapshot(&dir);
        let err = open(&dir, config()).await.map(|_| ()).unwrap_err();
        let want = want
            .replace("{dir}", &dir.display().to_string())
            .replace("{file}", &dir.join(DB_FILE).display().to_string());
        assert_eq!(err.to_string(), want, "{what}");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err:?}");
        assert_eq!(snapshot(&dir), before, "{what}: data was modified");
    }
}

/// Cases that start from a valid store and damage it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_newer_stores_are_refused() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage, Option<&str>)> = vec![
        (
            "newer format",
            |f| set_meta(f, "format", &3u32.to_le_bytes()),
            Some(
                "store at {file}: format version 3 is newer than this build supports (2); use a newer svcnet",
            ),
        ),
        (
            "wrong magic",
            |f| set_meta(f, "magic", b"someone-else"),
            Some("store at {file}: not a svcnet store: magic record missing or wrong"),
        ),
        (
            "inconsistent revisions",
            |f| set_meta(f, "compacted", &1000i64.to_le_bytes()),
            Some("store at {file}: inconsistent revisions: current 51, compacted 1000"),
        ),
        (
            "truncated file",
            |f| {
                let len = std::fs::metadata(f).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_len(len / 3)
                    .unwrap();
            },
            None,
        ),
        (
            "flipped bytes",
            |f| {
                let mut bytes = std::fs::read(f).unwrap();
                let n = bytes.len();
                for b in &mut bytes[n / 4..n / 2] {
                    *b ^= 0x5a;
                }
                std::fs::write(f, bytes).unwrap();
            },
            None,
        ),
    ];
    for (what, damage, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        make_store(&dir).await;
        let file = dir.join(DB_FILE);
        damage(&file);
        let err = open(&dir, config()).await.map(|_| ()).unwrap_err();
        let file_s = file.display().to_string();
        match want {
            Some(want) => assert_eq!(err.to_string(), want.replace("{file}", &file_s), "{what}"),
            None => assert!(
                err.to_string().starts_with(&format!("store at {file_s}: ")),
                "{what}: {err}"
            ),
        }
        assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err:?}");
        assert!(file.exists(), "{what}: store file removed");
    }
}

/// Names and content hashes of what is at `dir`.
fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    use std::hash::{Hash, Hasher};
    let hash = |p: &Path| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(p).unwrap_or_default().hash(&mut h);
        h.finish()
    };
    if dir.is_file() {
        return vec![(String::new(), hash(dir))];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let e = e.unwrap();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                hash(&e.path()),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_value_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(
        tmp.path(),
        EmbeddedConfig {
            max_value_bytes: 10,
            ..config()
        },
    )
    .await
    .unwrap();
    assert!(s.create(b"/ok", &[0; 10]).await.is_ok());
    assert_eq!(
        s.create(b"/big", &[0; 11]).await.unwrap_err().to_string(),
        "value of 11 bytes exceeds the limit of 10 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_by_count() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        history_revisions: 10,
        ..config()
    };
    let s = open(tmp.path(), cfg).await.unwrap();
    for i in 0..40 {
        s.create(format!("/n/{i}").as_bytes(), b"v").await.unwrap();
    }
    let cur = s.current_revision().await.unwrap();
    let compacted = s.compacted_revision().await.unwrap();
    assert!(
        (10..=11).contains(&(cur - compacted)),
        "cur {cur} compacted {compacted}"
    );
    assert!(matches!(
        s.watch(b"/n/", compacted - 1, false).await.map(|_| ()),
        Err(StoreError::Compacted { .. })
    ));
    // Reads at the oldest kept revision still see every key that existed then.
    let at = s
        .range(RangeRequest {
            prefix: b"/n/".to_vec(),
            revision: Some(compacted),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at.kvs.len() as i64, 40 - (cur - compacted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_by_age() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        history_age: Duration::from_millis(100),
        compaction_interval: Duration::from_millis(20),
        ..config()
    };
    let s = open(tmp.path(), cfg).await.unwrap();
    for i in 0..5 {
        s.create(format!("/age/{i}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let cur = s.current_revision().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.compacted_revision().await.unwrap() < cur {
        assert!(
            tokio::time::Instant::now() < deadline,
            "age compaction did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.compacted_revision().await.unwrap(), cur);
    // Watching from now still works after everything aged out.
    let mut w = s.watch(b"/age/", cur, false).await.unwrap();
    let r = s.create(b"/age/new", b"v").await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.revision(), r);
    assert_eq!(s.compact_expired().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_compaction_goes_in_chunks_and_lets_writes_through() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        history_age: Duration::from_millis(200),
        // Only the explicit call below compacts.
        compaction_interval: Duration::from_secs(3600),
        ..config()
    };
    let s = open(tmp.path(), cfg).await.unwrap();
    // 2,600 revisions: three chunks of at most 1,000.
    futures::future::join_all((0..2600).map(|i| {
        let s = &s;
        async move {
            s.create(format!("/chunk/{i}").as_bytes(), b"v")
                .await
                .unwrap()
        }
    }))
    .await;
    let cur = s.current_revision().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Writes issued while compaction runs complete (they are not stuck
    // behind one long transaction) and are kept.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                revs.push(
                    s.create(format!("/during/{i}").as_bytes(), b"v")
                        .await
                        .unwrap(),
                );
            }
            revs
        })
    };
    let done = s.compact_expired().await.unwrap();
    let revs = writer.await.unwrap();
    assert!(done.is_some_and(|d| d >= cur), "{done:?} < {cur}");
    assert!(s.compacted_revision().await.unwrap() >= cur);
    let last = *revs.last().unwrap();
    assert!(last > cur);
    // The young writes are still watchable from just before them.
    let mut w = s.watch(b"/during/", last - 1, false).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.revision(), last);
}

/// Reads `n` events and returns their revisions.
async fn revisions(w: &mut svcnet_store::WatchStream, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for _ in 0..n {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("no error");
        out.push(ev.revision());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(
        tmp.path(),
        EmbeddedConfig {
            watch_buffer: 2,
            ..config()
        },
    )
    .await
    .unwrap();
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch(b"/s/", start, false).await.unwrap();
    // Far more than both buffers, without reading.
    for i in 0..600 {
        s.create(format!("/s/{i:04}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let got = revisions(&mut w, 600).await;
    assert_eq!(got, (start + 1..=start + 600).collect::<Vec<_>>());
    let r = s.create(b"/s/last", b"v").await.unwrap();
    assert_eq!(revisions(&mut w, 1).await, vec![r]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_behind_the_window_gets_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        watch_buffer: 1,
        history_revisions: 10,
        ..config()
    };
    let s = open(tmp.path(), cfg).await.unwrap();
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch(b"/s/", start, false).await.unwrap();
    for i in 0..600 {
        s.create(format!("/s/{i:04}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let mut next = start + 1;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
        {
            Some(Ok(ev)) => {
                assert_eq!(ev.revision(), next, "no gap before the error");
                next += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert!(
        matches!(err, StoreError::Compacted { requested, .. } if requested == next - 1),
        "{err:?}"
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
}

/// Group commit under load: 64 writers at once, each creating its key and
/// updating it, with a stale-guard update in between that must fail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_increasing_revisions() {
    const WRITERS: usize = 64;
    const UPDATES: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(tmp.path(), config()).await.unwrap());
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(b"/cw/", start, false).await.unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("/cw/{w:02}");
            barrier.wait().await;
            let mut revs = vec![s.create(key.as_bytes(), b"0").await.unwrap()];
            for i in 1..=UPDATES {
                let last = *revs.last().unwrap();
                // A lost guard in the same stream of batches as the others.
                let stale = s.update(key.as_bytes(), b"stale", last - 1).await;
                assert_eq!(
                    stale.map_err(|e| e.to_string()),
                    Err(format!(
                        "conflict: key was modified (current revision Some({last}))"
                    )),
                    "{key}"
                );
                revs.push(
                    s.update(key.as_bytes(), i.to_string().as_bytes(), last)
                        .await
                        .unwrap(),
                );
            }
            (key, revs)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (key, revs) = t.await.unwrap();
        assert!(revs.windows(2).all(|p| p[0] < p[1]), "{key}: {revs:?}");
        let kv = s.get(key.as_bytes()).await.unwrap().unwrap();
        assert_eq!(
            (kv.value, kv.create_revision, kv.mod_revision),
            (UPDATES.to_string().into_bytes(), revs[0], revs[UPDATES]),
            "{key}"
        );
        all.extend(revs);
    }
    all.sort();
    let n = WRITERS * (UPDATES + 1);
    // Distinct and gap-free: the failed guards took no revision.
    assert_eq!(all, ((start + 1)..=(start + n as i64)).collect::<Vec<_>>());
    assert_eq!(s.current_revision().await.unwrap(), start + n as i64);
    let mut seen = Vec::new();
    while seen.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(ev.revision());
    }
    assert_eq!(seen, all, "watch order");
}

/// Compaction keeps the current value of a key written long ago (it lives
/// in its log entry) and drops a deleted key's history for good: neither
/// changes after a restart, which rebuilds the key index from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_old_current_values_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        history_revisions: 10,
        ..config()
    };
    let (keep_rev, updated_rev) = {
        let s = open(tmp.path(), cfg.clone()).await.unwrap();
        let keep = s.create(b"/keep", b"old").await.unwrap();
        let r = s.create(b"/upd", b"1").await.unwrap();
        let r = s.update(b"/upd", b"2", r).await.unwrap();
        let g = s.create(b"/gone", b"x").await.unwrap();
        s.delete(b"/gone", Some(g)).await.unwrap();
        for i in 0..60 {
            s.create(format!("/n/{i}").as_bytes(), b"v").await.unwrap();
        }
        assert!(s.compacted_revision().await.unwrap() > g + 1);
        (keep, r)
    };
    for round in 0..2 {
        let s = open(tmp.path(), cfg.clone()).await.unwrap();
        let keep = s.get(b"/keep").await.unwrap().expect("/keep survives");
        assert_eq!(
            (
                keep.value.as_slice(),
                keep.create_revision,
                keep.mod_revision
            ),
            (&b"old"[..], keep_rev, keep_rev),
            "round {round}"
        );
        let upd = s.get(b"/upd").await.unwrap().expect("/upd survives");
        assert_eq!(
            (upd.value.as_slice(), upd.mod_revision),
            (&b"2"[..], updated_rev)
        );
        assert_eq!(s.get(b"/gone").await.unwrap(), None, "round {round}");
        let all = s
            .range(RangeRequest {
                prefix: b"/".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.kvs.len(), 62 + 30 * round, "round {round}");
        // More writes and compactions after the restart.
        for i in 0..30 {
            s.create(format!("/m{round}/{i}").as_bytes(), b"v")
                .await
                .unwrap();
        }
        assert_eq!(
            s.get(b"/keep").await.unwrap().map(|kv| kv.value),
            Some(b"old".to_vec())
        );
    }
}

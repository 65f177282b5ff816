//! One conformance suite for every backend: CRUD and guards, pagination, reads at a revision, txn, CAS, watch, compaction.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use svcnet_store::{
    Compare, DEFAULT_MAX_VALUE_BYTES, KeyValue, Op, RangeRequest, Store, StoreError, WatchEvent,
    WatchStream,
};

fn kv(key: &str, value: &str, create: i64, modr: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modr,
    }
}

fn keys_of(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// The next `n` change events (progress marks skipped), or a panic after 10 s.
async fn next_changes(w: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} events", out.len()))
            .expect("watch ended early")
            .expect("watch failed");
        if !matches!(item, WatchEvent::Progress { .. }) {
            out.push(item);
        }
    }
    out
}

fn err_text<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    r.expect_err("expected an error").to_string()
}

async fn crud_and_guards(s: Arc<dyn Store>) {
    let k = "/registry/services/default/a";
    let r1 = s.create(k.as_bytes(), b"v1").await.unwrap();
    assert_eq!(
        s.get(k.as_bytes()).await.unwrap(),
        Some(kv(k, "v1", r1, r1))
    );
    assert_eq!(
        err_text(s.create(k.as_bytes(), b"again").await),
        "key already exists"
    );
    assert_eq!(
        err_text(s.update(k.as_bytes(), b"v2", r1 + 100).await),
        format!("conflict: key was modified (current revision Some({r1}))")
    );
    assert_eq!(
        err_text(s.update(k.as_bytes(), b"v2", 0).await),
        format!("conflict: key was modified (current revision Some({r1}))")
    );
    let r2 = s.update(k.as_bytes(), b"v2", r1).await.unwrap();
    assert!(r2 > r1, "{r2} > {r1}");
    assert_eq!(
        err_text(s.update(b"/registry/services/default/none", b"x", r1).await),
        "key not found"
    );
    assert_eq!(
        err_text(s.delete(k.as_bytes(), Some(r1)).await),
        format!("conflict: key was modified (current revision Some({r2}))")
    );
    let (r3, prev) = s.delete(k.as_bytes(), Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(prev, kv(k, "v2", r1, r2));
    assert_eq!(
        err_text(s.delete(k.as_bytes(), None).await),
        "key not found"
    );
    assert_eq!(
        err_text(s.delete(k.as_bytes(), Some(r3)).await),
        "key not found"
    );
    assert_eq!(s.get(k.as_bytes()).await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), r3);
    // A key created again starts a new life.
    let r4 = s.create(k.as_bytes(), b"v3").await.unwrap();
    assert_eq!(
        s.get(k.as_bytes()).await.unwrap(),
        Some(kv(k, "v3", r4, r4))
    );
    let (r5, prev) = s.delete(k.as_bytes(), None).await.unwrap();
    assert_eq!((r5, prev), (r4 + 1, kv(k, "v3", r4, r4)));
    assert_eq!(
        err_text(s.create(b"", b"x").await),
        "invalid request: key must not be empty"
    );
}

async fn value_limits(s: Arc<dyn Store>) {
    let too_big = vec![b'x'; DEFAULT_MAX_VALUE_BYTES + 1];
    let want = format!(
        "value of {} bytes exceeds the limit of {} bytes",
        DEFAULT_MAX_VALUE_BYTES + 1,
        DEFAULT_MAX_VALUE_BYTES
    );
    assert_eq!(err_text(s.create(b"/big", &too_big).await), want);
    let r = s.create(b"/big", b"small").await.unwrap();
    assert_eq!(err_text(s.update(b"/big", &too_big, r).await), want);
    assert_eq!(
        err_text(
            s.txn(vec![], vec![Op::Put(b"/big2".to_vec(), too_big)])
                .await
        ),
        want
    );
    // A large value well inside the limit round-trips.
    let large = vec![b'y'; 1024 * 1024];
    let r2 = s.update(b"/big", &large, r).await.unwrap();
    assert_eq!(
        s.get(b"/big").await.unwrap().map(|kv| kv.value.len()),
        Some(large.len())
    );
    assert_eq!(s.current_revision().await.unwrap(), r2);
}

async fn pagination_is_consistent_under_writes(s: Arc<dyn Store>) {
    let prefix = "/registry/pods/ns1/";
    for i in 0..10 {
        s.create(
            format!("{prefix}p{i:02}").as_bytes(),
            format!("a{i}").as_bytes(),
        )
        .await
        .unwrap();
    }
    // Neighbours that must never show up.
    for other in [
        "/registry/pods/ns10/x",
        "/registry/pods/ns1",
        "/registry/pods/ns2/p00",
    ] {
        s.create(other.as_bytes(), b"other").await.unwrap();
    }
    let page = |start: Option<Vec<u8>>, revision: Option<i64>| RangeRequest {
        prefix: prefix.as_bytes().to_vec(),
        start,
        limit: 4,
        revision,
    };
    let p1 = s.range(page(None, None)).await.unwrap();
    assert_eq!(
        keys_of(&p1.kvs),
        ["p00", "p01", "p02", "p03"].map(|k| format!("{prefix}{k}"))
    );
    assert_eq!((p1.more, p1.remaining), (true, 10));
    let at = p1.revision;
    assert_eq!(at, s.current_revision().await.unwrap());

    // Writes between pages must not show in the paginated list.
    let p05 = format!("{prefix}p05");
    s.delete(p05.as_bytes(), None).await.unwrap();
    let p06 = s
        .get(format!("{prefix}p06").as_bytes())
        .await
        .unwrap()
        .unwrap();
    s.update(&p06.key, b"changed", p06.mod_revision)
        .await
        .unwrap();
    s.create(format!("{prefix}p03a").as_bytes(), b"new")
        .await
        .unwrap();
    s.create(format!("{prefix}p99").as_bytes(), b"new")
        .await
        .unwrap();

    let next_start = |last: &KeyValue| {
        let mut k = last.key.clone();
        k.push(0);
        Some(k)
    };
    let p2 = s
        .range(page(next_start(&p1.kvs[3]), Some(at)))
        .await
        .unwrap();
    assert_eq!(
        keys_of(&p2.kvs),
        ["p04", "p05", "p06", "p07"].map(|k| format!("{prefix}{k}"))
    );
    assert_eq!((p2.more, p2.remaining, p2.revision), (true, 6, at));
    let p3 = s
        .range(page(next_start(&p2.kvs[3]), Some(at)))
        .await
        .unwrap();
    assert_eq!(
        keys_of(&p3.kvs),
        ["p08", "p09"].map(|k| format!("{prefix}{k}"))
    );
    assert_eq!((p3.more, p3.remaining, p3.revision), (false, 2, at));
    let values: Vec<String> = [p1.kvs, p2.kvs, p3.kvs]
        .concat()
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .collect();
    assert_eq!(values, (0..10).map(|i| format!("a{i}")).collect::<Vec<_>>());

    // The latest state has all the changes.
    let latest = s
        .range(RangeRequest {
            prefix: prefix.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let want = [
        "p00", "p01", "p02", "p03", "p03a", "p04", "p06", "p07", "p08", "p09", "p99",
    ];
    assert_eq!(keys_of(&latest.kvs), want.map(|k| format!("{prefix}{k}")));
    assert_eq!((latest.more, latest.remaining), (false, 11));
    assert_eq!(latest.kvs[6].value, b"changed");
}

async fn reads_at_past_revisions(s: Arc<dyn Store>) {
    let r1 = s.create(b"/r/k", b"v1").await.unwrap();
    let r2 = s.update(b"/r/k", b"v2", r1).await.unwrap();
    let (r3, _) = s.delete(b"/r/k", None).await.unwrap();
    let r4 = s.create(b"/r/other", b"o").await.unwrap();
    let at = |revision| RangeRequest {
        prefix: b"/r/".to_vec(),
        revision,
        ..Default::default()
    };
    let cases = [
        (Some(r1), vec![kv("/r/k", "v1", r1, r1)]),
        (Some(r2), vec![kv("/r/k", "v2", r1, r2)]),
        (Some(r3), vec![]),
        (Some(r4), vec![kv("/r/other", "o", r4, r4)]),
        (None, vec![kv("/r/other", "o", r4, r4)]),
    ];
    for (rev, want) in cases {
        let got = s.range(at(rev)).await.unwrap();
        assert_eq!(got.kvs, want, "at {rev:?}");
        assert_eq!(got.revision, rev.unwrap_or(r4));
        assert_eq!(got.remaining, want.len());
    }
    assert_eq!(
        err_text(s.range(at(Some(r4 + 1))).await),
        format!(
            "required revision {} is a future revision (current: {r4})",
            r4 + 1
        )
    );
}

async fn transactions(s: Arc<dyn Store>) {
    let (a, b) = (b"/t/a".to_vec(), b"/t/b".to_vec());
    let ra = s.create(&a, b"1").await.unwrap();
    let resp = s
        .txn(
            vec![
                Compare::Absent(b.clone()),
                Compare::ModRevision(a.clone(), ra),
            ],
            vec![
                Op::Put(a.clone(), b"2".to_vec()),
                Op::Put(b.clone(), b"x".to_vec()),
            ],
        )
        .await
        .unwrap();
    let r = resp.revision;
    assert!(resp.succeeded);
    assert_eq!(resp.prev, vec![Some(kv("/t/a", "1", ra, ra)), None]);
    assert_eq!(s.get(&a).await.unwrap(), Some(kv("/t/a", "2", ra, r)));
    assert_eq!(s.get(&b).await.unwrap(), Some(kv("/t/b", "x", r, r)));

    // A failed guard writes nothing.
    let failed = s
        .txn(
            vec![Compare::Absent(b.clone())],
            vec![Op::Delete(a.clone())],
        )
        .await
        .unwrap();
    assert_eq!(
        (failed.succeeded, failed.revision, failed.prev.len()),
        (false, r, 0)
    );
    let stale = s
        .txn(
            vec![Compare::ModRevision(a.clone(), ra)],
            vec![Op::Delete(a.clone())],
        )
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(s.get(&a).await.unwrap(), Some(kv("/t/a", "2", ra, r)));

    // Deleting nothing makes no revision, as in etcd.
    let noop = s
        .txn(vec![], vec![Op::Delete(b"/t/none".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        (noop.succeeded, noop.revision, noop.prev),
        (true, r, vec![None])
    );
    assert_eq!(s.current_revision().await.unwrap(), r);

    let both = s
        .txn(vec![], vec![Op::Delete(a.clone()), Op::Delete(b.clone())])
        .await
        .unwrap();
    assert_eq!(both.revision, r + 1);
    assert_eq!(
        both.prev,
        vec![Some(kv("/t/a", "2", ra, r)), Some(kv("/t/b", "x", r, r))]
    );

    assert_eq!(
        err_text(
            s.txn(
                vec![],
                vec![Op::Put(a.clone(), vec![]), Op::Delete(a.clone())]
            )
            .await
        ),
        "invalid request: duplicate key given in txn request"
    );
}

async fn cas_counter_under_concurrent_writers(s: Arc<dyn Store>) {
    const TASKS: usize = 6;
    const EACH: usize = 8;
    let key = b"/counter".to_vec();
    s.create(&key, b"0").await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (s, key) = (s.clone(), key.clone());
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            while revs.len() < EACH {
                let cur = s.get(&key).await.unwrap().unwrap();
                let n: u64 = String::from_utf8_lossy(&cur.value).parse().unwrap();
                match s
                    .update(&key, (n + 1).to_string().as_bytes(), cur.mod_revision)
                    .await
                {
                    Ok(rev) => revs.push(rev),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let fin = s.get(&key).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&fin.value),
        (TASKS * EACH).to_string()
    );
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        TASKS * EACH,
        "every successful CAS has its own revision"
    );
    assert_eq!(unique.last().copied(), Some(fin.mod_revision));
}

/// What a watcher should see for a write: (revision, key, is_delete).
type Seen = (i64, String, bool);

fn seen(ev: &WatchEvent) -> Seen {
    match ev {
        WatchEvent::Put { kv, .. } => (
            kv.mod_revision,
            String::from_utf8_lossy(&kv.key).into(),
            false,
        ),
        WatchEvent::Delete { prev, revision } => {
            (*revision, String::from_utf8_lossy(&prev.key).into(), true)
        }
        WatchEvent::Progress { revision } => (*revision, String::new(), false),
    }
}

async fn watchers_see_identical_ordered_sequences(s: Arc<dyn Store>) {
    let start = s.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(s.watch(b"/w/", start, false).await.unwrap());
    }
    let mut writers = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut done: Vec<Seen> = Vec::new();
            for i in 0..15 {
                let key = format!("/w/{t}/{i}");
                let r = s.create(key.as_bytes(), b"v").await.unwrap();
                done.push((r, key.clone(), false));
                s.create(format!("/other/{t}/{i}").as_bytes(), b"v")
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    let (r, _) = s.delete(key.as_bytes(), Some(r)).await.unwrap();
                    done.push((r, key, true));
                }
            }
            done
        }));
    }
    let mut want = Vec::new();
    for w in writers {
        want.extend(w.await.unwrap());
    }
    want.sort();
    for w in &mut watchers {
        let got: Vec<Seen> = next_changes(w, want.len()).await.iter().map(seen).collect();
        assert_eq!(got, want);
    }
    // Nothing extra is queued behind them: the next event is the marker.
    let r = s.create(b"/w/marker", b"m").await.unwrap();
    for w in &mut watchers {
        let got: Vec<Seen> = next_changes(w, 1).await.iter().map(seen).collect();
        assert_eq!(got, vec![(r, "/w/marker".to_string(), false)]);
    }
}

async fn watch_resumes_from_a_revision(s: Arc<dyn Store>) {
    let r1 = s.create(b"/res/a", b"v1").await.unwrap();
    let r2 = s.update(b"/res/a", b"v2", r1).await.unwrap();
    let (r3, _) = s.delete(b"/res/a", None).await.unwrap();
    s.create(b"/elsewhere", b"x").await.unwrap();
    let r4 = s.create(b"/res/b", b"b1").await.unwrap();
    let mut w = s.watch(b"/res/", r1, false).await.unwrap();
    let want = vec![
        WatchEvent::Put {
            kv: kv("/res/a", "v2", r1, r2),
            prev: Some(kv("/res/a", "v1", r1, r1)),
        },
        WatchEvent::Delete {
            prev: kv("/res/a", "v2", r1, r2),
            revision: r3,
        },
        WatchEvent::Put {
            kv: kv("/res/b", "b1", r4, r4),
            prev: None,
        },
    ];
    assert_eq!(next_changes(&mut w, 3).await, want);
    // Then live events follow without a gap.
    let r5 = s.update(b"/res/b", b"b2", r4).await.unwrap();
    assert_eq!(
        next_changes(&mut w, 1).await,
        vec![WatchEvent::Put {
            kv: kv("/res/b", "b2", r4, r5),
            prev: Some(kv("/res/b", "b1", r4, r4)),
        }]
    );
    // A transaction's events arrive together, in op order.
    let t = s
        .txn(
            vec![],
            vec![
                Op::Put(b"/res/c".to_vec(), b"c".to_vec()),
                Op::Delete(b"/res/b".to_vec()),
            ],
        )
        .await
        .unwrap();
    let got: Vec<Seen> = next_changes(&mut w, 2).await.iter().map(seen).collect();
    assert_eq!(
        got,
        vec![
            (t.revision, "/res/c".into(), false),
            (t.revision, "/res/b".into(), true)
        ]
    );
}

async fn compaction_answers_gone(s: Arc<dyn Store>) {
    let r1 = s.create(b"/c/a", b"1").await.unwrap();
    let r2 = s.update(b"/c/a", b"2", r1).await.unwrap();
    let r3 = s.update(b"/c/a", b"3", r2).await.unwrap();
    s.compact(r2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), r2);
    let gone = format!(
        "required revision {} has been compacted (oldest kept: {r2})",
        r2 - 1
    );
    let e = s
        .watch(b"/c/", r2 - 1, false)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, StoreError::Compacted { .. }), "{e:?}");
    assert_eq!(e.to_string(), gone);
    let old = RangeRequest {
        prefix: b"/c/".to_vec(),
        revision: Some(r2 - 1),
        ..Default::default()
    };
    assert_eq!(err_text(s.range(old.clone()).await), gone);
    let kept = s
        .range(RangeRequest {
            revision: Some(r2),
            ..old
        })
        .await
        .unwrap();
    assert_eq!(kept.kvs, vec![kv("/c/a", "2", r1, r2)]);
    let mut w = s.watch(b"/c/", r2, false).await.unwrap();
    assert_eq!(
        next_changes(&mut w, 1).await,
        vec![WatchEvent::Put {
            kv: kv("/c/a", "3", r1, r3),
            prev: Some(kv("/c/a", "2", r1, r2)),
        }]
    );
    assert_eq!(
        err_text(s.compact(r2).await),
        format!("required revision {r2} has been compacted (oldest kept: {r2})")
    );
    assert_eq!(
        err_text(s.compact(r3 + 1).await),
        format!(
            "required revision {} is a future revision (current: {r3})",
            r3 + 1
        )
    );
}

async fn progress_marks_when_idle(s: Arc<dyn Store>) {
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch(b"/p/", start, true).await.unwrap();
    let r1 = s.create(b"/p/a", b"1").await.unwrap();
    let r2 = s.create(b"/unwatched", b"1").await.unwrap();
    let mut changes = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("no progress mark within 10 s")
            .expect("watch ended")
            .expect("watch failed");
        match item {
            WatchEvent::Progress { revision } => {
                assert!(revision >= changes.last().map_or(start, seen_rev));
                if revision >= r2 {
                    break;
                }
            }
            ev => changes.push(ev),
        }
    }
    assert_eq!(
        changes,
        vec![WatchEvent::Put {
            kv: kv("/p/a", "1", r1, r1),
            prev: None
        }]
    );
}

fn seen_rev(ev: &WatchEvent) -> i64 {
    ev.revision()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = crate::common::embedded().await;
                    crate::$name(f.store.clone()).await;
                }
            )*
        }
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = crate::common::etcd().await;
                    crate::$name(f.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    crud_and_guards,
    value_limits,
    pagination_is_consistent_under_writes,
    reads_at_past_revisions,
    transactions,
    cas_counter_under_concurrent_writers,
    watchers_see_identical_ordered_sequences,
    watch_resumes_from_a_revision,
    compaction_answers_gone,
    progress_marks_when_idle,
);

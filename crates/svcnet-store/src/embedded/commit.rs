//! Group commit: one writer thread applies every queued write request of a batch in one durable redb transaction.
//!
//! Callers queue a [`WriteRequest`] and wait for its answer. The writer
//! takes whatever is queued (up to [`MAX_BATCH`] requests or
//! [`MAX_BATCH_BYTES`]), applies the requests in queue order inside one
//! write transaction — each request that changes something gets its own
//! revision, and guards see the earlier requests of the same batch — and
//! commits once with `Durability::Immediate`. Only then are the new key
//! index and the watch events published (in revision order) and the
//! requests answered, so no acknowledgement precedes durability. While one
//! batch is being synced the next one queues up, which is what turns N
//! fsyncs into one.

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use redb::Durability;
use tokio::sync::oneshot;

use std::collections::BTreeMap;

use super::codec::{self, Change, Current, LogEntry};
use super::index::Index;
use super::{Inner, LOG, META, Outcome, broadcast, meta_i64, now_millis, value_at};
use crate::{Compare, KeyValue, Op, Result, Revision, StoreError};

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 512;
/// A batch stops growing once its values add up to this many bytes, so one
/// commit never has to write an unbounded amount.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// One queued write: guards, ops and where to send the outcome.
pub(super) struct WriteRequest {
    pub(super) compares: Vec<Compare>,
    pub(super) ops: Vec<Op>,
    pub(super) reply: oneshot::Sender<Result<Outcome>>,
}

impl WriteRequest {
    fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => k.len() + v.len(),
                Op::Delete(k) => k.len(),
            })
            .sum()
    }
}

/// Starts the writer thread. It holds the store only weakly while idle, so
/// dropping the last store handle closes the database (and the queue,
/// which ends the thread).
pub(super) fn spawn_writer(inner: Weak<Inner>, rx: mpsc::Receiver<WriteRequest>) -> Result<()> {
    std::thread::Builder::new()
        .name("svcnet-store-writer".into())
        .spawn(move || writer_loop(inner, rx))
        .map(|_| ())
        .map_err(|e| StoreError::Io(format!("starting the store writer thread: {e}")))
}

fn writer_loop(inner: Weak<Inner>, rx: mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.bytes();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        let Some(strong) = inner.upgrade() else {
            answer(failed(
                batch,
                &StoreError::Unavailable("store closed".into()),
            ));
            return;
        };
        let step = 2 * batch.len() as i64 + 256;
        let answers = strong.commit_batch(batch);
        // History beyond the kept count goes a step at a time between
        // batches (see `Inner::compact_by_count`), before the answers.
        if let Err(e) = strong.compact_by_count(step) {
            tracing::warn!(error = %e, "compaction after a write failed");
        }
        // Let go of the store before answering: a caller that drops its
        // last handle right after its write must find the database closed.
        drop(strong);
        answer(answers);
    }
}

/// A request's reply channel with its result.
type Answer = (oneshot::Sender<Result<Outcome>>, Result<Outcome>);

fn answer(answers: Vec<Answer>) {
    for (reply, result) in answers {
        // The caller may have given up waiting; the write stands.
        let _ = reply.send(result);
    }
}

/// Why a batch did not commit.
enum BatchFailure {
    /// One request hit an error while being applied (for example a damaged
    /// record of its key): the others deserve a try without it.
    Apply(StoreError),
    /// The transaction as a whole failed; nothing of it is durable.
    Commit(StoreError),
}

impl Inner {
    /// Applies and commits one batch; returns the answers to send.
    fn commit_batch(&self, batch: Vec<WriteRequest>) -> Vec<Answer> {
        match self.run_batch(&batch) {
            Ok(outcomes) => batch
                .into_iter()
                .zip(outcomes)
                .map(|(req, out)| (req.reply, Ok(out)))
                .collect(),
            Err(BatchFailure::Apply(_)) if batch.len() > 1 => {
                // The failed transaction was rolled back whole; redo every
                // request on its own so only the culprit sees its error.
                batch
                    .into_iter()
                    .flat_map(|req| self.commit_batch(vec![req]))
                    .collect()
            }
            Err(BatchFailure::Apply(e) | BatchFailure::Commit(e)) => failed(batch, &e),
        }
    }

    /// One transaction for the whole batch; events go to watchers after the
    /// durable commit, under the writer lock (see [`Inner::subscribe`]).
    fn run_batch(&self, batch: &[WriteRequest]) -> std::result::Result<Vec<Outcome>, BatchFailure> {
        let mut writer = self.lock_writer();
        let mut txn = self.db.begin_write().map_err(|e| self.commit_err(e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| {
            BatchFailure::Commit(StoreError::Io(format!("{}: {e}", self.path.display())))
        })?;
        let unix_millis = now_millis(SystemTime::now());
        let index = self.index();
        // This batch's changes so far: key → its state now (None: deleted).
        let mut overlay: BTreeMap<Vec<u8>, Option<Current>> = BTreeMap::new();
        let (outcomes, entries) = {
            let mut meta = txn.open_table(META).map_err(|e| self.commit_err(e))?;
            let mut log = txn.open_table(LOG).map_err(|e| self.commit_err(e))?;
            let mut rev = meta_i64(&meta, &self.path, "revision").map_err(BatchFailure::Commit)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut entries = Vec::new();
            for req in batch {
                let mut state = State {
                    log: &log,
                    index: &index,
                    overlay: &mut overlay,
                };
                let (out, changes) = self
                    .apply_one(&mut state, rev, &req.compares, &req.ops)
                    .map_err(BatchFailure::Apply)?;
                if !changes.is_empty() {
                    rev = out.revision;
                    let entry = LogEntry {
                        unix_millis,
                        changes,
                    };
                    log.insert(rev as u64, codec::encode_entry(&entry).as_slice())
                        .map_err(|e| BatchFailure::Apply(self.err(e)))?;
                    entries.push((rev, entry));
                }
                outcomes.push(out);
            }
            if !entries.is_empty() {
                meta.insert("revision", rev.to_le_bytes().as_slice())
                    .map_err(|e| self.commit_err(e))?;
            }
            (outcomes, entries)
        };
        if entries.is_empty() {
            // Only failed guards and deletes of absent keys: nothing to write.
            txn.abort().map_err(|e| self.commit_err(e))?;
            return Ok(outcomes);
        }
        txn.commit().map_err(|e| self.commit_err(e))?;
        let mut next = (*index).clone();
        for (rev, entry) in &entries {
            next.apply(*rev, &entry.changes);
        }
        self.publish(next);
        for (rev, entry) in &entries {
            broadcast(&mut writer, *rev, entry);
            self.broadcast
                .store(*rev, std::sync::atomic::Ordering::Release);
        }
        Ok(outcomes)
    }

    fn commit_err(&self, e: impl Into<redb::Error>) -> BatchFailure {
        BatchFailure::Commit(self.err(e))
    }

    /// Checks one request's guards against the state so far and applies
    /// its ops at `rev + 1`; returns its outcome and its changes (none when
    /// a guard failed or nothing changed, which takes no revision, like etcd).
    fn apply_one(
        &self,
        state: &mut State<'_, '_>,
        rev: Revision,
        compares: &[Compare],
        ops: &[Op],
    ) -> Result<(Outcome, Vec<Change>)> {
        let mut guards = Vec::with_capacity(compares.len());
        let mut holds = true;
        for cmp in compares {
            let (key, want) = match cmp {
                Compare::Absent(key) => (key, None),
                Compare::ModRevision(key, r) => (key, Some(*r)),
            };
            let now = state.get(&self.path, key)?;
            holds &= now.as_ref().map(|s| s.mod_revision) == want;
            guards.push(now.map(|s| s.into_kv(key.clone())));
        }
        if !holds {
            let out = Outcome {
                succeeded: false,
                revision: rev,
                prev: Vec::new(),
                guards,
            };
            return Ok((out, Vec::new()));
        }
        let new_rev = rev + 1;
        let mut changes = Vec::with_capacity(ops.len());
        let mut prev: Vec<Option<KeyValue>> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    let old = state.get(&self.path, key)?;
                    let create = old.as_ref().map_or(new_rev, |o| o.create_revision);
                    state.overlay.insert(
                        key.clone(),
                        Some(Current {
                            create_revision: create,
                            mod_revision: new_rev,
                            value: value.clone(),
                        }),
                    );
                    prev.push(old.clone().map(|o| o.into_kv(key.clone())));
                    changes.push(Change {
                        key: key.clone(),
                        put: Some((create, value.clone())),
                        prev: old,
                    });
                }
                Op::Delete(key) => {
                    let old = state.get(&self.path, key)?;
                    if old.is_some() {
                        state.overlay.insert(key.clone(), None);
                        changes.push(Change {
                            key: key.clone(),
                            put: None,
                            prev: old.clone(),
                        });
                    }
                    prev.push(old.map(|o| o.into_kv(key.clone())));
                }
            }
        }
        let revision = if changes.is_empty() { rev } else { new_rev };
        let out = Outcome {
            succeeded: true,
            revision,
            prev,
            guards,
        };
        Ok((out, changes))
    }
}

/// What a request of a batch reads: the published index and the log, with
/// the earlier requests of the batch on top.
struct State<'a, 't> {
    log: &'a redb::Table<'t, u64, &'static [u8]>,
    index: &'a Index,
    overlay: &'a mut BTreeMap<Vec<u8>, Option<Current>>,
}

impl State<'_, '_> {
    fn get(&self, path: &std::path::Path, key: &[u8]) -> Result<Option<Current>> {
        if let Some(now) = self.overlay.get(key) {
            return Ok(now.clone());
        }
        let Some(loc) = self.index.keys.get(key).copied() else {
            return Ok(None);
        };
        Ok(Some(Current {
            create_revision: loc.create_revision,
            mod_revision: loc.mod_revision,
            value: value_at(self.log, path, key, loc)?,
        }))
    }
}

/// The answers for a failed batch: every request gets (a copy of) `e`.
fn failed(batch: Vec<WriteRequest>, e: &StoreError) -> Vec<Answer> {
    batch
        .into_iter()
        .map(|req| (req.reply, Err(copy_error(e))))
        .collect()
}

/// `StoreError` is not `Clone`; every request of a failed batch gets its own copy.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::AlreadyExists => StoreError::AlreadyExists,
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict { current } => StoreError::Conflict { current: *current },
        StoreError::Compacted {
            requested,
            compacted,
        } => StoreError::Compacted {
            requested: *requested,
            compacted: *compacted,
        },
        StoreError::FutureRevision { requested, current } => StoreError::FutureRevision {
            requested: *requested,
            current: *current,
        },
        StoreError::ValueTooLarge { size, limit } => StoreError::ValueTooLarge {
            size: *size,
            limit: *limit,
        },
        StoreError::InvalidRequest(s) => StoreError::InvalidRequest(s.clone()),
        StoreError::Corrupt { path, reason } => StoreError::Corrupt {
            path: path.clone(),
            reason: reason.clone(),
        },
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Io(s) => StoreError::Io(s.clone()),
    }
}

/// Queues a write and waits for the writer's answer.
pub(super) async fn submit(
    inner: &Arc<Inner>,
    compares: Vec<Compare>,
    ops: Vec<Op>,
) -> Result<Outcome> {
    let (reply, answer) = oneshot::channel();
    inner
        .queue
        .send(WriteRequest {
            compares,
            ops,
            reply,
        })
        .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Io("store writer stopped before answering".into()))?
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::embedded::{EmbeddedConfig, EmbeddedStore};
    use crate::{Store, WatchEvent};

    fn key_at(kv: &Option<KeyValue>) -> String {
        match kv {
            Some(kv) => format!("{}@{}", String::from_utf8_lossy(&kv.key), kv.mod_revision),
            None => "-".into(),
        }
    }

    fn show(result: &Result<Outcome>) -> String {
        match result {
            Ok(o) if o.succeeded => format!(
                "ok rev={} prev=[{}]",
                o.revision,
                o.prev.iter().map(key_at).collect::<Vec<_>>().join(",")
            ),
            Ok(o) => format!(
                "failed rev={} guards=[{}]",
                o.revision,
                o.guards.iter().map(key_at).collect::<Vec<_>>().join(",")
            ),
            Err(e) => format!("error: {e}"),
        }
    }

    /// A request as guards and ops.
    type Req = (Vec<Compare>, Vec<Op>);

    /// Runs `reqs` as one batch straight on the writer path.
    fn batch(store: &EmbeddedStore, reqs: Vec<Req>) -> Vec<String> {
        let batch = reqs
            .into_iter()
            .map(|(compares, ops)| WriteRequest {
                compares,
                ops,
                reply: oneshot::channel().0,
            })
            .collect();
        store
            .inner
            .commit_batch(batch)
            .iter()
            .map(|(_, r)| show(r))
            .collect()
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn absent(k: &str) -> Compare {
        Compare::Absent(k.as_bytes().to_vec())
    }

    fn at(k: &str, r: Revision) -> Compare {
        Compare::ModRevision(k.as_bytes().to_vec(), r)
    }

    fn del(k: &str) -> Op {
        Op::Delete(k.as_bytes().to_vec())
    }

    async fn open(dir: &std::path::Path) -> EmbeddedStore {
        EmbeddedStore::open_with(dir, EmbeddedConfig::default())
            .await
            .expect("open store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_batch_checks_guards_in_order_and_fails_only_the_losers() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = open(tmp.path()).await;
        assert_eq!(store.create(b"/a", b"1").await.expect("create /a"), 2);
        let mut watch = store.watch(b"/", 2, false).await.expect("watch");
        let cases: Vec<(Req, &str)> = vec![
            (
                (vec![absent("/b")], vec![put("/b", "1")]),
                "ok rev=3 prev=[-]",
            ),
            // Sees the /b the previous request of this batch created.
            (
                (vec![absent("/b")], vec![put("/b", "2")]),
                "failed rev=3 guards=[/b@3]",
            ),
            (
                (vec![at("/a", 2)], vec![put("/a", "2")]),
                "ok rev=4 prev=[/a@2]",
            ),
            (
                (vec![at("/a", 2)], vec![put("/a", "3")]),
                "failed rev=4 guards=[/a@4]",
            ),
            // A delete of an absent key takes no revision.
            ((vec![], vec![del("/zzz")]), "ok rev=4 prev=[-]"),
            (
                (vec![at("/b", 3)], vec![put("/c", "1"), del("/a")]),
                "ok rev=5 prev=[-,/a@4]",
            ),
        ];
        let (reqs, want): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
        assert_eq!(batch(&store, reqs), want);
        assert_eq!(store.current_revision().await.expect("revision"), 5);

        // Watchers get the batch's events once, in revision order.
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let ev = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("event in time")
                .expect("stream open")
                .expect("event");
            seen.push(match ev {
                WatchEvent::Put { kv, .. } => {
                    format!(
                        "put {}@{}",
                        String::from_utf8_lossy(&kv.key),
                        kv.mod_revision
                    )
                }
                WatchEvent::Delete { prev, revision } => {
                    format!("delete {}@{revision}", String::from_utf8_lossy(&prev.key))
                }
                WatchEvent::Progress { revision } => format!("progress {revision}"),
            });
        }
        assert_eq!(seen, ["put /b@3", "put /a@4", "put /c@5", "delete /a@5"]);

        // The batch is on disk.
        drop(watch);
        drop(store);
        let store = open(tmp.path()).await;
        let b = store.get(b"/b").await.expect("get /b").expect("/b exists");
        assert_eq!((b.value.as_slice(), b.mod_revision), (&b"1"[..], 3));
        assert_eq!(store.get(b"/a").await.expect("get /a"), None);
        assert_eq!(store.current_revision().await.expect("revision"), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_hits_a_damaged_record_fails_alone() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = open(tmp.path()).await;
        assert_eq!(store.create(b"/bad", b"0").await.expect("create"), 2);
        {
            // The log entry holding its value, too short to decode, as a
            // damaged file would hold it.
            let txn = store.inner.db.begin_write().expect("write txn");
            txn.open_table(LOG)
                .expect("log table")
                .insert(2u64, b"short".as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let got = batch(
            &store,
            vec![
                (vec![absent("/x")], vec![put("/x", "1")]),
                (vec![], vec![put("/bad", "1")]),
                (vec![absent("/y")], vec![put("/y", "1")]),
            ],
        );
        let path = store.path().display().to_string();
        assert_eq!(
            got,
            vec![
                "ok rev=3 prev=[-]".to_string(),
                format!(
                    "error: store at {path}: revision log entry 2: record truncated: needed 3 more bytes at offset 0"
                ),
                "ok rev=4 prev=[-]".to_string(),
            ]
        );
        assert_eq!(store.current_revision().await.expect("revision"), 4);
    }
}

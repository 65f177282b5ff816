//! Embedded backend: a revisioned store in one redb file, with an in-memory watch fan-out.
//!
//! Layout of `<dir>/store.redb`:
//! - `meta`: magic, format version, current revision, compacted revision;
//! - `current`: key → (create revision, mod revision, value);
//! - `log`: revision → every change of that revision with the value it
//!   replaced. Watches replay from it and reads at a past revision undo it
//!   over the current state, so both cost at most the history window.
//!
//! Writes are group-committed by one writer thread ([`commit`]): the
//! requests queued while the previous batch was syncing share one write
//! transaction that commits with `Durability::Immediate` (fsync) before any
//! of them is acknowledged. Each request still gets its own revision. The
//! batch's events are handed to the watchers under the writer lock, so a
//! new watcher that replays the log under that lock sees neither a gap nor
//! a duplicate.

pub(crate) mod codec;
mod commit;
mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use crate::keys::{self, DEFAULT_MAX_VALUE_BYTES};
use crate::{
    Compare, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    TxnResponse, WatchEvent, WatchStream,
};
use codec::{Current, LogEntry};

const CURRENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("current");
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const MAGIC: &[u8] = b"svcnet-store";
/// Bumped whenever the layout changes; a newer file is refused, never rewritten.
pub const FORMAT_VERSION: u32 = 1;
/// The database file inside the data directory.
pub const DB_FILE: &str = "store.redb";
/// A new store is built under this name and renamed into place, so a crash
/// during initialisation never leaves a half-made `store.redb`.
const INIT_FILE: &str = "store.redb.init";

/// Tuning of the embedded backend.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Values above this size are refused with [`StoreError::ValueTooLarge`].
    pub max_value_bytes: usize,
    /// Keep at most this many revisions of history.
    pub history_revisions: u64,
    /// Drop history older than this.
    pub history_age: Duration,
    /// How often age-based compaction runs.
    pub compaction_interval: Duration,
    /// Revisions buffered per watcher before it falls back to replaying the
    /// log (a watcher that falls behind the history window gets
    /// [`StoreError::Compacted`] and must re-list).
    pub watch_buffer: usize,
    /// Idle time after which a watch with progress enabled gets a
    /// [`WatchEvent::Progress`] mark.
    pub progress_interval: Duration,
    /// Verify every page checksum when opening (reads the whole file once);
    /// a damaged file is then refused instead of trusted.
    pub verify_on_open: bool,
    /// Page cache of the database file. redb's own default is 1 GiB, which
    /// a large store fills and keeps resident; the kernel's page cache
    /// still holds the file beyond this.
    pub cache_bytes: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            history_revisions: 10_000,
            history_age: Duration::from_secs(300),
            compaction_interval: Duration::from_secs(30),
            watch_buffer: 1024,
            progress_interval: Duration::from_secs(5),
            verify_on_open: true,
            cache_bytes: 256 << 20,
        }
    }
}

/// The embedded store: one data directory, one process.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    db: Database,
    path: PathBuf,
    config: EmbeddedConfig,
    writer: Mutex<Writer>,
    /// Last revision whose events have been handed to every watcher.
    broadcast: AtomicI64,
    /// Write requests for the group-commit writer thread.
    queue: std::sync::mpsc::Sender<commit::WriteRequest>,
}

#[derive(Default)]
struct Writer {
    subscribers: Vec<Subscriber>,
}

/// A live watcher as the writer sees it. Each item is one revision's
/// matching events, so a watcher never holds half a transaction.
struct Subscriber {
    prefix: Vec<u8>,
    tx: mpsc::Sender<Vec<WatchEvent>>,
    overflowed: Arc<AtomicBool>,
}

/// A watcher's start: a snapshot to replay `(after, until]` from, then
/// live events (all of them `> until`).
struct Subscription {
    snapshot: Arc<redb::ReadTransaction>,
    until: Revision,
    rx: mpsc::Receiver<Vec<WatchEvent>>,
    overflowed: Arc<AtomicBool>,
}

/// The result of the write primitive every mutation goes through.
struct Outcome {
    succeeded: bool,
    revision: Revision,
    prev: Vec<Option<KeyValue>>,
    /// The state of each compared key (for Conflict / NotFound answers).
    guards: Vec<Option<KeyValue>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with the default configuration.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, EmbeddedConfig::default()).await
    }

    /// Opens (or creates) the store in `dir`. A directory that holds
    /// something else, a damaged file or a newer format is refused with
    /// [`StoreError::Corrupt`]; nothing is ever reset.
    pub async fn open_with(dir: impl AsRef<Path>, config: EmbeddedConfig) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let interval = config.compaction_interval;
        // A store dropped a moment ago in this process may still be closing
        // (a watch task or the writer letting go of it): wait for it briefly
        // before reporting the directory as in use.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let (inner, queue) = loop {
            let (d, c) = (dir.clone(), config.clone());
            match tokio::task::spawn_blocking(move || Inner::open(&d, c))
                .await
                .map_err(join_err)?
            {
                Err(StoreError::Unavailable(m))
                    if m.contains("already open") && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other?,
            }
        };
        let inner = Arc::new(inner);
        commit::spawn_writer(Arc::downgrade(&inner), queue)?;
        tokio::spawn(compaction_loop(Arc::downgrade(&inner), interval));
        Ok(Self { inner })
    }

    /// The database file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs age- and count-based compaction now; returns the new compacted
    /// revision if anything was dropped.
    pub async fn compact_expired(&self) -> Result<Option<Revision>> {
        compact_due(&self.inner).await
    }
}

/// Revisions dropped per compaction transaction. Compaction holds the
/// writer, so one long transaction would stall every write queued behind
/// it (the first compaction after loading 60,000 objects dropped 50,000
/// revisions at once); chunks let writes through in between, as etcd's
/// compaction batches do.
const COMPACT_CHUNK: i64 = 1000;

/// Compacts everything due by age and count, a chunk at a time, with a
/// pause between chunks; returns the final compacted revision.
async fn compact_due(inner: &Arc<Inner>) -> Result<Option<Revision>> {
    let mut last = None;
    loop {
        let i = inner.clone();
        let (done, more) =
            blocking(move || i.compact_expired(SystemTime::now(), COMPACT_CHUNK)).await?;
        last = done.or(last);
        if !more {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn compaction_loop(inner: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Err(e) = compact_due(&strong).await {
            tracing::warn!(error = %e, "automatic compaction failed");
        }
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(format!("store task failed: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_err)?
}

fn now_millis(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {what}: {e}", path.display()))
}

/// Maps any redb error: damage is `Corrupt`, the rest is I/O.
fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => corrupt(path, format!("database file is damaged: {msg}")),
        redb::Error::UpgradeRequired(v) => corrupt(
            path,
            format!("database file uses the old redb file format {v} and needs a manual upgrade"),
        ),
        redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
            "{}: database is already open (another svcnet process uses this data directory)",
            path.display()
        )),
        redb::Error::TableDoesNotExist(t) => corrupt(path, format!("table {t:?} is missing")),
        other => StoreError::Io(format!("{}: {other}", path.display())),
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

fn meta_bytes<T>(t: &T, path: &Path, name: &str) -> Result<Option<Vec<u8>>>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(t.get(name)
        .map_err(|e| db_err(path, e))?
        .map(|v| v.value().to_vec()))
}

fn meta_i64<T>(t: &T, path: &Path, name: &str) -> Result<i64>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let bytes = meta_bytes(t, path, name)?
        .ok_or_else(|| corrupt(path, format!("meta record {name:?} is missing")))?;
    let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        corrupt(
            path,
            format!("meta record {name:?} has {} bytes, want 8", bytes.len()),
        )
    })?;
    Ok(i64::from_le_bytes(arr))
}

fn get_current<T>(t: &T, path: &Path, key: &[u8]) -> Result<Option<Current>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    match t.get(key).map_err(|e| db_err(path, e))? {
        None => Ok(None),
        Some(v) => codec::decode_current(v.value()).map(Some).map_err(|e| {
            corrupt(
                path,
                format!("record of key {:?}: {e}", String::from_utf8_lossy(key)),
            )
        }),
    }
}

fn decode_log(path: &Path, rev: u64, bytes: &[u8]) -> Result<LogEntry> {
    codec::decode_entry(bytes).map_err(|e| corrupt(path, format!("revision log entry {rev}: {e}")))
}

/// The watch events of one log entry whose keys start with `prefix`.
fn entry_events(rev: Revision, entry: LogEntry, prefix: &[u8]) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    for c in entry.changes {
        if !c.key.starts_with(prefix) {
            continue;
        }
        let prev = c.prev.map(|p| p.into_kv(c.key.clone()));
        match (c.put, prev) {
            (Some((create_revision, value)), prev) => out.push(WatchEvent::Put {
                kv: KeyValue {
                    key: c.key,
                    value,
                    create_revision,
                    mod_revision: rev,
                },
                prev,
            }),
            (None, Some(prev)) => out.push(WatchEvent::Delete {
                prev,
                revision: rev,
            }),
            // Only deletes of existing keys are logged.
            (None, None) => {}
        }
    }
    out
}

impl Inner {
    /// Opens the database; the receiver is the writer thread's queue.
    fn open(
        dir: &Path,
        config: EmbeddedConfig,
    ) -> Result<(Self, std::sync::mpsc::Receiver<commit::WriteRequest>)> {
        match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => return Err(corrupt(dir, "exists and is not a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| io_err(dir, "creating data directory", e))?;
            }
            Err(e) => return Err(io_err(dir, "reading data directory", e)),
        }
        let path = dir.join(DB_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::initialise(dir)?,
            Err(e) => return Err(io_err(&path, "reading database file", e)),
        }
        // Look read-only first: a foreign or newer file must be refused
        // without a single byte written to it. A file that needs recovery
        // after a crash cannot be opened read-only; the read-write open
        // below repairs it.
        match guarded_open(&path, |b| b.open_read_only(&path)) {
            Ok(ro) => Self::validate(&ro, &path).map(|_| ())?,
            Err(StoreError::Io(_)) | Err(StoreError::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        let (verify, cache) = (config.verify_on_open, config.cache_bytes);
        let db = guarded_open(&path, |b| {
            b.set_check_integrity_on_open(verify)
                .set_cache_size(cache)
                .open(&path)
        })?;
        let rev = Self::validate(&db, &path)?;
        let (queue, rx) = std::sync::mpsc::channel();
        let inner = Self {
            db,
            path,
            config,
            writer: Mutex::new(Writer::default()),
            broadcast: AtomicI64::new(rev),
            queue,
        };
        Ok((inner, rx))
    }

    /// Creates an empty store in `dir`, refusing a directory with other data.
    fn initialise(dir: &Path) -> Result<()> {
        let entries = fs::read_dir(dir).map_err(|e| io_err(dir, "listing data directory", e))?;
        let mut foreign = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(dir, "listing data directory", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != INIT_FILE {
                foreign.push(name);
            }
        }
        if !foreign.is_empty() {
            foreign.sort();
            return Err(corrupt(
                dir,
                format!(
                    "directory is not empty but holds no {DB_FILE} (found: {}); \
                     refusing to create a store over other data — use an empty or new directory",
                    foreign.join(", ")
                ),
            ));
        }
        let init = dir.join(INIT_FILE);
        match fs::remove_file(&init) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&init, "removing unfinished store", e)),
        }
        {
            let db = Database::create(&init).map_err(|e| db_err(&init, e))?;
            let txn = db.begin_write().map_err(|e| db_err(&init, e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| db_err(&init, e))?;
                let format = FORMAT_VERSION.to_le_bytes();
                let one = 1i64.to_le_bytes();
                let zero = 0i64.to_le_bytes();
                let records: [(&str, &[u8]); 4] = [
                    ("magic", MAGIC),
                    ("format", &format),
                    // Like etcd, an empty store is at revision 1.
                    ("revision", &one),
                    ("compacted", &zero),
                ];
                for (k, v) in records {
                    meta.insert(k, v).map_err(|e| db_err(&init, e))?;
                }
                txn.open_table(CURRENT).map_err(|e| db_err(&init, e))?;
                txn.open_table(LOG).map_err(|e| db_err(&init, e))?;
            }
            txn.commit().map_err(|e| db_err(&init, e))?;
        }
        let path = dir.join(DB_FILE);
        fs::rename(&init, &path).map_err(|e| io_err(&path, "installing new store", e))?;
        // Make the rename itself durable.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, "syncing data directory", e))?;
        Ok(())
    }

    /// Checks magic and format; returns the current revision.
    fn validate(db: &impl ReadableDatabase, path: &Path) -> Result<Revision> {
        let rtx = db.begin_read().map_err(|e| db_err(path, e))?;
        let meta = rtx.open_table(META).map_err(|e| match e {
            redb::TableError::TableDoesNotExist(_) => corrupt(
                path,
                "not a svcnet store: the redb file has no meta table (written by another program?)",
            ),
            other => db_err(path, other),
        })?;
        match meta_bytes(&meta, path, "magic")? {
            Some(m) if m == MAGIC => {}
            _ => {
                return Err(corrupt(
                    path,
                    "not a svcnet store: magic record missing or wrong",
                ));
            }
        }
        let format = meta_bytes(&meta, path, "format")?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt(path, "format version record missing or malformed"))?;
        if format > FORMAT_VERSION {
            return Err(corrupt(
                path,
                format!(
                    "format version {format} is newer than this build supports ({FORMAT_VERSION}); \
                     use a newer svcnet"
                ),
            ));
        }
        if format == 0 {
            return Err(corrupt(path, "format version 0 is not valid"));
        }
        let rev = meta_i64(&meta, path, "revision")?;
        let compacted = meta_i64(&meta, path, "compacted")?;
        if rev < 1 || compacted < 0 || compacted > rev {
            return Err(corrupt(
                path,
                format!("inconsistent revisions: current {rev}, compacted {compacted}"),
            ));
        }
        rtx.open_table(CURRENT).map_err(|e| db_err(path, e))?;
        rtx.open_table(LOG).map_err(|e| db_err(path, e))?;
        Ok(rev)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves no half state behind: redb
        // aborts the unfinished transaction, so the data is still valid.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        let current = rtx.open_table(CURRENT).map_err(|e| self.err(e))?;
        Ok(get_current(&current, &self.path, key)?.map(|c| c.into_kv(key.to_vec())))
    }

    fn revisions(&self) -> Result<(Revision, Revision)> {
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = rtx.open_table(META).map_err(|e| self.err(e))?;
        Ok((
            meta_i64(&meta, &self.path, "revision")?,
            meta_i64(&meta, &self.path, "compacted")?,
        ))
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = rtx.open_table(META).map_err(|e| self.err(e))?;
        let cur = meta_i64(&meta, &self.path, "revision")?;
        let compacted = meta_i64(&meta, &self.path, "compacted")?;
        let at = match req.revision {
            None | Some(0) => cur,
            Some(r) if r < 0 => {
                return Err(StoreError::InvalidRequest(format!(
                    "revision must not be negative, got {r}"
                )));
            }
            Some(r) => r,
        };
        if at > cur {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: cur,
            });
        }
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        let mut resp = RangeResponse {
            revision: at,
            ..Default::default()
        };
        let Some((lo, hi)) = keys::range_bounds(req) else {
            return Ok(resp);
        };
        // State at `at` = current state with every later change undone: the
        // first change after `at` of each key carries its value at `at`.
        let mut overrides: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
        if at < cur {
            let log = rtx.open_table(LOG).map_err(|e| self.err(e))?;
            let from = (at + 1) as u64;
            for item in log.range(from..).map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let entry = decode_log(&self.path, k.value(), v.value())?;
                for c in entry.changes {
                    if keys::in_bounds(&c.key, &lo, hi.as_deref())
                        && !overrides.contains_key(&c.key)
                    {
                        let prev = c.prev.map(|p| p.into_kv(c.key.clone()));
                        overrides.insert(c.key, prev);
                    }
                }
            }
        }
        let current = rtx.open_table(CURRENT).map_err(|e| self.err(e))?;
        let iter = match &hi {
            Some(hi) => current.range(lo.as_slice()..hi.as_slice()),
            None => current.range(lo.as_slice()..),
        }
        .map_err(|e| self.err(e))?;
        let mut pending = overrides.into_iter().peekable();
        let push = |kv: Option<KeyValue>, resp: &mut RangeResponse| {
            if let Some(kv) = kv {
                resp.remaining += 1;
                if req.limit == 0 || resp.kvs.len() < req.limit {
                    resp.kvs.push(kv);
                } else {
                    resp.more = true;
                }
            }
        };
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = k.value();
            // Keys that changed after `at` and sort before this one.
            while let Some((ok, _)) = pending.peek() {
                if ok.as_slice() >= key {
                    break;
                }
                if let Some((_, kv)) = pending.next() {
                    push(kv, &mut resp);
                }
            }
            if pending.peek().is_some_and(|(ok, _)| ok.as_slice() == key) {
                if let Some((_, kv)) = pending.next() {
                    push(kv, &mut resp);
                }
                continue;
            }
            let cur = codec::decode_current(v.value()).map_err(|e| {
                corrupt(
                    &self.path,
                    format!("record of key {:?}: {e}", String::from_utf8_lossy(key)),
                )
            })?;
            push(Some(cur.into_kv(key.to_vec())), &mut resp);
        }
        for (_, kv) in pending {
            push(kv, &mut resp);
        }
        Ok(resp)
    }

    /// Explicit compaction: drop history at and below `target`.
    fn compact(&self, target: Revision) -> Result<()> {
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut log = txn.open_table(LOG).map_err(|e| self.err(e))?;
            let cur = meta_i64(&meta, &self.path, "revision")?;
            let compacted = meta_i64(&meta, &self.path, "compacted")?;
            if target > cur {
                return Err(StoreError::FutureRevision {
                    requested: target,
                    current: cur,
                });
            }
            if target <= compacted {
                return Err(StoreError::Compacted {
                    requested: target,
                    compacted,
                });
            }
            drop_history(&mut log, &mut meta, compacted, target).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Compaction by age and count, at most `chunk` revisions in this
    /// transaction; returns the new compacted revision and whether more is due.
    fn compact_expired(&self, now: SystemTime, chunk: i64) -> Result<(Option<Revision>, bool)> {
        let cutoff = now_millis(now)
            .saturating_sub(u64::try_from(self.config.history_age.as_millis()).unwrap_or(u64::MAX));
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let target = {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut log = txn.open_table(LOG).map_err(|e| self.err(e))?;
            let cur = meta_i64(&meta, &self.path, "revision")?;
            let compacted = meta_i64(&meta, &self.path, "compacted")?;
            let mut target =
                count_target(cur, compacted, self.config.history_revisions).unwrap_or(compacted);
            // The log is in commit order, so the expired entries are a prefix.
            let mut aged_out = None;
            for item in log
                .range(((compacted + 1) as u64)..)
                .map_err(|e| self.err(e))?
            {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let ts = v
                    .value()
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| {
                        corrupt(
                            &self.path,
                            format!("revision log entry {} is truncated", k.value()),
                        )
                    })?;
                if ts >= cutoff {
                    break;
                }
                let rev = k.value() as Revision;
                aged_out = Some(rev);
                // Past this chunk: enough to know that more is due.
                if rev > compacted.saturating_add(chunk) {
                    break;
                }
            }
            // With nothing written for longer than the window every entry is
            // old and this compacts to the current revision (watching from
            // it still works).
            if let Some(rev) = aged_out {
                target = target.max(rev);
            }
            let due = target;
            target = target.min(compacted.saturating_add(chunk.max(1)));
            if target <= compacted {
                (None, false)
            } else {
                drop_history(&mut log, &mut meta, compacted, target).map_err(|e| self.err(e))?;
                (Some(target), due > target)
            }
        };
        match target {
            (None, _) => {
                txn.abort().map_err(|e| self.err(e))?;
                Ok((None, false))
            }
            (Some(t), more) => {
                txn.commit().map_err(|e| self.err(e))?;
                tracing::debug!(compacted = t, more, "compacted store history");
                Ok((Some(t), more))
            }
        }
    }

    /// Registers a watcher under the writer lock with a snapshot that ends
    /// exactly where its live events begin.
    fn subscribe(&self, prefix: &[u8], after: Revision) -> Result<Subscription> {
        let mut writer = self.lock_writer();
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        let (cur, compacted) = {
            let meta = rtx.open_table(META).map_err(|e| self.err(e))?;
            (
                meta_i64(&meta, &self.path, "revision")?,
                meta_i64(&meta, &self.path, "compacted")?,
            )
        };
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(self.config.watch_buffer.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        writer.subscribers.retain(|s| !s.tx.is_closed());
        writer.subscribers.push(Subscriber {
            prefix: prefix.to_vec(),
            tx,
            overflowed: overflowed.clone(),
        });
        Ok(Subscription {
            snapshot: Arc::new(rtx),
            until: cur,
            rx,
            overflowed,
        })
    }
}

/// Replays `(from - 1, to]` of the log in `snapshot` for `prefix`.
fn replay(
    path: &Path,
    snapshot: &redb::ReadTransaction,
    prefix: &[u8],
    from: Revision,
    to: Revision,
) -> Result<Vec<WatchEvent>> {
    let log = snapshot.open_table(LOG).map_err(|e| db_err(path, e))?;
    let mut out = Vec::new();
    for item in log
        .range((from as u64)..=(to as u64))
        .map_err(|e| db_err(path, e))?
    {
        let (k, v) = item.map_err(|e| db_err(path, e))?;
        let entry = decode_log(path, k.value(), v.value())?;
        out.extend(entry_events(k.value() as Revision, entry, prefix));
    }
    Ok(out)
}

/// Hands one committed revision to every matching watcher without waiting:
/// a watcher whose buffer is full is cut off and catches up from the log.
fn broadcast(writer: &mut Writer, rev: Revision, entry: &LogEntry) {
    writer.subscribers.retain(|s| {
        let events = entry_events(rev, entry.clone(), &s.prefix);
        if events.is_empty() {
            return !s.tx.is_closed();
        }
        match s.tx.try_send(events) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.overflowed.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

/// The revision to compact to when more than `keep` revisions (plus 10 %
/// slack, so compaction runs in batches) are kept.
fn count_target(cur: Revision, compacted: Revision, keep: u64) -> Option<Revision> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let slack = (keep / 10).max(1);
    (cur - compacted > keep.saturating_add(slack)).then(|| cur - keep)
}

fn drop_history(
    log: &mut redb::Table<'_, u64, &'static [u8]>,
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    compacted: Revision,
    target: Revision,
) -> std::result::Result<(), redb::StorageError> {
    log.retain_in(((compacted + 1).max(0) as u64)..=(target as u64), |_, _| {
        false
    })?;
    meta.insert("compacted", target.to_le_bytes().as_slice())?;
    Ok(())
}

/// Opens with redb, which may panic on a damaged file in debug builds;
/// such a panic is bad input, so it becomes an error naming the file.
fn guarded_open<T>(
    path: &Path,
    open: impl FnOnce(&mut redb::Builder) -> std::result::Result<T, redb::DatabaseError>,
) -> Result<T> {
    let mut builder = redb::Builder::new();
    match catch_unwind(AssertUnwindSafe(|| open(&mut builder))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_err(path, e)),
        Err(p) => Err(corrupt(
            path,
            format!("database file is damaged: {}", panic_text(p.as_ref())),
        )),
    }
}

fn open_err(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(msg)) => {
            corrupt(path, format!("database file is damaged: {msg}"))
        }
        // redb reports a foreign file (wrong magic) as invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            corrupt(path, format!("not a svcnet store database: {e}"))
        }
        other => db_err(path, other),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        // A point read is a few microseconds on cached pages: cheaper inline
        // than the thread hand-off of spawn_blocking (measured in the API
        // server benchmark, where every create reads its namespace).
        self.inner.get(key)
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let inner = self.inner.clone();
        blocking(move || inner.range(&req)).await
    }

    async fn create(&self, key: &[u8], value: &[u8]) -> Result<Revision> {
        keys::check_key(key)?;
        keys::check_value(value, self.inner.config.max_value_bytes)?;
        let (key, value) = (key.to_vec(), value.to_vec());
        let out = commit::submit(
            &self.inner,
            vec![Compare::Absent(key.clone())],
            vec![Op::Put(key, value)],
        )
        .await?;
        if out.succeeded {
            Ok(out.revision)
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Revision> {
        keys::check_key(key)?;
        keys::check_value(value, self.inner.config.max_value_bytes)?;
        let (key, value) = (key.to_vec(), value.to_vec());
        let out = commit::submit(
            &self.inner,
            vec![Compare::ModRevision(key.clone(), expected)],
            vec![Op::Put(key, value)],
        )
        .await?;
        if out.succeeded {
            return Ok(out.revision);
        }
        Err(guard_error(out.guards.into_iter().next().flatten()))
    }

    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        keys::check_key(key)?;
        let key = key.to_vec();
        let compares: Vec<Compare> = expected
            .map(|r| Compare::ModRevision(key.clone(), r))
            .into_iter()
            .collect();
        let out = commit::submit(&self.inner, compares, vec![Op::Delete(key)]).await?;
        if !out.succeeded {
            return Err(guard_error(out.guards.into_iter().next().flatten()));
        }
        match out.prev.into_iter().next().flatten() {
            Some(prev) => Ok((out.revision, prev)),
            None => Err(StoreError::NotFound),
        }
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResponse> {
        keys::check_txn(&compares, &ops, self.inner.config.max_value_bytes)?;
        let out = commit::submit(&self.inner, compares, ops).await?;
        Ok(TxnResponse {
            succeeded: out.succeeded,
            revision: out.revision,
            prev: out.prev,
        })
    }

    async fn current_revision(&self) -> Result<Revision> {
        let inner = self.inner.clone();
        blocking(move || inner.revisions().map(|(cur, _)| cur)).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let inner = self.inner.clone();
        blocking(move || inner.revisions().map(|(_, c)| c)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.compact(revision)).await
    }

    async fn watch(&self, prefix: &[u8], after: Revision, progress: bool) -> Result<WatchStream> {
        if after < 0 {
            return Err(StoreError::InvalidRequest(format!(
                "watch revision must not be negative, got {after}"
            )));
        }
        let inner = self.inner.clone();
        let p = prefix.to_vec();
        let sub = blocking(move || inner.subscribe(&p, after)).await?;
        Ok(watch::start(
            self.inner.clone(),
            prefix.to_vec(),
            after,
            progress,
            sub,
        ))
    }
}

/// The error for a guarded single-key write that lost.
fn guard_error(state: Option<KeyValue>) -> StoreError {
    match state {
        None => StoreError::NotFound,
        Some(kv) => StoreError::Conflict {
            current: Some(kv.mod_revision),
        },
    }
}

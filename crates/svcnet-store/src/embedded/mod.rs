//! Embedded backend: a revisioned store in one redb file, with an in-memory watch fan-out.
//!
//! Layout of `<dir>/store.redb`:
//! - `meta`: magic, format version, current revision, compacted revision;
//! - `log`: revision → every change of that revision with the value it
//!   replaced. It is also where current values live: the key index
//!   ([`index`], in memory like etcd's, rebuilt from the log at start) maps
//!   each live key to its mod revision. Compaction drops the entries at or
//!   below the compacted revision except the puts that are still current
//!   (their replaced values dropped). Watches replay from the log and reads
//!   at a past revision undo it over the current state, so both cost at
//!   most the history window.
//!
//! Format 1 kept current values in a key-ordered `current` table too,
//! which made every write rewrite a page per key it touched; a format-1
//! file is upgraded in place on its first read-write open.
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
mod index;
mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use crate::keys::{self, DEFAULT_MAX_VALUE_BYTES};
use crate::{
    Compare, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    TxnResponse, WatchEvent, WatchStream,
};
use codec::{Change, LogEntry};
use index::{Index, Loc};

/// Format 1's table of current values (read once, by the upgrade).
const LEGACY_CURRENT: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("current");
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const MAGIC: &[u8] = b"svcnet-store";
/// Bumped whenever the layout changes; a newer file is refused, never rewritten.
pub const FORMAT_VERSION: u32 = 2;
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
    /// The published key index: replaced (never changed) by the writer
    /// after each commit, under the writer lock. Readers take it together
    /// with a read transaction under this lock, so every value it points to
    /// is in their snapshot (compaction removes an entry only after an
    /// index without it was published).
    index: Mutex<Arc<Index>>,
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

/// The current value of `key`, which `loc` says is in the log entry of
/// its mod revision.
fn value_at<T>(log: &T, path: &Path, key: &[u8], loc: Loc) -> Result<Vec<u8>>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    let rev = loc.mod_revision;
    let missing = || {
        corrupt(
            path,
            format!(
                "revision log entry {rev} holds no value of key {:?}",
                String::from_utf8_lossy(key)
            ),
        )
    };
    let entry = log
        .get(rev as u64)
        .map_err(|e| db_err(path, e))?
        .ok_or_else(missing)?;
    let changes = codec::raw_changes(entry.value())
        .map_err(|e| corrupt(path, format!("revision log entry {rev}: {e}")))?;
    // One revision changes a key at most once (`keys::check_txn` refuses
    // a transaction naming a key twice).
    changes
        .into_iter()
        .find(|c| c.key == key)
        .and_then(|c| c.put)
        .map(|(_, v)| v.to_vec())
        .ok_or_else(missing)
}

/// The key index of everything in `log`, at revision `rev`.
fn load_index<T>(log: &T, path: &Path, rev: Revision) -> Result<Index>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    let mut index = Index::default();
    for item in log.iter().map_err(|e| db_err(path, e))? {
        let (k, v) = item.map_err(|e| db_err(path, e))?;
        let r = k.value() as Revision;
        let changes = codec::raw_changes(v.value())
            .map_err(|e| corrupt(path, format!("revision log entry {r}: {e}")))?;
        for c in changes {
            index.apply_key(r, c.key, c.put.map(|(create, _)| create));
        }
    }
    if index.rev > rev {
        return Err(corrupt(
            path,
            format!(
                "revision log reaches revision {}, past the current revision {rev}",
                index.rev
            ),
        ));
    }
    index.rev = rev;
    Ok(index)
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
        let (rev, format) = Self::validate(&db, &path)?;
        if format == 1 {
            upgrade_v1(&db, &path)?;
        }
        let index = {
            let rtx = db.begin_read().map_err(|e| db_err(&path, e))?;
            let log = rtx.open_table(LOG).map_err(|e| db_err(&path, e))?;
            load_index(&log, &path, rev)?
        };
        let (queue, rx) = std::sync::mpsc::channel();
        let inner = Self {
            db,
            path,
            config,
            writer: Mutex::new(Writer::default()),
            broadcast: AtomicI64::new(rev),
            queue,
            index: Mutex::new(Arc::new(index)),
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

    /// Checks magic and format; returns the current revision and the format.
    fn validate(db: &impl ReadableDatabase, path: &Path) -> Result<(Revision, u32)> {
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
        if format == 1 {
            rtx.open_table(LEGACY_CURRENT)
                .map_err(|e| db_err(path, e))?;
        }
        rtx.open_table(LOG).map_err(|e| db_err(path, e))?;
        Ok((rev, format))
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves no half state behind: redb
        // aborts the unfinished transaction, so the data is still valid.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    /// The published index with a read transaction that holds every value
    /// it points to.
    fn snapshot(&self) -> Result<(Arc<Index>, redb::ReadTransaction)> {
        let published = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let rtx = self.db.begin_read().map_err(|e| self.err(e))?;
        Ok((published.clone(), rtx))
    }

    /// The published index (the writer's starting point for a batch).
    fn index(&self) -> Arc<Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes the index of a committed batch (under the writer lock).
    fn publish(&self, index: Index) {
        *self.index.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let (index, rtx) = self.snapshot()?;
        let Some(loc) = index.keys.get(key).copied() else {
            return Ok(None);
        };
        let log = rtx.open_table(LOG).map_err(|e| self.err(e))?;
        let value = value_at(&log, &self.path, key, loc)?;
        Ok(Some(KeyValue {
            key: key.to_vec(),
            value,
            create_revision: loc.create_revision,
            mod_revision: loc.mod_revision,
        }))
    }

    fn revisions(&self) -> Result<(Revision, Revision)> {
        let (index, rtx) = self.snapshot()?;
        let meta = rtx.open_table(META).map_err(|e| self.err(e))?;
        Ok((index.rev, meta_i64(&meta, &self.path, "compacted")?))
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let (index, rtx) = self.snapshot()?;
        let meta = rtx.open_table(META).map_err(|e| self.err(e))?;
        let cur = index.rev;
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
        let log = rtx.open_table(LOG).map_err(|e| self.err(e))?;
        // State at `at` = current state with every later change undone: the
        // first change after `at` of each key carries its value at `at`.
        // (The snapshot may hold batches past `cur` that are not published
        // yet; they are not part of this read.)
        let mut overrides: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
        if at < cur {
            for item in log
                .range(((at + 1) as u64)..=(cur as u64))
                .map_err(|e| self.err(e))?
            {
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
        let bounds = (
            std::ops::Bound::Included(lo.as_slice()),
            match &hi {
                Some(hi) => std::ops::Bound::Excluded(hi.as_slice()),
                None => std::ops::Bound::Unbounded,
            },
        );
        // Only the items returned are read from the log; the rest are counted.
        enum Item<'k> {
            /// The value at `at`, from the log (changed since).
            Past(KeyValue),
            /// Unchanged since `at`: the current value.
            Current(&'k [u8], Loc),
        }
        let add = |item: Item<'_>, resp: &mut RangeResponse| -> Result<()> {
            resp.remaining += 1;
            if req.limit != 0 && resp.kvs.len() >= req.limit {
                resp.more = true;
                return Ok(());
            }
            resp.kvs.push(match item {
                Item::Past(kv) => kv,
                Item::Current(key, loc) => KeyValue {
                    key: key.to_vec(),
                    value: value_at(&log, &self.path, key, loc)?,
                    create_revision: loc.create_revision,
                    mod_revision: loc.mod_revision,
                },
            });
            Ok(())
        };
        let mut pending = overrides.into_iter().peekable();
        for (key, loc) in index.keys.range::<_, [u8]>(bounds) {
            let key: &[u8] = key;
            // Keys that changed after `at` and sort before or at this one
            // (None: the key did not exist at `at`).
            let mut overridden = false;
            while let Some((ok, _)) = pending.peek() {
                if ok.as_slice() > key {
                    break;
                }
                overridden |= ok.as_slice() == key;
                if let Some((_, Some(kv))) = pending.next() {
                    add(Item::Past(kv), &mut resp)?;
                }
            }
            if !overridden {
                add(Item::Current(key, *loc), &mut resp)?;
            }
        }
        for (_, kv) in pending {
            if let Some(kv) = kv {
                add(Item::Past(kv), &mut resp)?;
            }
        }
        Ok(resp)
    }

    /// One compaction transaction under the writer lock: `decide` gets the
    /// log and the current and compacted revisions and names the target
    /// with a value to return (None: nothing to drop, the transaction is
    /// aborted). Durability::None suits compaction that may be lost in a
    /// crash (the history is then just longer).
    fn compaction<T>(
        &self,
        durability: Durability,
        decide: impl FnOnce(
            &redb::Table<'_, u64, &'static [u8]>,
            Revision,
            Revision,
        ) -> Result<Option<(Revision, T)>>,
    ) -> Result<Option<(Revision, T)>> {
        let _writer = self.lock_writer();
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(durability)
            .map_err(|e| StoreError::Io(format!("{}: {e}", self.path.display())))?;
        let decided = {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut log = txn.open_table(LOG).map_err(|e| self.err(e))?;
            let cur = meta_i64(&meta, &self.path, "revision")?;
            let compacted = meta_i64(&meta, &self.path, "compacted")?;
            let decided = decide(&log, cur, compacted)?.filter(|(t, _)| *t > compacted);
            if let Some((target, _)) = &decided {
                drop_history(
                    &mut log,
                    &mut meta,
                    &self.index(),
                    compacted,
                    *target,
                    &self.path,
                )?;
            }
            decided
        };
        match decided {
            Some(d) => {
                txn.commit().map_err(|e| self.err(e))?;
                tracing::debug!(compacted = d.0, "compacted store history");
                Ok(Some(d))
            }
            None => {
                txn.abort().map_err(|e| self.err(e))?;
                Ok(None)
            }
        }
    }

    /// Explicit compaction: drop history at and below `target`.
    fn compact(&self, target: Revision) -> Result<()> {
        self.compaction(Durability::Immediate, |_, cur, compacted| {
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
            Ok(Some((target, ())))
        })
        .map(|_| ())
    }

    /// Count-based compaction after a batch: at most `step` revisions past
    /// the kept count, so the work is spread over the batches instead of a
    /// chunk every thousand revisions (which stalled every request in
    /// flight). The writer thread runs it between batches, never inside
    /// one, so what it drops is superseded in the published index. It does
    /// not wait for the disk: if it is lost in a crash, the history is just
    /// longer (the next durable batch commit makes it durable).
    pub(super) fn compact_by_count(&self, step: i64) -> Result<()> {
        let keep = i64::try_from(self.config.history_revisions).unwrap_or(i64::MAX);
        let (cur, compacted) = self.revisions()?;
        if cur - compacted <= keep {
            return Ok(());
        }
        self.compaction(Durability::None, |_, cur, compacted| {
            let target = (cur - keep).min(compacted.saturating_add(step.max(1)));
            Ok(Some((target, ())))
        })
        .map(|_| ())
    }

    /// Compaction by age and count, at most `chunk` revisions in this
    /// transaction; returns the new compacted revision and whether more is due.
    fn compact_expired(&self, now: SystemTime, chunk: i64) -> Result<(Option<Revision>, bool)> {
        let cutoff = now_millis(now)
            .saturating_sub(u64::try_from(self.config.history_age.as_millis()).unwrap_or(u64::MAX));
        let done = self.compaction(Durability::Immediate, |log, cur, compacted| {
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
            let target = target.min(compacted.saturating_add(chunk.max(1)));
            Ok(Some((target, due > target)))
        })?;
        Ok(match done {
            Some((t, more)) => (Some(t), more),
            None => (None, false),
        })
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

/// Drops the history in `(compacted, target]`: an entry goes unless it
/// holds a put that is still current (per `index`, which must be the
/// published one); such an entry keeps only those puts, without the
/// values they replaced. A change in the range that replaced a value kept
/// below `compacted` (a put that was current when an earlier compaction
/// passed it) takes that put out of its entry too: below the compacted
/// revision the log holds exactly the current puts, so a key deleted or
/// rewritten since never comes back when the index is rebuilt, and dead
/// values do not pile up.
fn drop_history(
    log: &mut redb::Table<'_, u64, &'static [u8]>,
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    index: &Index,
    compacted: Revision,
    target: Revision,
    path: &Path,
) -> Result<()> {
    let err = |e: redb::StorageError| db_err(path, e);
    let range = ((compacted + 1).max(0) as u64)..=(target as u64);
    // What changes: entries to drop, and entries to rewrite with less.
    // An entry whose every change is a current put without a replaced
    // value (a create that still stands: the common case) stays untouched.
    let mut dropped = Vec::new();
    let mut rewritten = Vec::new();
    // Entries below `compacted` → keys whose put there was replaced.
    let mut replaced: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for item in log.range(range).map_err(err)? {
        let (k, v) = item.map_err(err)?;
        let rev = k.value() as Revision;
        let raw = codec::raw_changes(v.value())
            .map_err(|e| corrupt(path, format!("revision log entry {rev}: {e}")))?;
        for c in &raw {
            if let Some(m) = c.prev_mod
                && m <= compacted
            {
                replaced.entry(m as u64).or_default().push(c.key.to_vec());
            }
        }
        let live = |c: &codec::RawChange<'_>| c.put.is_some() && index.is_live(c.key, rev);
        if !raw.iter().any(live) {
            dropped.push(k.value());
            continue;
        }
        if raw.iter().all(|c| c.prev_mod.is_none() && live(c)) {
            continue;
        }
        let entry = decode_log(path, k.value(), v.value())?;
        let changes: Vec<Change> = entry
            .changes
            .into_iter()
            .filter(|c| c.put.is_some() && index.is_live(&c.key, rev))
            .map(|c| Change { prev: None, ..c })
            .collect();
        let entry = LogEntry {
            unix_millis: entry.unix_millis,
            changes,
        };
        rewritten.push((k.value(), codec::encode_entry(&entry)));
    }
    for (rev, keys) in replaced {
        // Missing for a format-1 file, whose compaction dropped whole entries.
        let Some(entry) = log
            .get(rev)
            .map_err(err)?
            .map(|v| decode_log(path, rev, v.value()))
            .transpose()?
        else {
            continue;
        };
        let before = entry.changes.len();
        let changes: Vec<Change> = entry
            .changes
            .into_iter()
            .filter(|c| !keys.contains(&c.key))
            .collect();
        if changes.is_empty() {
            dropped.push(rev);
        } else if changes.len() < before {
            let entry = LogEntry {
                unix_millis: entry.unix_millis,
                changes,
            };
            rewritten.push((rev, codec::encode_entry(&entry)));
        }
    }
    for rev in dropped {
        log.remove(rev).map_err(err)?;
    }
    for (rev, bytes) in rewritten {
        log.insert(rev, bytes.as_slice()).map_err(err)?;
    }
    meta.insert("compacted", target.to_le_bytes().as_slice())
        .map_err(err)?;
    Ok(())
}

/// Upgrades a format-1 file: every current value whose log entry was
/// compacted away gets an entry at its mod revision again (with the other
/// keys of that revision that are still current), then the `current`
/// table goes. One transaction: a crash leaves format 1 intact.
fn upgrade_v1(db: &Database, path: &Path) -> Result<()> {
    let err = |e: redb::Error| db_err(path, e);
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    let mut restored = 0usize;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        let mut log = txn.open_table(LOG).map_err(|e| err(e.into()))?;
        let compacted = meta_i64(&meta, path, "compacted")?;
        let mut missing: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
        {
            let current = txn.open_table(LEGACY_CURRENT).map_err(|e| err(e.into()))?;
            for item in current.iter().map_err(|e| err(e.into()))? {
                let (k, v) = item.map_err(|e| err(e.into()))?;
                let key = k.value();
                let cur = codec::decode_current(v.value()).map_err(|e| {
                    corrupt(
                        path,
                        format!("record of key {:?}: {e}", String::from_utf8_lossy(key)),
                    )
                })?;
                // Entries past the compacted revision were never dropped.
                if cur.mod_revision > compacted {
                    continue;
                }
                missing
                    .entry(cur.mod_revision as u64)
                    .or_default()
                    .push(Change {
                        key: key.to_vec(),
                        put: Some((cur.create_revision, cur.value)),
                        prev: None,
                    });
            }
        }
        for (rev, changes) in missing {
            restored += changes.len();
            let entry = LogEntry {
                unix_millis: 0,
                changes,
            };
            log.insert(rev, codec::encode_entry(&entry).as_slice())
                .map_err(|e| err(e.into()))?;
        }
        meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())
            .map_err(|e| err(e.into()))?;
    }
    txn.delete_table(LEGACY_CURRENT)
        .map_err(|e| err(e.into()))?;
    txn.commit().map_err(|e| err(e.into()))?;
    tracing::info!(path = %path.display(), restored, "upgraded store to format {FORMAT_VERSION}");
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::codec::Current;
    use super::*;

    /// A format-1 file (current values in their own table, the log compacted
    /// below revision 4) as an earlier build wrote it.
    fn write_format_1(dir: &Path) {
        let db = Database::create(dir.join(DB_FILE)).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut meta = txn.open_table(META).expect("meta");
            let records: [(&str, &[u8]); 4] = [
                ("magic", MAGIC),
                ("format", &1u32.to_le_bytes()),
                ("revision", &6i64.to_le_bytes()),
                ("compacted", &4i64.to_le_bytes()),
            ];
            for (k, v) in records {
                meta.insert(k, v).expect("meta record");
            }
            let mut current = txn.open_table(LEGACY_CURRENT).expect("current");
            for (key, create, modr, value) in
                [("/a", 2, 3, "a3"), ("/b", 2, 2, "b2"), ("/c", 5, 6, "c6")]
            {
                let rec = codec::encode_current(&Current {
                    create_revision: create,
                    mod_revision: modr,
                    value: value.as_bytes().to_vec(),
                });
                current
                    .insert(key.as_bytes(), rec.as_slice())
                    .expect("current record");
            }
            let mut log = txn.open_table(LOG).expect("log");
            let c5 = Current {
                create_revision: 5,
                mod_revision: 5,
                value: b"c5".to_vec(),
            };
            let entries = [
                (5u64, Some((5, b"c5".to_vec())), None),
                (6, Some((5, b"c6".to_vec())), Some(c5)),
            ];
            for (rev, put, prev) in entries {
                let entry = LogEntry {
                    unix_millis: 1,
                    changes: vec![Change {
                        key: b"/c".to_vec(),
                        put,
                        prev,
                    }],
                };
                log.insert(rev, codec::encode_entry(&entry).as_slice())
                    .expect("log entry");
            }
        }
        txn.commit().expect("commit");
    }

    fn show(kvs: &[KeyValue]) -> Vec<String> {
        kvs.iter()
            .map(|kv| {
                format!(
                    "{}={}@{}/{}",
                    String::from_utf8_lossy(&kv.key),
                    String::from_utf8_lossy(&kv.value),
                    kv.create_revision,
                    kv.mod_revision
                )
            })
            .collect()
    }

    fn log_revisions(s: &EmbeddedStore) -> Vec<u64> {
        let rtx = s.inner.db.begin_read().expect("read");
        let log = rtx.open_table(LOG).expect("log");
        log.iter()
            .expect("iter")
            .map(|i| i.expect("entry").0.value())
            .collect()
    }

    /// A put kept below the compacted revision because it was current goes
    /// when a later write to its key is compacted: a deleted key does not
    /// come back on restart, and rewritten keys leave no dead values.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_drops_puts_replaced_after_they_were_kept() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let cfg = EmbeddedConfig {
            history_revisions: 5,
            ..EmbeddedConfig::default()
        };
        let filler = |s: &EmbeddedStore, from: usize| {
            let s = s.clone();
            async move {
                for i in from..from + 10 {
                    s.create(format!("/f/{i}").as_bytes(), b"v")
                        .await
                        .expect("filler");
                }
            }
        };
        let (k, u) = {
            let s = EmbeddedStore::open_with(tmp.path(), cfg.clone())
                .await
                .expect("open");
            let k = s.create(b"/k", b"1").await.expect("create /k");
            let u = s.create(b"/u", b"1").await.expect("create /u");
            filler(&s, 0).await;
            // Both creates are below the compacted revision now, kept as current.
            assert!(s.compacted_revision().await.expect("compacted") > u);
            assert!(log_revisions(&s).contains(&(k as u64)));
            s.delete(b"/k", Some(k)).await.expect("delete /k");
            let u2 = s.update(b"/u", b"2", u).await.expect("update /u");
            filler(&s, 10).await;
            assert!(s.compacted_revision().await.expect("compacted") > u2);
            let revs = log_revisions(&s);
            assert!(
                !revs.contains(&(k as u64)) && !revs.contains(&(u as u64)),
                "{revs:?}"
            );
            assert!(revs.contains(&(u2 as u64)), "{revs:?}");
            (k, u2)
        };
        let s = EmbeddedStore::open_with(tmp.path(), cfg)
            .await
            .expect("reopen");
        assert_eq!(s.get(b"/k").await.expect("get /k"), None, "deleted at {k}");
        let got = s.get(b"/u").await.expect("get /u").expect("/u");
        assert_eq!((got.value.as_slice(), got.mod_revision), (&b"2"[..], u));
        let all = s
            .range(RangeRequest {
                prefix: b"/".to_vec(),
                ..Default::default()
            })
            .await
            .expect("range");
        assert_eq!(all.kvs.len(), 21);
        // Below the compacted revision the log holds the current puts only.
        let compacted = s.compacted_revision().await.expect("compacted") as u64;
        let below = log_revisions(&s)
            .into_iter()
            .filter(|r| *r <= compacted)
            .count();
        let current_below = all
            .kvs
            .iter()
            .filter(|kv| kv.mod_revision as u64 <= compacted)
            .count();
        assert_eq!(below, current_below);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn format_1_is_upgraded_in_place() {
        let tmp = tempfile::tempdir().expect("temp dir");
        write_format_1(tmp.path());
        for round in 0..2 {
            let s = EmbeddedStore::open(tmp.path()).await.expect("open");
            assert_eq!(s.current_revision().await.expect("rev"), 6);
            let all = |revision| RangeRequest {
                prefix: b"/".to_vec(),
                revision,
                ..Default::default()
            };
            assert_eq!(
                show(&s.range(all(None)).await.expect("range").kvs),
                ["/a=a3@2/3", "/b=b2@2/2", "/c=c6@5/6"],
                "round {round}"
            );
            assert_eq!(
                show(&s.range(all(Some(5))).await.expect("range at 5").kvs),
                ["/a=a3@2/3", "/b=b2@2/2", "/c=c5@5/5"]
            );
            let mut w = s.watch(b"/", 4, false).await.expect("watch from 4");
            for want in [5, 6] {
                let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
                    .await
                    .expect("event in time")
                    .expect("open")
                    .expect("event");
                assert_eq!(ev.revision(), want);
            }
            drop(w);
            let rtx = s.inner.db.begin_read().expect("read");
            assert!(matches!(
                rtx.open_table(LEGACY_CURRENT),
                Err(redb::TableError::TableDoesNotExist(_))
            ));
            let meta = rtx.open_table(META).expect("meta");
            assert_eq!(
                meta_bytes(&meta, tmp.path(), "format").expect("format"),
                Some(FORMAT_VERSION.to_le_bytes().to_vec())
            );
        }
    }
}

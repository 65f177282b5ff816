//! Revisioned key-value store with watch, on etcd's model.
//!
//! One trait ([`Store`]) serves a single machine (the embedded redb backend)
//! and many (etcd). Every write gets the next revision of one global,
//! strictly increasing counter; a watch from revision `r` delivers every
//! later change exactly once, in order, or fails with
//! [`StoreError::Compacted`] when `r` is older than the history kept.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;

mod embedded;
#[cfg(feature = "etcd")]
mod etcd;
mod keys;

pub use embedded::{DB_FILE, EmbeddedConfig, EmbeddedStore, FORMAT_VERSION};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdStore};
pub use keys::{DEFAULT_MAX_VALUE_BYTES, MAX_TXN_OPS};

/// A store revision. Revisions start at 1 and only grow; 0 means "none".
pub type Revision = i64;

/// One stored key with its value and the revisions that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// A read of a key range: all keys starting with `prefix` that are
/// lexicographically greater than or equal to `start` (when set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: Vec<u8>,
    /// Resume point for pagination: only keys `>= start` are returned.
    pub start: Option<Vec<u8>>,
    /// At most this many keys (0 = no limit).
    pub limit: usize,
    /// Read the state as of this revision (None = latest). Fails with
    /// [`StoreError::Compacted`] if it is older than the kept history, and
    /// with [`StoreError::FutureRevision`] if it is newer than the store.
    pub revision: Option<Revision>,
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// True when more keys match beyond `limit`.
    pub more: bool,
    /// The revision this read was served at (pass it back as
    /// `RangeRequest::revision` to continue a consistent pagination).
    pub revision: Revision,
    /// Total number of keys matching the prefix at that revision (from `start`).
    pub remaining: usize,
}

/// A guard in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key exists and its mod_revision equals the given one.
    ModRevision(Vec<u8>, Revision),
}

/// A write in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// The outcome of a transaction. When `succeeded` is false nothing was
/// written and `revision` is the current revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// Revision of the write when it succeeded (all ops share it).
    pub revision: Revision,
    /// For each op, the previous value of its key if it had one.
    pub prev: Vec<Option<KeyValue>>,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated; `prev` is its previous value.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: Revision },
    /// Progress notification: every change up to `revision` has been
    /// delivered (used for watch bookmarks).
    Progress { revision: Revision },
}

impl WatchEvent {
    /// The revision of the change (or of the progress mark).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
            WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// A watch: an ordered stream of changes. It ends with an error item if
/// the watch can no longer continue (for example the backend went away).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key already exists")]
    AlreadyExists,
    #[error("key not found")]
    NotFound,
    /// The guarded write lost: the key's current mod_revision differs
    /// (`current` is None when the key no longer exists).
    #[error("conflict: key was modified (current revision {current:?})")]
    Conflict { current: Option<Revision> },
    /// The requested revision has been compacted away (maps to 410 Gone).
    #[error("required revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("required revision {requested} is a future revision (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The data directory or its files cannot be used as a store.
    #[error("store at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("store backend unavailable: {0}")]
    Unavailable(String),
    #[error("store I/O error: {0}")]
    Io(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with watch.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// One key at the latest revision.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>>;
    /// Keys by prefix, paginated, optionally at a past revision.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;
    /// Create a key; [`StoreError::AlreadyExists`] if it exists. Returns the new revision.
    async fn create(&self, key: &[u8], value: &[u8]) -> Result<Revision>;
    /// Replace a key's value if its mod_revision is `expected`; otherwise
    /// [`StoreError::Conflict`] (or [`StoreError::NotFound`] if absent).
    async fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Revision>;
    /// Delete a key, guarded by its mod_revision when `expected` is given.
    /// Returns the delete's revision and the last value.
    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<(Revision, KeyValue)>;
    /// Apply `ops` atomically at one revision if every compare holds.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResponse>;
    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision>;
    /// The compaction point `c` (0 if never compacted): reads at revisions
    /// `>= c` and watches from `after >= c` still work; older ones fail
    /// with [`StoreError::Compacted`].
    async fn compacted_revision(&self) -> Result<Revision>;
    /// Drop history at and below `revision` (it becomes the compaction
    /// point). Fails with [`StoreError::Compacted`] if it is not above the
    /// current point and [`StoreError::FutureRevision`] if beyond the store.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// Watch keys with `prefix` for changes with revision > `after`.
    /// With `progress` set, the stream also yields [`WatchEvent::Progress`]
    /// marks when idle.
    async fn watch(&self, prefix: &[u8], after: Revision, progress: bool) -> Result<WatchStream>;
}

/// Opens a store by URL: `file:///path` or a plain path for the embedded
/// backend, `etcd://host:port[,host:port...][/key-prefix]` for etcd (with
/// the `etcd` feature).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    match parse_url(url)? {
        Location::Embedded(path) => Ok(Arc::new(EmbeddedStore::open(path).await?)),
        #[cfg(feature = "etcd")]
        Location::Etcd { endpoints, prefix } => Ok(Arc::new(
            EtcdStore::connect(&endpoints, prefix.as_bytes()).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        Location::Etcd { .. } => Err(StoreError::InvalidRequest(format!(
            "store URL {url:?} needs etcd support, but this build has no `etcd` feature"
        ))),
    }
}

/// Where a store URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    Embedded(std::path::PathBuf),
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

fn parse_url(url: &str) -> Result<Location> {
    let bad = |why: &str| StoreError::InvalidRequest(format!("store URL {url:?}: {why}"));
    if url.is_empty() {
        return Err(bad("empty; want file:///path, a path or etcd://host:port"));
    }
    if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad(
                "a file URL needs an absolute path (file:///var/lib/svcnet)",
            ));
        }
        return Ok(Location::Embedded(rest.into()));
    }
    if let Some(rest) = url.strip_prefix("etcd://") {
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let valid_port = host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !valid_port {
                return Err(bad(&format!("endpoint {host:?} is not host:port")));
            }
            endpoints.push(format!("http://{host}"));
        }
        return Ok(Location::Etcd {
            endpoints,
            prefix: prefix.to_string(),
        });
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(bad(&format!(
            "unknown scheme {scheme:?}; want file:// or etcd://"
        )));
    }
    Ok(Location::Embedded(url.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_table() {
        let etcd = |eps: &[&str], prefix: &str| {
            Ok(Location::Etcd {
                endpoints: eps.iter().map(|s| s.to_string()).collect(),
                prefix: prefix.to_string(),
            })
        };
        let cases: Vec<(&str, std::result::Result<Location, String>)> = vec![
            ("/var/lib/svcnet", Ok(Location::Embedded("/var/lib/svcnet".into()))),
            ("data", Ok(Location::Embedded("data".into()))),
            ("file:///var/lib/svcnet", Ok(Location::Embedded("/var/lib/svcnet".into()))),
            ("etcd://127.0.0.1:2379", etcd(&["http://127.0.0.1:2379"], "")),
            (
                "etcd://a:1,b:2/svcnet",
                etcd(&["http://a:1", "http://b:2"], "/svcnet"),
            ),
            (
                "",
                Err("invalid request: store URL \"\": empty; want file:///path, a path or etcd://host:port".into()),
            ),
            (
                "file://relative",
                Err("invalid request: store URL \"file://relative\": a file URL needs an absolute path (file:///var/lib/svcnet)".into()),
            ),
            (
                "etcd://localhost",
                Err("invalid request: store URL \"etcd://localhost\": endpoint \"localhost\" is not host:port".into()),
            ),
            (
                "etcd://a:1,:2",
                Err("invalid request: store URL \"etcd://a:1,:2\": endpoint \":2\" is not host:port".into()),
            ),
            (
                "redis://x",
                Err("invalid request: store URL \"redis://x\": unknown scheme \"redis\"; want file:// or etcd://".into()),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url).map_err(|e| e.to_string()), want, "{url}");
        }
    }
}

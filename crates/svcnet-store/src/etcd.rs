//! etcd backend: the store operations as etcd v3 ranges, transactions and watches, keys under a prefix.
//!
//! Revisions are etcd's own, one to one. Guarded writes are etcd
//! transactions comparing `mod_revision` (or `create_revision == 0` for
//! absent keys); a guard that loses reads the key in the same transaction
//! so the answer (Conflict or NotFound) is exact. Watches start at
//! `after + 1` with previous values and progress notifications.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use futures::stream;
use tokio::sync::mpsc;

use crate::keys::{self, DEFAULT_MAX_VALUE_BYTES};
use crate::{
    Compare, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    TxnResponse, WatchEvent, WatchStream,
};

/// Settings of the etcd backend.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://host:port` (a bare `host:port` works too).
    pub endpoints: Vec<String>,
    /// Every key is stored under this prefix (like kube-apiserver's
    /// `--etcd-prefix`), so one etcd can serve several clusters.
    pub prefix: Vec<u8>,
    /// Values above this size are refused before they reach etcd.
    pub max_value_bytes: usize,
    /// Idle time after which a watch with progress enabled asks etcd for
    /// a progress notification.
    pub progress_interval: Duration,
    pub connect_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: Vec::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            progress_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A store backed by an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: Arc<EtcdConfig>,
    /// Highest compaction point seen; a lower bound for the search.
    compacted_hint: Arc<AtomicI64>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &String::from_utf8_lossy(&self.config.prefix))
            .finish_non_exhaustive()
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    let text = e.to_string();
    // etcd's own request limit (--max-request-bytes) counts key and
    // framing too, so it can refuse what passed our value check.
    if text.contains("request is too large") {
        return StoreError::InvalidRequest(format!("etcd refused the request: {text}"));
    }
    StoreError::Unavailable(format!("etcd: {text}"))
}

/// etcd reports these as gRPC status messages.
fn is_compacted(e: &etcd_client::Error) -> bool {
    e.to_string()
        .contains("required revision has been compacted")
}

fn is_future(e: &etcd_client::Error) -> bool {
    e.to_string()
        .contains("required revision is a future revision")
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision())
}

impl EtcdStore {
    /// Connects to `endpoints` and stores every key under `prefix`.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], prefix: &[u8]) -> Result<Self> {
        Self::connect_with(EtcdConfig {
            endpoints: endpoints.iter().map(|e| e.as_ref().to_string()).collect(),
            prefix: prefix.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Connects with full settings and checks that etcd answers.
    pub async fn connect_with(config: EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidRequest("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = tokio::time::timeout(
            config.connect_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "etcd at {} did not answer within {:?}",
                config.endpoints.join(","),
                config.connect_timeout
            ))
        })?
        .map_err(unavailable)?;
        let store = Self {
            client,
            config: Arc::new(config),
            compacted_hint: Arc::new(AtomicI64::new(0)),
        };
        // Fail now, with the endpoint named, rather than on first use.
        tokio::time::timeout(store.config.connect_timeout, store.current_revision())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "etcd at {} did not answer within {:?}",
                    store.config.endpoints.join(","),
                    store.config.connect_timeout
                ))
            })??;
        Ok(store)
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.config.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// The end of the key range for our keys starting with `prefix`
    /// ("\0" is etcd's "to the end of the keyspace").
    fn full_end(&self, prefix: &[u8]) -> Vec<u8> {
        keys::prefix_end(&self.full(prefix)).unwrap_or_else(|| vec![0])
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = kv
            .key()
            .strip_prefix(self.config.prefix.as_slice())
            .unwrap_or(kv.key());
        KeyValue {
            key: key.to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    /// Whether a read at `rev` is still possible (false once compacted).
    async fn readable(&self, rev: Revision) -> Result<bool> {
        let opts = GetOptions::new()
            .with_revision(rev)
            .with_count_only()
            .with_limit(1);
        match self.client.clone().get(self.full(b""), Some(opts)).await {
            Ok(_) => Ok(true),
            Err(e) if is_compacted(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// etcd does not report its compaction point directly, so find the
    /// oldest readable revision by bisection (a few dozen cheap requests).
    async fn find_compacted(&self) -> Result<Revision> {
        let cur = self.current_revision().await?;
        let hint = self.compacted_hint.load(Ordering::Relaxed);
        let mut lo = hint.max(1);
        if self.readable(lo).await? {
            return Ok(hint);
        }
        // Invariant: lo is not readable, hi is.
        let mut hi = cur;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.compacted_hint.fetch_max(hi, Ordering::Relaxed);
        Ok(hi)
    }

    async fn revision_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        if is_compacted(&e) {
            return match self.find_compacted().await {
                Ok(compacted) => StoreError::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            };
        }
        if is_future(&e) {
            return match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            };
        }
        unavailable(e)
    }

    /// Resolves a guarded write whose expected revision can never match.
    async fn guard_state(&self, key: &[u8]) -> StoreError {
        match self.get(key).await {
            Ok(None) => StoreError::NotFound,
            Ok(Some(kv)) => StoreError::Conflict {
                current: Some(kv.mod_revision),
            },
            Err(e) => e,
        }
    }

    /// The Conflict / NotFound answer from the failure branch's read.
    fn guard_error(&self, resp: &etcd_client::TxnResponse) -> StoreError {
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(|kv| kv.mod_revision())),
            _ => None,
        });
        match current.flatten() {
            None => StoreError::NotFound,
            Some(rev) => StoreError::Conflict { current: Some(rev) },
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(unavailable)?;
        Ok(resp.kvs().first().map(|kv| self.kv(kv)))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let at = match req.revision {
            None | Some(0) => 0,
            Some(r) if r < 0 => {
                return Err(StoreError::InvalidRequest(format!(
                    "revision must not be negative, got {r}"
                )));
            }
            Some(r) => r,
        };
        let mut opts = GetOptions::new().with_revision(at);
        let (key, empty) = match keys::range_bounds(&req) {
            Some((lo, hi)) => {
                let end = match hi {
                    Some(hi) => self.full(&hi),
                    None => self.full_end(b""),
                };
                opts = opts.with_range(end);
                if req.limit > 0 {
                    opts = opts.with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
                }
                (self.full(&lo), false)
            }
            // Nothing can match, but the revision is still checked.
            None => {
                opts = opts.with_count_only();
                (self.full(&req.prefix), true)
            }
        };
        let resp = match self.client.clone().get(key, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.revision_error(e, at).await),
        };
        if empty {
            return Ok(RangeResponse {
                revision: if at > 0 {
                    at
                } else {
                    header_rev(resp.header())
                },
                ..Default::default()
            });
        }
        Ok(RangeResponse {
            kvs: resp.kvs().iter().map(|kv| self.kv(kv)).collect(),
            more: resp.more(),
            // etcd's header carries the current revision, not the one read at.
            revision: if at > 0 {
                at
            } else {
                header_rev(resp.header())
            },
            remaining: usize::try_from(resp.count()).unwrap_or(0),
        })
    }

    async fn create(&self, key: &[u8], value: &[u8]) -> Result<Revision> {
        keys::check_key(key)?;
        keys::check_value(value, self.config.max_value_bytes)?;
        let full = self.full(key);
        let txn = Txn::new()
            .when([etcd_client::Compare::create_revision(
                full.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(full, value, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            Ok(header_rev(resp.header()))
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<Revision> {
        keys::check_key(key)?;
        keys::check_value(value, self.config.max_value_bytes)?;
        if expected <= 0 {
            // etcd's mod_revision of an absent key is 0: never let that match.
            return Err(self.guard_state(key).await);
        }
        let full = self.full(key);
        let txn = Txn::new()
            .when([etcd_client::Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::put(full.clone(), value, None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            Ok(header_rev(resp.header()))
        } else {
            Err(self.guard_error(&resp))
        }
    }

    async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        keys::check_key(key)?;
        let full = self.full(key);
        let del = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(r) if r <= 0 => return Err(self.guard_state(key).await),
            Some(r) => Txn::new()
                .when([etcd_client::Compare::mod_revision(
                    full.clone(),
                    CompareOp::Equal,
                    r,
                )])
                .and_then([del])
                .or_else([TxnOp::get(full, None)]),
            None => Txn::new().and_then([del]),
        };
        let resp = self.client.clone().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(self.guard_error(&resp));
        }
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.kv(kv)),
            _ => None,
        });
        match prev {
            Some(prev) => Ok((header_rev(resp.header()), prev)),
            None => Err(StoreError::NotFound),
        }
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResponse> {
        keys::check_txn(&compares, &ops, self.config.max_value_bytes)?;
        let when: Vec<etcd_client::Compare> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => {
                    etcd_client::Compare::create_revision(self.full(k), CompareOp::Equal, 0)
                }
                Compare::ModRevision(k, r) => {
                    etcd_client::Compare::mod_revision(self.full(k), CompareOp::Equal, *r)
                }
            })
            .collect();
        let then: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => TxnOp::put(
                    self.full(k),
                    v.clone(),
                    Some(PutOptions::new().with_prev_key()),
                ),
                Op::Delete(k) => {
                    TxnOp::delete(self.full(k), Some(DeleteOptions::new().with_prev_key()))
                }
            })
            .collect();
        let resp = self
            .client
            .clone()
            .txn(Txn::new().when(when).and_then(then))
            .await
            .map_err(unavailable)?;
        let revision = header_rev(resp.header());
        if !resp.succeeded() {
            return Ok(TxnResponse {
                succeeded: false,
                revision,
                prev: Vec::new(),
            });
        }
        let prev = resp
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| self.kv(kv)),
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.kv(kv)),
                _ => None,
            })
            .collect();
        Ok(TxnResponse {
            succeeded: true,
            revision,
            prev,
        })
    }

    async fn current_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only().with_limit(1);
        let resp = self
            .client
            .clone()
            .get(self.full(b""), Some(opts))
            .await
            .map_err(unavailable)?;
        Ok(header_rev(resp.header()))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.find_compacted().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.client.clone().compact(revision, None).await {
            Ok(_) => {
                self.compacted_hint.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }

    async fn watch(&self, prefix: &[u8], after: Revision, progress: bool) -> Result<WatchStream> {
        if after < 0 {
            return Err(StoreError::InvalidRequest(format!(
                "watch revision must not be negative, got {after}"
            )));
        }
        // etcd accepts a watch from the compaction point itself; we answer
        // like the embedded backend: `after` must still be readable.
        if after > 0 && !self.readable(after).await? {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.find_compacted().await?,
            });
        }
        let mut opts = WatchOptions::new()
            .with_range(self.full_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key();
        if progress {
            opts = opts.with_progress_notify();
        }
        let etcd_stream = self
            .client
            .clone()
            .watch(self.full(prefix), Some(opts))
            .await
            .map_err(unavailable)?;
        let (out, mut rx) = mpsc::channel(256);
        let task = WatchTask {
            store: self.clone(),
            last: after,
            progress,
            out,
        };
        tokio::spawn(task.run(etcd_stream));
        Ok(Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }
}

/// Pumps one etcd watch into the caller's channel.
struct WatchTask {
    store: EtcdStore,
    last: Revision,
    progress: bool,
    out: mpsc::Sender<Result<WatchEvent>>,
}

impl WatchTask {
    async fn run(mut self, mut etcd: etcd_client::WatchStream) {
        let idle = self.store.config.progress_interval;
        loop {
            let msg = tokio::select! {
                m = etcd.message() => Some(m),
                _ = tokio::time::sleep(idle), if self.progress => None,
                _ = self.out.closed() => return,
            };
            let resp = match msg {
                None => {
                    // Idle: ask for a progress notification; it arrives as
                    // an empty response.
                    if let Err(e) = etcd.request_progress().await {
                        self.fail(unavailable(e)).await;
                        return;
                    }
                    continue;
                }
                Some(Ok(Some(resp))) => resp,
                Some(Ok(None)) => {
                    self.fail(StoreError::Unavailable("etcd closed the watch".into()))
                        .await;
                    return;
                }
                Some(Err(e)) => {
                    self.fail(unavailable(e)).await;
                    return;
                }
            };
            if resp.compact_revision() > 0 {
                let compacted = resp.compact_revision();
                self.store
                    .compacted_hint
                    .fetch_max(compacted, Ordering::Relaxed);
                let e = StoreError::Compacted {
                    requested: self.last,
                    compacted,
                };
                self.fail(e).await;
                return;
            }
            if resp.canceled() {
                let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
                self.fail(StoreError::Unavailable(reason)).await;
                return;
            }
            if resp.created() {
                continue;
            }
            if resp.events().is_empty() {
                let revision = header_rev(resp.header()).max(self.last);
                self.last = revision;
                if self.send(WatchEvent::Progress { revision }).await.is_err() {
                    return;
                }
                continue;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let kv_ours = self.store.kv(kv);
                let prev = ev.prev_kv().map(|p| self.store.kv(p));
                let event = match ev.event_type() {
                    EventType::Put => WatchEvent::Put { kv: kv_ours, prev },
                    EventType::Delete => {
                        let revision = kv.mod_revision();
                        // etcd omits the previous value only if it was
                        // compacted away; keep the key so the event is usable.
                        let prev = prev.unwrap_or(KeyValue {
                            key: kv_ours.key,
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: 0,
                        });
                        WatchEvent::Delete { prev, revision }
                    }
                };
                self.last = self.last.max(event.revision());
                if self.send(event).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn send(&self, ev: WatchEvent) -> std::result::Result<(), ()> {
        self.out.send(Ok(ev)).await.map_err(|_| ())
    }

    async fn fail(&self, e: StoreError) {
        // The caller may already be gone.
        let _ = self.out.send(Err(e)).await;
    }
}

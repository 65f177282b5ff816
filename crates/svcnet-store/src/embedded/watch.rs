//! One embedded watch: replay from the log snapshot, then live events, progress marks and catch-up.
//!
//! Each watch is a task feeding a bounded channel the caller reads. If the
//! caller is slow, its live buffer in the writer fills and the writer cuts
//! it off rather than wait; the task then re-subscribes from the last
//! revision it delivered and replays the gap from the log, so nothing is
//! lost or repeated. Only a watcher that falls behind the history window
//! ends, with [`StoreError::Compacted`], and must re-list.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream;
use tokio::sync::mpsc;

use super::{Inner, Subscription, replay};
use crate::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// Revisions read from the log per blocking step of a replay.
const REPLAY_CHUNK: i64 = 256;
/// Events buffered between the task and the caller.
const OUT_BUFFER: usize = 256;

pub(super) fn start(
    inner: Arc<Inner>,
    prefix: Vec<u8>,
    after: Revision,
    progress: bool,
    sub: Subscription,
) -> WatchStream {
    let (out, mut rx) = mpsc::channel(OUT_BUFFER);
    tokio::spawn(async move {
        let task = Task {
            inner,
            prefix,
            last: after,
            progress,
            out,
        };
        if let Err(e) = task.run(sub).await
            && let Some(out) = e
        {
            // The caller may be gone already; nothing else to do then.
            let _ = out.0.send(Err(out.1)).await;
        }
    });
    Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

type Out = mpsc::Sender<Result<WatchEvent>>;

struct Task {
    inner: Arc<Inner>,
    prefix: Vec<u8>,
    /// Every matching change up to here has been delivered.
    last: Revision,
    progress: bool,
    out: Out,
}

/// Why the task stopped: `None` when the caller went away, otherwise the
/// error to hand it.
type Stop = Option<(Out, StoreError)>;

impl Task {
    async fn run(mut self, mut sub: Subscription) -> std::result::Result<(), Stop> {
        loop {
            self.replay(&sub).await?;
            self.live(&mut sub).await?;
            // Cut off for being slow: catch up from the last delivered revision.
            let inner = self.inner.clone();
            let (prefix, last) = (self.prefix.clone(), self.last);
            let next = tokio::task::spawn_blocking(move || inner.subscribe(&prefix, last)).await;
            sub = match next {
                Ok(Ok(sub)) => sub,
                Ok(Err(e)) => return Err(self.stop(e)),
                Err(e) => return Err(self.stop(super::join_err(e))),
            };
        }
    }

    fn stop(&self, e: StoreError) -> Stop {
        Some((self.out.clone(), e))
    }

    async fn send(&mut self, ev: WatchEvent) -> std::result::Result<(), Stop> {
        let rev = ev.revision();
        self.out.send(Ok(ev)).await.map_err(|_| None)?;
        self.last = self.last.max(rev);
        Ok(())
    }

    async fn send_revision(&mut self, events: Vec<WatchEvent>) -> std::result::Result<(), Stop> {
        // One item is one revision. Live events start after the snapshot;
        // this only guards resumes.
        if events.first().is_some_and(|ev| ev.revision() > self.last) {
            for ev in events {
                self.send(ev).await?;
            }
        }
        Ok(())
    }

    /// Delivers `(last, until]` from the snapshot taken at subscription.
    async fn replay(&mut self, sub: &Subscription) -> std::result::Result<(), Stop> {
        while self.last < sub.until {
            let from = self.last + 1;
            let to = (self.last + REPLAY_CHUNK).min(sub.until);
            let (inner, snapshot, prefix) = (
                self.inner.clone(),
                sub.snapshot.clone(),
                self.prefix.clone(),
            );
            let events = tokio::task::spawn_blocking(move || {
                replay(&inner.path, &snapshot, &prefix, from, to)
            })
            .await
            .map_err(|e| self.stop(super::join_err(e)))?
            .map_err(|e| self.stop(e))?;
            for ev in events {
                self.send(ev).await?;
            }
            self.last = to;
        }
        Ok(())
    }

    /// Forwards live events until the writer cuts this watcher off.
    async fn live(&mut self, sub: &mut Subscription) -> std::result::Result<(), Stop> {
        let idle = self.inner.config.progress_interval;
        loop {
            let next = tokio::select! {
                item = sub.rx.recv() => Some(item),
                _ = tokio::time::sleep(idle), if self.progress => None,
                _ = self.out.closed() => return Err(None),
            };
            match next {
                Some(Some(events)) => self.send_revision(events).await?,
                Some(None) => {
                    if sub.overflowed.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    return Err(self.stop(StoreError::Unavailable("store closed".into())));
                }
                None => {
                    // Everything up to `done` has been put in our buffer
                    // (the writer stores it after sending), so once the
                    // buffer is drained the mark is true.
                    let done = self.inner.broadcast.load(Ordering::Acquire);
                    while let Ok(events) = sub.rx.try_recv() {
                        self.send_revision(events).await?;
                    }
                    if sub.overflowed.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let revision = done.max(self.last);
                    self.out
                        .send(Ok(WatchEvent::Progress { revision }))
                        .await
                        .map_err(|_| None)?;
                    self.last = revision;
                }
            }
        }
    }
}

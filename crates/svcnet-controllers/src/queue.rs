//! A de-duplicating work queue of object keys, as upstream's workqueue: a key queued twice is worked once.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    order: VecDeque<String>,
    queued: BTreeSet<String>,
}

/// Keys waiting to be reconciled.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if s.queued.insert(key.clone()) {
            s.order.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` again after `delay` (a failed reconcile's retry).
    pub fn add_after(&self, key: String, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Takes every waiting key, in the order they were first queued.
    pub fn drain(&self) -> Vec<String> {
        let mut s = self.lock();
        s.queued.clear();
        s.order.drain(..).collect()
    }

    /// Number of waiting keys.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one key is queued, then takes them all.
    pub async fn next_batch(&self) -> Vec<String> {
        loop {
            let notified = self.notify.notified();
            let batch = self.drain();
            if !batch.is_empty() {
                return batch;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_and_keeps_order() {
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (vec![], vec![]),
            (vec!["a"], vec!["a"]),
            (vec!["b", "a", "b", "c", "a"], vec!["b", "a", "c"]),
        ];
        for (adds, want) in cases {
            let q = Queue::new();
            for a in &adds {
                q.add(*a);
            }
            assert_eq!(q.len(), want.len(), "{adds:?}");
            assert_eq!(q.drain(), want, "{adds:?}");
            assert!(q.is_empty());
        }
    }

    #[tokio::test]
    async fn next_batch_wakes_on_add() {
        let q = Queue::new();
        let q2 = q.clone();
        let t = tokio::spawn(async move { q2.next_batch().await });
        tokio::task::yield_now().await;
        q.add("x");
        let got = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .ok()
            .and_then(|r| r.ok());
        assert_eq!(got, Some(vec!["x".to_owned()]));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_delays() {
        let q = Queue::new();
        q.add_after("k".into(), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.drain(), vec!["k".to_owned()]);
    }
}

//! Watch caches: objects kept current from a kube-runtime watcher, plus the controllers' own writes.
//!
//! The cache is the "store" half of an informer. It applies watcher events
//! synchronously (a relist swaps in the complete set at `InitDone`), and
//! also takes the objects our own writes returned, so that a controller
//! never acts twice on a state it already changed just because the watch
//! has not caught up. Newer resourceVersions win; a deleted key remembers
//! the last version so a late event cannot bring it back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// Cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    let name = m.name.as_deref().unwrap_or("");
    match m.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// `namespace/name` from parts.
pub fn key(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    }
}

/// Splits a key back into (namespace, name).
pub fn split_key(k: &str) -> (&str, &str) {
    k.split_once('/').unwrap_or(("", k))
}

fn rv_of<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What one applied event changed: (old, new) per key.
pub type Change<K> = (Option<Arc<K>>, Option<Arc<K>>);

#[derive(Debug)]
struct Inner<K> {
    objects: HashMap<String, Arc<K>>,
    /// Last resourceVersion of deleted keys.
    tombstones: HashMap<String, u64>,
    /// Objects of a relist in progress.
    buffer: Option<HashMap<String, Arc<K>>>,
}

/// A shared, synchronously updated set of objects of one kind.
#[derive(Debug)]
pub struct Cache<K> {
    inner: Arc<RwLock<Inner<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K: Resource + Clone> Default for Cache<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource + Clone> Cache<K> {
    /// An empty, not yet synced cache.
    pub fn new() -> Self {
        Cache {
            inner: Arc::new(RwLock::new(Inner {
                objects: HashMap::new(),
                tombstones: HashMap::new(),
                buffer: None,
            })),
            synced: watch::channel(false).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K>> {
        // A panic while holding the lock cannot leave the maps half-written
        // in a way that matters here: take the data anyway.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The object under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The objects of one namespace.
    pub fn list_ns(&self, ns: &str) -> Vec<Arc<K>> {
        self.read()
            .objects
            .values()
            .filter(|o| o.meta().namespace.as_deref().unwrap_or("") == ns)
            .cloned()
            .collect()
    }

    /// Whether the first complete list has arrived.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first complete list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Applies one watcher event; returns what changed.
    pub fn apply(&self, ev: Event<K>) -> Vec<Change<K>> {
        let mut g = self.write();
        let mut changes = Vec::new();
        match ev {
            Event::Apply(obj) => {
                if let Some(c) = upsert(&mut g, obj) {
                    changes.push(c);
                }
            }
            Event::Delete(obj) => {
                let k = key_of(&obj);
                let rv = rv_of(&obj);
                let old = g.objects.remove(&k);
                g.tombstones.insert(k, rv);
                if old.is_some() {
                    changes.push((old, None));
                }
            }
            Event::Init => g.buffer = Some(HashMap::new()),
            Event::InitApply(obj) => {
                let k = key_of(&obj);
                g.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(k, Arc::new(obj));
            }
            Event::InitDone => {
                let fresh = g.buffer.take().unwrap_or_default();
                let old = std::mem::take(&mut g.objects);
                for (k, o) in &old {
                    if !fresh.contains_key(k) {
                        changes.push((Some(o.clone()), None));
                    }
                }
                for (k, n) in &fresh {
                    let prev = old.get(k).cloned();
                    if prev.as_ref().map(|p| rv_of(p.as_ref())) != Some(rv_of(n.as_ref())) {
                        changes.push((prev, Some(n.clone())));
                    }
                }
                g.objects = fresh;
                g.tombstones.clear();
                drop(g);
                self.synced.send_replace(true);
            }
        }
        changes
    }

    /// Records an object our own write returned.
    pub fn observe(&self, obj: K) -> Option<Change<K>> {
        upsert(&mut self.write(), obj)
    }

    /// Records that our own delete removed `key` (whose last version was `rv`).
    pub fn observe_deleted(&self, key: &str, rv: u64) -> Option<Change<K>> {
        let mut g = self.write();
        g.tombstones.insert(key.to_owned(), rv);
        g.objects.remove(key).map(|o| (Some(o), None))
    }
}

fn upsert<K: Resource>(g: &mut Inner<K>, obj: K) -> Option<Change<K>> {
    let k = key_of(&obj);
    let rv = rv_of(&obj);
    if g.tombstones.get(&k).is_some_and(|t| *t >= rv) {
        return None;
    }
    if let Some(cur) = g.objects.get(&k)
        && rv_of(cur.as_ref()) >= rv
    {
        return None;
    }
    g.tombstones.remove(&k);
    let new = Arc::new(obj);
    let old = g.objects.insert(k, new.clone());
    Some((old, Some(new)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, rv: u64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(c: &Cache<Pod>) -> Vec<String> {
        let mut v: Vec<String> = c
            .list()
            .iter()
            .map(|p| format!("{}@{}", key_of(p.as_ref()), rv_of(p.as_ref())))
            .collect();
        v.sort();
        v
    }

    enum Step {
        Ev(Event<Pod>),
        Observe(Pod),
        ObserveDeleted(&'static str, u64),
    }

    #[test]
    fn cache_steps() {
        use Step::*;
        let cases: Vec<(&str, Vec<Step>, Vec<&str>, usize)> = vec![
            (
                "apply inserts",
                vec![Ev(Event::Apply(pod("a", 1)))],
                vec!["ns/a@1"],
                1,
            ),
            (
                "older apply ignored",
                vec![Ev(Event::Apply(pod("a", 5))), Ev(Event::Apply(pod("a", 3)))],
                vec!["ns/a@5"],
                1,
            ),
            (
                "own write ahead of the watch",
                vec![
                    Observe(pod("a", 7)),
                    Ev(Event::Apply(pod("a", 6))),
                    Ev(Event::Apply(pod("a", 7))),
                ],
                vec!["ns/a@7"],
                1,
            ),
            (
                "delete leaves a tombstone",
                vec![
                    Ev(Event::Apply(pod("a", 2))),
                    Ev(Event::Delete(pod("a", 3))),
                    Ev(Event::Apply(pod("a", 2))),
                ],
                vec![],
                2,
            ),
            (
                "own delete then late event",
                vec![
                    Ev(Event::Apply(pod("a", 2))),
                    ObserveDeleted("ns/a", 2),
                    Ev(Event::Apply(pod("a", 2))),
                ],
                vec![],
                2,
            ),
            (
                "recreated after delete",
                vec![
                    Ev(Event::Delete(pod("a", 3))),
                    Ev(Event::Apply(pod("a", 9))),
                ],
                vec!["ns/a@9"],
                1,
            ),
            (
                "relist swaps the set",
                vec![
                    Ev(Event::Apply(pod("a", 1))),
                    Ev(Event::Apply(pod("b", 2))),
                    Ev(Event::Init),
                    Ev(Event::InitApply(pod("b", 2))),
                    Ev(Event::InitApply(pod("c", 4))),
                    Ev(Event::InitDone),
                ],
                vec!["ns/b@2", "ns/c@4"],
                // a, b inserted; then a removed and c added (b unchanged).
                4,
            ),
        ];
        for (name, steps, want, want_changes) in cases {
            let c = Cache::<Pod>::new();
            let mut changes = 0;
            for s in steps {
                changes += match s {
                    Ev(e) => c.apply(e).len(),
                    Observe(p) => c.observe(p).into_iter().count(),
                    ObserveDeleted(k, rv) => c.observe_deleted(k, rv).into_iter().count(),
                };
            }
            assert_eq!(names(&c), want, "{name}");
            assert_eq!(changes, want_changes, "{name}: changes");
        }
    }

    #[test]
    fn synced_after_init_done() {
        let c = Cache::<Pod>::new();
        assert!(!c.is_synced());
        c.apply(Event::Init);
        assert!(!c.is_synced());
        c.apply(Event::InitDone);
        assert!(c.is_synced());
    }

    #[test]
    fn keys() {
        assert_eq!(key("ns", "a"), "ns/a");
        assert_eq!(key("", "n1"), "n1");
        assert_eq!(split_key("ns/a"), ("ns", "a"));
        assert_eq!(split_key("n1"), ("", "n1"));
    }
}

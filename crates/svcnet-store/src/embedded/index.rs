//! The embedded backend's key index, kept in memory like etcd's treeIndex:
//! every live key → its create and mod revision. A key's value is in the
//! revision log entry of its mod revision, so a write appends to the log
//! (sequential keys: a few pages per batch) instead of rewriting a page of
//! a key-ordered table for every key it touches.
//!
//! The map is persistent (structural sharing): the writer publishes a new
//! version after each commit in O(changes · log n), and a reader takes an
//! immutable version (under a mutex held for the pointer copy) and keeps it
//! for as long as it needs.

use std::sync::Arc;

use imbl::OrdMap;

use super::codec::Change;
use crate::Revision;

/// Where a live key's current value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
}

/// The live keys as of revision `rev`. Keys are shared (`Arc`): a write
/// after a publish copies the nodes on its path, and copying a node must
/// not copy its keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    pub(crate) rev: Revision,
    pub(crate) keys: OrdMap<Arc<[u8]>, Loc>,
}

impl Index {
    /// Applies the changes written at `rev` (revisions in increasing order).
    pub(crate) fn apply(&mut self, rev: Revision, changes: &[Change]) {
        for c in changes {
            self.apply_key(rev, &c.key, c.put.as_ref().map(|(create, _)| *create));
        }
        self.rev = self.rev.max(rev);
    }

    /// Applies one key's change at `rev` (a put with its create revision, or
    /// a delete).
    pub(crate) fn apply_key(&mut self, rev: Revision, key: &[u8], create: Option<Revision>) {
        match create {
            Some(create_revision) => {
                self.keys.insert(
                    Arc::from(key),
                    Loc {
                        create_revision,
                        mod_revision: rev,
                    },
                );
            }
            None => {
                self.keys.remove(key);
            }
        }
        self.rev = self.rev.max(rev);
    }

    /// Whether the put of `key` at `rev` is still its current value.
    pub(crate) fn is_live(&self, key: &[u8], rev: Revision) -> bool {
        self.keys.get(key).is_some_and(|l| l.mod_revision == rev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, create: Option<Revision>) -> Change {
        Change {
            key: key.as_bytes().to_vec(),
            put: create.map(|c| (c, b"v".to_vec())),
            prev: None,
        }
    }

    #[test]
    fn applies_puts_and_deletes_in_revision_order() {
        let mut ix = Index::default();
        let steps: &[(Revision, Vec<Change>)] = &[
            (2, vec![change("/a", Some(2)), change("/b", Some(2))]),
            (3, vec![change("/a", Some(2))]),
            (4, vec![change("/b", None)]),
            (5, vec![change("/c", Some(5)), change("/zz", None)]),
        ];
        for (rev, changes) in steps {
            ix.apply(*rev, changes);
        }
        let got: Vec<(String, Revision, Revision)> = ix
            .keys
            .iter()
            .map(|(k, l)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    l.create_revision,
                    l.mod_revision,
                )
            })
            .collect();
        assert_eq!(got, [("/a".into(), 2, 3), ("/c".into(), 5, 5)]);
        assert_eq!(ix.rev, 5);
        let live: &[(&str, Revision, bool)] = &[
            ("/a", 3, true),
            ("/a", 2, false),
            ("/b", 2, false),
            ("/c", 5, true),
        ];
        for (k, rev, want) in live {
            assert_eq!(ix.is_live(k.as_bytes(), *rev), *want, "{k}@{rev}");
        }
    }

    #[test]
    fn a_published_version_does_not_see_later_changes() {
        let mut ix = Index::default();
        ix.apply_key(2, b"/a", Some(2));
        let published = ix.clone();
        ix.apply_key(3, b"/a", None);
        ix.apply_key(3, b"/b", Some(3));
        assert_eq!(published.keys.len(), 1);
        assert!(published.is_live(b"/a", 2));
        assert_eq!((published.rev, ix.rev), (2, 3));
        assert!(!ix.is_live(b"/a", 2) && ix.is_live(b"/b", 3));
    }
}

//! Byte encoding of the embedded backend's records: revision log entries (and format 1's current-key records, read once to upgrade).

use crate::{KeyValue, Revision};

/// A record in the data file does not decode: the file is damaged or was
/// written by something else.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CodecError {
    #[error("record truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("unknown change kind {0} in revision log")]
    UnknownKind(u8),
    #[error("{0} trailing bytes after record")]
    Trailing(usize),
}

/// A current key's record: revisions and value (the key is the table key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Current {
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) value: Vec<u8>,
}

impl Current {
    pub(crate) fn into_kv(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// One key's change within a revision, with the value it replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) key: Vec<u8>,
    /// The new value and its create revision; None for a delete.
    pub(crate) put: Option<(Revision, Vec<u8>)>,
    pub(crate) prev: Option<Current>,
}

/// Everything written at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    /// Wall-clock time of the commit (ms since the epoch), for age-based compaction.
    pub(crate) unix_millis: u64,
    pub(crate) changes: Vec<Change>,
}

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// The record of format 1's `current` table (made by tests of the upgrade).
#[cfg(test)]
pub(crate) fn encode_current(c: &Current) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + c.value.len());
    out.extend_from_slice(&c.create_revision.to_le_bytes());
    out.extend_from_slice(&c.mod_revision.to_le_bytes());
    out.extend_from_slice(&c.value);
    out
}

pub(crate) fn decode_current(bytes: &[u8]) -> Result<Current, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(Current {
        create_revision,
        mod_revision,
        value: r.rest().to_vec(),
    })
}

pub(crate) fn encode_entry(e: &LogEntry) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&e.unix_millis.to_le_bytes());
    put_len(&mut out, e.changes.len());
    for c in &e.changes {
        out.push(if c.put.is_some() {
            KIND_PUT
        } else {
            KIND_DELETE
        });
        put_bytes(&mut out, &c.key);
        if let Some((create, value)) = &c.put {
            out.extend_from_slice(&create.to_le_bytes());
            put_bytes(&mut out, value);
        }
        match &c.prev {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.create_revision.to_le_bytes());
                out.extend_from_slice(&p.mod_revision.to_le_bytes());
                put_bytes(&mut out, &p.value);
            }
        }
    }
    out
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<LogEntry, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let unix_millis = r.u64()?;
    let count = r.u32()? as usize;
    // Each change takes at least 10 bytes; cap the preallocation by what the
    // record can hold so a damaged count cannot ask for gigabytes.
    let mut changes = Vec::with_capacity(count.min(bytes.len() / 10));
    for _ in 0..count {
        let kind = r.u8()?;
        let key = r.bytes()?.to_vec();
        let put = match kind {
            KIND_PUT => {
                let create = r.i64()?;
                Some((create, r.bytes()?.to_vec()))
            }
            KIND_DELETE => None,
            other => return Err(CodecError::UnknownKind(other)),
        };
        let prev = match r.u8()? {
            0 => None,
            _ => {
                let create_revision = r.i64()?;
                let mod_revision = r.i64()?;
                Some(Current {
                    create_revision,
                    mod_revision,
                    value: r.bytes()?.to_vec(),
                })
            }
        };
        changes.push(Change { key, put, prev });
    }
    let trailing = r.rest().len();
    if trailing != 0 {
        return Err(CodecError::Trailing(trailing));
    }
    Ok(LogEntry {
        unix_millis,
        changes,
    })
}

/// One change of an encoded entry, borrowed from its bytes (the replaced
/// value skipped): what reading a current value and loading the key index
/// need, without copying every value of the entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawChange<'a> {
    pub(crate) key: &'a [u8],
    /// The create revision and new value; None for a delete.
    pub(crate) put: Option<(Revision, &'a [u8])>,
    /// The mod revision of the value it replaced, if it carries it.
    pub(crate) prev_mod: Option<Revision>,
}

pub(crate) fn raw_changes(bytes: &[u8]) -> Result<Vec<RawChange<'_>>, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    r.u64()?;
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(bytes.len() / 10));
    for _ in 0..count {
        let kind = r.u8()?;
        let key = r.bytes()?;
        let put = match kind {
            KIND_PUT => {
                let create = r.i64()?;
                Some((create, r.bytes()?))
            }
            KIND_DELETE => None,
            other => return Err(CodecError::UnknownKind(other)),
        };
        let prev_mod = if r.u8()? != 0 {
            r.i64()?;
            let m = r.i64()?;
            r.bytes()?;
            Some(m)
        } else {
            None
        };
        out.push(RawChange { key, put, prev_mod });
    }
    let trailing = r.rest().len();
    if trailing != 0 {
        return Err(CodecError::Trailing(trailing));
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Values are limited far below 4 GiB before they get here.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let available = self.bytes.len() - self.pos;
        if available < n {
            return Err(CodecError::Truncated {
                offset: self.pos,
                needed: n - available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LogEntry {
        LogEntry {
            unix_millis: 1_700_000_000_000,
            changes: vec![
                Change {
                    key: b"/registry/services/default/a".to_vec(),
                    put: Some((7, b"{\"v\":1}".to_vec())),
                    prev: None,
                },
                Change {
                    key: b"/registry/services/default/b".to_vec(),
                    put: None,
                    prev: Some(Current {
                        create_revision: 3,
                        mod_revision: 5,
                        value: b"old".to_vec(),
                    }),
                },
            ],
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = sample();
        assert_eq!(decode_entry(&encode_entry(&e)), Ok(e));
    }

    #[test]
    fn raw_changes_borrow_keys_and_new_values() {
        let bytes = encode_entry(&sample());
        assert_eq!(
            raw_changes(&bytes),
            Ok(vec![
                RawChange {
                    key: b"/registry/services/default/a",
                    put: Some((7, b"{\"v\":1}")),
                    prev_mod: None,
                },
                RawChange {
                    key: b"/registry/services/default/b",
                    put: None,
                    prev_mod: Some(5),
                },
            ])
        );
        assert_eq!(
            raw_changes(&bytes[..bytes.len() - 1]).map(|_| ()),
            Err(CodecError::Truncated {
                offset: bytes.len() - 3,
                needed: 1
            })
        );
    }

    #[test]
    fn current_round_trips() {
        let c = Current {
            create_revision: 2,
            mod_revision: 9,
            value: b"x".to_vec(),
        };
        assert_eq!(decode_current(&encode_current(&c)), Ok(c));
    }

    #[test]
    fn damaged_records_are_reported() {
        let good = encode_entry(&sample());
        let mut unknown = good.clone();
        unknown[12] = 9; // kind byte of the first change
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"zz");
        let huge_count = {
            let mut b = good[..8].to_vec();
            b.extend_from_slice(&u32::MAX.to_le_bytes());
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                good[..5].to_vec(),
                "record truncated: needed 3 more bytes at offset 0",
            ),
            (unknown, "unknown change kind 9 in revision log"),
            (trailing, "2 trailing bytes after record"),
            (
                huge_count,
                "record truncated: needed 1 more bytes at offset 12",
            ),
        ];
        for (bytes, want) in cases {
            let got = decode_entry(&bytes).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()));
        }
        assert_eq!(
            decode_current(b"short").map_err(|e| e.to_string()),
            Err("record truncated: needed 3 more bytes at offset 0".to_string())
        );
    }
}

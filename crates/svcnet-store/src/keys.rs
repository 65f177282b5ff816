//! Key-range arithmetic shared by the backends (prefix ends, range bounds, request checks).

use crate::{Compare, Op, RangeRequest, StoreError};

/// Largest value accepted by default: etcd's default request limit (1.5 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1536 * 1024;

/// etcd's default `--max-txn-ops`; the embedded backend applies the same limit.
pub const MAX_TXN_OPS: usize = 128;

/// The smallest key greater than every key starting with `prefix`, or None
/// when no such key exists (empty prefix or all bytes 0xff): the range is
/// then unbounded above.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The half-open key interval `[lo, hi)` a range request covers, or None when
/// it is empty (a `start` beyond the prefix).
pub(crate) fn range_bounds(req: &RangeRequest) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let hi = prefix_end(&req.prefix);
    let lo = match &req.start {
        Some(start) if start.as_slice() > req.prefix.as_slice() => start.clone(),
        _ => req.prefix.clone(),
    };
    match &hi {
        Some(hi) if lo >= *hi => None,
        _ => Some((lo, hi)),
    }
}

/// True when `key` lies in `[lo, hi)`.
pub(crate) fn in_bounds(key: &[u8], lo: &[u8], hi: Option<&[u8]>) -> bool {
    key >= lo && hi.is_none_or(|hi| key < hi)
}

/// Rejects keys the store cannot hold (empty keys).
pub(crate) fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidRequest("key must not be empty".into()));
    }
    Ok(())
}

/// Rejects values above `limit` bytes.
pub(crate) fn check_value(value: &[u8], limit: usize) -> Result<(), StoreError> {
    if value.len() > limit {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            limit,
        });
    }
    Ok(())
}

/// The checks etcd applies to a transaction, so both backends refuse the
/// same requests with the same words.
pub(crate) fn check_txn(compares: &[Compare], ops: &[Op], limit: usize) -> Result<(), StoreError> {
    if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
        return Err(StoreError::InvalidRequest(format!(
            "too many operations in txn request (limit {MAX_TXN_OPS})"
        )));
    }
    for cmp in compares {
        match cmp {
            Compare::Absent(key) => check_key(key)?,
            Compare::ModRevision(key, rev) => {
                check_key(key)?;
                if *rev <= 0 {
                    return Err(StoreError::InvalidRequest(format!(
                        "expected mod revision must be positive, got {rev}"
                    )));
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        let key = match op {
            Op::Put(key, value) => {
                check_value(value, limit)?;
                key
            }
            Op::Delete(key) => key,
        };
        check_key(key)?;
        if !seen.insert(key.as_slice()) {
            return Err(StoreError::InvalidRequest(
                "duplicate key given in txn request".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"", None),
            (b"a", Some(b"b")),
            (b"/registry/services/", Some(b"/registry/services0")),
            (b"a\xff", Some(b"b")),
            (b"\xff\xff", None),
            (b"a\xfe", Some(b"a\xff")),
        ];
        for (prefix, want) in cases {
            assert_eq!(
                prefix_end(prefix).as_deref(),
                *want,
                "prefix {:?}",
                String::from_utf8_lossy(prefix)
            );
        }
    }

    #[test]
    fn range_bounds_table() {
        type Bounds = Option<(&'static [u8], Option<&'static [u8]>)>;
        type Case = (&'static [u8], Option<&'static [u8]>, Bounds);
        let cases: &[Case] = &[
            (b"/a/", None, Some((b"/a/", Some(b"/a0")))),
            (b"/a/", Some(b"/a/x"), Some((b"/a/x", Some(b"/a0")))),
            // A start before the prefix is clamped to it.
            (b"/a/", Some(b"/"), Some((b"/a/", Some(b"/a0")))),
            // A start past the prefix range selects nothing.
            (b"/a/", Some(b"/b"), None),
            (b"", Some(b"k"), Some((b"k", None))),
        ];
        for (prefix, start, want) in cases {
            let req = RangeRequest {
                prefix: prefix.to_vec(),
                start: start.map(<[u8]>::to_vec),
                ..Default::default()
            };
            let got = range_bounds(&req);
            let got = got.as_ref().map(|(lo, hi)| (lo.as_slice(), hi.as_deref()));
            assert_eq!(got, *want, "prefix {prefix:?} start {start:?}");
        }
    }

    #[test]
    fn txn_checks_table() {
        let big = vec![0u8; 11];
        let many: Vec<Op> = (0..129).map(|i| Op::Delete(vec![b'k', i as u8])).collect();
        let cases: Vec<(Vec<Compare>, Vec<Op>, Option<&str>)> = vec![
            (vec![], vec![Op::Put(b"a".to_vec(), b"v".to_vec())], None),
            (
                vec![],
                vec![Op::Put(b"a".to_vec(), big.clone())],
                Some("value of 11 bytes exceeds the limit of 10 bytes"),
            ),
            (
                vec![],
                vec![
                    Op::Put(b"a".to_vec(), b"1".to_vec()),
                    Op::Delete(b"a".to_vec()),
                ],
                Some("invalid request: duplicate key given in txn request"),
            ),
            (
                vec![],
                vec![Op::Delete(Vec::new())],
                Some("invalid request: key must not be empty"),
            ),
            (
                vec![Compare::ModRevision(b"a".to_vec(), 0)],
                vec![],
                Some("invalid request: expected mod revision must be positive, got 0"),
            ),
            (
                vec![],
                many,
                Some("invalid request: too many operations in txn request (limit 128)"),
            ),
        ];
        for (compares, ops, want) in cases {
            let got = check_txn(&compares, &ops, 10).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want);
        }
    }
}

//! The apply half of apimachinery's strategic merge patch (`StrategicMergeMapPatch`).
//!
//! The order of steps, the directives and the list ordering rules follow
//! upstream's `strategicpatch/patch.go` (server-side options: parallel lists
//! merged, unmatched nulls ignored). The result is what upstream stores
//! after decoding into the typed struct, so directive keys never survive.

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{FieldMeta, MergeSchema, Strategy};

type Result<T> = std::result::Result<T, PatchError>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ORDER_PREFIX: &str = "$setElementOrder";

/// Applies `patch` to `original`; both must be JSON objects.
pub(crate) fn apply(original: &Value, patch: &Value, schema: &dyn MergeSchema) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError::BadJsonDoc);
    };
    let mut merger = Merger {
        schema,
        path: Vec::new(),
    };
    Ok(Value::Object(
        merger.merge_map(original.clone(), patch.clone())?,
    ))
}

/// What a list holds, as far as merging cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElemKind {
    Map,
    Primitive,
}

struct Merger<'a> {
    schema: &'a dyn MergeSchema,
    /// Field names from the root to the map being merged.
    path: Vec<String>,
}

impl Merger<'_> {
    fn meta(&mut self, key: &str) -> FieldMeta {
        self.path.push(key.to_owned());
        let meta = self.schema.field(&self.path);
        self.path.pop();
        meta
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return map_directive(&directive.clone(), patch);
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch)?;

        for (k, patch_v) in patch {
            let (key, is_delete_list) = match k.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
                Some(rest) => (directive_target(rest, PatchError::BadPrimitiveList)?, true),
                None => (k, false),
            };
            if patch_v.is_null() {
                original.remove(&key);
                continue;
            }
            let Some(orig_v) = original.get_mut(&key) else {
                if !is_delete_list && let Some(v) = clean_new(patch_v) {
                    original.insert(key, v);
                }
                continue;
            };
            if type_name(orig_v) != type_name(&patch_v) {
                if !is_delete_list {
                    match clean_new(patch_v) {
                        Some(v) => *orig_v = v,
                        None => {
                            original.remove(&key);
                        }
                    }
                }
                continue;
            }
            let meta = self.meta(&key);
            let merged = match (orig_v.take(), patch_v) {
                (Value::Object(o), Value::Object(p)) => {
                    if meta.strategy == Strategy::Replace {
                        Value::Object(strip_directive_keys_map(p))
                    } else {
                        self.path.push(key.clone());
                        let r = self.merge_map(o, p);
                        self.path.pop();
                        Value::Object(r?)
                    }
                }
                (Value::Array(o), Value::Array(p)) => {
                    Value::Array(self.slice_handler(&key, o, p, meta, is_delete_list)?)
                }
                (_, p) => p,
            };
            original.insert(key, merged);
        }
        Ok(original)
    }

    fn slice_handler(
        &mut self,
        key: &str,
        original: Vec<Value>,
        patch: Vec<Value>,
        meta: FieldMeta,
        is_delete_list: bool,
    ) -> Result<Vec<Value>> {
        if meta.strategy != Strategy::Merge {
            return Ok(patch.into_iter().map(strip_directive_keys).collect());
        }
        self.path.push(key.to_owned());
        let r = self.merge_slice(
            original,
            patch,
            meta.merge_key.unwrap_or(""),
            is_delete_list,
        );
        self.path.pop();
        r
    }

    fn merge_slice(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: &str,
        is_delete_list: bool,
    ) -> Result<Vec<Value>> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = element_kind(&[&original, &patch])?;
        let (merged, server_order, patch_order) = if kind == ElemKind::Primitive {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.iter().any(|d| json_eq(v, d)))
                    .collect());
            }
            let mut both = original.clone();
            both.extend(patch.iter().cloned());
            (dedup_scalars(both), original, patch)
        } else {
            if merge_key.is_empty() {
                return Err(PatchError::NoMergeKeyDeclared);
            }
            let (original, patch) = merge_special_elements(original, patch, merge_key)?;
            let merged = self.merge_plain_elements(original.clone(), &patch, merge_key)?;
            (merged, original, patch)
        };
        let (patch_items, server_only) = partition(merged, &patch_order, merge_key, kind)?;
        normalize_element_order(
            patch_items,
            server_only,
            &patch_order,
            &server_order,
            merge_key,
            kind,
        )
    }

    /// Merges patch elements into the original elements with the same merge key, appends the rest.
    fn merge_plain_elements(
        &mut self,
        mut original: Vec<Value>,
        patch: &[Value],
        merge_key: &str,
    ) -> Result<Vec<Value>> {
        for v in patch {
            let Value::Object(m) = v else {
                return Err(bad_arg("map", v));
            };
            let Some(key_value) = m.get(merge_key) else {
                return Err(no_merge_key(v, merge_key));
            };
            match find_by_key(&original, merge_key, key_value)? {
                Some(i) => {
                    let Value::Object(o) = original[i].take() else {
                        return Err(PatchError::NotAMap(i));
                    };
                    original[i] = Value::Object(self.merge_map(o, m.clone())?);
                }
                None => {
                    if let Some(new) = clean_new(v.clone()) {
                        original.push(new);
                    }
                }
            }
        }
        Ok(original)
    }

    /// Handles every `$setElementOrder/<list>` key of `patch` together with `<list>`.
    fn merge_set_element_order(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<()> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ORDER_PREFIX))
            .cloned()
            .collect();
        for key in keys {
            let Some(order) = patch.remove(&key) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(bad_arg("list", &order));
            };
            let list_key = directive_target(
                &key[SET_ORDER_PREFIX.len()..],
                PatchError::BadSetElementOrder,
            )?;
            let original_list = as_list(original.get(&list_key))?;
            let patch_list = as_list(patch.get(&list_key))?;
            let meta = self.meta(&list_key);
            let merge_key = meta.merge_key.unwrap_or("");
            validate_patch_with_order(patch_list.unwrap_or(&[]), &order, merge_key)?;

            let original_field: Vec<Value> =
                original_list.map(<[Value]>::to_vec).unwrap_or_default();
            let patch_field: Vec<Value> = patch_list.map(<[Value]>::to_vec).unwrap_or_default();
            let merged = match (original_list.is_some(), patch_list.is_some()) {
                (true, false) => original_field.clone(),
                (false, true) => patch_field.iter().cloned().filter_map(clean_new).collect(),
                (true, true) => self.slice_handler(
                    &list_key,
                    original_field.clone(),
                    patch_field.clone(),
                    meta,
                    false,
                )?,
                (false, false) => continue,
            };
            patch.remove(&list_key);
            if original_field.is_empty() && patch_field.is_empty() {
                // Upstream errors out here ("no elements"); an empty list stays empty.
                original.insert(list_key, Value::Array(merged));
                continue;
            }
            let kind = element_kind(&[&original_field, &patch_field])?;
            let (patch_items, server_only) = if merge_key.is_empty() {
                partition(merged, &order, "", ElemKind::Primitive)?
            } else {
                partition(merged, &order, merge_key, ElemKind::Map)?
            };
            let both = normalize_element_order(
                patch_items,
                server_only,
                &order,
                &original_field,
                merge_key,
                kind,
            )?;
            original.insert(list_key, Value::Array(both));
        }
        Ok(())
    }
}

/// `$patch` on a map: `replace` keeps only the patch, `delete` empties the map.
fn map_directive(directive: &Value, mut patch: Map<String, Value>) -> Result<Map<String, Value>> {
    match directive.as_str() {
        Some("replace") => {
            patch.remove(DIRECTIVE);
            Ok(strip_directive_keys_map(patch))
        }
        Some("delete") => Ok(Map::new()),
        _ => Err(PatchError::BadPatchType {
            directive: render_directive(directive),
            map: render(&Value::Object(patch)),
        }),
    }
}

/// `$retainKeys`: clears the keys of `original` not in the list; every key the patch sets must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE_PREFIX) || k.starts_with(SET_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// The list name after a `$prefix`: `rest` must be `/<name>`.
fn directive_target(rest: &str, err: PatchError) -> Result<String> {
    rest.strip_prefix('/').map(str::to_owned).ok_or(err)
}

fn as_list(v: Option<&Value>) -> Result<Option<&[Value]>> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(bad_arg("list", other)),
    }
}

/// Checks that the patch list is in the relative order of the `$setElementOrder` list.
fn validate_patch_with_order(patch: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch.iter().collect()
    } else {
        let mut keep = Vec::new();
        for v in patch {
            let Value::Object(m) = v else {
                return Err(bad_arg("map", v));
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                keep.push(v);
            }
        }
        keep
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if non_delete[pi]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            pi += 1;
            continue;
        }
        if merge_key_equal(non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(PatchError::OrderMismatch {
            patch: render(&Value::Array(patch.to_vec())),
            order: render(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(json_eq(left, right));
    }
    let key_of = |v: &Value| -> Result<Value> {
        let Value::Object(m) = v else {
            return Err(bad_arg("map", v));
        };
        m.get(merge_key)
            .cloned()
            .ok_or_else(|| no_merge_key(v, merge_key))
    };
    Ok(json_eq(&key_of(left)?, &key_of(right)?))
}

/// Applies `$patch: delete|replace` list elements; returns the new original and the plain patch elements.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let Some(directive) = v.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(key_value) = v.get(merge_key) else {
                    return Err(no_merge_key(&v, merge_key));
                };
                original.retain(|e| !e.get(merge_key).is_some_and(|x| json_eq(x, key_value)));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeListDirective),
            _ => {
                return Err(PatchError::BadPatchType {
                    directive: render_directive(directive),
                    map: render(&v),
                });
            }
        }
    }
    if replace {
        return Ok((
            plain.into_iter().filter_map(clean_new).collect(),
            Vec::new(),
        ));
    }
    Ok((original, plain))
}

fn find_by_key(list: &[Value], merge_key: &str, key_value: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(PatchError::NotAMap(i));
        };
        if m.get(merge_key).is_some_and(|x| json_eq(x, key_value)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Splits `merged` into the items present in `by` and the server-only rest.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let found = if kind == ElemKind::Primitive {
            by.iter().any(|b| json_eq(b, &v))
        } else {
            let Value::Object(m) = &v else {
                return Err(bad_arg("map", &v));
            };
            let Some(key_value) = m.get(merge_key) else {
                return Err(no_merge_key(&v, merge_key));
            };
            find_by_key(by, merge_key, key_value)?.is_some()
        };
        if found {
            in_patch.push(v)
        } else {
            server_only.push(v)
        }
    }
    Ok((in_patch, server_only))
}

/// Sorts patch items by `patch_order`, server-only items by `server_order`, then interleaves them.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Result<Vec<Value>> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(
        server_only,
        patch,
        server_order,
        merge_key,
        kind,
    ))
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Result<Vec<Value>> {
    let (mut to_sort, to_delete) = if kind == ElemKind::Map {
        for v in to_sort.iter().chain(order) {
            let Value::Object(m) = v else {
                return Err(bad_arg("map", v));
            };
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(v, merge_key));
            }
        }
        to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    } else {
        (to_sort, Vec::new())
    };
    // Upstream sorts with a comparator that answers "less" whenever an item
    // is missing from `order`; an insertion sort reproduces its result.
    let less = |a: &Value, b: &Value| match (
        index(order, a, merge_key, kind),
        index(order, b, merge_key, kind),
    ) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    };
    for i in 1..to_sort.len() {
        let mut j = i;
        while j > 0 && less(&to_sort[j], &to_sort[j - 1]) {
            to_sort.swap(j, j - 1);
            j -= 1;
        }
    }
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// Inserts each server-only item (`left`) before the first patch item that comes later in the live list.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index(server_order, l, merge_key, kind), index(server_order, r, merge_key, kind)),
                (Some(i), Some(j)) if i < j
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Position of `v` in `list`: by merge-key value for maps, by value for primitives.
fn index(list: &[Value], v: &Value, merge_key: &str, kind: ElemKind) -> Option<usize> {
    match kind {
        ElemKind::Map => {
            let want = v.as_object().and_then(|m| m.get(merge_key));
            list.iter().position(|item| {
                let got = item.as_object().and_then(|m| m.get(merge_key));
                match (want, got) {
                    (Some(a), Some(b)) => json_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
            })
        }
        ElemKind::Primitive => list.iter().position(|item| json_eq(item, v)),
    }
}

/// Upstream's in-place deduplication (it moves the last element into each duplicate's slot).
fn dedup_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if json_eq(&s[i], &s[j]) {
                let last = s.len() - 1;
                s.swap(j, last);
                s.truncate(last);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

/// The element kind shared by all elements of `lists`.
fn element_kind(lists: &[&[Value]]) -> Result<ElemKind> {
    let mut first: Option<&'static str> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let t = type_name(v);
        match first {
            None if t == "list" => return Err(PatchError::ListOfLists),
            None => first = Some(t),
            Some(f) if f != t => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(PatchError::MixedListTypes(render(&Value::Array(all))));
            }
            Some(_) => {}
        }
    }
    Ok(if first == Some("map") {
        ElemKind::Map
    } else {
        ElemKind::Primitive
    })
}

/// A value the original did not have: nulls dropped (unmatched nulls are
/// ignored), maps carrying `$patch` dropped, directive keys removed.
/// `None` means the field or element is not kept.
fn clean_new(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if v.is_null() || is_directive_key(&k) {
                    continue;
                }
                if let Some(v) = clean_new(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(clean_new).collect())),
        other => Some(other),
    }
}

/// Removes directive keys, as decoding into a typed struct does.
fn strip_directive_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directive_keys_map(m)),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_directive_keys).collect()),
        other => other,
    }
}

fn strip_directive_keys_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, _)| !is_directive_key(k))
        .map(|(k, v)| (k, strip_directive_keys(v)))
        .collect()
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ORDER_PREFIX)
        || k.starts_with(DELETE_PRIMITIVE_PREFIX)
}

/// JSON equality where numbers compare by value (`80` equals `80.0`, as in Go's float64 decoding).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn render(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn render_directive(v: &Value) -> String {
    v.as_str().map_or_else(|| render(v), str::to_owned)
}

fn bad_arg(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::BadArgType {
        expected,
        actual: type_name(actual),
    }
}

fn no_merge_key(map: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: render(map),
        key: key.to_owned(),
    }
}

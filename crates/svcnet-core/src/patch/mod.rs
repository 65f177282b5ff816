//! PATCH bodies applied as the API server does: strategic merge patch, JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

mod schema;
mod strategic;

use serde_json::Value;

pub use schema::{FieldMeta, KindSchema, MergeSchema, NoTags, Strategy, schema_for_kind};

/// Why a patch could not be applied. Messages follow upstream's
/// `mergepatch` errors where one exists.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("invalid JSON document")]
    BadJsonDoc,
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    #[error("merging lists cannot yet be specified in the patch")]
    MergeListDirective,
    #[error("cannot merge lists without merge key for type map")]
    NoMergeKeyDeclared,
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    OrderMismatch { patch: String, order: String },
    #[error("value for key {0} is not a map.")]
    NotAMap(usize),
    #[error("invalid JSON patch: {0}")]
    JsonPatchDecode(#[source] serde_json::Error),
    #[error("{0}")]
    JsonPatchApply(#[source] json_patch::PatchError),
}

impl PatchError {
    /// The HTTP status the API server answers with: 400 for a malformed
    /// patch body, 422 for a patch that is well formed but cannot apply.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadJsonDoc
            | PatchError::BadPrimitiveList
            | PatchError::BadRetainKeys
            | PatchError::BadSetElementOrder
            | PatchError::JsonPatchDecode(_) => 400,
            _ => 422,
        }
    }
}

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`).
/// `original` and `patch` must be JSON objects.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    strategic::apply(original, patch, schema)
}

/// Applies a strategic merge patch with the merge keys of `kind`; kinds
/// without a built-in schema get JSON merge patch semantics, as upstream
/// gives unstructured objects.
pub fn strategic_merge_patch_for_kind(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match schema_for_kind(kind) {
        Some(schema) => strategic_merge_patch(original, patch, &schema),
        None if original.is_object() && patch.is_object() => Ok(json_merge_patch(original, patch)),
        None => Err(PatchError::BadJsonDoc),
    }
}

/// Applies a JSON merge patch (RFC 7386, `application/merge-patch+json`).
pub fn json_merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a JSON patch (RFC 6902, `application/json-patch+json`): `ops` is
/// the array of operations; nothing is applied unless all succeed.
pub fn json_patch(original: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(PatchError::JsonPatchDecode)?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(PatchError::JsonPatchApply)?;
    Ok(doc)
}

#[cfg(test)]
mod tests;

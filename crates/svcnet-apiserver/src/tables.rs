//! Server-side Table responses (`meta.k8s.io/v1`), built on `svcnet_core::table`.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use svcnet_core::table::{self, IncludeObject, TableMeta};

use crate::query::Query;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

pub fn include(q: &Query) -> ApiResult<IncludeObject> {
    match q.get("includeObject") {
        None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(o) => Err(ApiError::bad_request(format!(
            "includeObject: Unsupported value: {o:?}"
        ))),
    }
}

pub fn now() -> i64 {
    Timestamp::now().as_second()
}

/// A Table of one object (get, and each watch event).
pub fn one(res: &Resource, obj: &Value, q: &Query) -> ApiResult<Value> {
    let meta = TableMeta {
        resource_version: obj["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        ..Default::default()
    };
    Ok(table::table(
        res.kind,
        std::slice::from_ref(obj),
        now(),
        include(q)?,
        &meta,
    ))
}

/// A Table of a list.
pub fn many(
    res: &Resource,
    objs: &[Value],
    q: &Query,
    rv: i64,
    cont: Option<&str>,
    remaining: Option<usize>,
) -> ApiResult<Value> {
    let meta = TableMeta {
        resource_version: Some(rv.to_string()),
        continue_token: cont.map(str::to_string),
        remaining_item_count: remaining.filter(|r| *r > 0).map(|r| r as i64),
    };
    Ok(table::table(res.kind, objs, now(), include(q)?, &meta))
}

/// A Table of a list from rows already made (see `svcnet_core::table::table_row`).
pub fn many_rows(
    res: &Resource,
    rows: Vec<Value>,
    rv: i64,
    cont: Option<&str>,
    remaining: Option<usize>,
) -> Value {
    let meta = TableMeta {
        resource_version: Some(rv.to_string()),
        continue_token: cont.map(str::to_string),
        remaining_item_count: remaining.filter(|r| *r > 0).map(|r| r as i64),
    };
    table::table_of_rows(res.kind, rows, &meta)
}

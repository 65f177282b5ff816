//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines from a store revision.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use svcnet_store::{RangeRequest, Revision, StoreError, WatchEvent};

use crate::filter::Filter;
use crate::handlers::Ctx;
use crate::status::{ApiError, ApiResult};
use crate::storage::{self, decode, set_rv};
use crate::tables;

/// A decoded change, before filtering.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// (object, previous object) for a put.
    Put(Value, Option<Value>),
    /// The last state of a deleted object, with the delete's revision set.
    Delete(Value),
    Progress(Revision),
}

/// Turns one change into at most one watch event for a filtered watch:
/// objects entering the selection are ADDED, leaving it DELETED (as upstream's
/// watch cache does).
pub fn event_for(f: &Filter, change: &Change) -> Option<(&'static str, Value)> {
    match change {
        Change::Put(obj, prev) => {
            let now = f.matches(obj);
            let before = prev.as_ref().is_some_and(|p| f.matches(p));
            match (prev.is_some(), now, before) {
                (false, true, _) => Some(("ADDED", obj.clone())),
                (true, true, true) => Some(("MODIFIED", obj.clone())),
                (true, true, false) => Some(("ADDED", obj.clone())),
                (true, false, true) => Some(("DELETED", obj.clone())),
                _ => None,
            }
        }
        Change::Delete(obj) => f.matches(obj).then(|| ("DELETED", obj.clone())),
        Change::Progress(_) => None,
    }
}

fn decode_event(ev: &WatchEvent) -> Option<Change> {
    Some(match ev {
        WatchEvent::Put { kv, prev } => Change::Put(decode(kv)?, prev.as_ref().and_then(decode)),
        WatchEvent::Delete { prev, revision } => {
            let mut o = decode(prev)?;
            set_rv(&mut o, *revision);
            Change::Delete(o)
        }
        WatchEvent::Progress { revision } => Change::Progress(*revision),
    })
}

/// One watch event line, serialized straight from the borrowed object (no
/// copy per watcher); fields in the order a JSON object map sorts them.
#[derive(serde::Serialize)]
struct Line<'a> {
    object: &'a Value,
    #[serde(rename = "type")]
    typ: &'a str,
}

fn line(ctx: &Ctx, typ: &str, obj: &Value) -> bytes::Bytes {
    let table;
    let object = if ctx.table && typ != "ERROR" && typ != "BOOKMARK" {
        table = tables::one(ctx.res, obj, &ctx.q);
        table.as_ref().unwrap_or(obj)
    } else {
        obj
    };
    let mut s = serde_json::to_vec(&Line { object, typ }).unwrap_or_default();
    s.push(b'\n');
    bytes::Bytes::from(s)
}

fn bookmark(ctx: &Ctx, rev: Revision, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": ctx.res.kind, "apiVersion": ctx.res.api_version(), "metadata": meta})
}

/// Serves `?watch=true`.
pub(crate) async fn serve(ctx: Ctx) -> ApiResult<Response> {
    let f = Filter::from_query(ctx.res, &ctx.q)?;
    let bookmarks = ctx.q.flag("allowWatchBookmarks");
    let timeout = match ctx.q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Upstream ends watches after a random 30-60 minutes so that load spreads.
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let permit = ctx.api.watch_permit_for(&ctx.client)?;
    let prefix = storage::prefix(ctx.res, ctx.ns.as_deref());
    let rv = ctx
        .q
        .get("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0");
    let send_initial = ctx.q.get("sendInitialEvents") == Some("true");
    let mut initial = Vec::new();
    let after: Revision = match rv {
        Some(rv) if !send_initial => rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        _ => {
            // Synthetic ADDED events for the current state, then changes after it.
            let mut start = None;
            let mut rev = None;
            loop {
                let r = ctx
                    .api
                    .store
                    .range(RangeRequest {
                        prefix: prefix.clone(),
                        start,
                        limit: 1000,
                        revision: rev,
                    })
                    .await
                    .map_err(|e| ApiError::from_store(e, ctx.res, ""))?;
                rev = Some(r.revision);
                for kv in &r.kvs {
                    if let Some(o) = decode(kv)
                        && f.matches(&o)
                    {
                        initial.push(o);
                    }
                }
                if !r.more {
                    break;
                }
                let mut next = r.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
                next.push(0);
                start = Some(next);
            }
            rev.unwrap_or(0)
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(256);
    let stream = match ctx.api.store.watch(&prefix, after, bookmarks).await {
        Ok(s) => Some(s),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let status = ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            ))
            .to_status();
            let _ = tx.try_send(line(&ctx, "ERROR", &status));
            None
        }
        Err(e) => return Err(ApiError::from_store(e, ctx.res, "")),
    };
    let mut shutdown = ctx.api.shutdown.subscribe();
    tokio::spawn(async move {
        let _permit = permit;
        for o in &initial {
            if tx.send(line(&ctx, "ADDED", o)).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks {
            let _ = tx
                .send(line(&ctx, "BOOKMARK", &bookmark(&ctx, after, true)))
                .await;
        }
        let Some(mut stream) = stream else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
                item = stream.next() => {
                    let Some(item) = item else { return };
                    let ev = match item {
                        Ok(ev) => ev,
                        Err(StoreError::Compacted { requested, compacted }) => {
                            let status = ApiError::gone(format!("too old resource version: {requested} ({compacted})")).to_status();
                            let _ = tx.send(line(&ctx, "ERROR", &status)).await;
                            return;
                        }
                        Err(e) => {
                            let status = ApiError::internal(e.to_string()).to_status();
                            let _ = tx.send(line(&ctx, "ERROR", &status)).await;
                            return;
                        }
                    };
                    let Some(change) = decode_event(&ev) else { continue };
                    let out = match &change {
                        Change::Progress(rev) if bookmarks => Some(line(&ctx, "BOOKMARK", &bookmark(&ctx, *rev, false))),
                        _ => event_for(&f, &change).map(|(t, o)| line(&ctx, t, &o)),
                    };
                    if let Some(b) = out
                        && tx.send(b).await.is_err() {
                            return;
                        }
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    }));
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Query;
    use crate::resources::find;

    fn pod(name: &str, app: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": app}}})
    }

    #[test]
    fn selection_transitions() {
        let q = Query::parse(Some("labelSelector=app%3Dweb"));
        let f = Filter::from_query(find("", "v1", "pods").unwrap(), &q).unwrap();
        let cases = [
            (Change::Put(pod("a", "web"), None), Some("ADDED")),
            (Change::Put(pod("a", "db"), None), None),
            (
                Change::Put(pod("a", "web"), Some(pod("a", "web"))),
                Some("MODIFIED"),
            ),
            (
                Change::Put(pod("a", "web"), Some(pod("a", "db"))),
                Some("ADDED"),
            ),
            (
                Change::Put(pod("a", "db"), Some(pod("a", "web"))),
                Some("DELETED"),
            ),
            (Change::Put(pod("a", "db"), Some(pod("a", "db"))), None),
            (Change::Delete(pod("a", "web")), Some("DELETED")),
            (Change::Delete(pod("a", "db")), None),
            (Change::Progress(5), None),
        ];
        for (c, want) in cases {
            assert_eq!(event_for(&f, &c).map(|(t, _)| t), want, "{c:?}");
        }
    }
}

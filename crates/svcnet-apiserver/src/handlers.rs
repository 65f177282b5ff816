//! The REST verbs: get, list, create, update, patch, delete, deletecollection, scale, binding.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use svcnet_store::{Compare, KeyValue, Op, RangeRequest, Revision, StoreError};

use crate::codec::{self, BodyType, Output};
use crate::query::{FieldValidation, Query};
use crate::request::{self, ResourcePath, Target};
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};
use crate::storage::{self, decode, encode, set_rv};
use crate::strategy::{self, Write};
use crate::{Api, apply, discovery, filter, openapi, tables, watch};

/// Largest request body accepted (as upstream: 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Entry point for every API request (after authentication).
pub async fn handle(api: Arc<Api>, req: Request<Body>) -> Response {
    match route(api, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(api: Arc<Api>, req: Request<Body>) -> ApiResult<Response> {
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .to_string();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let out = codec::output(req.headers());
    let json_ok = |v: Value| Ok(codec::respond(200, &v, out));
    match request::parse(&path) {
        None => Err(ApiError::not_found_path()),
        Some(Target::Version) => json_ok(discovery::version()),
        Some(Target::Health(_)) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response())
        }
        Some(Target::CoreVersions) if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(discovery::aggregated(true)))
        }
        Some(Target::CoreVersions) => json_ok(discovery::core_versions(&api.cfg.advertise_address)),
        Some(Target::Groups) if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(discovery::aggregated(false)))
        }
        Some(Target::Groups) => json_ok(discovery::group_list()),
        Some(Target::Group(g)) => {
            discovery::group(&g).map_or_else(|| Err(ApiError::not_found_path()), json_ok)
        }
        Some(Target::ResourceList { group, version }) => discovery::resource_list(&group, &version)
            .map_or_else(|| Err(ApiError::not_found_path()), json_ok),
        Some(Target::OpenApiV3Root) => json_ok(openapi::root()),
        Some(Target::OpenApiV3(p)) => {
            openapi::document(&p).map_or_else(|| Err(ApiError::not_found_path()), json_ok)
        }
        Some(Target::OpenApiV2) => Err(ApiError::not_found_path()),
        Some(Target::Resource(rp)) => resource(api, req, rp).await,
    }
}

fn aggregated(v: Value) -> Response {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(discovery::AGGREGATED_CT),
        )],
        body,
    )
        .into_response()
}

/// Everything a verb handler needs about its request.
pub(crate) struct Ctx {
    pub api: Arc<Api>,
    pub res: &'static Resource,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub q: Query,
    pub headers: HeaderMap,
    pub out: Output,
    pub table: bool,
    /// Who is asking (user and program), for per-client limits.
    pub client: String,
}

impl Ctx {
    fn key(&self, name: &str) -> Vec<u8> {
        storage::key(self.res, self.ns.as_deref(), name)
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    fn respond(&self, code: u16, obj: &Value) -> ApiResult<Response> {
        if self.table && obj.get("kind").and_then(Value::as_str) != Some("Status") {
            let t = tables::one(self.res, obj, &self.q)?;
            return Ok(codec::respond(code, &t, Output::Json));
        }
        Ok(codec::respond(code, obj, self.out))
    }

    fn field_manager(&self) -> String {
        if let Some(m) = self.q.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        // Upstream derives the manager from the user agent's program name.
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").to_string()
    }
}

async fn read_body(body: Body) -> ApiResult<bytes::Bytes> {
    // A declared length over the cap is refused before anything is read
    // (so a client waiting on `Expect: 100-continue` gets the 413).
    if http_body::Body::size_hint(&body).lower() > MAX_BODY as u64 {
        return Err(ApiError::too_large());
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

async fn resource(api: Arc<Api>, req: Request<Body>, rp: ResourcePath) -> ApiResult<Response> {
    let res = resources::find(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::not_found_path)?;
    if (!res.namespaced && rp.namespace.is_some())
        || (res.namespaced && rp.namespace.is_none() && rp.name.is_some())
    {
        return Err(ApiError::not_found_path());
    }
    if let Some(sub) = &rp.subresource
        && res.subresource(sub).is_none()
    {
        return Err(ApiError::not_found_path());
    }
    let method = req.method().clone();
    let q = Query::parse(req.uri().query());
    let headers = req.headers().clone();
    let user = req
        .extensions()
        .get::<crate::RequestUser>()
        .map(|u| u.0.clone())
        .unwrap_or_default();
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ctx = Ctx {
        client: format!("{user}|{ua}"),
        out: codec::output(&headers),
        table: codec::wants_table(&headers),
        api,
        res,
        ns: rp.namespace,
        name: rp.name,
        sub: rp.subresource,
        q,
        headers,
    };
    let sub = ctx.sub.clone();
    match (&method, ctx.name.is_some(), sub.as_deref()) {
        (&Method::GET, false, None) if ctx.q.flag("watch") => watch::serve(ctx).await,
        (&Method::GET, false, None) => list(ctx).await,
        (&Method::GET, true, None | Some("status")) => get(ctx).await,
        (&Method::GET, true, Some("scale")) => get_scale(ctx).await,
        (_, true, Some("log" | "exec" | "attach" | "portforward")) => {
            let api = ctx.api.clone();
            api.connect(
                ctx.res,
                ctx.ns.clone().unwrap_or_default(),
                ctx.name().to_string(),
                sub.unwrap_or_default(),
                req,
            )
            .await
        }
        (&Method::POST, false, None) => {
            let body = read_body(req.into_body()).await?;
            create(ctx, &body).await
        }
        (&Method::POST, true, Some("binding")) => {
            let body = read_body(req.into_body()).await?;
            bind(ctx, &body).await
        }
        (&Method::POST, true, Some("eviction")) => {
            let body = read_body(req.into_body()).await?;
            evict(ctx, &body).await
        }
        (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
            let body = read_body(req.into_body()).await?;
            update(ctx, &body).await
        }
        (&Method::PUT, true, Some("scale")) => {
            let body = read_body(req.into_body()).await?;
            update_scale(ctx, &body, None).await
        }
        (&Method::PATCH, true, None | Some("status")) => {
            let bt = codec::body_type(&ctx.headers)?;
            let body = read_body(req.into_body()).await?;
            patch(ctx, bt, &body).await
        }
        (&Method::PATCH, true, Some("scale")) => {
            let bt = codec::body_type(&ctx.headers)?;
            let body = read_body(req.into_body()).await?;
            update_scale(ctx, &body, Some(bt)).await
        }
        (&Method::DELETE, true, None) => {
            let body = read_body(req.into_body()).await?;
            delete(ctx, &body).await
        }
        (&Method::DELETE, false, None) => {
            let body = read_body(req.into_body()).await?;
            delete_collection(ctx, &body).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            method,
            ctx.res.qualified()
        ))),
    }
}

/// Reads one object (with its resourceVersion set).
pub(crate) async fn read(
    api: &Api,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Option<(Value, KeyValue)>> {
    let key = storage::key(res, ns, name);
    match api.store.get(&key).await {
        Ok(Some(kv)) => {
            let v = decode(&kv).ok_or_else(|| {
                ApiError::internal(format!("stored object {name} is not valid JSON"))
            })?;
            Ok(Some((v, kv)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, res, name)),
    }
}

async fn get(ctx: Ctx) -> ApiResult<Response> {
    let (obj, _) = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name())
        .await?
        .ok_or_else(|| ApiError::not_found(ctx.res, ctx.name()))?;
    ctx.respond(200, &obj)
}

// ---------------------------------------------------------------- list

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    use base64::Engine;
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    let bad =
        || ApiError::bad_request("continue key is not valid: the continue token is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.start.contains("..") || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

/// The result of a filtered, paginated list.
pub(crate) struct Listed {
    pub items: Vec<Value>,
    pub meta: ListMeta,
}

/// A list's metadata, known once its scan is done.
pub(crate) struct ListMeta {
    pub revision: Revision,
    pub cont: Option<String>,
    pub remaining: Option<usize>,
}

/// Keys read from the store per range call when a list has no limit: a
/// list of 50,000 Pods holds one page of raw values at a time, not all.
const SCAN_PAGE: usize = 500;

/// Every object of a filtered, paginated list, collected.
pub(crate) async fn list_objects(ctx: &Ctx) -> ApiResult<Listed> {
    let mut items = Vec::new();
    let meta = scan_objects(ctx, &mut |o| items.push(o)).await?;
    Ok(Listed { items, meta })
}

/// Scans a filtered, paginated list at one revision, handing each matching
/// object to `visit` as it is decoded (so callers can encode and drop it).
pub(crate) async fn scan_objects(
    ctx: &Ctx,
    visit: &mut (dyn FnMut(Value) + Send),
) -> ApiResult<ListMeta> {
    let f = filter::Filter::from_query(ctx.res, &ctx.q)?;
    let limit = ctx.q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let prefix = storage::prefix(ctx.res, ctx.ns.as_deref());
    let rv = ctx.q.get("resourceVersion").filter(|s| !s.is_empty());
    let (mut start, mut revision) = (None, None);
    if let Some(c) = ctx.q.get("continue").filter(|s| !s.is_empty()) {
        if rv.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let t = decode_continue(c)?;
        let mut s = prefix.clone();
        s.extend_from_slice(t.start.as_bytes());
        start = Some(s);
        revision = Some(t.rv);
    } else if let Some(rv) = rv {
        let n: Revision = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        match ctx.q.get("resourceVersionMatch") {
            Some("Exact") => revision = Some(n),
            None | Some("") | Some("NotOlderThan") => {
                let cur = ctx
                    .api
                    .store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::from_store(e, ctx.res, ""))?;
                if n > cur {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {n}, current: {cur}"),
                    ));
                }
            }
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: \"{o}\": supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        }
    }
    let mut count = 0usize;
    let page = limit.map(|l| l.max(1)).unwrap_or(SCAN_PAGE);
    let mut read_rev = revision;
    loop {
        let resp = ctx
            .api
            .store
            .range(RangeRequest { prefix: prefix.clone(), start: start.clone(), limit: page, revision: read_rev })
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } if ctx.q.get("continue").is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                e => ApiError::from_store(e, ctx.res, ""),
            })?;
        read_rev = Some(resp.revision);
        let mut last_key = None;
        for kv in &resp.kvs {
            last_key = Some(kv.key.clone());
            if let Some(obj) = decode(kv)
                && f.matches(&obj)
            {
                visit(obj);
                count += 1;
                if limit.is_some_and(|l| count >= l) {
                    break;
                }
            }
        }
        let rev = resp.revision;
        let full = limit.is_some_and(|l| count >= l);
        let more_in_store =
            resp.more || (full && last_key.as_ref() != resp.kvs.last().map(|k| &k.key));
        if full || !resp.more {
            let cont = match (&last_key, more_in_store && full) {
                (Some(k), true) => {
                    let rel = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
                    Some(encode_continue(rev, &format!("{rel}\u{0}")))
                }
                _ => None,
            };
            let remaining = match (&cont, f.is_empty()) {
                (Some(_), true) => {
                    // Count what is left after the last returned key.
                    let consumed = resp
                        .kvs
                        .iter()
                        .position(|kv| Some(&kv.key) == last_key.as_ref())
                        .map_or(0, |p| p + 1);
                    Some(resp.remaining.saturating_sub(consumed))
                }
                _ => None,
            };
            return Ok(ListMeta {
                revision: rev,
                cont,
                remaining,
            });
        }
        // Continue scanning after the last key of this page.
        let mut next = resp.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
        next.push(0);
        start = Some(next);
    }
}

async fn list(ctx: Ctx) -> ApiResult<Response> {
    if ctx.table {
        // Rows are made one object at a time; only the rows are held.
        let include = tables::include(&ctx.q)?;
        let now = tables::now();
        let mut rows = Vec::new();
        let m = scan_objects(&ctx, &mut |o| {
            rows.push(svcnet_core::table::table_row(
                ctx.res.kind,
                &o,
                now,
                include,
            ));
        })
        .await?;
        let t = tables::many_rows(ctx.res, rows, m.revision, m.cont.as_deref(), m.remaining);
        return Ok(codec::respond(200, &t, Output::Json));
    }
    if ctx.out != Output::Json {
        let l = list_objects(&ctx).await?;
        let items = l.items.into_iter().map(strip_type).collect();
        let mut body = list_head(&ctx, &l.meta);
        body.insert("items".into(), Value::Array(items));
        return Ok(codec::respond(200, &Value::Object(body), ctx.out));
    }
    // JSON: each item is encoded as it is read and dropped, so a list of
    // 50,000 Pods costs its encoded bytes, not 50,000 JSON trees.
    let mut items = Vec::with_capacity(64 * 1024);
    let mut first = true;
    let m = scan_objects(&ctx, &mut |o| {
        if !first {
            items.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut items, &strip_type(o));
    })
    .await?;
    let mut head = serde_json::to_vec(&Value::Object(list_head(&ctx, &m))).unwrap_or_default();
    // `{"kind":…,"metadata":{…}}` → `{"kind":…,"metadata":{…},"items":[` … `]}`
    head.pop();
    head.extend_from_slice(b",\"items\":[");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(head), Ok(items), Ok(b"]}".to_vec())];
    let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// List items carry no kind and apiVersion (the list has them).
fn strip_type(mut o: Value) -> Value {
    if let Some(m) = o.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

/// `kind`, `apiVersion` and `metadata` of a list response, in upstream's order.
fn list_head(ctx: &Ctx, m: &ListMeta) -> serde_json::Map<String, Value> {
    let mut meta = json!({"resourceVersion": m.revision.to_string()});
    if let Some(c) = &m.cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = m.remaining.filter(|r| *r > 0) {
        meta["remainingItemCount"] = json!(r);
    }
    let mut body = serde_json::Map::new();
    body.insert("kind".into(), json!(format!("{}List", ctx.res.kind)));
    body.insert("apiVersion".into(), json!(ctx.res.api_version()));
    body.insert("metadata".into(), meta);
    body
}

// ---------------------------------------------------------------- create

fn now() -> String {
    rfc3339(Timestamp::now())
}

/// RFC 3339 with second precision, as Kubernetes' metav1.Time marshals.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix() -> String {
    use rand::Rng;
    // Upstream's alphabet: no vowels (no words) and no confusable characters.
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

fn check_type(res: &Resource, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the body is not a JSON object",
            res.kind, res.version, res.kind
        )));
    }
    let av = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(av),
        Some(v) if v == av => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    Ok(())
}

fn check_namespace(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if !ctx.res.namespaced {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(());
    }
    let ns = ctx.ns.clone().unwrap_or_default();
    match storage::meta_str(obj, "namespace") {
        None | Some("") => obj["metadata"]["namespace"] = json!(ns),
        Some(n) if n == ns => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

async fn ensure_namespace(ctx: &Ctx) -> ApiResult<()> {
    let Some(ns) = ctx.ns.as_deref() else {
        return Ok(());
    };
    let nsres = resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces"))?;
    // Only the phase matters: read it without building the whole object
    // (every create in a namespace comes here).
    #[derive(serde::Deserialize)]
    struct Phase {
        status: Option<PhaseStatus>,
    }
    #[derive(serde::Deserialize)]
    struct PhaseStatus {
        phase: Option<String>,
    }
    let key = storage::key(nsres, None, ns);
    let stored = ctx
        .api
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, nsres, ns))?;
    let Some(kv) = stored else {
        return Err(ApiError::not_found(nsres, ns));
    };
    let phase = serde_json::from_slice::<Phase>(&kv.value)
        .map_err(|_| ApiError::internal(format!("stored object {ns} is not valid JSON")))?
        .status
        .and_then(|s| s.phase);
    match phase {
        Some(p) if p == "Terminating" && ctx.res.kind != "Event" => Err(ApiError::forbidden(
            ctx.res,
            "",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        _ => Ok(()),
    }
}

fn unknown_field_result(
    fv: FieldValidation,
    res: &Resource,
    unknown: &[String],
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    if unknown.is_empty() {
        return Ok(());
    }
    match fv {
        FieldValidation::Strict => {
            let list = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {list}",
                res.kind, res.version, res.kind
            )))
        }
        FieldValidation::Warn => {
            warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
            Ok(())
        }
        FieldValidation::Ignore => Ok(()),
    }
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

/// Sets the server-owned metadata of a new object.
fn init_metadata(res: &Resource, obj: &mut Value) {
    let m = &mut obj["metadata"];
    m["uid"] = json!(uuid::Uuid::new_v4().to_string());
    m["creationTimestamp"] = json!(now());
    if let Some(o) = m.as_object_mut() {
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            o.remove(f);
        }
        if strategy::tracks_generation(res) {
            o.insert("generation".into(), json!(1));
        } else {
            o.remove("generation");
        }
    }
}

async fn create(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let bt = codec::body_type(&ctx.headers)?;
    let obj = codec::decode(bt, body)?;
    let manager = ctx.field_manager();
    let (code, out, warnings) = create_object(&ctx, obj, &manager, "Update").await?;
    Ok(with_warnings(ctx.respond(code, &out)?, &warnings))
}

/// Creates `obj`; returns (201, stored object, warnings).
pub(crate) async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
    manager: &str,
    operation: &str,
) -> ApiResult<(u16, Value, Vec<String>)> {
    let fv = ctx.q.field_validation()?;
    check_type(ctx.res, &mut obj)?;
    check_namespace(ctx, &mut obj)?;
    let mut warnings = Vec::new();
    // Name: given, or generated from generateName.
    if storage::meta_str(&obj, "name").is_none_or(str::is_empty)
        && let Some(g) = storage::meta_str(&obj, "generateName").filter(|g| !g.is_empty())
    {
        let name = format!("{g}{}", random_suffix());
        obj["metadata"]["name"] = json!(name);
    }
    let name = storage::name_of(&obj).to_string();
    if name.is_empty() {
        let e = svcnet_core::field_errors::FieldError::required(
            &svcnet_core::field_errors::Path::new("metadata").child("name"),
            "name or generateName is required",
        );
        return Err(strategy::invalid(ctx.res, "", &[e]));
    }
    ensure_namespace(ctx).await?;
    init_metadata(ctx.res, &mut obj);
    strategy::prepare_create(ctx.res, &mut obj);
    let (mut obj, unknown) =
        strategy::admit(ctx.res, &obj, Write::Create, ctx.api.services.families())?;
    unknown_field_result(fv, ctx.res, &unknown, &mut warnings)?;
    apply::record_manager(&mut obj, None, manager, operation, &ctx.res.api_version());
    if ctx.q.dry_run() {
        return Ok((201, obj, warnings));
    }
    let key = storage::key(ctx.res, ctx.ns.as_deref(), &name);
    let rev = if ctx.res.kind == "Service" {
        ctx.api
            .services
            .create(&ctx.api, ctx.res, key, &mut obj)
            .await?
    } else {
        ctx.api
            .store
            .create(&key, &encode(&obj))
            .await
            .map_err(|e| ApiError::from_store(e, ctx.res, &name))?
    };
    set_rv(&mut obj, rev);
    Ok((201, obj, warnings))
}

// ---------------------------------------------------------------- update

async fn update(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let bt = codec::body_type(&ctx.headers)?;
    let mut obj = codec::decode(bt, body)?;
    check_type(ctx.res, &mut obj)?;
    let body_name = storage::name_of(&obj).to_string();
    if !body_name.is_empty() && body_name != ctx.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            ctx.name()
        )));
    }
    obj["metadata"]["name"] = json!(ctx.name());
    let manager = ctx.field_manager();
    let guard = storage::meta_str(&obj, "resourceVersion")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    match read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name()).await? {
        None if matches!(ctx.res.kind, "Lease" | "Event" | "Endpoints") && ctx.sub.is_none() => {
            let (code, out, warnings) = create_object(&ctx, obj, &manager, "Update").await?;
            Ok(with_warnings(ctx.respond(code, &out)?, &warnings))
        }
        None => Err(ApiError::not_found(ctx.res, ctx.name())),
        Some((cur, kv)) => {
            if let Some(g) = &guard
                && *g != kv.mod_revision.to_string()
            {
                return Err(ApiError::stale(ctx.res, ctx.name()));
            }
            let (out, warnings) = write_update(&ctx, obj, &cur, &kv, &manager).await?;
            Ok(with_warnings(ctx.respond(200, &out)?, &warnings))
        }
    }
}

/// Applies an update of `cur` (stored as `kv`) to `new`, guarded by kv's revision.
pub(crate) async fn write_update(
    ctx: &Ctx,
    mut new: Value,
    cur: &Value,
    kv: &KeyValue,
    manager: &str,
) -> ApiResult<(Value, Vec<String>)> {
    let fv = ctx.q.field_validation()?;
    let mut warnings = Vec::new();
    check_type(ctx.res, &mut new)?;
    check_namespace(ctx, &mut new)?;
    let status_write = ctx.sub.as_deref() == Some("status");
    // Server-owned metadata carries over.
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match cur["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    if new["metadata"].get("managedFields").is_none()
        && let Some(mf) = cur["metadata"].get("managedFields")
    {
        new["metadata"]["managedFields"] = mf.clone();
    }
    strategy::prepare_update(ctx.res, &mut new, cur, status_write);
    if ctx.sub.as_deref() == Some("finalize") {
        // Namespace finalize: only spec.finalizers may change.
        let fin = new["spec"]["finalizers"].clone();
        new = cur.clone();
        new["spec"]["finalizers"] = fin;
    }
    let (mut new, unknown) = strategy::admit(
        ctx.res,
        &new,
        if status_write {
            Write::Status { old: cur }
        } else {
            Write::Update { old: cur }
        },
        ctx.api.services.families(),
    )?;
    unknown_field_result(fv, ctx.res, &unknown, &mut warnings)?;
    if strategy::tracks_generation(ctx.res) && new.get("spec") != cur.get("spec") {
        let g = cur["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(g);
    }
    // No-op writes do not bump the resourceVersion (as upstream).
    let mut cmp_new = new.clone();
    let mut cmp_cur = cur.clone();
    for o in [&mut cmp_new, &mut cmp_cur] {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
    }
    if cmp_new == cmp_cur {
        return Ok((cur.clone(), warnings));
    }
    apply::record_manager(
        &mut new,
        Some(cur),
        manager,
        "Update",
        &ctx.res.api_version(),
    );
    if ctx.q.dry_run() {
        return Ok((new, warnings));
    }
    let name = storage::name_of(&new).to_string();
    let key = ctx.key(&name);
    // An object whose last finalizer went away while deleting is removed now.
    let deleting = new["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let finalizers_empty = new["metadata"]["finalizers"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && !(ctx.res.kind == "Namespace"
            && new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|a| !a.is_empty()));
    let pod_pending_grace = ctx.res.kind == "Pod"
        && new["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0;
    if deleting && finalizers_empty && !pod_pending_grace && ctx.res.kind != "Namespace" {
        let rev = remove(ctx, &key, &new, kv.mod_revision).await?;
        set_rv(&mut new, rev);
        return Ok((new, warnings));
    }
    let rev = if ctx.res.kind == "Service" {
        ctx.api
            .services
            .update(&ctx.api, ctx.res, key, &mut new, cur, kv.mod_revision)
            .await?
    } else {
        ctx.api
            .store
            .update(&key, &encode(&new), kv.mod_revision)
            .await
            .map_err(|e| ApiError::from_store(e, ctx.res, &name))?
    };
    set_rv(&mut new, rev);
    Ok((new, warnings))
}

// ---------------------------------------------------------------- patch

async fn patch(ctx: Ctx, bt: BodyType, body: &[u8]) -> ApiResult<Response> {
    let patch = codec::decode(bt, body)?;
    let manager = ctx.field_manager();
    if bt == BodyType::ApplyPatch && ctx.q.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    for attempt in 0..8 {
        let current = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name()).await?;
        let Some((cur, kv)) = current else {
            if bt == BodyType::ApplyPatch {
                let obj = apply::apply_create(ctx.res, &patch, &manager)?;
                let (code, out, warnings) = create_object(&ctx, obj, &manager, "Apply").await?;
                return Ok(with_warnings(ctx.respond(code, &out)?, &warnings));
            }
            return Err(ApiError::not_found(ctx.res, ctx.name()));
        };
        let new = match bt {
            BodyType::ApplyPatch => {
                apply::apply(ctx.res, &cur, &patch, &manager, ctx.q.flag("force"))?
            }
            _ => apply_patch(ctx.res, bt, &cur, &patch)?,
        };
        let guarded = patch["metadata"]["resourceVersion"].as_str().is_some();
        if let Some(g) = patch["metadata"]["resourceVersion"].as_str()
            && g != kv.mod_revision.to_string()
        {
            return Err(ApiError::stale(ctx.res, ctx.name()));
        }
        let mut new = new;
        if let Some(m) = new["metadata"].as_object_mut() {
            m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        }
        match write_update(&ctx, new, &cur, &kv, &manager).await {
            Ok((out, warnings)) => return Ok(with_warnings(ctx.respond(200, &out)?, &warnings)),
            Err(e) if e.code == 409 && e.reason == "Conflict" && !guarded && attempt < 7 => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::stale(ctx.res, ctx.name()))
}

/// Applies a JSON merge, JSON or strategic merge patch to `cur`.
pub(crate) fn apply_patch(
    res: &Resource,
    bt: BodyType,
    cur: &Value,
    patch: &Value,
) -> ApiResult<Value> {
    use svcnet_core::patch;
    let out = match bt {
        BodyType::MergePatch => Ok(patch::json_merge_patch(cur, patch)),
        BodyType::JsonPatch => patch::json_patch(cur, patch),
        BodyType::StrategicMergePatch => {
            patch::strategic_merge_patch_for_kind(res.kind, cur, patch)
        }
        _ => {
            return Err(ApiError::unsupported_media_type(
                "the body type is not a patch type",
            ));
        }
    };
    out.map_err(|e| {
        let code = e.status_code();
        ApiError::new(
            code,
            if code == 400 { "BadRequest" } else { "Invalid" },
            e.to_string(),
        )
    })
}

// ---------------------------------------------------------------- scale

fn scale_of(res: &Resource, obj: &Value) -> Value {
    let sel = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            v.sort();
            v.join(",")
        })
        .unwrap_or_default();
    let _ = res;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
    })
}

async fn get_scale(ctx: Ctx) -> ApiResult<Response> {
    let (obj, _) = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name())
        .await?
        .ok_or_else(|| ApiError::not_found(ctx.res, ctx.name()))?;
    Ok(codec::respond(200, &scale_of(ctx.res, &obj), ctx.out))
}

async fn update_scale(
    mut ctx: Ctx,
    body: &[u8],
    patch_type: Option<BodyType>,
) -> ApiResult<Response> {
    let body = codec::decode(patch_type.unwrap_or(codec::body_type(&ctx.headers)?), body)?;
    let manager = ctx.field_manager();
    ctx.sub = None;
    for _ in 0..8 {
        let (cur, kv) = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name())
            .await?
            .ok_or_else(|| ApiError::not_found(ctx.res, ctx.name()))?;
        let scale = scale_of(ctx.res, &cur);
        let new_scale = match patch_type {
            Some(bt) => apply_patch(ctx.res, bt, &scale, &body)?,
            None => body.clone(),
        };
        if let Some(g) = new_scale["metadata"]["resourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
            && g != kv.mod_revision.to_string()
        {
            return Err(ApiError::stale(ctx.res, ctx.name()));
        }
        let replicas = new_scale["spec"]["replicas"].as_i64().unwrap_or(0);
        let mut new = cur.clone();
        new["spec"]["replicas"] = json!(replicas);
        match write_update(&ctx, new, &cur, &kv, &manager).await {
            Ok((out, _)) => return Ok(codec::respond(200, &scale_of(ctx.res, &out), ctx.out)),
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::stale(ctx.res, ctx.name()))
}

// ---------------------------------------------------------------- binding / eviction

fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201, "details": details})
}

async fn bind(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let b = codec::decode(codec::body_type(&ctx.headers)?, body)?;
    let node = b["target"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(422, "Invalid", "Binding.target.name: Required value"))?;
    let mut ctx = ctx;
    ctx.sub = None;
    for _ in 0..8 {
        let (cur, kv) = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name())
            .await?
            .ok_or_else(|| ApiError::not_found(ctx.res, ctx.name()))?;
        if cur["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::conflict(
                ctx.res,
                ctx.name(),
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(n) = cur["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict(
                ctx.res,
                ctx.name(),
                &format!("pod {} is already assigned to node \"{n}\"", ctx.name()),
            ));
        }
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(node);
        let mut conds: Vec<Value> = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
        new["status"]["conditions"] = json!(conds);
        // Binding writes spec and status together, as upstream's binding REST does.
        let key = ctx.key(ctx.name());
        match ctx
            .api
            .store
            .update(&key, &encode(&new), kv.mod_revision)
            .await
        {
            Ok(_) => {
                return Ok(codec::respond(
                    201,
                    &success(json!({"name": ctx.name(), "kind": "pods"})),
                    ctx.out,
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, ctx.res, ctx.name())),
        }
    }
    Err(ApiError::stale(ctx.res, ctx.name()))
}

async fn evict(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let b = codec::decode(codec::body_type(&ctx.headers)?, body).unwrap_or(json!({}));
    let opts = b.get("deleteOptions").cloned().unwrap_or(json!({}));
    let mut ctx = ctx;
    ctx.sub = None;
    delete_one(&ctx, &opts).await?;
    Ok(codec::respond(
        201,
        &success(json!({"name": ctx.name(), "kind": "pods"})),
        ctx.out,
    ))
}

// ---------------------------------------------------------------- delete

fn delete_options(ctx: &Ctx, body: &[u8]) -> ApiResult<Value> {
    let mut opts = if body.is_empty() {
        json!({})
    } else {
        codec::decode(codec::body_type(&ctx.headers)?, body)?
    };
    if let Some(g) = ctx.q.int("gracePeriodSeconds")? {
        opts["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = ctx.q.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if ctx.q.dry_run() {
        opts["dryRun"] = json!(["All"]);
    }
    match opts["propagationPolicy"].as_str() {
        None | Some("Background" | "Foreground" | "Orphan") => Ok(opts),
        Some(p) => Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )),
    }
}

async fn delete(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_options(&ctx, body)?;
    let (code, obj) = delete_one(&ctx, &opts).await?;
    ctx.respond(code, &obj)
}

/// Removes the object now (releasing service allocations).
async fn remove(ctx: &Ctx, key: &[u8], obj: &Value, rev: Revision) -> ApiResult<Revision> {
    let name = storage::name_of(obj);
    if ctx.res.kind == "Service" {
        return ctx
            .api
            .services
            .delete(&ctx.api, ctx.res, key.to_vec(), obj, rev)
            .await;
    }
    match ctx.api.store.delete(key, Some(rev)).await {
        Ok((r, _)) => Ok(r),
        Err(e) => Err(ApiError::from_store(e, ctx.res, name)),
    }
}

/// Deletes one object per `opts`; returns (code, object).
pub(crate) async fn delete_one(ctx: &Ctx, opts: &Value) -> ApiResult<(u16, Value)> {
    let dry = opts["dryRun"].as_array().is_some_and(|a| !a.is_empty());
    for _ in 0..8 {
        let (cur, kv) = read(&ctx.api, ctx.res, ctx.ns.as_deref(), ctx.name())
            .await?
            .ok_or_else(|| ApiError::not_found(ctx.res, ctx.name()))?;
        if let Some(uid) = opts["preconditions"]["uid"].as_str() {
            let have = cur["metadata"]["uid"].as_str().unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict(
                    ctx.res,
                    ctx.name(),
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    ),
                ));
            }
        }
        if let Some(rv) = opts["preconditions"]["resourceVersion"].as_str() {
            let have = kv.mod_revision.to_string();
            if rv != have {
                return Err(ApiError::conflict(
                    ctx.res,
                    ctx.name(),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                    ),
                ));
            }
        }
        let mut new = cur.clone();
        let deleting = cur["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let mut graceful = false;
        // Pods on a node get a grace period; their node confirms with grace 0.
        if ctx.res.kind == "Pod" {
            let bound = cur["spec"]["nodeName"]
                .as_str()
                .is_some_and(|s| !s.is_empty());
            let finished = matches!(
                cur["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let grace = opts["gracePeriodSeconds"]
                .as_i64()
                .or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            if bound && !finished && grace > 0 {
                let current_grace = cur["metadata"]["deletionGracePeriodSeconds"].as_i64();
                if deleting && current_grace.is_some_and(|g| g <= grace) {
                    return Ok((200, cur));
                }
                let at = Timestamp::now() + std::time::Duration::from_secs(grace as u64);
                new["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                graceful = true;
            }
        }
        let mut finalizers: Vec<Value> = cur["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match opts["propagationPolicy"].as_str() {
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            _ => {}
        }
        let ns_pending = ctx.res.kind == "Namespace";
        if !finalizers.is_empty() || ns_pending {
            if !finalizers.is_empty() {
                new["metadata"]["finalizers"] = json!(finalizers);
            }
            if !deleting && !graceful {
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            if ns_pending {
                new["status"]["phase"] = json!("Terminating");
            }
            graceful = true;
        }
        if dry {
            return Ok((200, new));
        }
        if graceful {
            if new == cur {
                return Ok((200, cur));
            }
            let key = ctx.key(ctx.name());
            match ctx
                .api
                .store
                .update(&key, &encode(&new), kv.mod_revision)
                .await
            {
                Ok(rev) => {
                    set_rv(&mut new, rev);
                    if ctx.res.kind == "Pod"
                        && let Some(at) = new["metadata"]["deletionTimestamp"]
                            .as_str()
                            .and_then(|s| s.parse::<Timestamp>().ok())
                    {
                        ctx.api.pod_deadline(
                            at,
                            ctx.ns.clone().unwrap_or_default(),
                            ctx.name().to_string(),
                        );
                    }
                    if ns_pending {
                        ctx.api.namespace_deleted(ctx.name().to_string());
                    }
                    return Ok((200, new));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, ctx.res, ctx.name())),
            }
        }
        let key = ctx.key(ctx.name());
        match remove(ctx, &key, &cur, kv.mod_revision).await {
            Ok(_) => return Ok((200, cur)),
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::stale(ctx.res, ctx.name()))
}

async fn delete_collection(ctx: Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_options(&ctx, body)?;
    let listed = list_objects(&ctx).await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let name = storage::name_of(&obj).to_string();
        let ns = storage::meta_str(&obj, "namespace").map(str::to_string);
        let one = Ctx {
            api: ctx.api.clone(),
            res: ctx.res,
            ns: ns.or(ctx.ns.clone()),
            name: Some(name),
            sub: None,
            q: ctx.q.clone(),
            headers: ctx.headers.clone(),
            out: ctx.out,
            table: false,
            client: ctx.client.clone(),
        };
        match delete_one(&one, &opts).await {
            Ok((_, o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": format!("{}List", ctx.res.kind),
        "apiVersion": ctx.res.api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(codec::respond(200, &body, ctx.out))
}

/// Store compare helper used by service writes.
pub(crate) fn guard(key: &[u8], rev: Option<Revision>) -> Compare {
    match rev {
        Some(r) => Compare::ModRevision(key.to_vec(), r),
        None => Compare::Absent(key.to_vec()),
    }
}

/// Put op helper.
pub(crate) fn put(key: Vec<u8>, obj: &Value) -> Op {
    Op::Put(key, encode(obj))
}

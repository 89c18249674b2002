//! The HTTP API under `/v1` plus `/healthz` and `/readyz`. It turns
//! requests into engine calls and engine errors into JSON error bodies; this
//! is the one place that maps errors to HTTP statuses. Every route but the
//! health probes is guarded (see [`auth`]).

use std::sync::Arc;

mod audit;
pub mod auth;
mod baselines;
mod capture;
mod console;
mod correlations;
mod loops;
mod dead_letters;
mod metrics;
mod openapi;
mod exceptions;
mod plugins;
mod quota;
mod sinks;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use syncline_model::{json as mjson, Body as MsgBody, Message, Raw};

use crate::config::Source;
use auth::Caller;
use crate::pipeline::{Engine, Ingest, IngestError, LivePipeline, TopologyView};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::{IngestOutcome, NewMessage};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    /// The way in.
    ingest: Arc<Ingest>,
    /// What runs.
    topology: TopologyView,
    /// Traces and counts.
    store: Arc<dyn Store>,
    /// Plugin log counters.
    runtime: Arc<Runtime>,
    /// The live instruments.
    metrics: Arc<crate::metrics::Metrics>,
    /// Reloads and their history.
    reloader: Arc<crate::reload::Reloader>,
    /// Refusals kept in the audit log.
    denials: Arc<auth::Denials>,
    /// Ingest quotas' buckets.
    quotas: Arc<quota::Quotas>,
    /// The name this process holds leases under.
    holder: Arc<str>,
}

impl App {
    /// The handlers' state: the parts of `engine` they use, and `reloader`.
    pub fn new(engine: &Engine, reloader: Arc<crate::reload::Reloader>) -> App {
        App {
            ingest: engine.ingest().clone(),
            topology: engine.view(),
            store: engine.store().clone(),
            runtime: engine.runtime().clone(),
            metrics: engine.metrics().clone(),
            reloader,
            denials: Arc::default(),
            quotas: Arc::default(),
            holder: engine.holder().into(),
        }
    }
}

/// An error answer: status, machine code, message, extra fields and headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Value,
    headers: HeaderMap,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Value::Null, headers: HeaderMap::new() }
    }

    fn at_line(mut self, line: usize) -> ApiError {
        self.extra = json!({"line": line});
        self
    }
}

/// Path parameters; one that does not read (an id that is not a number) is
/// a JSON 400 `bad-path` like every other error, not a text answer.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Params(t)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-path", e.body_text())),
        }
    }
}

/// The body of a control endpoint (a filter, a reason, a comment): at most
/// 64 KiB, read within `server.body-read-timeout`; errors are JSON like
/// every other.
pub struct SmallBody(pub Bytes);

/// Largest body of a control endpoint.
const SMALL_BODY: usize = 64 << 10;

impl axum::extract::FromRequest<App> for SmallBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, app: &App) -> Result<Self, ApiError> {
        read_body(app, req.into_body(), SMALL_BODY).await.map(SmallBody)
    }
}

/// A store failure as an answer: a conflict (the record is not open any
/// more) is 409 `not-open`, anything else 503.
fn store_error(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "not-open", why),
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", other.to_string()),
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// Every error answer's body: `{"error": {"code", "message", ...}}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error: a machine code, a sentence for people, and fields some codes
/// add (`line` for a batch's bad line, `retry-after-seconds`...).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine code (`unknown-pipeline`, `quota-exceeded`, `forbidden`...).
    pub code: String,
    /// What happened and what to do, for people.
    pub message: String,
    /// Fields some codes add.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = match self.extra {
            Value::Object(extra) => extra,
            _ => serde_json::Map::new(),
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message, extra } };
        (self.status, self.headers, Json(body)).into_response()
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let message = e.to_string();
        match e {
            IngestError::UnknownTenant(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown-tenant", message),
            IngestError::UnknownPipeline { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown-pipeline", message),
            IngestError::NotHttp(_) => ApiError::new(StatusCode::CONFLICT, "not-http-ingest", message),
            IngestError::Json(j) => {
                let status = match j {
                    syncline_model::json::JsonError::UnsupportedSchemaVersion { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, j.code(), message)
            }
            IngestError::TenantMismatch { .. } => ApiError::new(StatusCode::BAD_REQUEST, "tenant-mismatch", message),
            IngestError::Store(e) if e.is_transient() => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", format!("{message}; nothing was accepted, retry later"))
            }
            IngestError::Store(crate::store::StoreError::TooLarge(_)) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message-too-large", format!("{message}; nothing was accepted")),
            IngestError::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", format!("{message}; nothing was accepted")),
        }
    }
}

/// The router: the open health probes and every guarded endpoint of
/// [`auth::ENDPOINTS`], each behind its guard.
pub fn router(app: App) -> Router {
    let routes = Routes { router: Router::new(), app: app.clone() };
    routes
        .add("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/messages", ingest_one)
        .add("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/messages:batch", ingest_batch)
        .add("GET", "/v1/messages/{id}", trace)
        .add("GET", "/v1/correlations/{id}", correlations::show)
        .add("GET", "/v1/loops", loops::list)
        .add("GET", "/v1/pipelines", pipelines)
        .add("GET", "/v1/reloads", reloads)
        .add("POST", "/v1/reload", reload)
        .add("POST", "/v1/plugins/{name}/rollback", rollback)
        .add("GET", "/v1/plugins/approvals", plugins::approvals)
        .add("POST", "/v1/plugins/{name}/approve", plugins::approve)
        .add("POST", "/v1/plugins/{name}/revoke", plugins::revoke)
        .add("GET", "/v1/tenants/{tenant}/baselines/{pipeline}", baselines::show)
        .add("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", capture::start)
        .add("GET", "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", capture::collect)
        .add("POST", "/v1/tenants/{tenant}/baselines/{pipeline}/release", baselines::release)
        .add("GET", "/v1/sinks", sinks::list)
        .add("GET", "/v1/cluster", cluster)
        .add("POST", "/v1/sinks/{name}/pause", sinks::pause)
        .add("POST", "/v1/sinks/{name}/resume", sinks::resume)
        .add("GET", "/v1/exceptions", exceptions::list)
        .add("GET", "/v1/exceptions/{id}", exceptions::show)
        .add("POST", "/v1/exceptions/{id}/{action}", exceptions::settle)
        .add("GET", "/v1/dead-letters", dead_letters::list)
        .add("POST", "/v1/dead-letters:replay", dead_letters::replay_matching)
        .add("GET", "/v1/dead-letters/{id}", dead_letters::show)
        .add("POST", "/v1/dead-letters/{id}/replay", dead_letters::replay)
        .add("POST", "/v1/dead-letters/{id}/purge", dead_letters::purge)
        .add("GET", "/v1/audit", audit::list)
        .add("GET", "/metrics", metrics::metrics)
        .router
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no-such-endpoint", "no such endpoint; see /v1/openapi.json") })
        .with_state(app)
}

/// Builds the router one guarded endpoint at a time.
struct Routes {
    router: Router<App>,
    app: App,
}

impl Routes {
    /// Routes `method path` to `handler` behind the guard of its
    /// [`auth::ENDPOINTS`] entry.
    fn add<H: Handler<T, App>, T: 'static>(self, method: &'static str, path: &'static str, handler: H) -> Routes {
        let endpoint = auth::endpoint(method, path);
        let filter = if method == "POST" { MethodFilter::POST } else { MethodFilter::GET };
        let guard = axum::middleware::from_fn_with_state((self.app.clone(), endpoint), auth::guard);
        Routes { router: self.router.route(path, on(filter, handler).route_layer(guard)), app: self.app }
    }
}

async fn readyz(State(app): State<App>) -> Response {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.counts()).await {
        Ok(Ok(counts)) => Json(json!({"status": "ready", "store": counts})).into_response(),
        Ok(Err(e)) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", e.to_string()).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", e.to_string()).into_response(),
    }
}

/// Most of an oversized body read and dropped so its sender gets the 413
/// instead of a connection reset mid-send; past this the connection is cut.
const DRAIN: usize = 16 << 20;

/// What a body turned out to be.
enum Read {
    Whole(Bytes),
    /// Larger than the limit (the rest was drained or cut).
    TooLarge,
}

/// Reads `body` up to `limit` bytes; past that, drains up to [`DRAIN`] more.
async fn read_limited(body: Body, limit: usize) -> Result<Read, axum::Error> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        seen += data.len();
        if seen > limit {
            if seen > limit + DRAIN {
                return Ok(Read::TooLarge);
            }
            buf.clear();
            continue;
        }
        buf.extend_from_slice(&data);
    }
    Ok(if seen > limit { Read::TooLarge } else { Read::Whole(buf.freeze()) })
}

/// The request body, within `limit` bytes and `server.body-read-timeout`
/// (a client trickling its body is cut off).
async fn read_body(app: &App, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let server = app.topology.current().config.server.clone();
    match tokio::time::timeout(server.body_read_timeout.0, read_limited(body, limit)).await {
        Ok(Ok(Read::Whole(bytes))) => Ok(bytes),
        Ok(Ok(Read::TooLarge)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body is larger than the limit of {limit} bytes (server.max-body, or the tenant's or token's ingest max-body)"),
        )),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-body", format!("the request body could not be read: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-read-timeout",
            format!("the request body did not arrive within {:?} (server.body-read-timeout); nothing was accepted", server.body_read_timeout.0),
        )),
    }
}

fn http_pipeline(app: &App, tenant: &str, pipeline: &str) -> Result<Arc<LivePipeline>, ApiError> {
    let p = app.ingest.pipeline(tenant, pipeline)?;
    if !matches!(p.cfg.source, Source::Http) {
        return Err(IngestError::NotHttp(pipeline.to_string()).into());
    }
    Ok(p)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub(crate) struct IngestQuery {
    /// Force the body to be taken as a raw payload.
    #[serde(default)]
    raw: bool,
}

/// Whether the body is a canonical message: JSON by its media type (which
/// is case-insensitive, parameters aside), unless `?raw=true` says otherwise.
fn is_canonical(headers: &HeaderMap, q: &IngestQuery) -> bool {
    if q.raw {
        return false;
    }
    match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(ct) => {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct.eq_ignore_ascii_case("application/json") || ct.eq_ignore_ascii_case("application/vnd.syncline.message+json")
        }
    }
}

/// The correlation a caller sends with its messages: `X-Correlation-Id`,
/// else the trace id of a W3C `traceparent`; a message's own envelope
/// `correlation-id` wins over both.
///
/// # Errors
///
/// 400 `bad-correlation-id` for an id of control characters or over 128
/// characters, or a `traceparent` that does not read.
fn correlation_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-correlation-id", m);
    if let Some(v) = headers.get("x-correlation-id") {
        let text = v.to_str().map_err(|_| bad("X-Correlation-Id is not plain text".into()))?.trim();
        if text.is_empty() || text.len() > 128 || text.chars().any(char::is_control) {
            return Err(bad("X-Correlation-Id must be 1 to 128 printable characters".into()));
        }
        return Ok(Some(text.to_string()));
    }
    let Some(v) = headers.get("traceparent") else { return Ok(None) };
    // version-traceid-parentid-flags: 00-<32 hex>-<16 hex>-<2 hex>, trace id not all zeros.
    let text = v.to_str().unwrap_or("");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    match parts.as_slice() {
        [version, trace, parent, flags] if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2) && trace.bytes().any(|b| b != b'0') => {
            Ok(Some(trace.to_string()))
        }
        _ => Err(bad(format!("traceparent `{}` is not `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`", text.chars().take(80).collect::<String>()))),
    }
}

async fn accept(app: &App, p: &Arc<LivePipeline>, messages: Vec<NewMessage>) -> Result<Vec<IngestOutcome>, ApiError> {
    app.ingest.accept_async(p, messages).await.map_err(Into::into)
}

/// The tenant's check and quotas before an ingest reads its body: the
/// caller's tenant, one request from the buckets, the body limit.
fn admit_ingest<'a>(app: &App, topology: &'a crate::pipeline::Topology, caller: &'a Caller, tenant: &str) -> Result<quota::Applicable<'a>, ApiError> {
    caller.tenant(tenant)?;
    let applicable = quota::Applicable::new(tenant, topology.config.tenant_ingest.get(tenant), caller);
    app.quotas.request(&applicable)?;
    Ok(applicable)
}

async fn ingest_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params((tenant, pipeline)): Params<(String, String)>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let topology = app.topology.current();
    let applicable = admit_ingest(&app, &topology, &caller, &tenant)?;
    let p = &http_pipeline(&app, &tenant, &pipeline)?;
    let bytes = read_body(&app, body, applicable.max_body(topology.config.server.max_body.0)).await?;
    let msg = if is_canonical(&headers, &q) {
        let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed-message", "the body is not UTF-8 text"))?;
        mjson::from_str(text).map_err(IngestError::from)?
    } else {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
        Message::new(MsgBody::Raw(Raw { content_type: content_type.to_string(), data: bytes.to_vec() }))
    };
    let mut msg = msg;
    if msg.correlation_id.is_empty() {
        msg.correlation_id = correlation_header(&headers)?.unwrap_or_default();
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let prepared = app.ingest.prepare(p, msg, "http", key)?;
    app.quotas.messages(&applicable, 1)?;
    let outcome = accept(&app, p, vec![prepared]).await?.pop().expect("one outcome per message");
    Ok(match outcome {
        IngestOutcome::Accepted { id } => (StatusCode::ACCEPTED, Json(json!({"id": id, "status": "accepted"}))).into_response(),
        IngestOutcome::Duplicate { id } => (StatusCode::OK, Json(json!({"id": id, "status": "duplicate"}))).into_response(),
    })
}

async fn ingest_batch(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params((tenant, pipeline)): Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let topology = app.topology.current();
    let applicable = admit_ingest(&app, &topology, &caller, &tenant)?;
    let p = &http_pipeline(&app, &tenant, &pipeline)?;
    let bytes = read_body(&app, body, applicable.max_body(topology.config.server.max_body.0)).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed-message", "the body is not UTF-8 text"))?;
    let mut prepared = Vec::new();
    let correlation = correlation_header(&headers)?;
    for (line, msg) in mjson::from_ndjson(text) {
        let mut msg = msg.map_err(|e| ApiError::from(IngestError::from(e)).at_line(line))?;
        if msg.correlation_id.is_empty() {
            msg.correlation_id = correlation.clone().unwrap_or_default();
        }
        prepared.push(app.ingest.prepare(p, msg, "http", None).map_err(|e| ApiError::from(e).at_line(line))?);
    }
    if prepared.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty-batch", "the batch has no messages (one JSON message per line)"));
    }
    applicable.batch(prepared.len())?;
    app.quotas.messages(&applicable, prepared.len())?;
    let outcomes = accept(&app, p, prepared).await?;
    let accepted = outcomes.iter().filter(|o| matches!(o, IngestOutcome::Accepted { .. })).count();
    let duplicates = outcomes.len() - accepted;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": accepted, "duplicates": duplicates, "results": outcomes}))).into_response())
}

async fn trace(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<String>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || store.trace(&lookup))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", e.to_string()))?;
    match found {
        // Another tenant's message reads as no message at all.
        Some(t) if t.tenant().is_some_and(|tenant| caller.sees(tenant)) => Ok(Json(t).into_response()),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-message", format!("no message `{id}`"))),
    }
}

async fn reloads(State(app): State<App>) -> Json<Value> {
    Json(json!({"reloads": app.reloader.history()}))
}

async fn reload(State(app): State<App>, Extension(caller): Extension<Caller>) -> Response {
    let r = app.reloader.clone();
    match tokio::task::spawn_blocking(move || r.reload_everywhere("api", &caller.actor)).await {
        Ok(record) => {
            let status = if record.outcome == "rejected" { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            (status, Json(json!(record))).into_response()
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response(),
    }
}

async fn rollback(State(app): State<App>, Extension(caller): Extension<Caller>, Params(name): Params<String>) -> Response {
    let r = app.reloader.clone();
    match tokio::task::spawn_blocking(move || r.rollback(&name, &caller.actor)).await {
        Ok(Ok(record)) => {
            let status = if record.outcome == "rejected" { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            (status, Json(json!(record))).into_response()
        }
        Ok(Err(why)) => ApiError::new(StatusCode::CONFLICT, "no-rollback", why).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response(),
    }
}

/// `GET /v1/cluster`: the processes sharing the store and the queue slots
/// each holds (on the embedded store, this process alone holds them all).
async fn cluster(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.store.clone();
    let found = tokio::task::spawn_blocking(move || store.cluster())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", e.to_string()))?;
    let this = app.holder.to_string();
    Ok(Json(match found {
        Some(processes) => json!({"store": "nats", "this": this, "processes": processes}),
        None => json!({"store": "sqlite", "this": this, "processes": [{"holder": this, "holds": "every queue"}]}),
    }))
}

async fn pipelines(State(app): State<App>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let e = app.topology.current();
    let plugin = |i: &crate::runtime::PluginInstance| json!({"name": i.plugin().name, "digest": i.plugin().digest, "world": i.plugin().world.as_str()});
    let pipelines: Vec<Value> = e
        .pipelines
        .values()
        .filter(|p| caller.sees(p.cfg.tenant.as_str()))
        .map(|p| {
            json!({
                "tenant": p.cfg.tenant.as_str(),
                "id": p.cfg.id.as_str(),
                "source": p.source.as_ref().map(|s| plugin(&s.load())).unwrap_or(json!("http")),
                "tier": p.cfg.tier.as_str(),
                "stages": p.stages.iter().map(|s| {
                    let mut v = plugin(&s.instance.load());
                    v["breaker"] = json!(s.breaker());
                    v
                }).collect::<Vec<_>>(),
                "routes": p.cfg.routes.iter().map(|r| json!({"when": r.when.as_ref().map(|c| format!("{c:?}")), "to": r.to.iter().map(|s| s.as_str()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Sinks are shared by tenants: only callers for every tenant see them here.
    let sinks: Vec<Value> = match caller.scope() {
        crate::config::TenantScope::All => e.sinks.values().map(|s| json!({"name": s.cfg.name.as_str(), "plugin": plugin(&s.instance.load())})).collect(),
        crate::config::TenantScope::Only(_) => Vec::new(),
    };
    Json(json!({"pipelines": pipelines, "sinks": sinks}))
}

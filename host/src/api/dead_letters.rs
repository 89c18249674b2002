//! The dead-letter endpoints: list with filters, show one with its message,
//! replay one or every one a filter matches, purge one with a reason. Each
//! replay and purge is an audit event; a replay wakes the workers that take
//! the work back up.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App, Params, SmallBody};
use crate::config::Span;
use crate::store::records::{AuditEvent, DeadLetterFilter, Replayed};
use crate::store::StoreError;

/// A page of the list: at most this many.
const PAGE: usize = 500;

/// The list's query: the filter's fields, `older-than` as a duration, paging.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListQuery {
    /// Tenant.
    tenant: Option<String>,
    /// Pipeline.
    pipeline: Option<String>,
    /// Where it died, by prefix: `sink`, `sink erp`, `stage 2`.
    place: Option<String>,
    /// Text its reason contains (`HTTP 422`, `trapped`, `timed out`).
    reason: Option<String>,
    /// `open` (default), `replayed`, `purged` or `all`.
    state: Option<String>,
    /// Died at least this long ago (`15m`, `2h`, `7d`).
    older_than: Option<String>,
    /// Dead letters with numbers above this one.
    after: Option<i64>,
    /// At most this many (up to 1000).
    limit: Option<usize>,
}

impl ListQuery {
    fn filter(&self, caller: &Caller) -> Result<DeadLetterFilter, ApiError> {
        let before = match &self.older_than {
            Some(text) => {
                let span = Span::try_from(text.clone()).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("older-than: {e}")))?;
                Some(crate::store::now_ms() - span.0.as_millis() as i64)
            }
            None => None,
        };
        let filter = DeadLetterFilter {
            tenant: self.tenant.clone(),
            scope: caller.limit(),
            pipeline: self.pipeline.clone(),
            place: self.place.clone(),
            reason: self.reason.clone(),
            before,
            state: self.state.clone(),
        };
        check_state(&filter)?;
        Ok(filter)
    }
}

fn check_state(filter: &DeadLetterFilter) -> Result<(), ApiError> {
    match filter.state() {
        "open" | "replayed" | "purged" | "all" => Ok(()),
        other => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("state `{other}`: write open, replayed, purged or all"))),
    }
}

fn unknown(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown-dead-letter", format!("no dead letter {id}"))
}

/// `GET /v1/dead-letters`: open dead letters (or those of `state`), oldest first.
pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))?;
    let filter = query.filter(&caller)?;
    let (after, limit) = (query.after.unwrap_or(0), query.limit.unwrap_or(100).clamp(1, PAGE));
    let store = app.store.clone();
    let rows = blocking(move || store.dead_letters(&filter, after, limit).map_err(store_error)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|d| d.id)).flatten();
    Ok(Json(json!({"dead-letters": rows, "next": next})).into_response())
}

/// `GET /v1/dead-letters/{id}`: one dead letter and the message as it died.
pub async fn show(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<i64>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let (record, message) = blocking(move || store.dead_letter(id).map_err(store_error)).await?.filter(|(d, _)| caller.sees(&d.tenant)).ok_or_else(|| unknown(id))?;
    let mut body = serde_json::to_value(record).expect("a record serializes");
    body["message"] = message;
    Ok(Json(body).into_response())
}

/// Whether dead letter `id` is one `caller` may see (another tenant's
/// reads as none at all).
fn visible(app: &App, caller: &Caller, id: i64) -> Result<Option<String>, ApiError> {
    let found = app.store.dead_letter(id).map_err(store_error)?;
    Ok(found.map(|(d, _)| d.tenant).filter(|t| caller.sees(t)))
}

/// Replays dead letter `id` of `tenant`, audits it and wakes whoever takes the work.
fn replay_one(app: &App, caller: &Caller, tenant: &str, id: i64) -> Result<Option<Replayed>, StoreError> {
    let Some(replayed) = app.store.replay_dead_letter(id)? else { return Ok(None) };
    if let Err(e) = app.store.audit(&caller.entry(Some(tenant), AuditEvent::DeadLetterReplayed { id, replayed: replayed.clone() })) {
        tracing::warn!(id, error = %e, "a dead-letter replay could not be audited");
    }
    match &replayed {
        Replayed::Delivery { sink, .. } => app.topology.notify_sink(sink),
        Replayed::Message { tenant, pipeline, .. } => app.topology.notify_pipeline(tenant, pipeline),
    }
    tracing::info!(id, ?replayed, "dead letter replayed");
    Ok(Some(replayed))
}

/// `POST /v1/dead-letters/{id}/replay`.
pub async fn replay(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<i64>) -> Result<Response, ApiError> {
    let replayed = blocking(move || {
        let Some(tenant) = visible(&app, &caller, id)? else { return Ok(None) };
        replay_one(&app, &caller, &tenant, id).map_err(store_error)
    })
    .await?
    .ok_or_else(|| unknown(id))?;
    Ok(Json(json!({"id": id, "replayed": replayed})).into_response())
}

/// `POST /v1/dead-letters:replay` with a filter (`{}`: every open one):
/// replays each open dead letter it matches.
pub async fn replay_matching(State(app): State<App>, Extension(caller): Extension<Caller>, SmallBody(body): SmallBody) -> Result<Response, ApiError> {
    let mut filter: DeadLetterFilter = if body.iter().all(u8::is_ascii_whitespace) {
        DeadLetterFilter::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-filter", format!("the filter does not read: {e}")))?
    };
    filter.scope = caller.limit();
    if !matches!(filter.state(), "open") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-filter", "only open dead letters can be replayed"));
    }
    let out = blocking(move || {
        let (mut replayed, mut skipped, mut after) = (Vec::new(), Vec::new(), 0);
        loop {
            let page = app.store.dead_letters(&filter, after, PAGE).map_err(store_error)?;
            for d in &page {
                match replay_one(&app, &caller, &d.tenant, d.id) {
                    Ok(Some(r)) => replayed.push(json!({"id": d.id, "replayed": r})),
                    // Already replayed along with another dead letter of its message.
                    Ok(None) | Err(StoreError::Conflict(_)) => skipped.push(d.id),
                    Err(e) => return Err(store_error(e)),
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.id,
                _ => break,
            }
        }
        Ok(json!({"replayed": replayed, "skipped": skipped}))
    })
    .await?;
    Ok(Json(out).into_response())
}

/// The purge request.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Why (kept with the dead letter and in the audit log).
    reason: String,
}

/// `POST /v1/dead-letters/{id}/purge` with `{"reason": "..."}`.
pub async fn purge(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<i64>, SmallBody(body): SmallBody) -> Result<Response, ApiError> {
    let request: PurgeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("a purge needs {{\"reason\": \"...\"}}: {e}")))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "a purge needs a reason"));
    }
    let record = blocking(move || {
        visible(&app, &caller, id)?.ok_or_else(|| unknown(id))?;
        let store = &app.store;
        let record = store.purge_dead_letter(id, &request.reason).map_err(store_error)?.ok_or_else(|| unknown(id))?;
        let event = AuditEvent::DeadLetterPurged { id, message_id: record.message_id.clone(), reason: request.reason };
        if let Err(e) = store.audit(&caller.entry(Some(&record.tenant), event)) {
            tracing::warn!(id, error = %e, "a dead-letter purge could not be audited");
        }
        Ok(record)
    })
    .await?;
    Ok(Json(record).into_response())
}

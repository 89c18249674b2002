//! The exception-queue endpoints, for the business that owns each queue:
//! list with age and owner, show one with its message, resolve with a
//! comment, retry after a fix (the message runs again through the current
//! plugins), discard with a reason. Each settlement is an audit event.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App, Params, SmallBody};
use crate::config::Span;
use crate::store::records::{AuditEvent, ExceptionFilter, ExceptionRecord, Settle};

/// The list's query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListQuery {
    /// Exception queue.
    queue: Option<String>,
    /// Tenant.
    tenant: Option<String>,
    /// Pipeline.
    pipeline: Option<String>,
    /// `open` (default), `resolved`, `discarded`, `retried` or `all`.
    state: Option<String>,
    /// Parked at least this long ago (`15m`, `2h`, `7d`).
    older_than: Option<String>,
    /// Exceptions with numbers above this one.
    after: Option<i64>,
    /// At most this many (up to 1000).
    limit: Option<usize>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
}

/// An exception with its age and its queue's owner and SLA.
fn described(app: &App, e: &ExceptionRecord, now: i64) -> Value {
    let mut v = serde_json::to_value(e).expect("a record serializes");
    v["age-ms"] = json!(now - e.at);
    let topology = app.topology.current();
    if let Some(q) = topology.config.exception_queues.iter().find(|(n, _)| n.as_str() == e.queue).map(|(_, q)| q) {
        v["owner"] = json!(q.owner);
        v["contact"] = json!(q.contact);
        v["sla-ms"] = json!(q.sla.map(|s| s.as_millis() as i64));
    }
    v
}

/// `GET /v1/exceptions`: open exceptions (or those of `state`), oldest first.
pub async fn list(State(app): State<App>, Extension(caller): Extension<Caller>, query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))?;
    let now = crate::store::now_ms();
    let before = match &q.older_than {
        Some(t) => Some(now - Span::try_from(t.clone()).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("older-than: {e}")))?.0.as_millis() as i64),
        None => None,
    };
    let filter = ExceptionFilter { queue: q.queue, tenant: q.tenant, scope: caller.limit(), pipeline: q.pipeline, before, state: q.state };
    if !matches!(filter.state(), "open" | "resolved" | "retried" | "discarded" | "all") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("state `{}`: write open, resolved, retried, discarded or all", filter.state())));
    }
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 500));
    let store = app.store.clone();
    let rows = blocking(move || store.exceptions(&filter, after, limit).map_err(store_error)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|e| e.id)).flatten();
    let rows: Vec<Value> = rows.iter().map(|e| described(&app, e, now)).collect();
    Ok(Json(json!({"exceptions": rows, "next": next})).into_response())
}

fn unknown(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown-exception", format!("no exception {id}"))
}

/// `GET /v1/exceptions/{id}`: one exception and the parked message.
pub async fn show(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<i64>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let (record, message) = blocking(move || store.exception(id).map_err(store_error))
        .await?
        .filter(|(e, _)| caller.sees(&e.tenant))
        .ok_or_else(|| unknown(id))?;
    let mut body = described(&app, &record, crate::store::now_ms());
    body["message"] = message;
    Ok(Json(body).into_response())
}

/// What a settlement says.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct SettleRequest {
    /// What was done (`resolve` needs it; `retry` may have it).
    #[serde(default)]
    comment: Option<String>,
    /// Why it is dropped (`discard` needs it).
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/exceptions/{id}/{action}` with `{"comment": ...}` (resolve,
/// retry) or `{"reason": ...}` (discard).
pub async fn settle(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params((id, action)): Params<(i64, String)>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let request: SettleRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("the body does not read: {e}")))?;
    let given = |text: Option<String>| text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let how = match action.as_str() {
        "resolve" => Settle::Resolve { comment: given(request.comment).ok_or_else(|| bad("a resolve needs {\"comment\": \"...\"}"))? },
        "retry" => Settle::Retry { comment: given(request.comment).unwrap_or_else(|| "retried".into()) },
        "discard" => Settle::Discard { reason: given(request.reason).ok_or_else(|| bad("a discard needs {\"reason\": \"...\"}"))? },
        other => return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-action", format!("`{other}`: resolve, retry or discard"))),
    };
    let store = app.store.clone();
    let settled = how.clone();
    let record = blocking(move || {
        // Another tenant's exception reads as none at all.
        store.exception(id).map_err(store_error)?.filter(|(e, _)| caller.sees(&e.tenant)).ok_or_else(|| unknown(id))?;
        let record = store.settle_exception(id, &settled).map_err(store_error)?.ok_or_else(|| unknown(id))?;
        let event = AuditEvent::ExceptionSettled { id, queue: record.queue.clone(), settle: settled };
        if let Err(e) = store.audit(&caller.entry(Some(&record.tenant), event)) {
            tracing::warn!(id, error = %e, "an exception's settlement could not be audited");
        }
        Ok(record)
    })
    .await?;
    if let Settle::Retry { .. } = how {
        app.topology.notify_pipeline(&record.tenant, &record.pipeline);
    }
    tracing::info!(id, queue = %record.queue, state = %record.state, "exception settled");
    Ok(Json(described(&app, &record, crate::store::now_ms())).into_response())
}

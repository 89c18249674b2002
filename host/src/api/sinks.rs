//! The sink endpoints: each sink's queue (depth, oldest), pause, maintenance
//! window and circuit breaker; pause and resume. A pause is kept in the
//! store (it outlasts reloads and restarts) and audited, and so is a resume.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{ApiError, App, Params, SmallBody};
use crate::pipeline::LiveSink;
use crate::store::now_ms;
use crate::store::records::{AuditEvent, SinkPause};

fn internal(e: impl ToString) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn live_sink(app: &App, name: &str) -> Result<std::sync::Arc<LiveSink>, ApiError> {
    let topology = app.topology.current();
    topology.sinks.get(name).cloned().ok_or_else(|| {
        let names: Vec<&str> = topology.sinks.keys().map(String::as_str).collect();
        let help = crate::config::suggestion("sink", name, names.iter().copied());
        ApiError::new(StatusCode::NOT_FOUND, "unknown-sink", format!("no sink `{name}`; {help}"))
    })
}

/// `GET /v1/sinks`: every sink with its queue and control.
pub async fn list(State(app): State<App>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let backlog = tokio::task::spawn_blocking(move || store.backlog())
        .await
        .map_err(internal)?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", e.to_string()))?;
    let now = now_ms();
    let sinks: Vec<_> = app
        .topology
        .current()
        .sinks
        .values()
        .map(|s| {
            let name = s.cfg.name.as_str();
            let pending = backlog.deliveries.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
            let oldest = backlog.oldest_delivery.iter().find(|(n, _)| n == name).map(|(_, at)| now - at);
            let lanes: serde_json::Map<String, serde_json::Value> = backlog
                .lanes
                .iter()
                .filter(|(n, ..)| n == name)
                .map(|(_, tier, count, at)| (tier.as_str().to_string(), json!({"pending": count, "oldest-pending-ms": now - at})))
                .collect();
            let plugin = s.instance.load();
            json!({
                "name": name,
                "plugin": plugin.plugin().name, "digest": plugin.plugin().digest,
                "workers": s.cfg.workers,
                "pending": pending, "oldest-pending-ms": oldest, "tiers": lanes,
                "control": s.control.view(now),
            })
        })
        .collect();
    Ok(Json(json!({"sinks": sinks})).into_response())
}

/// The pause request.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why (shown with the sink and kept in the audit log).
    reason: String,
}

/// `POST /v1/sinks/{name}/pause` with `{"reason": "..."}`: the sink's queue
/// holds (messages keep queueing with their times) until resumed.
pub async fn pause(State(app): State<App>, Extension(caller): Extension<Caller>, Params(name): Params<String>, SmallBody(body): SmallBody) -> Result<Response, ApiError> {
    let request: PauseRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("a pause needs {{\"reason\": \"...\"}}: {e}")))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", "a pause needs a reason"));
    }
    let sink = live_sink(&app, &name)?;
    let pause = SinkPause { reason: request.reason, at: now_ms() };
    let store = app.store.clone();
    let kept = pause.clone();
    tokio::task::spawn_blocking(move || {
        store.set_sink_pause(&name, Some(&kept))?;
        store.audit(&caller.entry(None, AuditEvent::SinkPaused { sink: name, reason: kept.reason }))
    })
    .await
    .map_err(internal)?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", format!("{e}; the sink was not paused")))?;
    sink.control.set_pause(Some(pause.clone()));
    tracing::info!(sink = %sink.cfg.name, reason = %pause.reason, "sink paused");
    Ok(Json(json!({"sink": sink.cfg.name.as_str(), "paused": pause})).into_response())
}

/// `POST /v1/sinks/{name}/resume`: the queue leaves in order.
pub async fn resume(State(app): State<App>, Extension(caller): Extension<Caller>, Params(name): Params<String>) -> Result<Response, ApiError> {
    let sink = live_sink(&app, &name)?;
    if sink.control.paused().is_none() {
        return Ok(Json(json!({"sink": sink.cfg.name.as_str(), "paused": null})).into_response());
    }
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        store.set_sink_pause(&name, None)?;
        store.audit(&caller.entry(None, AuditEvent::SinkResumed { sink: name }))
    })
    .await
    .map_err(internal)?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", format!("{e}; the sink was not resumed")))?;
    sink.control.set_pause(None);
    sink.signal.notify();
    tracing::info!(sink = %sink.cfg.name, "sink resumed");
    Ok(Json(json!({"sink": sink.cfg.name.as_str(), "paused": null})).into_response())
}

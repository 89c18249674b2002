//! The planning-baseline endpoints: the baseline a planning pipeline keeps
//! (filtered by kind, item, location) and its release, by hand, to an
//! execution pipeline that falls back on it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App, Params, SmallBody};
use crate::pipeline::fallback;

/// The baseline query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineQuery {
    /// Message kind.
    kind: Option<String>,
    /// Item id.
    item: Option<String>,
    /// Location id.
    location: Option<String>,
}

/// `GET /v1/tenants/{tenant}/baselines/{pipeline}`.
pub async fn show(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params((tenant, pipeline)): Params<(String, String)>,
    query: Result<Query<BaselineQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.tenant(&tenant)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))?;
    let live = app.ingest.pipeline(&tenant, &pipeline)?;
    let Some(policy) = live.cfg.baseline.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no-baseline", format!("pipeline `{pipeline}` keeps no baseline (add `baseline = {{ freshness = \"6h\" }}`)")));
    };
    let store = app.store.clone();
    let (t, p) = (tenant.clone(), pipeline.clone());
    let (records, updated) = blocking(move || Ok((store.baselines(&t, &p).map_err(store_error)?, store.baseline_updated(&t, &p).map_err(store_error)?))).await?;
    let matches = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let records: Vec<_> = records.into_iter().filter(|r| matches(&q.kind, &r.kind) && matches(&q.item, &r.item) && matches(&q.location, &r.location)).collect();
    let now = crate::store::now_ms();
    let stale = updated.is_some_and(|at| now - at > policy.freshness.as_millis() as i64);
    Ok(Json(json!({
        "tenant": tenant, "pipeline": pipeline,
        "freshness-ms": policy.freshness.as_millis() as i64,
        "last-approved-at": updated, "stale": stale,
        "records": records,
    }))
    .into_response())
}

/// The release request.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The execution pipeline (of the same tenant) to release the baseline to.
    to: String,
}

/// `POST /v1/tenants/{tenant}/baselines/{pipeline}/release` with
/// `{"to": "<execution pipeline>"}`: releases the whole baseline there now.
pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params((tenant, pipeline)): Params<(String, String)>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    caller.tenant(&tenant)?;
    let request: ReleaseRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("a release needs {{\"to\": \"PIPELINE\"}}: {e}")))?;
    let from = app.ingest.pipeline(&tenant, &pipeline)?;
    let to = app.ingest.pipeline(&tenant, &request.to)?;
    if !to.cfg.fallback.as_ref().is_some_and(|f| f.from == from.cfg.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-a-fallback",
            format!("pipeline `{}` does not fall back on `{pipeline}` (add `fallback = {{ from = \"{pipeline}\" }}` to it)", request.to),
        ));
    }
    let (store, ingest) = (app.store.clone(), app.ingest.clone());
    let (t, p) = (tenant.clone(), pipeline.clone());
    let released = blocking(move || {
        let records = store.baselines(&t, &p).map_err(store_error)?;
        let episode = store.baseline_updated(&t, &p).map_err(store_error)?.unwrap_or(0);
        let n = fallback::release(&ingest, &p, &records, &to, episode).map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "release-failed", e))?;
        let event = crate::store::records::AuditEvent::BaselineReleased { tenant: t.clone(), pipeline: p, to: to.cfg.id.to_string(), records: n };
        if let Err(e) = store.audit(&caller.entry(Some(&t), event)) {
            tracing::warn!(error = %e, "a baseline release could not be audited");
        }
        Ok(n)
    })
    .await?;
    Ok(Json(json!({"released": released, "to": request.to})).into_response())
}

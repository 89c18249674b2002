//! `GET /v1/correlations/{id}`: every message of a flow — those sent with
//! that correlation id (`X-Correlation-Id`, `traceparent` or the envelope)
//! and the one whose own id it is — with their traces and one timeline.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App, Params};
use crate::store::timeline::timeline;

/// Most messages one flow lists.
const MOST: usize = 500;

/// `GET /v1/correlations/{id}`.
pub async fn show(State(app): State<App>, Extension(caller): Extension<Caller>, Params(id): Params<String>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let (scope, wanted) = (caller.limit(), id.clone());
    let traces = blocking(move || {
        let ids = store.correlated(&wanted, &scope, MOST).map_err(store_error)?;
        let mut traces = Vec::with_capacity(ids.len());
        for m in ids {
            traces.extend(store.trace(&m).map_err(store_error)?);
        }
        Ok(traces)
    })
    .await?;
    if traces.is_empty() {
        // Another tenant's flow reads as no flow at all.
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-correlation", format!("no message with correlation `{id}`")));
    }
    let events = timeline(&traces);
    Ok(Json(json!({"correlation": id, "truncated": traces.len() == MOST, "timeline": events, "messages": traces})).into_response())
}

//! `GET /v1/loops`: delivered orders and the execution statuses they wait
//! for (`pipeline::loops`), cut to the caller's tenants.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App};
use crate::store::records::LoopFilter;

/// The query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LoopQuery {
    /// `open`, `overdue`, `closed`; all when not given.
    state: Option<String>,
    /// Loops with numbers above this one.
    after: Option<i64>,
    /// At most this many (up to 1000).
    limit: Option<usize>,
}

/// `GET /v1/loops`.
pub async fn list(State(app): State<App>, Extension(caller): Extension<Caller>, query: Result<Query<LoopQuery>, axum::extract::rejection::QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))?;
    if let Some(s) = q.state.as_deref().filter(|s| !matches!(*s, "open" | "overdue" | "closed")) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("state `{s}`: write open, overdue or closed")));
    }
    let filter = LoopFilter { state: q.state, scope: caller.limit(), ..Default::default() };
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 500));
    let store = app.store.clone();
    let rows = blocking(move || store.loops(&filter, after, limit).map_err(store_error)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|l| l.id)).flatten();
    Ok(Json(json!({"loops": rows, "next": next})).into_response())
}

//! `GET /v1/audit`: the audit log, filtered by kind, actor, tenant and
//! time, cut to the caller's tenants (host-wide events only for callers of
//! every tenant); a page of JSON, or every matching event as JSON Lines
//! (`?format=jsonl`), streamed page by page.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App};
use crate::config::Span;
use crate::store::records::AuditFilter;

/// A page: at most this many.
const PAGE: usize = 1000;

/// The query.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuditQuery {
    /// Event kind (`reload`, `denied`, `dead-letter-replayed`, ...).
    kind: Option<String>,
    /// Who did it: `token:ID`, `host`, `open`, `cli:USER`.
    actor: Option<String>,
    /// Tenant the event is about.
    tenant: Option<String>,
    /// RFC 3339 time, or a duration ago (`15m`, `7d`).
    since: Option<String>,
    /// RFC 3339 time, or a duration ago.
    until: Option<String>,
    /// Events with numbers above this one.
    after: Option<i64>,
    /// At most this many (up to 1000).
    limit: Option<usize>,
    /// `json` (default) or `jsonl`.
    format: Option<String>,
}

/// `text` as ms since the epoch: an RFC 3339 time or a duration before now.
fn when(field: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(span) = Span::try_from(text.to_string()) {
        return Ok(crate::store::now_ms() - span.0.as_millis() as i64);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("{field}: `{text}` is neither an RFC 3339 time nor a duration like `15m`")))
}

/// `GET /v1/audit`.
pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))?;
    let filter = AuditFilter {
        kind: q.kind,
        actor: q.actor,
        tenant: q.tenant,
        scope: caller.limit(),
        since: q.since.as_deref().map(|t| when("since", t)).transpose()?,
        until: q.until.as_deref().map(|t| when("until", t)).transpose()?,
    };
    let after = q.after.unwrap_or(0);
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let limit = q.limit.unwrap_or(100).clamp(1, PAGE);
            let store = app.store.clone();
            let rows = blocking(move || store.audit_events(&filter, after, limit).map_err(store_error)).await?;
            let next = (rows.len() == limit).then(|| rows.last().map(|e| e.id)).flatten();
            Ok(Json(json!({"events": rows, "next": next})).into_response())
        }
        "jsonl" => Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(export(app, filter, after))).into_response()),
        other => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-query", format!("format `{other}`: write json or jsonl"))),
    }
}

/// Every event `filter` matches after `after`, one JSON line each, read a
/// page at a time as the client takes them.
fn export(app: App, filter: AuditFilter, after: i64) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut after = after;
        loop {
            let page = match app.store.audit_events(&filter, after, PAGE) {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let mut chunk = String::new();
            for e in &page {
                chunk.push_str(&serde_json::to_string(e).expect("an audit record serializes"));
                chunk.push('\n');
            }
            if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.id,
                _ => return,
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

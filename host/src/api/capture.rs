//! Contract capture endpoints: start recording a stage's calls for a while,
//! and collect the cases recorded so far (see `pipeline::capture`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{ApiError, App, Params, SmallBody};
use crate::config::Span;
use crate::pipeline::capture::{Capture, MAX_CASES};
use crate::pipeline::LiveStage;

/// A capture request.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// How long: `30s`, `10m`.
    #[serde(rename = "for")]
    duration: String,
    /// Most cases.
    #[serde(default)]
    max: Option<usize>,
    /// Field paths to replace in inputs and outputs.
    #[serde(default)]
    redact: Vec<String>,
}

/// The stage `stage` (from 1) of a pipeline of `tenant`, and its description.
fn stage(app: &App, caller: &Caller, (tenant, pipeline, stage): &(String, String, usize)) -> Result<(Arc<crate::pipeline::LivePipeline>, usize), ApiError> {
    caller.tenant(tenant)?;
    let p = app.ingest.pipeline(tenant, pipeline)?;
    if *stage == 0 || *stage > p.stages.len() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-stage", format!("pipeline `{pipeline}` has stages 1 to {}", p.stages.len())));
    }
    Ok((p, stage - 1))
}

fn origin(tenant: &str, pipeline: &str, no: usize, s: &LiveStage) -> String {
    let i = s.instance.load();
    format!("captured from {tenant}/{pipeline} stage {no} ({} {})", i.plugin().name, i.plugin().digest)
}

/// `POST /v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture`
/// with `{"for": "30s", "max"?, "redact"?}`: records the stage's calls
/// from now (a running capture is replaced; `"for": "0s"` stops it).
pub async fn start(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Params(at): Params<(String, String, usize)>,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let (p, i) = stage(&app, &caller, &at)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", m);
    let r: CaptureRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("write {{\"for\": \"30s\", \"max\": 100, \"redact\": [\"body.x\"]}}: {e}")))?;
    let span = Span::try_from(r.duration.clone()).map_err(|e| bad(format!("for: {e}")))?;
    let live = &p.stages[i];
    let until = crate::store::now_ms() + span.0.as_millis() as i64;
    let max = r.max.unwrap_or(100).min(MAX_CASES);
    let capture = Capture::new(until, max, r.redact, origin(&at.0, &at.1, at.2, live), &live.cfg);
    live.capture.store(Some(Arc::new(capture)));
    tracing::info!(tenant = %at.0, pipeline = %at.1, stage = at.2, until, max, "contract capture started");
    Ok(Json(json!({"until": until, "max": max})).into_response())
}

/// `GET .../capture`: the cases recorded since the last look, and whether
/// the capture still runs.
pub async fn collect(State(app): State<App>, Extension(caller): Extension<Caller>, Params(at): Params<(String, String, usize)>) -> Result<Response, ApiError> {
    let (p, i) = stage(&app, &caller, &at)?;
    let live = &p.stages[i];
    let Some(capture) = live.capture.load_full() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no-capture", "no capture was started on this stage"));
    };
    let running = capture.running(crate::store::now_ms());
    let cases = capture.take();
    Ok(Json(json!({"running": running, "until": capture.until, "origin": capture.origin, "cases": cases})).into_response())
}

//! The plugin-approval endpoints: the allow-list, approving a version
//! (which reloads, so a waiting version goes live at once) and withdrawing
//! an approval.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{blocking, store_error, ApiError, App, Params, SmallBody};
use crate::approval;
use crate::store::records::Approval;

/// `GET /v1/plugins/approvals`.
pub async fn approvals(State(app): State<App>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let rows = blocking(move || store.plugin_approvals().map_err(store_error)).await?;
    let mode = app.topology.current().config.plugin_mode;
    Ok(Json(json!({"mode": format!("{mode:?}").to_lowercase(), "approvals": rows})).into_response())
}

/// The body of an approval or a revocation.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The version approved or withdrawn: `sha256:<hex>`.
    digest: String,
    #[serde(default)]
    /// Why (kept in the audit log).
    note: Option<String>,
}

fn request(body: &[u8], name: &str) -> Result<(String, ApprovalRequest), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", m);
    let r: ApprovalRequest = serde_json::from_slice(body).map_err(|e| bad(format!("write {{\"digest\": \"sha256:...\", \"note\": \"...\"}}: {e}")))?;
    crate::config::Name::try_from(name.to_string()).map_err(|e| bad(format!("plugin name: {e}")))?;
    Ok((approval::digest(&r.digest).map_err(bad)?, r))
}

/// `POST /v1/plugins/{name}/approve` with `{"digest", "note"?}`: approves
/// the version, then reloads so it goes live if it is waiting.
pub async fn approve(State(app): State<App>, Extension(caller): Extension<Caller>, Params(name): Params<String>, SmallBody(body): SmallBody) -> Result<Response, ApiError> {
    let (digest, r) = request(&body, &name)?;
    let record = Approval { plugin: name, digest, by: caller.actor.clone(), at: crate::store::now_ms(), note: r.note };
    let (store, reloader) = (app.store.clone(), app.reloader.clone());
    let kept = record.clone();
    let reload = blocking(move || {
        approval::approve(store.as_ref(), &kept).map_err(store_error)?;
        tracing::info!(plugin = %kept.plugin, digest = %kept.digest, by = %kept.by, "plugin version approved");
        Ok(reloader.reload_everywhere("approval", &caller.actor))
    })
    .await?;
    Ok(Json(json!({"approval": record, "reload": reload})).into_response())
}

/// `POST /v1/plugins/{name}/revoke` with `{"digest"}`.
pub async fn revoke(State(app): State<App>, Extension(caller): Extension<Caller>, Params(name): Params<String>, SmallBody(body): SmallBody) -> Result<Response, ApiError> {
    let (digest, _) = request(&body, &name)?;
    let store = app.store.clone();
    let (plugin, d) = (name.clone(), digest.clone());
    let had = blocking(move || approval::revoke(store.as_ref(), &caller.actor, &plugin, &d).map_err(store_error)).await?;
    if !had {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-approval", format!("plugin `{name}` version {digest} is not approved")));
    }
    Ok(Json(json!({"plugin": name, "digest": digest, "revoked": true})).into_response())
}

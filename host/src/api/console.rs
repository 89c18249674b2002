//! The operator console at `/console`: static files compiled into the
//! binary (`host/console/`: one page, its script and style, and Preact +
//! htm vendored — no CDN, no build step). The page holds no data; it calls
//! the `/v1` API with the operator's own token, so it shows and does only
//! what that token may. Served with a strict Content-Security-Policy (this
//! origin only, no inline script).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiError;

const INDEX: &str = include_str!("../../console/index.html");
const APP: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/style.css");
const VENDOR: &str = include_str!("../../console/vendor/htm-preact.mjs");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(body: &'static str, media: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /console`: the page.
pub(super) async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/{file}`: its script, style and vendored library.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file(APP, "text/javascript; charset=utf-8"),
        "vendor.js" => file(VENDOR, "text/javascript; charset=utf-8"),
        "style.css" => file(STYLE, "text/css; charset=utf-8"),
        _ => ApiError::new(StatusCode::NOT_FOUND, "no-such-endpoint", "no such console file").into_response(),
    }
}

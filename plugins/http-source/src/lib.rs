//! `http-source`: polls a JSON feed over `wasi:http`. Each poll is
//! `GET {url}?cursor={cursor}&limit={page-size}` (no `cursor` on the first
//! poll); the feed answers `{"messages": [canonical messages], "cursor":
//! "...", "more": true|false}`. The host stores the new cursor only with the
//! messages, so nothing is lost or read twice across restarts.
//!
//! Config: `url` (required), `page-size` (default 100), `token` (secret,
//! sent as a bearer token), `timeout-ms` (default 10000).
use std::time::Duration;

use serde_json::Value;
use syncline_sdk::http::{self, Request};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct HttpSource;

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads a feed page.
pub fn parse_page(body: &[u8]) -> Result<PollBatch, PluginError> {
    let bad = |m: String| PluginError::permanent("bad-feed", m);
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the feed answer is not JSON: {e}")))?;
    let items = v.get("messages").and_then(Value::as_array).ok_or_else(|| bad("the feed answer has no `messages` list".into()))?;
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        messages.push(json::from_value(item.clone()).map_err(|e| bad(format!("message {i}: {e}")))?);
    }
    let cursor = v.get("cursor").and_then(Value::as_str).map(str::to_string);
    let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
    Ok(PollBatch { messages, cursor, more })
}

impl Source for HttpSource {
    fn poll(cursor: Option<String>) -> Result<PollBatch, PluginError> {
        let url = config::require("url")?;
        let page = config::get_or("page-size", "100");
        let timeout = Duration::from_millis(config::get("timeout-ms").and_then(|t| t.parse().ok()).unwrap_or(10_000));
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut full = format!("{url}{sep}limit={}", encode(&page));
        if let Some(c) = &cursor {
            full += &format!("&cursor={}", encode(c));
        }
        let mut req = Request::new("GET", &full).timeout(timeout);
        if let Some(t) = config::get("token") {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let resp = http::send(&req).map_err(|e| {
            if e.is_retryable() {
                PluginError::retryable("feed-unreachable", e.to_string())
            } else {
                PluginError::permanent("feed-refused", e.to_string())
            }
        })?;
        match resp.status {
            200..=299 => parse_page(&resp.body),
            408 | 429 | 500..=599 => Err(PluginError::retryable("feed-unavailable", format!("HTTP {}", resp.status))),
            s => Err(PluginError::permanent("feed-refused", format!("HTTP {s}: {}", String::from_utf8_lossy(&resp.body)))),
        }
    }
}

export_source!(HttpSource);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_bad_pages_say_why() {
        let page = br#"{"messages": [], "cursor": "7", "more": true}"#;
        let b = parse_page(page).unwrap();
        assert_eq!((b.cursor.as_deref(), b.more), (Some("7"), true));
        assert_eq!(parse_page(b"{}").unwrap_err().code, "bad-feed");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}

//! `http-sink`: delivers each message over `wasi:http`: a canonical
//! message as its JSON form, a `raw` message (what `json-formatter` or
//! `csv-formatter` made: a target system's own document) as its bytes with
//! its content type.
//!
//! Every request carries `Idempotency-Key` (the message's idempotency key, or
//! its id), `X-Correlation-Id`, `X-Message-Id` and, when configured, a bearer
//! token. Responses are classified: 2xx delivered (reference from the JSON
//! body's `id`/`reference`, else the `Location` header, else the status);
//! 408, 429, 5xx and transport failures retryable (honouring `Retry-After`
//! seconds); other 4xx and a denied destination permanent.
//!
//! With `bulk = "true"` the whole batch goes in one request: a JSON array of
//! canonical messages (each carries its own `idempotency-key`; a batch
//! holding a `raw` message is sent one request per message), answered by a JSON
//! array with one result per message: `{"id": REF}` (delivered) or
//! `{"error": TEXT, "retryable": BOOL}`. A non-2xx answer applies to every
//! message of the batch.
//!
//! Without `bulk`, up to `concurrency` requests (default 8) are in flight at
//! once; a call never holds two messages with the same ordering key, so
//! this never reorders a key.
//!
//! Config: `url` (required), `token` (secret), `timeout-ms` (default 10000),
//! `bulk` (default `false`), `concurrency` (default 8).
use std::time::Duration;

use syncline_sdk::http::{self, HttpError, Request, Response};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct HttpSink;

/// What a response means for the message.
pub fn classify(resp: &Response) -> DeliveryOutcome {
    let snippet = || {
        let text = String::from_utf8_lossy(&resp.body);
        let text = text.trim();
        let cut: String = text.chars().take(200).collect();
        if cut.is_empty() { String::new() } else { format!(": {cut}") }
    };
    match resp.status {
        200..=299 => {
            let from_body = serde_json::from_slice::<serde_json::Value>(&resp.body).ok().and_then(|v| {
                ["id", "reference"].iter().find_map(|k| v.get(k).and_then(|x| x.as_str()).map(str::to_string))
            });
            let reference = from_body
                .or_else(|| resp.header("location").map(str::to_string))
                .unwrap_or_else(|| format!("http-{}", resp.status));
            DeliveryOutcome::Delivered { reference }
        }
        408 | 429 | 500..=599 => DeliveryOutcome::Retryable {
            reason: format!("HTTP {}{}", resp.status, snippet()),
            after_ms: resp.header("retry-after").and_then(|s| s.trim().parse::<u64>().ok()).map(|s| s * 1000),
        },
        status => DeliveryOutcome::Permanent { reason: format!("HTTP {status}{}", snippet()) },
    }
}

/// The request that delivers `msg`.
fn request_for(url: &str, token: Option<&str>, timeout: Duration, msg: &Message) -> Request {
    let key = msg.idempotency_key.clone().unwrap_or_else(|| msg.id.clone());
    let (content_type, body) = match &msg.body {
        Body::Raw(raw) => (raw.content_type.as_str(), raw.data.clone()),
        _ => ("application/json", json::to_string(msg).into_bytes()),
    };
    let mut req = Request::new("POST", url)
        .header("content-type", content_type)
        .header("idempotency-key", &key)
        .header("x-correlation-id", &msg.correlation_id)
        .header("x-message-id", &msg.id)
        .body(body)
        .timeout(timeout);
    if let Some(c) = &msg.causation_id {
        req = req.header("x-causation-id", c);
    }
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    req
}

/// What a request's result means for its message.
fn outcome(result: Result<Response, HttpError>) -> DeliveryOutcome {
    match result {
        Ok(resp) => classify(&resp),
        Err(e @ (HttpError::Denied(_) | HttpError::BadUrl(_))) => DeliveryOutcome::Permanent { reason: e.to_string() },
        Err(e) => DeliveryOutcome::Retryable { reason: e.to_string(), after_ms: None },
    }
}

/// One request per message, up to `concurrency` in flight at once. (The
/// host hands a sink at most one message per ordering key per call, so
/// concurrent requests never reorder a key.)
fn deliver_each(url: &str, token: Option<&str>, timeout: Duration, concurrency: usize, messages: &[Message]) -> Vec<DeliveryOutcome> {
    let mut out = Vec::with_capacity(messages.len());
    for window in messages.chunks(concurrency.max(1)) {
        let requests: Vec<Request> = window.iter().map(|m| request_for(url, token, timeout, m)).collect();
        out.extend(http::send_all(&requests).into_iter().map(outcome));
    }
    out
}

/// Per-message outcomes of a bulk answer.
pub fn classify_bulk(resp: &Response, count: usize) -> Vec<DeliveryOutcome> {
    if !(200..=299).contains(&resp.status) {
        let one = classify(resp);
        return (0..count).map(|_| one.clone()).collect();
    }
    let items = serde_json::from_slice::<serde_json::Value>(&resp.body).ok().and_then(|v| v.as_array().cloned());
    match items {
        Some(items) if items.len() == count => items
            .iter()
            .map(|item| match (item.get("id").and_then(|v| v.as_str()), item.get("error")) {
                (Some(id), None) => DeliveryOutcome::Delivered { reference: id.to_string() },
                (_, Some(e)) => {
                    let reason = e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string());
                    if item.get("retryable").and_then(|r| r.as_bool()).unwrap_or(false) {
                        DeliveryOutcome::Retryable { reason, after_ms: None }
                    } else {
                        DeliveryOutcome::Permanent { reason }
                    }
                }
                _ => DeliveryOutcome::Retryable { reason: format!("bulk result without `id` or `error`: {item}"), after_ms: None },
            })
            .collect(),
        _ => (0..count)
            .map(|_| DeliveryOutcome::Retryable {
                reason: format!("HTTP {}: the bulk answer is not a list of {count} results", resp.status),
                after_ms: None,
            })
            .collect(),
    }
}

fn deliver_bulk(url: &str, token: Option<&str>, timeout: Duration, messages: &[Message]) -> Vec<DeliveryOutcome> {
    let mut body = Vec::with_capacity(messages.len() * 512);
    body.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(json::to_string(m).as_bytes());
    }
    body.push(b']');
    let mut req = Request::new("POST", url).header("content-type", "application/json").body(body).timeout(timeout);
    if let Some(first) = messages.first() {
        req = req.header("x-correlation-id", &first.correlation_id);
    }
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    match http::send(&req) {
        Ok(resp) => classify_bulk(&resp, messages.len()),
        Err(e) => {
            let o = match e {
                HttpError::Denied(_) | HttpError::BadUrl(_) => DeliveryOutcome::Permanent { reason: e.to_string() },
                _ => DeliveryOutcome::Retryable { reason: e.to_string(), after_ms: None },
            };
            messages.iter().map(|_| o.clone()).collect()
        }
    }
}

impl Sink for HttpSink {
    fn deliver(messages: Vec<Message>) -> Vec<DeliveryOutcome> {
        let url = match config::require("url") {
            Ok(u) => u,
            Err(e) => return messages.iter().map(|_| DeliveryOutcome::Permanent { reason: e.message.clone() }).collect(),
        };
        let token = config::get("token");
        let timeout = Duration::from_millis(config::get("timeout-ms").and_then(|t| t.parse().ok()).unwrap_or(10_000));
        let raw = messages.iter().any(|m| matches!(m.body, Body::Raw(_)));
        if config::get("bulk").as_deref() == Some("true") && !raw {
            return deliver_bulk(&url, token.as_deref(), timeout, &messages);
        }
        let concurrency = config::get("concurrency").and_then(|c| c.parse().ok()).unwrap_or(8);
        deliver_each(&url, token.as_deref(), timeout, concurrency, &messages)
    }
}

export_sink!(HttpSink);

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_sdk::testing::TestHost;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify(&resp(201, &[], r#"{"id":"REQ-9"}"#)), DeliveryOutcome::Delivered { reference: "REQ-9".into() });
        assert_eq!(
            classify(&resp(429, &[("retry-after", "3")], "")),
            DeliveryOutcome::Retryable { reason: "HTTP 429".into(), after_ms: Some(3000) }
        );
        assert!(matches!(classify(&resp(503, &[], "down")), DeliveryOutcome::Retryable { .. }));
        assert!(matches!(classify(&resp(422, &[], "bad")), DeliveryOutcome::Permanent { .. }));
    }

    #[test]
    fn bulk_answers_map_to_each_message() {
        let ok = resp(200, &[], r#"[{"id": "E1"}, {"error": "busy", "retryable": true}, {"error": "no such item"}]"#);
        let out = classify_bulk(&ok, 3);
        assert_eq!(out[0], DeliveryOutcome::Delivered { reference: "E1".into() });
        assert!(matches!(out[1], DeliveryOutcome::Retryable { .. }));
        assert!(matches!(out[2], DeliveryOutcome::Permanent { .. }));
        assert!(classify_bulk(&resp(503, &[], ""), 2).iter().all(|o| matches!(o, DeliveryOutcome::Retryable { .. })));
        assert!(classify_bulk(&resp(200, &[], "[]"), 2).iter().all(|o| matches!(o, DeliveryOutcome::Retryable { .. })));
    }

    #[test]
    fn sends_idempotency_and_correlation_headers() {
        let h = TestHost::new()
            .config("url", "http://127.0.0.1:9/req")
            .http(|_| Ok(resp(200, &[], r#"{"reference":"R1"}"#)))
            .install();
        let mut m = Message::new(Body::Raw(Raw { content_type: "text/plain".into(), data: b"x".to_vec() }));
        m.id = "M1".into();
        m.correlation_id = "C1".into();
        m.idempotency_key = Some("K1".into());
        let out = HttpSink::deliver(vec![m]);
        assert_eq!(out, vec![DeliveryOutcome::Delivered { reference: "R1".into() }]);
        let sent = &h.requests()[0];
        assert!(sent.headers.contains(&("idempotency-key".into(), "K1".into())));
        assert!(sent.headers.contains(&("x-correlation-id".into(), "C1".into())));
    }

    #[test]
    fn a_raw_message_is_sent_as_its_own_document_even_in_bulk_mode() {
        let h = TestHost::new()
            .config("url", "http://127.0.0.1:9/orders")
            .config("bulk", "true")
            .http(|_| Ok(resp(201, &[], r#"{"id":"PO-1"}"#)))
            .install();
        let mut m = Message::new(Body::Raw(Raw { content_type: "text/csv".into(), data: b"ITEM,QTY\r\nSKU-1,5\r\n".to_vec() }));
        m.idempotency_key = Some("K1".into());
        assert_eq!(HttpSink::deliver(vec![m]), vec![DeliveryOutcome::Delivered { reference: "PO-1".into() }]);
        let sent = &h.requests()[0];
        assert!(sent.headers.contains(&("content-type".into(), "text/csv".into())), "{:?}", sent.headers);
        assert_eq!(sent.body, b"ITEM,QTY\r\nSKU-1,5\r\n");
    }
}

//! `http-sink`: delivers each message as canonical JSON over `wasi:http`.
//!
//! Every request carries `Idempotency-Key` (the message's idempotency key, or
//! its id), `X-Correlation-Id`, `X-Message-Id` and, when configured, a bearer
//! token. Responses are classified: 2xx delivered (reference from the JSON
//! body's `id`/`reference`, else the `Location` header, else the status);
//! 408, 429, 5xx and transport failures retryable (honouring `Retry-After`
//! seconds); other 4xx and a denied destination permanent.
//!
//! Config: `url` (required), `token` (secret), `timeout-ms` (default 10000).
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

fn deliver_one(url: &str, token: Option<&str>, timeout: Duration, msg: &Message) -> DeliveryOutcome {
    let key = msg.idempotency_key.clone().unwrap_or_else(|| msg.id.clone());
    let mut req = Request::new("POST", url)
        .header("content-type", "application/json")
        .header("idempotency-key", &key)
        .header("x-correlation-id", &msg.correlation_id)
        .header("x-message-id", &msg.id)
        .body(json::to_string(msg))
        .timeout(timeout);
    if let Some(c) = &msg.causation_id {
        req = req.header("x-causation-id", c);
    }
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    match http::send(&req) {
        Ok(resp) => classify(&resp),
        Err(e @ (HttpError::Denied(_) | HttpError::BadUrl(_))) => DeliveryOutcome::Permanent { reason: e.to_string() },
        Err(e) => DeliveryOutcome::Retryable { reason: e.to_string(), after_ms: None },
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
        messages.iter().map(|m| deliver_one(&url, token.as_deref(), timeout, m)).collect()
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
}

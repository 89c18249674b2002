//! Human-readable summaries of API answers for the CLI (`syncline trace`,
//! `syncline dlq`).

use crate::store::records::{AuditRecord, DeadLetterRecord, Step, StepOutcome, Trace};

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// A message trace (the answer of `GET /v1/messages/{id}`) as text.
pub fn trace_summary(t: &Trace) -> String {
    let mut out = String::new();
    if let Some(input) = &t.input {
        let kind = input.message["kind"].as_str().unwrap_or("?");
        let shard = input.processing.as_ref().and_then(|p| p.shard).map(|s| format!(" (shard {} of {})", s.index + 1, s.of)).unwrap_or_default();
        out += &format!("message {} ({kind}) in {}/{}: {}{shard}\n", t.id, input.tenant, input.pipeline, input.state);
        if input.attempts > 0 {
            let last = input.retry_errors.as_ref().and_then(|e| e.last()).map_or("", String::as_str);
            out += &format!("  {} attempt(s) failed and will be retried; last: {last}\n", input.attempts);
        }
        for step in input.processing.iter().flat_map(|p| &p.steps) {
            match step {
                Step::Route(r) => out += &format!("  route   {} -> {}\n", r.route, r.to.join(", ")),
                Step::Stage(s) => {
                    let what = match &s.outcome {
                        StepOutcome::Error { error } => format!("error: {error}"),
                        StepOutcome::Outputs { outputs, .. } => format!("{} output(s)", outputs.len()),
                        StepOutcome::Validated { valid: false, violations, .. } => {
                            format!("invalid ({} violation(s))", violations.as_array().map_or(0, Vec::len))
                        }
                        StepOutcome::Validated { .. } => "valid".to_string(),
                    };
                    let dropped = s.logs_dropped.map(|n| format!(" ({n} log lines dropped)")).unwrap_or_default();
                    out += &format!("  stage {} {}@{} {:.2} ms: {what}{dropped}\n", s.stage, s.plugin, short(&s.digest), s.micros as f64 / 1000.0);
                }
            }
        }
    }
    for (label, list) in [("output", &t.outputs), ("delivery", &t.deliveries)] {
        for d in list {
            let what = d.message["body"]["id"].as_str().map(|s| format!(" {s}")).unwrap_or_default();
            out += &format!(
                "  {label} {} {}{what} -> sink {}: {}{} after {} attempt(s)\n",
                d.id,
                d.message["kind"].as_str().unwrap_or("?"),
                d.sink,
                d.state,
                d.reference.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
                d.attempts.len()
            );
        }
    }
    for e in &t.exceptions {
        out += &format!("  exception {} -> queue {}: {}\n", e.message_id, e.queue, e.detail.text());
    }
    for d in &t.dead_letters {
        let unknown = if d.outcome == "unknown" { " [outcome unknown: it may have been delivered]" } else { "" };
        out += &format!("  dead letter {} at {}{unknown}: {}\n", d.message_id, d.place, d.reason);
    }
    out
}

/// How long ago `at` was, in the largest whole unit (`45s`, `12m`, `3h`, `2d`).
fn age(now_ms: i64, at: i64) -> String {
    let s = (now_ms - at).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Dead letters (the answer of `GET /v1/dead-letters`) as one line each.
pub fn dead_letter_lines(rows: &[DeadLetterRecord], now_ms: i64) -> String {
    if rows.is_empty() {
        return "no dead letters\n".into();
    }
    let mut out = String::new();
    for d in rows {
        let reason = d.reason.lines().next().unwrap_or_default();
        let state = if d.state == "open" { String::new() } else { format!(" [{}]", d.state) };
        out += &format!("{:>6}  {:>4} ago  {}/{}  {}  {}{state}: {reason}\n", d.id, age(now_ms, d.at), d.tenant, d.pipeline, d.place, d.message_id);
    }
    out
}

/// Sinks (the answer of `GET /v1/sinks`) as one line each: name, pending
/// deliveries and the oldest one's age, and what holds the queue.
pub fn sink_lines(answer: &serde_json::Value) -> String {
    let mut out = String::new();
    for s in answer["sinks"].as_array().into_iter().flatten() {
        let c = &s["control"];
        let mut held = Vec::new();
        if let Some(reason) = c["paused"]["reason"].as_str() {
            held.push(format!("paused: {reason}"));
        }
        if let Some(w) = c["maintenance"].as_str() {
            held.push(format!("in maintenance window {w}"));
        }
        match c["breaker"]["state"].as_str() {
            Some("closed") => {}
            Some(state) => held.push(format!("breaker {state}: {}", c["breaker"]["reason"].as_str().unwrap_or_default())),
            None => held.push("breaker off".into()),
        }
        let oldest = s["oldest-pending-ms"].as_i64().map(|ms| format!(", oldest {}", age(ms, 0))).unwrap_or_default();
        let state = if held.is_empty() { "delivering".to_string() } else { held.join("; ") };
        out += &format!("{}  {} pending{oldest}  {state}\n", s["name"].as_str().unwrap_or("?"), s["pending"].as_i64().unwrap_or(0));
    }
    out
}

/// Exceptions (the answer of `GET /v1/exceptions`) as one line each:
/// number, age, queue and owner, tenant/pipeline, message, what is wrong.
pub fn exception_lines(answer: &serde_json::Value) -> String {
    let rows = answer["exceptions"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no exceptions\n".into();
    }
    let mut out = String::new();
    for e in rows {
        let detail: Option<crate::store::records::ExceptionDetail> = serde_json::from_value(e["detail"].clone()).ok();
        let owner = e["owner"].as_str().map(|o| format!(" ({o})")).unwrap_or_default();
        let overdue = if e["overdue-at"].is_i64() { " OVERDUE" } else { "" };
        let state = e["state"].as_str().filter(|s| *s != "open").map(|s| format!(" [{s}]")).unwrap_or_default();
        out += &format!(
            "{:>6}  {:>4} ago  {}{owner}  {}/{}  {}{state}{overdue}: {}\n",
            e["id"].as_i64().unwrap_or(0),
            age(e["age-ms"].as_i64().unwrap_or(0), 0),
            e["queue"].as_str().unwrap_or("?"),
            e["tenant"].as_str().unwrap_or("?"),
            e["pipeline"].as_str().unwrap_or("?"),
            e["message-id"].as_str().unwrap_or("?"),
            detail.map(|d| d.text()).unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::records::{AttemptRecord, DeliveryRecord, Input, Processing, RouteStep, ShardRef, StageStep};

    #[test]
    fn a_trace_reads_as_its_steps_and_deliveries() {
        let stage = StageStep {
            stage: 1,
            plugin: "json-mapper".into(),
            digest: "sha256:237e8d181fac0123456789".into(),
            input: "M1".into(),
            micros: 1500,
            outcome: StepOutcome::Outputs { batch: None, outputs: vec!["O1".into()] },
            logs_dropped: Some(3),
        };
        let t = Trace {
            id: "M1".into(),
            input: Some(Input {
                tenant: "acme".into(),
                pipeline: "recs".into(),
                state: "done".into(),
                received_at: 0,
                processed_at: Some(1),
                message: json!({"kind": "raw"}),
                processing: Some(Processing {
                    shard: Some(ShardRef { index: 1, of: 2 }),
                    steps: vec![Step::Stage(stage), Step::Route(RouteStep { route: "O1".into(), to: vec!["erp".into()] })],
                }),
                attempts: 0,
                retry_errors: None,
                next_attempt_at: 0,
            }),
            outputs: vec![DeliveryRecord {
                id: "O1".into(),
                source_id: "M1".into(),
                sink: "erp".into(),
                state: "delivered".into(),
                reference: Some("ERP-1".into()),
                queued_at: 1,
                delivered_at: Some(2),
                message: json!({"kind": "purchase-requisition", "body": {"id": "PR-1"}}),
                attempts: vec![AttemptRecord { attempt: 1, at: Some(2), outcome: "delivered".into(), detail: Some("ERP-1".into()), digest: None }],
            }],
            deliveries: vec![],
            dead_letters: vec![],
            exceptions: vec![],
        };
        assert_eq!(
            trace_summary(&t),
            "message M1 (raw) in acme/recs: done (shard 2 of 2)\n\
             \x20 stage 1 json-mapper@237e8d181fac 1.50 ms: 1 output(s) (3 log lines dropped)\n\
             \x20 route   O1 -> erp\n\
             \x20 output O1 purchase-requisition PR-1 -> sink erp: delivered (ERP-1) after 1 attempt(s)\n"
        );
    }

    #[test]
    fn dead_letters_read_one_a_line_with_their_age() {
        let d = DeadLetterRecord {
            id: 7,
            tenant: "acme".into(),
            pipeline: "recs".into(),
            source_id: "M1".into(),
            at: 0,
            place: "sink erp".into(),
            plugin: "http-sink".into(),
            digest: "sha256:x".into(),
            reason: "HTTP 422: unknown supplier\nmore".into(),
            attempts: vec![],
            message_id: "O1".into(),
            outcome: "not-delivered".into(),
            state: "open".into(),
            resolved_at: None,
            note: None,
        };
        let purged = DeadLetterRecord { id: 8, state: "purged".into(), at: 7_200_000, ..d.clone() };
        assert_eq!(
            dead_letter_lines(&[d, purged], 7_245_000),
            "     7    2h ago  acme/recs  sink erp  O1: HTTP 422: unknown supplier\n     8   45s ago  acme/recs  sink erp  O1 [purged]: HTTP 422: unknown supplier\n"
        );
        assert_eq!(dead_letter_lines(&[], 0), "no dead letters\n");
    }

    #[test]
    fn sinks_read_one_a_line_with_what_holds_them() {
        let answer = json!({"sinks": [
            {"name": "erp", "pending": 12, "oldest-pending-ms": 95_000,
             "control": {"paused": {"reason": "ERP upgrade", "at": 1}, "windows": [], "breaker": {"state": "open", "reason": "5 deliveries in a row failed; last: HTTP 503"}}},
            {"name": "wms", "pending": 0, "oldest-pending-ms": null, "control": {"windows": [], "breaker": {"state": "closed"}}}
        ]});
        assert_eq!(
            sink_lines(&answer),
            "erp  12 pending, oldest 1m  paused: ERP upgrade; breaker open: 5 deliveries in a row failed; last: HTTP 503\nwms  0 pending  delivering\n"
        );
    }

    #[test]
    fn exceptions_read_one_a_line_with_owner_age_and_what_is_wrong() {
        let answer = json!({"exceptions": [
            {"id": 3, "age-ms": 5_400_000, "queue": "master-data", "owner": "Master data team", "tenant": "acme", "pipeline": "release",
             "message-id": "M1", "state": "open", "overdue-at": 9,
             "detail": {"stage": 2, "plugin": "canonical-validator", "violations": [{"field": "body.quantity", "code": "negative", "severity": "error", "text": "quantity is negative"}]}},
            {"id": 4, "age-ms": 1_000, "queue": "approvals", "tenant": "acme", "pipeline": "release", "message-id": "M2", "state": "resolved",
             "detail": {"code": "needs-approval", "text": "over the buyer's limit", "severity": "warning"}}
        ]});
        assert_eq!(
            exception_lines(&answer),
            "     3    1h ago  master-data (Master data team)  acme/release  M1 OVERDUE: body.quantity: quantity is negative\n     4    1s ago  approvals  acme/release  M2 [resolved]: over the buyer's limit\n"
        );
        assert_eq!(exception_lines(&json!({"exceptions": []})), "no exceptions\n");
    }
}

/// Audit records as one line each: number, time, actor, tenant (`-` for
/// host-wide events), kind and the event's own fields.
pub fn audit_lines(rows: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in rows {
        let mut detail = serde_json::to_value(&r.event).unwrap_or_default();
        if let Some(fields) = detail.as_object_mut() {
            fields.remove("kind");
        }
        let detail = if detail.as_object().is_some_and(serde_json::Map::is_empty) { String::new() } else { detail.to_string() };
        let tenant = r.tenant.as_deref().unwrap_or("-");
        out += &format!("#{}  {}  {}  {tenant}  {}  {detail}\n", r.id, crate::pipeline::rfc3339(r.at), r.actor, r.event.kind());
    }
    out
}

/// A flow's timeline as one line per event: time, message, kind, event, detail.
pub fn timeline_lines(events: &[crate::store::timeline::TimelineEntry]) -> String {
    let mut out = String::new();
    for e in events {
        let kind = if e.kind.is_empty() { String::new() } else { format!(" ({})", e.kind) };
        out += &format!("{}  {}{kind}  {}  {}\n", crate::pipeline::rfc3339(e.at), e.message, e.event, e.detail);
    }
    out
}

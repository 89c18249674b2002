//! Human-readable summaries of API answers for the CLI (`syncline trace`).

use crate::store::records::{Step, StepOutcome, Trace};

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// A message trace (the answer of `GET /v1/messages/{id}`) as text.
pub fn trace_summary(t: &Trace) -> String {
    let mut out = String::new();
    if let Some(input) = &t.input {
        let kind = input.message["kind"].as_str().unwrap_or("?");
        out += &format!("message {} ({kind}) in {}/{}: {}\n", t.id, input.tenant, input.pipeline, input.state);
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

//! A correlation's flow as one timeline: the traces of every message that
//! shares a correlation id, turned into what happened when — accepted,
//! processed, queued for a sink, each delivery attempt, delivered, dead-
//! lettered, parked — in time order. Pure over the typed trace records, so
//! it is the same for the API, the CLI and the console.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::records::{DeliveryRecord, Trace};

/// One thing that happened to a message of the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TimelineEntry {
    /// When (ms since the epoch).
    pub at: i64,
    /// The message (or output) it happened to.
    pub message: String,
    /// Its kind (`replenishment-recommendation`, `purchase-requisition`, ...).
    pub kind: String,
    /// What: `accepted`, `processed`, `queued`, `attempt`, `delivered`, `dead-letter`, `exception`.
    pub event: String,
    /// Where and how, in words.
    pub detail: String,
}

fn kind_of(message: &Value) -> String {
    message.get("kind").and_then(Value::as_str).unwrap_or("?").to_string()
}

/// The timeline of `traces` (each the trace of one accepted message of the
/// flow), oldest first; entries at the same time keep the order they
/// happened in within each message.
pub fn timeline(traces: &[Trace]) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    let mut push = |at: i64, message: &str, kind: &str, event: &str, detail: String| {
        out.push(TimelineEntry { at, message: message.to_string(), kind: kind.to_string(), event: event.to_string(), detail });
    };
    for t in traces {
        if let Some(input) = &t.input {
            let kind = kind_of(&input.message);
            push(input.received_at, &t.id, &kind, "accepted", format!("by {}/{}", input.tenant, input.pipeline));
            if let Some(at) = input.processed_at {
                push(at, &t.id, &kind, "processed", input.state.clone());
            }
        }
        // An output routed without a stage is the message itself: listed
        // among its outputs and its deliveries alike, told once.
        let mut seen = std::collections::BTreeSet::new();
        for d in t.outputs.iter().chain(&t.deliveries).filter(|d| seen.insert((d.id.as_str(), d.sink.as_str()))) {
            deliveries(d, &mut push);
        }
        for d in &t.dead_letters {
            push(d.at, &d.message_id, "", "dead-letter", format!("at {}: {}", d.place, d.reason.lines().next().unwrap_or_default()));
        }
        for e in &t.exceptions {
            push(e.at, &e.message_id, "", "exception", format!("parked in {} ({})", e.queue, e.state));
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

fn deliveries(d: &DeliveryRecord, push: &mut impl FnMut(i64, &str, &str, &str, String)) {
    let kind = kind_of(&d.message);
    push(d.queued_at, &d.id, &kind, "queued", format!("for sink {}", d.sink));
    for a in &d.attempts {
        if let Some(at) = a.at {
            push(at, &d.id, &kind, "attempt", format!("{} #{}: {}", d.sink, a.attempt, a.outcome));
        }
    }
    if let Some(at) = d.delivered_at {
        push(at, &d.id, &kind, "delivered", format!("to {} ({})", d.sink, d.reference.as_deref().unwrap_or("-")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{AttemptRecord, Input};

    #[test]
    fn a_flow_reads_in_time_order_across_its_messages() {
        let input = |tenant: &str, kind: &str, at: i64| Input {
            tenant: tenant.into(),
            pipeline: "p".into(),
            state: "done".into(),
            received_at: at,
            processed_at: Some(at + 5),
            message: serde_json::json!({"kind": kind}),
            processing: None,
            attempts: 0,
            retry_errors: None,
            next_attempt_at: 0,
        };
        let output = DeliveryRecord {
            id: "o1".into(),
            source_id: "m1".into(),
            sink: "erp".into(),
            state: "delivered".into(),
            reference: Some("PO-1".into()),
            queued_at: 105,
            delivered_at: Some(130),
            message: serde_json::json!({"kind": "purchase-requisition"}),
            attempts: vec![
                AttemptRecord { attempt: 1, at: Some(110), outcome: "retryable".into(), detail: None, digest: None },
                AttemptRecord { attempt: 2, at: Some(130), outcome: "delivered".into(), detail: None, digest: None },
            ],
        };
        let first = Trace { id: "m1".into(), input: Some(input("acme", "replenishment-recommendation", 100)), outputs: vec![output], deliveries: vec![], dead_letters: vec![], exceptions: vec![] };
        let status = Trace { id: "m2".into(), input: Some(input("acme", "execution-status", 200)), outputs: vec![], deliveries: vec![], dead_letters: vec![], exceptions: vec![] };
        let events: Vec<(i64, String, String)> = timeline(&[status, first]).into_iter().map(|e| (e.at, e.message, e.event)).collect();
        let want = [(100, "m1", "accepted"), (105, "m1", "processed"), (105, "o1", "queued"), (110, "o1", "attempt"), (130, "o1", "attempt"), (130, "o1", "delivered"), (200, "m2", "accepted"), (205, "m2", "processed")];
        assert_eq!(events, want.map(|(a, m, e)| (a, m.to_string(), e.to_string())));
    }
}

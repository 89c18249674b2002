//! Delivery: one worker per sink takes due deliveries from its queue, in
//! order, at most one per ordering key per call (so a retried message is
//! never overtaken by a later one with the same key), calls the sink plugin,
//! and records every outcome: delivered, retry later (exponential backoff
//! with jitter, honouring the downstream's Retry-After), or dead-lettered
//! with every attempt's error once the attempts are spent.

use std::collections::HashSet;
use std::time::Duration;

use syncline_model::{json as mjson, DeliveryOutcome};

use crate::pipeline::{Engine, LiveSink};
use crate::runtime::PluginInstance;
use crate::store::{now_ms, Attempt, AttemptResult, Delivery, NewDeadLetter};

/// Picks the deliveries to attempt now: due, in queue order, one per key.
/// Returns them and the earliest time a skipped one becomes due.
fn choose(rows: Vec<Delivery>, now: i64, max: usize) -> (Vec<Delivery>, Option<i64>) {
    let mut seen_keys = HashSet::new();
    let mut earliest: Option<i64> = None;
    let mut chosen = Vec::new();
    for d in rows {
        if !seen_keys.insert(d.ordering_key.clone()) {
            continue;
        }
        if d.next_at > now {
            earliest = Some(earliest.map_or(d.next_at, |e| e.min(d.next_at)));
            continue;
        }
        chosen.push(d);
        if chosen.len() == max {
            break;
        }
    }
    (chosen, earliest)
}

/// What to record for one delivery after an attempt.
fn judge(sink: &LiveSink, instance: &PluginInstance, d: &Delivery, outcome: DeliveryOutcome, now: i64) -> AttemptResult {
    let plugin = instance.plugin();
    let attempt = d.attempts + 1;
    let dead = |reason: String, d: &Delivery| {
        let mut attempts = d.errors.clone();
        attempts.push(reason.clone());
        AttemptResult::Dead(NewDeadLetter {
            message_id: d.id.clone(),
            place: format!("sink {}", sink.cfg.name),
            plugin: plugin.name.clone(),
            digest: plugin.digest.clone(),
            reason,
            attempts,
            json: d.json.clone(),
        })
    };
    match outcome {
        DeliveryOutcome::Delivered { reference } => AttemptResult::Delivered(reference),
        DeliveryOutcome::Permanent { reason } => dead(format!("permanent failure: {reason}"), d),
        DeliveryOutcome::Retryable { reason, .. } if attempt >= sink.cfg.retry.attempts => {
            dead(format!("gave up after {attempt} attempts; last: {reason}"), d)
        }
        DeliveryOutcome::Retryable { reason, after_ms } => {
            let backoff = sink.cfg.retry.backoff(attempt).as_millis() as i64;
            let wait = backoff.max(after_ms.unwrap_or(0) as i64);
            AttemptResult::Retry { error: reason, next_at: now + wait }
        }
    }
}

/// The loop of worker `part` of the sink's `workers`.
pub fn run(engine: &Engine, sink: &LiveSink, part: u32) {
    let name = sink.cfg.name.as_str();
    let batch = sink.cfg.batch.max(1);
    while !engine.stopping() && !sink.retired() {
        let seen = sink.signal.generation();
        let rows = match engine.store.deliveries(name, part, sink.cfg.workers, batch * 2) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(sink = name, error = %e, "cannot read the delivery queue; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let now = now_ms();
        let (chosen, earliest) = choose(rows, now, batch);
        if chosen.is_empty() {
            let wait = earliest.map_or(1000, |e| (e - now).clamp(1, 1000)) as u64;
            sink.signal.wait(seen, Duration::from_millis(wait));
            continue;
        }
        // This call's version: a swap affects the next call.
        let instance = sink.instance.load_full();
        let digest = instance.plugin().digest.clone();
        let mut messages = Vec::with_capacity(chosen.len());
        let mut attempts = Vec::with_capacity(chosen.len());
        let mut sendable = Vec::with_capacity(chosen.len());
        for d in chosen {
            match mjson::from_str(&d.json) {
                Ok(m) => {
                    messages.push(m);
                    sendable.push(d);
                }
                Err(e) => {
                    let r = judge(sink, &instance, &d, DeliveryOutcome::Permanent { reason: format!("stored message no longer parses: {e}") }, now);
                    attempts.push(Attempt { seq: d.seq, digest: digest.clone(), result: r });
                }
            }
        }
        let count = messages.len();
        let outcomes: Vec<DeliveryOutcome> = match instance.deliver(messages) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "sink plugin failed; the batch will be retried");
                (0..count).map(|_| DeliveryOutcome::Retryable { reason: e.to_string(), after_ms: None }).collect()
            }
        };
        let now = now_ms();
        for (d, o) in sendable.iter().zip(outcomes) {
            if let DeliveryOutcome::Retryable { reason, .. } | DeliveryOutcome::Permanent { reason } = &o {
                tracing::debug!(sink = name, delivery = %d.id, attempt = d.attempts + 1, %reason, "delivery failed");
            }
            attempts.push(Attempt { seq: d.seq, digest: digest.clone(), result: judge(sink, &instance, d, o, now) });
        }
        if let Err(e) = engine.store.record(name, attempts) {
            // Not recorded: these deliveries stay pending and are sent again
            // with the same idempotency keys.
            tracing::error!(sink = name, error = %e, "cannot record delivery outcomes");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: i64, key: &str, next_at: i64) -> Delivery {
        Delivery { seq, id: seq.to_string(), ordering_key: key.into(), attempts: 0, next_at, json: String::new(), errors: vec![] }
    }

    #[test]
    fn a_waiting_delivery_blocks_its_key_but_not_others() {
        let (chosen, earliest) = choose(vec![d(1, "a", 50), d(2, "a", 0), d(3, "b", 0), d(4, "b", 0), d(5, "c", 0)], 10, 10);
        let seqs: Vec<i64> = chosen.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![3, 5]);
        assert_eq!(earliest, Some(50));
    }
}

//! Delivery: each sink's workers take due deliveries from its queue, in
//! order, at most one per ordering key per call (so a retried message is
//! never overtaken by a later one with the same key) and no more than the
//! sink's `batch` messages and `batch-bytes` bytes per call, call the sink
//! plugin, and record every outcome: delivered, retry later (exponential
//! backoff with jitter, honouring the downstream's Retry-After), or
//! dead-lettered with every attempt's error once the attempts are spent.
//!
//! A call that fails as a whole (a trap, the memory, time or output limit)
//! says nothing about any one message of its batch: the batch is split in
//! halves and each half tried again at once, down to single messages, so
//! only a message that fails alone has an attempt counted against it. A
//! failed call that had sent requests may have delivered some of its
//! messages: their attempts and dead letters say the outcome is unknown
//! (a replay is safe: the downstream dedupes on the idempotency key).

mod control;
mod mirror;
pub(crate) mod throttle;

use std::collections::HashSet;
use std::time::Duration;

pub use crate::breaker::{BreakerState, BreakerView, Tally};
pub use control::{ControlView, Gate, SinkControl};
pub use throttle::ThrottleView;

use syncline_model::{json as mjson, Body, DeliveryOutcome, Kind, Message};

use crate::config::{Tier, Tiers};
use crate::metrics::DeliveryFacts;
use crate::pipeline::{LeaseKeeper, LiveSink, WorkerCtx};
use crate::runtime::{CallError, Failure, PluginInstance};
use crate::store::records::{AuditEntry, AuditEvent};
use crate::store::{now_ms, Attempt, AttemptResult, Delivery, NewDeadLetter, Partition, Queue};

/// Picks the deliveries for one call from claimed (due) rows, given by
/// lane (critical, standard, bulk) and in queue order within each: one per
/// key, at most `max` of them and `max_bytes` of message (the first always).
/// Each lane with rows gets its weighted share of the call — at least one
/// message, so none starves — then what is left goes to the lanes in order.
/// Which rows are due, their lanes, and that a waiting delivery holds back
/// the later ones of its key, is the store's claim.
fn choose(rows: Vec<Delivery>, max: usize, max_bytes: usize, tiers: &Tiers) -> Vec<Delivery> {
    let mut lanes: [Vec<Delivery>; 3] = Default::default();
    for d in rows {
        lanes[d.lane.index()].push(d);
    }
    let weight = |t: Tier| if lanes[t.index()].is_empty() { 0 } else { u64::from(tiers.get(t).weight) };
    let total: u64 = Tier::ALL.into_iter().map(weight).sum();
    let share = |t: Tier| if weight(t) == 0 { 0 } else { ((max as u64 * weight(t)) / total.max(1)).max(1) as usize };
    let shares = Tier::ALL.map(share);
    let mut seen_keys = HashSet::new();
    let mut chosen: Vec<Delivery> = Vec::new();
    let mut bytes = 0;
    let mut lanes = lanes.map(|l| l.into_iter().peekable());
    // First each lane's share, then the rest in lane order.
    for pass in 0..2 {
        for t in Tier::ALL {
            let mut taken = 0;
            while chosen.len() < max && (pass == 1 || taken < shares[t.index()]) {
                let Some(d) = lanes[t.index()].peek() else { break };
                if !seen_keys.insert(d.ordering_key.clone()) {
                    lanes[t.index()].next();
                    continue;
                }
                if !chosen.is_empty() && bytes + d.json.len() > max_bytes {
                    return chosen;
                }
                let d = lanes[t.index()].next().expect("peeked");
                bytes += d.json.len();
                chosen.push(d);
                taken += 1;
            }
        }
    }
    chosen
}

/// An outcome and whether the message may have reached the downstream
/// although the outcome says it did not.
struct Judged {
    outcome: DeliveryOutcome,
    unknown: bool,
}

/// What to record for one delivery after an attempt.
fn judge(sink: &LiveSink, instance: &PluginInstance, d: &Delivery, judged: Judged, now: i64) -> AttemptResult {
    let plugin = instance.plugin();
    let attempt = d.attempts + 1;
    // Its tier's retry policy, else the sink's.
    let retry = sink.cfg.tiers.get(d.tier).retry.as_ref().unwrap_or(&sink.cfg.retry);
    let unknown = judged.unknown || d.outcome_unknown;
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
            outcome_unknown: unknown,
        })
    };
    match judged.outcome {
        DeliveryOutcome::Delivered { reference } => AttemptResult::Delivered(reference),
        DeliveryOutcome::Permanent { reason } => dead(format!("permanent failure: {reason}"), d),
        DeliveryOutcome::Retryable { reason, .. } if attempt >= retry.attempts => dead(format!("gave up after {attempt} attempts; last: {reason}"), d),
        DeliveryOutcome::Retryable { reason, after_ms } => {
            let backoff = retry.backoff(attempt).as_millis() as i64;
            let wait = backoff.max(after_ms.unwrap_or(0) as i64);
            AttemptResult::Retry { error: reason, next_at: now + wait, outcome_unknown: judged.unknown }
        }
    }
}

/// What a call that failed alone means for its one message: a sink that
/// ran out of time or instances may do better later; a trap or a limit on
/// one message will come again.
fn alone(e: &CallError, requests: u32) -> Judged {
    let mut reason = e.to_string();
    let unknown = requests > 0;
    if unknown {
        reason.push_str(&format!(" (outcome unknown: the call had sent {requests} request(s) before it failed)"));
    }
    let outcome = match e.failure {
        Failure::Timeout(_) | Failure::Instantiate(_) => DeliveryOutcome::Retryable { reason, after_ms: None },
        Failure::Plugin(ref p) if p.retryable => DeliveryOutcome::Retryable { reason, after_ms: None },
        _ => DeliveryOutcome::Permanent { reason },
    };
    Judged { outcome, unknown }
}

/// How a call's deliveries went, for the breaker: the downstream answered
/// (delivered, or refused on the merits) or failed (a retryable outcome, a
/// call that ran out of time), and the last failure's text.
#[derive(Default)]
struct Health {
    tally: Tally,
    last_error: String,
    /// The longest wait the downstream asked for (Retry-After), if any.
    pushed_back: Option<u64>,
}

impl Health {
    fn count(&mut self, o: &DeliveryOutcome) {
        match o {
            DeliveryOutcome::Delivered { .. } | DeliveryOutcome::Permanent { .. } => self.tally.ok += 1,
            DeliveryOutcome::Retryable { reason, after_ms } => {
                self.tally.failed += 1;
                self.last_error.clone_from(reason);
                if let Some(ms) = after_ms {
                    self.pushed_back = Some(self.pushed_back.unwrap_or(0).max(*ms));
                }
            }
        }
    }
}

/// Logs a breaker change and keeps it in the audit log.
fn announce(ctx: &WorkerCtx, sink: &str, change: crate::breaker::Change) {
    let (from, to) = (change.from.as_str(), change.to.as_str());
    match change.to {
        BreakerState::Open => tracing::warn!(sink, from, to, reason = %change.reason, "circuit breaker opened: the queue holds"),
        _ => tracing::info!(sink, from, to, reason = %change.reason, "circuit breaker changed"),
    }
    let event = AuditEvent::Breaker { target: format!("sink {sink}"), from: from.into(), to: to.into(), reason: change.reason };
    if let Err(e) = ctx.store().audit(&AuditEntry::host(event)) {
        tracing::warn!(sink, error = %e, "a breaker change could not be audited");
    }
}

/// Delivers `batch` with `instance` and appends an attempt per delivery
/// to `out`. A failed call of several messages is split in halves, each
/// delivered at once. Gives up (leaving the rest pending, unrecorded)
/// when `cancelled` says the worker must stop.
fn deliver(sink: &LiveSink, instance: &PluginInstance, batch: Vec<Delivery>, cancelled: &dyn Fn() -> bool, out: &mut Recorded, health: &mut Health) {
    if batch.is_empty() || cancelled() {
        return;
    }
    let name = sink.cfg.name.as_str();
    let digest = instance.plugin().digest.clone();
    let now = now_ms();
    let mut messages: Vec<Message> = Vec::with_capacity(batch.len());
    let mut sendable = Vec::with_capacity(batch.len());
    for mut d in batch {
        // Handed over in memory, or read back from the store.
        let parsed = match d.message.take() {
            Some(m) => Ok(std::sync::Arc::try_unwrap(m).unwrap_or_else(|m| (*m).clone())),
            None => mjson::from_str(&d.json),
        };
        match parsed {
            Ok(m) => {
                messages.push(m);
                sendable.push(d);
            }
            Err(e) => {
                let outcome = DeliveryOutcome::Permanent { reason: format!("stored message no longer parses: {e}") };
                let result = judge(sink, instance, &d, Judged { outcome, unknown: false }, now);
                out.push(sink, &d, None, Attempt { seq: d.seq, digest: digest.clone(), result });
            }
        }
    }
    if sendable.is_empty() {
        return;
    }
    let about: Vec<About> = messages.iter().map(About::of).collect();
    let plugin = instance.plugin();
    let span = tracing::debug_span!("deliver", sink = name, plugin = %plugin.name, digest = %plugin.digest, messages = messages.len());
    let (result, report) = span.in_scope(|| instance.deliver_reported(messages));
    let now = now_ms();
    match result {
        Ok(outcomes) => {
            for ((d, o), about) in sendable.iter().zip(outcomes).zip(&about) {
                if let DeliveryOutcome::Retryable { reason, .. } | DeliveryOutcome::Permanent { reason } = &o {
                    tracing::debug!(sink = name, delivery = %d.id, attempt = d.attempts + 1, %reason, "delivery failed");
                }
                health.count(&o);
                let result = judge(sink, instance, d, Judged { outcome: o, unknown: false }, now);
                out.push(sink, d, Some(about), Attempt { seq: d.seq, digest: digest.clone(), result });
            }
        }
        Err(e) if sendable.len() > 1 => {
            // Says nothing about any one message: try the halves.
            tracing::warn!(sink = name, messages = sendable.len(), error = %e, "sink call failed as a whole; splitting its batch");
            let second = sendable.split_off(sendable.len() / 2);
            deliver(sink, instance, sendable, cancelled, out, health);
            deliver(sink, instance, second, cancelled, out, health);
        }
        Err(e) => {
            let d = &sendable[0];
            tracing::warn!(sink = name, delivery = %d.id, attempt = d.attempts + 1, error = %e, "sink call failed for one message");
            let judged = alone(&e, report.http_requests);
            if matches!(judged.outcome, DeliveryOutcome::Retryable { .. }) {
                health.count(&judged.outcome);
            }
            let result = judge(sink, instance, d, judged, now);
            out.push(sink, d, about.first(), Attempt { seq: d.seq, digest, result });
        }
    }
}

/// The attempts of one sink call, and what the metrics count of each.
#[derive(Default)]
struct Recorded {
    attempts: Vec<Attempt>,
    facts: Vec<DeliveryFacts>,
}

impl Recorded {
    fn push(&mut self, sink: &LiveSink, d: &Delivery, about: Option<&About>, attempt: Attempt) {
        let outcome = match &attempt.result {
            AttemptResult::Delivered(_) => "delivered",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Dead(_) => "dead-lettered",
        };
        self.facts.push(DeliveryFacts {
            tenant: about.map(|a| a.tenant.clone()).unwrap_or_default(),
            kind: about.map_or(Kind::Raw, |a| a.kind),
            accepted_ms: ulid::Ulid::from_string(&d.id).ok().map(|u| u.timestamp_ms() as i64),
            occurred_ms: about.and_then(|a| a.occurred_ms),
            alert_after: sink.cfg.tiers.get(d.tier).alert_after,
            outcome,
        });
        self.attempts.push(attempt);
    }
}

/// What the metrics need of a message, taken before the call consumes it.
struct About {
    tenant: String,
    kind: Kind,
    /// When an inventory position's stock was counted (ms).
    occurred_ms: Option<i64>,
}

impl About {
    fn of(m: &Message) -> About {
        let ms = |text: &str| time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        // An inventory position's event: when the stock was counted (its
        // `as-of`), else when the message says it happened.
        let occurred_ms = match &m.body {
            Body::InventoryPosition(p) => ms(&p.as_of).or_else(|| ms(&m.occurred_at)),
            _ => None,
        };
        About { tenant: m.tenant.clone(), kind: m.body.kind(), occurred_ms }
    }
}

/// The loop of worker `part` of the sink's `workers`: lease the part of
/// the sink's queue, claim due deliveries, deliver, ack.
pub fn run(ctx: &WorkerCtx, sink: &LiveSink, part: u32) {
    let name = sink.cfg.name.as_str();
    let batch = sink.cfg.batch.max(1);
    let cancelled = || ctx.stopping() || sink.retired();
    let partition = Partition { queue: Queue::Deliveries { sink: name.to_string() }, index: part, of: sink.cfg.workers };
    let mut keeper = LeaseKeeper::new(ctx.store(), partition, ctx.holder());
    let mut mirror = crate::handoff::Mirror::default();
    while !cancelled() {
        let seen = sink.signal.generation();
        let lease = match keeper.lease() {
            Ok(l) => l.clone(),
            Err(e) => {
                // Another process holding it is the normal state of a cluster;
                // its work is not this worker's until it lets go.
                if matches!(e, crate::store::StoreError::Conflict(_)) {
                    tracing::debug!(sink = name, part, error = %e, "the delivery queue is another holder's; trying again later");
                    std::thread::sleep(LeaseKeeper::pause(&e));
                    continue;
                }
                tracing::warn!(sink = name, part, error = %e, "cannot lease the delivery queue; trying again");
                sink.signal.wait(seen, LeaseKeeper::pause(&e));
                continue;
            }
        };
        let now = now_ms();
        let (gate, change) = sink.control.admit(now);
        if let Some(c) = change {
            announce(ctx, name, c);
        }
        let (limit, probe) = match gate {
            Gate::All => (batch, false),
            Gate::Probe => (1, true),
            Gate::Hold { until, .. } => {
                let wait = until.map_or(1000, |u| (u - now).clamp(1, 1000)) as u64;
                sink.signal.wait(seen, Duration::from_millis(wait));
                continue;
            }
        };
        let (due, from) = match mirror::take(&mut mirror, ctx.store(), &lease, sink.inboxes.part(part), now, limit * 2) {
            Ok(r) => r,
            Err(e) => {
                if probe {
                    sink.control.record(now, Tally::default(), true, "");
                }
                // Taken over, or handed to the process that should hold it:
                // lease it again (another's, it waits).
                if matches!(e, crate::store::StoreError::Conflict(_)) {
                    tracing::info!(sink = name, part, reason = %e, "this delivery queue's part is another process's now");
                    keeper.refused(&e);
                    continue;
                }
                tracing::error!(sink = name, error = %e, "cannot read the delivery queue; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let throttle = sink.control.throttle();
        let chosen = choose(due.rows, throttle.max_batch(limit), sink.cfg.batch_bytes, &sink.cfg.tiers);
        if chosen.is_empty() {
            if probe {
                // Nothing to probe with: the next delivery will be.
                sink.control.record(now, Tally::default(), true, "");
            }
            let wait = due.next_at.map_or(1000, |e| (e - now).clamp(1, 1000)) as u64;
            sink.signal.wait(seen, Duration::from_millis(wait));
            continue;
        }
        let mut chosen = chosen;
        // `choose` puts the most urgent lane first.
        let lead = chosen[0].lane;
        match throttle.take(chosen.len(), lead, now) {
            // What the limit lets through now, most urgent lane first; the
            // rest are not sent, not recorded: they stay due for the next call.
            Ok(n) => chosen.truncate(n),
            Err(at) => {
                // A sleep, not a wait on the signal: new work would only wake
                // the worker to find the same limit.
                if probe {
                    sink.control.record(now, Tally::default(), true, "");
                }
                std::thread::sleep(Duration::from_millis((at - now).clamp(1, 250) as u64));
                continue;
            }
        }
        ctx.metrics().taken(name, from.as_str(), chosen.len());
        // This call's version: a swap affects the next call.
        let instance = sink.instance.load_full();
        let mut recorded = Recorded::default();
        let mut health = Health::default();
        deliver(sink, &instance, chosen, &cancelled, &mut recorded, &mut health);
        match health.pushed_back {
            Some(ms) => {
                tracing::info!(sink = name, wait_ms = ms, "the downstream pushed back: holding the sink and slowing down");
                throttle.pushed_back(now_ms(), ms);
            }
            None if health.tally.ok > 0 => throttle.went_through(),
            None => {}
        }
        if let Some(c) = sink.control.record(now_ms(), health.tally, probe, &health.last_error) {
            announce(ctx, name, c);
            // Other workers wait on the breaker's time, or deliver again.
            sink.signal.notify();
        }
        mirror::follow(&mut mirror, &recorded.attempts);
        match ctx.store().ack_deliveries(&lease, recorded.attempts) {
            Ok(()) => ctx.metrics().delivered(name, &recorded.facts, now_ms()),
            Err(e) => {
                mirror.forget();
                // Not recorded: these deliveries stay pending and are sent
                // again with the same idempotency keys.
                tracing::error!(sink = name, error = %e, "cannot record delivery outcomes");
                keeper.refused(&e);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: i64, key: &str, bytes: usize) -> Delivery {
        in_lane(seq, key, bytes, Tier::Standard)
    }

    fn in_lane(seq: i64, key: &str, bytes: usize, lane: Tier) -> Delivery {
        Delivery {
            seq,
            id: seq.to_string(),
            ordering_key: key.into(),
            tier: lane,
            lane,
            attempts: 0,
            next_at: 0,
            json: "x".repeat(bytes),
            errors: vec![],
            outcome_unknown: false,
            message: None,
        }
    }

    fn seqs(v: &[Delivery]) -> Vec<i64> {
        v.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn a_call_holds_one_message_per_key() {
        let chosen = choose(vec![d(1, "a", 1), d(2, "a", 1), d(3, "b", 1), d(4, "b", 1), d(5, "c", 1)], 10, 1000, &Tiers::default());
        assert_eq!(seqs(&chosen), vec![1, 3, 5]);
    }

    #[test]
    fn a_call_holds_no_more_bytes_than_allowed_but_always_one_message() {
        let rows = || vec![d(1, "a", 600), d(2, "b", 300), d(3, "c", 300), d(4, "d", 10)];
        assert_eq!(seqs(&choose(rows(), 10, 1000, &Tiers::default())), vec![1, 2]);
        // A message larger than the byte limit goes alone.
        assert_eq!(seqs(&choose(vec![d(1, "a", 5000), d(2, "b", 1)], 10, 1000, &Tiers::default())), vec![1]);
        assert_eq!(seqs(&choose(rows(), 2, 100_000, &Tiers::default())), vec![1, 2]);
    }

    #[test]
    fn critical_goes_first_by_weight_and_bulk_still_gets_its_share() {
        // Bulk queued long before: 20 bulk rows, then 6 critical, 2 standard.
        let mut rows: Vec<Delivery> = (0..6).map(|i| in_lane(100 + i, &format!("c{i}"), 1, Tier::Critical)).collect();
        rows.extend((0..2).map(|i| in_lane(50 + i, &format!("s{i}"), 1, Tier::Standard)));
        rows.extend((0..20).map(|i| in_lane(i, &format!("b{i}"), 1, Tier::Bulk)));
        // Weights 8:4:1 of 10: critical 6, standard 3 (it has 2), bulk 1 (at least one); the rest in lane order.
        let chosen = choose(rows.clone(), 10, 100_000, &Tiers::default());
        assert_eq!(seqs(&chosen), vec![100, 101, 102, 103, 104, 105, 50, 51, 0, 1]);
        // A small call still gives each waiting lane one place.
        let chosen = choose(rows, 3, 100_000, &Tiers::default());
        assert_eq!(seqs(&chosen), vec![100, 50, 0]);
    }
}

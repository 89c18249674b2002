//! Housekeeping: forget idempotency keys older than the dedupe window and
//! finished work older than the retention; report exceptions open past
//! their queue's SLA (once each: logged and audited) and sink lanes whose
//! oldest delivery waited past its tier's `alert-after` (once until the
//! lane catches up); check planning feeds against their freshness
//! ([`super::fallback`]) and delivered orders against their expected
//! execution status ([`super::loops`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Ingest, TopologyView, WorkerCtx};
use crate::config::Tier;
use crate::store::records::{AuditEntry, AuditEvent, ExceptionFilter};

/// How often exceptions are checked against their queue's SLA.
const SLA_EVERY: Duration = Duration::from_secs(1);

/// Reports each open exception past its queue's SLA, once. `seen` holds,
/// per queue, the highest exception number already looked at: numbers grow
/// with time, so each pass reads only the exceptions that became overdue
/// since the last (paged, however many there are).
fn report_overdue(ctx: &WorkerCtx, topology: &TopologyView, now: i64, seen: &mut HashMap<String, i64>) {
    let topology = topology.current();
    for (queue, q) in &topology.config.exception_queues {
        let Some(sla) = q.sla else { continue };
        let filter = ExceptionFilter { queue: Some(queue.to_string()), before: Some(now - sla.as_millis() as i64), ..Default::default() };
        let after = seen.entry(queue.to_string()).or_insert(0);
        loop {
            let rows = match ctx.store().exceptions(&filter, *after, 500) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "cannot check exceptions against their SLA");
                    break;
                }
            };
            for e in &rows {
                *after = e.id;
                if e.overdue_at.is_some() {
                    continue;
                }
                let age_ms = now - e.at;
                tracing::warn!(%queue, owner = %q.owner, id = e.id, message = %e.message_id, age_ms, "exception open past its queue's SLA");
                let event = AuditEvent::ExceptionOverdue { id: e.id, queue: queue.to_string(), owner: q.owner.clone(), age_ms };
                if let Err(err) = ctx.store().mark_exception_overdue(e.id, now).and_then(|()| ctx.store().audit(&AuditEntry::host(event.clone()))) {
                    tracing::warn!(id = e.id, error = %err, "cannot record an overdue exception");
                }
            }
            if rows.len() < 500 {
                break;
            }
        }
    }
}

/// Reports each sink lane whose oldest delivery waited past its tier's
/// `alert-after`, once until it catches up (`late` holds those reported).
fn report_late_lanes(ctx: &WorkerCtx, topology: &TopologyView, now: i64, late: &mut HashSet<(String, Tier)>) {
    let topology = topology.current();
    let Ok(backlog) = ctx.store().backlog() else { return };
    let mut still = HashSet::new();
    for (sink, tier, pending, oldest) in backlog.lanes {
        let Some(limit) = topology.config.tiers.get(tier).alert_after else { continue };
        let waited = now - oldest;
        if waited <= limit.as_millis() as i64 {
            continue;
        }
        let lane = (sink, tier);
        if !late.contains(&lane) {
            tracing::warn!(sink = %lane.0, tier = tier.as_str(), pending, waited_ms = waited, "deliveries waited past their tier's alert-after");
            let event = AuditEvent::TierLate { sink: lane.0.clone(), tier: tier.as_str().into(), pending, oldest_ms: waited };
            if let Err(e) = ctx.store().audit(&AuditEntry::host(event)) {
                tracing::warn!(error = %e, "cannot record a late lane");
            }
        }
        still.insert(lane);
    }
    *late = still;
}

pub(crate) fn run(ctx: &WorkerCtx, topology: &TopologyView, ingest: &Ingest) {
    let mut next = Instant::now();
    let mut next_sla = Instant::now();
    let mut late = HashSet::new();
    let mut stale = super::fallback::Stale::new();
    let mut overdue_seen = HashMap::new();
    while !ctx.stopping() {
        if Instant::now() >= next_sla {
            report_overdue(ctx, topology, crate::store::now_ms(), &mut overdue_seen);
            report_late_lanes(ctx, topology, crate::store::now_ms(), &mut late);
            super::fallback::check(ctx, topology, ingest, crate::store::now_ms(), &mut stale);
            super::loops::check(ctx, topology, crate::store::now_ms());
            next_sla = Instant::now() + SLA_EVERY;
        }
        if Instant::now() >= next {
            let store = topology.current().config.store.clone();
            let now = crate::store::now_ms();
            match ctx.store().prune_idempotency(now - store.dedupe_window.0.as_millis() as i64) {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "forgot idempotency keys past the dedupe window"),
                Err(e) => tracing::warn!(error = %e, "cannot prune idempotency keys"),
            }
            match ctx.store().prune(now - store.retention.0.as_millis() as i64) {
                Ok(p) if p.messages + p.deliveries == 0 => {}
                Ok(p) => tracing::info!(messages = p.messages, deliveries = p.deliveries, pages_freed = p.pages_freed, "pruned finished work past the retention"),
                Err(e) => tracing::warn!(error = %e, "cannot prune finished work"),
            }
            next = Instant::now() + (store.retention.0 / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

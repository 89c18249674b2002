//! Housekeeping: forget idempotency keys older than the dedupe window and
//! finished work older than the retention.

use std::time::{Duration, Instant};

use super::{TopologyView, WorkerCtx};

/// Housekeeping: forget idempotency keys older than the dedupe window
/// and finished work older than the retention, every quarter of the
/// retention (at least every minute, at most every second).
pub(crate) fn run(ctx: &WorkerCtx, topology: &TopologyView) {
    let mut next = Instant::now();
    while !ctx.stopping() {
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

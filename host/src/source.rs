//! Sources: a polled pipeline's source plugin is called every `every`, with
//! the cursor the store holds. The messages it returns and its new cursor
//! are committed in one transaction, so a restart continues where it
//! stopped and a crash re-polls rather than loses. On a store several hosts
//! share, one process at a time polls a source: the one holding its lease.

use std::time::{Duration, Instant};

use crate::pipeline::{Ingest, LivePipeline, WorkerCtx};

/// The poller loop of `p`.
pub fn run(ctx: &WorkerCtx, ingest: &Ingest, p: &LivePipeline) {
    let Some(source) = &p.source else { return };
    let crate::config::Source::Poll { every, .. } = &p.cfg.source else { return };
    let name = format!("{}/{}", p.cfg.tenant, p.cfg.id);
    // Until when this process may poll (renewed when half of it is gone).
    let mut held_until = 0;
    while !ctx.stopping() && !p.retired() {
        let now = crate::store::now_ms();
        if held_until - now < crate::store::LEASE_TTL_MS / 2 {
            match ctx.store().lease_source(&name, ctx.holder(), now, crate::store::LEASE_TTL_MS) {
                Ok(true) => held_until = now + crate::store::LEASE_TTL_MS,
                Ok(false) => {
                    // Another process polls it.
                    held_until = 0;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot lease the source; trying again");
                    held_until = 0;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let source = source.load_full();
        let plugin = source.plugin().name.clone();
        let mut again = false;
        match ctx.store().cursor(&name) {
            Err(e) => tracing::error!(source = %name, error = %e, "cannot read the source cursor"),
            Ok(cursor) => match source.poll(p.cfg.tenant.as_str(), cursor.as_deref()) {
                Err(e) => tracing::warn!(source = %name, error = %e, "poll failed; will poll again"),
                Ok(batch) => {
                    let count = batch.messages.len();
                    let mut prepared = Vec::with_capacity(count);
                    for m in batch.messages {
                        match ingest.prepare(p, m, &plugin, None) {
                            Ok(n) => prepared.push(n),
                            Err(e) => {
                                ctx.metrics().source_refused(p.cfg.tenant.as_str(), p.cfg.id.as_str());
                                tracing::warn!(source = %name, error = %e, "polled message refused; the source moves past it");
                            }
                        }
                    }
                    let cursor = batch.cursor.map(|position| crate::store::Cursor { source: name.clone(), position });
                    match ctx.store().append(prepared, cursor).wait() {
                        Ok(outcomes) => {
                            p.signal.notify();
                            ingest.counted(p, &outcomes);
                            tracing::debug!(source = %name, count, "polled");
                            again = batch.more;
                        }
                        Err(e) => tracing::error!(source = %name, error = %e, "cannot store polled messages; the cursor is unchanged"),
                    }
                }
            },
        }
        if again {
            continue;
        }
        let until = Instant::now() + *every;
        while !ctx.stopping() && !p.retired() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
    }
}

//! One pipeline shard's loop: lease the shard's partition, take due
//! messages in order — handed over in memory when accepted, or claimed
//! from the store ([`crate::handoff`]) — waiting up to an allocate stage's
//! window for a fuller batch, process them ([`super::process`]) and ack
//! the results at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{process, LeaseKeeper, LivePipeline, StageGate, WorkerCtx};
use crate::breaker::BreakerState;
use crate::handoff::{Mirror, Taken};
use crate::store::records::{AuditEntry, AuditEvent};
use crate::store::{Commit, Due, Lease, Partition, Pending, Queue, StoreError};

/// The due messages after seq `after`, up to `limit`, as
/// [`crate::store::Store::claim`] gives them: from memory when in sync,
/// else claimed from the store.
#[allow(clippy::too_many_arguments)]
fn take(ctx: &WorkerCtx, p: &LivePipeline, shard: u32, mirror: &mut Mirror<Pending>, lease: &Lease, after: i64, now: i64, limit: usize) -> Result<(Due<Pending>, Taken), StoreError> {
    let store = ctx.store();
    let (due, from) = mirror.due(
        p.inboxes.part(shard),
        lease.token,
        now,
        limit,
        |max| store.snapshot_messages(lease, now, max),
        |rows| serve(rows, after, limit),
        || store.claim(lease, after, now, limit),
    )?;
    ctx.metrics().messages_taken(p.cfg.tenant.as_str(), p.cfg.id.as_str(), from.as_str(), due.rows.len());
    Ok((due, from))
}

/// Of `rows` (every accepted message of a shard, none waiting), the first
/// `limit` after seq `after`; each hands its message over (one served again
/// later parses its JSON).
fn serve(rows: &mut BTreeMap<i64, Pending>, after: i64, limit: usize) -> Vec<Pending> {
    rows.range_mut(after + 1..).take(limit).map(|(_, p)| Pending { message: p.message.take(), ..p.clone() }).collect()
}

/// Follows a commit in memory: what it settled leaves; a message nacked for
/// a retry (now waiting in the store) ends the sync.
fn follow(mirror: &mut Mirror<Pending>, rows: &[Pending], commit: &Commit) {
    let seq: std::collections::HashMap<&str, i64> = rows.iter().map(|r| (r.id.as_str(), r.seq)).collect();
    for processed in &commit.processed {
        let Some(seq) = seq.get(processed.id.as_str()) else { continue };
        if processed.retry.is_some() {
            return mirror.waits();
        }
        mirror.left(*seq);
    }
}

/// Logs and audits the changes of the pipeline's stage breakers.
fn announce(ctx: &WorkerCtx, p: &LivePipeline) {
    for (no, s) in p.stages.iter().enumerate() {
        for c in s.take_changes() {
            let target = format!("stage {} of {}/{} ({})", no + 1, p.cfg.tenant, p.cfg.id, s.cfg.plugin.name);
            let (from, to) = (c.from.as_str(), c.to.as_str());
            match c.to {
                BreakerState::Open => tracing::warn!(%target, from, to, reason = %c.reason, "plugin breaker opened: the pipeline's queue holds"),
                _ => tracing::info!(%target, from, to, reason = %c.reason, "plugin breaker changed"),
            }
            if let Err(e) = ctx.store().audit(&AuditEntry::host(AuditEvent::Breaker { target, from: from.into(), to: to.into(), reason: c.reason })) {
                tracing::warn!(error = %e, "a breaker change could not be audited");
            }
        }
    }
}

/// One shard's loop: lease the shard's partition, claim due messages in
/// order, process, ack. It claims from the head of the partition each
/// time, so a message waiting for a retry is taken again once it is due.
pub(crate) fn run(ctx: &WorkerCtx, p: &LivePipeline, shard: u32) {
    let (tenant, id) = (p.cfg.tenant.as_str(), p.cfg.id.as_str());
    let (batch_max, window) = p.batch_window();
    let queue = Queue::Messages { tenant: tenant.to_string(), pipeline: id.to_string() };
    let mut keeper = LeaseKeeper::new(ctx.store(), Partition { queue, index: shard, of: p.shards }, ctx.holder());
    let mut mirror = Mirror::default();
    while !ctx.stopping() && !p.retired() {
        let seen = p.signal.generation();
        let lease = match keeper.lease() {
            Ok(l) => l.clone(),
            Err(e) => {
                // Another process holding it is the normal state of a cluster;
                // its work is not this worker's until it lets go.
                if matches!(e, crate::store::StoreError::Conflict(_)) {
                    tracing::debug!(pipeline = id, shard, error = %e, "the shard is another holder's; trying again later");
                    std::thread::sleep(LeaseKeeper::pause(&e));
                    continue;
                }
                tracing::warn!(pipeline = id, shard, error = %e, "cannot lease the shard; trying again");
                p.signal.wait(seen, LeaseKeeper::pause(&e));
                continue;
            }
        };
        let now = crate::store::now_ms();
        // A stage whose plugin keeps failing holds the pipeline's queue.
        let gate = p.gate(now);
        announce(ctx, p);
        let limit = match gate {
            StageGate::All => batch_max,
            StageGate::Probe => 1,
            StageGate::Hold(until) => {
                p.signal.wait(seen, Duration::from_millis((until - now).clamp(1, 1000) as u64));
                continue;
            }
        };
        let due = match take(ctx, p, shard, &mut mirror, &lease, 0, now, limit) {
            Ok((d, _)) => d,
            Err(e) => {
                if gate == StageGate::Probe {
                    p.return_probe(now);
                }
                // Taken over, or handed to the process that should hold it:
                // lease it again (another's, it waits).
                if matches!(e, StoreError::Conflict(_)) {
                    tracing::info!(pipeline = id, shard, reason = %e, "this shard is another process's now");
                    keeper.refused(&e);
                    continue;
                }
                tracing::error!(pipeline = id, error = %e, "cannot read pending messages; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let mut rows = due.rows;
        if rows.is_empty() {
            if gate == StageGate::Probe {
                p.return_probe(now);
            }
            let wait = due.next_at.map_or(250, |at| (at - now).clamp(1, 250)) as u64;
            p.signal.wait(seen, Duration::from_millis(wait));
            continue;
        }
        // An allocate stage wants full batches: wait up to its window for more.
        let deadline = Instant::now() + window;
        while rows.len() < limit && Instant::now() < deadline && !ctx.stopping() && !p.retired() {
            let seen = p.signal.generation();
            p.signal.wait(seen, deadline.saturating_duration_since(Instant::now()));
            let last = rows.last().map(|r| r.seq).unwrap_or(0);
            match take(ctx, p, shard, &mut mirror, &lease, last, crate::store::now_ms(), limit - rows.len()) {
                Ok((more, _)) => rows.extend(more.rows),
                Err(_) => break,
            }
        }
        let cancel = || ctx.stopping() || p.retired();
        let shard_ref = crate::store::records::ShardRef { index: shard, of: p.shards };
        let batch = tracing::debug_span!("batch", tenant = p.cfg.tenant.as_str(), pipeline = id, shard, messages = rows.len());
        let processed = batch.in_scope(|| process::process(p, shard_ref, &mut rows, ctx.store().record_limit(), &cancel));
        if gate == StageGate::Probe {
            // A stage the probe never reached (an earlier one failed, or
            // processing stopped) gives its probe back.
            p.return_probe(crate::store::now_ms());
        }
        announce(ctx, p);
        let Some((commit, allocated)) = processed else {
            // Stopping or retired mid-batch: nothing is acked; the rows
            // stay claimable for whoever runs the pipeline next.
            break;
        };
        // Counted once durable; the store takes the commit (and hands
        // what it queues to the sink workers: see `handoff::Handoff`).
        let observed = crate::metrics::Observed::of(&commit, allocated);
        follow(&mut mirror, &rows, &commit);
        match ctx.store().ack(&lease, commit) {
            Ok(()) => ctx.metrics().processed(observed),
            Err(e) => {
                mirror.forget();
                // Nothing was recorded: the same rows are processed again (same ids, same keys).
                tracing::error!(pipeline = id, error = %e, "cannot ack processed messages; will process them again");
                keeper.refused(&e);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The shard loop over the in-memory store: claims, acks, routing and
    //! the lease as a fence — no Wasm, no SQLite, no HTTP.

    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use syncline_model::{Body, Message, Raw};

    use super::super::crew::Crews;
    use super::{follow, serve, Mirror, Pending, Taken};
    use super::super::{Ingest, LivePipeline, Signal, Topology, TopologyView};
    use crate::store::{now_ms, Attempt, AttemptResult, MemoryStore, Partition, Queue, Store, LEASE_TTL_MS};

    const CONFIG: &str = r#"
version = 1
[store]
path = "data/s.db"
[[tenant]]
id = "acme"
[[pipeline]]
id = "recs"
tenant = "acme"
ordering-key = { raw = ["/sku"] }
routes = [{ to = "erp" }]
[sink.erp]
plugin = "http-sink"
"#;

    fn metrics() -> Arc<crate::metrics::Metrics> {
        Arc::new(crate::metrics::Metrics::new(&crate::metrics::PluginCalls::default()))
    }

    /// A pipeline without stages (it only routes) over `store`.
    fn setup(store: Arc<MemoryStore>) -> (tempfile::TempDir, Arc<LivePipeline>, TopologyView, Ingest) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins/shared")).unwrap();
        std::fs::write(dir.path().join("plugins/shared/http-sink.wasm"), b"").unwrap();
        let config = crate::config::load_str(&dir.path().join("syncline.toml"), CONFIG).unwrap();
        let p = Arc::new(LivePipeline {
            cfg: config.pipelines[0].clone(),
            stages: Vec::new(),
            source: None,
            signal: Signal::default(),
            shards: 1,
            inboxes: crate::handoff::Inboxes::new(1),
            retired: AtomicBool::new(false),
        });
        let mut pipelines = BTreeMap::new();
        pipelines.insert(("acme".to_string(), "recs".to_string()), p.clone());
        let view = TopologyView::new(Topology { config, pipelines, sinks: BTreeMap::new() });
        let ingest = Ingest::new(view.clone(), store, metrics());
        (dir, p, view, ingest)
    }

    fn send(ingest: &Ingest, p: &LivePipeline, sku: &str, n: usize) -> String {
        let data = format!(r#"{{"sku": "{sku}", "n": {n}}}"#).into_bytes();
        let msg = Message::new(Body::Raw(Raw { content_type: "application/json".into(), data }));
        let prepared = ingest.prepare(p, msg, "test", None).unwrap();
        let id = prepared.id.clone();
        ingest.accept(p, vec![prepared]).unwrap();
        id
    }

    fn until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn done(store: &MemoryStore) -> i64 {
        store.counts().unwrap().messages.get("done").copied().unwrap_or(0)
    }

    #[test]
    fn a_shard_claims_routes_and_acks_in_order_per_key() {
        let store = Arc::new(MemoryStore::new());
        let (_dir, p, _view, ingest) = setup(store.clone());
        let crews = Crews::new(store.clone(), "host-a", metrics());
        let pp = p.clone();
        crews.spawn(super::super::crew::Owner::Maintenance, "shard".into(), move |ctx| super::run(&ctx, &pp, 0));
        let ids: Vec<String> = (0..6).map(|n| send(&ingest, &p, if n % 2 == 0 { "A" } else { "B" }, n)).collect();
        until("six messages processed", || done(&store) == 6);
        crews.stop(|| p.signal.notify());
        for id in &ids {
            let t = store.trace(id).unwrap().unwrap();
            let processing = t.input.unwrap().processing.unwrap();
            assert_eq!(processing.shard.map(|s| (s.index, s.of)), Some((0, 1)));
            assert_eq!(t.outputs.len(), 1, "routed to the one sink");
            assert_eq!(t.outputs[0].sink, "erp");
        }
        // The sink's queue holds them in acceptance order: the first of each
        // key is due, and each next one once the one before is delivered.
        let sink = store.lease(&Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 }, "host-a", now_ms(), 1000).unwrap();
        let mut delivered = Vec::new();
        while delivered.len() < ids.len() {
            let due = store.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
            assert_eq!(due.len(), 2, "one per key");
            let ok = |d: &crate::store::Delivery| Attempt { seq: d.seq, digest: "x".into(), result: AttemptResult::Delivered("ok".into()) };
            store.ack_deliveries(&sink, due.iter().map(ok).collect()).unwrap();
            delivered.extend(due.into_iter().map(|d| d.id));
        }
        assert_eq!(delivered, ids);
    }

    #[test]
    fn a_shard_waits_while_another_host_holds_its_partition() {
        let store = Arc::new(MemoryStore::new());
        let (_dir, p, _view, ingest) = setup(store.clone());
        let partition = Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "recs".into() }, index: 0, of: 1 };
        let other = store.lease(&partition, "host-b", now_ms(), LEASE_TTL_MS).unwrap();
        let crews = Crews::new(store.clone(), "host-a", metrics());
        let pp = p.clone();
        crews.spawn(super::super::crew::Owner::Maintenance, "shard".into(), move |ctx| super::run(&ctx, &pp, 0));
        send(&ingest, &p, "A", 0);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(done(&store), 0, "host-b holds the partition: host-a processes nothing");
        store.release(&other).unwrap();
        until("host-a takes the partition over", || done(&store) == 1);
        crews.stop(|| p.signal.notify());
        // host-a released it when it stopped: host-b may take it at once.
        assert!(store.lease(&partition, "host-b", now_ms(), LEASE_TTL_MS).unwrap().token > other.token);
    }

    #[test]
    fn accepted_messages_are_served_from_memory_as_the_store_would_claim_them() {
        use crate::handoff::Handoff;
        use crate::store::{Commit, Final, Processed, Retry};
        let store = Arc::new(MemoryStore::new());
        let (_dir, p, view, ingest) = setup(store.clone());
        store.watch(Arc::new(Handoff(view)));
        let lease = store.lease(&Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "recs".into() }, index: 0, of: 1 }, "host-a", now_ms(), 60_000).unwrap();
        let mut mirror = Mirror::default();
        let take = |mirror: &mut Mirror<Pending>, after: i64, at: i64| {
            let (due, from) = mirror
                .due(p.inboxes.part(0), lease.token, at, 10, |max| store.snapshot_messages(&lease, at, max), |rows| serve(rows, after, 10), || store.claim(&lease, after, at, 10))
                .unwrap();
            (due.rows, from)
        };
        let ack = |mirror: &mut Mirror<Pending>, rows: &[Pending], processed: Vec<Processed>| {
            let commit = Commit { tenant: "acme".into(), pipeline: "recs".into(), processed, audit: vec![] };
            follow(mirror, rows, &commit);
            store.ack(&lease, commit).unwrap();
        };
        let done = |id: &str| Processed { id: id.into(), state: Final::Done, processing: Default::default(), retry: None, deliveries: vec![], dead_letters: vec![], exceptions: vec![], baseline: vec![] };
        let (rows, from) = take(&mut mirror, 0, now_ms());
        assert_eq!((rows.len(), from), (0, Taken::Memory), "in sync on an empty queue");
        let a = send(&ingest, &p, "A", 0);
        let b = send(&ingest, &p, "B", 1);
        let (rows, from) = take(&mut mirror, 0, now_ms());
        assert_eq!((ids(&rows), from), (vec![a.clone(), b.clone()], Taken::Memory));
        let claimed = store.claim(&lease, 0, now_ms(), 10).unwrap().rows;
        assert_eq!(rows.iter().map(|r| (r.seq, &r.json)).collect::<Vec<_>>(), claimed.iter().map(|r| (r.seq, &r.json)).collect::<Vec<_>>(), "what the claim gives");
        // The message is handed over, and is what its stored JSON says.
        let handed = rows[0].message.as_deref().expect("handed over in memory");
        assert_eq!(*handed, syncline_model::json::from_str(&rows[0].json).unwrap());
        // The window's next take: only what came after.
        let c = send(&ingest, &p, "A", 2);
        let (more, _) = take(&mut mirror, rows[1].seq, now_ms());
        assert_eq!(ids(&more), [c.clone()]);
        // Acked: a and c leave; b is nacked and waits, so the store is read
        // (c's key A is free, b's key B is held).
        let all: Vec<Pending> = rows.into_iter().chain(more).collect();
        let retry = Processed { retry: Some(Retry { next_at: now_ms() + 60_000, errors: vec!["flaky".into()] }), ..done(&b) };
        ack(&mut mirror, &all, vec![done(&a), retry, done(&c)]);
        let d = send(&ingest, &p, "B", 3);
        let (rows, from) = take(&mut mirror, 0, now_ms());
        assert_eq!((ids(&rows), from), (vec![], Taken::Store), "d waits behind b");
        assert!(!mirror.in_sync());
        // b due and done, d done: the queue is short with nothing waiting again.
        let (rows, from) = take(&mut mirror, 0, now_ms() + 60_000);
        assert_eq!((ids(&rows), from), (vec![b.clone(), d.clone()], Taken::Store));
        ack(&mut mirror, &rows, vec![done(&b), done(&d)]);
        let (rows, from) = take(&mut mirror, 0, now_ms());
        assert_eq!((rows.len(), from), (0, Taken::Memory), "in sync again");
    }

    fn ids(rows: &[Pending]) -> Vec<String> {
        rows.iter().map(|r| r.id.clone()).collect()
    }
}

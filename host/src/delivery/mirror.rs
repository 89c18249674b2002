//! A sink worker's queue in memory ([`crate::handoff`]): the deliveries
//! its partition holds, served as the store's claim would serve them —
//! each key's first, in the lane of the highest tier among its key's
//! deliveries — and followed through each call's attempts.

use std::collections::{BTreeMap, HashMap};

use crate::config::Tier;
use crate::handoff::{Inbox, Mirror, Taken};
use crate::store::{Attempt, AttemptResult, Delivery, Due, Lease, Store, StoreError};

/// The due deliveries, as [`Store::claim_deliveries`] gives them: from
/// memory when in sync, else claimed from the store.
///
/// # Errors
///
/// [`StoreError`] of the snapshot or claim.
pub fn take(mirror: &mut Mirror<Delivery>, store: &dyn Store, lease: &Lease, inbox: &Inbox<Delivery>, now_ms: i64, limit: usize) -> Result<(Due<Delivery>, Taken), StoreError> {
    mirror.due(
        inbox,
        lease.token,
        now_ms,
        limit,
        |max| store.snapshot_deliveries(lease, now_ms, max),
        |rows| heads(rows, limit),
        || store.claim_deliveries(lease, now_ms, limit),
    )
}

/// Follows a call's recorded attempts: what was delivered or
/// dead-lettered leaves the memory; a retry (now waiting in the store)
/// ends the sync.
pub fn follow(mirror: &mut Mirror<Delivery>, attempts: &[Attempt]) {
    for a in attempts {
        match a.result {
            AttemptResult::Delivered(_) | AttemptResult::Dead(_) => mirror.left(a.seq),
            AttemptResult::Retry { .. } => return mirror.waits(),
        }
    }
}

/// Of `rows` (every pending delivery of a partition, none waiting): each
/// key's first, served in the lane of the highest tier among the key's
/// deliveries, by lane and in queue order within each, at most `limit`
/// per lane — what the store's claim gives. The heads hand their message
/// over (a head taken again later parses its JSON).
fn heads(rows: &mut BTreeMap<i64, Delivery>, limit: usize) -> Vec<Delivery> {
    let mut first: HashMap<&str, (i64, Tier)> = HashMap::new();
    for (seq, d) in rows.iter() {
        let head = first.entry(d.ordering_key.as_str()).or_insert((*seq, d.tier));
        head.1 = head.1.min(d.tier);
    }
    let mut lanes: [Vec<(i64, Tier)>; 3] = Default::default();
    for (seq, lane) in first.into_values() {
        lanes[lane.index()].push((seq, lane));
    }
    let mut due = Vec::new();
    for mut lane in lanes {
        lane.sort_unstable_by_key(|(seq, _)| *seq);
        for (seq, tier) in lane.into_iter().take(limit) {
            let d = rows.get_mut(&seq).expect("a head is a row");
            let message = d.message.take();
            due.push(Delivery { lane: tier, message, ..d.clone() });
        }
    }
    due
}

#[cfg(test)]
mod tests {
    //! The mirror against the in-memory store: it serves what the store's
    //! claim would, and falls back to the store whenever memory may be
    //! short of the truth.

    use std::sync::Arc;

    use super::*;
    use crate::handoff::{INBOX_MAX, SNAPSHOT_MAX};
    use crate::store::{now_ms, Commit, Final, MemoryStore, NewDelivery, NewMessage, Partition, Processed, Queue, QueueWatcher, Queued};

    /// Collects announcements into one inbox (the store's watcher).
    struct Catch(Arc<Inbox<Delivery>>);

    impl QueueWatcher for Catch {
        fn appended(&self, _: Vec<crate::store::Appended>) {}
        fn reopened(&self, _: &str, _: &str) {}
        fn queued(&self, rows: Vec<Queued>) {
            rows.into_iter().for_each(|q| self.0.push(q.delivery));
        }
        fn requeued(&self, _: &str) {
            self.0.lose();
        }
    }

    fn setup() -> (MemoryStore, Arc<Inbox<Delivery>>, Lease, Lease) {
        let store = MemoryStore::new();
        let inbox = Arc::new(Inbox::default());
        store.watch(Arc::new(Catch(inbox.clone())));
        let messages = Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "p".into() }, index: 0, of: 1 };
        let m = store.lease(&messages, "test", now_ms(), 60_000).unwrap();
        let sink = Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 };
        let s = store.lease(&sink, "test", now_ms(), 60_000).unwrap();
        (store, inbox, m, s)
    }

    /// Accepts and processes message `id` into outputs (id, key, tier).
    fn queue(store: &MemoryStore, lease: &Lease, id: &str, outs: &[(&str, &str, Tier)]) {
        let msg = NewMessage {
            id: id.into(),
            tenant: "acme".into(),
            pipeline: "p".into(),
            key_hash: 0,
            idempotency_key: None,
            correlation: None,
            answers: None,
            json: "{}".into(),
            message: None,
        };
        store.append(vec![msg], None).wait().unwrap();
        let deliveries = outs
            .iter()
            .map(|(o, key, tier)| NewDelivery { id: o.to_string(), sink: "erp".into(), ordering_key: key.to_string(), tier: *tier, expect_ms: None, json: "{}".into(), message: None })
            .collect();
        let processed = Processed {
            id: id.into(),
            state: Final::Done,
            processing: Default::default(),
            retry: None,
            deliveries,
            dead_letters: vec![],
            exceptions: vec![],
            baseline: vec![],
        };
        store.ack(lease, Commit { tenant: "acme".into(), pipeline: "p".into(), processed: vec![processed], audit: vec![] }).unwrap();
    }

    fn ids(due: &Due<Delivery>) -> Vec<(String, Tier)> {
        due.rows.iter().map(|d| (d.id.clone(), d.lane)).collect()
    }

    fn delivered(due: &Due<Delivery>) -> Vec<Attempt> {
        due.rows.iter().map(|d| Attempt { seq: d.seq, digest: "x".into(), result: AttemptResult::Delivered("ok".into()) }).collect()
    }

    #[test]
    fn in_sync_it_serves_what_the_store_would_claim() {
        let (store, inbox, m, s) = setup();
        let mut mirror: Mirror<Delivery> = Mirror::default();
        queue(&store, &m, "a", &[("a1", "k", Tier::Bulk), ("a2", "j", Tier::Standard)]);
        // The first call snapshots (the queue is short, nothing waits).
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(from, Taken::Memory);
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
        // Later outputs arrive as announcements: a critical one of key k
        // lifts k's first delivery into the critical lane, as the claim does.
        queue(&store, &m, "b", &[("b1", "k", Tier::Critical), ("b2", "i", Tier::Standard)]);
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(from, Taken::Memory);
        assert_eq!(ids(&due), [("a1".into(), Tier::Critical), ("a2".into(), Tier::Standard), ("b2".into(), Tier::Standard)]);
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        follow(&mut mirror, &attempts);
        let (due, _) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(ids(&due), [("b1".into(), Tier::Critical)], "k's next, once a1 is delivered");
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
    }

    #[test]
    fn a_retry_a_replay_or_a_new_lease_sends_it_back_to_the_store() {
        let (store, inbox, m, s) = setup();
        let mut mirror: Mirror<Delivery> = Mirror::default();
        queue(&store, &m, "a", &[("a1", "k", Tier::Standard)]);
        let (due, _) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        // a1 fails for now: it waits, and memory cannot know when.
        let retry = vec![Attempt { seq: due.rows[0].seq, digest: "x".into(), result: AttemptResult::Retry { error: "503".into(), next_at: now_ms() + 60_000, outcome_unknown: false } }];
        store.ack_deliveries(&s, retry.clone()).unwrap();
        follow(&mut mirror, &retry);
        assert!(!mirror.in_sync());
        queue(&store, &m, "b", &[("b1", "k", Tier::Standard), ("b2", "j", Tier::Standard)]);
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("b2".into(), Tier::Standard)], Taken::Store), "b1 waits behind a1");
        assert!(!mirror.in_sync(), "no snapshot while something waits");
        // Once a1 is due again and delivered, the queue is short with
        // nothing waiting: the mirror syncs again.
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms() + 60_000, 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("a1".into(), Tier::Standard), ("b2".into(), Tier::Standard)], Taken::Store));
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        follow(&mut mirror, &attempts);
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("b1".into(), Tier::Standard)], Taken::Memory), "from a snapshot");
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        follow(&mut mirror, &attempts);
        let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((due.rows.len(), from), (0, Taken::Memory), "in sync again: nothing is pending");
        // A delivery dead-lettered and replayed is pending again under its
        // old seq: the store says so, and the worker reads it back.
        queue(&store, &m, "c", &[("c1", "k", Tier::Standard)]);
        let (due, _) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        let dead = crate::store::NewDeadLetter {
            message_id: "c1".into(),
            place: "sink erp".into(),
            plugin: "sink".into(),
            digest: "x".into(),
            reason: "422".into(),
            attempts: vec![],
            json: "{}".into(),
            outcome_unknown: false,
        };
        let attempts = vec![Attempt { seq: due.rows[0].seq, digest: "x".into(), result: AttemptResult::Dead(dead) }];
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        follow(&mut mirror, &attempts);
        let letter = store.dead_letters(&Default::default(), 0, 10).unwrap()[0].id;
        store.replay_dead_letter(letter).unwrap();
        let (due, _) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(ids(&due), [("c1".into(), Tier::Standard)], "the replayed delivery is served");
        // A lease taken anew (another holder had it meanwhile): memory is dropped.
        let again = Lease { token: s.token + 1, ..s.clone() };
        let asked = mirror.asked;
        take(&mut mirror, &store, &again, &inbox, now_ms(), 10).unwrap();
        assert_eq!(mirror.asked, asked + 1, "read again under the new lease");
    }

    #[test]
    fn a_queue_growing_past_what_memory_keeps_is_read_from_the_store() {
        let (store, inbox, m, s) = setup();
        let mut mirror: Mirror<Delivery> = Mirror::default();
        assert_eq!(take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap().1, Taken::Memory, "in sync on an empty queue");
        let keys: Vec<String> = (0..INBOX_MAX / 2 + 1).map(|i| format!("k{i}")).collect();
        let outs = |batch: &str| keys.iter().map(|k| (format!("{batch}-{k}"), k.clone())).collect::<Vec<_>>();
        for batch in ["a", "b"] {
            let outs = outs(batch);
            let outs: Vec<(&str, &str, Tier)> = outs.iter().map(|(o, k)| (o.as_str(), k.as_str(), Tier::Standard)).collect();
            queue(&store, &m, batch, &outs);
            let (due, from) = take(&mut mirror, &store, &s, &inbox, now_ms(), 10).unwrap();
            assert_eq!(due.rows.len(), 10);
            assert_eq!(from, if batch == "a" { Taken::Memory } else { Taken::Store }, "batch {batch}");
        }
        assert!(!mirror.in_sync());
    }

    #[test]
    fn a_refused_snapshot_is_asked_for_again_only_after_a_growing_wait() {
        let (store, inbox, m, s) = setup();
        let mut mirror: Mirror<Delivery> = Mirror::default();
        // A backlog twice as long as a snapshot holds, on 100 keys: a claim
        // of up to 200 gets each key's first, so it always looks short.
        let outs: Vec<(String, String)> = (0..2 * SNAPSHOT_MAX).map(|i| (format!("o{i}"), format!("k{}", i % 100))).collect();
        let outs: Vec<(&str, &str, Tier)> = outs.iter().map(|(o, k)| (o.as_str(), k.as_str(), Tier::Standard)).collect();
        queue(&store, &m, "a", &outs);
        let t0 = now_ms();
        let drain = |mirror: &mut Mirror<Delivery>, at: i64| {
            let (due, from) = take(mirror, &store, &s, &inbox, at, 200).unwrap();
            let attempts = delivered(&due);
            store.ack_deliveries(&s, attempts.clone()).unwrap();
            follow(mirror, &attempts);
            (due.rows.len(), from)
        };
        assert_eq!(drain(&mut mirror, t0), (100, Taken::Store));
        assert_eq!(mirror.asked, 1, "refused: too long");
        for _ in 0..5 {
            assert_eq!(drain(&mut mirror, t0 + 49), (100, Taken::Store));
        }
        assert_eq!(mirror.asked, 1, "not asked again within the first wait");
        drain(&mut mirror, t0 + 50);
        assert_eq!(mirror.asked, 2, "asked again after it, and refused again");
        drain(&mut mirror, t0 + 50 + 99);
        assert_eq!(mirror.asked, 2, "the second wait is twice as long");
        // Drained to below the snapshot's size: the next ask after the
        // wait succeeds and memory serves again.
        while drain(&mut mirror, t0 + 149).0 > 0 {}
        assert_eq!(drain(&mut mirror, t0 + 150).1, Taken::Memory);
        assert_eq!(mirror.asked, 3);
        // A clock set back by an hour does not hold the next ask off.
        mirror.forget();
        mirror.hold_snapshots_until(t0 + 3_600_000);
        assert_eq!(drain(&mut mirror, t0).1, Taken::Memory);
    }
}

//! A sink worker's queue in memory: the deliveries its partition holds,
//! kept from the store's announcements ([`QueueWatcher`]) instead of read
//! back after every commit — the store stays the record.
//!
//! The store announces every delivery a commit queues, once durable and in
//! queue order; [`Handoff`] puts each into its partition's [`Inbox`]. A
//! worker is *in sync* once it has read every pending delivery of its
//! partition at one moment ([`Store::snapshot_deliveries`], taken only when
//! the queue is short and nothing waits for a retry): from then on the
//! announcements with a higher seq are exactly what joins its queue, so it
//! serves claims from memory ([`Mirror::due`]), with the same order per key
//! and the same lanes as the store's claim. Whatever the worker cannot know
//! from announcements puts it back to reading the store until the next
//! snapshot: a retry (the delivery waits, with later ones of its key behind
//! it), a failed ack, a replayed dead letter (pending again under its old
//! seq), an inbox or a memory past 10,000 deliveries (a sink held, or
//! slower than its input), a new lease —
//! and, at least every [`RESYNC`], a fresh snapshot, so work queued by
//! another process on the same store is never missed for longer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Tier;
use crate::pipeline::TopologyView;
use crate::store::{Attempt, AttemptResult, Delivery, Due, Lease, QueueWatcher, Queued, Store, StoreError};

/// Announced deliveries an inbox holds at most, and pending deliveries a
/// worker keeps in memory at most; past it, they are dropped and the worker
/// reads the store again (a sink held for long, or slower than its input).
const INBOX_MAX: usize = 10_000;

/// Pending deliveries a snapshot may hold; a longer queue drains by claims.
const SNAPSHOT_MAX: usize = 1_000;

/// How long a worker trusts its memory before checking it against a new
/// snapshot.
const RESYNC: Duration = Duration::from_secs(1);

/// How long a worker waits after a refused snapshot (a queue too long, or
/// a delivery waiting) before asking again; doubled at each refusal in a
/// row, up to [`RESYNC`]. A refusal reads up to [`SNAPSHOT_MAX`] rows, so
/// asking at every claim while a backlog drains costs more than the
/// claims themselves.
const SNAPSHOT_BACKOFF_MS: i64 = 50;

/// What the store announced for one partition of a sink, not yet taken.
#[derive(Default)]
pub struct Inbox(Mutex<Arrived>);

#[derive(Default)]
struct Arrived {
    rows: Vec<Delivery>,
    /// Something joined the queue that is not in `rows` (an overflow, a replay).
    lost: bool,
}

impl Inbox {
    fn push(&self, d: Delivery) {
        let mut a = self.0.lock().unwrap();
        if a.rows.len() >= INBOX_MAX {
            a.rows = Vec::new();
            a.lost = true;
        }
        if !a.lost {
            a.rows.push(d);
        }
    }

    fn lose(&self) {
        let mut a = self.0.lock().unwrap();
        a.rows = Vec::new();
        a.lost = true;
    }

    /// What arrived since last taken, and whether some of it was lost.
    fn take(&self) -> (Vec<Delivery>, bool) {
        let mut a = self.0.lock().unwrap();
        (std::mem::take(&mut a.rows), std::mem::take(&mut a.lost))
    }
}

/// The inboxes of a sink's partitions.
pub struct Inboxes(Vec<Inbox>);

impl Inboxes {
    /// One per worker (partition) of the sink.
    pub fn new(workers: u32) -> Inboxes {
        Inboxes((0..workers.max(1)).map(|_| Inbox::default()).collect())
    }

    /// Partition `part`'s.
    pub fn part(&self, part: u32) -> &Inbox {
        &self.0[part as usize % self.0.len()]
    }

    fn of_hash(&self, key_hash: u32) -> &Inbox {
        &self.0[key_hash as usize % self.0.len()]
    }
}

/// Hands what the store announces to the sinks of the current topology.
pub struct Handoff(pub TopologyView);

impl QueueWatcher for Handoff {
    fn queued(&self, rows: Vec<Queued>) {
        let topology = self.0.current();
        let mut woken: Vec<&str> = Vec::new();
        for q in rows {
            // A sink no longer running: its successor starts from the store.
            let Some(sink) = topology.sinks.get(q.sink.as_str()) else { continue };
            sink.inboxes.of_hash(q.key_hash).push(q.delivery);
            if !woken.contains(&sink.cfg.name.as_str()) {
                woken.push(sink.cfg.name.as_str());
            }
        }
        for name in woken {
            topology.sinks[name].signal.notify();
        }
    }

    fn requeued(&self, sink: &str) {
        if let Some(s) = self.0.current().sinks.get(sink) {
            s.inboxes.0.iter().for_each(Inbox::lose);
            s.signal.notify();
        }
    }
}

/// One worker's view of its partition's queue.
pub struct Mirror {
    /// Every pending delivery of the partition by seq, while in sync.
    rows: Option<BTreeMap<i64, Delivery>>,
    /// The highest seq known: an announcement above it is new.
    high: i64,
    /// The lease token the memory was built under.
    token: i64,
    /// When the memory was last checked against the store.
    synced_at: Instant,
    /// Whether the last claim found a short queue with nothing waiting (a
    /// snapshot is worth taking).
    short: bool,
    /// No snapshot is asked for before this time, ms since the epoch
    /// (after a refusal).
    snapshot_after: i64,
    /// The wait after the next refusal, ms.
    backoff: i64,
    /// Snapshots asked for, refused or not.
    #[cfg(test)]
    asked: usize,
}

/// Where a call's deliveries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Handed over in memory.
    Memory,
    /// Claimed from the store.
    Store,
}

impl Taken {
    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Taken::Memory => "memory",
            Taken::Store => "store",
        }
    }
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror {
            rows: None,
            high: 0,
            token: 0,
            synced_at: Instant::now(),
            short: true,
            snapshot_after: 0,
            backoff: SNAPSHOT_BACKOFF_MS,
            #[cfg(test)]
            asked: 0,
        }
    }
}

impl Mirror {
    /// Whether it serves from memory now.
    #[cfg(test)]
    fn in_sync(&self) -> bool {
        self.rows.is_some()
    }

    /// The due deliveries, as [`Store::claim_deliveries`] gives them: from
    /// memory when in sync (after a snapshot if one is due and the queue
    /// is short), else claimed from the store.
    ///
    /// # Errors
    ///
    /// [`StoreError`] of the snapshot or claim.
    pub fn due(&mut self, store: &dyn Store, lease: &Lease, inbox: &Inbox, now_ms: i64, limit: usize) -> Result<(Due<Delivery>, Taken), StoreError> {
        let (arrived, lost) = inbox.take();
        if lost || lease.token != self.token || self.synced_at.elapsed() >= RESYNC {
            self.rows = None;
        }
        // (A clock set back by more than the longest wait does not hold it off.)
        let resync_ms = RESYNC.as_millis() as i64;
        let may_ask = now_ms >= self.snapshot_after || self.snapshot_after - now_ms > resync_ms;
        if self.rows.is_none() && self.short && may_ask {
            #[cfg(test)]
            {
                self.asked += 1;
            }
            // Taken after the inbox was emptied: what was announced before
            // is in it (or settled); what is announced after is newer.
            if let Some(snapshot) = store.snapshot_deliveries(lease, now_ms, SNAPSHOT_MAX)? {
                self.rows = Some(snapshot.rows.into_iter().map(|d| (d.seq, d)).collect());
                self.high = snapshot.high;
                self.token = lease.token;
                self.synced_at = Instant::now();
                self.backoff = SNAPSHOT_BACKOFF_MS;
            } else {
                self.snapshot_after = now_ms + self.backoff;
                self.backoff = (self.backoff * 2).min(resync_ms);
            }
        }
        if let Some(rows) = self.rows.as_mut() {
            for d in arrived {
                if d.seq > self.high {
                    self.high = d.seq;
                    rows.insert(d.seq, d);
                }
            }
            if rows.len() <= INBOX_MAX {
                return Ok((Due { rows: heads(rows, limit), next_at: None }, Taken::Memory));
            }
            // The queue grows faster than the sink delivers: the store holds it.
            self.rows = None;
        }
        let due = store.claim_deliveries(lease, now_ms, limit)?;
        self.short = due.rows.len() < limit && due.next_at.is_none();
        Ok((due, Taken::Store))
    }

    /// Follows a call's recorded attempts: what was delivered or
    /// dead-lettered leaves the memory; a retry (now waiting in the store)
    /// ends the sync.
    pub fn settled(&mut self, attempts: &[Attempt]) {
        let Some(rows) = self.rows.as_mut() else { return };
        for a in attempts {
            match a.result {
                AttemptResult::Delivered(_) | AttemptResult::Dead(_) => {
                    rows.remove(&a.seq);
                }
                AttemptResult::Retry { .. } => {
                    self.rows = None;
                    self.short = false;
                    return;
                }
            }
        }
    }

    /// The store did not record a call's attempts: read it again.
    pub fn forget(&mut self) {
        self.rows = None;
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
    use crate::store::{now_ms, Commit, Final, MemoryStore, NewDelivery, NewMessage, Partition, Processed, Queue};

    /// Collects announcements into one inbox (the store's watcher).
    struct Catch(Arc<Inbox>);

    impl QueueWatcher for Catch {
        fn queued(&self, rows: Vec<Queued>) {
            rows.into_iter().for_each(|q| self.0.push(q.delivery));
        }
        fn requeued(&self, _: &str) {
            self.0.lose();
        }
    }

    fn setup() -> (MemoryStore, Arc<Inbox>, Lease, Lease) {
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
        let mut mirror = Mirror::default();
        queue(&store, &m, "a", &[("a1", "k", Tier::Bulk), ("a2", "j", Tier::Standard)]);
        // The first call snapshots (the queue is short, nothing waits).
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(from, Taken::Memory);
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
        // Later outputs arrive as announcements: a critical one of key k
        // lifts k's first delivery into the critical lane, as the claim does.
        queue(&store, &m, "b", &[("b1", "k", Tier::Critical), ("b2", "i", Tier::Standard)]);
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(from, Taken::Memory);
        assert_eq!(ids(&due), [("a1".into(), Tier::Critical), ("a2".into(), Tier::Standard), ("b2".into(), Tier::Standard)]);
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        mirror.settled(&attempts);
        let (due, _) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(ids(&due), [("b1".into(), Tier::Critical)], "k's next, once a1 is delivered");
        assert_eq!(ids(&due), ids(&store.claim_deliveries(&s, now_ms(), 10).unwrap()));
    }

    #[test]
    fn a_retry_a_replay_or_a_new_lease_sends_it_back_to_the_store() {
        let (store, inbox, m, s) = setup();
        let mut mirror = Mirror::default();
        queue(&store, &m, "a", &[("a1", "k", Tier::Standard)]);
        let (due, _) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        // a1 fails for now: it waits, and memory cannot know when.
        let retry = vec![Attempt { seq: due.rows[0].seq, digest: "x".into(), result: AttemptResult::Retry { error: "503".into(), next_at: now_ms() + 60_000, outcome_unknown: false } }];
        store.ack_deliveries(&s, retry.clone()).unwrap();
        mirror.settled(&retry);
        assert!(!mirror.in_sync());
        queue(&store, &m, "b", &[("b1", "k", Tier::Standard), ("b2", "j", Tier::Standard)]);
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("b2".into(), Tier::Standard)], Taken::Store), "b1 waits behind a1");
        assert!(!mirror.in_sync(), "no snapshot while something waits");
        // Once a1 is due again and delivered, the queue is short with
        // nothing waiting: the mirror syncs again.
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms() + 60_000, 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("a1".into(), Tier::Standard), ("b2".into(), Tier::Standard)], Taken::Store));
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        mirror.settled(&attempts);
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((ids(&due), from), (vec![("b1".into(), Tier::Standard)], Taken::Memory), "from a snapshot");
        let attempts = delivered(&due);
        store.ack_deliveries(&s, attempts.clone()).unwrap();
        mirror.settled(&attempts);
        let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!((due.rows.len(), from), (0, Taken::Memory), "in sync again: nothing is pending");
        // A delivery dead-lettered and replayed is pending again under its
        // old seq: the store says so, and the worker reads it back.
        queue(&store, &m, "c", &[("c1", "k", Tier::Standard)]);
        let (due, _) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
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
        mirror.settled(&attempts);
        let letter = store.dead_letters(&Default::default(), 0, 10).unwrap()[0].id;
        store.replay_dead_letter(letter).unwrap();
        let (due, _) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
        assert_eq!(ids(&due), [("c1".into(), Tier::Standard)], "the replayed delivery is served");
        // A lease taken anew (another holder had it meanwhile): memory is dropped.
        let again = Lease { token: s.token + 1, ..s.clone() };
        mirror.due(&store, &again, &inbox, now_ms(), 10).unwrap();
        assert_eq!(mirror.token, again.token);
    }

    #[test]
    fn a_queue_growing_past_what_memory_keeps_is_read_from_the_store() {
        let (store, inbox, m, s) = setup();
        let mut mirror = Mirror::default();
        assert_eq!(mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap().1, Taken::Memory, "in sync on an empty queue");
        let keys: Vec<String> = (0..INBOX_MAX / 2 + 1).map(|i| format!("k{i}")).collect();
        let outs = |batch: &str| keys.iter().map(|k| (format!("{batch}-{k}"), k.clone())).collect::<Vec<_>>();
        for batch in ["a", "b"] {
            let outs = outs(batch);
            let outs: Vec<(&str, &str, Tier)> = outs.iter().map(|(o, k)| (o.as_str(), k.as_str(), Tier::Standard)).collect();
            queue(&store, &m, batch, &outs);
            let (due, from) = mirror.due(&store, &s, &inbox, now_ms(), 10).unwrap();
            assert_eq!(due.rows.len(), 10);
            assert_eq!(from, if batch == "a" { Taken::Memory } else { Taken::Store }, "batch {batch}");
        }
        assert!(!mirror.in_sync());
    }

    #[test]
    fn a_refused_snapshot_is_asked_for_again_only_after_a_growing_wait() {
        let (store, inbox, m, s) = setup();
        let mut mirror = Mirror::default();
        // A backlog twice as long as a snapshot holds, on 100 keys: a claim
        // of up to 200 gets each key's first, so it always looks short.
        let outs: Vec<(String, String)> = (0..2 * SNAPSHOT_MAX).map(|i| (format!("o{i}"), format!("k{}", i % 100))).collect();
        let outs: Vec<(&str, &str, Tier)> = outs.iter().map(|(o, k)| (o.as_str(), k.as_str(), Tier::Standard)).collect();
        queue(&store, &m, "a", &outs);
        let t0 = now_ms();
        let drain = |mirror: &mut Mirror, at: i64| {
            let (due, from) = mirror.due(&store, &s, &inbox, at, 200).unwrap();
            let attempts = delivered(&due);
            store.ack_deliveries(&s, attempts.clone()).unwrap();
            mirror.settled(&attempts);
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
        mirror.snapshot_after = t0 + 3_600_000;
        assert_eq!(drain(&mut mirror, t0).1, Taken::Memory);
    }

    #[test]
    fn an_inbox_that_overflowed_is_read_from_the_store() {
        let inbox = Inbox::default();
        let d = |seq| Delivery {
            seq,
            id: seq.to_string(),
            ordering_key: "k".into(),
            tier: Tier::Standard,
            lane: Tier::Standard,
            attempts: 0,
            next_at: 0,
            json: String::new(),
            errors: vec![],
            outcome_unknown: false,
            message: None,
        };
        for seq in 0..=INBOX_MAX as i64 {
            inbox.push(d(seq));
        }
        inbox.push(d(INBOX_MAX as i64 + 1));
        let (rows, lost) = inbox.take();
        assert!(rows.is_empty() && lost, "dropped, and said so");
        inbox.push(d(1));
        assert_eq!(inbox.take().0.len(), 1, "taken: it fills again");
    }
}

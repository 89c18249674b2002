//! Work handed from the store's commits to this process's workers in
//! memory — accepted messages to pipeline shards, queued deliveries to sink
//! workers — instead of read back after every commit; the store stays the
//! record.
//!
//! The store announces what each commit accepts and queues, once durable
//! and in queue order ([`QueueWatcher`]); [`Handoff`] puts each item into
//! its partition's [`Inbox`]. A worker's [`Mirror`] is *in sync* once it
//! has read every pending item of its partition at one moment (a
//! [`Snapshot`], taken only when the queue is short and nothing waits for
//! a retry): from then on the announcements with a higher seq are exactly
//! what joins its queue, so it serves claims from memory. Whatever the
//! worker cannot know from announcements puts it back to reading the store
//! until the next snapshot: a retry (the item waits, with later ones of its
//! key behind it), a failed ack, work made pending again under its old seq
//! (a replayed dead letter, a reprocessed exception), an inbox or a memory
//! past [`INBOX_MAX`] items or [`INBOX_BYTES`] (a worker held, or slower
//! than its input), a
//! new lease — and, at least every [`RESYNC`], a fresh snapshot, so work
//! queued by another process on the same store is never missed for longer.
//! A refused snapshot is asked for again only after a growing wait.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pipeline::TopologyView;
use crate::store::{Appended, Delivery, Due, Pending, QueueWatcher, Queued, Snapshot, StoreError};

/// Announced items an inbox holds at most, and pending items a worker keeps
/// in memory at most; past it, they are dropped and the worker reads the
/// store again (a worker held for long, or slower than its input).
pub const INBOX_MAX: usize = 10_000;

/// What an inbox, and a worker's memory, hold at most in bytes (as
/// [`Seq::bytes`] counts them); past it, the same as past [`INBOX_MAX`].
/// The count alone would let a held partition keep its last 10,000 items
/// whatever their size: gigabytes of large payloads.
pub const INBOX_BYTES: usize = 16 << 20;

/// Pending items a snapshot may hold; a longer queue drains by claims.
pub const SNAPSHOT_MAX: usize = 1_000;

/// How long a worker trusts its memory before checking it against a new
/// snapshot.
const RESYNC: Duration = Duration::from_secs(1);

/// How long a worker waits after a refused snapshot (a queue too long, or
/// an item waiting) before asking again, ms; doubled at each refusal in a
/// row, up to [`RESYNC`]. A refusal reads up to [`SNAPSHOT_MAX`] rows, so
/// asking at every claim while a backlog drains costs more than the
/// claims themselves.
const SNAPSHOT_BACKOFF_MS: i64 = 50;

/// An item of a queue, in queue order by its seq.
pub trait Seq {
    /// Its place in its queue.
    fn seq(&self) -> i64;

    /// About what it holds in memory: its stored JSON, as much again for
    /// the message handed over with it (counted whether or not it still
    /// is, so taking the message out does not change the count), and a
    /// fixed part.
    fn bytes(&self) -> usize;
}

/// [`Seq::bytes`] of an item whose stored form is `json`.
fn item_bytes(json: &str) -> usize {
    2 * json.len() + 256
}

impl Seq for Pending {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn bytes(&self) -> usize {
        item_bytes(&self.json)
    }
}

impl Seq for Delivery {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn bytes(&self) -> usize {
        item_bytes(&self.json)
    }
}

/// What the store announced for one partition, not yet taken.
pub struct Inbox<T>(Mutex<Arrived<T>>);

struct Arrived<T> {
    rows: Vec<T>,
    /// [`Seq::bytes`] of `rows`.
    bytes: usize,
    /// Something joined the queue that is not in `rows` (an overflow, a replay).
    lost: bool,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox(Mutex::new(Arrived { rows: Vec::new(), bytes: 0, lost: false }))
    }
}

impl<T: Seq> Inbox<T> {
    pub(crate) fn push(&self, item: T) {
        let mut a = self.0.lock().unwrap();
        let bytes = a.bytes + item.bytes();
        if a.rows.len() >= INBOX_MAX || bytes > INBOX_BYTES {
            a.rows = Vec::new();
            a.bytes = 0;
            a.lost = true;
        }
        if !a.lost {
            a.rows.push(item);
            a.bytes = bytes;
        }
    }

    pub(crate) fn lose(&self) {
        let mut a = self.0.lock().unwrap();
        a.rows = Vec::new();
        a.bytes = 0;
        a.lost = true;
    }

    /// What arrived since last taken, and whether some of it was lost.
    fn take(&self) -> (Vec<T>, bool) {
        let mut a = self.0.lock().unwrap();
        a.bytes = 0;
        (std::mem::take(&mut a.rows), std::mem::take(&mut a.lost))
    }
}

/// The inboxes of a queue's partitions (a pipeline's shards, a sink's workers).
pub struct Inboxes<T>(Vec<Inbox<T>>);

impl<T> Inboxes<T> {
    /// One per partition.
    pub fn new(parts: u32) -> Inboxes<T> {
        Inboxes((0..parts.max(1)).map(|_| Inbox::default()).collect())
    }

    /// Partition `part`'s.
    pub fn part(&self, part: u32) -> &Inbox<T> {
        &self.0[part as usize % self.0.len()]
    }

    fn of_hash(&self, key_hash: u32) -> &Inbox<T> {
        &self.0[key_hash as usize % self.0.len()]
    }
}

impl<T: Seq> Inboxes<T> {
    fn lose(&self) {
        self.0.iter().for_each(Inbox::lose);
    }
}

/// Hands what the store announces to the pipelines and sinks of the
/// current topology.
pub struct Handoff(pub TopologyView);

impl QueueWatcher for Handoff {
    fn appended(&self, rows: Vec<Appended>) {
        let topology = self.0.current();
        let mut woken: Vec<(String, String)> = Vec::new();
        for a in rows {
            let key = (a.tenant, a.pipeline);
            // A pipeline no longer running: its successor starts from the store.
            let Some(p) = topology.pipelines.get(&key) else { continue };
            p.inboxes.of_hash(a.pending.key_hash).push(a.pending);
            if !woken.contains(&key) {
                woken.push(key);
            }
        }
        for key in woken {
            topology.pipelines[&key].signal.notify();
        }
    }

    fn reopened(&self, tenant: &str, pipeline: &str) {
        if let Some(p) = self.0.current().pipelines.get(&(tenant.to_string(), pipeline.to_string())) {
            p.inboxes.lose();
            p.signal.notify();
        }
    }

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
            s.inboxes.lose();
            s.signal.notify();
        }
    }
}

/// Where a worker's items came from.
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

/// One worker's view of its partition's queue.
pub struct Mirror<T> {
    /// Every pending item of the partition by seq, while in sync.
    rows: Option<BTreeMap<i64, T>>,
    /// [`Seq::bytes`] of `rows` (at least: an item a `serve` removes
    /// stays counted until the next snapshot).
    bytes: usize,
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
    pub(crate) asked: usize,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Mirror {
            rows: None,
            bytes: 0,
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

impl<T: Seq> Mirror<T> {
    /// Whether it serves from memory now.
    #[cfg(test)]
    pub(crate) fn in_sync(&self) -> bool {
        self.rows.is_some()
    }

    /// The due items, as the store's claim gives them: `serve` picks them
    /// from memory when in sync (after a `snapshot` if one is due and the
    /// queue is short), else `claim` reads them from the store (`limit`
    /// tells whether that claim found the queue short).
    ///
    /// # Errors
    ///
    /// [`StoreError`] of the snapshot or claim.
    #[allow(clippy::too_many_arguments)]
    pub fn due(
        &mut self,
        inbox: &Inbox<T>,
        token: i64,
        now_ms: i64,
        limit: usize,
        snapshot: impl FnOnce(usize) -> Result<Option<Snapshot<T>>, StoreError>,
        serve: impl FnOnce(&mut BTreeMap<i64, T>) -> Vec<T>,
        claim: impl FnOnce() -> Result<Due<T>, StoreError>,
    ) -> Result<(Due<T>, Taken), StoreError> {
        let (arrived, lost) = inbox.take();
        if lost || token != self.token || self.synced_at.elapsed() >= RESYNC {
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
            if let Some(s) = snapshot(SNAPSHOT_MAX)? {
                self.bytes = s.rows.iter().map(Seq::bytes).sum();
                self.rows = Some(s.rows.into_iter().map(|r| (r.seq(), r)).collect());
                self.high = s.high;
                self.token = token;
                self.synced_at = Instant::now();
                self.backoff = SNAPSHOT_BACKOFF_MS;
            } else {
                self.snapshot_after = now_ms + self.backoff;
                self.backoff = (self.backoff * 2).min(resync_ms);
            }
        }
        if let Some(rows) = self.rows.as_mut() {
            for r in arrived {
                if r.seq() > self.high {
                    self.high = r.seq();
                    self.bytes += r.bytes();
                    rows.insert(r.seq(), r);
                }
            }
            if rows.len() <= INBOX_MAX && self.bytes <= INBOX_BYTES {
                return Ok((Due { rows: serve(rows), next_at: None }, Taken::Memory));
            }
            // The queue grows faster than the worker takes it: the store holds it.
            self.rows = None;
        }
        let due = claim()?;
        self.short = due.rows.len() < limit && due.next_at.is_none();
        Ok((due, Taken::Store))
    }

    /// Item `seq` is settled (done, delivered, dead-lettered): it leaves the memory.
    pub fn left(&mut self, seq: i64) {
        if let Some(r) = self.rows.as_mut().and_then(|rows| rows.remove(&seq)) {
            // (At least what was counted: a `serve` that took items out
            // leaves them counted until the next snapshot.)
            self.bytes = self.bytes.saturating_sub(r.bytes());
        }
    }

    /// An item now waits in the store for a retry: memory cannot know when
    /// it is due, so the worker reads the store until the queue is short
    /// with nothing waiting.
    pub fn waits(&mut self) {
        self.rows = None;
        self.short = false;
    }

    /// The store did not record what was done: read it again.
    pub fn forget(&mut self) {
        self.rows = None;
    }

    /// Puts the next refused snapshot's wait at `at` (ms), for tests of a
    /// clock set back.
    #[cfg(test)]
    pub(crate) fn hold_snapshots_until(&mut self, at: i64) {
        self.snapshot_after = at;
    }
}

#[cfg(test)]
mod tests {
    //! The parts that do not depend on what is queued: the inbox's bound
    //! and the snapshot's backoff. The delivery and message mirrors test
    //! what they serve against the in-memory store.

    use super::*;

    #[test]
    fn an_inbox_that_overflowed_is_read_from_the_store() {
        let inbox: Inbox<Pending> = Inbox::default();
        let p = |seq| Pending { seq, ..Pending::default() };
        for seq in 0..=INBOX_MAX as i64 {
            inbox.push(p(seq));
        }
        inbox.push(p(INBOX_MAX as i64 + 1));
        let (rows, lost) = inbox.take();
        assert!(rows.is_empty() && lost, "dropped, and said so");
        inbox.push(p(1));
        assert_eq!(inbox.take().0.len(), 1, "taken: it fills again");
    }

    /// A message of `mib` MiB at `seq`.
    fn large(seq: i64, mib: usize) -> Pending {
        Pending { seq, json: "x".repeat(mib << 20), ..Pending::default() }
    }

    #[test]
    fn an_inbox_holds_large_items_only_up_to_its_byte_budget() {
        let inbox: Inbox<Pending> = Inbox::default();
        let fit = INBOX_BYTES / large(0, 1).bytes();
        for seq in 0..fit as i64 {
            inbox.push(large(seq, 1));
        }
        let (rows, lost) = inbox.take();
        assert_eq!((rows.len(), lost), (fit, false), "what fits is kept");
        for seq in 0..=fit as i64 {
            inbox.push(large(seq, 1));
        }
        let (rows, lost) = inbox.take();
        assert!(rows.is_empty() && lost, "one more: dropped, and said so (not {} MiB held)", rows.len());
        // An item larger than the whole budget is never held: its worker
        // reads it from the store.
        inbox.push(large(1, INBOX_BYTES >> 20));
        let (rows, lost) = inbox.take();
        assert!(rows.is_empty() && lost, "dropped, and said so");
    }

    #[test]
    fn a_memory_grown_past_its_byte_budget_is_read_from_the_store() {
        let inbox: Inbox<Pending> = Inbox::default();
        let mut mirror: Mirror<Pending> = Mirror::default();
        let none = || Ok(Due { rows: Vec::new(), next_at: None });
        let empty = |_| Ok(Some(Snapshot { rows: Vec::new(), high: 0 }));
        let serve = |rows: &mut BTreeMap<i64, Pending>| rows.values().map(|p| Pending { json: String::new(), ..p.clone() }).collect();
        let (_, from) = mirror.due(&inbox, 1, 0, 100, empty, serve, none).unwrap();
        assert_eq!(from, Taken::Memory, "in sync on an empty queue");
        // A worker slower than its input: each take fits the inbox, but
        // nothing leaves the memory.
        let per_take = INBOX_BYTES / large(0, 1).bytes() / 2;
        let mut seq = 0;
        let mut froms = Vec::new();
        for _ in 0..3 {
            for _ in 0..per_take {
                seq += 1;
                inbox.push(large(seq, 1));
            }
            froms.push(mirror.due(&inbox, 1, 0, 100, |_| unreachable!("no snapshot while the queue is long"), serve, none).unwrap().1);
        }
        assert_eq!(froms, [Taken::Memory, Taken::Memory, Taken::Store], "past the budget the store holds the queue");
        assert!(!mirror.in_sync());
    }
}

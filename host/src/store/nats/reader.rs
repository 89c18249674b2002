//! A leased partition's slots of one queue as their holder reads and
//! commits them — what pipelines' messages ([`super::MessageQueue`]) and
//! sinks' deliveries ([`super::DeliveryQueue`]) share: each slot's state
//! folded from its commit log when the holder opens it (after appending
//! the marker that fences every earlier holder), the slot's stored items
//! read in stream order from its floor and judged once each, and commits
//! of one log entry per slot, each with the floor below which all of the
//! slot's items are settled.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{consumer, message::StreamMessage, stream};

use super::audit::Event;
use super::kept::Kept;
use super::{unavailable, CommitLog, Connection, Held, Item, Output, SlotCommit, SlotDue, SlotState, Waiting};
use crate::store::{Lease, StoreError};

/// How many items of a slot are read ahead of their settling, at most.
const READ_AHEAD: usize = 2_000;

/// How many items one read of a slot asks for.
const READ_BATCH: usize = 500;

/// An item read from its slot that counts.
#[derive(Debug, Clone)]
pub struct Read {
    /// Its sequence and ordering hash.
    pub item: Item,
    /// The stored message (its headers say what kind of item it is).
    pub message: StreamMessage,
}

/// What a queue makes of a stored item it reads for the first time.
pub enum Judged {
    /// It counts: hand it out, ordered by this hash.
    Counts(u32),
    /// It never counts (a duplicate copy, the remains of a failed append):
    /// settle it with the slot's next entry.
    Void,
    /// Not known yet: stop reading the slot here until the next claim.
    NotYet,
}

impl Judged {
    /// A stored item this store did not write (no header it needs — a
    /// message some other client published on the subject): settled
    /// without being handed out, and logged, so that it never wedges the
    /// slot it sits in.
    pub fn foreign(m: &StreamMessage, missing: &str) -> Judged {
        tracing::warn!(subject = %m.subject, seq = m.sequence, missing, "skipping a stored item this store did not write");
        Judged::Void
    }
}

/// A batch's commit entries, one per slot it touched, in the order it
/// first touched them.
#[derive(Debug, Default)]
pub struct Entries(Vec<(usize, SlotCommit)>);

impl Entries {
    /// Slot `index`'s entry.
    pub fn slot(&mut self, index: usize) -> &mut SlotCommit {
        let at = match self.0.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                self.0.push((index, SlotCommit::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// The first slot's entry (slot 0's when there is none).
    pub fn first(&mut self) -> &mut SlotCommit {
        let index = self.0.first().map_or(0, |(i, _)| *i);
        self.slot(index)
    }
}

/// What a commit-log entry queued, to be published after it.
#[derive(Debug, Clone)]
pub struct Unpublished {
    /// The entry's sequence.
    pub seq: u64,
    /// Outputs for sinks.
    pub outputs: Vec<Output>,
    /// Audit events.
    pub audit: Vec<Event>,
    /// Other records.
    pub kept: Vec<Kept>,
    /// When the entry was committed.
    pub at: i64,
}

impl Unpublished {
    /// What entry `seq` queues (taken out of it), if anything.
    fn of(seq: u64, commit: &mut SlotCommit) -> Option<Unpublished> {
        let empty = commit.queued.is_empty() && commit.audit.is_empty() && commit.kept.is_empty();
        (!empty).then(|| Unpublished {
            seq,
            outputs: std::mem::take(&mut commit.queued),
            audit: std::mem::take(&mut commit.audit),
            kept: std::mem::take(&mut commit.kept),
            at: commit.at,
        })
    }
}

/// One leased slot.
#[derive(Debug)]
struct Slot {
    subject: String,
    log: CommitLog,
    state: SlotState,
    /// Counting items read at or above the floor, in stream order.
    read: Vec<Read>,
    /// The stream sequence the slot has been read up to.
    read_to: u64,
    /// Copies read that never count, to settle with the slot's next entry.
    void: Vec<u64>,
    /// Entries whose outputs are not known to be published, in log order.
    unpublished: Vec<Unpublished>,
    /// Every entry up to this one has had its outputs published (the next
    /// entry records it).
    published: u64,
    /// Entries appended since the slot's last checkpoint.
    since_checkpoint: usize,
}

/// How many entries a slot's holder appends between checkpoints (a holder
/// taking the slot over folds the entries after the last one).
const CHECKPOINT_EVERY: usize = 100;

impl Slot {
    /// Where item `seq` is in `read` (kept in stream order).
    fn position(&self, seq: u64) -> Option<usize> {
        self.read.binary_search_by_key(&seq, |r| r.item.seq).ok()
    }
}

/// A partition's slots of one stream.
pub struct Slots {
    conn: Arc<Connection>,
    stream: stream::Stream,
    lease: Lease,
    slots: Vec<Slot>,
    /// The slot of each item handed out and not yet acked.
    claimed: HashMap<u64, usize>,
}

impl Slots {
    /// Opens `held`'s slots of stream `stream_name`, whose subjects are
    /// `subjects` (one per slot, in `held`'s order).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when a log entry does not read.
    pub fn open(conn: Arc<Connection>, stream_name: &'static str, subjects: Vec<String>, held: &Held) -> Result<Slots, StoreError> {
        let js = conn.jetstream();
        let stream = conn.run(async move { js.get_stream(stream_name).await.map_err(|e| unavailable(&format!("opening stream `{stream_name}`"), e)) })?;
        let mut slots = Vec::with_capacity(held.slots.len());
        for (subject, lease) in subjects.into_iter().zip(&held.slots) {
            let log = CommitLog::open(conn.clone(), &held.lease.holder, lease)?;
            // From the slot's checkpoint, if it has one: every entry up to
            // it is folded in and published.
            let mut state = log.checkpoint()?.unwrap_or_default();
            let mut unpublished = Vec::new();
            for entry in log.entries(state.through)?.into_iter().filter(|e| e.kind == "commit") {
                let mut commit: SlotCommit = serde_json::from_slice(&entry.data)
                    .map_err(|e| StoreError::Corrupt(format!("commit {} of slot `{}` does not read: {e}", entry.seq, lease.key)))?;
                state.apply(entry.seq, &commit);
                if let Some(u) = Unpublished::of(entry.seq, &mut commit) {
                    unpublished.push(u);
                }
            }
            unpublished.retain(|u| u.seq > state.published);
            let published = state.published;
            slots.push(Slot { subject, log, read_to: state.floor.saturating_sub(1), state, read: Vec::new(), void: Vec::new(), unpublished, published, since_checkpoint: 0 });
        }
        Ok(Slots { conn, stream, lease: held.lease.clone(), slots, claimed: HashMap::new() })
    }

    /// The lease they were opened under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Reads every slot's items stored since it was last read, judging
    /// each new unsettled one; then settles the void ones. Whether a slot
    /// stopped at an item not known yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over;
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn read(&mut self, judge: &mut dyn FnMut(&StreamMessage) -> Result<Judged, StoreError>) -> Result<bool, StoreError> {
        let mut stopped = false;
        for index in 0..self.slots.len() {
            stopped |= self.read_slot(index, judge)?;
            let slot = &mut self.slots[index];
            if !slot.void.is_empty() {
                let commit = SlotCommit { settled: std::mem::take(&mut slot.void), ..SlotCommit::default() };
                commit_to(slot, commit)?;
            }
        }
        Ok(stopped)
    }

    fn read_slot(&mut self, index: usize, judge: &mut dyn FnMut(&StreamMessage) -> Result<Judged, StoreError>) -> Result<bool, StoreError> {
        loop {
            // Read ahead only so far: a backlog stays in the stream, not in memory.
            let room = READ_AHEAD.saturating_sub(self.slots[index].read.len());
            if room == 0 {
                return Ok(false);
            }
            let batch = read_subject(&self.conn, &self.stream, &self.slots[index].subject, self.slots[index].read_to + 1, room.min(READ_BATCH))?;
            if batch.is_empty() {
                return Ok(false);
            }
            let slot = &mut self.slots[index];
            for m in batch {
                let seq = m.sequence;
                if !slot.state.is_settled(seq) {
                    match judge(&m)? {
                        Judged::Counts(key_hash) => slot.read.push(Read { item: Item { seq, key_hash }, message: m }),
                        Judged::Void => slot.void.push(seq),
                        // Nothing after it either, so that its key's later
                        // items cannot overtake it.
                        Judged::NotYet => return Ok(true),
                    }
                }
                slot.read_to = seq;
            }
        }
    }

    /// Each slot's due items at `now_ms` ([`SlotState::due`]), with the
    /// slot's index.
    pub fn due(&self, now_ms: i64, one_per_key: bool) -> Vec<(usize, SlotDue)> {
        self.slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let items: Vec<Item> = slot.read.iter().map(|r| r.item).collect();
                (index, slot.state.due(&items, now_ms, usize::MAX, one_per_key))
            })
            .collect()
    }

    /// Slot `index`'s unsettled items read, in stream order.
    pub fn unsettled(&self, index: usize) -> impl Iterator<Item = &Read> {
        let slot = &self.slots[index];
        slot.read.iter().filter(|r| !slot.state.is_settled(r.item.seq))
    }

    /// Item `seq` of slot `index`, as read.
    pub fn get(&self, index: usize, seq: u64) -> Option<&Read> {
        let slot = &self.slots[index];
        slot.position(seq).map(|at| &slot.read[at])
    }

    /// The slot and sequence of the first unsettled item read that
    /// `matches`.
    pub fn find(&self, matches: impl Fn(&Read) -> bool) -> Option<(usize, u64)> {
        (0..self.slots.len()).find_map(|index| self.unsettled(index).find(|r| matches(r)).map(|r| (index, r.item.seq)))
    }

    /// Notes item `seq` of slot `index` as handed out.
    pub fn hand_out(&mut self, index: usize, seq: u64) {
        self.claimed.insert(seq, index);
    }

    /// The slot of item `seq` when it was handed out and not acked since.
    pub fn claimed(&self, seq: u64) -> Option<usize> {
        self.claimed.get(&seq).copied()
    }

    /// What item `seq` of slot `index` waits with, if an attempt at it failed.
    pub fn waiting(&self, index: usize, seq: u64) -> Option<&Waiting> {
        self.slots[index].state.waiting(seq)
    }

    /// Appends each slot's commit to its log, in the order the batch first
    /// touched the slots (so what they keep is numbered in the batch's
    /// order), with the floor it allows; folds each in. A commit that is
    /// refused stops the rest.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over (nothing of
    /// that slot's entry is kept); [`StoreError::Unavailable`] when the
    /// server does not answer.
    pub fn commit(&mut self, commits: Entries) -> Result<(), StoreError> {
        for (index, mut commit) in commits.0 {
            let slot = &mut self.slots[index];
            commit.settled.append(&mut slot.void);
            // The floor after this entry: past the settled items the slot begins with.
            let mut after = slot.state.clone();
            after.apply(after.through + 1, &commit);
            let items: Vec<Item> = slot.read.iter().map(|r| r.item).collect();
            let floor = after.due(&items, i64::MIN, 0, false).floor;
            commit.floor = (floor > slot.state.floor).then_some(floor);
            let acked: Vec<u64> = commit.settled.iter().chain(commit.retries.iter().map(|w| &w.seq)).copied().collect();
            commit_to(slot, commit)?;
            for seq in acked {
                self.claimed.remove(&seq);
            }
        }
        Ok(())
    }

    /// Each slot's entries whose outputs are not known to be published,
    /// in log order, with the slot's index and its log's subject.
    pub fn unpublished(&self) -> Vec<(usize, &str, &Unpublished)> {
        let mut found = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            found.extend(slot.unpublished.iter().map(|u| (index, slot.log.subject(), u)));
        }
        found
    }

    /// Notes that slot `index`'s entries up to log sequence `through` have
    /// had their outputs published (the slot's next entry records it).
    pub fn mark_published(&mut self, index: usize, through: u64) {
        let slot = &mut self.slots[index];
        slot.unpublished.retain(|u| u.seq > through);
        slot.published = slot.published.max(through);
        checkpoint(slot);
    }

    /// Every slot's floor (for tests).
    #[cfg(test)]
    pub fn floors(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.state.floor).collect()
    }

    /// How many items are read and held in memory (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.slots.iter().map(|s| s.read.len()).sum()
    }
}

/// Up to `max` messages of `stream` on `subject` (which may be a
/// wildcard) from sequence `from` on, in order. Nothing to read costs one
/// request, the first few messages one each ([`DIRECT_READS`]); more, a
/// consumer made for the read (create, fetch, delete) instead of a request
/// per message. On nats-server 2.9 such a fetch still
/// costs ≈ 9 ms for ~80 messages of one slot in a 5,000-message stream: a
/// consumer kept per partition is the next step.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn read_subject(conn: &Connection, stream: &stream::Stream, subject: &str, from: u64, max: usize) -> Result<Vec<StreamMessage>, StoreError> {
    // A few messages are read one request each: cheaper for the server
    // than a consumer made, fetched from and deleted.
    let mut found = Vec::new();
    let mut next = from;
    while found.len() < max.min(DIRECT_READS) {
        let Some(m) = next_on(conn, stream, subject, next)? else { return Ok(found) };
        next = m.sequence + 1;
        found.push(m);
    }
    if found.len() == max {
        return Ok(found);
    }
    let first = found.pop().expect("read at least one");
    let mut more = read_by_consumer(conn, stream, subject, first, max - found.len())?;
    found.append(&mut more);
    Ok(found)
}

/// How many messages [`read_subject`] reads one request each before it
/// makes a consumer for the rest.
const DIRECT_READS: usize = 4;

/// `first` and up to `max - 1` messages after it on `subject`, read by a
/// consumer made for the read.
fn read_by_consumer(conn: &Connection, stream: &stream::Stream, subject: &str, first: StreamMessage, max: usize) -> Result<Vec<StreamMessage>, StoreError> {
    if max <= 1 {
        return Ok(vec![first]);
    }
    let (stream, subject) = (stream.clone(), subject.to_string());
    conn.run(async move {
        use futures_util::StreamExt;
        let what = || format!("reading `{subject}`");
        let config = consumer::pull::Config {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: first.sequence + 1 },
            ack_policy: consumer::AckPolicy::None,
            memory_storage: true,
            num_replicas: 1,
            inactive_threshold: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        let reader = stream.create_consumer(config).await.map_err(|e| unavailable(&what(), e))?;
        let mut found = vec![first];
        let fetched = reader.fetch().max_messages(max - 1).messages().await;
        let outcome = match fetched {
            Ok(mut messages) => loop {
                match messages.next().await {
                    None => break Ok(()),
                    Some(Ok(m)) => {
                        let Ok(info) = m.info() else { break Err(StoreError::Corrupt(format!("{}: a message without its stream position", what()))) };
                        let (sequence, time) = (info.stream_sequence, info.published);
                        found.push(StreamMessage { subject: m.subject.clone(), sequence, headers: m.headers.clone().unwrap_or_default(), payload: m.payload.clone(), time });
                    }
                    Some(Err(e)) => break Err(unavailable(&what(), e)),
                }
            },
            Err(e) => Err(unavailable(&what(), e)),
        };
        // Ephemeral: gone after its inactivity threshold if this fails.
        let _ = stream.delete_consumer(&reader.cached_info().name).await;
        outcome.map(|()| found)
    })
}

/// Hands `each` every message of `stream` on `subject` (which may be a
/// wildcard), in order, reading `page` at a time.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer, or what
/// `each` returns.
pub fn read_all(conn: &Connection, stream: &stream::Stream, subject: &str, page: usize, each: impl FnMut(StreamMessage) -> Result<(), StoreError>) -> Result<(), StoreError> {
    read_from(conn, stream, subject, 1, page, each)
}

/// As [`read_all`], from sequence `from` on.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer; `each`'s error.
pub fn read_from(conn: &Connection, stream: &stream::Stream, subject: &str, mut from: u64, page: usize, mut each: impl FnMut(StreamMessage) -> Result<(), StoreError>) -> Result<(), StoreError> {
    loop {
        let found = read_subject(conn, stream, subject, from, page)?;
        let Some(last) = found.last() else { return Ok(()) };
        from = last.sequence + 1;
        for m in found {
            each(m)?;
        }
    }
}

/// The first message of `stream` on `subject` at or after sequence `from`,
/// read directly (any replica may answer, without the JetStream API's
/// request handling: a replica behind its leader answers what it has, and
/// the rest is read next time).
fn next_on(conn: &Connection, stream: &stream::Stream, subject: &str, from: u64) -> Result<Option<StreamMessage>, StoreError> {
    let (stream, subject) = (stream.clone(), subject.to_string());
    conn.run(async move {
        match stream.direct_get_builder().sequence(from).next_by_subject(subject.clone()).send().await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(&format!("reading `{subject}`"), e)),
        }
    })
}

/// Keeps slot's state as its checkpoint when [`CHECKPOINT_EVERY`] entries
/// were appended since the last one and every entry's outputs are
/// published (a checkpoint stands for entries a successor will not read).
/// A checkpoint not kept is only a longer read for the successor.
fn checkpoint(slot: &mut Slot) {
    if slot.since_checkpoint < CHECKPOINT_EVERY || !slot.unpublished.is_empty() {
        return;
    }
    let mut state = slot.state.clone();
    state.published = state.through;
    match slot.log.save_checkpoint(&state) {
        Ok(()) => slot.since_checkpoint = 0,
        Err(e) => tracing::debug!(slot = slot.log.subject(), error = %e, "a slot's checkpoint was not kept"),
    }
}

/// Appends `commit` to `slot`'s log (with how far outputs are known to be
/// published) and folds it into the slot's state, forgetting the items
/// below its new floor; its outputs wait to be published.
fn commit_to(slot: &mut Slot, mut commit: SlotCommit) -> Result<(), StoreError> {
    if slot.published > slot.state.published {
        commit.published = Some(slot.published);
    }
    let data = serde_json::to_vec(&commit).expect("a slot commit serializes");
    let seq = slot.log.append(data)?;
    slot.state.apply(seq, &commit);
    if let Some(u) = Unpublished::of(seq, &mut commit) {
        slot.unpublished.push(u);
    }
    let floor = slot.state.floor;
    slot.read.retain(|r| r.item.seq >= floor);
    slot.since_checkpoint += 1;
    checkpoint(slot);
    Ok(())
}

/// The earlier of two times, either maybe absent.
pub fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

//! Leases on queue slots in the `syncline-leases` bucket, and each slot's
//! commit log, whose appends the server refuses once another holder has
//! taken the slot over.
//!
//! A queue's items are cut into [`SLOTS`] slots by ordering-key hash; a
//! partition (index *i* of *n*, *n* a power of two) is the slots whose
//! number modulo *n* is *i*, so its items are exactly those
//! [`Partition::holds`]. Leasing a partition leases each of its slots: a
//! key (`QUEUE….SLOT`) holding who has it, its token and until when, taken
//! and renewed by compare-and-set on the key's revision, in ascending slot
//! order (two hosts racing for a partition meet at its first slot; hosts
//! whose configs cut the queue differently exclude each other slot by
//! slot). The state of the work lives with the slots, not with a
//! partition, so a queue cut into another number of partitions (a reload)
//! keeps it. The partition's token follows the store contract — a renewal
//! keeps it, a takeover raises it — as the sum of its slots' tokens.
//!
//! A lease alone cannot fence an ack: a holder paused past its lease's
//! end may wake and write. So acks go to each slot's commit log, and each
//! append names the log's last entry as its holder knows it
//! (`Nats-Expected-Last-Subject-Sequence`); a new holder's first append is
//! a marker. Whatever a stale holder appends after that marker is refused
//! by the server, and whatever it appended before the marker is in the log
//! the new holder reads up to its marker: either way both agree on what
//! was committed.

use std::sync::Arc;

use async_nats::jetstream::{context::PublishErrorKind, kv, stream};
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{refused, token, unavailable, Connection, SlotState, SLOTS};
use crate::store::{lease_conflict, Lease, Partition, Queue, StoreError};

/// What a slot's lease key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Holding {
    holder: String,
    token: i64,
    until_ms: i64,
}

/// The slots of `partition`, ascending.
///
/// # Errors
///
/// [`StoreError::Other`] when its count does not divide [`SLOTS`] (on this
/// store a queue has 1, 2, 4, … or 64 partitions, so that a key's slot and
/// its partition agree).
pub fn slots(partition: &Partition) -> Result<Vec<u32>, StoreError> {
    let of = partition.of.max(1);
    if !SLOTS.is_multiple_of(of) || partition.index >= of {
        return Err(StoreError::Other(format!(
            "partition {} of {} of {}: on the NATS store a queue has a power of two of partitions, at most {SLOTS}",
            partition.index,
            partition.of,
            partition.queue.name()
        )));
    }
    Ok((0..SLOTS).filter(|s| s % of == partition.index).collect())
}

/// The subject and key form of a queue's name.
fn queue_key(queue: &Queue) -> Result<String, StoreError> {
    Ok(match queue {
        Queue::Messages { tenant, pipeline } => format!("messages.{}.{}", token(tenant)?, token(pipeline)?),
        Queue::Deliveries { sink } => format!("deliveries.{}", token(sink)?),
    })
}

/// One slot as its holder has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLease {
    /// `QUEUE….SLOT`: the lease's key and the commit log's subject tail.
    pub key: String,
    /// The slot's own token.
    pub token: i64,
}

/// A partition's lease with the slot leases it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The lease as the store contract has it.
    pub lease: Lease,
    /// Its slots.
    pub slots: Vec<SlotLease>,
}

/// Leases on queue slots.
pub struct Leases {
    conn: Arc<Connection>,
    kv: kv::Store,
}

/// How taking one slot ended.
enum Slot {
    /// Taken, with its token; whether this holder had it before.
    Taken(i64, bool),
    /// Another holder has it until then.
    HeldBy(String, i64),
}

/// How a compare-and-set write of a key ended.
pub(super) enum Written {
    /// Written: the key's new revision.
    Done(u64),
    /// Someone wrote the key since it was read: read it again.
    Raced,
}

impl Leases {
    /// The leases of `bucket` (the layout's `syncline-leases`).
    pub fn new(conn: Arc<Connection>, bucket: kv::Store) -> Leases {
        Leases { conn, kv: bucket }
    }

    /// Takes or renews every slot of `partition` for `holder` until
    /// `now_ms + ttl_ms`, as [`crate::store::Store::lease`] takes a
    /// partition; slots it took from no one or from an expired holder are
    /// given back when a later slot is refused.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another holder has one of its slots;
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn take(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Held, StoreError> {
        let queue = queue_key(&partition.queue)?;
        let slots = slots(partition)?;
        let (kv, partition, holder) = (self.kv.clone(), partition.clone(), holder.to_string());
        self.conn.run(async move {
            let until_ms = now_ms + ttl_ms;
            let mut taken = Vec::with_capacity(slots.len());
            for slot in slots {
                let key = format!("{queue}.{slot}");
                match take_slot(&kv, &key, &holder, now_ms, until_ms).await {
                    // Fresh: not this holder's before this call.
                    Ok(Slot::Taken(token, ours)) => taken.push((SlotLease { key, token }, !ours)),
                    outcome => {
                        for (slot, _) in taken.iter().filter(|(_, fresh)| *fresh) {
                            let _ = give_back(&kv, slot, &holder).await;
                        }
                        return Err(match outcome {
                            Ok(Slot::HeldBy(other, until)) => lease_conflict(&partition, &other, until),
                            Err(e) => e,
                            Ok(Slot::Taken(..)) => unreachable!("matched above"),
                        });
                    }
                }
            }
            let slots: Vec<SlotLease> = taken.into_iter().map(|(s, _)| s).collect();
            let token = slots.iter().map(|s| s.token).sum();
            Ok(Held { lease: Lease { partition, holder, token, until_ms }, slots })
        })
    }

    /// Gives `held` up (its slots are free at once); a slot that has
    /// changed hands since is left alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn release(&self, held: &Held) -> Result<(), StoreError> {
        let (kv, held) = (self.kv.clone(), held.clone());
        self.conn.run(async move {
            for slot in &held.slots {
                give_back(&kv, slot, &held.lease.holder).await?;
            }
            Ok(())
        })
    }
}

impl Leases {
    /// Takes or renews the lease on source `source` for `holder`; whether
    /// it is `holder`'s (another's until it runs out).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn take_source(&self, source: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        let (kv, key, holder) = (self.kv.clone(), format!("source.{}", hex::encode(source.as_bytes())), holder.to_string());
        self.conn.run(async move { Ok(matches!(take_slot(&kv, &key, &holder, now_ms, now_ms + ttl_ms).await?, Slot::Taken(..))) })
    }

    /// Every slot lease in force at `now_ms`: (queue name, holder).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn holders(&self, now_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        let js = self.conn.jetstream();
        let stream = self.conn.run(async move { js.get_stream("KV_syncline-leases").await.map_err(|e| unavailable("opening the leases", e)) })?;
        let mut found = Vec::new();
        super::reader::read_all(&self.conn, &stream, "$KV.syncline-leases.>", 1_000, |m| {
            let Some(key) = m.subject.strip_prefix("$KV.syncline-leases.") else { return Ok(()) };
            let Ok(held) = serde_json::from_slice::<Holding>(&m.payload) else { return Ok(()) };
            if held.until_ms > now_ms {
                // `messages.T.P.SLOT` or `deliveries.SINK.SLOT`: the queue's
                // name; `source.HEX`: a source's poller.
                let queue = match key.strip_prefix("source.") {
                    Some(name) => format!("source/{}", hex::decode(name).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()),
                    None => key.rsplit_once('.').map_or(key, |(q, _)| q).replace('.', "/"),
                };
                found.push((queue, held.holder));
            }
            Ok(())
        })?;
        Ok(found)
    }
}

/// Takes or renews one slot.
async fn take_slot(kv: &kv::Store, key: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<Slot, StoreError> {
    for _ in 0..8 {
        let found = kv.entry(key).await.map_err(|e| unavailable(&format!("reading lease `{key}`"), e))?;
        let found = found.filter(|e| e.operation == kv::Operation::Put);
        let (token, ours, revision) = match &found {
            None => (1, false, None),
            Some(entry) => {
                let held: Holding = serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt(format!("lease `{key}` does not read: {e}")))?;
                if held.holder == holder {
                    (held.token, true, Some(entry.revision))
                } else if held.until_ms > now_ms {
                    return Ok(Slot::HeldBy(held.holder, held.until_ms));
                } else {
                    (held.token + 1, false, Some(entry.revision))
                }
            }
        };
        let value = serde_json::to_vec(&Holding { holder: holder.to_string(), token, until_ms }).expect("a lease serializes");
        if let Written::Done(_) = write(kv, key, value, revision, "writing a lease").await? {
            return Ok(Slot::Taken(token, ours));
        }
    }
    Err(StoreError::Unavailable(format!("lease `{key}` kept changing while it was being taken")))
}

/// Ends `holder`'s lease on `slot` (its token kept, so the next holder's raises it).
async fn give_back(kv: &kv::Store, slot: &SlotLease, holder: &str) -> Result<(), StoreError> {
    for _ in 0..8 {
        let found = kv.entry(&slot.key).await.map_err(|e| unavailable(&format!("reading lease `{}`", slot.key), e))?;
        let Some(entry) = found.filter(|e| e.operation == kv::Operation::Put) else { return Ok(()) };
        let Ok(held) = serde_json::from_slice::<Holding>(&entry.value) else { return Ok(()) };
        if held.holder != holder || held.token != slot.token {
            return Ok(());
        }
        let value = serde_json::to_vec(&Holding { until_ms: 0, ..held }).expect("a lease serializes");
        if let Written::Done(_) = write(kv, &slot.key, value, Some(entry.revision), "writing a lease").await? {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable(format!("lease `{}` kept changing while it was being released", slot.key)))
}

/// Creates `key` (`revision` none) or replaces it at `revision`; `doing`
/// names the write in errors.
pub(super) async fn write(kv: &kv::Store, key: &str, value: Vec<u8>, revision: Option<u64>, doing: &str) -> Result<Written, StoreError> {
    let what = || format!("{doing} (`{key}`)");
    match revision {
        None => match kv.create(key, value.into()).await {
            Ok(revision) => Ok(Written::Done(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::Raced),
            Err(e) => Err(unavailable(&what(), e)),
        },
        Some(revision) => match kv.update(key, value.into(), revision).await {
            Ok(revision) => Ok(Written::Done(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Written::Raced),
            Err(e) if e.kind() == kv::UpdateErrorKind::InvalidKey => Err(refused(&what(), e)),
            // Not answered: no server, or (in a cluster) the bucket's
            // stream between two leaders ("no stream found").
            Err(e) => Err(unavailable(&what(), e)),
        },
    }
}

/// The stream holding every slot's commit log.
const COMMITS: &str = "SYNCLINE_COMMITS";

/// The bucket of slots' checkpoints.
const CHECKPOINTS: &str = "syncline-checkpoints";

/// Headers of a commit-log entry: what it is and who appended it.
const KIND: &str = "Syncline-Entry";
const HOLDER: &str = "Syncline-Holder";
const TOKEN: &str = "Syncline-Token";
/// On a commit written in parts: how many, this last one included.
const PARTS: &str = "Syncline-Parts";

/// One entry of a commit log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence in the commits stream.
    pub seq: u64,
    /// `marker` (a holder took the slot), `commit`, or `part` (of a
    /// commit written in parts; [`CommitLog::entries`] joins them).
    pub kind: String,
    /// Who appended it.
    pub holder: String,
    /// With which slot token.
    pub token: i64,
    /// The commit (empty for a marker).
    pub data: Vec<u8>,
    /// On a commit: how many entries it was written in (1 unless it is
    /// larger than the server takes in one message).
    pub parts: usize,
}

/// A slot's commit log as its lease holder appends to it.
pub struct CommitLog {
    conn: Arc<Connection>,
    commits: stream::Stream,
    subject: String,
    holder: String,
    slot: SlotLease,
    /// The log's last entry as this holder knows it (0: empty).
    last: u64,
    /// A publish whose answer was lost: whether it was kept is not known
    /// until the log is read again.
    unsure: bool,
}

impl CommitLog {
    /// Opens the log of `holder`'s `slot` by appending the marker that
    /// fences every earlier holder's appends.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: Arc<Connection>, holder: &str, slot: &SlotLease) -> Result<CommitLog, StoreError> {
        let subject = format!("syncline.commits.{}", slot.key);
        let js = conn.jetstream();
        let commits = conn.run(async move { js.get_stream(COMMITS).await.map_err(|e| unavailable(&format!("opening stream `{COMMITS}`"), e)) })?;
        let mut log = CommitLog { conn, commits, subject, holder: holder.to_string(), slot: slot.clone(), last: 0, unsure: true };
        for _ in 0..8 {
            log.last = log.last_entry()?.map_or(0, |e| e.seq);
            log.unsure = false;
            match log.append_as("marker", Vec::new(), 1) {
                Ok(_) => return Ok(log),
                // Someone (a holder before this one) appended meanwhile: read again.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!("the commit log `{}` kept growing while it was being opened", log.subject)))
    }

    /// Appends a commit; its sequence.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another holder has taken the
    /// partition over (nothing of `data` is kept); [`StoreError::Unavailable`]
    /// when the server does not answer (whether it was kept is found out by
    /// the next append).
    ///
    /// A commit larger than the server takes in one message
    /// ([`Connection::piece`]) is appended in parts, the commit entry
    /// last: until it is appended nothing of it counts, and a holder
    /// retrying writes every part again (the commit takes the parts just
    /// before it).
    pub fn append(&mut self, data: Vec<u8>) -> Result<u64, StoreError> {
        let piece = self.conn.piece();
        if data.len() <= piece {
            return self.append_as("commit", data, 1);
        }
        let parts: Vec<&[u8]> = data.chunks(piece).collect();
        let (last, before) = parts.split_last().expect("more than one part");
        for part in before {
            self.append_as("part", part.to_vec(), 1)?;
        }
        self.append_as("commit", last.to_vec(), parts.len())
    }

    fn append_as(&mut self, kind: &str, data: Vec<u8>, parts: usize) -> Result<u64, StoreError> {
        if self.unsure {
            self.settle()?;
        }
        let mut headers = HeaderMap::new();
        headers.insert(KIND, kind);
        headers.insert(HOLDER, self.holder.as_str());
        headers.insert(TOKEN, self.slot.token.to_string().as_str());
        if parts > 1 {
            headers.insert(PARTS, parts.to_string().as_str());
        }
        headers.insert("Nats-Expected-Last-Subject-Sequence", self.last.to_string().as_str());
        let js = self.conn.jetstream();
        let subject = self.subject.clone();
        let published = self.conn.run(async move {
            match js.publish_with_headers(subject, headers, data.into()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        });
        match published {
            Ok(ack) => {
                self.last = ack.sequence;
                Ok(ack.sequence)
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(StoreError::Conflict(format!(
                "the commit log `{}` has entries this holder (`{}`, slot token {}) did not write: the slot was taken over",
                self.subject, self.holder, self.slot.token
            ))),
            // Not answered (in a cluster, "no stream found" while the
            // stream is between two leaders): whether it was kept is found
            // out by the next append.
            Err(e) if matches!(e.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound) => {
                self.unsure = true;
                Err(unavailable(&format!("appending to `{}`", self.subject), e))
            }
            Err(e) => Err(refused(&format!("appending to `{}`", self.subject), e)),
        }
    }

    /// After a lost answer: the log's last entry is this holder's (the
    /// append was kept) or is what it knew (it was not); anything else is
    /// another holder's.
    fn settle(&mut self) -> Result<(), StoreError> {
        let last = self.last_entry()?;
        match last {
            Some(e) if e.seq == self.last => {}
            None if self.last == 0 => {}
            Some(e) if e.holder == self.holder && e.token == self.slot.token => self.last = e.seq,
            _ => {
                return Err(StoreError::Conflict(format!(
                    "the commit log `{}` has entries this holder (`{}`, slot token {}) did not write: the slot was taken over",
                    self.subject, self.holder, self.slot.token
                )))
            }
        }
        self.unsure = false;
        Ok(())
    }

    /// The log's subject (unique to its slot).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The slot's last checkpoint: its state as the log had it through
    /// some entry no later than this holder knows (a checkpoint past the
    /// log's end — the log was purged — is not used).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn checkpoint(&self) -> Result<Option<SlotState>, StoreError> {
        let (js, key, last) = (self.conn.jetstream(), self.slot.key.clone(), self.last);
        let found = self.conn.run(async move {
            let kv = js.get_key_value(CHECKPOINTS).await.map_err(|e| unavailable(&format!("opening bucket `{CHECKPOINTS}`"), e))?;
            kv.get(key.as_str()).await.map_err(|e| unavailable("reading a slot's checkpoint", e))
        })?;
        Ok(found.and_then(|v| serde_json::from_slice::<SlotState>(&v).ok()).filter(|s| s.through <= last))
    }

    /// Keeps `state` as the slot's checkpoint: the log's state through
    /// `state.through`, every entry up to it published. Any holder's is
    /// as good (it is the log's), so it is simply written.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn save_checkpoint(&self, state: &SlotState) -> Result<(), StoreError> {
        let (js, key) = (self.conn.jetstream(), self.slot.key.clone());
        let value = serde_json::to_vec(state).expect("a slot state serializes");
        self.conn.run(async move {
            let kv = js.get_key_value(CHECKPOINTS).await.map_err(|e| unavailable(&format!("opening bucket `{CHECKPOINTS}`"), e))?;
            kv.put(key, value.into()).await.map(drop).map_err(|e| unavailable("keeping a slot's checkpoint", e))
        })
    }

    /// The log's last entry.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn last_entry(&self) -> Result<Option<Entry>, StoreError> {
        let (commits, subject) = (self.commits.clone(), self.subject.clone());
        self.conn.run(async move {
            match commits.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(entry(m))),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(unavailable(&format!("reading the end of `{subject}`"), e)),
            }
        })
    }

    /// The log's entries after sequence `after` up to the last this holder
    /// knows (its marker or its latest commit), in order: what the slot's
    /// earlier holders committed, for a holder taking it over. A commit
    /// written in parts comes as one entry (at its last part's sequence);
    /// parts no commit followed are left out.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when a commit's parts are not before it.
    pub fn entries(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        joined(self.raw_entries(after)?, &self.subject)
    }

    fn raw_entries(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        let (commits, subject, last) = (self.commits.clone(), self.subject.clone(), self.last);
        self.conn.run(async move {
            let mut found = Vec::new();
            let mut from = after + 1;
            while from <= last {
                let next = commits.raw_message_builder().sequence(from).next_by_subject(subject.clone()).send().await;
                match next {
                    Ok(m) if m.sequence <= last => {
                        from = m.sequence + 1;
                        found.push(entry(m));
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => break,
                    Err(e) => return Err(unavailable(&format!("reading `{subject}`"), e)),
                }
            }
            Ok(found)
        })
    }
}

/// A stored commit-log message as an [`Entry`].
fn entry(m: async_nats::jetstream::message::StreamMessage) -> Entry {
    let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
    Entry {
        seq: m.sequence,
        kind: header(KIND),
        holder: header(HOLDER),
        token: header(TOKEN).parse().unwrap_or(0),
        data: m.payload.to_vec(),
        parts: header(PARTS).parse().unwrap_or(1),
    }
}

/// `raw` with each commit written in parts joined into one entry: a
/// commit of *n* parts takes the *n* − 1 parts just before it (a holder
/// that retried left the parts of its earlier try further back), which
/// its holder appended under the same token. Parts no commit took are
/// left out.
fn joined(raw: Vec<Entry>, subject: &str) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut parts: Vec<Entry> = Vec::new();
    for mut e in raw {
        match e.kind.as_str() {
            "part" => parts.push(e),
            "commit" if e.parts > 1 => {
                let n = e.parts - 1;
                let mine = parts.len() >= n && parts[parts.len() - n..].iter().all(|p| p.holder == e.holder && p.token == e.token);
                if !mine {
                    return Err(StoreError::Corrupt(format!("commit {} of `{subject}` has {} parts, and the entries before it are not its parts", e.seq, e.parts)));
                }
                let mut data: Vec<u8> = parts.split_off(parts.len() - n).into_iter().flat_map(|p| p.data).collect();
                parts.clear();
                data.append(&mut e.data);
                e.data = data;
                out.push(e);
            }
            _ => {
                parts.clear();
                out.push(e);
            }
        }
    }
    Ok(out)
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog").field("subject", &self.subject).field("last", &self.last).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, kind: &str, holder: &str, token: i64, data: &str, parts: usize) -> Entry {
        Entry { seq, kind: kind.into(), holder: holder.into(), token, data: data.as_bytes().to_vec(), parts }
    }

    #[test]
    fn a_commit_in_parts_takes_the_parts_just_before_it_and_left_over_parts_count_for_nothing() {
        let raw = vec![
            e(1, "marker", "a", 1, "", 1),
            e(2, "commit", "a", 1, "small", 1),
            // A first try that failed after one part; the retry wrote both again.
            e(3, "part", "a", 1, "OLD", 1),
            e(4, "part", "a", 1, "big-", 1),
            e(5, "commit", "a", 1, "one", 2),
            // A holder that stopped between its parts: the next marker ends them.
            e(6, "part", "a", 1, "lost", 1),
            e(7, "marker", "b", 2, "", 1),
            e(8, "commit", "b", 2, "next", 1),
        ];
        let joined = joined(raw, "s").unwrap();
        let got: Vec<(u64, &str, String)> = joined.iter().map(|e| (e.seq, e.kind.as_str(), String::from_utf8_lossy(&e.data).into_owned())).collect();
        assert_eq!(
            got,
            [(1, "marker", String::new()), (2, "commit", "small".into()), (5, "commit", "big-one".into()), (7, "marker", String::new()), (8, "commit", "next".into())]
        );
    }

    #[test]
    fn a_commit_whose_parts_are_missing_or_another_holder_s_does_not_read() {
        let missing = joined(vec![e(1, "commit", "a", 1, "x", 2)], "s").unwrap_err();
        assert!(matches!(&missing, StoreError::Corrupt(t) if t.contains("commit 1 of `s` has 2 parts")), "{missing}");
        let foreign = joined(vec![e(1, "part", "b", 2, "x", 1), e(2, "commit", "a", 1, "y", 2)], "s").unwrap_err();
        assert!(matches!(foreign, StoreError::Corrupt(_)));
    }
}

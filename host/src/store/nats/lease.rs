//! Partition leases in the `syncline-leases` bucket, and each partition's
//! commit log, whose appends the server refuses once another holder has
//! taken the partition over.
//!
//! A lease is a key (`QUEUE….INDEX.OF`) holding who has it, its token and
//! until when; it is taken and renewed by compare-and-set on the key's
//! revision, so two hosts racing for a free partition cannot both win. The
//! token follows the store contract: a renewal keeps it, a takeover of an
//! expired lease raises it.
//!
//! A lease alone cannot fence an ack: a holder paused past its lease's
//! end may wake and write. So acks go to the partition's commit log, and
//! each append names the log's last entry as its holder knows it
//! (`Nats-Expected-Last-Subject-Sequence`); a new holder's first append is
//! a marker. Whatever a stale holder appends after that marker is refused
//! by the server, and whatever it appended before the marker is in the log
//! the new holder reads up to its marker: either way both agree on what
//! was committed.

use std::sync::Arc;

use async_nats::jetstream::{context::PublishErrorKind, kv, stream};
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{refused, token, unavailable, Connection};
use crate::store::{lease_conflict, Lease, Partition, Queue, StoreError};

/// What a lease key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    holder: String,
    token: i64,
    until_ms: i64,
}

/// The lease key of `partition`.
fn lease_key(partition: &Partition) -> Result<String, StoreError> {
    let queue = match &partition.queue {
        Queue::Messages { tenant, pipeline } => format!("messages.{}.{}", token(tenant)?, token(pipeline)?),
        Queue::Deliveries { sink } => format!("deliveries.{}", token(sink)?),
    };
    Ok(format!("{queue}.{}.{}", partition.index, partition.of))
}

/// Partition leases.
pub struct Leases {
    conn: Arc<Connection>,
    kv: kv::Store,
}

/// How a compare-and-set write of a lease ended.
enum Written {
    Done,
    /// Someone wrote the key since it was read: read it again.
    Raced,
}

impl Leases {
    /// The leases of `bucket` (the layout's `syncline-leases`).
    pub fn new(conn: Arc<Connection>, bucket: kv::Store) -> Leases {
        Leases { conn, kv: bucket }
    }

    /// Takes or renews `partition` for `holder` until `now_ms + ttl_ms`,
    /// as [`crate::store::Store::lease`] does.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another holder has it;
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn take(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError> {
        let key = lease_key(partition)?;
        let (kv, partition, holder) = (self.kv.clone(), partition.clone(), holder.to_string());
        self.conn.run(async move {
            for _ in 0..8 {
                let found = kv.entry(&key).await.map_err(|e| unavailable(&format!("reading lease `{key}`"), e))?;
                let found = found.filter(|e| e.operation == kv::Operation::Put);
                let (token, revision) = match &found {
                    None => (1, None),
                    Some(entry) => {
                        let held: Held = serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt(format!("lease `{key}` does not read: {e}")))?;
                        if held.holder == holder {
                            (held.token, Some(entry.revision))
                        } else if held.until_ms > now_ms {
                            return Err(lease_conflict(&partition, &held.holder, held.until_ms));
                        } else {
                            (held.token + 1, Some(entry.revision))
                        }
                    }
                };
                let until_ms = now_ms + ttl_ms;
                let value = serde_json::to_vec(&Held { holder: holder.clone(), token, until_ms }).expect("a lease serializes");
                match write(&kv, &key, value, revision).await? {
                    Written::Done => return Ok(Lease { partition, holder, token, until_ms }),
                    Written::Raced => continue,
                }
            }
            Err(StoreError::Unavailable(format!("lease `{key}` kept changing while it was being taken")))
        })
    }

    /// Gives `lease` up (its partition is free at once); nothing happens
    /// when it has changed hands since.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = lease_key(&lease.partition)?;
        let (kv, lease) = (self.kv.clone(), lease.clone());
        self.conn.run(async move {
            for _ in 0..8 {
                let Some(entry) = kv.entry(&key).await.map_err(|e| unavailable(&format!("reading lease `{key}`"), e))? else { return Ok(()) };
                let Ok(held) = serde_json::from_slice::<Held>(&entry.value) else { return Ok(()) };
                if entry.operation != kv::Operation::Put || held.holder != lease.holder || held.token != lease.token {
                    return Ok(());
                }
                let value = serde_json::to_vec(&Held { until_ms: 0, ..held }).expect("a lease serializes");
                if let Written::Done = write(&kv, &key, value, Some(entry.revision)).await? {
                    return Ok(());
                }
            }
            Err(StoreError::Unavailable(format!("lease `{key}` kept changing while it was being released")))
        })
    }
}

/// Creates `key` (`revision` none) or replaces it at `revision`.
async fn write(kv: &kv::Store, key: &str, value: Vec<u8>, revision: Option<u64>) -> Result<Written, StoreError> {
    let what = || format!("writing lease `{key}`");
    match revision {
        None => match kv.create(key, value.into()).await {
            Ok(_) => Ok(Written::Done),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::Raced),
            Err(e) => Err(unavailable(&what(), e)),
        },
        Some(revision) => match kv.update(key, value.into(), revision).await {
            Ok(_) => Ok(Written::Done),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Written::Raced),
            Err(e) if e.kind() == kv::UpdateErrorKind::TimedOut => Err(unavailable(&what(), e)),
            Err(e) => Err(refused(&what(), e)),
        },
    }
}

/// The stream holding every partition's commit log.
const COMMITS: &str = "SYNCLINE_COMMITS";

/// Headers of a commit-log entry: what it is and who appended it.
const KIND: &str = "Syncline-Entry";
const HOLDER: &str = "Syncline-Holder";
const TOKEN: &str = "Syncline-Token";

/// One entry of a commit log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence in the commits stream.
    pub seq: u64,
    /// `marker` (a holder took the partition) or `commit`.
    pub kind: String,
    /// Who appended it.
    pub holder: String,
    /// With which lease token.
    pub token: i64,
    /// The commit (empty for a marker).
    pub data: Vec<u8>,
}

/// A partition's commit log as its lease holder appends to it.
pub struct CommitLog {
    conn: Arc<Connection>,
    commits: stream::Stream,
    subject: String,
    lease: Lease,
    /// The log's last entry as this holder knows it (0: empty).
    last: u64,
    /// A publish whose answer was lost: whether it was kept is not known
    /// until the log is read again.
    unsure: bool,
}

impl CommitLog {
    /// Opens `lease`'s partition's log by appending the marker that fences
    /// every earlier holder's appends.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: Arc<Connection>, lease: &Lease) -> Result<CommitLog, StoreError> {
        let subject = format!("syncline.commits.{}", lease_key(&lease.partition)?);
        let js = conn.jetstream();
        let commits = conn.run(async move { js.get_stream(COMMITS).await.map_err(|e| unavailable(&format!("opening stream `{COMMITS}`"), e)) })?;
        let mut log = CommitLog { conn, commits, subject, lease: lease.clone(), last: 0, unsure: true };
        for _ in 0..8 {
            log.last = log.last_entry()?.map_or(0, |e| e.seq);
            log.unsure = false;
            match log.append_as("marker", Vec::new()) {
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
    pub fn append(&mut self, data: Vec<u8>) -> Result<u64, StoreError> {
        self.append_as("commit", data)
    }

    fn append_as(&mut self, kind: &str, data: Vec<u8>) -> Result<u64, StoreError> {
        if self.unsure {
            self.settle()?;
        }
        let mut headers = HeaderMap::new();
        headers.insert(KIND, kind);
        headers.insert(HOLDER, self.lease.holder.as_str());
        headers.insert(TOKEN, self.lease.token.to_string().as_str());
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
                "the commit log `{}` has entries this holder (`{}`, lease token {}) did not write: the partition was taken over",
                self.subject, self.lease.holder, self.lease.token
            ))),
            Err(e) if matches!(e.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe) => {
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
            Some(e) if e.holder == self.lease.holder && e.token == self.lease.token => self.last = e.seq,
            _ => {
                return Err(StoreError::Conflict(format!(
                    "the commit log `{}` has entries this holder (`{}`, lease token {}) did not write: the partition was taken over",
                    self.subject, self.lease.holder, self.lease.token
                )))
            }
        }
        self.unsure = false;
        Ok(())
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
                Ok(m) => {
                    let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
                    Ok(Some(Entry {
                        seq: m.sequence,
                        kind: header(KIND),
                        holder: header(HOLDER),
                        token: header(TOKEN).parse().unwrap_or(0),
                        data: m.payload.to_vec(),
                    }))
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(unavailable(&format!("reading the end of `{subject}`"), e)),
            }
        })
    }
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog").field("subject", &self.subject).field("last", &self.last).finish()
    }
}

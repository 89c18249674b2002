//! What a commit keeps besides its queue's state — trace events, dead
//! letters, exceptions, baseline entries, opened loops — carried in the
//! commit-log entry ([`super::SlotCommit::kept`]) and published after it
//! like its outputs: dead letters, exceptions and loops numbered from the
//! entry ([`cases::number`]), trace events with ids from it, so that a
//! holder publishing its predecessor's entry again writes nothing twice.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::cases::{self, Case, Cases};
use super::traces::{self, Event};
use super::{unavailable, Connection, Layout, Output};
use crate::store::records::{DeadLetterRecord, ExceptionRecord, LoopRecord};
use crate::store::{NewDeadLetter, NewException, StoreError};

/// One record a commit keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Kept {
    /// An event of message `id`'s trace.
    Trace {
        /// The message.
        id: String,
        /// What happened to it.
        event: Event,
    },
    /// A dead letter (its number is the entry's).
    Dead {
        /// The record.
        record: DeadLetterRecord,
        /// The dead message.
        body: String,
        /// A sink's: the delivery to queue again when it is replayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<Output>,
    },
    /// An exception (its number is the entry's).
    Exception {
        /// The record.
        record: ExceptionRecord,
        /// The parked message.
        body: String,
    },
    /// An approved planning record for a pipeline's baseline.
    Baseline(Baseline),
    /// A delivered order's loop, waiting for its execution status.
    Loop(LoopRecord),
}

/// An entry of a pipeline's baseline as kept in `syncline-baselines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Baseline {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Record kind.
    pub kind: String,
    /// Item.
    pub item: String,
    /// Location.
    pub location: String,
    /// The approved message.
    pub message_id: String,
    /// When.
    pub at: i64,
    /// The message.
    pub json: String,
}

impl Baseline {
    /// Its key: tenant, pipeline, then kind, item and location (hex).
    pub fn key(&self) -> String {
        format!("{}.{}", prefix(&self.tenant, &self.pipeline), [&self.kind, &self.item, &self.location].map(|s| hex::encode(s.as_bytes())).join("."))
    }
}

/// The key prefix of a pipeline's baseline (no trailing dot).
pub fn prefix(tenant: &str, pipeline: &str) -> String {
    format!("{}.{}", hex::encode(tenant.as_bytes()), hex::encode(pipeline.as_bytes()))
}

/// A dead letter as kept: the record, and for a sink's the delivery a
/// replay queues again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadCase {
    /// The record.
    #[serde(flatten)]
    pub record: DeadLetterRecord,
    /// A sink's: what to queue again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Output>,
}

/// Where kept records go: the cases' buckets and the baselines.
#[derive(Clone)]
pub struct Keeper {
    /// Dead letters.
    pub dead: Cases<DeadCase>,
    /// Exceptions.
    pub exceptions: Cases<ExceptionRecord>,
    /// Loops.
    pub loops: Cases<LoopRecord>,
    /// Baselines.
    pub baselines: kv::Store,
}

impl Keeper {
    /// The keeper of `layout`'s buckets.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: &Connection, layout: &Layout) -> Result<Keeper, StoreError> {
        Ok(Keeper {
            dead: Cases::open(conn, "syncline-dead-letters", "dead letter")?,
            exceptions: Cases::open(conn, "syncline-exceptions", "exception")?,
            loops: Cases::open(conn, "syncline-loops", "loop")?,
            baselines: layout.baselines.clone(),
        })
    }

    /// Publishes what entry `entry` of commit log `log` keeps.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer (all of
    /// it is published again later, writing nothing twice).
    pub fn publish(&self, conn: &Connection, log: &str, entry: u64, kept: &[Kept]) -> Result<(), StoreError> {
        let mut events = Vec::new();
        for (i, k) in kept.iter().enumerate() {
            let dedupe = format!("{log}/{entry}/k{i}");
            match k {
                Kept::Trace { id, event } => events.push((id.clone(), event.clone(), Some(dedupe))),
                Kept::Dead { record, body, delivery } => {
                    let id = cases::number(entry, i)?;
                    let record = DeadLetterRecord { id, ..record.clone() };
                    self.dead.put(conn, id, &Case { record: DeadCase { record: record.clone(), delivery: delivery.clone() }, body: body.clone() })?;
                    events.extend(refs("dead", id, &record.message_id, &record.source_id, &dedupe));
                }
                Kept::Exception { record, body } => {
                    let id = cases::number(entry, i)?;
                    let record = ExceptionRecord { id, ..record.clone() };
                    self.exceptions.put(conn, id, &Case { record: record.clone(), body: body.clone() })?;
                    events.extend(refs("exception", id, &record.message_id, &record.source_id, &dedupe));
                }
                Kept::Baseline(b) => {
                    let (kv, key, value) = (self.baselines.clone(), b.key(), serde_json::to_vec(b).expect("a baseline entry serializes"));
                    conn.run(async move { kv.put(key, value.into()).await.map(drop).map_err(|e| unavailable("keeping a baseline entry", e)) })?;
                }
                Kept::Loop(record) => {
                    let id = cases::number(entry, i)?;
                    self.loops.put(conn, id, &Case { record: LoopRecord { id, ..record.clone() }, body: String::new() })?;
                }
            }
        }
        traces::publish(conn, events)
    }
}

/// Dead letter `d` as kept: open, of `source_id`'s processing in `tenant`'s
/// `pipeline`, died at `place` at `at` (its number comes when published).
pub fn dead_letter(d: &NewDeadLetter, tenant: &str, pipeline: &str, source_id: &str, place: String, at: i64) -> DeadLetterRecord {
    DeadLetterRecord {
        id: 0,
        tenant: tenant.to_string(),
        pipeline: pipeline.to_string(),
        source_id: source_id.to_string(),
        at,
        place,
        plugin: d.plugin.clone(),
        digest: d.digest.clone(),
        reason: d.reason.clone(),
        attempts: d.attempts.clone(),
        message_id: d.message_id.clone(),
        outcome: if d.outcome_unknown { "unknown" } else { "not-delivered" }.into(),
        state: "open".into(),
        resolved_at: None,
        note: None,
    }
}

/// Exception `e` as kept: open, of `source_id`'s processing (none for one
/// about the pipeline itself) in `tenant`'s `pipeline`, parked at `at`.
pub fn exception(e: &NewException, tenant: &str, pipeline: &str, source_id: &str, at: i64) -> ExceptionRecord {
    ExceptionRecord {
        id: 0,
        tenant: tenant.to_string(),
        pipeline: pipeline.to_string(),
        source_id: source_id.to_string(),
        at,
        queue: e.queue.clone(),
        detail: e.detail.clone(),
        state: "open".into(),
        message_id: e.message_id.clone(),
        settled_at: None,
        note: None,
        overdue_at: None,
    }
}

/// The trace events pointing a message and its source at case `id`.
pub fn refs(kind: &str, id: i64, message_id: &str, source_id: &str, dedupe: &str) -> Vec<(String, Event, Option<String>)> {
    let mut events = vec![(message_id.to_string(), Event::Case { kind: kind.into(), id }, Some(format!("{dedupe}/m")))];
    if !source_id.is_empty() && source_id != message_id {
        events.push((source_id.to_string(), Event::Case { kind: kind.into(), id }, Some(format!("{dedupe}/s"))));
    }
    events
}

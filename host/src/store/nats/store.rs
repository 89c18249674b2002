//! [`NatsStore`]: the [`Store`] contract on the NATS store's parts —
//! appends with sources' cursors, leases opening their partitions'
//! queues, claims and acks of messages and deliveries (with everything an
//! ack keeps: outputs, trace events, dead letters, exceptions, baseline
//! entries, loops, audit events), the records' queries and their changes
//! (replay, purge, settle), plugin state, approvals, sink pauses and the
//! plugin archive.
//!
//! A partition's lease opens its queue here (each slot's log fenced by the
//! holder's marker); a later lease of the same holder with the same token
//! is a renewal. Opening a partition drops the open queues of this store
//! that share slots with it, which the marker has fenced: a call under a
//! dropped lease that still holds its slots opens them again.
//!
//! Counts, backlog and pruning come from a census of every trace kept
//! ([`Traces::census`]), which each process keeps and reads on from where
//! it was (from the start every five minutes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;

use super::audit::{AuditLog, Event};
use super::cases::{Case, Cases};
use super::kept::{self, Keeper};
use super::members::Members;
use super::traces::{Event as TraceEvent, Traces};
use super::{Appender, Connection, DeliveryQueue, Held, Layout, Leases, MessageQueue, Settings};
use crate::config::Tier;
use crate::store::records::{self, AuditEntry, AuditFilter, AuditRecord, DeadLetterRecord, ExceptionRecord, Replayed};
use crate::store::{
    now_ms, Attempt, Backlog, Commit, Counts, Cursor, Delivery, Due, IngestOutcome, Lease, NewException, NewMessage, Partition, Pending, Pruned, Queue, QueueWatcher, Snapshot, StateEntry,
    Store, StoreError, Submitted,
};

/// An open queue of a partition this store's process holds.
enum Opened {
    Messages(MessageQueue),
    Deliveries(DeliveryQueue),
}

/// A held partition and its open queue.
struct Open {
    held: Held,
    queue: Opened,
    /// When it was last checked for a request from its preferred holder.
    checked: std::time::Instant,
}

/// Bytes of a server message kept free beside an accepted message or an
/// output for the record that may keep it (see [`Store::record_limit`]).
const RECORD_ROOM: usize = 64 * 1024;

/// How often a held partition is checked for a request from its
/// preferred holder.
const HANDOVER_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The store on NATS JetStream.
pub struct NatsStore {
    conn: Arc<Connection>,
    appender: Arc<Appender>,
    leases: Leases,
    audit: AuditLog,
    keeper: Keeper,
    traces: Traces,
    state: kv::Store,
    control: kv::Store,
    archive: kv::Store,
    open: Mutex<HashMap<Partition, Arc<Mutex<Open>>>>,
    members: Members,
}

/// Whether two partitions of one queue share a slot.
fn overlap(a: &Partition, b: &Partition) -> bool {
    a.queue == b.queue && a.index % a.of.min(b.of).max(1) == b.index % a.of.min(b.of).max(1)
}

/// What a holder that let a partition go to `other` is told.
fn handed_over(p: &Partition, other: &str) -> StoreError {
    StoreError::Conflict(format!("partition {} of {} of {} was handed over to `{other}`, which should hold it", p.index, p.of, p.queue.name()))
}

/// Whether `open` is held under `lease` (same holder, same token).
fn holds(open: &Mutex<Open>, lease: &Lease) -> bool {
    let open = open.lock().expect("not poisoned");
    open.held.lease.holder == lease.holder && open.held.lease.token == lease.token
}

/// A name as a key token of a bucket (any characters, hex-encoded).
fn key_token(name: &str) -> String {
    hex::encode(name.as_bytes())
}

/// The name a [`key_token`] encodes.
fn from_token(token: &str) -> Result<String, StoreError> {
    hex::decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| StoreError::Corrupt(format!("bucket key part `{token}` does not decode")))
}

impl NatsStore {
    /// Connects to the server of `settings` and finds or makes the
    /// store's streams and buckets.
    ///
    /// # Errors
    ///
    /// As [`Connection::open`] and [`Layout::ensure`].
    pub fn open(settings: &Settings) -> Result<NatsStore, StoreError> {
        let conn = Arc::new(Connection::open(settings)?);
        let layout = Layout::ensure(&conn, settings)?;
        Ok(NatsStore {
            appender: Arc::new(Appender::new(conn.clone(), &layout)),
            leases: Leases::new(conn.clone(), layout.leases.clone()),
            audit: AuditLog::open(&conn)?,
            keeper: Keeper::open(&conn, &layout)?,
            traces: Traces::open(&conn)?,
            state: layout.state.clone(),
            control: layout.control.clone(),
            archive: layout.archive.clone(),
            open: Mutex::new(HashMap::new()),
            members: Members::new(conn.clone(), layout.control.clone()),
            conn,
        })
    }

    /// Opens `held`'s queue and keeps it, dropping the open queues its
    /// markers fenced.
    fn keep(&self, held: Held) -> Result<Arc<Mutex<Open>>, StoreError> {
        let queue = match &held.lease.partition.queue {
            Queue::Messages { .. } => Opened::Messages(MessageQueue::open(self.conn.clone(), self.appender.clone(), self.keeper.clone(), &held)?),
            Queue::Deliveries { .. } => Opened::Deliveries(DeliveryQueue::open(self.conn.clone(), self.keeper.clone(), &held)?),
        };
        let partition = held.lease.partition.clone();
        let open = Arc::new(Mutex::new(Open { held, queue, checked: std::time::Instant::now() }));
        let mut all = self.open.lock().expect("not poisoned");
        all.retain(|p, _| !overlap(p, &partition));
        all.insert(partition, open.clone());
        Ok(open)
    }

    /// The open queue of `lease`: kept since its lease was taken, or opened
    /// again while its slots are still the holder's with that token.
    fn held(&self, lease: &Lease) -> Result<Arc<Mutex<Open>>, StoreError> {
        let kept = self.open.lock().expect("not poisoned").get(&lease.partition).cloned();
        if let Some(open) = kept.filter(|o| holds(o, lease)) {
            return Ok(open);
        }
        let now = now_ms();
        let stale = || StoreError::Conflict(format!("the lease of `{}` (token {}) on {} is no longer held", lease.holder, lease.token, lease.partition.queue.name()));
        if lease.until_ms <= now {
            return Err(stale());
        }
        // Let go to the member that asked for it: not taken back here.
        if let Some(other) = self.members.wanted_by_another(&lease.partition, &lease.holder)? {
            return Err(handed_over(&lease.partition, &other));
        }
        let held = self.leases.take(&lease.partition, &lease.holder, now, lease.until_ms - now)?;
        if held.lease.token != lease.token {
            return Err(stale());
        }
        self.keep(held)
    }

    /// Lets `held` go: its open queue dropped, its slots free.
    fn let_go(&self, held: &Held) -> Result<(), StoreError> {
        {
            let mut all = self.open.lock().expect("not poisoned");
            if all.get(&held.lease.partition).is_some_and(|o| holds(o, &held.lease)) {
                all.remove(&held.lease.partition);
            }
        }
        self.leases.release(held)
    }

    /// When the live member that should hold `lease`'s partition asked
    /// for it: lets it go and says so ([`StoreError::Conflict`]). Checked
    /// at most every [`HANDOVER_CHECK`], between batches.
    fn hand_over_if_asked(&self, lease: &Lease) -> Result<(), StoreError> {
        let open = self.held(lease)?;
        let held = {
            let mut open = open.lock().expect("not poisoned");
            if open.checked.elapsed() < HANDOVER_CHECK {
                return Ok(());
            }
            open.checked = std::time::Instant::now();
            open.held.clone()
        };
        match self.members.wanted_by_another(&lease.partition, &lease.holder)? {
            Some(other) => {
                self.let_go(&held)?;
                Err(handed_over(&lease.partition, &other))
            }
            None => Ok(()),
        }
    }

    /// Runs `work` on `lease`'s open message queue.
    fn messages<T>(&self, lease: &Lease, work: impl FnOnce(&mut MessageQueue) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let open = self.held(lease)?;
        let mut open = open.lock().expect("not poisoned");
        match &mut open.queue {
            Opened::Messages(q) => work(q),
            Opened::Deliveries(_) => Err(StoreError::Other(format!("{} is not a pipeline's message queue", lease.partition.queue.name()))),
        }
    }

    /// Runs `work` on `lease`'s open delivery queue.
    fn deliveries<T>(&self, lease: &Lease, work: impl FnOnce(&mut DeliveryQueue) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let open = self.held(lease)?;
        let mut open = open.lock().expect("not poisoned");
        match &mut open.queue {
            Opened::Deliveries(q) => work(q),
            Opened::Messages(_) => Err(StoreError::Other(format!("{} is not a sink's delivery queue", lease.partition.queue.name()))),
        }
    }

    /// Runs a call on a bucket.
    fn bucket<T: Send + 'static, F>(&self, bucket: &kv::Store, work: impl FnOnce(kv::Store) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.conn.run(work(bucket.clone()))
    }

    /// Every key of `bucket` starting with `prefix`, with its value.
    fn entries(&self, bucket: &kv::Store, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = prefix.to_string();
        self.bucket(bucket, |kv| async move {
            use futures_util::TryStreamExt;
            let what = |e: &dyn std::fmt::Display| super::unavailable("listing a bucket", e);
            let keys: Vec<String> = kv.keys().await.map_err(|e| what(&e))?.try_collect().await.map_err(|e| what(&e))?;
            let mut found = Vec::new();
            for key in keys.into_iter().filter(|k| k.starts_with(&prefix)) {
                if let Some(value) = kv.get(key.as_str()).await.map_err(|e| what(&e))? {
                    found.push((key, value.to_vec()));
                }
            }
            found.sort();
            Ok(found)
        })
    }

    /// Puts (`Some`) or deletes (`None`) one key of `bucket`.
    fn write(&self, bucket: &kv::Store, key: String, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        self.bucket(bucket, |kv| async move {
            let what = || format!("writing `{key}`");
            match value {
                Some(v) => kv.put(key.as_str(), v.into()).await.map(drop).map_err(|e| super::unavailable(&what(), e)),
                None => kv.delete(key.as_str()).await.map_err(|e| super::unavailable(&what(), e)),
            }
        })
    }

    /// One key of `bucket`.
    fn read(&self, bucket: &kv::Store, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.bucket(bucket, |kv| async move { kv.get(key.as_str()).await.map(|v| v.map(|b| b.to_vec())).map_err(|e| super::unavailable(&format!("reading `{key}`"), e)) })
    }
}

impl Store for NatsStore {
    fn append(&self, messages: Vec<NewMessage>, cursor: Option<Cursor>) -> Submitted<Vec<IngestOutcome>> {
        let answers: Vec<(String, String, Option<crate::store::LoopAnswer>)> = messages.iter().map(|m| (m.id.clone(), m.tenant.clone(), m.answers.clone())).collect();
        let accepted = match self.appender.append(messages, cursor.as_ref()) {
            Ok(accepted) => accepted,
            Err(e) => return Submitted::ready(Err(e)),
        };
        // Execution statuses close the loops they answer, once accepted.
        for ((id, tenant, answer), a) in answers.into_iter().zip(&accepted) {
            if let (Some(answer), Some(_)) = (answer, a.seq) {
                if let Err(e) = self.close_loops(&id, &tenant, &answer) {
                    tracing::warn!(status = %id, error = %e, "an execution status was accepted but the loops it answers were not closed");
                }
            }
        }
        Submitted::ready(Ok(accepted.into_iter().map(|a| a.outcome).collect()))
    }

    fn lease(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError> {
        self.members.join(holder);
        let held = match self.leases.take(partition, holder, now_ms, ttl_ms) {
            Ok(held) => held,
            Err(StoreError::Conflict(taken)) => {
                // Another has it: ask for it when it should be this one's.
                let live = self.members.live()?;
                if Members::preferred(partition, &live) == Some(holder) {
                    self.members.want(partition, holder)?;
                }
                return Err(StoreError::Conflict(taken));
            }
            Err(e) => return Err(e),
        };
        // Asked for by the member that should hold it: let go.
        if let Some(other) = self.members.wanted_by_another(partition, holder)? {
            self.let_go(&held)?;
            return Err(handed_over(partition, &other));
        }
        let kept = self.open.lock().expect("not poisoned").get(partition).cloned();
        if let Some(open) = kept {
            let mut open = open.lock().expect("not poisoned");
            let lease = &mut open.held.lease;
            if lease.holder == holder && lease.token == held.lease.token {
                lease.until_ms = held.lease.until_ms;
                return Ok(held.lease);
            }
        }
        let lease = held.lease.clone();
        self.keep(held)?;
        if Members::preferred(partition, &self.members.live()?) == Some(holder) {
            self.members.granted(partition)?;
        }
        Ok(lease)
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let kept = {
            let mut all = self.open.lock().expect("not poisoned");
            let ours = all.get(&lease.partition).is_some_and(|o| holds(o, lease));
            if ours { all.remove(&lease.partition) } else { None }
        };
        match kept {
            Some(open) => self.leases.release(&open.lock().expect("not poisoned").held),
            None => Ok(()),
        }
    }

    fn claim(&self, lease: &Lease, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due<Pending>, StoreError> {
        self.hand_over_if_asked(lease)?;
        self.messages(lease, |q| q.claim(after_seq, now_ms, limit))
    }

    fn ack(&self, lease: &Lease, commit: Commit) -> Result<(), StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("{} is not a pipeline's message queue", lease.partition.queue.name())));
        };
        if (tenant, pipeline) != (&commit.tenant, &commit.pipeline) {
            return Err(StoreError::Other(format!("a commit of {}/{} under a lease of {}", commit.tenant, commit.pipeline, lease.partition.queue.name())));
        }
        let at = now_ms();
        let audit = commit.audit.iter().map(|e| Event::new(e, at)).collect();
        self.messages(lease, |q| q.ack(&commit.processed, audit))
    }

    fn claim_deliveries(&self, lease: &Lease, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError> {
        self.hand_over_if_asked(lease)?;
        self.deliveries(lease, |q| q.claim(now_ms, limit))
    }

    fn ack_deliveries(&self, lease: &Lease, attempts: Vec<Attempt>) -> Result<(), StoreError> {
        self.deliveries(lease, |q| q.ack(&attempts))
    }

    fn snapshot_deliveries(&self, lease: &Lease, _now_ms: i64, _max: usize) -> Result<Option<Snapshot<Delivery>>, StoreError> {
        // None: the sink's workers claim from the store.
        self.deliveries(lease, |_| Ok(None))
    }

    fn snapshot_messages(&self, lease: &Lease, _now_ms: i64, _max: usize) -> Result<Option<Snapshot<Pending>>, StoreError> {
        // None: the pipeline's shards claim from the store.
        self.messages(lease, |_| Ok(None))
    }

    fn watch(&self, watcher: Arc<dyn QueueWatcher>) {
        // No work is announced, only that there is some: with no snapshot
        // taken, workers claim from the store, where every process's work
        // is, woken by any process that queued it.
        super::wake::follow(&self.conn, watcher);
    }

    fn cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        self.appender.cursor(source)
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        Event::publish(&self.conn, &[Event::new(entry, now_ms())], None).map(drop)
    }

    fn audit_events(&self, filter: &AuditFilter, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit.list(&self.conn, filter, after, limit)
    }

    fn correlated(&self, correlation: &str, scope: &Option<Vec<String>>, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut found: Vec<(String, String)> = Vec::new();
        // The message whose own id it is, when there is one.
        if let Some((trace, _)) = self.traces.trace(&self.conn, correlation)? {
            if let Some(input) = trace.input {
                found.push((correlation.to_string(), input.tenant));
            }
        }
        found.extend(self.traces.correlated(&self.conn, correlation)?);
        let in_scope = |t: &str| scope.as_ref().is_none_or(|s| s.iter().any(|x| x == t));
        let mut ids: Vec<String> = Vec::new();
        for (id, tenant) in found {
            if in_scope(&tenant) && !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    fn loops(&self, filter: &records::LoopFilter, after: i64, limit: usize) -> Result<Vec<records::LoopRecord>, StoreError> {
        let in_scope = |t: &str| filter.scope.as_ref().is_none_or(|s| s.iter().any(|x| x == t));
        let mut found = Vec::new();
        for (id, case) in self.keeper.loops.all(&self.conn)? {
            let l = case.record;
            let wanted = id > after
                && filter.state.as_ref().is_none_or(|s| *s == l.state)
                && in_scope(&l.tenant)
                && filter.due_before.is_none_or(|t| l.due_at < t);
            if !wanted {
                continue;
            }
            if filter.closed_late_unsettled {
                let open = match l.exception_id {
                    Some(e) if l.state == "closed" => self.keeper.exceptions.get(&self.conn, e)?.is_some_and(|c| c.record.state == "open"),
                    _ => false,
                };
                if !open {
                    continue;
                }
            }
            found.push(l);
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    fn loop_overdue(&self, id: i64, exception: NewException) -> Result<Option<i64>, StoreError> {
        let Some(open) = self.keeper.loops.get(&self.conn, id)? else { return Ok(None) };
        if open.record.state != "open" {
            return Ok(None);
        }
        // The exception first: a loop is never marked with one that is not
        // there (a crash between the two parks it again at the next check).
        let parked = self.park_exception(&open.record.tenant, &open.record.pipeline, &exception)?;
        let marked = self.keeper.loops.update(&self.conn, id, |l| {
            if l.state != "open" {
                return Err(StoreError::Conflict(format!("loop {id} is {}", l.state)));
            }
            (l.state, l.exception_id) = ("overdue".into(), Some(parked));
            Ok(())
        });
        match marked {
            Ok(_) => Ok(Some(parked)),
            Err(StoreError::Conflict(_)) => {
                self.keeper.exceptions.delete(&self.conn, parked)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn dead_letters(&self, filter: &records::DeadLetterFilter, after: i64, limit: usize) -> Result<Vec<DeadLetterRecord>, StoreError> {
        Ok(self.keeper.dead.list(&self.conn, after, limit, |d| filter.matches(&d.record))?.into_iter().map(|c| c.record.record).collect())
    }

    fn dead_letter(&self, id: i64) -> Result<Option<(DeadLetterRecord, serde_json::Value)>, StoreError> {
        Ok(self.keeper.dead.get(&self.conn, id)?.map(|c| (c.record.record, serde_json::from_str(&c.body).unwrap_or(serde_json::Value::Null))))
    }

    fn replay_dead_letter(&self, id: i64) -> Result<Option<Replayed>, StoreError> {
        let Some(case) = self.keeper.dead.get(&self.conn, id)? else { return Ok(None) };
        let d = case.record.record;
        if d.state != "open" {
            return Err(StoreError::Conflict(format!("dead letter {id} was already {}", d.state)));
        }
        let tag = format!("replay-{id}");
        let replayed = if let Some(sink) = d.place.strip_prefix("sink ") {
            let Some(delivery) = case.record.delivery else {
                return Err(StoreError::Conflict(format!("the delivery of dead letter {id} is not kept")));
            };
            super::deliveries::publish_again(&self.conn, &d.tenant, &d.pipeline, &delivery, &tag)?;
            super::traces::publish(&self.conn, vec![(d.message_id.clone(), TraceEvent::Requeued { sink: sink.to_string(), at: now_ms() }, Some(format!("{tag}/requeued")))])?;
            Replayed::Delivery { sink: sink.to_string(), id: d.message_id.clone() }
        } else {
            self.accept_again(&d.source_id, &tag, &format!("dead letter {id}"))?;
            Replayed::Message { tenant: d.tenant.clone(), pipeline: d.pipeline.clone(), id: d.source_id.clone() }
        };
        let now = now_ms();
        let resolve = |r: &mut kept::DeadCase| {
            if r.record.state != "open" {
                return Err(StoreError::Conflict(format!("dead letter {} was already {}", r.record.id, r.record.state)));
            }
            (r.record.state, r.record.resolved_at) = ("replayed".into(), Some(now));
            Ok(())
        };
        self.keeper.dead.update(&self.conn, id, resolve)?;
        // A message put back to work takes its other stage dead letters with it.
        if let Replayed::Message { .. } = &replayed {
            for (other, c) in self.keeper.dead.all(&self.conn)? {
                let r = &c.record.record;
                if other != id && r.source_id == d.source_id && r.state == "open" && !r.place.starts_with("sink ") {
                    let _ = self.keeper.dead.update(&self.conn, other, resolve);
                }
            }
        }
        Ok(Some(replayed))
    }

    fn purge_dead_letter(&self, id: i64, reason: &str) -> Result<Option<DeadLetterRecord>, StoreError> {
        let now = now_ms();
        let purged = self.keeper.dead.update(&self.conn, id, |r| {
            if r.record.state != "open" {
                return Err(StoreError::Conflict(format!("dead letter {id} was already {}", r.record.state)));
            }
            (r.record.state, r.record.resolved_at, r.record.note) = ("purged".into(), Some(now), Some(reason.to_string()));
            Ok(())
        })?;
        Ok(purged.map(|c| c.record.record))
    }

    fn exceptions(&self, filter: &records::ExceptionFilter, after: i64, limit: usize) -> Result<Vec<ExceptionRecord>, StoreError> {
        Ok(self.keeper.exceptions.list(&self.conn, after, limit, |e| filter.matches(e))?.into_iter().map(|c| c.record).collect())
    }

    fn exception(&self, id: i64) -> Result<Option<(ExceptionRecord, serde_json::Value)>, StoreError> {
        Ok(self.keeper.exceptions.get(&self.conn, id)?.map(|c| (c.record, serde_json::from_str(&c.body).unwrap_or(serde_json::Value::Null))))
    }

    fn settle_exception(&self, id: i64, how: &records::Settle) -> Result<Option<ExceptionRecord>, StoreError> {
        let Some(case) = self.keeper.exceptions.get(&self.conn, id)? else { return Ok(None) };
        let e = case.record;
        if e.state != "open" {
            return Err(StoreError::Conflict(format!("exception {id} was already {}", e.state)));
        }
        let retry = matches!(how, records::Settle::Retry { .. });
        if retry {
            self.accept_again(&e.source_id, &format!("retry-{id}"), &format!("exception {id}"))?;
        }
        let now = now_ms();
        let settle = |r: &mut ExceptionRecord| {
            if r.state != "open" {
                return Err(StoreError::Conflict(format!("exception {} was already {}", r.id, r.state)));
            }
            (r.state, r.settled_at, r.note) = (how.state().into(), Some(now), Some(how.note().into()));
            Ok(())
        };
        let settled = self.keeper.exceptions.update(&self.conn, id, settle)?;
        // A message processed again takes its other open exceptions with it.
        if retry {
            for (other, c) in self.keeper.exceptions.all(&self.conn)? {
                if other != id && c.record.source_id == e.source_id && c.record.state == "open" {
                    let _ = self.keeper.exceptions.update(&self.conn, other, settle);
                }
            }
        }
        Ok(settled.map(|c| c.record))
    }

    fn mark_exception_overdue(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.keeper.exceptions.update(&self.conn, id, |r| {
            r.overdue_at = Some(at);
            Ok(())
        })?;
        Ok(())
    }

    fn baselines(&self, tenant: &str, pipeline: &str) -> Result<Vec<records::BaselineRecord>, StoreError> {
        let mut found = Vec::new();
        for (key, value) in self.entries(&self.keeper.baselines, &format!("{}.", kept::prefix(tenant, pipeline)))? {
            let b: kept::Baseline = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(format!("baseline entry `{key}` does not read: {e}")))?;
            let message = serde_json::from_str(&b.json).unwrap_or(serde_json::Value::Null);
            found.push(records::BaselineRecord { kind: b.kind, item: b.item, location: b.location, message_id: b.message_id, at: b.at, message });
        }
        found.sort_by(|a, b| (&a.kind, &a.item, &a.location).cmp(&(&b.kind, &b.item, &b.location)));
        Ok(found)
    }

    fn baseline_updated(&self, tenant: &str, pipeline: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.baselines(tenant, pipeline)?.iter().map(|b| b.at).max())
    }

    fn park(&self, tenant: &str, pipeline: &str, exception: NewException) -> Result<(), StoreError> {
        self.park_exception(tenant, pipeline, &exception).map(drop)
    }

    fn sink_pauses(&self) -> Result<BTreeMap<String, records::SinkPause>, StoreError> {
        let mut pauses = BTreeMap::new();
        for (key, value) in self.entries(&self.control, "pause.")? {
            let sink = from_token(&key["pause.".len()..])?;
            let pause = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(format!("the pause of sink `{sink}` does not read: {e}")))?;
            pauses.insert(sink, pause);
        }
        Ok(pauses)
    }

    fn set_sink_pause(&self, sink: &str, pause: Option<&records::SinkPause>) -> Result<(), StoreError> {
        let value = pause.map(|p| serde_json::to_vec(p).expect("a pause serializes"));
        self.write(&self.control, format!("pause.{}", key_token(sink)), value)
    }

    fn trace(&self, id: &str) -> Result<Option<records::Trace>, StoreError> {
        let Some((mut trace, cases)) = self.traces.trace(&self.conn, id)? else { return Ok(None) };
        for (kind, number) in cases {
            match kind.as_str() {
                "dead" => trace.dead_letters.extend(self.keeper.dead.get(&self.conn, number)?.map(|c| c.record.record)),
                _ => trace.exceptions.extend(self.keeper.exceptions.get(&self.conn, number)?.map(|c| c.record)),
            }
        }
        trace.dead_letters.sort_by_key(|d| d.id);
        trace.exceptions.sort_by_key(|e| e.id);
        Ok(Some(trace))
    }

    fn state(&self) -> Result<Vec<StateEntry>, StoreError> {
        let mut all = Vec::new();
        for (key, value) in self.entries(&self.state, "")? {
            let parts: Vec<&str> = key.split('.').collect();
            let [tenant, plugin, name] = parts[..] else { return Err(StoreError::Corrupt(format!("plugin state key `{key}` is not tenant.plugin.key"))) };
            all.push(((from_token(tenant)?, from_token(plugin)?, from_token(name)?), value));
        }
        all.sort();
        Ok(all)
    }

    fn put_state(&self, tenant: &str, plugin: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Submitted<()> {
        // Each key is its own write: a batch interrupted by an outage may
        // be kept in part (the plugin's next call writes it again).
        let written = writes.into_iter().try_for_each(|(key, value)| self.write(&self.state, format!("{}.{}.{}", key_token(tenant), key_token(plugin), key_token(&key)), value));
        if let Err(e) = &written {
            // The caller does not wait for it (the ack of the message that
            // wrote it fails too while the server is away, and the message
            // is processed again, writing it again).
            tracing::warn!(tenant, plugin, error = %e, "plugin state not written to the store");
        }
        Submitted::ready(written)
    }

    fn approve_plugin(&self, approval: &records::Approval) -> Result<(), StoreError> {
        let value = serde_json::to_vec(approval).expect("an approval serializes");
        self.write(&self.control, format!("approval.{}.{}", key_token(&approval.plugin), key_token(&approval.digest)), Some(value))
    }

    fn revoke_plugin_approval(&self, plugin: &str, digest: &str) -> Result<bool, StoreError> {
        let key = format!("approval.{}.{}", key_token(plugin), key_token(digest));
        if self.read(&self.control, key.clone())?.is_none() {
            return Ok(false);
        }
        self.write(&self.control, key, None)?;
        Ok(true)
    }

    fn plugin_approvals(&self) -> Result<Vec<records::Approval>, StoreError> {
        let mut all = Vec::new();
        for (key, value) in self.entries(&self.control, "approval.")? {
            all.push(serde_json::from_slice::<records::Approval>(&value).map_err(|e| StoreError::Corrupt(format!("approval `{key}` does not read: {e}")))?);
        }
        all.sort_by(|a, b| (&a.plugin, a.at).cmp(&(&b.plugin, b.at)));
        Ok(all)
    }

    fn archive(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let name = key_token(digest);
        if self.read(&self.archive, format!("{name}.n"))?.is_some() {
            return Ok(());
        }
        // The chunks first, then their count: a component is archived
        // once its count is there.
        // Each as large as the server takes in one message.
        let chunks: Vec<&[u8]> = bytes.chunks(self.conn.piece()).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.write(&self.archive, format!("{name}.{i}"), Some(chunk.to_vec()))?;
        }
        self.write(&self.archive, format!("{name}.n"), Some(chunks.len().to_string().into_bytes()))
    }

    fn archived(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = key_token(digest);
        let Some(count) = self.read(&self.archive, format!("{name}.n"))? else { return Ok(None) };
        let count: usize = String::from_utf8_lossy(&count).parse().map_err(|_| StoreError::Corrupt(format!("the archive's count of `{digest}` does not read")))?;
        let mut bytes = Vec::new();
        for i in 0..count {
            let chunk = self.read(&self.archive, format!("{name}.{i}"))?.ok_or_else(|| StoreError::Corrupt(format!("the archive lacks part {i} of `{digest}`")))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    fn prune_idempotency(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.appender.prune(before_ms)
    }

    fn prune(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        let (conn, k) = (&self.conn, &self.keeper);
        for (id, c) in k.dead.all(conn)? {
            if c.record.record.state != "open" && c.record.record.resolved_at.is_some_and(|t| t < before_ms) {
                k.dead.delete(conn, id)?;
            }
        }
        for (id, c) in k.exceptions.all(conn)? {
            if c.record.state != "open" && c.record.settled_at.is_some_and(|t| t < before_ms) {
                k.exceptions.delete(conn, id)?;
            }
        }
        for (id, c) in k.loops.all(conn)? {
            if c.record.state == "closed" && c.record.closed_at.is_some_and(|t| t < before_ms) {
                k.loops.delete(conn, id)?;
            }
        }
        // Traces: delivered deliveries, then finished messages nothing
        // refers to any more (no delivery, exception or dead letter left).
        let dead: std::collections::HashSet<String> = k.dead.all(conn)?.into_iter().map(|(_, c)| c.record.record.source_id).collect();
        let parked: std::collections::HashSet<String> = k.exceptions.all(conn)?.into_iter().map(|(_, c)| c.record.source_id).collect();
        let (pruned, forget) = self.traces.census(conn, |census| {
            let mut pruned = Pruned::default();
            let mut forget = Vec::new();
            let mut left: std::collections::HashSet<&str> = std::collections::HashSet::new();
            for ((id, _), d) in &census.deliveries {
                if d.state == "delivered" && d.delivered_at.is_some_and(|t| t < before_ms) {
                    pruned.deliveries += 1;
                    forget.push(id.clone());
                } else if let Some(source) = census.sources.get(id) {
                    left.insert(source.as_str());
                }
            }
            for (id, m) in &census.inputs {
                let finished = m.state != "accepted" && m.processed_at.is_some_and(|t| t < before_ms);
                if finished && !left.contains(id.as_str()) && !dead.contains(id) && !parked.contains(id) {
                    pruned.messages += 1;
                    forget.push(id.clone());
                }
            }
            (pruned, forget)
        })?;
        self.traces.forget(conn, forget)?;
        Ok(pruned)
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        use std::collections::BTreeMap as Map;
        let (messages, sinks, lanes) = self.traces.census(&self.conn, |census| {
            let mut messages: Map<(String, String), i64> = Map::new();
            for m in census.inputs.values().filter(|m| m.state == "accepted") {
                *messages.entry((m.tenant.clone(), m.pipeline.clone())).or_default() += 1;
            }
            let mut sinks: Map<String, (i64, i64)> = Map::new();
            let mut lanes: Map<(String, usize), (i64, i64)> = Map::new();
            for ((_, sink), d) in census.deliveries.iter().filter(|(_, d)| d.state == "pending") {
                let s = sinks.entry(sink.clone()).or_insert((0, i64::MAX));
                (s.0, s.1) = (s.0 + 1, s.1.min(d.queued_at));
                let tier = Tier::parse(&d.tier).unwrap_or_default();
                let l = lanes.entry((sink.clone(), tier.index())).or_insert((0, i64::MAX));
                (l.0, l.1) = (l.0 + 1, l.1.min(d.queued_at));
            }
            (messages, sinks, lanes)
        })?;
        let mut exceptions: Map<String, (i64, i64)> = Map::new();
        for (_, c) in self.keeper.exceptions.all(&self.conn)?.into_iter().filter(|(_, c)| c.record.state == "open") {
            let e = exceptions.entry(c.record.queue.clone()).or_insert((0, i64::MAX));
            (e.0, e.1) = (e.0 + 1, e.1.min(c.record.at));
        }
        let mut loops: Map<(String, String), i64> = Map::new();
        for (_, c) in self.keeper.loops.all(&self.conn)?.into_iter().filter(|(_, c)| c.record.state != "closed") {
            *loops.entry((c.record.tenant.clone(), c.record.state.clone())).or_default() += 1;
        }
        let mut dead: Map<String, (i64, i64)> = Map::new();
        for (_, c) in self.keeper.dead.all(&self.conn)?.into_iter().filter(|(_, c)| c.record.record.state == "open") {
            let d = dead.entry(c.record.record.tenant.clone()).or_insert((0, i64::MAX));
            (d.0, d.1) = (d.0 + 1, d.1.min(c.record.record.at));
        }
        Ok(Backlog {
            messages: messages.into_iter().collect(),
            deliveries: sinks.iter().map(|(s, (n, _))| (s.clone(), *n)).collect(),
            oldest_delivery: sinks.into_iter().map(|(s, (_, at))| (s, at)).collect(),
            exceptions: exceptions.into_iter().map(|(q, (n, at))| (q, n, at)).collect(),
            lanes: lanes.into_iter().map(|((s, t), (n, at))| (s, Tier::from_index(t as i64), n, at)).collect(),
            loops: loops.into_iter().collect(),
            dead_letters: dead.into_iter().map(|(t, (n, at))| (t, n, at)).collect(),
        })
    }

    fn lease_source(&self, source: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        self.members.join(holder);
        self.leases.take_source(source, holder, now_ms, ttl_ms)
    }

    fn cluster(&self) -> Result<Option<Vec<records::ClusterMember>>, StoreError> {
        let mut shares: std::collections::BTreeMap<(String, String), u32> = std::collections::BTreeMap::new();
        for (queue, holder) in self.leases.holders(now_ms())? {
            *shares.entry((holder, queue)).or_default() += 1;
        }
        let members = self.members.live()?;
        Ok(Some(
            members
                .into_iter()
                .map(|m| {
                    let holds = shares.iter().filter(|((h, _), _)| *h == m.holder).map(|((_, q), n)| records::QueueShare { queue: q.clone(), slots: *n }).collect();
                    records::ClusterMember { holder: m.holder, since: m.since, seen_at: m.at, holds }
                })
                .collect(),
        ))
    }

    fn record_limit(&self) -> Option<usize> {
        // Room beside a message for the record that keeps it (a dead
        // letter's reasons, an exception's detail), cut to fit if need be.
        Some(self.conn.piece().saturating_sub(RECORD_ROOM).max(1))
    }

    fn broadcast(&self, b: &records::Broadcast) -> Result<bool, StoreError> {
        super::commands::send(&self.conn, &self.control, b).map(|()| true)
    }

    fn rollbacks(&self) -> Result<Vec<records::Broadcast>, StoreError> {
        super::commands::rollbacks(&self.conn, &self.control)
    }

    fn end_rollback(&self, plugin: &str, file_digest: &str) -> Result<(), StoreError> {
        super::commands::end_rollback(&self.conn, &self.control, plugin, file_digest)
    }

    fn broadcasts(&self, holder: &str) -> Option<std::sync::mpsc::Receiver<records::Broadcast>> {
        Some(super::commands::follow(&self.conn, self.control.clone(), holder))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = self.traces.census(&self.conn, |census| {
            let mut counts = Counts::default();
            for m in census.inputs.values() {
                *counts.messages.entry(m.state.clone()).or_default() += 1;
            }
            for d in census.deliveries.values() {
                *counts.deliveries.entry(d.state.clone()).or_default() += 1;
            }
            counts
        })?;
        counts.dead_letters = self.keeper.dead.all(&self.conn)?.len() as i64;
        counts.exceptions = self.keeper.exceptions.all(&self.conn)?.len() as i64;
        Ok(counts)
    }
}

impl NatsStore {
    /// Closes the loops execution status `id` of `tenant` answers: the
    /// order its reference names, or, when none open does, its flow's.
    fn close_loops(&self, id: &str, tenant: &str, answer: &crate::store::LoopAnswer) -> Result<(), StoreError> {
        let open: Vec<(i64, Case<records::LoopRecord>)> = self.keeper.loops.all(&self.conn)?.into_iter().filter(|(_, c)| c.record.tenant == tenant && c.record.state != "closed").collect();
        let by_reference: Vec<i64> = open.iter().filter(|(_, c)| c.record.reference.as_deref() == Some(answer.order_ref.as_str())).map(|(n, _)| *n).collect();
        let closing = if by_reference.is_empty() {
            open.iter().filter(|(_, c)| c.record.correlation.as_deref() == Some(answer.correlation.as_str())).map(|(n, _)| *n).collect()
        } else {
            by_reference
        };
        let now = now_ms();
        for number in closing {
            self.keeper.loops.update(&self.conn, number, |l| {
                if l.state != "closed" {
                    (l.state, l.closed_by, l.closed_at) = ("closed".into(), Some(id.to_string()), Some(now));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Parks an exception outside a commit; its number.
    fn park_exception(&self, tenant: &str, pipeline: &str, e: &NewException) -> Result<i64, StoreError> {
        let id = Cases::<ExceptionRecord>::fresh_number(&self.conn)?;
        let record = ExceptionRecord { id, ..kept::exception(e, tenant, pipeline, "", now_ms()) };
        self.keeper.exceptions.put(&self.conn, id, &Case { record, body: e.json.clone() })?;
        super::traces::publish(&self.conn, kept::refs("exception", id, &e.message_id, "", &format!("parked/{id}")))?;
        Ok(id)
    }

    /// Puts accepted message `source` back to work (`what` put it back):
    /// stored again under a new sequence, with no attempts.
    fn accept_again(&self, source: &str, tag: &str, what: &str) -> Result<(), StoreError> {
        let gone = || StoreError::Conflict(format!("the message {source} of {what} is no longer in the store, or already at work"));
        let Some((trace, _)) = self.traces.trace(&self.conn, source)? else { return Err(gone()) };
        let Some(input) = trace.input.filter(|i| i.state != "accepted") else { return Err(gone()) };
        let seq = self.traces.events(&self.conn, source)?.iter().rev().find_map(|e| match e {
            TraceEvent::Input { seq, .. } | TraceEvent::Accepted { seq, .. } => Some(*seq),
            _ => None,
        });
        let Some((subject, json, key_hash)) = seq.map(|seq| self.traces.message(&self.conn, seq)).transpose()?.flatten() else { return Err(gone()) };
        let seq = self.appender.accept_again(source, &subject, &json, key_hash, tag)?;
        // At work again; its trace reads the message where it now is.
        let event = TraceEvent::Input {
            tenant: input.tenant,
            pipeline: input.pipeline,
            seq,
            state: "accepted".into(),
            received_at: input.received_at,
            processed_at: None,
            processing: None,
            attempts: 0,
            retry_errors: None,
            next_attempt_at: 0,
            outputs: Vec::new(),
        };
        super::traces::publish(&self.conn, vec![(source.to_string(), event, Some(format!("{source}/{tag}/at")))])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{settings, NatsServer};
    use super::*;
    use crate::store::contract;

    fn store(server: &NatsServer) -> NatsStore {
        NatsStore::open(&settings(&server.url())).unwrap()
    }

    #[test]
    fn keeps_state_archive_audit_and_sink_pauses() {
        let server = NatsServer::start();
        let s = store(&server);
        contract::keeps_state_archive_and_audit(&s);
        contract::sink_pauses_are_kept_until_resumed(&s);
        contract::keeps_rollbacks_until_they_end(&s);
        // A component larger than the server takes in one message.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        s.archive("sha256:big", &big).unwrap();
        assert_eq!(s.archived("sha256:big").unwrap().as_deref(), Some(&big[..]));
        // Kept in the server: another process sees it.
        let other = store(&server);
        assert_eq!(other.plugin_approvals().unwrap().len(), 2);
        assert_eq!(other.sink_pauses().unwrap().len(), 1);
        assert_eq!(other.state().unwrap().len(), 1);
    }

    #[test]
    fn work_one_process_queues_wakes_the_other_s_workers() {
        let server = NatsServer::start();
        contract::another_process_s_work_wakes_this_one(&store(&server), &store(&server));
    }

    #[test]
    fn leases_fence_acks_and_their_audit_entries() {
        let server = NatsServer::start();
        contract::a_lease_fences_acks(&store(&server));
    }

    #[test]
    fn a_key_keeps_order_within_its_tenant_and_pipeline_only() {
        let server = NatsServer::start();
        contract::a_key_keeps_order_within_its_tenant_and_pipeline_only(&store(&server));
    }

    /// Each contract test on a server of its own.
    fn each(tests: &[fn(&dyn Store)]) {
        for test in tests {
            let server = NatsServer::start();
            test(&store(&server));
        }
    }

    #[test]
    fn keeps_the_store_contract_for_queues() {
        each(&[
            contract::append_dedupes_and_moves_cursors,
            contract::a_waiting_message_holds_its_key_only_until_due,
            contract::acked_outputs_are_delivered_in_order_per_key,
            contract::tiers_are_served_in_lanes_keeping_order_per_key,
        ]);
    }

    #[test]
    fn keeps_the_store_contract_for_records() {
        each(&[
            contract::prune_keeps_dead_letters_and_pending_work,
            contract::keeps_each_processing_record,
            contract::dead_letters_are_listed_replayed_and_purged,
            contract::keeps_a_dead_letter_whatever_its_reasons_weigh,
            contract::exceptions_are_listed_resolved_retried_and_discarded,
            contract::finds_messages_by_correlation,
            contract::closes_loops,
        ]);
    }
}

//! [`NatsStore`]: the [`Store`] contract on the NATS store's parts — being
//! built; what it keeps so far: appends with sources' cursors, leases,
//! claims and acks of messages and deliveries (with the outputs and audit
//! events an ack carries), the audit log, plugin state, approvals, sink
//! pauses and the plugin archive. The records an ack keeps beyond those
//! (dead letters, exceptions, processing records, baselines) and the
//! queries over them are refused with a clear error until they exist: an
//! ack that carries one is refused before anything is written, so nothing
//! is taken and then lost.
//!
//! A partition's lease opens its queue here (each slot's log fenced by the
//! holder's marker); a later lease of the same holder with the same token
//! is a renewal. Opening a partition drops the open queues of this store
//! that share slots with it, which the marker has fenced: a call under a
//! dropped lease that still holds its slots opens them again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;

use super::audit::{AuditLog, Event};
use super::{Appender, Connection, DeliveryQueue, Held, Layout, Leases, MessageQueue, Settings, Settle};
use crate::store::records::{self, AuditEntry, AuditFilter, AuditRecord};
use crate::store::{
    now_ms, Attempt, AttemptResult, Backlog, Commit, Counts, Cursor, Delivery, Due, IngestOutcome, Lease, NewException, NewMessage, Partition, Pending, Pruned, Queue, QueueWatcher, Snapshot,
    StateEntry, Store, StoreError, Submitted,
};

/// What a query of records the NATS store does not keep yet answers.
fn not_yet(what: &str) -> StoreError {
    StoreError::Other(format!("{what} are not kept by the NATS store yet"))
}

/// How large one entry of the archive bucket is (the server refuses
/// messages over its `max_payload`, 1 MiB by default).
const ARCHIVE_CHUNK: usize = 512 * 1024;

/// An open queue of a partition this store's process holds.
enum Opened {
    Messages(MessageQueue),
    Deliveries(DeliveryQueue),
}

/// A held partition and its open queue.
struct Open {
    held: Held,
    queue: Opened,
}

/// The store on NATS JetStream.
pub struct NatsStore {
    conn: Arc<Connection>,
    appender: Arc<Appender>,
    leases: Leases,
    audit: AuditLog,
    state: kv::Store,
    control: kv::Store,
    archive: kv::Store,
    open: Mutex<HashMap<Partition, Arc<Mutex<Open>>>>,
}

/// Whether two partitions of one queue share a slot.
fn overlap(a: &Partition, b: &Partition) -> bool {
    a.queue == b.queue && a.index % a.of.min(b.of).max(1) == b.index % a.of.min(b.of).max(1)
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
            state: layout.state.clone(),
            control: layout.control.clone(),
            archive: layout.archive.clone(),
            open: Mutex::new(HashMap::new()),
            conn,
        })
    }

    /// Opens `held`'s queue and keeps it, dropping the open queues its
    /// markers fenced.
    fn keep(&self, held: Held) -> Result<Arc<Mutex<Open>>, StoreError> {
        let queue = match &held.lease.partition.queue {
            Queue::Messages { .. } => Opened::Messages(MessageQueue::open(self.conn.clone(), self.appender.clone(), &held)?),
            Queue::Deliveries { .. } => Opened::Deliveries(DeliveryQueue::open(self.conn.clone(), &held)?),
        };
        let partition = held.lease.partition.clone();
        let open = Arc::new(Mutex::new(Open { held, queue }));
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
        let held = self.leases.take(&lease.partition, &lease.holder, now, lease.until_ms - now)?;
        if held.lease.token != lease.token {
            return Err(stale());
        }
        self.keep(held)
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
        Submitted::ready(self.appender.append(messages, cursor.as_ref()).map(|accepted| accepted.into_iter().map(|a| a.outcome).collect()))
    }

    fn lease(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError> {
        let held = self.leases.take(partition, holder, now_ms, ttl_ms)?;
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
        self.messages(lease, |q| q.claim(after_seq, now_ms, limit))
    }

    fn ack(&self, lease: &Lease, commit: Commit) -> Result<(), StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("{} is not a pipeline's message queue", lease.partition.queue.name())));
        };
        if (tenant, pipeline) != (&commit.tenant, &commit.pipeline) {
            return Err(StoreError::Other(format!("a commit of {}/{} under a lease of {}", commit.tenant, commit.pipeline, lease.partition.queue.name())));
        }
        let mut settles = Vec::with_capacity(commit.processed.len());
        for p in commit.processed {
            if !p.dead_letters.is_empty() {
                return Err(not_yet("dead letters"));
            }
            if !p.exceptions.is_empty() {
                return Err(not_yet("exceptions"));
            }
            if !p.baseline.is_empty() {
                return Err(not_yet("baselines"));
            }
            settles.push(match p.retry {
                Some(retry) => Settle::Retry(p.id, retry),
                None => Settle::Done(p.id, p.deliveries),
            });
        }
        let at = now_ms();
        let audit = commit.audit.iter().map(|e| Event::new(e, at)).collect();
        self.messages(lease, |q| q.ack(&settles, audit))
    }

    fn claim_deliveries(&self, lease: &Lease, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError> {
        self.deliveries(lease, |q| q.claim(now_ms, limit))
    }

    fn ack_deliveries(&self, lease: &Lease, attempts: Vec<Attempt>) -> Result<(), StoreError> {
        if attempts.iter().any(|a| matches!(a.result, AttemptResult::Dead(_))) {
            return Err(not_yet("dead letters"));
        }
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

    fn watch(&self, _watcher: Arc<dyn QueueWatcher>) {
        // Nothing is announced: with no snapshot taken, workers claim from
        // the store, where every process's work is.
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

    fn correlated(&self, _correlation: &str, _scope: &Option<Vec<String>>, _limit: usize) -> Result<Vec<String>, StoreError> {
        Err(not_yet("correlations"))
    }

    fn loops(&self, _filter: &records::LoopFilter, _after: i64, _limit: usize) -> Result<Vec<records::LoopRecord>, StoreError> {
        Err(not_yet("loops"))
    }

    fn loop_overdue(&self, _id: i64, _exception: NewException) -> Result<Option<i64>, StoreError> {
        Err(not_yet("loops"))
    }

    fn dead_letters(&self, _filter: &records::DeadLetterFilter, _after: i64, _limit: usize) -> Result<Vec<records::DeadLetterRecord>, StoreError> {
        Err(not_yet("dead letters"))
    }

    fn dead_letter(&self, _id: i64) -> Result<Option<(records::DeadLetterRecord, serde_json::Value)>, StoreError> {
        Err(not_yet("dead letters"))
    }

    fn replay_dead_letter(&self, _id: i64) -> Result<Option<records::Replayed>, StoreError> {
        Err(not_yet("dead letters"))
    }

    fn purge_dead_letter(&self, _id: i64, _reason: &str) -> Result<Option<records::DeadLetterRecord>, StoreError> {
        Err(not_yet("dead letters"))
    }

    fn exceptions(&self, _filter: &records::ExceptionFilter, _after: i64, _limit: usize) -> Result<Vec<records::ExceptionRecord>, StoreError> {
        Err(not_yet("exceptions"))
    }

    fn exception(&self, _id: i64) -> Result<Option<(records::ExceptionRecord, serde_json::Value)>, StoreError> {
        Err(not_yet("exceptions"))
    }

    fn settle_exception(&self, _id: i64, _how: &records::Settle) -> Result<Option<records::ExceptionRecord>, StoreError> {
        Err(not_yet("exceptions"))
    }

    fn mark_exception_overdue(&self, _id: i64, _at: i64) -> Result<(), StoreError> {
        Err(not_yet("exceptions"))
    }

    fn baselines(&self, _tenant: &str, _pipeline: &str) -> Result<Vec<records::BaselineRecord>, StoreError> {
        Err(not_yet("baselines"))
    }

    fn baseline_updated(&self, _tenant: &str, _pipeline: &str) -> Result<Option<i64>, StoreError> {
        Err(not_yet("baselines"))
    }

    fn park(&self, _tenant: &str, _pipeline: &str, _exception: NewException) -> Result<(), StoreError> {
        Err(not_yet("exceptions"))
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

    fn trace(&self, _id: &str) -> Result<Option<records::Trace>, StoreError> {
        Err(not_yet("traces"))
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
        let chunks: Vec<&[u8]> = bytes.chunks(ARCHIVE_CHUNK).collect();
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

    fn prune_idempotency(&self, _before_ms: i64) -> Result<usize, StoreError> {
        // The bucket's entries expire after the dedupe window by themselves.
        Ok(0)
    }

    fn prune(&self, _before_ms: i64) -> Result<Pruned, StoreError> {
        Err(not_yet("pruning and its records"))
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        Err(not_yet("backlog figures"))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        Err(not_yet("counts"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{settings, NatsServer};
    use super::*;
    use crate::store::{contract, Final, NewDeadLetter, Processed};

    fn store(server: &NatsServer) -> NatsStore {
        NatsStore::open(&settings(&server.url())).unwrap()
    }

    #[test]
    fn keeps_state_archive_audit_and_sink_pauses() {
        let server = NatsServer::start();
        let s = store(&server);
        contract::keeps_state_archive_and_audit(&s);
        contract::sink_pauses_are_kept_until_resumed(&s);
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
    fn leases_fence_acks_and_their_audit_entries() {
        let server = NatsServer::start();
        contract::a_lease_fences_acks(&store(&server));
    }

    #[test]
    fn a_key_keeps_order_within_its_tenant_and_pipeline_only() {
        let server = NatsServer::start();
        contract::a_key_keeps_order_within_its_tenant_and_pipeline_only(&store(&server));
    }

    #[test]
    fn what_is_not_kept_yet_is_refused_before_anything_is_written() {
        let server = NatsServer::start();
        let s = store(&server);
        s.append(vec![contract::msg("m", None)], None).wait().unwrap();
        let lease = contract::lease_all(&s);
        assert_eq!(s.claim(&lease, 0, now_ms(), 10).unwrap().rows.len(), 1);
        let dead = NewDeadLetter {
            message_id: "m".into(),
            place: "stage 1".into(),
            plugin: "x".into(),
            digest: "sha256:x".into(),
            reason: "trapped".into(),
            attempts: vec![],
            json: "{}".into(),
            outcome_unknown: false,
        };
        let processed = Processed { id: "m".into(), state: Final::Dead, processing: Default::default(), retry: None, deliveries: vec![], dead_letters: vec![dead], exceptions: vec![], baseline: vec![] };
        let refused = s.ack(&lease, Commit { tenant: "acme".into(), pipeline: "p".into(), processed: vec![processed], audit: vec![] }).unwrap_err();
        assert!(matches!(&refused, StoreError::Other(t) if t.contains("dead letters are not kept by the NATS store yet")), "{refused}");
        assert_eq!(s.claim(&lease, 0, now_ms(), 10).unwrap().rows.len(), 1, "the message is still there");
        assert!(matches!(s.dead_letters(&Default::default(), 0, 10), Err(StoreError::Other(_))));
    }
}

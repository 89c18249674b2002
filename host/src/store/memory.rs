//! The in-memory store: the whole [`Store`] contract in plain collections
//! behind one lock, nothing on disk. For fast tests of the engine's logic
//! (processing, routing, retries, ordering per key) and of the contract
//! itself; it can be told to fail writes, to test how callers take a store
//! failure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::records::{
    Approval, AttemptRecord, AuditEntry, LoopFilter, LoopRecord, AuditFilter, AuditRecord, BaselineRecord, DeadLetterFilter, DeadLetterRecord, DeliveryRecord, ExceptionFilter, ExceptionRecord, Input, Processing, Replayed, Settle, SinkPause, Trace,
};
use super::*;
use crate::config::Tier;

struct Msg {
    id: String,
    tenant: String,
    pipeline: String,
    key_hash: u32,
    correlation: Option<String>,
    state: &'static str,
    received_at: i64,
    processed_at: Option<i64>,
    body: String,
    processing: Option<Processing>,
    attempts: u32,
    next_at: i64,
    errors: Vec<String>,
}

struct Del {
    id: String,
    source_id: String,
    sink: String,
    /// Scoped to its tenant and pipeline.
    ordering_key: String,
    key_hash: u32,
    tier: Tier,
    state: &'static str,
    attempts: u32,
    next_at: i64,
    body: String,
    reference: Option<String>,
    queued_at: i64,
    delivered_at: Option<i64>,
    outcome_unknown: bool,
    log: Vec<AttemptRecord>,
    expect_ms: Option<i64>,
}

impl Msg {
    /// As a claim gives it.
    fn pending(&self, seq: i64) -> Pending {
        Pending { seq, id: self.id.clone(), json: self.body.clone(), key_hash: self.key_hash, attempts: self.attempts, errors: self.errors.clone(), message: None }
    }
}

impl Del {
    /// It as a pending delivery `seq` served in `lane`.
    fn pending(&self, seq: i64, lane: Tier) -> Delivery {
        Delivery {
            seq,
            id: self.id.clone(),
            ordering_key: self.ordering_key.clone(),
            tier: self.tier,
            lane,
            attempts: self.attempts,
            next_at: self.next_at,
            json: self.body.clone(),
            errors: self.log.iter().filter_map(|a| a.detail.clone()).collect(),
            outcome_unknown: self.outcome_unknown,
            message: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    seq: i64,
    messages: BTreeMap<i64, Msg>,
    message_seq: HashMap<String, i64>,
    idempotency: HashMap<(String, String), (String, i64)>,
    deliveries: BTreeMap<i64, Del>,
    delivery_seq: HashMap<(String, String), i64>,
    /// Records with the message as it died.
    dead_letters: Vec<(DeadLetterRecord, String)>,
    /// Records with the parked message.
    exceptions: Vec<(ExceptionRecord, String)>,
    audit: Vec<AuditRecord>,
    cursors: HashMap<String, String>,
    leases: HashMap<Partition, (String, i64, i64)>,
    state: BTreeMap<(String, String, String), Vec<u8>>,
    archive: HashMap<String, Vec<u8>>,
    pauses: BTreeMap<String, SinkPause>,
    approvals: BTreeMap<(String, String), Approval>,
    loops: Vec<LoopRecord>,
    /// (tenant, pipeline, kind, item, location) -> (message id, at, JSON).
    baselines: BTreeMap<(String, String, String, String, String), (String, i64, String)>,
}

/// Puts accepted message `id` back to work from its first stage; `Err`
/// when it is not in the store or already at work.
fn reaccept(s: &mut Inner, id: &str) -> Result<(), ()> {
    let m = s.message_seq.get(id).and_then(|q| s.messages.get_mut(q)).filter(|m| m.state != "accepted").ok_or(())?;
    (m.state, m.attempts, m.next_at) = ("accepted", 0, 0);
    m.errors.clear();
    Ok(())
}

/// Dead letter `id`, for a change: `None` when there is none,
/// [`StoreError::Conflict`] when it is not open.
fn open_dead_letter(s: &Inner, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
    match s.dead_letters.iter().find(|(d, _)| d.id == id) {
        None => Ok(None),
        Some((d, _)) if d.state != "open" => Err(StoreError::Conflict(format!("dead letter {id} was already {}", d.state))),
        Some((d, _)) => Ok(Some(d.clone())),
    }
}

impl Inner {
    fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    /// Appends `entry` to the audit log, at `at`.
    fn record_audit(&mut self, entry: &AuditEntry, at: i64) {
        let id = self.audit.len() as i64 + 1;
        self.audit.push(AuditRecord { id, at, actor: entry.actor.clone(), tenant: entry.tenant.clone(), event: entry.event.clone() });
    }

    /// Parks an open exception of `pipeline` at `at`, about the accepted
    /// message `source_id` (empty: about the pipeline itself); its number.
    fn park(&mut self, tenant: String, pipeline: String, source_id: String, at: i64, e: NewException) -> i64 {
        let id = self.next_seq();
        let record = ExceptionRecord {
            id,
            tenant,
            pipeline,
            source_id,
            at,
            queue: e.queue,
            detail: e.detail,
            state: "open".into(),
            message_id: e.message_id,
            settled_at: None,
            note: None,
            overdue_at: None,
        };
        self.exceptions.push((record, e.json));
        id
    }

    /// Opens the loop of delivery `seq`, delivered at `now`, due `ms` later.
    fn open_loop(&mut self, seq: i64, ms: i64, now: i64) {
        let Some(d) = self.deliveries.get(&seq) else { return };
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
        let source = self.message_seq.get(&d.source_id).and_then(|q| self.messages.get(q));
        let (tenant, pipeline) = source.map(|m| (m.tenant.clone(), m.pipeline.clone())).unwrap_or_default();
        let record = LoopRecord {
            id: 0,
            tenant,
            pipeline,
            sink: d.sink.clone(),
            message_id: d.id.clone(),
            kind: body["kind"].as_str().unwrap_or_default().to_string(),
            correlation: body["correlation-id"].as_str().map(str::to_string),
            reference: d.reference.clone(),
            delivered_at: now,
            due_at: now + ms,
            state: "open".into(),
            exception_id: None,
            closed_by: None,
            closed_at: None,
        };
        let id = self.next_seq();
        self.loops.push(LoopRecord { id, ..record });
    }

    fn fenced(&self, lease: &Lease) -> Result<(), StoreError> {
        match self.leases.get(&lease.partition) {
            Some((holder, token, _)) if *holder == lease.holder && *token == lease.token => Ok(()),
            Some((holder, _, until)) => Err(lease_conflict(&lease.partition, holder, *until)),
            None => Err(StoreError::Conflict(format!("no lease on {}", lease.partition.queue.name()))),
        }
    }
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    failing: Mutex<Option<StoreError>>,
    watcher: Mutex<Option<std::sync::Arc<dyn QueueWatcher>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every write fails with `error` from now on (`None`: writes work again).
    pub fn fail_writes(&self, error: Option<StoreError>) {
        *self.failing.lock().unwrap() = error;
    }

    /// Tells the watcher, if any, of `rows` (called under the write lock,
    /// so announcements keep queue order).
    fn announce(&self, rows: Vec<Queued>) {
        if let (false, Some(w)) = (rows.is_empty(), self.watcher.lock().unwrap().as_ref()) {
            w.queued(rows);
        }
    }

    /// The same for accepted messages.
    fn announce_appended(&self, rows: Vec<Appended>) {
        if let (false, Some(w)) = (rows.is_empty(), self.watcher.lock().unwrap().as_ref()) {
            w.appended(rows);
        }
    }

    /// Tells the watcher, if any, that `tenant`'s `pipeline` has accepted
    /// messages it was not told of.
    fn reopen(&self, tenant: &str, pipeline: &str) {
        if let Some(w) = self.watcher.lock().unwrap().as_ref() {
            w.reopened(tenant, pipeline);
        }
    }

    /// The write lock, or the failure writes are told to return.
    fn write(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        match self.failing.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(self.inner.lock().unwrap()),
        }
    }
}

/// Of the items (seq, key, next-at) of a partition, the first not due at
/// `now` per key, and the earliest next-attempt time.
fn blocked<K: std::hash::Hash + Eq>(items: impl Iterator<Item = (i64, K, i64)>, now: i64) -> (HashMap<K, i64>, Option<i64>) {
    let mut first = HashMap::new();
    let mut next_at: Option<i64> = None;
    for (seq, key, at) in items.filter(|(_, _, at)| *at > now) {
        first.entry(key).or_insert(seq);
        next_at = Some(next_at.map_or(at, |n| n.min(at)));
    }
    (first, next_at)
}

impl Store for MemoryStore {
    fn append(&self, messages: Vec<NewMessage>, cursor: Option<Cursor>) -> Submitted<Vec<IngestOutcome>> {
        let mut s = match self.write() {
            Ok(s) => s,
            Err(e) => return Submitted::ready(Err(e)),
        };
        let now = now_ms();
        let mut out = Vec::with_capacity(messages.len());
        let mut appended = Vec::new();
        for m in messages {
            if let Some(key) = &m.idempotency_key {
                let slot = (m.tenant.clone(), key.clone());
                if let Some((id, _)) = s.idempotency.get(&slot) {
                    out.push(IngestOutcome::Duplicate { id: id.clone() });
                    continue;
                }
                s.idempotency.insert(slot, (m.id.clone(), now));
            }
            let seq = s.next_seq();
            s.message_seq.insert(m.id.clone(), seq);
            out.push(IngestOutcome::Accepted { id: m.id.clone() });
            appended.push(Appended { tenant: m.tenant.clone(), pipeline: m.pipeline.clone(), pending: Pending::accepted(seq, &m) });
            if let Some(a) = &m.answers {
                let open = |l: &LoopRecord| l.tenant == m.tenant && l.state != "closed";
                let by_reference = s.loops.iter().any(|l| open(l) && l.reference.as_deref() == Some(a.order_ref.as_str()));
                for l in s.loops.iter_mut().filter(|l| open(l)) {
                    let answered = if by_reference { l.reference.as_deref() == Some(a.order_ref.as_str()) } else { l.correlation.as_deref() == Some(a.correlation.as_str()) };
                    if answered {
                        l.state = "closed".into();
                        l.closed_by = Some(m.id.clone());
                        l.closed_at = Some(now);
                    }
                }
            }
            s.messages.insert(
                seq,
                Msg {
                    id: m.id,
                    tenant: m.tenant,
                    pipeline: m.pipeline,
                    key_hash: m.key_hash,
                    correlation: m.correlation,
                    state: "accepted",
                    received_at: now,
                    processed_at: None,
                    body: m.json,
                    processing: None,
                    attempts: 0,
                    next_at: 0,
                    errors: Vec::new(),
                },
            );
        }
        if let Some(c) = cursor {
            s.cursors.insert(c.source, c.position);
        }
        self.announce_appended(appended);
        Submitted::ready(Ok(out))
    }

    fn lease(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError> {
        let mut s = self.write()?;
        let token = match s.leases.get(partition) {
            Some((h, token, _)) if h == holder => *token,
            Some((h, _, until)) if *until > now_ms => return Err(lease_conflict(partition, h, *until)),
            Some((_, token, _)) => token + 1,
            None => 1,
        };
        let until_ms = now_ms + ttl_ms;
        s.leases.insert(partition.clone(), (holder.to_string(), token, until_ms));
        Ok(Lease { partition: partition.clone(), holder: holder.to_string(), token, until_ms })
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut s = self.write()?;
        if let Some(entry) = s.leases.get_mut(&lease.partition) {
            if entry.0 == lease.holder && entry.1 == lease.token {
                entry.2 = 0;
            }
        }
        Ok(())
    }

    fn claim(&self, lease: &Lease, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due<Pending>, StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("claim: {} is not a message queue", lease.partition.queue.name())));
        };
        let s = self.inner.lock().unwrap();
        let mine = || s.messages.iter().filter(|(_, m)| m.state == "accepted" && m.tenant == *tenant && m.pipeline == *pipeline && lease.partition.holds(m.key_hash));
        let (first, next_at) = blocked(mine().map(|(seq, m)| (*seq, m.key_hash, m.next_at)), now_ms);
        let rows = mine()
            .filter(|(seq, m)| **seq > after_seq && m.next_at <= now_ms && first.get(&m.key_hash).is_none_or(|f| f > *seq))
            .take(limit)
            .map(|(seq, m)| m.pending(*seq))
            .collect();
        Ok(Due { rows, next_at })
    }

    fn snapshot_messages(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Pending>>, StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("snapshot_messages: {} is not a message queue", lease.partition.queue.name())));
        };
        let s = self.inner.lock().unwrap();
        let mine: Vec<(&i64, &Msg)> =
            s.messages.iter().filter(|(_, m)| m.state == "accepted" && m.tenant == *tenant && m.pipeline == *pipeline && lease.partition.holds(m.key_hash)).collect();
        if mine.len() > max || mine.iter().any(|(_, m)| m.next_at > now_ms) {
            return Ok(None);
        }
        Ok(Some(Snapshot { rows: mine.into_iter().map(|(seq, m)| m.pending(*seq)).collect(), high: s.seq }))
    }

    fn ack(&self, lease: &Lease, commit: Commit) -> Result<(), StoreError> {
        let mut s = self.write()?;
        s.fenced(lease)?;
        let now = now_ms();
        for entry in &commit.audit {
            s.record_audit(entry, now);
        }
        let mut queued = Vec::new();
        for p in commit.processed {
            let Some(seq) = s.message_seq.get(&p.id).copied() else { continue };
            let m = s.messages.get_mut(&seq).expect("indexed message");
            if m.state != "accepted" {
                // Already processed: keep the first result.
                continue;
            }
            if let Some(r) = p.retry {
                m.attempts += 1;
                m.next_at = r.next_at;
                m.errors = r.errors;
                continue;
            }
            m.state = p.state.as_str();
            m.processing = Some(p.processing);
            m.processed_at = Some(now);
            for d in p.deliveries {
                if s.delivery_seq.contains_key(&(d.id.clone(), d.sink.clone())) {
                    continue;
                }
                let seq = s.next_seq();
                s.delivery_seq.insert((d.id.clone(), d.sink.clone()), seq);
                let key_hash = crate::pipeline::fields::key_hash(&d.ordering_key);
                let ordering_key = scoped_key(&commit.tenant, &commit.pipeline, &d.ordering_key);
                queued.push(Queued { sink: d.sink.clone(), key_hash, delivery: Delivery::queued(seq, &commit.tenant, &commit.pipeline, &d) });
                s.deliveries.insert(
                    seq,
                    Del {
                        id: d.id,
                        source_id: p.id.clone(),
                        sink: d.sink,
                        ordering_key,
                        key_hash,
                        tier: d.tier,
                        state: "pending",
                        attempts: 0,
                        next_at: 0,
                        body: d.json,
                        reference: None,
                        queued_at: now,
                        delivered_at: None,
                        outcome_unknown: false,
                        log: Vec::new(),
                        expect_ms: d.expect_ms,
                    },
                );
            }
            for d in p.dead_letters {
                let record = DeadLetterRecord {
                    id: s.next_seq(),
                    tenant: commit.tenant.clone(),
                    pipeline: commit.pipeline.clone(),
                    source_id: p.id.clone(),
                    state: "open".into(),
                    resolved_at: None,
                    note: None,
                    at: now,
                    place: d.place,
                    plugin: d.plugin,
                    digest: d.digest,
                    reason: d.reason,
                    attempts: d.attempts,
                    message_id: d.message_id,
                    outcome: if d.outcome_unknown { "unknown" } else { "not-delivered" }.into(),
                };
                s.dead_letters.push((record, d.json));
            }
            for b in p.baseline {
                let slot = (commit.tenant.clone(), commit.pipeline.clone(), b.kind, b.item, b.location);
                s.baselines.insert(slot, (b.message_id, now, b.json));
            }
            for e in p.exceptions {
                s.park(commit.tenant.clone(), commit.pipeline.clone(), p.id.clone(), now, e);
            }
        }
        self.announce(queued);
        Ok(())
    }

    fn claim_deliveries(&self, lease: &Lease, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError> {
        let Queue::Deliveries { sink } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("claim_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        let s = self.inner.lock().unwrap();
        let mine = || s.deliveries.iter().filter(|(_, d)| d.state == "pending" && d.sink == *sink && lease.partition.holds(d.key_hash));
        let (first, next_at) = blocked(mine().map(|(seq, d)| (*seq, d.ordering_key.as_str(), d.next_at)), now_ms);
        // Each key's first pending delivery, and the highest tier among its pending ones.
        let mut heads: BTreeMap<&str, (i64, Tier)> = BTreeMap::new();
        for (seq, d) in mine() {
            let h = heads.entry(d.ordering_key.as_str()).or_insert((*seq, d.tier));
            h.1 = h.1.min(d.tier);
        }
        let mut rows = Vec::new();
        for lane in Tier::ALL {
            let mut served: Vec<(i64, &Del)> = heads
                .iter()
                .filter(|(key, (seq, tier))| *tier == lane && first.get(*key).is_none_or(|f| f > seq))
                .map(|(_, (seq, _))| (*seq, &s.deliveries[seq]))
                .filter(|(_, d)| d.next_at <= now_ms)
                .collect();
            served.sort_by_key(|(seq, _)| *seq);
            rows.extend(served.into_iter().take(limit).map(|(seq, d)| d.pending(seq, lane)));
        }
        Ok(Due { rows, next_at })
    }

    fn snapshot_deliveries(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Delivery>>, StoreError> {
        let Queue::Deliveries { sink } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("snapshot_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        let s = self.inner.lock().unwrap();
        let mine: Vec<(&i64, &Del)> = s.deliveries.iter().filter(|(_, d)| d.state == "pending" && d.sink == *sink && lease.partition.holds(d.key_hash)).collect();
        if mine.len() > max || mine.iter().any(|(_, d)| d.next_at > now_ms) {
            return Ok(None);
        }
        let rows = mine.into_iter().map(|(seq, d)| d.pending(*seq, d.tier)).collect();
        Ok(Some(Snapshot { rows, high: s.seq }))
    }

    fn watch(&self, watcher: std::sync::Arc<dyn QueueWatcher>) {
        *self.watcher.lock().unwrap() = Some(watcher);
    }

    fn ack_deliveries(&self, lease: &Lease, attempts: Vec<Attempt>) -> Result<(), StoreError> {
        let Queue::Deliveries { sink } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("ack_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        let mut guard = self.write()?;
        let s = &mut *guard;
        s.fenced(lease)?;
        let now = now_ms();
        let mut opened = Vec::new();
        for a in attempts {
            let Some(d) = s.deliveries.get_mut(&a.seq) else { continue };
            d.attempts += 1;
            let attempt = d.attempts as i64;
            let mut failed = |outcome: &str, detail: String| {
                d.log.push(AttemptRecord { attempt, at: Some(now), outcome: outcome.into(), detail: Some(detail), digest: Some(a.digest.clone()) });
            };
            match a.result {
                AttemptResult::Delivered(reference) => {
                    let first = d.state != "delivered";
                    d.state = "delivered";
                    d.reference = Some(reference);
                    d.delivered_at = Some(now);
                    if let (true, Some(ms)) = (first, d.expect_ms) {
                        opened.push((a.seq, ms));
                    }
                }
                AttemptResult::Retry { error, next_at, outcome_unknown } => {
                    failed("retry", error);
                    d.next_at = next_at;
                    d.outcome_unknown |= outcome_unknown;
                }
                AttemptResult::Dead(dl) => {
                    failed("dead", dl.reason.clone());
                    d.state = "dead";
                    let source = d.source_id.clone();
                    let (tenant, pipeline) = s.message_seq.get(&source).and_then(|q| s.messages.get(q)).map(|m| (m.tenant.clone(), m.pipeline.clone())).unwrap_or_default();
                    s.seq += 1;
                    let record = DeadLetterRecord {
                        id: s.seq,
                        tenant,
                        pipeline,
                        source_id: source,
                        state: "open".into(),
                        resolved_at: None,
                        note: None,
                        at: now,
                        place: format!("sink {sink}"),
                        plugin: dl.plugin,
                        digest: dl.digest,
                        reason: dl.reason,
                        attempts: dl.attempts,
                        message_id: dl.message_id,
                        outcome: if dl.outcome_unknown { "unknown" } else { "not-delivered" }.into(),
                    };
                    s.dead_letters.push((record, dl.json));
                }
            }
        }
        for (seq, ms) in opened {
            s.open_loop(seq, ms, now);
        }
        Ok(())
    }

    fn cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        Ok(self.inner.lock().unwrap().cursors.get(source).cloned())
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write()?.record_audit(entry, now_ms());
        Ok(())
    }

    fn audit_events(&self, filter: &AuditFilter, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.inner.lock().unwrap().audit.iter().filter(|a| a.id > after && filter.matches(a)).take(limit).cloned().collect())
    }

    fn exceptions(&self, filter: &ExceptionFilter, after: i64, limit: usize) -> Result<Vec<ExceptionRecord>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.exceptions.iter().map(|(e, _)| e).filter(|e| e.id > after && filter.matches(e)).take(limit).cloned().collect())
    }

    fn exception(&self, id: i64) -> Result<Option<(ExceptionRecord, serde_json::Value)>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.exceptions.iter().find(|(e, _)| e.id == id).map(|(e, body)| (e.clone(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))))
    }

    fn settle_exception(&self, id: i64, how: &Settle) -> Result<Option<ExceptionRecord>, StoreError> {
        let mut guard = self.write()?;
        let s = &mut *guard;
        let Some((e, _)) = s.exceptions.iter().find(|(e, _)| e.id == id) else { return Ok(None) };
        if e.state != "open" {
            return Err(StoreError::Conflict(format!("exception {id} was already {}", e.state)));
        }
        let source = e.source_id.clone();
        let (tenant, pipeline) = (e.tenant.clone(), e.pipeline.clone());
        let now = now_ms();
        if let Settle::Retry { .. } = how {
            reaccept(s, &source).map_err(|()| StoreError::Conflict(format!("the message {source} of exception {id} is no longer in the store, or already at work")))?;
            self.reopen(&tenant, &pipeline);
        }
        let mut settled = None;
        for (e, _) in s.exceptions.iter_mut() {
            let with_it = matches!(how, Settle::Retry { .. }) && e.source_id == source && e.state == "open";
            if e.id == id || with_it {
                (e.state, e.settled_at, e.note) = (how.state().into(), Some(now), Some(how.note().into()));
            }
            if e.id == id {
                settled = Some(e.clone());
            }
        }
        Ok(settled)
    }

    fn mark_exception_overdue(&self, id: i64, at: i64) -> Result<(), StoreError> {
        let mut s = self.write()?;
        if let Some((e, _)) = s.exceptions.iter_mut().find(|(e, _)| e.id == id) {
            e.overdue_at = Some(at);
        }
        Ok(())
    }

    fn baselines(&self, tenant: &str, pipeline: &str) -> Result<Vec<BaselineRecord>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.baselines
            .iter()
            .filter(|((t, p, ..), _)| t == tenant && p == pipeline)
            .map(|((_, _, kind, item, location), (id, at, json))| BaselineRecord {
                kind: kind.clone(),
                item: item.clone(),
                location: location.clone(),
                message_id: id.clone(),
                at: *at,
                message: serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    fn baseline_updated(&self, tenant: &str, pipeline: &str) -> Result<Option<i64>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.baselines.iter().filter(|((t, p, ..), _)| t == tenant && p == pipeline).map(|(_, (_, at, _))| *at).max())
    }

    fn park(&self, tenant: &str, pipeline: &str, e: NewException) -> Result<(), StoreError> {
        self.write()?.park(tenant.to_string(), pipeline.to_string(), String::new(), now_ms(), e);
        Ok(())
    }

    fn approve_plugin(&self, a: &Approval) -> Result<(), StoreError> {
        self.write()?.approvals.insert((a.plugin.clone(), a.digest.clone()), a.clone());
        Ok(())
    }

    fn revoke_plugin_approval(&self, plugin: &str, digest: &str) -> Result<bool, StoreError> {
        Ok(self.write()?.approvals.remove(&(plugin.to_string(), digest.to_string())).is_some())
    }

    fn plugin_approvals(&self) -> Result<Vec<Approval>, StoreError> {
        let mut all: Vec<Approval> = self.inner.lock().unwrap().approvals.values().cloned().collect();
        all.sort_by(|a, b| (&a.plugin, a.at).cmp(&(&b.plugin, b.at)));
        Ok(all)
    }

    fn sink_pauses(&self) -> Result<BTreeMap<String, SinkPause>, StoreError> {
        Ok(self.inner.lock().unwrap().pauses.clone())
    }

    fn set_sink_pause(&self, sink: &str, pause: Option<&SinkPause>) -> Result<(), StoreError> {
        let mut s = self.write()?;
        match pause {
            Some(p) => s.pauses.insert(sink.to_string(), p.clone()),
            None => s.pauses.remove(sink),
        };
        Ok(())
    }

    fn loops(&self, f: &LoopFilter, after: i64, limit: usize) -> Result<Vec<LoopRecord>, StoreError> {
        let s = self.inner.lock().unwrap();
        let open_exception = |id: Option<i64>| id.is_some_and(|id| s.exceptions.iter().any(|(e, _)| e.id == id && e.state == "open"));
        Ok(s.loops
            .iter()
            .filter(|l| {
                l.id > after
                    && f.state.as_ref().is_none_or(|st| *st == l.state)
                    && f.scope.as_ref().is_none_or(|t| t.contains(&l.tenant))
                    && f.due_before.is_none_or(|b| l.due_at < b)
                    && (!f.closed_late_unsettled || (l.state == "closed" && open_exception(l.exception_id)))
            })
            .take(limit)
            .cloned()
            .collect())
    }

    fn loop_overdue(&self, id: i64, e: NewException) -> Result<Option<i64>, StoreError> {
        let mut s = self.write()?;
        let Some(i) = s.loops.iter().position(|l| l.id == id && l.state == "open") else { return Ok(None) };
        let (tenant, pipeline) = (s.loops[i].tenant.clone(), s.loops[i].pipeline.clone());
        let exception = s.park(tenant, pipeline, String::new(), now_ms(), e);
        s.loops[i].state = "overdue".into();
        s.loops[i].exception_id = Some(exception);
        Ok(Some(exception))
    }

    fn correlated(&self, correlation: &str, scope: &Option<Vec<String>>, limit: usize) -> Result<Vec<String>, StoreError> {
        let s = self.inner.lock().unwrap();
        let found = s.messages.values().filter(|m| m.id == correlation || m.correlation.as_deref() == Some(correlation));
        Ok(found.filter(|m| scope.as_ref().is_none_or(|t| t.contains(&m.tenant))).take(limit).map(|m| m.id.clone()).collect())
    }

    fn dead_letters(&self, filter: &DeadLetterFilter, after: i64, limit: usize) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.dead_letters.iter().map(|(d, _)| d).filter(|d| d.id > after && filter.matches(d)).take(limit).cloned().collect())
    }

    fn dead_letter(&self, id: i64) -> Result<Option<(DeadLetterRecord, serde_json::Value)>, StoreError> {
        let s = self.inner.lock().unwrap();
        Ok(s.dead_letters.iter().find(|(d, _)| d.id == id).map(|(d, body)| (d.clone(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))))
    }

    fn replay_dead_letter(&self, id: i64) -> Result<Option<Replayed>, StoreError> {
        let mut guard = self.write()?;
        let s = &mut *guard;
        let Some(d) = open_dead_letter(s, id)? else { return Ok(None) };
        let now = now_ms();
        let replayed = if let Some(sink) = d.place.strip_prefix("sink ") {
            let del = s.delivery_seq.get(&(d.message_id.clone(), sink.to_string())).and_then(|q| s.deliveries.get_mut(q)).filter(|del| del.state == "dead");
            let Some(del) = del else {
                return Err(StoreError::Conflict(format!("the output {} of dead letter {id} is no longer dead in the store", d.message_id)));
            };
            (del.state, del.attempts, del.next_at) = ("pending", 0, 0);
            if let Some(w) = self.watcher.lock().unwrap().as_ref() {
                w.requeued(sink);
            }
            Replayed::Delivery { sink: sink.to_string(), id: d.message_id.clone() }
        } else {
            reaccept(s, &d.source_id)
                .map_err(|()| StoreError::Conflict(format!("the message {} of dead letter {id} is no longer in the store, or already at work", d.source_id)))?;
            self.reopen(&d.tenant, &d.pipeline);
            Replayed::Message { tenant: d.tenant.clone(), pipeline: d.pipeline.clone(), id: d.source_id.clone() }
        };
        let stage_letter_of = |o: &DeadLetterRecord| o.source_id == d.source_id && !o.place.starts_with("sink ");
        for (o, _) in s.dead_letters.iter_mut() {
            if o.id == id || (matches!(replayed, Replayed::Message { .. }) && o.state == "open" && stage_letter_of(o)) {
                (o.state, o.resolved_at) = ("replayed".into(), Some(now));
            }
        }
        Ok(Some(replayed))
    }

    fn purge_dead_letter(&self, id: i64, reason: &str) -> Result<Option<DeadLetterRecord>, StoreError> {
        let mut guard = self.write()?;
        let s = &mut *guard;
        if open_dead_letter(s, id)?.is_none() {
            return Ok(None);
        }
        let (d, _) = s.dead_letters.iter_mut().find(|(d, _)| d.id == id).expect("found above");
        (d.state, d.resolved_at, d.note) = ("purged".into(), Some(now_ms()), Some(reason.to_string()));
        Ok(Some(d.clone()))
    }

    fn trace(&self, id: &str) -> Result<Option<Trace>, StoreError> {
        let s = self.inner.lock().unwrap();
        let json = |t: &str| serde_json::from_str(t).unwrap_or(serde_json::Value::Null);
        let input = s.message_seq.get(id).map(|seq| {
            let m = &s.messages[seq];
            Input {
                tenant: m.tenant.clone(),
                pipeline: m.pipeline.clone(),
                state: m.state.into(),
                received_at: m.received_at,
                processed_at: m.processed_at,
                message: json(&m.body),
                processing: m.processing.clone(),
                attempts: m.attempts as i64,
                retry_errors: (!m.errors.is_empty()).then(|| m.errors.clone()),
                next_attempt_at: m.next_at,
            }
        });
        let record = |d: &Del| {
            let mut attempts = d.log.clone();
            if d.state == "delivered" {
                attempts.push(AttemptRecord { attempt: d.attempts as i64, at: d.delivered_at, outcome: "delivered".into(), detail: d.reference.clone(), digest: None });
            }
            DeliveryRecord {
                id: d.id.clone(),
                source_id: d.source_id.clone(),
                sink: d.sink.clone(),
                state: d.state.into(),
                reference: d.reference.clone(),
                queued_at: d.queued_at,
                delivered_at: d.delivered_at,
                message: json(&d.body),
                attempts,
            }
        };
        let outputs: Vec<_> = s.deliveries.values().filter(|d| d.source_id == id).map(record).collect();
        let deliveries: Vec<_> = s.deliveries.values().filter(|d| d.id == id).map(record).collect();
        let dead_letters: Vec<_> = s.dead_letters.iter().filter(|(d, _)| d.source_id == id || d.message_id == id).map(|(d, _)| d.clone()).collect();
        let exceptions: Vec<_> = s.exceptions.iter().filter(|(e, _)| e.source_id == id || e.message_id == id).map(|(e, _)| e.clone()).collect();
        if input.is_none() && outputs.is_empty() && deliveries.is_empty() && dead_letters.is_empty() && exceptions.is_empty() {
            return Ok(None);
        }
        Ok(Some(Trace { id: id.to_string(), input, outputs, deliveries, dead_letters, exceptions }))
    }

    fn state(&self) -> Result<Vec<StateEntry>, StoreError> {
        Ok(self.inner.lock().unwrap().state.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn put_state(&self, tenant: &str, plugin: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Submitted<()> {
        let mut s = match self.write() {
            Ok(s) => s,
            Err(e) => return Submitted::ready(Err(e)),
        };
        for (key, value) in writes {
            let slot = (tenant.to_string(), plugin.to_string(), key);
            match value {
                Some(v) => s.state.insert(slot, v),
                None => s.state.remove(&slot),
            };
        }
        Submitted::ready(Ok(()))
    }

    fn archive(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write()?.archive.entry(digest.to_string()).or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn archived(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.lock().unwrap().archive.get(digest).cloned())
    }

    fn prune_idempotency(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut s = self.write()?;
        let before = s.idempotency.len();
        s.idempotency.retain(|_, (_, at)| *at >= before_ms);
        Ok(before - s.idempotency.len())
    }

    fn prune(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        let mut s = self.write()?;
        let old: Vec<i64> = s.deliveries.iter().filter(|(_, d)| d.state == "delivered" && d.delivered_at.is_some_and(|at| at < before_ms)).map(|(seq, _)| *seq).collect();
        for seq in &old {
            let d = s.deliveries.remove(seq).expect("listed");
            s.delivery_seq.remove(&(d.id, d.sink));
        }
        s.dead_letters.retain(|(d, _)| d.state == "open" || d.resolved_at.is_none_or(|at| at >= before_ms));
        s.exceptions.retain(|(e, _)| e.state == "open" || e.settled_at.is_none_or(|at| at >= before_ms));
        s.loops.retain(|l| l.state != "closed" || l.closed_at.is_none_or(|at| at >= before_ms));
        // A message goes once nothing refers to it any more.
        let referred: std::collections::HashSet<String> = (s.deliveries.values().map(|d| d.source_id.clone()))
            .chain(s.exceptions.iter().map(|(e, _)| e.source_id.clone()))
            .chain(s.dead_letters.iter().map(|(d, _)| d.source_id.clone()))
            .collect();
        let finished: Vec<i64> = s
            .messages
            .iter()
            .filter(|(_, m)| {
                matches!(m.state, "done" | "dropped" | "exception" | "dead") && m.processed_at.is_some_and(|at| at < before_ms) && !referred.contains(&m.id)
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &finished {
            let m = s.messages.remove(seq).expect("listed");
            s.message_seq.remove(&m.id);
        }
        Ok(Pruned { messages: finished.len(), deliveries: old.len(), pages_freed: 0 })
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        let s = self.inner.lock().unwrap();
        let mut messages: BTreeMap<(String, String), i64> = BTreeMap::new();
        for m in s.messages.values().filter(|m| m.state == "accepted") {
            *messages.entry((m.tenant.clone(), m.pipeline.clone())).or_default() += 1;
        }
        let mut deliveries: BTreeMap<String, i64> = BTreeMap::new();
        let mut oldest: BTreeMap<String, i64> = BTreeMap::new();
        for d in s.deliveries.values().filter(|d| d.state == "pending") {
            *deliveries.entry(d.sink.clone()).or_default() += 1;
            oldest.entry(d.sink.clone()).and_modify(|at| *at = (*at).min(d.queued_at)).or_insert(d.queued_at);
        }
        let mut exceptions: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (e, _) in s.exceptions.iter().filter(|(e, _)| e.state == "open") {
            let slot = exceptions.entry(e.queue.clone()).or_insert((0, e.at));
            *slot = (slot.0 + 1, slot.1.min(e.at));
        }
        Ok(Backlog {
            messages: messages.into_iter().collect(),
            deliveries: deliveries.into_iter().collect(),
            oldest_delivery: oldest.into_iter().collect(),
            exceptions: exceptions.into_iter().map(|(q, (n, at))| (q, n, at)).collect(),
            lanes: {
                let mut lanes: BTreeMap<(String, Tier), (i64, i64)> = BTreeMap::new();
                for d in s.deliveries.values().filter(|d| d.state == "pending") {
                    let slot = lanes.entry((d.sink.clone(), d.tier)).or_insert((0, d.queued_at));
                    *slot = (slot.0 + 1, slot.1.min(d.queued_at));
                }
                lanes.into_iter().map(|((sink, tier), (n, at))| (sink, tier, n, at)).collect()
            },
            loops: {
                let mut loops: BTreeMap<(String, String), i64> = BTreeMap::new();
                for l in s.loops.iter().filter(|l| l.state != "closed") {
                    *loops.entry((l.tenant.clone(), l.state.clone())).or_default() += 1;
                }
                loops.into_iter().collect()
            },
            dead_letters: {
                let mut dead: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                for (d, _) in s.dead_letters.iter().filter(|(d, _)| d.state == "open") {
                    let slot = dead.entry(d.tenant.clone()).or_insert((0, d.at));
                    *slot = (slot.0 + 1, slot.1.min(d.at));
                }
                dead.into_iter().map(|(t, (n, at))| (t, n, at)).collect()
            },
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let s = self.inner.lock().unwrap();
        let mut c = Counts { dead_letters: s.dead_letters.len() as i64, exceptions: s.exceptions.len() as i64, ..Counts::default() };
        s.messages.values().for_each(|m| *c.messages.entry(m.state.into()).or_default() += 1);
        s.deliveries.values().for_each(|d| *c.deliveries.entry(d.state.into()).or_default() += 1);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[test]
    fn keeps_the_store_contract() {
        contract::append_dedupes_and_moves_cursors(&MemoryStore::new());
        contract::a_lease_fences_acks(&MemoryStore::new());
        contract::a_waiting_message_holds_its_key_only_until_due(&MemoryStore::new());
        contract::acked_outputs_are_delivered_in_order_per_key(&MemoryStore::new());
        contract::prune_keeps_dead_letters_and_pending_work(&MemoryStore::new());
        contract::keeps_state_archive_and_audit(&MemoryStore::new());
        contract::finds_messages_by_correlation(&MemoryStore::new());
        contract::closes_loops(&MemoryStore::new());
        contract::keeps_each_processing_record(&MemoryStore::new());
        contract::dead_letters_are_listed_replayed_and_purged(&MemoryStore::new());
        contract::sink_pauses_are_kept_until_resumed(&MemoryStore::new());
        contract::exceptions_are_listed_resolved_retried_and_discarded(&MemoryStore::new());
        contract::tiers_are_served_in_lanes_keeping_order_per_key(&MemoryStore::new());
        contract::a_key_keeps_order_within_its_tenant_and_pipeline_only(&MemoryStore::new());
        contract::queued_deliveries_are_announced_once_durable_in_queue_order(&MemoryStore::new());
        contract::a_snapshot_is_every_pending_delivery_or_none(&MemoryStore::new());
        contract::accepted_messages_are_announced_once_durable_and_snapshotted(&MemoryStore::new());
    }

    #[test]
    fn failing_writes_record_nothing() {
        let s = MemoryStore::new();
        s.fail_writes(Some(StoreError::Full("disk".into())));
        assert!(matches!(s.append(vec![contract::msg("a", None)], None).wait(), Err(StoreError::Full(_))));
        s.fail_writes(None);
        assert_eq!(s.counts().unwrap(), Counts::default());
    }
}

//! Accepting messages onto the message stream, with each tenant's
//! idempotency keys, and telling later whether a stored message counts.
//!
//! JetStream has no transaction across messages or buckets, so a message
//! in the stream is not yet an accepted one. It counts when
//!
//! - it owns its idempotency key, if it has one: the key's entry in
//!   `syncline-idempotency` names its id. An append writes the key after
//!   publishing (create-if-absent); whoever processes a message whose key
//!   has no entry yet (its append died in between) writes it then. So of
//!   copies of one key — a retried request, two racing ones — exactly one
//!   ever counts, whichever took the key first, and the caller is told
//!   which (`Duplicate` names the one that counts);
//! - and its batch was wholly published, if it came in one of several
//!   messages: the batch's entry in `syncline-batches` is written once
//!   every message is stored, before any key is taken. A batch whose
//!   append died midway never counts (after a grace period in which it may
//!   still be completing), as SQLite's rolled-back transaction would not,
//!   and its copies never hold a key a retry needs.
//!
//! A single message without a key counts once stored; its caller not
//! hearing so (the answer lost) is the same as with any store.
//!
//! A source's poll is a batch its cursor commits: the cursor is written
//! only if it is still at the revision the process read (or last wrote),
//! so of two processes that polled the same page — one stalled past its
//! source lease — one batch counts and the other is voided at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use sha2::{Digest, Sha256};

use super::{token, traces, unavailable, Connection, Layout, SLOTS};
use super::lease::{write, Written};
use crate::store::{Cursor, IngestOutcome, NewMessage, StoreError};

/// The stream messages are accepted onto.
pub(super) const MESSAGES: &str = "SYNCLINE_MESSAGES";

/// Headers a stored message carries.
pub(super) const KEY_HASH: &str = "Syncline-Key-Hash";
/// The id of a message accepted again (its `Nats-Msg-Id` tells this
/// acceptance from the first).
pub(super) const ID: &str = "Syncline-Id";
const IDEMPOTENCY: &str = "Syncline-Idempotency";
const BATCH: &str = "Syncline-Batch";
/// The source whose cursor commits the message's batch.
const SOURCE: &str = "Syncline-Source";

/// A source's cursor as kept in `syncline-cursors`: its position, and the
/// batch whose writing moved it there (that write commits the batch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Position {
    position: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<String>,
}

/// A source's key in `syncline-cursors` (source names hold `/`).
fn cursor_key(source: &str) -> String {
    hex::encode(source.as_bytes())
}

/// A batch's entry in `syncline-batches` once committed.
const COMMITTED: &str = "committed";

/// A batch's entry once it is known never to commit (its poll lost the
/// race for the cursor): its messages are void at once.
const VOID: &str = "void";

/// How long a message of an uncommitted batch is waited for before it is
/// taken for the remains of an append that died.
pub const BATCH_GRACE: Duration = Duration::from_secs(60);

/// What became of one message of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Accepted or a duplicate.
    pub outcome: IngestOutcome,
    /// Its sequence in the message stream (accepted only).
    pub seq: Option<u64>,
}

/// Whether a stored message counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is an accepted message: process it.
    Counts,
    /// Another copy owns its idempotency key (that copy's id).
    Duplicate(String),
    /// Its batch is not committed yet; ask again later.
    Pending,
    /// Its batch was never committed: the remains of an append that failed.
    Void,
}

/// Publishes messages and keeps their idempotency keys.
pub struct Appender {
    conn: Arc<Connection>,
    keys: kv::Store,
    batches: kv::Store,
    cursors: kv::Store,
    /// Batches known to be committed (a commit is never undone): their
    /// messages are judged without asking the server again.
    committed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The revision of each source's cursor as this process last read or
    /// wrote it (0: none yet): a poll's batch commits only if the cursor
    /// is still where its poll started.
    cursors_read: std::sync::Mutex<HashMap<String, u64>>,
    /// Sequences of messages this process accepted (stored, their batch
    /// committed, their key theirs): they count, which a process handling
    /// its own ingest knows without asking the server (two requests a
    /// message with an idempotency key).
    counting: std::sync::Mutex<std::collections::HashSet<u64>>,
}

/// How many committed batch ids [`Appender`] remembers (then it starts over).
const COMMITTED_KEPT: usize = 10_000;

/// How many accepted messages' sequences [`Appender`] remembers (then it
/// starts over): more than a backlog a process reads ahead.
const COUNTING_KEPT: usize = 200_000;

/// Adds `item` to `known`, starting over when it holds `most`.
fn remember<T: std::hash::Hash + Eq>(known: &std::sync::Mutex<std::collections::HashSet<T>>, item: T, most: usize) {
    let mut known = known.lock().expect("not poisoned");
    if known.len() >= most {
        known.clear();
    }
    known.insert(item);
}

/// A message's key in `syncline-idempotency`: its tenant and a digest of
/// the key (which may hold any characters).
fn key_entry(tenant: &str, key: &str) -> Result<String, StoreError> {
    Ok(format!("{}.{}", token(tenant)?, &hex::encode(Sha256::digest(key.as_bytes()))[..40]))
}

/// The subject of `m`'s slot.
fn subject(m: &NewMessage) -> Result<String, StoreError> {
    slot_subject(&m.tenant, &m.pipeline, m.key_hash % SLOTS)
}

/// The subject of a pipeline's messages in `slot`.
pub(super) fn slot_subject(tenant: &str, pipeline: &str, slot: u32) -> Result<String, StoreError> {
    Ok(format!("syncline.messages.{}.{}.{slot}", token(tenant)?, token(pipeline)?))
}

/// The id `key` is owned by, creating it for `id` when nobody owns it.
async fn own(keys: &kv::Store, key: &str, id: &str) -> Result<String, StoreError> {
    let what = || format!("keeping idempotency key `{key}`");
    for _ in 0..8 {
        match keys.create(key, id.as_bytes().to_vec().into()).await {
            Ok(_) => return Ok(id.to_string()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(unavailable(&what(), e)),
        }
        // Taken: by whom (an entry that expired between the two is taken again).
        if let Some(owner) = keys.get(key).await.map_err(|e| unavailable(&what(), e))? {
            return Ok(String::from_utf8_lossy(&owner).into_owned());
        }
    }
    Err(StoreError::Unavailable(format!("idempotency key `{key}` kept changing")))
}

impl Appender {
    /// The appender of `layout`'s streams and buckets.
    pub fn new(conn: Arc<Connection>, layout: &Layout) -> Appender {
        Appender { conn, keys: layout.idempotency.clone(), batches: layout.batches.clone(), cursors: layout.cursors.clone(), committed: Default::default(), counting: Default::default(), cursors_read: Default::default() }
    }

    /// Accepts `messages` (deduplicating on tenant + idempotency key),
    /// each outcome in order, and moves `cursor` with them; answers once
    /// every accepted one is stored. With a cursor the messages are a batch
    /// however many they are, and writing the cursor is what commits it:
    /// the source's messages and its position move together.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer: of the
    /// messages of a batch none counts; a single message may (as when an
    /// answer is lost with any store); [`StoreError::TooLarge`] when a
    /// message is larger than the server takes (nothing is sent).
    pub fn append(&self, messages: Vec<NewMessage>, cursor: Option<&Cursor>) -> Result<Vec<Accepted>, StoreError> {
        // Sizes and names are checked before anything is sent.
        let mut sent = Vec::with_capacity(messages.len());
        for m in &messages {
            self.conn.fits(&format!("message {}", m.id), m.json.len())?;
            let key = m.idempotency_key.as_deref().map(|k| key_entry(&m.tenant, k)).transpose()?;
            sent.push((subject(m)?, key));
        }
        let (js, keys, batches, cursors) = (self.conn.jetstream(), self.keys.clone(), self.batches.clone(), self.cursors.clone());
        let source = cursor.map(|c| c.source.clone());
        let cursor = cursor.cloned();
        let expected = cursor.as_ref().and_then(|c| self.cursors_read.lock().expect("not poisoned").get(&c.source).copied());
        let at = crate::store::now_ms();
        let traced: Vec<(String, String, String, Option<String>)> = messages.iter().map(|m| (m.id.clone(), m.tenant.clone(), m.pipeline.clone(), m.correlation.clone())).collect();
        let accepted = self.conn.run(async move {
            // Keys seen in this batch or before it: duplicates, not sent.
            let mut outcomes: Vec<Option<Accepted>> = vec![None; messages.len()];
            // A later message of a key an earlier one of the batch carries:
            // a duplicate of whichever copy ends up owning the key.
            let mut in_batch: HashMap<&str, usize> = HashMap::new();
            let mut repeats: Vec<(usize, usize)> = Vec::new();
            for (i, (_, key)) in sent.iter().enumerate() {
                let Some(key) = key.as_deref() else { continue };
                if let Some(&first) = in_batch.get(key) {
                    repeats.push((i, first));
                    outcomes[i] = Some(Accepted { outcome: IngestOutcome::Duplicate { id: messages[first].id.clone() }, seq: None });
                    continue;
                }
                match keys.get(key).await.map_err(|e| unavailable("reading idempotency keys", e))? {
                    Some(owner) => {
                        let id = String::from_utf8_lossy(&owner).into_owned();
                        outcomes[i] = Some(Accepted { outcome: IngestOutcome::Duplicate { id }, seq: None });
                    }
                    None => {
                        in_batch.insert(key, i);
                    }
                }
            }
            let to_send: Vec<usize> = (0..messages.len()).filter(|i| outcomes[*i].is_none()).collect();
            let batch = (to_send.len() > 1 || (cursor.is_some() && !to_send.is_empty())).then(|| messages[to_send[0]].id.clone());
            // Every publish sent before any answer is awaited.
            let mut acks = Vec::with_capacity(to_send.len());
            for &i in &to_send {
                let (m, (subject, key)) = (&messages[i], &sent[i]);
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", m.id.as_str());
                headers.insert(KEY_HASH, m.key_hash.to_string().as_str());
                if let Some(key) = key {
                    headers.insert(IDEMPOTENCY, key.as_str());
                }
                if let Some(batch) = &batch {
                    headers.insert(BATCH, batch.as_str());
                }
                if let Some(c) = &cursor {
                    headers.insert(SOURCE, cursor_key(&c.source).as_str());
                }
                let ack = js.publish_with_headers(subject.clone(), headers, m.json.clone().into_bytes().into()).await;
                acks.push(ack.map_err(|e| unavailable(&format!("publishing to `{subject}`"), e))?);
            }
            let mut seqs = Vec::with_capacity(acks.len());
            for ack in acks {
                seqs.push(ack.await.map_err(|e| unavailable("storing a message", e))?.sequence);
            }
            // Stored: the batch counts from here on. Committed before any
            // key is taken, so that a copy whose batch never committed
            // cannot own a key its retry needs. A source's batch is
            // committed by its cursor; the batch entry after it is the
            // index a reader looks in first ([`Appender::repair`] writes
            // it again for a source whose poller died in between).
            let mut moved_to = None;
            if let Some(c) = &cursor {
                let position = Position { position: c.position.clone(), batch: batch.clone() };
                let value = serde_json::to_vec(&position).expect("a cursor serializes");
                let key = cursor_key(&c.source);
                moved_to = Some(match expected {
                    // Fenced: only from where this process read it.
                    Some(read) => match write(&cursors, &key, value, (read > 0).then_some(read), "moving a source's cursor").await? {
                        Written::Done(revision) => revision,
                        Written::Raced => {
                            // Another process polled the source meanwhile:
                            // this poll's batch never counts, and says so.
                            if let Some(batch) = &batch {
                                batches.put(batch.as_str(), VOID.into()).await.map_err(|e| unavailable("voiding a batch", e))?;
                            }
                            return Err(StoreError::Conflict(format!(
                                "the cursor of source `{}` moved since this process read it: another process polled it meanwhile, and this poll's {} message(s) were dropped",
                                c.source,
                                to_send.len()
                            )));
                        }
                    },
                    None => cursors.put(key, value.into()).await.map_err(|e| unavailable("moving a source's cursor", e))?,
                });
            }
            if let Some(batch) = &batch {
                batches.put(batch.as_str(), COMMITTED.into()).await.map_err(|e| unavailable("committing a batch", e))?;
            }
            // Each key goes to its first copy.
            for (&i, seq) in to_send.iter().zip(seqs) {
                let (m, key) = (&messages[i], &sent[i].1);
                let outcome = match key {
                    Some(key) => match own(&keys, key, &m.id).await? {
                        owner if owner == m.id => IngestOutcome::Accepted { id: owner },
                        owner => IngestOutcome::Duplicate { id: owner },
                    },
                    None => IngestOutcome::Accepted { id: m.id.clone() },
                };
                let seq = matches!(outcome, IngestOutcome::Accepted { .. }).then_some(seq);
                outcomes[i] = Some(Accepted { outcome, seq });
            }
            for (i, first) in repeats {
                let owner = match &outcomes[first] {
                    Some(Accepted { outcome: IngestOutcome::Accepted { id } | IngestOutcome::Duplicate { id }, .. }) => id.clone(),
                    None => unreachable!("the first copy has its outcome"),
                };
                outcomes[i] = Some(Accepted { outcome: IngestOutcome::Duplicate { id: owner }, seq: None });
            }
            Ok::<_, StoreError>((outcomes.into_iter().map(|o| o.expect("every message has an outcome")).collect::<Vec<Accepted>>(), moved_to))
        })?;
        let (accepted, moved_to) = accepted;
        if let (Some(source), Some(revision)) = (source, moved_to) {
            self.cursors_read.lock().expect("not poisoned").insert(source, revision);
        }
        for seq in accepted.iter().filter_map(|a| a.seq) {
            remember(&self.counting, seq, COUNTING_KEPT);
        }
        let mut woken: Vec<(&str, &str)> = Vec::new();
        for ((_, tenant, pipeline, _), a) in traced.iter().zip(&accepted) {
            if a.seq.is_some() && !woken.contains(&(tenant.as_str(), pipeline.as_str())) {
                woken.push((tenant, pipeline));
                super::wake::messages(&self.conn, tenant, pipeline);
            }
        }
        // Traced and indexed once accepted: a failure here loses no
        // message (its processing traces it again), only this part of its
        // trace.
        let mut events = Vec::new();
        let mut index = Vec::new();
        for ((id, tenant, pipeline, correlation), a) in traced.into_iter().zip(&accepted) {
            let Some(seq) = a.seq else { continue };
            if let Some(c) = correlation {
                index.push((c, id.clone(), tenant.clone()));
            }
            let dedupe = Some(format!("accepted/{id}"));
            events.push((id, traces::Event::Accepted { tenant, pipeline, seq, at }, dedupe));
        }
        if let Err(e) = traces::publish(&self.conn, events).and_then(|()| traces::index(&self.conn, index)) {
            tracing::warn!(error = %e, "accepted messages could not be traced");
        }
        Ok(accepted)
    }

    /// Accepts message `id` again (a dead letter replayed, an exception
    /// retried): stored anew on `subject` with its JSON and key hash; its
    /// sequence. `tag` tells this acceptance from the first (and a repeat
    /// of it from another).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn accept_again(&self, id: &str, subject: &str, json: &str, key_hash: u32, tag: &str) -> Result<u64, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{id}/{tag}").as_str());
        headers.insert(ID, id);
        headers.insert(KEY_HASH, key_hash.to_string().as_str());
        let (js, subject, body) = (self.conn.jetstream(), subject.to_string(), json.as_bytes().to_vec());
        self.conn.run(async move {
            let ack = js.publish_with_headers(subject.clone(), headers, body.into()).await.map_err(|e| unavailable(&format!("publishing to `{subject}`"), e))?;
            ack.await.map(|a| a.sequence).map_err(|e| unavailable("storing a message", e))
        })
    }

    /// Whether the message stored at `seq` counts, at `now_ms`; taking its
    /// idempotency key for it when nobody has.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when there is no message at `seq`.
    pub fn verdict(&self, seq: u64, now_ms: i64) -> Result<Verdict, StoreError> {
        let js = self.conn.jetstream();
        let m = self.conn.run(async move {
            let stream = js.get_stream(MESSAGES).await.map_err(|e| unavailable(&format!("opening stream `{MESSAGES}`"), e))?;
            stream.get_raw_message(seq).await.map_err(|e| match e.kind() {
                jetstream::stream::RawMessageErrorKind::NoMessageFound => StoreError::Corrupt(format!("no message at {seq} in `{MESSAGES}`")),
                _ => unavailable(&format!("reading message {seq}"), e),
            })
        })?;
        self.judge(&m, now_ms)
    }

    /// Whether stored message `m` counts, at `now_ms` (as [`Appender::verdict`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn judge(&self, m: &jetstream::message::StreamMessage, now_ms: i64) -> Result<Verdict, StoreError> {
        if self.counting.lock().expect("not poisoned").contains(&m.sequence) {
            return Ok(Verdict::Counts);
        }
        let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
        let (mut batch, key, id) = (header(BATCH), header(IDEMPOTENCY), header("Nats-Msg-Id"));
        if batch.as_ref().is_some_and(|b| self.committed.lock().expect("not poisoned").contains(b)) {
            batch = None;
        }
        if batch.is_none() && key.is_none() {
            // Nothing to ask the server.
            return Ok(Verdict::Counts);
        }
        let stored_ms = (m.time.unix_timestamp_nanos() / 1_000_000) as i64;
        let source = header(SOURCE);
        let (keys, batches, cursors) = (self.keys.clone(), self.batches.clone(), self.cursors.clone());
        let (verdict, committed): (Verdict, Option<String>) = self.conn.run(async move {
            if let Some(batch) = &batch {
                let found = batches.get(batch.as_str()).await.map_err(|e| unavailable("reading batches", e))?;
                if found.as_deref() == Some(VOID.as_bytes()) {
                    return Ok((Verdict::Void, None));
                }
                if found.is_none() && !moved(&cursors, source.as_deref(), batch).await? {
                    let age_ms = now_ms - stored_ms;
                    return Ok((if age_ms < BATCH_GRACE.as_millis() as i64 { Verdict::Pending } else { Verdict::Void }, None));
                }
            }
            let (Some(key), Some(id)) = (key, id) else { return Ok((Verdict::Counts, batch)) };
            let owner = own(&keys, &key, &id).await?;
            Ok::<_, StoreError>((if owner == id { Verdict::Counts } else { Verdict::Duplicate(owner) }, batch))
        })?;
        if let Some(batch) = committed {
            remember(&self.committed, batch, COMMITTED_KEPT);
        }
        Ok(verdict)
    }
}

impl Appender {
    /// Forgets the idempotency keys taken before `before_ms` (the bucket
    /// forgets them by itself after the dedupe window; this is for a
    /// shorter window asked for); how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let js = self.conn.jetstream();
        let stream = self.conn.run(async move { js.get_stream("KV_syncline-idempotency").await.map_err(|e| unavailable("opening the idempotency keys", e)) })?;
        let mut old = Vec::new();
        super::reader::read_all(&self.conn, &stream, "$KV.syncline-idempotency.>", 2_000, |m| {
            let taken_ms = (m.time.unix_timestamp_nanos() / 1_000_000) as i64;
            if m.headers.get("KV-Operation").is_none() && taken_ms < before_ms {
                old.extend(m.subject.strip_prefix("$KV.syncline-idempotency.").map(str::to_string));
            }
            Ok(())
        })?;
        let (keys, count) = (self.keys.clone(), old.len());
        self.conn.run(async move {
            for key in old {
                keys.purge(key).await.map_err(|e| unavailable("forgetting an idempotency key", e))?;
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(count)
    }
}

/// Whether the cursor of `source` (a key of `syncline-cursors`) was last
/// moved by `batch`: committed, though its poller died before indexing it.
async fn moved(cursors: &kv::Store, source: Option<&str>, batch: &str) -> Result<bool, StoreError> {
    let Some(source) = source else { return Ok(false) };
    let Some(value) = cursors.get(source).await.map_err(|e| unavailable("reading a source's cursor", e))? else { return Ok(false) };
    Ok(serde_json::from_slice::<Position>(&value).ok().and_then(|p| p.batch).as_deref() == Some(batch))
}

impl Appender {
    /// Where `source`'s cursor is; first indexing the batch that moved it
    /// there (its poller may have died between the two writes), so that
    /// its messages keep counting once the cursor moves on.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when the cursor does not read.
    pub fn cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        let (cursors, batches, key, name) = (self.cursors.clone(), self.batches.clone(), cursor_key(source), source.to_string());
        let (position, revision) = self.conn.run(async move {
            let Some(entry) = cursors.entry(key.as_str()).await.map_err(|e| unavailable("reading a source's cursor", e))? else { return Ok((None, 0)) };
            if entry.operation != kv::Operation::Put {
                return Ok((None, entry.revision));
            }
            let p: Position = serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt(format!("the cursor of `{name}` does not read: {e}")))?;
            if let Some(batch) = &p.batch {
                batches.put(batch.as_str(), COMMITTED.into()).await.map_err(|e| unavailable("committing a batch", e))?;
            }
            Ok::<_, StoreError>((Some(p.position), entry.revision))
        })?;
        self.cursors_read.lock().expect("not poisoned").insert(source.to_string(), revision);
        Ok(position)
    }
}

/// Publishes what an append that died after publishing `m` left behind
/// (its idempotency key not taken; its batch, if any, not committed).
#[cfg(test)]
pub(super) fn leftover(conn: &Connection, m: &NewMessage, batch: Option<&str>, source: Option<&str>) -> u64 {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", m.id.as_str());
    headers.insert(KEY_HASH, m.key_hash.to_string().as_str());
    if let Some(k) = &m.idempotency_key {
        headers.insert(IDEMPOTENCY, key_entry(&m.tenant, k).unwrap().as_str());
    }
    if let Some(b) = batch {
        headers.insert(BATCH, b);
    }
    if let Some(source) = source {
        headers.insert(SOURCE, cursor_key(source).as_str());
    }
    let (js, subject, json) = (conn.jetstream(), subject(m).unwrap(), m.json.clone());
    conn.run(async move { js.publish_with_headers(subject, headers, json.into_bytes().into()).await.unwrap().await.unwrap().sequence })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{connected, message, NatsServer};
    use super::*;
    use crate::store::now_ms;

    fn accepted(id: &str) -> IngestOutcome {
        IngestOutcome::Accepted { id: id.into() }
    }

    fn duplicate(id: &str) -> IngestOutcome {
        IngestOutcome::Duplicate { id: id.into() }
    }

    #[test]
    fn appends_keep_each_tenant_s_idempotency_keys() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Appender::new(conn.clone(), &layout);
        let out = appender.append(vec![message("a", "acme", Some("k1"), 5), message("b", "acme", Some("k1"), 5), message("c", "acme", None, 70)], None).unwrap();
        assert_eq!(out.iter().map(|o| o.outcome.clone()).collect::<Vec<_>>(), [accepted("a"), duplicate("a"), accepted("c")]);
        assert!(out[0].seq.is_some() && out[1].seq.is_none() && out[2].seq > out[0].seq);
        // Each on its slot's subject, as sent.
        let (js, seqs) = (conn.jetstream(), (out[0].seq.unwrap(), out[2].seq.unwrap()));
        let stored = conn.run(async move {
            let stream = js.get_stream(MESSAGES).await.unwrap();
            let mut found = Vec::new();
            for seq in [seqs.0, seqs.1] {
                let m = stream.get_raw_message(seq).await.unwrap();
                found.push((m.subject.to_string(), String::from_utf8(m.payload.to_vec()).unwrap()));
            }
            found
        });
        assert_eq!(stored, [("syncline.messages.acme.recs.5".to_string(), r#"{"id":"a"}"#.to_string()), ("syncline.messages.acme.recs.6".into(), r#"{"id":"c"}"#.into())]);

        assert_eq!(appender.append(vec![message("d", "acme", Some("k1"), 5)], None).unwrap(), [Accepted { outcome: duplicate("a"), seq: None }]);
        assert_eq!(appender.append(vec![message("e", "beta", Some("k1"), 5)], None).unwrap()[0].outcome, accepted("e"), "keys are each tenant's own");
        let e = appender.append(vec![message("f", "beta", Some("a key with spaces / and . dots"), 1)], None).unwrap();
        assert_eq!(e[0].outcome, accepted("f"));
        for seq in [seqs.0, seqs.1, e[0].seq.unwrap()] {
            assert_eq!(appender.verdict(seq, now_ms()).unwrap(), Verdict::Counts);
        }
    }

    #[test]
    fn of_copies_of_one_key_only_the_one_that_took_the_key_first_counts() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Appender::new(conn.clone(), &layout);
        // An append died after publishing x, before keeping its key; the
        // client retries (a new id): the retry takes the key.
        let x = leftover(&conn, &message("x", "acme", Some("k2"), 3), None, None);
        let y = appender.append(vec![message("y", "acme", Some("k2"), 3)], None).unwrap();
        assert_eq!(y[0].outcome, accepted("y"));
        assert_eq!(appender.verdict(x, now_ms()).unwrap(), Verdict::Duplicate("y".into()));
        assert_eq!(appender.verdict(y[0].seq.unwrap(), now_ms()).unwrap(), Verdict::Counts);
        // One nobody retried: the processing takes the key for it, and a
        // later copy is told it is a duplicate of it.
        let z = leftover(&conn, &message("z", "acme", Some("k3"), 3), None, None);
        assert_eq!(appender.verdict(z, now_ms()).unwrap(), Verdict::Counts);
        assert_eq!(appender.append(vec![message("w", "acme", Some("k3"), 3)], None).unwrap()[0].outcome, duplicate("z"));
    }

    #[test]
    fn a_batch_counts_only_once_wholly_published() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Appender::new(conn.clone(), &layout);
        // An append of a batch died before its commit.
        let parts = [leftover(&conn, &message("p1", "acme", None, 1), Some("p1"), None), leftover(&conn, &message("p2", "acme", Some("k4"), 2), Some("p1"), None)];
        for seq in parts {
            assert_eq!(appender.verdict(seq, now_ms()).unwrap(), Verdict::Pending, "it may still be completing");
            assert_eq!(appender.verdict(seq, now_ms() + BATCH_GRACE.as_millis() as i64 + 1_000).unwrap(), Verdict::Void);
        }
        // Its key was not taken by the void copy: a retry gets it.
        let retried = appender.append(vec![message("q1", "acme", None, 1), message("q2", "acme", Some("k4"), 2)], None).unwrap();
        assert_eq!(retried.iter().map(|o| o.outcome.clone()).collect::<Vec<_>>(), [accepted("q1"), accepted("q2")]);
        for o in &retried {
            assert_eq!(appender.verdict(o.seq.unwrap(), now_ms()).unwrap(), Verdict::Counts);
        }
        assert!(matches!(appender.verdict(999_999, now_ms()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_source_s_messages_and_cursor_move_together() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Appender::new(conn.clone(), &layout);
        let cursor = |position: &str| Cursor { source: "acme/erp-items".into(), position: position.into() };
        assert_eq!(appender.cursor("acme/erp-items").unwrap(), None);
        // One message with a cursor is a batch the cursor commits.
        let one = appender.append(vec![message("s1", "acme", None, 4)], Some(&cursor("page-1"))).unwrap();
        assert_eq!(appender.cursor("acme/erp-items").unwrap().as_deref(), Some("page-1"));
        assert_eq!(appender.verdict(one[0].seq.unwrap(), now_ms()).unwrap(), Verdict::Counts);
        // Nothing new (a duplicate): the cursor moves all the same.
        let dup = appender.append(vec![message("s1-again", "acme", None, 4)], Some(&cursor("page-2")));
        assert!(dup.is_ok());
        assert_eq!(appender.cursor("acme/erp-items").unwrap().as_deref(), Some("page-2"));

        // A poller died after publishing its batch, before moving the
        // cursor: the batch never counts and the cursor stays.
        let lost = leftover(&conn, &message("s2", "acme", None, 4), Some("s2"), Some("acme/erp-items"));
        let later = now_ms() + BATCH_GRACE.as_millis() as i64 + 1_000;
        assert_eq!(appender.verdict(lost, later).unwrap(), Verdict::Void);
        assert_eq!(appender.cursor("acme/erp-items").unwrap().as_deref(), Some("page-2"));

        // One died after moving the cursor, before indexing the batch: the
        // cursor committed it, so it counts — also once the source's next
        // poller has moved the cursor on (it reads the cursor first, which
        // indexes the batch).
        let kept = leftover(&conn, &message("s3", "acme", None, 4), Some("s3"), Some("acme/erp-items"));
        let (cursors, value) = (layout.cursors.clone(), serde_json::to_vec(&Position { position: "page-3".into(), batch: Some("s3".into()) }).unwrap());
        conn.run(async move { cursors.put(cursor_key("acme/erp-items"), value.into()).await.unwrap() });
        let fresh = Appender::new(conn.clone(), &layout);
        assert_eq!(fresh.verdict(kept, later).unwrap(), Verdict::Counts, "the cursor names its batch");
        assert_eq!(fresh.cursor("acme/erp-items").unwrap().as_deref(), Some("page-3"));
        fresh.append(vec![message("s4", "acme", None, 4)], Some(&cursor("page-4"))).unwrap();
        assert_eq!(Appender::new(conn.clone(), &layout).verdict(kept, later).unwrap(), Verdict::Counts, "indexed before the cursor moved on");
    }

    #[test]
    fn of_two_processes_that_polled_one_page_only_the_first_to_move_the_cursor_counts() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let (a, b) = (Appender::new(conn.clone(), &layout), Appender::new(conn.clone(), &layout));
        let cursor = |position: &str| Cursor { source: "acme/erp-items".into(), position: position.into() };
        // Both read where the source is (nowhere yet) and poll the first page:
        // b stalled past its source lease, a took the source over.
        assert_eq!((a.cursor("acme/erp-items").unwrap(), b.cursor("acme/erp-items").unwrap()), (None, None));
        let first = a.append(vec![message("p1-a", "acme", None, 4)], Some(&cursor("page-1"))).unwrap()[0].seq.unwrap();
        let late = b.append(vec![message("p1-b", "acme", None, 4)], Some(&cursor("page-1")));
        assert!(matches!(&late, Err(StoreError::Conflict(t)) if t.contains("another process polled it")), "{late:?}");
        // b's copy is void at once (no grace to wait out), a's counts, the cursor is a's.
        let judge = Appender::new(conn.clone(), &layout);
        assert_eq!(judge.verdict(first + 1, now_ms()).unwrap(), Verdict::Void);
        assert_eq!(judge.verdict(first, now_ms()).unwrap(), Verdict::Counts);
        // a goes on from its own write; b, once it read the cursor again.
        a.append(vec![message("p2-a", "acme", None, 4)], Some(&cursor("page-2"))).unwrap();
        assert!(b.append(vec![message("p3-b", "acme", None, 4)], Some(&cursor("page-3"))).is_err(), "still behind");
        assert_eq!(b.cursor("acme/erp-items").unwrap().as_deref(), Some("page-2"));
        b.append(vec![message("p3-b2", "acme", None, 4)], Some(&cursor("page-3"))).unwrap();
        assert_eq!(a.cursor("acme/erp-items").unwrap().as_deref(), Some("page-3"));
    }

    #[test]
    fn an_append_while_the_server_is_gone_is_unavailable() {
        let mut server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Appender::new(conn, &layout);
        server.stop();
        let gone = appender.append(vec![message("a", "acme", Some("k1"), 5)], None).unwrap_err();
        assert!(matches!(gone, StoreError::Unavailable(_)), "{gone}");
        let odd = appender.append(vec![message("b", "acme.corp", None, 5)], None).unwrap_err();
        assert!(matches!(odd, StoreError::Other(t) if t.contains("acme.corp")), "names are checked before anything is sent");
    }
}

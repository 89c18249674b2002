//! Traces on the NATS store: what happened to a message is a run of events
//! on its own subject, `syncline.trace.ID` in stream `SYNCLINE_TRACES`
//! (kept for the retention) — accepted, processed or retried, queued for a
//! sink, each delivery attempt, the dead letters and exceptions it left —
//! published by whichever process did it, with ids derived from what
//! published them, so a repeat is stored once. Reading a trace folds its
//! events (and its outputs' events) into [`Trace`]. Messages naming a
//! correlation are indexed on `syncline.trace.correlation.HEX` for
//! [`crate::store::Store::correlated`].

use std::collections::BTreeMap;

use async_nats::jetstream::stream;
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reader::{read_all, read_from};
use super::{publish_all, unavailable, Connection};
use crate::store::records::{AttemptRecord, DeliveryRecord, Input, Processing, Trace};
use crate::store::StoreError;

/// The stream traces are kept in.
pub const TRACES: &str = "SYNCLINE_TRACES";

/// The stream messages are accepted into (a trace's input is read there).
const MESSAGES: &str = "SYNCLINE_MESSAGES";

/// An output as its input's trace lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// Output id.
    pub id: String,
    /// Sink.
    pub sink: String,
}

/// One event of a message's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Accepted at `at`, stored at `seq` of the message stream.
    Accepted {
        /// Tenant.
        tenant: String,
        /// Pipeline.
        pipeline: String,
        /// Its sequence in the message stream.
        seq: u64,
        /// When.
        at: i64,
    },
    /// Its processing ended (or failed retryably: state `accepted`).
    Input {
        /// Tenant.
        tenant: String,
        /// Pipeline.
        pipeline: String,
        /// Its sequence in the message stream.
        seq: u64,
        /// `accepted` (waiting for a retry), `done`, `dead`, `exception`, `dropped`.
        state: String,
        /// When it was accepted.
        received_at: i64,
        /// When its processing was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processed_at: Option<i64>,
        /// Its processing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing: Option<Processing>,
        /// Attempts that failed retryably.
        #[serde(default)]
        attempts: i64,
        /// Their errors.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_errors: Option<Vec<String>>,
        /// When the next attempt is due.
        #[serde(default)]
        next_attempt_at: i64,
        /// Its outputs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outputs: Vec<OutputRef>,
    },
    /// Queued for a sink (this id is an output).
    Queued {
        /// The accepted message it came from.
        source_id: String,
        /// Sink.
        sink: String,
        /// When.
        at: i64,
        /// Its service tier.
        #[serde(default)]
        tier: String,
        /// The output message.
        json: String,
    },
    /// A delivery attempt that failed (`retry` or `dead`).
    Attempt {
        /// Sink.
        sink: String,
        /// Attempt number, from 1.
        attempt: i64,
        /// When.
        at: i64,
        /// `retry` or `dead`.
        outcome: String,
        /// The error.
        detail: String,
        /// The sink plugin's digest.
        digest: String,
    },
    /// Delivered.
    Delivered {
        /// Sink.
        sink: String,
        /// When.
        at: i64,
        /// The downstream's reference.
        reference: String,
    },
    /// Put back in its sink's queue (a dead letter replayed).
    Requeued {
        /// Sink.
        sink: String,
        /// When.
        at: i64,
    },
    /// A dead letter (`dead`) or exception (`exception`) of it or its outputs.
    Case {
        /// `dead` or `exception`.
        kind: String,
        /// The record's number.
        id: i64,
    },
}

/// An id as a subject token: as it is when it can be one, else hex with a
/// prefix no plain id has.
pub fn id_token(id: &str) -> String {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        id.to_string()
    } else {
        format!("_x{}", hex::encode(id.as_bytes()))
    }
}

/// The subject of `id`'s trace.
fn subject(id: &str) -> String {
    format!("syncline.trace.{}", id_token(id))
}

/// Publishes trace events: (message id, event, publish id for dedupe).
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn publish(conn: &Connection, events: Vec<(String, Event, Option<String>)>) -> Result<(), StoreError> {
    let sent = events
        .into_iter()
        .map(|(id, event, dedupe)| {
            let mut headers = HeaderMap::new();
            if let Some(d) = dedupe {
                headers.insert("Nats-Msg-Id", d.as_str());
            }
            (subject(&id), headers, super::shrink::to_fit(&event, conn.piece(), &[]))
        })
        .collect();
    publish_all(conn, sent, "tracing").map(drop)
}

/// An index entry of a correlation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Correlated {
    id: String,
    tenant: String,
}

/// The subject of correlation `correlation`'s index.
fn correlation_subject(correlation: &str) -> String {
    format!("syncline.trace.correlation.{}", hex::encode(correlation.as_bytes()))
}

/// Indexes messages by the correlation they name: (correlation, id, tenant).
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn index(conn: &Connection, entries: Vec<(String, String, String)>) -> Result<(), StoreError> {
    let sent = entries
        .into_iter()
        .map(|(correlation, id, tenant)| {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("correlation/{id}").as_str());
            (correlation_subject(&correlation), headers, serde_json::to_vec(&Correlated { id, tenant }).expect("an index entry serializes"))
        })
        .collect();
    publish_all(conn, sent, "indexing a correlation").map(drop)
}

/// A trace as read, and the (kind, number) of each dead letter and
/// exception it points at.
pub type Found = (Trace, Vec<(String, i64)>);

/// Reads traces.
pub struct Traces {
    traces: stream::Stream,
    messages: stream::Stream,
    /// The census as last read, and through which sequence of the traces
    /// stream: the next reads only what came after.
    census: std::sync::Mutex<Option<Kept>>,
}

/// A census kept between calls.
struct Kept {
    census: Census,
    /// The last sequence of the traces stream folded in.
    through: u64,
    /// When it was read from the start.
    read: std::time::Instant,
}

/// How long a census is kept up to date by what comes after it before it
/// is read from the start again: traces another process forgot (pruned)
/// stay in this process's census until then.
const CENSUS_AGAIN: std::time::Duration = std::time::Duration::from_secs(300);

impl Traces {
    /// Opens the streams traces are read from.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: &Connection) -> Result<Traces, StoreError> {
        let js = conn.jetstream();
        conn.run(async move {
            let open = |name: &'static str| {
                let js = js.clone();
                async move { js.get_stream(name).await.map_err(|e| unavailable(&format!("opening stream `{name}`"), e)) }
            };
            Ok(Traces { traces: open(TRACES).await?, messages: open(MESSAGES).await?, census: std::sync::Mutex::new(None) })
        })
    }

    /// Every event of `id`'s trace, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when an event does not read.
    pub fn events(&self, conn: &Connection, id: &str) -> Result<Vec<Event>, StoreError> {
        let mut found = Vec::new();
        read_all(conn, &self.traces, &subject(id), 500, |m| {
            found.push(serde_json::from_slice(&m.payload).map_err(|e| StoreError::Corrupt(format!("trace event {} of `{id}` does not read: {e}", m.sequence)))?);
            Ok(())
        })?;
        Ok(found)
    }

    /// The stored message at `seq` of the message stream: its JSON and
    /// key hash, or `None` when it is no longer kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn message(&self, conn: &Connection, seq: u64) -> Result<Option<(String, String, u32)>, StoreError> {
        let messages = self.messages.clone();
        conn.run(async move {
            match messages.get_raw_message(seq).await {
                Ok(m) => {
                    let hash = m.headers.get(super::append::KEY_HASH).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
                    Ok(Some((m.subject.to_string(), String::from_utf8_lossy(&m.payload).into_owned(), hash)))
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(unavailable(&format!("reading message {seq}"), e)),
            }
        })
    }

    /// The ids naming `correlation` (with their tenants), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn correlated(&self, conn: &Connection, correlation: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        read_all(conn, &self.traces, &correlation_subject(correlation), 500, |m| {
            found.extend(serde_json::from_slice::<Correlated>(&m.payload).ok().map(|c| (c.id, c.tenant)));
            Ok(())
        })?;
        Ok(found)
    }

    /// `id`'s trace without its dead letters and exceptions (their
    /// numbers instead, for the caller to read), or `None` when nothing
    /// was traced of it.
    ///
    /// # Errors
    ///
    /// As [`Traces::events`].
    pub fn trace(&self, conn: &Connection, id: &str) -> Result<Option<Found>, StoreError> {
        let events = self.events(conn, id)?;
        if events.is_empty() {
            return Ok(None);
        }
        let mut input: Option<(Input, u64)> = None;
        let mut outputs: Vec<OutputRef> = Vec::new();
        let mut cases = Vec::new();
        for e in &events {
            match e {
                Event::Accepted { tenant, pipeline, seq, at } if input.is_none() => {
                    let i = Input {
                        tenant: tenant.clone(),
                        pipeline: pipeline.clone(),
                        state: "accepted".into(),
                        received_at: *at,
                        processed_at: None,
                        message: Value::Null,
                        processing: None,
                        attempts: 0,
                        retry_errors: None,
                        next_attempt_at: 0,
                    };
                    input = Some((i, *seq));
                }
                Event::Input { tenant, pipeline, seq, state, received_at, processed_at, processing, attempts, retry_errors, next_attempt_at, outputs: o } => {
                    let i = Input {
                        tenant: tenant.clone(),
                        pipeline: pipeline.clone(),
                        state: state.clone(),
                        received_at: *received_at,
                        processed_at: *processed_at,
                        message: Value::Null,
                        processing: processing.clone(),
                        attempts: *attempts,
                        retry_errors: retry_errors.clone(),
                        next_attempt_at: *next_attempt_at,
                    };
                    input = Some((i, *seq));
                    if !o.is_empty() {
                        outputs = o.clone();
                    }
                }
                Event::Case { kind, id } if !cases.contains(&(kind.clone(), *id)) => cases.push((kind.clone(), *id)),
                _ => {}
            }
        }
        let input = match input {
            Some((mut i, seq)) => {
                i.message = self.message(conn, seq)?.and_then(|(_, json, _)| serde_json::from_str(&json).ok()).unwrap_or(Value::Null);
                Some(i)
            }
            None => None,
        };
        let mut out = Vec::new();
        for o in &outputs {
            let of = self.events(conn, &o.id)?;
            out.extend(deliveries(&o.id, &of).into_iter().filter(|d| d.sink == o.sink));
        }
        let trace = Trace { id: id.to_string(), input, outputs: out, deliveries: deliveries(id, &events), dead_letters: Vec::new(), exceptions: Vec::new() };
        Ok(Some((trace, cases)))
    }
}

/// The deliveries of output `id` its events tell, one per sink.
fn deliveries(id: &str, events: &[Event]) -> Vec<DeliveryRecord> {
    let mut by_sink: BTreeMap<String, DeliveryRecord> = BTreeMap::new();
    let mut order = Vec::new();
    for e in events {
        match e {
            Event::Queued { source_id, sink, at, json, .. } if !by_sink.contains_key(sink) => {
                order.push(sink.clone());
                by_sink.insert(
                    sink.clone(),
                    DeliveryRecord {
                        id: id.to_string(),
                        source_id: source_id.clone(),
                        sink: sink.clone(),
                        state: "pending".into(),
                        reference: None,
                        queued_at: *at,
                        delivered_at: None,
                        message: serde_json::from_str(json).unwrap_or(Value::Null),
                        attempts: Vec::new(),
                    },
                );
            }
            Event::Attempt { sink, attempt, at, outcome, detail, digest } => {
                if let Some(d) = by_sink.get_mut(sink) {
                    d.attempts.push(AttemptRecord { attempt: *attempt, at: Some(*at), outcome: outcome.clone(), detail: Some(detail.clone()), digest: Some(digest.clone()) });
                    if outcome == "dead" {
                        d.state = "dead".into();
                    }
                }
            }
            Event::Delivered { sink, at, reference } => {
                if let Some(d) = by_sink.get_mut(sink) {
                    let attempt = d.attempts.len() as i64 + 1;
                    d.attempts.push(AttemptRecord { attempt, at: Some(*at), outcome: "delivered".into(), detail: Some(reference.clone()), digest: None });
                    (d.state, d.reference, d.delivered_at) = ("delivered".into(), Some(reference.clone()), Some(*at));
                }
            }
            Event::Requeued { sink, .. } => {
                if let Some(d) = by_sink.get_mut(sink) {
                    d.state = "pending".into();
                }
            }
            _ => {}
        }
    }
    order.into_iter().filter_map(|s| by_sink.remove(&s)).collect()
}

/// What every trace kept says, in brief: for counts, backlog and pruning.
#[derive(Debug, Default)]
pub struct Census {
    /// Each accepted message: tenant, pipeline, state, when processed.
    pub inputs: BTreeMap<String, Brief>,
    /// Each output's delivery per sink: state, tier, when queued, when delivered.
    pub deliveries: BTreeMap<(String, String), Delivered>,
    /// Dead letters and exceptions each message's trace points at.
    pub cases: BTreeMap<String, Vec<(String, i64)>>,
    /// Each output's source.
    pub sources: BTreeMap<String, String>,
    /// The sequence of each trace's latest event.
    latest: BTreeMap<String, u64>,
}

/// A message in brief.
#[derive(Debug, Clone)]
pub struct Brief {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Its state.
    pub state: String,
    /// When its processing was recorded.
    pub processed_at: Option<i64>,
}

/// A delivery in brief.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Its tier.
    pub tier: String,
    /// When it was queued.
    pub queued_at: i64,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
}

impl Traces {
    /// What `read` makes of what every trace kept says: the census kept
    /// from the last call with the events stored since folded in, and the
    /// traces the stream's retention dropped since left out; read from the
    /// start on the first call and every [`CENSUS_AGAIN`]. (Read in place:
    /// a census is as large as the retention's traces.)
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn census<T>(&self, conn: &Connection, read: impl FnOnce(&Census) -> T) -> Result<T, StoreError> {
        let stream = self.traces.clone();
        let first = conn.run(async move {
            let mut stream = stream;
            stream.info().await.map(|i| i.state.first_sequence).map_err(|e| unavailable("reading the traces' extent", e))
        })?;
        let mut kept = self.census.lock().expect("not poisoned");
        if kept.as_ref().is_none_or(|k| k.read.elapsed() > CENSUS_AGAIN) {
            *kept = Some(Kept { census: Census::default(), through: 0, read: std::time::Instant::now() });
        }
        let k = kept.as_mut().expect("kept");
        let census = &mut k.census;
        let mut through = k.through;
        read_from(conn, &self.traces, "syncline.trace.*", through + 1, 2_000, |m| {
            through = m.sequence;
            let Some(token) = m.subject.strip_prefix("syncline.trace.") else { return Ok(()) };
            let id = match token.strip_prefix("_x") {
                Some(h) => hex::decode(h).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_else(|| token.to_string()),
                None => token.to_string(),
            };
            if let Ok(event) = serde_json::from_slice::<Event>(&m.payload) {
                census.add(&id, event, m.sequence);
            }
            Ok(())
        })?;
        k.through = through;
        k.census.drop_before(first);
        Ok(read(&k.census))
    }
}

impl Census {
    /// Leaves out the traces whose every event is before sequence `first`
    /// (the stream's retention dropped them).
    fn drop_before(&mut self, first: u64) {
        let gone: Vec<String> = self.latest.iter().filter(|(_, seq)| **seq < first).map(|(id, _)| id.clone()).collect();
        self.forget(&gone);
    }

    /// Leaves out the traces of `ids`.
    fn forget(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let gone: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        for id in ids {
            self.latest.remove(id);
            self.inputs.remove(id);
            self.cases.remove(id);
            self.sources.remove(id);
        }
        self.deliveries.retain(|(id, _), _| !gone.contains(id.as_str()));
    }

    fn add(&mut self, id: &str, event: Event, seq: u64) {
        self.latest.insert(id.to_string(), seq);
        match event {
            Event::Accepted { tenant, pipeline, .. } => {
                self.inputs.entry(id.to_string()).or_insert(Brief { tenant, pipeline, state: "accepted".into(), processed_at: None });
            }
            Event::Input { tenant, pipeline, state, processed_at, outputs, .. } => {
                for o in &outputs {
                    self.sources.insert(o.id.clone(), id.to_string());
                }
                self.inputs.insert(id.to_string(), Brief { tenant, pipeline, state, processed_at });
            }
            Event::Queued { sink, at, tier, source_id, .. } => {
                self.sources.insert(id.to_string(), source_id);
                self.deliveries.entry((id.to_string(), sink)).or_insert(Delivered { state: "pending".into(), tier, queued_at: at, delivered_at: None });
            }
            Event::Attempt { sink, outcome, .. } if outcome == "dead" => {
                if let Some(d) = self.deliveries.get_mut(&(id.to_string(), sink)) {
                    d.state = "dead".into();
                }
            }
            Event::Delivered { sink, at, .. } => {
                if let Some(d) = self.deliveries.get_mut(&(id.to_string(), sink)) {
                    (d.state, d.delivered_at) = ("delivered".into(), Some(at));
                }
            }
            Event::Requeued { sink, .. } => {
                if let Some(d) = self.deliveries.get_mut(&(id.to_string(), sink)) {
                    d.state = "pending".into();
                }
            }
            Event::Case { kind, id: number } => {
                let cases = self.cases.entry(id.to_string()).or_default();
                if !cases.contains(&(kind.clone(), number)) {
                    cases.push((kind, number));
                }
            }
            Event::Attempt { .. } => {}
        }
    }
}

impl Traces {
    /// Forgets what `ids`' traces hold.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn forget(&self, conn: &Connection, ids: Vec<String>) -> Result<(), StoreError> {
        if let Some(k) = self.census.lock().expect("not poisoned").as_mut() {
            k.census.forget(&ids);
        }
        let stream = self.traces.clone();
        conn.run(async move {
            for id in ids {
                stream.purge().filter(subject(&id)).await.map_err(|e| unavailable("forgetting a trace", e))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{connected, NatsServer};
    use super::*;

    fn accepted(seq: u64) -> Event {
        Event::Accepted { tenant: "acme".into(), pipeline: "recs".into(), seq, at: 1 }
    }

    fn queued(source: &str) -> Event {
        Event::Queued { source_id: source.into(), sink: "erp".into(), at: 2, tier: "standard".into(), json: "{}".into() }
    }

    /// What a census says, in a form to compare.
    fn said(c: &Census) -> (Vec<(String, String)>, Vec<(String, String)>, BTreeMap<String, String>) {
        (
            c.inputs.iter().map(|(id, b)| (id.clone(), b.state.clone())).collect(),
            c.deliveries.iter().map(|((id, sink), d)| (format!("{id}/{sink}"), d.state.clone())).collect(),
            c.sources.clone(),
        )
    }

    #[test]
    fn a_kept_census_reads_only_what_came_after_it_and_says_what_a_fresh_one_says() {
        let server = NatsServer::start();
        let (conn, _layout) = connected(&server);
        let traces = Traces::open(&conn).unwrap();
        publish(&conn, vec![("m1".into(), accepted(1), None), ("m2".into(), accepted(2), None), ("o1".into(), queued("m1"), None)]).unwrap();
        assert_eq!(traces.census(&conn, |c| c.inputs.len()).unwrap(), 2);
        // Later events: a delivery, a new message; a forgotten trace.
        publish(&conn, vec![("o1".into(), Event::Delivered { sink: "erp".into(), at: 3, reference: "ERP-1".into() }, None), ("m3".into(), accepted(3), None)]).unwrap();
        traces.forget(&conn, vec!["m2".into()]).unwrap();
        let (through, read) = {
            let kept = traces.census.lock().unwrap();
            let k = kept.as_ref().unwrap();
            (k.through, k.read)
        };
        let kept = traces.census(&conn, said).unwrap();
        let fresh = Traces::open(&conn).unwrap().census(&conn, said).unwrap();
        assert_eq!(kept, fresh);
        assert_eq!(kept.1, [("o1/erp".to_string(), "delivered".to_string())]);
        assert!(!kept.0.iter().any(|(id, _)| id == "m2") && kept.0.iter().any(|(id, _)| id == "m3"));
        let k = traces.census.lock().unwrap();
        let k = k.as_ref().unwrap();
        assert!(k.through > through && k.read == read, "read on from where it was, not from the start");
    }

    #[test]
    fn traces_the_retention_dropped_leave_the_census() {
        let mut c = Census::default();
        c.add("old", accepted(1), 10);
        c.add("out", queued("old"), 11);
        c.add("new", accepted(2), 12);
        c.add("old", Event::Input { tenant: "acme".into(), pipeline: "recs".into(), seq: 1, state: "done".into(), received_at: 1, processed_at: Some(2), processing: None, attempts: 0, retry_errors: None, next_attempt_at: 0, outputs: Vec::new() }, 13);
        // Events before 12 are gone: "out" had all its events before; "old" has one after.
        c.drop_before(12);
        assert_eq!(c.inputs.keys().collect::<Vec<_>>(), ["new", "old"]);
        assert!(c.deliveries.is_empty() && !c.sources.contains_key("out"));
    }
}

//! Sinks' delivery queues on the NATS store: deliveries published onto
//! the sink's slot subjects (`syncline.deliveries.SINK.SLOT`, the slot by
//! the ordering key's hash as SQLite partitions them), and claimed and
//! acked by the holder of a partition's slot leases ([`Slots`] reads and
//! commits them). A claim gives each ordering key's first pending delivery
//! only, by lane — critical, standard, bulk — a key whose later delivery
//! has a higher tier being served in that tier's lane; a key whose first
//! delivery waits for a retry is held back.
//!
//! A delivery is published with `Nats-Msg-Id` from its sink and id, so a
//! holder that publishes a commit's deliveries again (its predecessor died
//! between committing and publishing) stores none twice within the
//! stream's duplicate window. The records an attempt leaves beside its
//! outcome — its trace event, a dead letter, an opened loop — ride in the
//! slot's commit entry and are published after it ([`Keeper`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::HeaderMap;

use super::kept::{self, Keeper, Kept};
use super::reader::{earliest, Entries, Judged, Slots, Unpublished};
use super::traces::Event as TraceEvent;
use super::{publish_all, token, Connection, Held, Output, Waiting, SLOTS};
use crate::config::Tier;
use crate::pipeline::fields::key_hash;
use crate::store::records::LoopRecord;
use crate::store::{scoped_key, unscoped, Attempt, AttemptResult, Delivery, Due, Lease, NewDelivery, Queue, StoreError};

/// The stream deliveries are queued on.
const DELIVERIES: &str = "SYNCLINE_DELIVERIES";

/// Headers a stored delivery carries.
const ID: &str = "Syncline-Id";
const KEY: &str = "Syncline-Key";
const TIER: &str = "Syncline-Tier";
const SOURCE: &str = "Syncline-Source";
const EXPECT: &str = "Syncline-Expect";

/// The subject of `sink`'s deliveries in `slot`.
fn slot_subject(sink: &str, slot: u32) -> Result<String, StoreError> {
    Ok(format!("syncline.deliveries.{}.{slot}", token(sink)?))
}

/// Queues the outputs a commit of `tenant`'s `pipeline` made; their
/// stream sequences, in order.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer (publishing
/// them again stores none twice); [`StoreError::Other`] for a sink name
/// that cannot be a subject.
pub fn publish(conn: &Connection, tenant: &str, pipeline: &str, outputs: &[Output]) -> Result<Vec<u64>, StoreError> {
    send(conn, tenant, pipeline, outputs, None)
}

/// Queues `output` again (a dead letter replayed): a new item of its
/// sink's queue, `tag` telling this queuing from the first one's.
///
/// # Errors
///
/// As [`publish`].
pub fn publish_again(conn: &Connection, tenant: &str, pipeline: &str, output: &Output, tag: &str) -> Result<u64, StoreError> {
    Ok(send(conn, tenant, pipeline, std::slice::from_ref(output), Some(tag))?[0])
}

fn send(conn: &Connection, tenant: &str, pipeline: &str, outputs: &[Output], tag: Option<&str>) -> Result<Vec<u64>, StoreError> {
    let mut sent = Vec::with_capacity(outputs.len());
    for d in outputs {
        let mut headers = HeaderMap::new();
        let dedupe = match tag {
            Some(tag) => format!("{}/{}/{tag}", d.sink, d.id),
            None => format!("{}/{}", d.sink, d.id),
        };
        headers.insert("Nats-Msg-Id", dedupe.as_str());
        if !d.source.is_empty() {
            headers.insert(SOURCE, d.source.as_str());
        }
        if let Some(ms) = d.expect_ms {
            headers.insert(EXPECT, ms.to_string().as_str());
        }
        headers.insert(ID, d.id.as_str());
        headers.insert(KEY, scoped_key(tenant, pipeline, &d.ordering_key).as_str());
        headers.insert(TIER, d.tier.as_str());
        sent.push((slot_subject(&d.sink, key_hash(&d.ordering_key) % SLOTS)?, headers, d.json.clone().into_bytes()));
    }
    let seqs = publish_all(conn, sent, "queuing a delivery")?;
    let mut woken: Vec<&str> = Vec::new();
    for d in outputs {
        if !woken.contains(&d.sink.as_str()) {
            woken.push(&d.sink);
            super::wake::deliveries(conn, &d.sink);
        }
    }
    Ok(seqs)
}

/// A delivery as a commit of accepted message `source` queues it.
pub fn output(d: &NewDelivery, source: &str) -> Output {
    Output {
        sink: d.sink.clone(),
        id: d.id.clone(),
        ordering_key: d.ordering_key.clone(),
        tier: d.tier.as_str().to_string(),
        expect_ms: d.expect_ms,
        json: d.json.clone(),
        source: source.to_string(),
    }
}

/// A sink partition's deliveries as their lease holder claims and acks them.
pub struct DeliveryQueue {
    conn: Arc<Connection>,
    keeper: Keeper,
    sink: String,
    slots: Slots,
}

impl DeliveryQueue {
    /// Opens `held`'s slots for claiming: appends each slot's marker
    /// (fencing every earlier holder) and folds its commit log.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] when `held` is not a lease of a sink's
    /// deliveries; [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: Arc<Connection>, keeper: Keeper, held: &Held) -> Result<DeliveryQueue, StoreError> {
        let Queue::Deliveries { sink } = &held.lease.partition.queue else {
            return Err(StoreError::Other(format!("{} is not a sink's delivery queue", held.lease.partition.queue.name())));
        };
        let subjects = super::slots(&held.lease.partition)?.into_iter().map(|n| slot_subject(sink, n)).collect::<Result<_, _>>()?;
        let slots = Slots::open(conn.clone(), DELIVERIES, subjects, held)?;
        let mut queue = DeliveryQueue { conn, keeper, sink: sink.clone(), slots };
        // What the last holder committed and may not have published.
        queue.publish()?;
        Ok(queue)
    }

    /// Publishes what entries not known to be published keep.
    fn publish(&mut self) -> Result<(), StoreError> {
        let unpublished: Vec<(usize, String, Unpublished)> = self.slots.unpublished().into_iter().map(|(i, log, u)| (i, log.to_string(), u.clone())).collect();
        for (index, log, u) in unpublished {
            self.keeper.publish(&self.conn, &log, u.seq, &u.kept)?;
            self.slots.mark_published(index, u.seq);
        }
        Ok(())
    }

    /// The lease this queue was opened under.
    pub fn lease(&self) -> &Lease {
        self.slots.lease()
    }

    /// As [`crate::store::Store::claim_deliveries`]: the due deliveries
    /// by lane, up to `limit` per lane, each the first pending one of its
    /// ordering key; and when the next waiting one is due.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over;
    /// [`StoreError::Unavailable`] when the server does not answer (a
    /// stored item without the headers this store writes is skipped).
    pub fn claim(&mut self, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError> {
        // Records an ack could not publish go out before anything new.
        self.publish()?;
        self.read()?;
        let mut next_at = None;
        let mut lanes: [Vec<(usize, Delivery)>; 3] = Default::default();
        for (index, slot_due) in self.slots.due(now_ms, true) {
            next_at = earliest(next_at, slot_due.next_at);
            if slot_due.items.is_empty() {
                continue;
            }
            // The highest tier among each key's pending deliveries.
            let mut highest: HashMap<u32, Tier> = HashMap::new();
            for r in self.slots.unsettled(index) {
                let tier = tier_of(&r.message)?;
                highest.entry(r.item.key_hash).and_modify(|t| *t = (*t).min(tier)).or_insert(tier);
            }
            for (item, waiting) in slot_due.items {
                let m = &self.slots.get(index, item.seq).expect("a due item was read").message;
                let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
                let tier = tier_of(m)?;
                let lane = highest.get(&item.key_hash).copied().unwrap_or(tier).min(tier);
                let json = String::from_utf8(m.payload.to_vec()).map_err(|_| StoreError::Corrupt(format!("delivery {} is not UTF-8", item.seq)))?;
                let w = waiting.unwrap_or_else(|| Waiting { seq: item.seq, key_hash: item.key_hash, attempts: 0, next_at: 0, errors: Vec::new(), outcome_unknown: false });
                lanes[lane.index()].push((index, Delivery {
                    seq: item.seq as i64,
                    id: header(ID),
                    ordering_key: header(KEY),
                    tier,
                    lane,
                    attempts: w.attempts,
                    next_at: w.next_at,
                    json,
                    errors: w.errors,
                    outcome_unknown: w.outcome_unknown,
                    message: None,
                }));
            }
        }
        let mut rows = Vec::new();
        for mut lane in lanes {
            lane.sort_by_key(|(_, d)| d.seq);
            lane.truncate(limit);
            for (index, d) in lane {
                self.slots.hand_out(index, d.seq as u64);
                rows.push(d);
            }
        }
        Ok(Due { rows, next_at })
    }

    /// Reads what the slots stored since they were last read.
    fn read(&mut self) -> Result<bool, StoreError> {
        self.slots.read(&mut |m| {
            if std::str::from_utf8(&m.payload).is_err() {
                return Ok(Judged::foreign(m, "a UTF-8 body"));
            }
            if tier_of(m).is_err() {
                return Ok(Judged::foreign(m, TIER));
            }
            Ok(match m.headers.get(KEY) {
                // Ordered by the scoped key: another pipeline's equal key is another key.
                Some(key) => Judged::Counts(key_hash(key.as_str())),
                None => Judged::foreign(m, KEY),
            })
        })
    }

    /// The slot of pending delivery `seq`: handed out by this queue, or
    /// (its lease opened again since the claim) found among those read.
    fn locate(&mut self, seq: u64) -> Result<Option<usize>, StoreError> {
        if let Some(index) = self.slots.claimed(seq) {
            return Ok(Some(index));
        }
        self.read()?;
        let found = self.slots.find(|r| r.item.seq == seq).map(|(index, _)| index);
        if let Some(index) = found {
            self.slots.hand_out(index, seq);
        }
        Ok(found)
    }

    /// Records delivery attempts: delivered and dead ones settled, failed
    /// ones waiting for their next attempt with every error so far, each
    /// with its trace event (and a dead letter, or a delivered order's
    /// loop). An attempt at a delivery not pending in the partition is
    /// ignored, as SQLite ignores it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over (nothing of that
    /// slot's entry is kept; the deliveries stay pending for the new
    /// holder); [`StoreError::Unavailable`] when the server does not
    /// answer.
    pub fn ack(&mut self, attempts: &[Attempt]) -> Result<(), StoreError> {
        let at = crate::store::now_ms();
        let mut commits = Entries::default();
        for a in attempts {
            let seq = u64::try_from(a.seq).unwrap_or(0);
            let Some(index) = self.locate(seq)? else {
                // Settled already (a worker that raced a restart), or
                // another partition's: nothing to record, as SQLite.
                tracing::debug!(seq = a.seq, queue = %self.lease().partition.queue.name(), "an attempt at a delivery not pending here is ignored");
                continue;
            };
            let stored = &self.slots.get(index, seq).expect("a located delivery was read").message;
            let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
            let (id, source, scoped) = (header(ID), header(SOURCE), header(KEY));
            let (tenant, pipeline, key) = unscoped(&scoped);
            let json = String::from_utf8_lossy(&stored.payload).into_owned();
            let before = self.slots.waiting(index, seq).cloned();
            let attempt = i64::from(before.as_ref().map_or(0, |w| w.attempts)) + 1;
            let commit = commits.slot(index);
            commit.at = at;
            let sink = self.sink.clone();
            match &a.result {
                AttemptResult::Delivered(reference) => {
                    commit.settled.push(seq);
                    commit.kept.push(Kept::Trace { id: id.clone(), event: TraceEvent::Delivered { sink: sink.clone(), at, reference: reference.clone() } });
                    if let Ok(expect) = header(EXPECT).parse::<i64>() {
                        let order: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                        let text = |field: &str| order.get(field).and_then(|v| v.as_str()).map(str::to_string);
                        commit.kept.push(Kept::Loop(LoopRecord {
                            id: 0,
                            tenant: tenant.to_string(),
                            pipeline: pipeline.to_string(),
                            sink,
                            message_id: id,
                            kind: text("kind").unwrap_or_default(),
                            correlation: text("correlation-id"),
                            reference: Some(reference.clone()),
                            delivered_at: at,
                            due_at: at + expect,
                            state: "open".into(),
                            exception_id: None,
                            closed_by: None,
                            closed_at: None,
                        }));
                    }
                }
                AttemptResult::Dead(d) => {
                    commit.settled.push(seq);
                    let event = TraceEvent::Attempt { sink: sink.clone(), attempt, at, outcome: "dead".into(), detail: d.reason.clone(), digest: a.digest.clone() };
                    commit.kept.push(Kept::Trace { id: id.clone(), event });
                    let record = kept::dead_letter(d, tenant, pipeline, &source, format!("sink {sink}"), at);
                    let tier = tier_of(stored)?.as_str().to_string();
                    let expect_ms = header(EXPECT).parse().ok();
                    let delivery = Output { sink, id, ordering_key: key.to_string(), tier, expect_ms, json, source };
                    commit.kept.push(Kept::Dead { record, body: d.json.clone(), delivery: Some(delivery) });
                }
                AttemptResult::Retry { error, next_at, outcome_unknown } => {
                    let key_hash = self.slots.get(index, seq).map_or(0, |r| r.item.key_hash);
                    let mut w = before.unwrap_or(Waiting { seq, key_hash, attempts: 0, next_at: 0, errors: Vec::new(), outcome_unknown: false });
                    w.attempts += 1;
                    w.next_at = *next_at;
                    w.errors.push(error.clone());
                    w.outcome_unknown |= *outcome_unknown;
                    commit.retries.push(w);
                    let event = TraceEvent::Attempt { sink, attempt, at, outcome: "retry".into(), detail: error.clone(), digest: a.digest.clone() };
                    commit.kept.push(Kept::Trace { id, event });
                }
            }
        }
        self.slots.commit(commits)?;
        if let Err(e) = self.publish() {
            tracing::warn!(queue = %self.lease().partition.queue.name(), error = %e, "delivery records committed but not yet published; publishing them again before the next claim");
        }
        Ok(())
    }
}

/// A stored delivery's tier.
fn tier_of(m: &async_nats::jetstream::message::StreamMessage) -> Result<Tier, StoreError> {
    m.headers
        .get(TIER)
        .and_then(|t| Tier::parse(t.as_str()))
        .ok_or_else(|| StoreError::Corrupt(format!("delivery {} of `{}` has no tier", m.sequence, m.subject)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{connected, NatsServer};
    use super::super::Leases;
    use super::*;
    use crate::store::{now_ms, NewDeadLetter, Partition};

    fn delivery(id: &str, key: &str, tier: Tier) -> Output {
        output(&NewDelivery { id: id.into(), sink: "erp".into(), ordering_key: key.into(), tier, expect_ms: None, json: format!(r#"{{"id":"{id}"}}"#), message: None }, "m")
    }

    fn partition() -> Partition {
        Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 }
    }

    fn ids(due: &Due<Delivery>) -> Vec<(&str, Tier)> {
        due.rows.iter().map(|d| (d.id.as_str(), d.lane)).collect()
    }

    fn attempt(d: &Delivery, result: AttemptResult) -> Attempt {
        Attempt { seq: d.seq, digest: "sha256:sink".into(), result }
    }

    fn find<'a>(due: &'a Due<Delivery>, id: &str) -> &'a Delivery {
        due.rows.iter().find(|d| d.id == id).unwrap()
    }

    #[test]
    fn deliveries_are_claimed_first_of_their_key_by_lane_and_acks_deliver_retry_or_end_them() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        let sent = [
            delivery("a1", "item-A", Tier::Standard),
            delivery("a2", "item-A", Tier::Critical),
            delivery("b1", "item-B", Tier::Bulk),
            delivery("c1", "item-C", Tier::Standard),
        ];
        publish(&conn, "acme", "recs", &sent).unwrap();
        // The same key in another pipeline is another key.
        publish(&conn, "acme", "other", &[delivery("o1", "item-A", Tier::Standard)]).unwrap();
        // Published again (a holder that died before recording it did):
        // stored once.
        publish(&conn, "acme", "recs", &sent[..1]).unwrap();
        // Published on the sink's subjects by some other client, without
        // the headers deliveries carry: skipped, not wedging their slot.
        let (js, slot) = (conn.jetstream(), key_hash("item-A") % SLOTS);
        conn.run(async move {
            let mut no_tier = HeaderMap::new();
            no_tier.insert(KEY, "acme\u{1f}recs\u{1f}item-A");
            js.publish(format!("syncline.deliveries.erp.{slot}"), "not ours".into()).await.unwrap().await.unwrap();
            js.publish_with_headers(format!("syncline.deliveries.erp.{slot}"), no_tier, "no tier".into()).await.unwrap().await.unwrap();
        });

        let now = now_ms();
        let held = leases.take(&partition(), "host-a", now, 30_000).unwrap();
        let mut queue = DeliveryQueue::open(conn.clone(), Keeper::open(&conn, &layout).unwrap(), &held).unwrap();
        let due = queue.claim(now, 10).unwrap();
        assert_eq!(
            ids(&due),
            [("a1", Tier::Critical), ("c1", Tier::Standard), ("o1", Tier::Standard), ("b1", Tier::Bulk)],
            "a1 goes first of its key, in the lane of a2 behind it"
        );
        assert_eq!(find(&due, "a1").tier, Tier::Standard);
        assert_eq!(find(&due, "a1").ordering_key, scoped_key("acme", "recs", "item-A"));
        assert_eq!(find(&due, "c1").json, r#"{"id":"c1"}"#);
        assert_eq!(ids(&queue.claim(now, 1).unwrap()).len(), 3, "up to the limit per lane");

        let dead = NewDeadLetter {
            message_id: "b1".into(),
            place: "sink erp".into(),
            plugin: "erp".into(),
            digest: "sha256:sink".into(),
            reason: "HTTP 400".into(),
            attempts: vec!["HTTP 400".into()],
            json: String::new(),
            outcome_unknown: false,
        };
        queue
            .ack(&[
                attempt(find(&due, "a1"), AttemptResult::Retry { error: "HTTP 503".into(), next_at: now + 5_000, outcome_unknown: true }),
                attempt(find(&due, "c1"), AttemptResult::Delivered("ERP-1".into())),
                attempt(find(&due, "b1"), AttemptResult::Dead(dead)),
            ])
            .unwrap();
        let due = queue.claim(now, 10).unwrap();
        assert_eq!(ids(&due), [("o1", Tier::Standard)], "a1 waits and holds a2");
        assert_eq!(due.next_at, Some(now + 5_000));

        // A holder taking over finds a1 waiting with what its attempt left.
        let held_b = leases.take(&partition(), "host-b", now + 40_000, 30_000).unwrap();
        let mut queue_b = DeliveryQueue::open(conn.clone(), Keeper::open(&conn, &layout).unwrap(), &held_b).unwrap();
        let stale = queue.ack(&[attempt(find(&due, "o1"), AttemptResult::Delivered("ERP-2".into()))]).unwrap_err();
        assert!(matches!(&stale, StoreError::Conflict(_)), "{stale}");
        let due = queue_b.claim(now + 5_000, 10).unwrap();
        assert_eq!(ids(&due), [("a1", Tier::Critical), ("o1", Tier::Standard)]);
        let a1 = find(&due, "a1");
        assert_eq!((a1.attempts, a1.errors.clone(), a1.outcome_unknown, a1.next_at), (1, vec!["HTTP 503".to_string()], true, now + 5_000));
        queue_b.ack(&[attempt(a1, AttemptResult::Retry { error: "timeout".into(), next_at: now + 6_000, outcome_unknown: false })]).unwrap();
        let due = queue_b.claim(now + 6_000, 10).unwrap();
        let a1 = find(&due, "a1");
        assert_eq!((a1.attempts, a1.errors.clone(), a1.outcome_unknown), (2, vec!["HTTP 503".to_string(), "timeout".to_string()], true), "errors and doubt accumulate");
        queue_b.ack(&[attempt(a1, AttemptResult::Delivered("ERP-3".into())), attempt(find(&due, "o1"), AttemptResult::Delivered("ERP-4".into()))]).unwrap();
        assert_eq!(ids(&queue_b.claim(now + 6_000, 10).unwrap()), [("a2", Tier::Critical)]);
        // Not pending here: ignored.
        queue_b.ack(&[Attempt { seq: 999_999, digest: String::new(), result: AttemptResult::Delivered(String::new()) }]).unwrap();
        assert_eq!(ids(&queue_b.claim(now + 6_000, 10).unwrap()), [("a2", Tier::Critical)]);
    }
}

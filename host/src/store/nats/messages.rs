//! Claims and acks of a pipeline's accepted messages on the NATS store, by
//! the holder of a partition's slot leases ([`Slots`] reads and commits
//! them): each new message is judged once — a copy that does not own its
//! idempotency key, or the remains of a batch that never committed, is
//! settled without being handed out, and one of a batch still being
//! published holds its slot until it is known — and a key's messages come
//! in order, a retry holding the later ones back.
//!
//! An ack's outputs for sinks are part of its commit-log entry and are
//! published to the sinks' queues once it is appended (with ids from sink
//! and output, so a repeat is stored once within the stream's duplicate
//! window); a later entry records how far that went, and a holder taking
//! the slot over publishes what its predecessor may not have. The ack's
//! audit events travel the same way. What else an ack keeps (dead
//! letters, exceptions, traces) is not carried yet: it comes with the
//! store contract's records, as the plan in [`super`] says.

use std::collections::HashMap;
use std::sync::Arc;

use super::append::{slot_subject, KEY_HASH, MESSAGES};
use async_nats::jetstream::message::StreamMessage;

use super::audit::Event;
use super::kept::{self, Baseline, Keeper, Kept};
use super::reader::{earliest, Entries, Judged, Slots, Unpublished};
use super::traces::{self, Event as TraceEvent, OutputRef};
use super::{output, queue_outputs, Appender, Connection, Held, Verdict, Waiting};
use crate::store::{Due, Lease, Pending, Processed, Queue, StoreError};

/// How long a message of a batch still being published is waited for
/// before it is read again.
const PENDING_RECHECK_MS: i64 = 1_000;

/// A pipeline partition's messages as their lease holder claims and acks them.
pub struct MessageQueue {
    conn: Arc<Connection>,
    appender: Arc<Appender>,
    keeper: Keeper,
    tenant: String,
    pipeline: String,
    slots: Slots,
    /// The sequence of each message handed out and not yet acked, by id.
    claimed: HashMap<String, u64>,
    /// Acks append without publishing (a holder dying in between).
    #[cfg(test)]
    dies_before_publishing: bool,
}

impl MessageQueue {
    /// Opens `held`'s slots for claiming: appends each slot's marker
    /// (fencing every earlier holder) and folds its commit log.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] when `held` is not a lease of a pipeline's
    /// messages; [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: Arc<Connection>, appender: Arc<Appender>, keeper: Keeper, held: &Held) -> Result<MessageQueue, StoreError> {
        let Queue::Messages { tenant, pipeline } = &held.lease.partition.queue else {
            return Err(StoreError::Other(format!("{} is not a pipeline's message queue", held.lease.partition.queue.name())));
        };
        let subjects = super::slots(&held.lease.partition)?.into_iter().map(|n| slot_subject(tenant, pipeline, n)).collect::<Result<_, _>>()?;
        let slots = Slots::open(conn.clone(), MESSAGES, subjects, held)?;
        let mut queue = MessageQueue { conn, appender, keeper, tenant: tenant.clone(), pipeline: pipeline.clone(), slots, claimed: HashMap::new(), #[cfg(test)] dies_before_publishing: false };
        // What the last holder committed and may not have published.
        queue.publish()?;
        Ok(queue)
    }

    /// Publishes the outputs of entries not known to be published, in log
    /// order per slot.
    fn publish(&mut self) -> Result<(), StoreError> {
        let unpublished: Vec<(usize, String, Unpublished)> = self.slots.unpublished().into_iter().map(|(i, log, u)| (i, log.to_string(), u.clone())).collect();
        for (index, log, u) in unpublished {
            queue_outputs(&self.conn, &self.tenant, &self.pipeline, &u.outputs)?;
            // Ids from the entry: published again, stored once.
            let ids: Vec<String> = (0..u.audit.len()).map(|i| format!("{log}/{}/audit/{i}", u.seq)).collect();
            Event::publish(&self.conn, &u.audit, Some(&ids))?;
            let queued = u.outputs.iter().enumerate().map(|(i, o)| {
                let event = TraceEvent::Queued { source_id: o.source.clone(), sink: o.sink.clone(), at: u.at, tier: o.tier.clone(), json: o.json.clone() };
                (o.id.clone(), event, Some(format!("{log}/{}/queued/{i}", u.seq)))
            });
            traces::publish(&self.conn, queued.collect())?;
            self.keeper.publish(&self.conn, &log, u.seq, &u.kept)?;
            self.slots.mark_published(index, u.seq);
        }
        Ok(())
    }

    /// The lease this queue was opened under.
    pub fn lease(&self) -> &Lease {
        self.slots.lease()
    }

    /// As [`crate::store::Store::claim`]: the due messages after
    /// `after_seq` (stream sequences), up to `limit`, in stream order; a
    /// key whose earlier message waits for a retry is held back.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over;
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn claim(&mut self, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due<Pending>, StoreError> {
        // Outputs an ack could not publish go out before anything new.
        self.publish()?;
        let stopped = self.read(now_ms)?;
        let mut next_at = stopped.then_some(now_ms + PENDING_RECHECK_MS);
        let mut due = Vec::new();
        for (index, slot_due) in self.slots.due(now_ms, false) {
            next_at = earliest(next_at, slot_due.next_at);
            due.extend(slot_due.items.into_iter().filter(|(i, _)| i.seq as i64 > after_seq).map(|(i, w)| (index, i, w)));
        }
        due.sort_by_key(|(_, i, _)| i.seq);
        due.truncate(limit);
        let mut rows = Vec::with_capacity(due.len());
        for (index, item, waiting) in due {
            let m = &self.slots.get(index, item.seq).expect("a due item was read").message;
            let id = message_id(m);
            let json = String::from_utf8(m.payload.to_vec()).map_err(|_| StoreError::Corrupt(format!("message {} is not UTF-8", item.seq)))?;
            self.slots.hand_out(index, item.seq);
            self.claimed.insert(id.clone(), item.seq);
            let (attempts, errors) = waiting.map_or((0, Vec::new()), |w| (w.attempts, w.errors));
            rows.push(Pending { seq: item.seq as i64, id, json, key_hash: item.key_hash, attempts, errors, message: None });
        }
        Ok(Due { rows, next_at })
    }

    /// Reads what the slots stored since they were last read, judging each
    /// new message once; whether a slot stopped at one not known yet.
    fn read(&mut self, now_ms: i64) -> Result<bool, StoreError> {
        let appender = self.appender.clone();
        self.slots.read(&mut |m| {
            if std::str::from_utf8(&m.payload).is_err() {
                return Ok(Judged::foreign(m, "a UTF-8 body"));
            }
            Ok(match appender.judge(m, now_ms)? {
                Verdict::Counts => match m.headers.get(KEY_HASH).and_then(|v| v.as_str().parse().ok()) {
                    Some(hash) => Judged::Counts(hash),
                    None => Judged::foreign(m, KEY_HASH),
                },
                Verdict::Duplicate(_) | Verdict::Void => Judged::Void,
                Verdict::Pending => Judged::NotYet,
            })
        })
    }

    /// The slot and sequence of unsettled message `id`: handed out by this
    /// queue, or (an ack of a message this queue did not hand out — its
    /// lease was opened again since the claim) found among those read.
    fn locate(&mut self, id: &str) -> Result<Option<(usize, u64)>, StoreError> {
        if let Some(seq) = self.claimed.get(id).copied() {
            return Ok(self.slots.claimed(seq).map(|index| (index, seq)));
        }
        self.read(crate::store::now_ms())?;
        let found = self.slots.find(|r| message_id(&r.message) == id);
        if let Some((index, seq)) = found {
            self.slots.hand_out(index, seq);
        }
        Ok(found)
    }

    /// Records how claimed messages' attempts ended, as
    /// [`crate::store::Store::ack`]: one commit-log entry per slot, with
    /// the outputs of its settled messages and what else they keep (trace
    /// events, dead letters, exceptions, baseline entries; in the first
    /// slot's entry, the batch's audit events), which are then published
    /// (if that fails, the ack still stands: they are published again
    /// before the next claim, or by the next holder). A message not
    /// pending in the partition — processed already, by a worker that
    /// raced a restart — is ignored, as SQLite ignores it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over (nothing of that
    /// slot's entry is kept; the messages stay claimable by the new
    /// holder); [`StoreError::Unavailable`] when the server does not
    /// answer.
    pub fn ack(&mut self, processed: &[Processed], audit: Vec<Event>) -> Result<(), StoreError> {
        let at = crate::store::now_ms();
        let (tenant, pipeline) = (self.tenant.clone(), self.pipeline.clone());
        let mut commits = Entries::default();
        for p in processed {
            let Some((index, seq)) = self.locate(&p.id)? else {
                tracing::debug!(id = %p.id, queue = %self.lease().partition.queue.name(), "an ack of a message not pending here is ignored");
                continue;
            };
            let read = self.slots.get(index, seq).expect("a located message was read");
            let (key_hash, received_at) = (read.item.key_hash, (read.message.time.unix_timestamp_nanos() / 1_000_000) as i64);
            let commit = commits.slot(index);
            commit.at = at;
            let input = |state: &str, processing, attempts, retry_errors, next_attempt_at, outputs| TraceEvent::Input {
                tenant: tenant.clone(),
                pipeline: pipeline.clone(),
                seq,
                state: state.into(),
                received_at,
                processed_at: (state != "accepted").then_some(at),
                processing,
                attempts,
                retry_errors,
                next_attempt_at,
                outputs,
            };
            if let Some(retry) = &p.retry {
                let attempts = u32::try_from(retry.errors.len()).unwrap_or(u32::MAX).max(1);
                commit.retries.push(Waiting { seq, key_hash, attempts, next_at: retry.next_at, errors: retry.errors.clone(), outcome_unknown: false });
                let event = input("accepted", None, i64::from(attempts), Some(retry.errors.clone()), retry.next_at, Vec::new());
                commit.kept.push(Kept::Trace { id: p.id.clone(), event });
                continue;
            }
            commit.settled.push(seq);
            commit.queued.extend(p.deliveries.iter().map(|d| output(d, &p.id)));
            let refs = p.deliveries.iter().map(|d| OutputRef { id: d.id.clone(), sink: d.sink.clone() }).collect();
            let waiting = self.slots.waiting(index, seq).map(|w| (i64::from(w.attempts), Some(w.errors.clone())));
            let (attempts, errors) = waiting.unwrap_or((0, None));
            let event = input(p.state.as_str(), Some(p.processing.clone()), attempts, errors, 0, refs);
            let commit = commits.slot(index);
            commit.kept.push(Kept::Trace { id: p.id.clone(), event });
            for d in &p.dead_letters {
                let record = kept::dead_letter(d, &tenant, &pipeline, &p.id, d.place.clone(), at);
                commit.kept.push(Kept::Dead { record, body: d.json.clone(), delivery: None });
            }
            for e in &p.exceptions {
                let record = kept::exception(e, &tenant, &pipeline, &p.id, at);
                commit.kept.push(Kept::Exception { record, body: e.json.clone() });
            }
            for b in &p.baseline {
                commit.kept.push(Kept::Baseline(Baseline {
                    tenant: tenant.clone(),
                    pipeline: pipeline.clone(),
                    kind: b.kind.clone(),
                    item: b.item.clone(),
                    location: b.location.clone(),
                    message_id: b.message_id.clone(),
                    at,
                    json: b.json.clone(),
                }));
            }
        }
        // The batch's audit entries ride in its first slot's entry.
        if !audit.is_empty() {
            let commit = commits.first();
            commit.audit = audit;
            commit.at = at;
        }
        self.slots.commit(commits)?;
        let slots = &self.slots;
        self.claimed.retain(|_, seq| slots.claimed(*seq).is_some());
        #[cfg(test)]
        if self.dies_before_publishing {
            return Ok(());
        }
        if let Err(e) = self.publish() {
            tracing::warn!(queue = %self.lease().partition.queue.name(), error = %e, "outputs committed but not yet published; publishing them again before the next claim");
        }
        Ok(())
    }
}

/// A stored message's id: its own header when it was accepted again (a
/// replay), else the id it was published with.
fn message_id(m: &StreamMessage) -> String {
    let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
    header(super::append::ID).or_else(|| header("Nats-Msg-Id")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::append::leftover;
    use super::super::testing::{connected, message, NatsServer};
    use super::super::{Leases, SlotState, BATCH_GRACE};
    use super::*;
    use crate::store::{now_ms, Final, NewDelivery, Partition, Retry};

    /// A connection to `server`, its layout, an appender and the leases.
    fn opened(server: &NatsServer) -> (Arc<Connection>, super::super::Layout, Arc<Appender>, Leases) {
        let (conn, layout) = connected(server);
        let appender = Arc::new(Appender::new(conn.clone(), &layout));
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        (conn, layout, appender, leases)
    }

    fn keeper(conn: &Connection, layout: &super::super::Layout) -> Keeper {
        Keeper::open(conn, layout).unwrap()
    }

    /// Slots 5 and 37 of `acme`'s `recs` (partition 5 of 32).
    fn partition() -> Partition {
        Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "recs".into() }, index: 5, of: 32 }
    }

    fn ids(due: &Due<Pending>) -> Vec<&str> {
        due.rows.iter().map(|p| p.id.as_str()).collect()
    }

    fn done(id: &str) -> Processed {
        with_outputs(id, Vec::new())
    }

    fn with_outputs(id: &str, deliveries: Vec<NewDelivery>) -> Processed {
        Processed { id: id.into(), state: Final::Done, processing: Default::default(), retry: None, deliveries, dead_letters: vec![], exceptions: vec![], baseline: vec![] }
    }

    fn retried(id: &str, retry: Retry) -> Processed {
        Processed { retry: Some(retry), ..done(id) }
    }

    fn retry(next_at: i64, errors: &[&str]) -> Retry {
        Retry { next_at, errors: errors.iter().map(|e| e.to_string()).collect() }
    }

    #[test]
    fn claims_hand_out_a_partition_s_messages_in_order_and_acks_settle_or_hold_them() {
        let server = NatsServer::start();
        let (conn, layout, appender, leases) = opened(&server);
        // Keys hashing to 5 and 37 (this partition's slots) and to 6 (another's).
        appender.append(vec![message("a1", "acme", Some("k-a1"), 5), message("b1", "acme", None, 37), message("x1", "acme", None, 6)], None).unwrap();
        appender.append(vec![message("a2", "acme", None, 5)], None).unwrap();
        // The remains of an append that died: a copy whose key a retry took,
        // and a batch never committed. Neither is handed out.
        leftover(&conn, &message("a1-copy", "acme", Some("k-a1"), 5), None, None);
        leftover(&conn, &message("void", "acme", None, 37), Some("void"), None);
        // Published on the queue's subject by some other client: no
        // headers, or a body that is not text. Skipped, not wedging the slot.
        let js = conn.jetstream();
        conn.run(async move {
            for body in [b"not ours".to_vec(), vec![0xff, 0xfe]] {
                js.publish("syncline.messages.acme.recs.5", body.into()).await.unwrap().await.unwrap();
            }
        });
        appender.append(vec![message("b2", "acme", None, 37)], None).unwrap();

        let now = now_ms();
        let held = leases.take(&partition(), "host-a", now, 30_000).unwrap();
        let mut queue = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held).unwrap();
        let later = now + BATCH_GRACE_MS + 1_000;
        let due = queue.claim(0, later, 100).unwrap();
        assert_eq!(ids(&due), ["a1", "b1", "a2", "b2"], "the partition's messages, in stream order");
        assert_eq!(due.next_at, None);
        assert!(due.rows.iter().all(|p| p.attempts == 0 && p.message.is_none() && p.json == format!(r#"{{"id":"{}"}}"#, p.id)));
        let seq_of = |id: &str| due.rows.iter().find(|p| p.id == id).unwrap().seq;
        assert_eq!(ids(&queue.claim(seq_of("b1"), later, 100).unwrap()), ["a2", "b2"], "after a sequence");
        assert_eq!(ids(&queue.claim(0, later, 2).unwrap()), ["a1", "b1"], "up to the limit");

        // a1 fails retryably: a2 (its slot's, a later message of the key
        // hash) waits behind it; b1 is done.
        queue.ack(&[retried("a1", retry(later + 5_000, &["HTTP 503"])), done("b1")], vec![]).unwrap();
        let due = queue.claim(0, later, 100).unwrap();
        assert_eq!(ids(&due), ["b2"]);
        assert_eq!(due.next_at, Some(later + 5_000));
        let retried = queue.claim(0, later + 5_000, 100).unwrap();
        assert_eq!(ids(&retried), ["a1", "a2", "b2"]);
        assert_eq!((retried.rows[0].attempts, retried.rows[0].errors.clone()), (1, vec!["HTTP 503".to_string()]));

        // Another partition's message: not this queue's to settle.
        queue.ack(&[done("x1")], vec![]).unwrap();
        queue.ack(&[done("a1"), done("a2"), done("b2")], vec![]).unwrap();
        assert!(queue.claim(0, later + 5_000, 100).unwrap().rows.is_empty());
        // Everything read is settled: the slots' floors passed it.
        assert_eq!(queue.slots.held(), 0);
        assert!(queue.slots.floors().iter().all(|f| *f > 0), "{:?}", queue.slots.floors());
    }

    const BATCH_GRACE_MS: i64 = BATCH_GRACE.as_millis() as i64;

    #[test]
    fn a_message_of_a_batch_still_being_published_holds_its_slot_until_it_is_known() {
        let server = NatsServer::start();
        let (conn, layout, appender, leases) = opened(&server);
        leftover(&conn, &message("p1", "acme", None, 5), Some("p1"), None);
        appender.append(vec![message("after", "acme", None, 5)], None).unwrap();
        let now = now_ms();
        let held = leases.take(&partition(), "host-a", now, 30_000).unwrap();
        let mut queue = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held).unwrap();
        let due = queue.claim(0, now, 100).unwrap();
        assert!(due.rows.is_empty(), "nothing overtakes a message that may yet count: {:?}", ids(&due));
        assert!(due.next_at.is_some_and(|t| t > now));
        // Its batch committed: it counts, and comes first.
        let batches = layout.batches.clone();
        conn.run(async move { batches.put("p1", "committed".into()).await.unwrap() });
        assert_eq!(ids(&queue.claim(0, now, 100).unwrap()), ["p1", "after"]);
    }

    #[test]
    fn a_holder_taking_a_slot_over_starts_from_its_checkpoint_also_when_the_log_before_it_is_gone() {
        let server = NatsServer::start();
        let (conn, layout, appender, leases) = opened(&server);
        let sent: Vec<_> = (0..130).map(|i| message(&format!("m{i}"), "acme", None, 5)).collect();
        appender.append(sent, None).unwrap();
        let now = now_ms();
        let held_a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let mut a = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held_a).unwrap();
        // One ack a message (one log entry each): m3 waits for a retry.
        for row in a.claim(0, now, 200).unwrap().rows {
            let processed = if row.id == "m3" { retried("m3", retry(now + 60_000, &["timeout"])) } else { done(&row.id) };
            a.ack(&[processed], vec![]).unwrap();
        }
        // A checkpoint was kept; the commit log before it goes (as its
        // retention would drop it).
        let checkpoints = conn.run({
            let js = conn.jetstream();
            async move { js.get_key_value("syncline-checkpoints").await.unwrap() }
        });
        let key = held_a.slots.iter().find(|s| s.key.ends_with(".5")).unwrap().key.clone();
        let kept: SlotState = serde_json::from_slice(&conn.run({
            let (kv, key) = (checkpoints.clone(), key.clone());
            async move { kv.get(key).await.unwrap().expect("a checkpoint") }
        }))
        .unwrap();
        assert!(kept.through >= 100 && kept.published == kept.through, "{kept:?}");
        conn.run({
            let js = conn.jetstream();
            let (subject, through) = (format!("syncline.commits.{key}"), kept.through);
            async move { js.get_stream("SYNCLINE_COMMITS").await.unwrap().purge().filter(subject).sequence(through + 1).await.unwrap() }
        });
        // host-a stalls; host-b takes over: the settled stay settled, m3 waits.
        let held_b = leases.take(&partition(), "host-b", now + 2_000, 30_000).unwrap();
        let mut b = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held_b).unwrap();
        let due = b.claim(0, now + 2_000, 200).unwrap();
        assert!(due.rows.is_empty(), "{:?}", ids(&due));
        assert_eq!(due.next_at, Some(now + 60_000));
        assert_eq!(ids(&b.claim(0, now + 60_000, 200).unwrap()), ["m3"]);
    }

    #[test]
    fn a_holder_taking_the_partition_over_resumes_where_the_last_one_s_acks_left_it_and_fences_it() {
        let server = NatsServer::start();
        let (conn, layout, appender, leases) = opened(&server);
        let sent: Vec<_> = (0..6).map(|i| message(&format!("m{i}"), "acme", None, if i % 2 == 0 { 5 } else { 37 })).collect();
        appender.append(sent, None).unwrap();
        let now = now_ms();
        let held_a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let mut a = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held_a).unwrap();
        assert_eq!(ids(&a.claim(0, now, 100).unwrap()), ["m0", "m1", "m2", "m3", "m4", "m5"]);
        a.ack(&[done("m0"), done("m1"), retried("m2", retry(now + 60_000, &["timeout"]))], vec![]).unwrap();

        // host-a stalls past its lease; host-b takes over and reads the logs.
        let held_b = leases.take(&partition(), "host-b", now + 2_000, 30_000).unwrap();
        let mut b = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held_b).unwrap();
        let due = b.claim(0, now + 2_000, 100).unwrap();
        assert_eq!(ids(&due), ["m3", "m5"], "m0 and m1 are done; m2 waits and holds m4 (its slot) behind it");
        assert_eq!(due.next_at, Some(now + 60_000));
        let due = b.claim(0, now + 60_000, 100).unwrap();
        assert_eq!(ids(&due), ["m2", "m3", "m4", "m5"]);
        assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["timeout".to_string()]));

        // host-a wakes and acks what it still had: refused, nothing kept.
        let stale = a.ack(&[done("m3")], vec![]).unwrap_err();
        assert!(matches!(&stale, StoreError::Conflict(t) if t.contains("host-a")), "{stale}");
        assert_eq!(ids(&b.claim(0, now + 60_000, 100).unwrap()), ["m2", "m3", "m4", "m5"]);
        b.ack(&[done("m2"), done("m3"), done("m4"), done("m5")], vec![]).unwrap();

        // A third holder finds everything settled, without reading the
        // messages below the floors again.
        let held_c = leases.take(&partition(), "host-c", now + 100_000, 30_000).unwrap();
        let mut c = MessageQueue::open(conn.clone(), appender, keeper(&conn, &layout), &held_c).unwrap();
        assert!(c.slots.floors().iter().all(|f| *f > 0));
        assert!(c.claim(0, now + 100_000, 100).unwrap().rows.is_empty());
    }

    #[test]
    fn an_ack_s_outputs_reach_their_sinks_once_even_when_its_holder_dies_before_publishing_them() {
        use super::super::reader::Slots;
        use super::super::{DeliveryQueue, Output};
        use crate::config::Tier;
        use crate::store::NewDelivery;

        let server = NatsServer::start();
        let (conn, layout, appender, leases) = opened(&server);
        appender.append(vec![message("m1", "acme", None, 5), message("m2", "acme", None, 37), message("m3", "acme", None, 5)], None).unwrap();
        let out = |id: &str| NewDelivery {
            id: format!("out-{id}"),
            sink: "erp".into(),
            ordering_key: format!("item-{id}"),
            tier: Tier::Standard,
            expect_ms: None,
            json: format!(r#"{{"from":"{id}"}}"#),
            message: None,
        };
        let now = now_ms();
        let held_a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let mut a = MessageQueue::open(conn.clone(), appender.clone(), keeper(&conn, &layout), &held_a).unwrap();
        assert_eq!(ids(&a.claim(0, now, 10).unwrap()), ["m1", "m2", "m3"]);
        a.ack(&[with_outputs("m1", vec![out("m1")]), with_outputs("m2", vec![out("m2")])], vec![]).unwrap();
        // host-a appends m3's entry and dies before publishing its output.
        a.dies_before_publishing = true;
        a.ack(&[with_outputs("m3", vec![out("m3")])], vec![]).unwrap();

        let sink = Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 };
        let sink_held = leases.take(&sink, "sink-host", now, 600_000).unwrap();
        let mut deliveries = DeliveryQueue::open(conn.clone(), keeper(&conn, &layout), &sink_held).unwrap();
        let queued = |d: &mut DeliveryQueue| {
            let mut found: Vec<String> = d.claim(now, 100).unwrap().rows.into_iter().map(|r| format!("{} {}", r.id, r.json)).collect();
            found.sort();
            found
        };
        assert_eq!(queued(&mut deliveries), [r#"out-m1 {"from":"m1"}"#, r#"out-m2 {"from":"m2"}"#]);

        // The log says m1's output went out (m3's entry, in the same slot,
        // records it); m3's may not have, nor m2's (no later entry of its
        // slot says so).
        let probe = leases.take(&partition(), "probe", now + 2_000, 1_000).unwrap();
        let subjects = [5, 37].into_iter().map(|n| super::super::append::slot_subject("acme", "recs", n).unwrap()).collect();
        let unpublished: Vec<Vec<Output>> = Slots::open(conn.clone(), MESSAGES, subjects, &probe).unwrap().unpublished().into_iter().map(|(_, _, u)| u.outputs.clone()).collect();
        assert_eq!(unpublished.iter().map(|o| o.iter().map(|o| o.id.as_str()).collect::<Vec<_>>()).collect::<Vec<_>>(), [vec!["out-m3"], vec!["out-m2"]]);

        // The next holder publishes what may be missing; nothing is stored twice.
        let held_b = leases.take(&partition(), "host-b", now + 4_000, 30_000).unwrap();
        let mut b = MessageQueue::open(conn.clone(), appender, keeper(&conn, &layout), &held_b).unwrap();
        assert!(b.claim(0, now + 4_000, 10).unwrap().rows.is_empty());
        assert_eq!(queued(&mut deliveries), [r#"out-m1 {"from":"m1"}"#, r#"out-m2 {"from":"m2"}"#, r#"out-m3 {"from":"m3"}"#]);
        let js = conn.jetstream();
        let stored = conn.run(async move { js.get_stream("SYNCLINE_DELIVERIES").await.unwrap().info().await.unwrap().state.messages });
        assert_eq!(stored, 3);
    }
}

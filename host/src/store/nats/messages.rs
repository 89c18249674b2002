//! Claims and acks of a pipeline's accepted messages on the NATS store, by
//! the holder of a partition's slot leases ([`Slots`] reads and commits
//! them): each new message is judged once — a copy that does not own its
//! idempotency key, or the remains of a batch that never committed, is
//! settled without being handed out, and one of a batch still being
//! published holds its slot until it is known — and a key's messages come
//! in order, a retry holding the later ones back.
//!
//! What an ack queues beside settling (outputs for sinks, dead letters,
//! exceptions, traces) is not carried yet: it comes with the store
//! contract's full `ack`, as the module plan in [`super`] says.

use std::collections::HashMap;
use std::sync::Arc;

use super::append::{slot_subject, KEY_HASH, MESSAGES};
use super::reader::{earliest, Judged, Slots};
use super::{Appender, Connection, Held, SlotCommit, Verdict, Waiting};
use crate::store::{Due, Lease, Pending, Queue, Retry, StoreError};

/// How long a message of a batch still being published is waited for
/// before it is read again.
const PENDING_RECHECK_MS: i64 = 1_000;

/// How one claimed message's attempt ended, as an ack records it.
#[derive(Debug, Clone)]
pub enum Settle {
    /// At an end (processed, dead-lettered, parked, dropped): its id.
    Done(String),
    /// To be tried again: its id and when.
    Retry(String, Retry),
}

/// A pipeline partition's messages as their lease holder claims and acks them.
pub struct MessageQueue {
    appender: Arc<Appender>,
    slots: Slots,
    /// The sequence of each message handed out and not yet acked, by id.
    claimed: HashMap<String, u64>,
}

impl MessageQueue {
    /// Opens `held`'s slots for claiming: appends each slot's marker
    /// (fencing every earlier holder) and folds its commit log.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] when `held` is not a lease of a pipeline's
    /// messages; [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: Arc<Connection>, appender: Arc<Appender>, held: &Held) -> Result<MessageQueue, StoreError> {
        let Queue::Messages { tenant, pipeline } = &held.lease.partition.queue else {
            return Err(StoreError::Other(format!("{} is not a pipeline's message queue", held.lease.partition.queue.name())));
        };
        let subjects = super::slots(&held.lease.partition)?.into_iter().map(|n| slot_subject(tenant, pipeline, n)).collect::<Result<_, _>>()?;
        Ok(MessageQueue { appender, slots: Slots::open(conn, MESSAGES, subjects, held)?, claimed: HashMap::new() })
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
        let appender = self.appender.clone();
        let stopped = self.slots.read(&mut |m| {
            Ok(match appender.judge(m, now_ms)? {
                Verdict::Counts => Judged::Counts(m.headers.get(KEY_HASH).and_then(|v| v.as_str().parse().ok()).ok_or_else(|| {
                    StoreError::Corrupt(format!("message {} of `{}` has no ordering-key hash", m.sequence, m.subject))
                })?),
                Verdict::Duplicate(_) | Verdict::Void => Judged::Void,
                Verdict::Pending => Judged::NotYet,
            })
        })?;
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
            let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()).unwrap_or_default();
            let json = String::from_utf8(m.payload.to_vec()).map_err(|_| StoreError::Corrupt(format!("message {} is not UTF-8", item.seq)))?;
            self.slots.hand_out(index, item.seq);
            self.claimed.insert(id.clone(), item.seq);
            let (attempts, errors) = waiting.map_or((0, Vec::new()), |w| (w.attempts, w.errors));
            rows.push(Pending { seq: item.seq as i64, id, json, key_hash: item.key_hash, attempts, errors, message: None });
        }
        Ok(Due { rows, next_at })
    }

    /// Records how claimed messages' attempts ended: one commit-log entry
    /// per slot. An id this holder did not hand out is refused before
    /// anything is written.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a slot was taken over (nothing of that
    /// slot's entry is kept; the messages stay claimable by the new
    /// holder); [`StoreError::Unavailable`] when the server does not
    /// answer; [`StoreError::Other`] for an unknown id.
    pub fn ack(&mut self, outcomes: &[Settle]) -> Result<(), StoreError> {
        let mut commits: HashMap<usize, SlotCommit> = HashMap::new();
        for outcome in outcomes {
            let id = match outcome {
                Settle::Done(id) | Settle::Retry(id, _) => id,
            };
            let unknown = || StoreError::Other(format!("message `{id}` was not claimed from {}", self.lease().partition.queue.name()));
            let seq = *self.claimed.get(id).ok_or_else(unknown)?;
            let index = self.slots.claimed(seq).ok_or_else(unknown)?;
            let commit = commits.entry(index).or_default();
            match outcome {
                Settle::Done(_) => commit.settled.push(seq),
                Settle::Retry(_, retry) => {
                    let key_hash = self.slots.get(index, seq).map_or(0, |r| r.item.key_hash);
                    let attempts = u32::try_from(retry.errors.len()).unwrap_or(u32::MAX).max(1);
                    commit.retries.push(Waiting { seq, key_hash, attempts, next_at: retry.next_at, errors: retry.errors.clone(), outcome_unknown: false });
                }
            }
        }
        self.slots.commit(commits)?;
        let slots = &self.slots;
        self.claimed.retain(|_, seq| slots.claimed(*seq).is_some());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::append::leftover;
    use super::super::testing::{connected, message, NatsServer};
    use super::super::{Leases, BATCH_GRACE};
    use super::*;
    use crate::store::{now_ms, Partition};

    /// Slots 5 and 37 of `acme`'s `recs` (partition 5 of 32).
    fn partition() -> Partition {
        Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "recs".into() }, index: 5, of: 32 }
    }

    fn ids(due: &Due<Pending>) -> Vec<&str> {
        due.rows.iter().map(|p| p.id.as_str()).collect()
    }

    fn retry(next_at: i64, errors: &[&str]) -> Retry {
        Retry { next_at, errors: errors.iter().map(|e| e.to_string()).collect() }
    }

    #[test]
    fn claims_hand_out_a_partition_s_messages_in_order_and_acks_settle_or_hold_them() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Arc::new(Appender::new(conn.clone(), &layout));
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        // Keys hashing to 5 and 37 (this partition's slots) and to 6 (another's).
        appender.append(vec![message("a1", "acme", Some("k-a1"), 5), message("b1", "acme", None, 37), message("x1", "acme", None, 6)]).unwrap();
        appender.append(vec![message("a2", "acme", None, 5)]).unwrap();
        // The remains of an append that died: a copy whose key a retry took,
        // and a batch never committed. Neither is handed out.
        leftover(&conn, &message("a1-copy", "acme", Some("k-a1"), 5), None);
        leftover(&conn, &message("void", "acme", None, 37), Some("void"));
        appender.append(vec![message("b2", "acme", None, 37)]).unwrap();

        let now = now_ms();
        let held = leases.take(&partition(), "host-a", now, 30_000).unwrap();
        let mut queue = MessageQueue::open(conn.clone(), appender.clone(), &held).unwrap();
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
        queue.ack(&[Settle::Retry("a1".into(), retry(later + 5_000, &["HTTP 503"])), Settle::Done("b1".into())]).unwrap();
        let due = queue.claim(0, later, 100).unwrap();
        assert_eq!(ids(&due), ["b2"]);
        assert_eq!(due.next_at, Some(later + 5_000));
        let retried = queue.claim(0, later + 5_000, 100).unwrap();
        assert_eq!(ids(&retried), ["a1", "a2", "b2"]);
        assert_eq!((retried.rows[0].attempts, retried.rows[0].errors.clone()), (1, vec!["HTTP 503".to_string()]));

        let unknown = queue.ack(&[Settle::Done("x1".into())]).unwrap_err();
        assert!(matches!(&unknown, StoreError::Other(t) if t.contains("x1")), "{unknown}");
        queue.ack(&[Settle::Done("a1".into()), Settle::Done("a2".into()), Settle::Done("b2".into())]).unwrap();
        assert!(queue.claim(0, later + 5_000, 100).unwrap().rows.is_empty());
        // Everything read is settled: the slots' floors passed it.
        assert_eq!(queue.slots.held(), 0);
        assert!(queue.slots.floors().iter().all(|f| *f > 0), "{:?}", queue.slots.floors());
    }

    const BATCH_GRACE_MS: i64 = BATCH_GRACE.as_millis() as i64;

    #[test]
    fn a_message_of_a_batch_still_being_published_holds_its_slot_until_it_is_known() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Arc::new(Appender::new(conn.clone(), &layout));
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        leftover(&conn, &message("p1", "acme", None, 5), Some("p1"));
        appender.append(vec![message("after", "acme", None, 5)]).unwrap();
        let now = now_ms();
        let held = leases.take(&partition(), "host-a", now, 30_000).unwrap();
        let mut queue = MessageQueue::open(conn.clone(), appender.clone(), &held).unwrap();
        let due = queue.claim(0, now, 100).unwrap();
        assert!(due.rows.is_empty(), "nothing overtakes a message that may yet count: {:?}", ids(&due));
        assert!(due.next_at.is_some_and(|t| t > now));
        // Its batch committed: it counts, and comes first.
        let batches = layout.batches.clone();
        conn.run(async move { batches.put("p1", "committed".into()).await.unwrap() });
        assert_eq!(ids(&queue.claim(0, now, 100).unwrap()), ["p1", "after"]);
    }

    #[test]
    fn a_holder_taking_the_partition_over_resumes_where_the_last_one_s_acks_left_it_and_fences_it() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let appender = Arc::new(Appender::new(conn.clone(), &layout));
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        let sent: Vec<_> = (0..6).map(|i| message(&format!("m{i}"), "acme", None, if i % 2 == 0 { 5 } else { 37 })).collect();
        appender.append(sent).unwrap();
        let now = now_ms();
        let held_a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let mut a = MessageQueue::open(conn.clone(), appender.clone(), &held_a).unwrap();
        assert_eq!(ids(&a.claim(0, now, 100).unwrap()), ["m0", "m1", "m2", "m3", "m4", "m5"]);
        a.ack(&[Settle::Done("m0".into()), Settle::Done("m1".into()), Settle::Retry("m2".into(), retry(now + 60_000, &["timeout"]))]).unwrap();

        // host-a stalls past its lease; host-b takes over and reads the logs.
        let held_b = leases.take(&partition(), "host-b", now + 2_000, 30_000).unwrap();
        let mut b = MessageQueue::open(conn.clone(), appender.clone(), &held_b).unwrap();
        let due = b.claim(0, now + 2_000, 100).unwrap();
        assert_eq!(ids(&due), ["m3", "m5"], "m0 and m1 are done; m2 waits and holds m4 (its slot) behind it");
        assert_eq!(due.next_at, Some(now + 60_000));
        let due = b.claim(0, now + 60_000, 100).unwrap();
        assert_eq!(ids(&due), ["m2", "m3", "m4", "m5"]);
        assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["timeout".to_string()]));

        // host-a wakes and acks what it still had: refused, nothing kept.
        let stale = a.ack(&[Settle::Done("m3".into())]).unwrap_err();
        assert!(matches!(&stale, StoreError::Conflict(t) if t.contains("host-a")), "{stale}");
        assert_eq!(ids(&b.claim(0, now + 60_000, 100).unwrap()), ["m2", "m3", "m4", "m5"]);
        b.ack(&[Settle::Done("m2".into()), Settle::Done("m3".into()), Settle::Done("m4".into()), Settle::Done("m5".into())]).unwrap();

        // A third holder finds everything settled, without reading the
        // messages below the floors again.
        let held_c = leases.take(&partition(), "host-c", now + 100_000, 30_000).unwrap();
        let mut c = MessageQueue::open(conn, appender, &held_c).unwrap();
        assert!(c.slots.floors().iter().all(|f| *f > 0));
        assert!(c.claim(0, now + 100_000, 100).unwrap().rows.is_empty());
    }
}

//! The store on NATS JetStream, for several hosts sharing one server or
//! cluster (`[store] kind = "nats"`). This module owns the connection, the
//! layout of streams and buckets, the leases on queue slots with their
//! fenced commit logs, appends with idempotency keys and sources' cursors,
//! a slot's state as its log tells it, claims and acks of a pipeline's
//! messages and of sinks' deliveries, what an ack keeps besides (trace
//! events, dead letters, exceptions, baselines, loops, audit events), the
//! cluster's members and which of them should hold what, and
//! [`NatsStore`], the [`Store`] contract on top of them.
//!
//! # How the store contract maps onto JetStream
//!
//! - **Queues** are streams whose subjects carry the partition slot:
//!   `syncline.messages.TENANT.PIPELINE.SLOT` and
//!   `syncline.deliveries.SINK.SLOT`, the slot being the ordering-key hash
//!   modulo [`SLOTS`]. A partition (index *i* of *n*, *n* a power of two)
//!   is the slots *s* with *s* mod *n* = *i* — exactly the items
//!   [`crate::store::Partition::holds`] — and the state of the work lives
//!   with the slots, so a queue cut into another number of partitions
//!   (a reload) keeps it. Idempotent ingest publishes with `Nats-Msg-Id`
//!   (the server drops a repeat within the stream's duplicate window and
//!   answers with the first copy's sequence); keys remembered longer are
//!   the `syncline-idempotency` bucket's.
//! - **Leases** are keys of the `syncline-leases` bucket, one per slot,
//!   taken and renewed by compare-and-set on the key's revision
//!   ([`Leases`]); a slot's token rises each time it changes hands, and a
//!   partition's token, the sum of its slots', follows the contract.
//! - **Acks are fenced by the server, not by a check before them**: every
//!   slot has a commit log, subject `syncline.commits.QUEUE….SLOT`; a
//!   holder appends with `Nats-Expected-Last-Subject-Sequence` set to the
//!   last entry it knows, and a holder taking a slot over first appends a
//!   marker ([`CommitLog::open`]). So a holder that lost its lease —
//!   however long it was paused — has its next append refused (JetStream
//!   error 10071), and nothing of that commit is kept: one commit is one
//!   stream message, which is what makes a commit of many records atomic
//!   without transactions across streams. What a commit queues
//!   (deliveries, dead letters, traces) is then published from it with ids
//!   derived from the commit, so a holder that dies between the two is
//!   repaired by its successor replaying the log without doubling anything.
//! - **What an ack keeps** rides in its entry and is published after it
//!   ([`kept`]): trace events on `syncline.trace.ID` ([`traces`]), dead
//!   letters, exceptions and loops in buckets numbered from the entry
//!   ([`cases`]), baseline entries in a bucket.
//! - **Sources**: a poll's messages are one batch, and writing the
//!   source's cursor (naming the batch) is what commits it, so the two
//!   move together as SQLite's transaction moves them.
//! - **Cursors, plugin state, pauses, approvals and the plugin archive**
//!   are key-value buckets; the audit log is a stream of its own.
//! - **Commands** made through one process's API (reload, rollback,
//!   approval) are kept in the control bucket, one key each, and every
//!   process watches them ([`commands`]).
//! - **Wakes**: a process that queues work says so on a plain subject,
//!   and the others' workers claim at once rather than at their next poll
//!   ([`wake`]).
//! - **Checkpoints**: every hundred entries, once what they queued is
//!   published, a slot's holder keeps its state in a bucket; a holder
//!   taking the slot over folds only the entries after it (and the log
//!   before it may be gone, as retention drops it).
//! - **Members** beat in a bucket; the live member a partition should go
//!   to (rendezvous hashing) asks for it, and its holder lets go between
//!   batches ([`members`]).
//!
//! # What is still to come
//!
//! - Counts, backlog and pruning fold every trace the retention keeps
//!   ([`traces::Census`]) once per process and every five minutes, and
//!   what came since in between; figures kept in the store would not.
//! - A slot is read with a direct get per poll, and a consumer is made
//!   for a read of more than a few messages; one consumer kept per
//!   partition would cost less.
//! - A single message, output or delivery larger than the server's
//!   `max_payload` cannot be kept (a commit of many is written in parts,
//!   [`CommitLog::append`]): [`crate::store::Store::record_limit`] says
//!   so, and ingest refuses such a message and a pipeline dead-letters a
//!   message whose output would be one.
//!
//! # Server versions
//!
//! Debian ships nats-server 2.9, and the tests run against it. Measured
//! with async-nats 0.51 (its newer-server features off): publish
//! deduplication, pull consumers with redelivery after `ack_wait`, key-value
//! create/update by revision and expected-last-subject-sequence appends all
//! behave as documented; `create_key_value` does not (it reads the
//! account's JetStream info, which 2.9 answers in a form this client cannot
//! parse), so [`layout`] creates each bucket's stream itself, as the
//! key-value convention lays it out, and opens it as a bucket.
//!
//! The store's calls are synchronous like every other backend's; this
//! module's own runtime (thread `store-nats`) drives the client, and a call
//! waits for its answer on the calling thread ([`Connection::run`]), from
//! any thread, inside a Tokio runtime or not.
//!
//! [`Store`]: super::Store

mod append;
mod audit;
mod cases;
mod commands;
mod deliveries;
mod kept;
mod layout;
mod lease;
mod members;
mod messages;
mod reader;
mod shrink;
mod slot;
mod store;
mod traces;
mod wake;
#[cfg(test)]
#[allow(dead_code)]
mod test_server;
#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;

pub use append::{Accepted, Appender, Verdict, BATCH_GRACE};
pub use layout::{Layout, Settings};
pub use lease::{slots, CommitLog, Entry, Held, Leases, SlotLease};
pub use deliveries::{output, publish as queue_outputs, DeliveryQueue};
pub use messages::MessageQueue;
pub use slot::{Item, Output, SlotCommit, SlotDue, SlotState, Waiting};
pub use store::NatsStore;

use super::StoreError;

/// How many slots a queue's subjects are cut into: the most partitions a
/// queue can have on this store.
pub const SLOTS: u32 = 64;

/// A connection to a NATS server with JetStream.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    url: String,
    /// The largest message the server takes (its `max_payload`).
    max_payload: usize,
}

impl Connection {
    /// Connects to `settings.url` within `settings.connect_timeout`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached or
    /// has no JetStream.
    pub fn open(settings: &Settings) -> Result<Connection, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-nats")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("the NATS store's runtime did not start: {e}")))?;
        let url = settings.url.clone();
        let timeout = settings.connect_timeout;
        let (js, max_payload) = wait_on(&runtime, async move {
            // One server or a cluster's, comma-separated.
            let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            let connecting = async_nats::ConnectOptions::new().connection_timeout(timeout).name("syncline").connect(servers);
            match tokio::time::timeout(timeout, connecting).await {
                // The context spawns its own task: made on the runtime.
                Ok(Ok(client)) => {
                    let max_payload = client.server_info().max_payload;
                    Ok((jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client), max_payload))
                }
                Ok(Err(e)) => Err(StoreError::Unavailable(format!("cannot connect to NATS at {url}: {e}"))),
                Err(_) => Err(StoreError::Unavailable(format!("no answer from NATS at {url} within {timeout:?}"))),
            }
        })?;
        Ok(Connection { runtime, js, url: settings.url.clone(), max_payload })
    }

    /// Runs `work` on the store's runtime and waits for it on this thread.
    pub(crate) fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        wait_on(&self.runtime, work)
    }

    /// Runs `work` on the store's runtime in the background, until it ends
    /// or the store is dropped.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(work);
    }

    /// The JetStream context (cheap to clone into a call's future).
    pub(crate) fn jetstream(&self) -> jetstream::Context {
        self.js.clone()
    }

    /// The most bytes of a body one message of the server takes, with
    /// room for its headers: what a larger commit or archived component is
    /// cut into.
    pub(crate) fn piece(&self) -> usize {
        self.max_payload.saturating_sub(HEADERS_ROOM).max(1)
    }

    /// Fails unless a message of `bytes` (`what`) fits in one message of
    /// the server, with room for its headers.
    ///
    /// # Errors
    ///
    /// [`StoreError::TooLarge`] saying what to change.
    pub(crate) fn fits(&self, what: &str, bytes: usize) -> Result<(), StoreError> {
        if bytes <= self.piece() {
            return Ok(());
        }
        Err(StoreError::TooLarge(format!(
            "{what} is {bytes} bytes as stored; the NATS server at {} takes at most {} bytes in one message with its headers (max_payload): raise max_payload in the server's config, or send smaller messages",
            self.url, self.max_payload
        )))
    }

    /// The server's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Runs `work` on `runtime` and waits for it on this thread (which may be
/// a Tokio worker: it is not `block_on`).
fn wait_on<T: Send + 'static>(runtime: &tokio::runtime::Runtime, work: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().expect("the NATS store's runtime runs until the store is dropped")
}

/// A name as one token of a subject or key: letters, digits, `-` and `_`
/// (tenant, pipeline and sink names are lower-case words joined by `-`).
///
/// # Errors
///
/// [`StoreError::Other`] naming what cannot be a token.
pub(crate) fn token(name: &str) -> Result<&str, StoreError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(name)
    } else {
        Err(StoreError::Other(format!("`{name}` cannot name a NATS subject token (letters, digits, `-` and `_` only)")))
    }
}

/// Publishes `sent` — (subject, headers, body) — every publish sent before
/// any answer is awaited; their stream sequences, in order. `what` names
/// them in errors.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer (with ids
/// in the headers, publishing them again stores none twice).
pub(crate) fn publish_all(conn: &Connection, sent: Vec<(String, async_nats::HeaderMap, Vec<u8>)>, what: &'static str) -> Result<Vec<u64>, StoreError> {
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    let js = conn.jetstream();
    conn.run(async move {
        let mut acks = Vec::with_capacity(sent.len());
        for (subject, headers, body) in sent {
            let ack = js.publish_with_headers(subject.clone(), headers, body.into()).await;
            acks.push(ack.map_err(|e| unavailable(&format!("{what} on `{subject}`"), e))?);
        }
        let mut seqs = Vec::with_capacity(acks.len());
        for ack in acks {
            seqs.push(ack.await.map_err(|e| unavailable(what, e))?.sequence);
        }
        Ok(seqs)
    })
}

/// A request the server did not answer (not there, not in time).
pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// A request the server answered with a refusal this store does not expect.
pub(crate) fn refused(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("{what}: {e}"))
}

/// Room kept for a message's headers within the server's `max_payload`.
const HEADERS_ROOM: usize = 4096;

/// How long a JetStream request may wait for its answer: past it the
/// store is unavailable for that call.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::testing::{connected, message, once_available, settings, urls, NatsServer};
    use super::*;
    use crate::store::{now_ms, IngestOutcome, Partition, Queue};

    fn partition() -> Partition {
        Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "recs".into() }, index: 1, of: 4 }
    }

    /// A stream's settings as the server has them.
    fn stream_config(conn: &Connection, name: &'static str) -> async_nats::jetstream::stream::Config {
        let js = conn.jetstream();
        conn.run(async move { js.get_stream(name).await.unwrap().info().await.unwrap().config.clone() })
    }

    #[test]
    fn the_layout_is_made_once_and_follows_the_settings() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let mut made = layout.created.clone();
        made.sort();
        assert_eq!(
            made,
            [
                "KV_syncline-archive", "KV_syncline-baselines", "KV_syncline-batches", "KV_syncline-checkpoints", "KV_syncline-control", "KV_syncline-cursors", "KV_syncline-dead-letters",
                "KV_syncline-exceptions", "KV_syncline-idempotency", "KV_syncline-leases", "KV_syncline-loops", "KV_syncline-state", "SYNCLINE_AUDIT",
                "SYNCLINE_COMMITS", "SYNCLINE_DELIVERIES", "SYNCLINE_MESSAGES", "SYNCLINE_TRACES",
            ]
        );
        assert_eq!(stream_config(&conn, "SYNCLINE_MESSAGES").max_age, Duration::from_secs(7 * 86400));
        assert_eq!(stream_config(&conn, "KV_syncline-idempotency").max_age, Duration::from_secs(86400), "idempotency keys expire after the dedupe window");
        assert_eq!(stream_config(&conn, "SYNCLINE_AUDIT").max_age, Duration::ZERO, "the audit log is kept");

        let again = Layout::ensure(&conn, &settings(&server.url())).unwrap();
        assert!(again.created.is_empty() && again.updated.is_empty(), "a second start changes nothing: {:?} {:?}", again.created, again.updated);

        let shorter = Settings { retention: Duration::from_secs(86400), ..settings(&server.url()) };
        let changed = Layout::ensure(&conn, &shorter).unwrap();
        assert!(changed.created.is_empty());
        assert_eq!(changed.updated, ["SYNCLINE_MESSAGES", "SYNCLINE_DELIVERIES", "SYNCLINE_COMMITS", "SYNCLINE_TRACES", "KV_syncline-batches"]);
        assert_eq!(stream_config(&conn, "SYNCLINE_COMMITS").max_age, Duration::from_secs(86400));
    }

    #[test]
    fn a_stream_of_that_name_with_other_subjects_is_refused() {
        let server = NatsServer::start();
        let conn = Connection::open(&settings(&server.url())).unwrap();
        let js = conn.jetstream();
        conn.run(async move {
            js.create_stream(async_nats::jetstream::stream::Config { name: "SYNCLINE_AUDIT".into(), subjects: vec!["billing.>".into()], ..Default::default() })
                .await
                .unwrap();
        });
        let refused = Layout::ensure(&conn, &settings(&server.url())).err().expect("refused");
        assert!(matches!(&refused, StoreError::Conflict(t) if t.contains("SYNCLINE_AUDIT") && t.contains("billing.>")), "{refused}");
    }

    #[test]
    fn a_server_that_is_not_there_is_unavailable_and_one_that_comes_back_serves_again() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let nowhere = Settings { connect_timeout: Duration::from_millis(500), ..settings(&format!("nats://127.0.0.1:{port}")) };
        let refused = Connection::open(&nowhere).err().expect("no server");
        assert!(matches!(&refused, StoreError::Unavailable(t) if t.contains(&format!("127.0.0.1:{port}"))), "{refused}");

        let mut server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Leases::new(conn.clone(), layout.leases);
        let now = now_ms();
        let a = leases.take(&partition(), "host-a", now, 60_000).unwrap();
        server.stop();
        let down = leases.take(&partition(), "host-a", now + 10, 60_000).unwrap_err();
        assert!(down.is_transient(), "{down}");
        server.restart();
        // The client reconnects by itself; the lease (kept on disk) is still host-a's.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let renewed = loop {
            match leases.take(&partition(), "host-a", now + 20, 60_000) {
                Ok(l) => break l,
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => panic!("the store did not come back: {e}"),
            }
        };
        assert_eq!(renewed.lease.token, a.lease.token);
        assert!(matches!(leases.take(&partition(), "host-b", now + 30, 60_000), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn leases_are_taken_renewed_refused_and_released_as_the_contract_says() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Leases::new(conn, layout.leases);
        let now = now_ms();
        let a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let slots: Vec<u32> = a.slots.iter().map(|s| s.key.rsplit('.').next().unwrap().parse().unwrap()).collect();
        assert_eq!(slots, (0..SLOTS).filter(|s| s % 4 == 1).collect::<Vec<_>>(), "partition 1 of 4 is the slots ≡ 1 mod 4");
        assert!(a.slots.iter().all(|s| s.key.starts_with("messages.acme.recs.") && s.token == 1));
        assert_eq!(leases.take(&partition(), "host-a", now + 10, 1_000).unwrap().lease.token, a.lease.token, "a renewal keeps the token");
        let refused = leases.take(&partition(), "host-b", now + 500, 1_000).unwrap_err();
        assert!(matches!(&refused, StoreError::Conflict(t) if t.contains("host-a")), "{refused}");
        // Another partition of the same queue is free; one cut otherwise
        // that shares slots is not, and one that shares none is.
        assert!(leases.take(&Partition { index: 2, ..partition() }, "host-b", now + 500, 1_000).is_ok());
        let halves = |index| Partition { index, of: 2, ..partition() };
        assert!(matches!(leases.take(&halves(1), "host-c", now + 500, 1_000), Err(StoreError::Conflict(t)) if t.contains("host-a")));
        assert!(matches!(leases.take(&halves(0), "host-c", now + 500, 1_000), Err(StoreError::Conflict(t)) if t.contains("host-b")));
        // host-c's refused take gave back the slot it took on the way
        // (slot 0, before host-b's slot 2 refused it): the slots ≡ 0 mod 8
        // are free.
        let eighth = Partition { index: 0, of: 8, ..partition() };
        assert!(leases.take(&eighth, "host-d", now + 500, 1_000).is_ok());
        // host-a's lease runs out; host-b takes the partition over.
        let b = leases.take(&partition(), "host-b", now + 2_000, 1_000).unwrap();
        assert!(b.lease.token > a.lease.token);
        // host-a's release of what it no longer holds changes nothing.
        leases.release(&a).unwrap();
        assert!(matches!(leases.take(&partition(), "host-c", now + 2_001, 1_000), Err(StoreError::Conflict(t)) if t.contains("host-b")));
        // Released, the partition is free at once.
        leases.release(&b).unwrap();
        let c = leases.take(&partition(), "host-c", now + 2_001, 1_000).unwrap();
        assert!(c.lease.token > b.lease.token);
        // What this store cannot hold is refused before it reaches the server.
        let odd = Partition { queue: Queue::Deliveries { sink: "erp.prod".into() }, index: 0, of: 1 };
        assert!(matches!(leases.take(&odd, "host-a", now, 1_000), Err(StoreError::Other(t)) if t.contains("erp.prod")));
        let thirds = Partition { index: 0, of: 3, ..partition() };
        assert!(matches!(leases.take(&thirds, "host-a", now, 1_000), Err(StoreError::Other(t)) if t.contains("power of two")));
    }

    #[test]
    fn of_hosts_racing_for_a_free_partition_one_wins() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Arc::new(Leases::new(conn, layout.leases));
        let now = now_ms();
        let takers: Vec<_> = (0..6)
            .map(|i| {
                let leases = leases.clone();
                std::thread::spawn(move || leases.take(&partition(), &format!("host-{i}"), now, 60_000))
            })
            .collect();
        let results: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::Conflict(_))), "{results:?}");
        // The winner has every slot.
        assert_eq!(won[0].slots.len() as u32, SLOTS / 4);
    }

    #[test]
    fn a_holder_that_lost_its_slot_has_its_commits_refused() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Leases::new(conn.clone(), layout.leases);
        let now = now_ms();
        let a = leases.take(&partition(), "host-a", now, 1_000).unwrap();
        let mut log_a = CommitLog::open(conn.clone(), "host-a", &a.slots[0]).unwrap();
        let first = log_a.append(b"c1".to_vec()).unwrap();

        // host-a pauses past its lease; host-b takes the partition over.
        let b = leases.take(&partition(), "host-b", now + 2_000, 1_000).unwrap();
        assert_eq!(b.slots[0].key, a.slots[0].key);
        assert!(b.slots[0].token > a.slots[0].token);
        // What host-a appends before host-b's log is open is in the log
        // host-b reads up to its marker: both agree it was committed.
        let before = log_a.append(b"c2".to_vec()).unwrap();
        assert!(before > first);
        let mut log_b = CommitLog::open(conn.clone(), "host-b", &b.slots[0]).unwrap();
        let marker = log_b.last_entry().unwrap().unwrap();
        assert_eq!((marker.kind.as_str(), marker.holder.as_str(), marker.token), ("marker", "host-b", b.slots[0].token));
        assert!(marker.seq > before);

        // From host-b's marker on, host-a's appends are refused and kept nowhere.
        let stale = log_a.append(b"c3".to_vec()).unwrap_err();
        assert!(matches!(&stale, StoreError::Conflict(t) if t.contains("host-a")), "{stale}");
        assert_eq!(log_b.last_entry().unwrap().unwrap(), marker);
        let kept = log_b.append(b"c4".to_vec()).unwrap();
        let last = log_b.last_entry().unwrap().unwrap();
        assert_eq!((last.seq, last.kind.as_str(), last.holder.as_str(), last.data.as_slice()), (kept, "commit", "host-b", b"c4".as_slice()));
        // Each slot has a log of its own.
        let mut log_other = CommitLog::open(conn, "host-b", &b.slots[1]).unwrap();
        log_other.append(b"elsewhere".to_vec()).unwrap();
        assert_eq!(log_b.last_entry().unwrap().unwrap().seq, kept);
    }

    #[test]
    fn a_commit_larger_than_the_server_takes_in_one_message_is_appended_in_parts_and_read_whole() {
        let server = NatsServer::start();
        let (conn, layout) = connected(&server);
        let leases = Leases::new(conn.clone(), layout.leases);
        let a = leases.take(&partition(), "host-a", now_ms(), 60_000).unwrap();
        let mut log = CommitLog::open(conn.clone(), "host-a", &a.slots[0]).unwrap();
        // 2.5 MB: over nats-server's 1 MiB message limit.
        let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
        let seq = log.append(big.clone()).unwrap();
        log.append(b"after".to_vec()).unwrap();
        let entries: Vec<Entry> = log.entries(0).unwrap().into_iter().filter(|e| e.kind == "commit").collect();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].seq, entries[0].parts, entries[0].data.len()), (seq, big.len().div_ceil(conn.piece()), big.len()));
        assert!(entries[0].data == big, "the parts join in order");
        assert_eq!(entries[1].data, b"after");
        // A successor reads the same whole commit.
        let b = leases.take(&partition(), "host-b", now_ms() + 120_000, 60_000).unwrap();
        let log_b = CommitLog::open(conn, "host-b", &b.slots[0]).unwrap();
        assert!(log_b.entries(0).unwrap().iter().any(|e| e.seq == seq && e.data == big));
    }

    #[test]
    fn a_three_node_cluster_keeps_serving_with_one_node_stopped() {
        let mut nodes = NatsServer::cluster();
        let config = Settings { replicas: 3, ..settings(&urls(&nodes)) };
        let conn = Arc::new(Connection::open(&config).unwrap());
        // The cluster elects its JetStream leaders before it takes streams.
        let layout = once_available(60, || Layout::ensure(&conn, &config));
        assert_eq!(stream_config(&conn, "SYNCLINE_MESSAGES").num_replicas, 3);
        assert_eq!(stream_config(&conn, "KV_syncline-leases").num_replicas, 3);
        let leases = Leases::new(conn.clone(), layout.leases.clone());
        let appender = Appender::new(conn.clone(), &layout);
        let now = now_ms();
        let a = once_available(30, || leases.take(&partition(), "host-a", now, 60_000));
        let first = once_available(30, || appender.append(vec![message("m1", "acme", Some("k1"), 1)], None));
        assert_eq!(first[0].outcome, IngestOutcome::Accepted { id: "m1".into() });

        // One node of three stops (perhaps the one this client talks to):
        // two keep a quorum, elect new leaders where needed and serve on.
        nodes[0].stop();
        let renewed = once_available(60, || leases.take(&partition(), "host-a", now + 10, 60_000));
        assert_eq!(renewed.lease.token, a.lease.token, "the lease survived");
        assert!(matches!(leases.take(&partition(), "host-b", now + 20, 60_000), Err(StoreError::Conflict(_))));
        let again = once_available(60, || appender.append(vec![message("m2", "acme", Some("k1"), 1)], None));
        assert_eq!(again[0].outcome, IngestOutcome::Duplicate { id: "m1".into() }, "the idempotency key survived");
        let third = once_available(60, || appender.append(vec![message("m3", "acme", Some("k2"), 1)], None));
        assert_eq!(third[0].outcome, IngestOutcome::Accepted { id: "m3".into() });
        for seq in [first[0].seq.unwrap(), third[0].seq.unwrap()] {
            assert_eq!(once_available(30, || appender.verdict(seq, now_ms())), Verdict::Counts);
        }
    }
}

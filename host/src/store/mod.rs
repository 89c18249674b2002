//! The durable store: accepted messages, per-sink delivery queues, delivery
//! attempts, dead letters, exception queues, audit events, idempotency keys
//! and source cursors. [`Store`] is what the engine sees; [`SqliteStore`] is
//! the embedded engine (a NATS JetStream engine can implement the same).
//!
//! Writes are group-committed: many callers' writes share one transaction,
//! and a call returns only once the transaction holding its write is
//! committed — so "accepted" always means "on disk".

pub mod records;
mod sqlite;

pub use sqlite::SqliteStore;

use serde::Serialize;

/// A store failure: nothing of the failed call was kept. The kind tells a
/// caller whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No room: the disk or the configured `max-size` is full.
    #[error("the store is full: {0}")]
    Full(String),
    /// The store cannot be reached now (busy past its timeout, stopped,
    /// its files cannot be opened).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store's files are damaged.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// A write contradicts what the store holds (a broken constraint).
    #[error("store conflict: {0}")]
    Conflict(String),
    /// Any other failure of the engine.
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether the same call may succeed later (room freed, store back).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::Unavailable(_))
    }

    /// The same failure, its text prefixed with `what` failed.
    pub fn context(self, what: &str) -> StoreError {
        let with = |t: String| format!("{what}: {t}");
        match self {
            StoreError::Full(t) => StoreError::Full(with(t)),
            StoreError::Unavailable(t) => StoreError::Unavailable(with(t)),
            StoreError::Corrupt(t) => StoreError::Corrupt(with(t)),
            StoreError::Conflict(t) => StoreError::Conflict(with(t)),
            StoreError::Other(t) => StoreError::Other(with(t)),
        }
    }

    /// The store's writer is gone (the process is stopping).
    pub(crate) fn stopped() -> StoreError {
        StoreError::Unavailable("the store writer has stopped".into())
    }
}

/// A write handed to the store and committed later; async code awaits
/// [`Submitted::committed`] instead of blocking a thread on the commit.
pub struct Submitted<T>(Inner<T>);

/// What a store sends back for a submitted write.
pub type Committed = Result<Box<dyn std::any::Any + Send>, StoreError>;

enum Inner<T> {
    Ready(Result<T, StoreError>),
    Waiting(tokio::sync::oneshot::Receiver<Committed>),
}

impl<T: 'static> Submitted<T> {
    /// A write that is already done (a store without asynchronous commits).
    pub fn ready(result: Result<T, StoreError>) -> Submitted<T> {
        Submitted(Inner::Ready(result))
    }

    /// A write whose commit arrives on `rx` (as a boxed `T`).
    pub fn waiting(rx: tokio::sync::oneshot::Receiver<Committed>) -> Submitted<T> {
        Submitted(Inner::Waiting(rx))
    }

    /// Waits until the write is committed (or failed).
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing of the write was kept.
    pub async fn committed(self) -> Result<T, StoreError> {
        match self.0 {
            Inner::Ready(r) => r,
            Inner::Waiting(rx) => {
                let out = rx.await.map_err(|_| StoreError::stopped())??;
                Ok(*out.downcast::<T>().expect("store op returns its own type"))
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A message to accept.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Message id (ULID).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Hash of the ordering key; a worker takes the messages whose hash
    /// modulo the shard count is its own.
    pub key_hash: u32,
    /// Idempotency key to deduplicate on, if any.
    pub idempotency_key: Option<String>,
    /// The message as JSON.
    pub json: String,
}

/// What became of a message offered for ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum IngestOutcome {
    /// Stored as new.
    Accepted {
        /// Its id.
        id: String,
    },
    /// Its idempotency key was seen before: not stored again.
    Duplicate {
        /// The original message's id.
        id: String,
    },
}

/// An accepted message waiting to be processed.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Processing order.
    pub seq: i64,
    /// Id.
    pub id: String,
    /// The message as JSON.
    pub json: String,
    /// Hash of its ordering key.
    pub key_hash: u32,
    /// Attempts at processing it so far (each ended in a retryable failure).
    pub attempts: u32,
    /// Each earlier attempt's error.
    pub errors: Vec<String>,
}

/// Accepted messages due for processing, and when the next waiting one is.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Due messages in order; none of them has an earlier message of its
    /// ordering key still waiting for a retry.
    pub rows: Vec<Pending>,
    /// When the earliest message waiting for a retry becomes due.
    pub next_at: Option<i64>,
}

/// A processing attempt that failed retryably: the message stays accepted
/// and is processed again (from its first stage) after `next_at`.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Not before (ms since the epoch).
    pub next_at: i64,
    /// Every attempt's error so far, this one last.
    pub errors: Vec<String>,
}

/// Where one processed message ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Final {
    /// Processed; its outputs (if any) are queued for delivery.
    Done,
    /// Dead-lettered.
    Dead,
    /// Parked in an exception queue.
    Exception,
    /// Dropped by policy.
    Dropped,
}

impl Final {
    fn as_str(&self) -> &'static str {
        match self {
            Final::Done => "done",
            Final::Dead => "dead",
            Final::Exception => "exception",
            Final::Dropped => "dropped",
        }
    }
}

/// An output queued for a sink.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Output message id.
    pub id: String,
    /// Sink name.
    pub sink: String,
    /// Ordering key (deliveries with the same key go in order).
    pub ordering_key: String,
    /// The output message as JSON.
    pub json: String,
}

/// A dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct NewDeadLetter {
    /// Message id.
    pub message_id: String,
    /// Where it died (`stage 2` or `sink erp`).
    pub place: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest.
    pub digest: String,
    /// Why.
    pub reason: String,
    /// Every attempt's error.
    pub attempts: Vec<String>,
    /// The message as JSON.
    pub json: String,
    /// Whether the message may have reached the downstream after all (an
    /// attempt failed as a whole after sending requests): a replay is
    /// idempotent, but the downstream may already hold it.
    pub outcome_unknown: bool,
}

/// A message parked for the business.
#[derive(Debug, Clone, Serialize)]
pub struct NewException {
    /// Queue.
    pub queue: String,
    /// Message id.
    pub message_id: String,
    /// What is wrong.
    pub detail: records::ExceptionDetail,
    /// The message as JSON.
    pub json: String,
}

/// The result of processing one accepted message, committed atomically
/// with every other in the same [`Commit`].
#[derive(Debug, Clone)]
pub struct Processed {
    /// Input message id.
    pub id: String,
    /// Where it ended.
    pub state: Final,
    /// Its processing record (stages, digests, timings) as JSON text
    /// (serialized by the caller, off the store's writer thread).
    pub trace: String,
    /// Set when the attempt failed retryably: nothing else of it is
    /// recorded, the message waits for its next attempt.
    pub retry: Option<Retry>,
    /// Outputs to queue.
    pub deliveries: Vec<NewDelivery>,
    /// Dead letters.
    pub dead_letters: Vec<NewDeadLetter>,
    /// Exceptions.
    pub exceptions: Vec<NewException>,
}

/// Tenant and pipeline of a commit (every message in it shares them).
#[derive(Debug, Clone)]
pub struct Commit {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Processed messages.
    pub processed: Vec<Processed>,
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Queue order.
    pub seq: i64,
    /// Output message id.
    pub id: String,
    /// Ordering key.
    pub ordering_key: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before (ms since epoch).
    pub next_at: i64,
    /// The output message as JSON.
    pub json: String,
    /// Errors of earlier attempts.
    pub errors: Vec<String>,
    /// Whether an earlier attempt may have delivered it although it failed.
    pub outcome_unknown: bool,
}

/// What an attempt did.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// Delivered, with the downstream reference.
    Delivered(String),
    /// Failed; try again at this time (ms since epoch).
    Retry {
        /// Error.
        error: String,
        /// Next attempt.
        next_at: i64,
        /// Whether this attempt may have delivered it although it failed.
        outcome_unknown: bool,
    },
    /// Failed for good: dead-letter it.
    Dead(NewDeadLetter),
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Delivery queue order.
    pub seq: i64,
    /// Sink plugin digest.
    pub digest: String,
    /// Result.
    pub result: AttemptResult,
}

/// What a [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Accepted messages whose work is finished (with their traces).
    pub messages: usize,
    /// Delivered deliveries (with their attempts).
    pub deliveries: usize,
    /// Pages handed back to the file system.
    pub pages_freed: usize,
}

/// The embedded or clustered store.
pub trait Store: Send + Sync {
    /// Accepts messages (deduplicating on tenant + idempotency key), durably,
    /// and optionally moves a source's cursor in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing was accepted.
    fn ingest(&self, messages: Vec<NewMessage>, cursor: Option<(String, String)>) -> Result<Vec<IngestOutcome>, StoreError>;

    /// [`Store::ingest`] without a cursor, for async callers: returns at
    /// once; await the result's [`Submitted::committed`].
    fn submit_ingest(&self, messages: Vec<NewMessage>) -> Submitted<Vec<IngestOutcome>> {
        Submitted::ready(self.ingest(messages, None))
    }

    /// Accepted, unprocessed messages of shard `shard` of `shards` of a
    /// pipeline after `after_seq`, in order: up to `limit` that are due at
    /// `now_ms`, leaving out any whose ordering key has an earlier message
    /// waiting for a retry (so a retry never lets a later message of its
    /// key overtake it), and when the next waiting one becomes due.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn pending(&self, tenant: &str, pipeline: &str, shard: u32, shards: u32, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due, StoreError>;

    /// Records processing results: marks inputs, queues outputs, writes dead
    /// letters and exceptions, all in one transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing was recorded; the inputs stay pending.
    fn commit(&self, commit: Commit) -> Result<(), StoreError>;

    /// Pending deliveries of `sink` whose ordering-key hash modulo `parts`
    /// is `part`, in queue order (due or not).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn deliveries(&self, sink: &str, part: u32, parts: u32, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Records delivery attempts.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing was recorded; the deliveries stay pending.
    fn record(&self, sink: &str, attempts: Vec<Attempt>) -> Result<(), StoreError>;

    /// A source's cursor.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn cursor(&self, source: &str) -> Result<Option<String>, StoreError>;

    /// Appends an audit event.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn audit(&self, kind: &str, detail: serde_json::Value) -> Result<(), StoreError>;

    /// Everything known about message `id` (as input or as output).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn trace(&self, id: &str) -> Result<Option<records::Trace>, StoreError>;

    /// Forgets idempotency keys first seen before `before_ms` (the dedupe
    /// window has passed); returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn prune_idempotency(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Forgets finished work older than `before_ms` (the retention): every
    /// delivery delivered before it, with its attempts, then every message
    /// that ended `done` or `dropped` before it and has no delivery left.
    /// Dead letters, exceptions, dead deliveries and the messages they came
    /// from stay until resolved or purged. Space is handed back where the
    /// engine can; otherwise it is reused by new writes.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: what was pruned before the error stays pruned.
    fn prune(&self, before_ms: i64) -> Result<Pruned, StoreError>;

    /// Messages waiting per (tenant, pipeline) and deliveries waiting per sink.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    #[allow(clippy::type_complexity)]
    fn backlog(&self) -> Result<(Vec<((String, String), i64)>, Vec<(String, i64)>), StoreError>;

    /// Counts of messages and deliveries by state, for readiness and reports.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn counts(&self) -> Result<serde_json::Value, StoreError>;
}

//! The durable store: accepted messages, per-sink delivery queues, delivery
//! attempts, dead letters, exception queues, audit events, idempotency keys,
//! source cursors and plugin state. [`Store`] is what the engine sees;
//! [`SqliteStore`] is the embedded engine, [`MemoryStore`] the in-memory one
//! for tests of the engine's logic; [`nats`] holds the NATS JetStream
//! engine's parts built so far (not yet a [`Store`]).
//!
//! The contract is a queue's: **append** messages with dedupe (atomically
//! with a source cursor); a worker takes a **lease** on a [`Partition`] of a
//! queue (a pipeline's accepted messages or a sink's deliveries, split by the
//! hash of the ordering key), **claims** the partition's due work in order,
//! and **acks** it — each item settled, or nacked with a next-attempt time.
//! An ack under a lease that another holder has taken since is refused
//! ([`StoreError::Conflict`]) and records nothing: the lease is the fence.
//!
//! A write returns only once it is durable — so "accepted" always means "on
//! disk" (SQLite group-commits many callers' writes in one transaction).

mod compact;
#[cfg(test)]
mod contract;
mod memory;
pub mod nats;
pub mod records;
mod sqlite;
pub mod timeline;

pub use memory::MemoryStore;
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
    /// The store cannot keep something this large (a NATS server's
    /// largest message); asking again will not help.
    #[error("too large for the store: {0}")]
    TooLarge(String),
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
            StoreError::TooLarge(t) => StoreError::TooLarge(with(t)),
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

    /// Blocks the thread until the write is committed (or failed). Not for
    /// async tasks: they await [`Submitted::committed`].
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing of the write was kept.
    pub fn wait(self) -> Result<T, StoreError> {
        match self.0 {
            Inner::Ready(r) => r,
            Inner::Waiting(rx) => unbox(rx.blocking_recv()),
        }
    }

    /// Waits until the write is committed (or failed).
    ///
    /// # Errors
    ///
    /// [`StoreError`]: nothing of the write was kept.
    pub async fn committed(self) -> Result<T, StoreError> {
        match self.0 {
            Inner::Ready(r) => r,
            Inner::Waiting(rx) => unbox(rx.await),
        }
    }
}

/// A store's answer to a submitted write, as the write's own type.
fn unbox<T: 'static>(answer: Result<Committed, tokio::sync::oneshot::error::RecvError>) -> Result<T, StoreError> {
    let out = answer.map_err(|_| StoreError::stopped())??;
    Ok(*out.downcast::<T>().expect("store op returns its own type"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A queue of work: a pipeline's accepted messages, or a sink's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Messages accepted for a tenant's pipeline.
    Messages {
        /// Tenant.
        tenant: String,
        /// Pipeline.
        pipeline: String,
    },
    /// Outputs waiting for a sink.
    Deliveries {
        /// Sink name.
        sink: String,
    },
}

impl Queue {
    /// Its name in leases and logs: `messages/TENANT/PIPELINE` or `deliveries/SINK`.
    pub fn name(&self) -> String {
        match self {
            Queue::Messages { tenant, pipeline } => format!("messages/{tenant}/{pipeline}"),
            Queue::Deliveries { sink } => format!("deliveries/{sink}"),
        }
    }
}

/// Part `index` of `of` of a queue: the items whose ordering-key hash
/// modulo `of` is `index`. Every item of one ordering key is in one
/// partition, so one worker sees a key's items in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The queue.
    pub queue: Queue,
    /// Which part.
    pub index: u32,
    /// Of how many (every holder of the queue must use the same count).
    pub of: u32,
}

impl Partition {
    /// Whether an item with ordering-key hash `hash` belongs to it.
    pub fn holds(&self, hash: u32) -> bool {
        hash % self.of.max(1) == self.index
    }
}

/// The right to claim and ack a partition's work until `until_ms`. Taking
/// a partition another holder had (its lease expired) raises the token, so
/// the earlier holder's acks are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What it covers.
    pub partition: Partition,
    /// Who holds it (a host's node name).
    pub holder: String,
    /// Fencing token: the number of times the partition changed hands.
    pub token: i64,
    /// Valid until (ms since the epoch); renew before.
    pub until_ms: i64,
}

impl Lease {
    /// Whether it should be renewed at `now_ms` (less than half its time left).
    pub fn renew_due(&self, now_ms: i64, ttl_ms: i64) -> bool {
        self.until_ms - now_ms < ttl_ms / 2
    }
}

/// How long a worker's lease lasts; renewed every half of it.
pub const LEASE_TTL_MS: i64 = 30_000;

/// The refusal of a lease or an ack: someone else holds the partition.
pub(crate) fn lease_conflict(partition: &Partition, holder: &str, until_ms: i64) -> StoreError {
    StoreError::Conflict(format!(
        "partition {} of {} of {} is leased to `{holder}` until {}",
        partition.index,
        partition.of,
        partition.queue.name(),
        crate::pipeline::rfc3339(until_ms)
    ))
}

/// A source's position, moved atomically with the messages it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Source name (`TENANT/PIPELINE`).
    pub source: String,
    /// The position the source plugin returned.
    pub position: String,
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
    /// Its correlation id when the sender gave one (none: the message's
    /// own id is its correlation, and nothing more is stored for it).
    pub correlation: Option<String>,
    /// An execution status: the loops it closes (same tenant; the open
    /// order whose reference is `order_ref`, or, when none is, the open
    /// orders of its correlation).
    pub answers: Option<LoopAnswer>,
    /// The message as JSON.
    pub json: String,
    /// The message itself, handed to this process's workers in memory once
    /// accepted (not stored: `json` is its record).
    pub message: Option<std::sync::Arc<syncline_model::Message>>,
}

/// What an execution status answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopAnswer {
    /// The status's correlation id.
    pub correlation: String,
    /// The order it is about.
    pub order_ref: String,
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
    /// The message itself when it was handed over in memory (an announced
    /// message); `None` when read from the store (parse `json`).
    pub message: Option<std::sync::Arc<syncline_model::Message>>,
}

impl Pending {
    /// Message `seq` as an append just accepted it.
    pub fn accepted(seq: i64, m: &NewMessage) -> Pending {
        Pending { seq, id: m.id.clone(), json: m.json.clone(), key_hash: m.key_hash, attempts: 0, errors: Vec::new(), message: m.message.clone() }
    }
}

/// A message an append accepted, as the store announces it (see
/// [`QueueWatcher`]).
#[derive(Debug, Clone)]
pub struct Appended {
    /// Its tenant.
    pub tenant: String,
    /// Its pipeline.
    pub pipeline: String,
    /// The message as a claim would give it (new: no attempts yet).
    pub pending: Pending,
}

/// Claimed work due now, and when the next waiting item is.
#[derive(Debug, Clone)]
pub struct Due<T> {
    /// Due items in queue order; none of them has an earlier item of its
    /// ordering key still waiting for a retry.
    pub rows: Vec<T>,
    /// When the earliest item waiting for a retry becomes due.
    pub next_at: Option<i64>,
}

impl<T> Default for Due<T> {
    fn default() -> Self {
        Due { rows: Vec::new(), next_at: None }
    }
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
    /// Its name in the store and the trace.
    pub fn as_str(&self) -> &'static str {
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
    /// Ordering key within the commit's tenant and pipeline (their
    /// deliveries with the same key go in order; another pipeline's or
    /// tenant's equal key is another key).
    pub ordering_key: String,
    /// Service tier.
    pub tier: crate::config::Tier,
    /// An order that must be answered by an execution status: how long
    /// after its delivery (ms).
    pub expect_ms: Option<i64>,
    /// The output message as JSON.
    pub json: String,
    /// The output itself, as the pipeline made it: not stored, handed with
    /// the delivery's announcement to this process's sink workers, so they
    /// need not parse `json` again.
    pub message: Option<std::sync::Arc<syncline_model::Message>>,
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
    /// Its processing record (stages, digests, timings); not kept for a nack.
    pub processing: records::Processing,
    /// Set when the attempt failed retryably: nothing else of it is
    /// recorded, the message waits for its next attempt.
    pub retry: Option<Retry>,
    /// Outputs to queue.
    pub deliveries: Vec<NewDelivery>,
    /// Dead letters.
    pub dead_letters: Vec<NewDeadLetter>,
    /// Exceptions.
    pub exceptions: Vec<NewException>,
    /// Approved planning records for the pipeline's baseline.
    pub baseline: Vec<NewBaseline>,
}

/// An approved planning record (forecast or recommendation) for a
/// pipeline's baseline: the latest per kind, item and location is kept.
#[derive(Debug, Clone)]
pub struct NewBaseline {
    /// Record kind (`forecast`, `replenishment-recommendation`).
    pub kind: String,
    /// Item.
    pub item: String,
    /// Location.
    pub location: String,
    /// The message's id.
    pub message_id: String,
    /// The message as JSON.
    pub json: String,
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
    /// Audit entries recorded in the same commit (the decisions plugins
    /// stated about these messages), so none is kept for a batch that is not
    /// and none lost for one that is.
    pub audit: Vec<records::AuditEntry>,
}

/// What separates tenant, pipeline and key in a [`scoped_key`] (ASCII unit
/// separator, which no sane tenant or pipeline id holds; one that did would
/// only lose the lifting of its key's earlier deliveries, see the SQLite
/// claim).
const SCOPE_SEPARATOR: char = '\u{1f}';

/// A delivery's ordering key within its tenant and pipeline, as claims hand
/// it out: at a sink several pipelines or tenants share, the same item's
/// deliveries of another pipeline neither wait for these nor hold them.
/// Stores keep the three parts in their own columns.
pub fn scoped_key(tenant: &str, pipeline: &str, key: &str) -> String {
    format!("{tenant}{SCOPE_SEPARATOR}{pipeline}{SCOPE_SEPARATOR}{key}")
}

/// The tenant, pipeline and key of a [`scoped_key`].
pub fn unscoped(scoped: &str) -> (&str, &str, &str) {
    let mut parts = scoped.splitn(3, SCOPE_SEPARATOR);
    let mut next = || parts.next().unwrap_or("");
    (next(), next(), next())
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Queue order.
    pub seq: i64,
    /// Output message id.
    pub id: String,
    /// Ordering key scoped to its tenant and pipeline ([`scoped_key`]):
    /// equal only for deliveries that must go in order.
    pub ordering_key: String,
    /// Its own service tier.
    pub tier: crate::config::Tier,
    /// The tier it is served in: its own, or a higher one when a later
    /// delivery of its key has that tier (it goes first, so the later one
    /// is not held behind it in a slower lane).
    pub lane: crate::config::Tier,
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
    /// The message itself when it was handed over in memory (an announced
    /// delivery); `None` when read from the store (parse `json`).
    pub message: Option<std::sync::Arc<syncline_model::Message>>,
}

impl Delivery {
    /// Delivery `seq` as a commit of `tenant`'s `pipeline` just queued it.
    pub fn queued(seq: i64, tenant: &str, pipeline: &str, d: &NewDelivery) -> Delivery {
        Delivery {
            seq,
            id: d.id.clone(),
            ordering_key: scoped_key(tenant, pipeline, &d.ordering_key),
            tier: d.tier,
            lane: d.tier,
            attempts: 0,
            next_at: 0,
            json: d.json.clone(),
            errors: Vec::new(),
            outcome_unknown: false,
            message: d.message.clone(),
        }
    }
}

/// A delivery a commit queued, as the store announces it (see
/// [`QueueWatcher`]).
#[derive(Debug, Clone)]
pub struct Queued {
    /// The sink whose queue it joined.
    pub sink: String,
    /// Hash of its ordering key: which partition of the sink's queue holds it.
    pub key_hash: u32,
    /// The delivery as a claim would give it (new: no attempts yet).
    pub delivery: Delivery,
}

/// Told what joins the queues, so that this process's workers can take
/// their work from memory instead of reading it back: every message an
/// append accepts and every delivery a commit queues, once the commit is
/// durable and in queue order (each is announced only after every one
/// queued before it in its queue); and a pipeline or sink whose queue got
/// pending work another way (a replayed dead letter, a reprocessed
/// exception), which its workers must read from the store. Called on the
/// committing thread: it must only hand over, never wait or call the
/// store.
pub trait QueueWatcher: Send + Sync {
    /// Messages just accepted, in queue order.
    fn appended(&self, rows: Vec<Appended>);
    /// Pipeline `pipeline` of `tenant` has accepted messages that were not
    /// announced.
    fn reopened(&self, tenant: &str, pipeline: &str);
    /// Deliveries just queued, in queue order.
    fn queued(&self, rows: Vec<Queued>);
    /// Sink `sink` has pending deliveries that were not announced.
    fn requeued(&self, sink: &str);
}

/// Every pending item of a partition at one moment — messages of a
/// pipeline shard ([`Pending`]) or deliveries of a sink worker
/// ([`Delivery`]) — when there are few enough and none waits for a retry:
/// what a worker that then follows the announcements ([`QueueWatcher`])
/// holds in memory.
#[derive(Debug, Clone)]
pub struct Snapshot<T> {
    /// The pending items, in queue order (a delivery's `lane` is its own tier).
    pub rows: Vec<T>,
    /// The highest seq of the queue in the store at that moment: any item
    /// announced with a higher one was queued after it.
    pub high: i64,
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

/// How many messages and deliveries are in each state, for readiness and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// Accepted messages by state (`accepted`, `done`, `dead`, `exception`, `dropped`).
    pub messages: std::collections::BTreeMap<String, i64>,
    /// Deliveries by state (`pending`, `delivered`, `dead`).
    pub deliveries: std::collections::BTreeMap<String, i64>,
    /// Dead letters kept.
    pub dead_letters: i64,
    /// Exceptions kept.
    pub exceptions: i64,
}

/// Work waiting, per queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Accepted messages not yet processed, per (tenant, pipeline).
    pub messages: Vec<((String, String), i64)>,
    /// Deliveries not yet delivered, per sink.
    pub deliveries: Vec<(String, i64)>,
    /// When the oldest of them was queued (ms), per sink.
    pub oldest_delivery: Vec<(String, i64)>,
    /// Open exceptions per queue: how many, and when the oldest was parked (ms).
    pub exceptions: Vec<(String, i64, i64)>,
    /// Pending deliveries per sink and tier: how many, and when the oldest
    /// was queued (ms).
    pub lanes: Vec<(String, crate::config::Tier, i64, i64)>,
    /// Loops waiting for an execution status, per (tenant, state `open` or
    /// `overdue`): how many.
    pub loops: Vec<((String, String), i64)>,
    /// Dead letters kept (not yet replayed or purged), per tenant: how
    /// many, and when the oldest was written (ms).
    pub dead_letters: Vec<(String, i64, i64)>,
}

/// One plugin-state entry: (tenant, plugin, key) and its value.
pub type StateEntry = ((String, String, String), Vec<u8>);

/// The embedded or clustered store.
pub trait Store: Send + Sync {
    /// Appends messages to their pipelines' queues (deduplicating on tenant
    /// + idempotency key) and moves a source's cursor, atomically. Returns
    /// at once; the result says when it is durable.
    fn append(&self, messages: Vec<NewMessage>, cursor: Option<Cursor>) -> Submitted<Vec<IngestOutcome>>;

    /// Takes or renews the lease of `partition` for `holder` until
    /// `now_ms + ttl_ms`. A lease held by another holder and not expired
    /// is refused; taking over an expired one raises the token.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another holder has it.
    fn lease(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError>;

    /// Gives a lease up, so another holder may take the partition at once.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The accepted, unprocessed messages of a leased pipeline partition
    /// after `after_seq`, in order: up to `limit` that are due at `now_ms`,
    /// leaving out any whose ordering key has an earlier message waiting
    /// for a retry (a retry never lets a later message of its key overtake
    /// it), and when the next waiting one becomes due.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn claim(&self, lease: &Lease, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due<Pending>, StoreError>;

    /// Acks processed messages, all in one transaction: each is settled
    /// (marked with its end state, its outputs appended to their sinks'
    /// queues, its dead letters and exceptions kept) or nacked (its
    /// [`Processed::retry`]: claimed again after the next-attempt time).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the lease was taken over, or another
    /// [`StoreError`]: nothing was recorded; the messages stay claimable.
    fn ack(&self, lease: &Lease, commit: Commit) -> Result<(), StoreError>;

    /// The due deliveries of a leased sink partition, by lane — critical,
    /// standard, bulk — and in queue order within each: up to `limit` per
    /// lane, each the first pending delivery of its ordering key. A key
    /// whose later delivery has a higher tier is served in that tier's lane
    /// (its first delivery goes first, so order per key holds and the later
    /// one is not held in a slower lane); a key whose first delivery waits
    /// for a retry is left out. Also says when the next waiting one is due.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn claim_deliveries(&self, lease: &Lease, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError>;

    /// Acks delivery attempts: delivered, nacked with a next-attempt time,
    /// or dead-lettered.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the lease was taken over, or another
    /// [`StoreError`]: nothing was recorded; the deliveries stay pending.
    fn ack_deliveries(&self, lease: &Lease, attempts: Vec<Attempt>) -> Result<(), StoreError>;

    /// Every pending delivery of a leased sink partition, in queue order,
    /// read at one moment — `None` when there are more than `max` or one
    /// of them waits past `now_ms` for a retry (then claim instead).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn snapshot_deliveries(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Delivery>>, StoreError>;

    /// Every accepted message of a leased pipeline shard, in queue order,
    /// read at one moment — `None` when there are more than `max` or one
    /// of them waits past `now_ms` for a retry (then claim instead).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn snapshot_messages(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Pending>>, StoreError>;

    /// Tells `watcher` of messages accepted and deliveries queued from now
    /// on (replacing any watcher set before).
    fn watch(&self, watcher: std::sync::Arc<dyn QueueWatcher>);

    /// A source's cursor.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn cursor(&self, source: &str) -> Result<Option<String>, StoreError>;

    /// Appends an audit event (the log is append-only: nothing changes or
    /// removes one).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn audit(&self, entry: &records::AuditEntry) -> Result<(), StoreError>;

    /// Audit events matching `filter`, oldest first, after id `after` (at
    /// most `limit`).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn audit_events(&self, filter: &records::AuditFilter, after: i64, limit: usize) -> Result<Vec<records::AuditRecord>, StoreError>;

    /// The accepted messages of correlation `correlation` (those whose
    /// correlation id or own id it is) within `scope` (none: every
    /// tenant), oldest first, at most `limit`: their ids.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn correlated(&self, correlation: &str, scope: &Option<Vec<String>>, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Closed-loop records matching `filter` with numbers above `after`,
    /// oldest first, at most `limit`. A loop opens when an order whose
    /// delivery expects a status is delivered (in the same commit), and
    /// closes when a status answering it is accepted (in that commit).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn loops(&self, filter: &records::LoopFilter, after: i64, limit: usize) -> Result<Vec<records::LoopRecord>, StoreError>;

    /// Parks `exception` for open loop `id` and marks it overdue, in one
    /// write; the exception's number, or none when the loop was not open
    /// any more (a status came meanwhile).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn loop_overdue(&self, id: i64, exception: NewException) -> Result<Option<i64>, StoreError>;

    /// Dead letters matching `filter` with numbers above `after`, oldest
    /// first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn dead_letters(&self, filter: &records::DeadLetterFilter, after: i64, limit: usize) -> Result<Vec<records::DeadLetterRecord>, StoreError>;

    /// Dead letter `id` and the message as it died (its JSON form).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn dead_letter(&self, id: i64) -> Result<Option<(records::DeadLetterRecord, serde_json::Value)>, StoreError>;

    /// Puts an open dead letter's message back to work and marks it
    /// `replayed`: an output that died at a sink is queued again for it
    /// (same id, same idempotency key, attempts counted afresh); a message
    /// that died in a stage or routing is processed again from its first
    /// stage through the current plugins (with every other open stage dead
    /// letter of it, which the new run replaces). `None` when there is no
    /// such dead letter.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when it is not open or its message is no
    /// longer in the store; other [`StoreError`]s.
    fn replay_dead_letter(&self, id: i64) -> Result<Option<records::Replayed>, StoreError>;

    /// Marks an open dead letter `purged` with `reason`: it leaves the open
    /// list for good. `None` when there is no such dead letter.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when it is not open; other [`StoreError`]s.
    fn purge_dead_letter(&self, id: i64, reason: &str) -> Result<Option<records::DeadLetterRecord>, StoreError>;

    /// Exceptions matching `filter` with numbers above `after`, oldest
    /// first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn exceptions(&self, filter: &records::ExceptionFilter, after: i64, limit: usize) -> Result<Vec<records::ExceptionRecord>, StoreError>;

    /// Exception `id` and the parked message (its JSON form).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn exception(&self, id: i64) -> Result<Option<(records::ExceptionRecord, serde_json::Value)>, StoreError>;

    /// Settles an open exception; a retry also puts the message it came
    /// from back to work, from its first stage (as a dead letter's replay
    /// does). `None` when there is no such exception.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when it is not open, or (a retry) its
    /// message is no longer in the store or already at work.
    fn settle_exception(&self, id: i64, how: &records::Settle) -> Result<Option<records::ExceptionRecord>, StoreError>;

    /// Marks open exception `id` reported past its queue's SLA at `at`.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn mark_exception_overdue(&self, id: i64, at: i64) -> Result<(), StoreError>;

    /// The baseline pipeline `pipeline` of `tenant` keeps: the latest
    /// approved record per kind, item and location.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn baselines(&self, tenant: &str, pipeline: &str) -> Result<Vec<records::BaselineRecord>, StoreError>;

    /// When the baseline of `pipeline` of `tenant` last changed (ms), if it
    /// holds anything.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn baseline_updated(&self, tenant: &str, pipeline: &str) -> Result<Option<i64>, StoreError>;

    /// Parks an exception that is about a pipeline rather than a message
    /// (e.g. its planning feed went stale); its message id names what it is about.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn park(&self, tenant: &str, pipeline: &str, exception: NewException) -> Result<(), StoreError>;

    /// The sinks paused by an operator.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn sink_pauses(&self) -> Result<std::collections::BTreeMap<String, records::SinkPause>, StoreError>;

    /// Pauses sink `sink` (`Some`) or resumes it (`None`), durably.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn set_sink_pause(&self, sink: &str, pause: Option<&records::SinkPause>) -> Result<(), StoreError>;

    /// Everything known about message `id` (as input or as output).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn trace(&self, id: &str) -> Result<Option<records::Trace>, StoreError>;

    /// Every plugin-state entry (loaded once at start).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn state(&self) -> Result<Vec<StateEntry>, StoreError>;

    /// Sets (or with `None` removes) plugin-state entries of a tenant and
    /// plugin, all in one write. Returns at once; the write is durable no
    /// later than any write submitted after it (so a message's outcome is
    /// never kept without the state its processing wrote).
    fn put_state(&self, tenant: &str, plugin: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Submitted<()>;

    /// Approves a plugin version (again: the new record replaces the old).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn approve_plugin(&self, approval: &records::Approval) -> Result<(), StoreError>;

    /// Withdraws a plugin version's approval; whether there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn revoke_plugin_approval(&self, plugin: &str, digest: &str) -> Result<bool, StoreError>;

    /// Every approved plugin version, by plugin then time.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn plugin_approvals(&self) -> Result<Vec<records::Approval>, StoreError>;

    /// Keeps the bytes of a plugin version under its digest (once).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn archive(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// The bytes of an archived plugin version.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn archived(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

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

    /// Work waiting per queue.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn backlog(&self) -> Result<Backlog, StoreError>;

    /// Messages and deliveries by state.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn counts(&self) -> Result<Counts, StoreError>;

    /// Takes or renews the right to poll source `source` (`TENANT/PIPELINE`)
    /// for `holder` until `now_ms + ttl_ms`; whether it is `holder`'s. A
    /// store only one process uses gives it always.
    ///
    /// # Errors
    ///
    /// The store's failure.
    fn lease_source(&self, _source: &str, _holder: &str, _now_ms: i64, _ttl_ms: i64) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// The processes sharing the store and what each holds; `None` for a
    /// store only one process uses (the embedded one).
    ///
    /// # Errors
    ///
    /// The store's failure.
    fn cluster(&self) -> Result<Option<Vec<records::ClusterMember>>, StoreError> {
        Ok(None)
    }

    /// The most bytes the store keeps in one record (an accepted message,
    /// an output, a dead letter); `None` when it has no limit of its own.
    /// A pipeline dead-letters a message whose outputs would not fit
    /// rather than commit what the store would refuse.
    fn record_limit(&self) -> Option<usize> {
        None
    }

    /// Tells every other process sharing the store to carry out `b` too,
    /// and keeps a rollback for processes started later ([`Store::rollbacks`]).
    /// A store only one process uses has nobody to tell: `Ok(false)`.
    ///
    /// # Errors
    ///
    /// The store's failure (nobody was told).
    fn broadcast(&self, _b: &records::Broadcast) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The rollbacks made through [`Store::broadcast`] that a process
    /// starting now makes before it loads its plugins (each holds while its
    /// plugin's file is the one it names): none for a store that keeps
    /// none.
    ///
    /// # Errors
    ///
    /// The store's failure.
    fn rollbacks(&self) -> Result<Vec<records::Broadcast>, StoreError> {
        Ok(Vec::new())
    }

    /// Forgets the kept rollback of `plugin` made while its file was
    /// `file_digest`: another file was deployed, which ends it (a rollback
    /// made since is kept).
    ///
    /// # Errors
    ///
    /// The store's failure.
    fn end_rollback(&self, _plugin: &str, _file_digest: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// What other processes broadcast to `holder` from now on, and the
    /// rollbacks they broadcast before that are still in force; `None`
    /// for a store only one process uses.
    fn broadcasts(&self, _holder: &str) -> Option<std::sync::mpsc::Receiver<records::Broadcast>> {
        None
    }
}

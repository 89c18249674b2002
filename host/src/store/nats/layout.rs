//! The streams and key-value buckets the NATS store keeps its data in:
//! created on start when missing, brought to the config's settings
//! (replicas, how long finished work is kept, the dedupe window) when they
//! differ, and refused when a stream of one of these names exists with
//! other subjects (another application's).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::{refused, unavailable, Connection};
use crate::store::StoreError;

/// The NATS store's settings (`[store]` with `kind = "nats"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The server, e.g. `nats://127.0.0.1:4222`, or a cluster's servers
    /// separated by commas.
    pub url: String,
    /// Copies of every stream and bucket in the cluster (1, 3 or 5).
    pub replicas: usize,
    /// How long queued work and commit logs are kept (`retention`).
    pub retention: Duration,
    /// How long an idempotency key is remembered (`dedupe-window`).
    pub dedupe_window: Duration,
    /// How long connecting may take before the store is unavailable.
    pub connect_timeout: Duration,
}

/// How long the server itself drops a repeated publish (a retried publish
/// whose answer was lost); longer windows are the idempotency bucket's.
const PUBLISH_DEDUPE: Duration = Duration::from_secs(120);

/// The streams: name, subjects, whether `retention` applies.
const STREAMS: &[(&str, &str, bool)] = &[
    ("SYNCLINE_MESSAGES", "syncline.messages.>", true),
    ("SYNCLINE_DELIVERIES", "syncline.deliveries.>", true),
    ("SYNCLINE_COMMITS", "syncline.commits.>", true),
    // What happened to each message, and the correlation index.
    ("SYNCLINE_TRACES", "syncline.trace.>", true),
    // Kept until purged by an operator, like SQLite's audit table.
    ("SYNCLINE_AUDIT", "syncline.audit.>", false),
];

/// When a bucket's entries expire.
#[derive(Clone, Copy)]
enum Expiry {
    Never,
    /// After the dedupe window (idempotency keys).
    Dedupe,
    /// After the retention (what is about stored messages).
    Retention,
}

/// The key-value buckets.
const BUCKETS: &[(&str, Expiry)] = &[
    ("syncline-leases", Expiry::Never),
    ("syncline-idempotency", Expiry::Dedupe),
    // Which batches of more than one message were wholly published.
    ("syncline-batches", Expiry::Retention),
    ("syncline-cursors", Expiry::Never),
    ("syncline-state", Expiry::Never),
    ("syncline-control", Expiry::Never),
    ("syncline-baselines", Expiry::Never),
    ("syncline-archive", Expiry::Never),
    ("syncline-dead-letters", Expiry::Never),
    ("syncline-exceptions", Expiry::Never),
    ("syncline-loops", Expiry::Never),
    // Each slot's state as its commit log had it at some entry.
    ("syncline-checkpoints", Expiry::Never),
];

/// The store's streams and buckets, as found or made on start.
pub struct Layout {
    /// Slot leases.
    pub leases: kv::Store,
    /// Each tenant's idempotency keys.
    pub idempotency: kv::Store,
    /// Committed batches.
    pub batches: kv::Store,
    /// Sources' cursors.
    pub cursors: kv::Store,
    /// Plugins' state.
    pub state: kv::Store,
    /// Sink pauses, plugin approvals, members and commands to every process.
    pub control: kv::Store,
    /// The plugin archive.
    pub archive: kv::Store,
    /// Pipelines' baselines.
    pub baselines: kv::Store,
    /// Streams and buckets created by this start.
    pub created: Vec<String>,
    /// Streams and buckets whose settings this start changed.
    pub updated: Vec<String>,
}

fn stream_config(name: &str, subjects: &str, retention: Option<Duration>, settings: &Settings) -> stream::Config {
    let max_age = retention.unwrap_or_default();
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        max_age,
        duplicate_window: match retention {
            Some(r) => PUBLISH_DEDUPE.min(r),
            None => PUBLISH_DEDUPE,
        },
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        // Queues and traces are read by direct gets.
        allow_direct: true,
        ..Default::default()
    }
}

/// A bucket's stream as the key-value convention lays it out (what
/// `create_key_value` would make, which cannot run against nats-server 2.9).
fn bucket_config(bucket: &str, expiry: Expiry, settings: &Settings) -> stream::Config {
    let max_age = match expiry {
        Expiry::Never => Duration::ZERO,
        Expiry::Dedupe => settings.dedupe_window,
        Expiry::Retention => settings.retention,
    };
    let expires = max_age > Duration::ZERO;
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        duplicate_window: if expires { PUBLISH_DEDUPE.min(max_age) } else { PUBLISH_DEDUPE },
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Whether `found` differs from `wanted` in what [`Layout::ensure`] sets
/// (the server says -1 where a config left a limit out).
fn differs(found: &stream::Config, wanted: &stream::Config) -> bool {
    let per_subject = |n: i64| if n <= 0 { -1 } else { n };
    found.max_age != wanted.max_age
        || found.duplicate_window != wanted.duplicate_window
        || found.num_replicas.max(1) != wanted.num_replicas.max(1)
        || per_subject(found.max_messages_per_subject) != per_subject(wanted.max_messages_per_subject)
        || found.allow_direct != wanted.allow_direct
}

/// A stream that could not be made or changed: unavailable while the
/// server (or its cluster, electing leaders) cannot say, refused otherwise
/// (e.g. more replicas than the cluster has servers).
fn made_or_changed(what: &str, e: jetstream::context::CreateStreamError) -> StoreError {
    use jetstream::context::CreateStreamErrorKind as Kind;
    match e.kind() {
        Kind::TimedOut | Kind::JetStreamUnavailable => unavailable(what, e),
        Kind::JetStream(j) if j.error_code() == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE => unavailable(what, e),
        _ => refused(what, e),
    }
}

/// Makes `wanted` exist as it says; `Some(true)` created, `Some(false)`
/// updated, `None` already so.
async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config, url: &str) -> Result<Option<bool>, StoreError> {
    let what = format!("stream `{}` on {url}", wanted.name);
    use jetstream::context::GetStreamErrorKind as Kind;
    let found = match js.get_stream(&wanted.name).await {
        Ok(mut s) => Some(s.info().await.map_err(|e| unavailable(&what, e))?.config.clone()),
        Err(e) => match e.kind() {
            Kind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => None,
            Kind::JetStream(j) if j.error_code() == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE => return Err(unavailable(&what, e)),
            Kind::Request => return Err(unavailable(&what, e)),
            _ => return Err(refused(&what, e)),
        },
    };
    match found {
        None => {
            js.create_stream(wanted).await.map_err(|e| made_or_changed(&format!("creating {what}"), e))?;
            Ok(Some(true))
        }
        Some(found) if found.subjects != wanted.subjects => Err(StoreError::Conflict(format!(
            "{what} takes subjects {:?}, not {:?}: is another application using that name?",
            found.subjects, wanted.subjects
        ))),
        Some(found) if differs(&found, &wanted) => {
            js.update_stream(wanted).await.map_err(|e| made_or_changed(&format!("updating {what}"), e))?;
            Ok(Some(false))
        }
        Some(_) => Ok(None),
    }
}

impl Layout {
    /// Finds or makes every stream and bucket of the store on `conn`'s
    /// server, with `settings`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a stream of one of the store's names
    /// takes other subjects; [`StoreError::Unavailable`] when the server
    /// does not answer; [`StoreError::Other`] when it refuses (e.g. more
    /// replicas than the cluster has servers).
    pub fn ensure(conn: &Connection, settings: &Settings) -> Result<Layout, StoreError> {
        let js = conn.jetstream();
        let url = conn.url().to_string();
        let settings = settings.clone();
        conn.run(async move {
            let mut created = Vec::new();
            let mut updated = Vec::new();
            let mut wanted: Vec<stream::Config> =
                STREAMS.iter().map(|(name, subjects, kept)| stream_config(name, subjects, kept.then_some(settings.retention), &settings)).collect();
            wanted.extend(BUCKETS.iter().map(|(bucket, expiry)| bucket_config(bucket, *expiry, &settings)));
            for config in wanted {
                let name = config.name.clone();
                match ensure_stream(&js, config, &url).await? {
                    Some(true) => created.push(name),
                    Some(false) => updated.push(name),
                    None => {}
                }
            }
            let open = |bucket: &'static str| {
                let js = js.clone();
                async move { js.get_key_value(bucket).await.map_err(|e| unavailable(&format!("opening bucket `{bucket}`"), e)) }
            };
            Ok(Layout {
                leases: open("syncline-leases").await?,
                idempotency: open("syncline-idempotency").await?,
                batches: open("syncline-batches").await?,
                cursors: open("syncline-cursors").await?,
                state: open("syncline-state").await?,
                control: open("syncline-control").await?,
                archive: open("syncline-archive").await?,
                baselines: open("syncline-baselines").await?,
                created,
                updated,
            })
        })
    }
}

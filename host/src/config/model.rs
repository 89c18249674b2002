//! The config file's shape (what TOML may say) and the checked config the
//! rest of the host runs from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::values::{Name, Size, Span, Window};
use crate::runtime::{Limits, World};

// ---------------------------------------------------------------- file shape

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    /// Config format version. Example: `version = 1`
    pub version: Spanned<u32>,
    /// HTTP server. Example: `[server] listen = "127.0.0.1:8080"`
    #[serde(default)]
    pub server: Server,
    /// Durable store. Example: `[store] path = "data/syncline.db"`
    #[serde(default)]
    pub store: Store,
    /// Plugin folder. Example: `[plugins] dir = "plugins"`
    #[serde(default)]
    pub plugins: PluginsFile,
    /// Tenants. Example: `[[tenant]] id = "acme"`
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantFile>,
    /// Pipelines. Example: `[[pipeline]] id = "forecast-release"`
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineFile>,
    /// Sinks by name. Example: `[sink.erp] plugin = "http-sink"`
    #[serde(default, rename = "sink")]
    pub sinks: BTreeMap<String, SinkFile>,
    /// Service tiers: weights, retry policies, alert thresholds. Example:
    /// `[tier.critical] weight = 8, alert-after = "5m"`
    #[serde(default, rename = "tier")]
    pub tiers: BTreeMap<String, Spanned<TierFile>>,
    /// Exception queues by name, with their owners. Example:
    /// `[exception-queue.master-data] owner = "Master data team"`
    #[serde(default, rename = "exception-queue")]
    pub exception_queues: BTreeMap<String, Spanned<ExceptionQueueFile>>,
    /// API tokens. Example: `[[token]] id = "acme-erp", hash = "sha256:…",
    /// tenants = ["acme"], roles = ["publisher"]`
    #[serde(default, rename = "token")]
    pub tokens: Vec<super::access::TokenFile>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Server {
    /// Address to listen on. Example: `listen = "127.0.0.1:8080"`
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body. Example: `max-body = "1MiB"`
    #[serde(default = "default_max_body")]
    pub max_body: Size,
    /// Time a client has to send a whole request head (at connect and
    /// between keep-alive requests) before it is disconnected.
    /// Example: `header-read-timeout = "10s"`
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Span,
    /// Time a client has to send a whole request body once its head is in;
    /// past it the request is answered 408 and nothing is accepted.
    /// Example: `body-read-timeout = "30s"`
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: Span,
}

fn default_body_read_timeout() -> Span {
    Span(Duration::from_secs(30))
}

fn default_header_read_timeout() -> Span {
    Span(Duration::from_secs(10))
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_body() -> Size {
    Size(1 << 20)
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            max_body: default_max_body(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
        }
    }
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sync {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// WAL without fsync per commit: survives a killed process, not power loss.
    Normal,
}

/// Which store engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// Embedded SQLite (WAL, group commit).
    #[default]
    Sqlite,
    /// NATS JetStream, shared by several host processes (`url`, `replicas`).
    Nats,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Store {
    /// Engine. Example: `kind = "sqlite"`
    #[serde(default)]
    pub kind: StoreKind,
    /// Database file (relative to the config file). Example: `path = "data/syncline.db"`
    #[serde(default = "default_db")]
    pub path: PathBuf,
    /// Durability of commits. Example: `sync = "full"`
    #[serde(default)]
    pub sync: Sync,
    /// How long an idempotency key is remembered. Example: `dedupe-window = "7d"`
    #[serde(default = "default_window")]
    pub dedupe_window: Span,
    /// Largest size of the database; past it ingest answers 503 and nothing
    /// is lost, as on a full disk. Example: `max-size = "20GiB"`
    #[serde(default)]
    pub max_size: Option<Size>,
    /// How long finished work (delivered messages, their traces and
    /// attempts) is kept; dead letters and exceptions stay until resolved.
    /// Example: `retention = "7d"`
    #[serde(default = "default_retention")]
    pub retention: Span,
    /// The NATS server (`kind = "nats"`), or a cluster's servers separated
    /// by commas. Example: `url = "nats://10.0.0.5:4222,nats://10.0.0.6:4222"`
    #[serde(default)]
    pub url: Option<String>,
    /// Copies of every stream and bucket in the NATS cluster: 1, 3 or 5.
    /// Example: `replicas = 3`
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

fn default_replicas() -> usize {
    1
}

fn default_retention() -> Span {
    Span(Duration::from_secs(7 * 86400))
}

fn default_db() -> PathBuf {
    "data/syncline.db".into()
}

fn default_window() -> Span {
    Span(Duration::from_secs(7 * 86400))
}

impl Default for Store {
    fn default() -> Self {
        Store {
            kind: StoreKind::Sqlite,
            path: default_db(),
            sync: Sync::Full,
            dedupe_window: default_window(),
            max_size: None,
            retention: default_retention(),
            url: None,
            replicas: default_replicas(),
        }
    }
}

/// `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginsFile {
    /// Folder with `shared/` and one folder per tenant. Example: `dir = "plugins"`
    #[serde(default = "default_plugins")]
    pub dir: PathBuf,
    /// Compiled-plugin cache. Example: `cache-dir = ".cache"`
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// `open` (default): any plugin file in the folder runs; `approved`:
    /// only versions approved with `syncline plugin approve` go live.
    /// Example: `mode = "approved"`
    #[serde(default)]
    pub mode: PluginMode,
}

/// Which plugin versions may go live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PluginMode {
    /// Any file in the plugin folder.
    #[default]
    Open,
    /// Only approved digests (an audited allow-list in the store).
    Approved,
}

fn default_plugins() -> PathBuf {
    "plugins".into()
}

impl Default for PluginsFile {
    fn default() -> Self {
        PluginsFile { dir: default_plugins(), cache_dir: None, mode: PluginMode::Open }
    }
}

/// `[[tenant]]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TenantFile {
    /// Tenant id. Example: `id = "acme"`
    pub id: Spanned<Name>,
    /// The tenant's ingest quota. Example: `ingest = { requests = "50/s", messages = "5000/s" }`
    #[serde(default)]
    pub ingest: Option<Spanned<super::access::IngestQuotaFile>>,
}

/// Per-plugin limits. Example: `limits = { timeout = "2s", memory = "64MiB", instances = 4 }`
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitsFile {
    /// Wall time per call, whatever the plugin does (its own code or a
    /// wait in a host call).
    pub timeout: Option<Span>,
    /// Linear memory per instance (at most 1 GiB).
    pub memory: Option<Size>,
    /// Bytes a call may return. Example: `output = "16MiB"`
    pub output: Option<Size>,
    /// Instances at once.
    pub instances: Option<usize>,
    /// A fresh instance for every call (nothing one call leaves in the
    /// plugin's memory reaches the next). Example: `fresh-instance = true`
    pub fresh_instance: Option<bool>,
}

// The plugin settings (`config`, `tables`, `allowed-hosts`, `limits`) are
// spelled out in each of SourceFile, StageFile and SinkFile rather than
// flattened from one struct: serde cannot combine `flatten` with
// `deny_unknown_fields`, and unknown keys must stay errors.

/// A pipeline's source. Example: `source = { http = true }` or
/// `source = { plugin = "erp-poll", every = "15m" }`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceFile {
    /// Accept messages over HTTP ingest.
    pub http: Option<bool>,
    /// Poll this source plugin.
    pub plugin: Option<Spanned<String>>,
    /// Poll interval.
    pub every: Option<Span>,
    /// Plugin config.
    pub config: Option<Spanned<toml::Table>>,
    /// Reference tables: name -> CSV path.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach (`host:port`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits.
    pub limits: Option<Spanned<LimitsFile>>,
}

/// A stage. Example: `{ validate = "canonical-validator", on-violation = "exception:master-data" }`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StageFile {
    /// Transformer plugin.
    pub transform: Option<Spanned<String>>,
    /// Validator plugin.
    pub validate: Option<Spanned<String>>,
    /// Allocator plugin.
    pub allocate: Option<Spanned<String>>,
    /// What a validation failure does.
    pub on_violation: Option<Spanned<String>>,
    /// Allocate batching. Example: `batch = { max = 500, window = "2s" }`
    pub batch: Option<BatchPolicy>,
    /// Run exactly this plugin version. Example: `pin = "sha256:5e42..."`
    pub pin: Option<Spanned<String>>,
    /// Plugin config.
    pub config: Option<Spanned<toml::Table>>,
    /// Reference tables: name -> CSV path.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits.
    pub limits: Option<Spanned<LimitsFile>>,
}

/// One or several sink names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    /// `to = "erp"`
    One(String),
    /// `to = ["erp", "archive"]`
    Many(Vec<String>),
}

impl Targets {
    /// Every target.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Targets::One(t) => vec![t.as_str()],
            Targets::Many(ts) => ts.iter().map(String::as_str).collect(),
        }
    }
}

/// A route. Example: `{ when = { "body.location" = ["DC-1", "DC-2"] }, to = "erp-cloud" }`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RouteFile {
    /// Condition; none makes the default route.
    pub when: Option<Spanned<toml::Table>>,
    /// Sink(s).
    pub to: Spanned<Targets>,
}

/// `ordering-key` as written: a list of field paths, a table with field
/// paths and raw-payload pointers, or a word (`"none"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OrderingKeyFile {
    /// `["body.item", "body.location"]`.
    Fields(Vec<String>),
    /// `{ fields = [...], raw = ["/sku", "/site"] }`.
    Table(OrderingKeyTable),
    /// `"none"`.
    Word(String),
}

/// The table form of `ordering-key`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OrderingKeyTable {
    /// Field paths of canonical messages (default `["body.item", "body.location"]`).
    pub fields: Option<Vec<String>>,
    /// JSON pointers into a raw JSON payload. Example: `raw = ["/sku", "/site"]`
    #[serde(default)]
    pub raw: Vec<String>,
}

/// What orders a pipeline's messages: messages with equal keys are
/// processed and delivered in the order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderingKey {
    /// No order to keep: each message is its own key.
    None,
    /// The values of `fields` (canonical messages); for a raw JSON
    /// payload the values at the `raw` pointers when there are any.
    Keyed {
        /// Field paths.
        fields: Vec<String>,
        /// JSON pointers into raw JSON payloads.
        raw: Vec<String>,
    },
}

impl OrderingKey {
    /// The default: `["body.item", "body.location"]`.
    pub fn default_fields() -> Vec<String> {
        vec!["body.item".into(), "body.location".into()]
    }
}

/// `[[pipeline]]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PipelineFile {
    /// Pipeline id. Example: `id = "forecast-release"`
    pub id: Spanned<Name>,
    /// Owning tenant. Example: `tenant = "acme"`
    pub tenant: Spanned<Name>,
    /// Where messages come from (default: HTTP ingest).
    pub source: Option<SourceFile>,
    /// Service tier of its messages: `critical`, `standard` (default) or
    /// `bulk`. Example: `tier = "critical"`
    pub tier: Option<Spanned<String>>,
    /// Each stage's circuit breaker: a plugin whose calls keep failing as a
    /// whole (trap, time, memory) holds the pipeline's queue instead of
    /// burning CPU (on by default, as for sinks). Example: `breaker = { failures = 5 }`
    pub breaker: Option<Spanned<BreakerFile>>,
    /// What orders messages: field paths (`ordering-key = ["body.item", "body.location"]`),
    /// with JSON pointers for raw JSON payloads (`ordering-key = { fields = [...], raw = ["/sku"] }`),
    /// or `ordering-key = "none"` (no order to keep).
    pub ordering_key: Option<Spanned<OrderingKeyFile>>,
    /// Stages in order.
    #[serde(default)]
    pub stages: Vec<StageFile>,
    /// Routes in order; the first that matches wins.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Attempts for a retryable stage failure before dead-lettering. Example: `max-attempts = 5`
    #[serde(default = "default_stage_attempts")]
    pub max_attempts: u32,
    /// Keep the last approved planning baseline from this pipeline: its
    /// routed forecasts and recommendations, per item and location. Example:
    /// `baseline = { freshness = "6h", exception-queue = "planning" }`
    pub baseline: Option<Spanned<BaselineFile>>,
    /// Take a planning pipeline's baseline when its feed goes stale. Example:
    /// `fallback = { from = "planning-feed", release = "auto" }`
    pub fallback: Option<Spanned<FallbackFile>>,
    /// Close the loop: each purchase requisition or transfer proposal this
    /// pipeline delivers must be answered by an execution status within
    /// `within`, else an exception is parked. Example:
    /// `expect-status = { within = "2d", exception-queue = "open-loops" }`
    pub expect_status: Option<Spanned<ExpectStatusFile>>,
}

/// `expect-status = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExpectStatusFile {
    /// How long after delivery the status may take: a duration, or
    /// `lead-time` (each order's own). Example: `within = "lead-time"`
    pub within: super::values::StatusWindow,
    /// The shortest window `lead-time` gives (default `1d`): an order due
    /// the day it is placed, or whose dates do not read, still gets this.
    pub at_least: Option<Span>,
    /// Where a missing status is reported (default `open-loops`).
    pub exception_queue: Option<String>,
}

/// A pipeline's closed loop: execution statuses expected for its orders.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectStatus {
    /// How long after delivery the status may take.
    pub within: super::values::StatusWindow,
    /// The shortest `lead-time` window.
    pub at_least: Duration,
    /// Where a missing status is reported.
    pub queue: String,
}

/// `baseline = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BaselineFile {
    /// The feed is stale once its last approved message is older than this.
    pub freshness: Span,
    /// Where the stale feed is reported (default `planning-feed`).
    pub exception_queue: Option<String>,
}

/// `fallback = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FallbackFile {
    /// The planning pipeline (same tenant) whose baseline to take.
    pub from: String,
    /// `auto` (default): released when the feed goes stale; `manual`: by the API only.
    pub release: Option<String>,
}

/// A planning pipeline's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselinePolicy {
    /// The feed is stale once its last approved message is older than this.
    pub freshness: Duration,
    /// Where the stale feed is reported.
    pub queue: String,
}

/// An execution pipeline's fallback to a planning pipeline's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackPolicy {
    /// The planning pipeline.
    pub from: Name,
    /// Released when the feed goes stale (else by the API only).
    pub auto: bool,
}

fn default_stage_attempts() -> u32 {
    5
}

/// Retry policy of a sink. Example: `retry = { attempts = 8, initial = "200ms", max = "30s" }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First backoff.
    #[serde(default = "default_initial")]
    pub initial: Span,
    /// Longest backoff.
    #[serde(default = "default_max")]
    pub max: Span,
}

fn default_attempts() -> u32 {
    8
}
fn default_initial() -> Span {
    Span(Duration::from_millis(200))
}
fn default_max() -> Span {
    Span(Duration::from_secs(30))
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: default_attempts(), initial: default_initial(), max: default_max() }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `n + 1` after `n` failed attempts: exponential
    /// with full jitter, never below half the exponential value.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exp = self.initial.0.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        let capped = exp.min(self.max.0);
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Allocate batching. Example: `batch = { max = 500, window = "2s" }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BatchPolicy {
    /// Most messages per batch.
    #[serde(default = "default_batch_max")]
    pub max: usize,
    /// Longest wait to fill a batch.
    #[serde(default = "default_batch_window")]
    pub window: Span,
}

fn default_batch_max() -> usize {
    500
}
fn default_batch_window() -> Span {
    Span(Duration::from_millis(200))
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy { max: default_batch_max(), window: default_batch_window() }
    }
}

/// `[sink.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SinkFile {
    /// Sink plugin. Example: `plugin = "http-sink"`
    pub plugin: Spanned<String>,
    /// Restrict to one tenant's pipelines (and its plugins). Example: `tenant = "acme"`
    pub tenant: Option<Spanned<Name>>,
    /// Plugin config; `{ env = "VAR" }` values are secrets from the environment.
    pub config: Option<Spanned<toml::Table>>,
    /// Reference tables.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach. Example: `allowed-hosts = ["127.0.0.1:9001"]`
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Messages per deliver call. Example: `batch = 50`
    #[serde(default = "default_sink_batch")]
    pub batch: usize,
    /// Bytes of messages per deliver call (a larger message goes alone).
    /// Example: `batch-bytes = "4MiB"`
    #[serde(default = "default_sink_batch_bytes")]
    pub batch_bytes: Size,
    /// Concurrent delivery workers (each owns a share of the ordering keys,
    /// so a key's order is kept). Example: `workers = 4`
    #[serde(default = "default_sink_workers")]
    pub workers: u32,
    /// The circuit breaker (on by default). Example:
    /// `breaker = { failures = 5, rate = "50%", window = "30s", min-calls = 20, open-for = "5s", max-open-for = "60s" }`;
    /// `breaker = { failures = 0 }` turns it off.
    pub breaker: Option<Spanned<BreakerFile>>,
    /// Most messages delivered per second, minute or hour. Example: `rate-limit = "50/s"`
    pub rate_limit: Option<Spanned<String>>,
    /// Messages that may go at once under `rate-limit` (default: one
    /// second's worth). Example: `burst = 20`
    pub burst: Option<Spanned<u32>>,
    /// When the sink holds its queue, in UTC. Example:
    /// `maintenance = ["Sun 02:00-04:00 UTC", "daily 23:30-00:15 UTC"]`
    #[serde(default)]
    pub maintenance: Vec<Spanned<Window>>,
    /// Limits.
    pub limits: Option<Spanned<LimitsFile>>,
}

/// `[tier.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TierFile {
    /// Share of each delivery call when several tiers wait. Example: `weight = 8`
    pub weight: Option<u32>,
    /// Retry policy of its deliveries at every sink (default: the sink's).
    pub retry: Option<RetryPolicy>,
    /// A delivery of this tier waiting longer raises an alert. Example: `alert-after = "5m"`
    pub alert_after: Option<Span>,
}

/// A service tier: which deliveries a sink serves first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Tier {
    /// First.
    Critical,
    /// Then.
    #[default]
    Standard,
    /// Last, never starved.
    Bulk,
}

impl Tier {
    /// Every tier, first served first.
    pub const ALL: [Tier; 3] = [Tier::Critical, Tier::Standard, Tier::Bulk];

    /// `critical`, `standard` or `bulk`.
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::Standard => "standard",
            Tier::Bulk => "bulk",
        }
    }

    /// Its number in the store: 0 critical, 1 standard, 2 bulk.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tier numbered `i` (standard when out of range).
    pub fn from_index(i: i64) -> Tier {
        Tier::ALL.get(i as usize).copied().unwrap_or_default()
    }

    /// A message's tier: its priority when that says `critical` or `high`
    /// (critical) or `low` (bulk); otherwise its pipeline's.
    pub fn of(priority: syncline_model::Priority, pipeline: Tier) -> Tier {
        use syncline_model::Priority;
        match priority {
            Priority::Critical | Priority::High => Tier::Critical,
            Priority::Low => Tier::Bulk,
            Priority::Normal => pipeline,
        }
    }
}

/// What a tier gets.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicy {
    /// Share of each delivery call when several tiers wait.
    pub weight: u32,
    /// Retry policy of its deliveries (`None`: the sink's).
    pub retry: Option<RetryPolicy>,
    /// A delivery waiting longer raises an alert.
    pub alert_after: Option<Duration>,
}

/// The policies of the three tiers, by [`Tier::index`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tiers(pub [TierPolicy; 3]);

impl Default for Tiers {
    fn default() -> Tiers {
        let policy = |weight| TierPolicy { weight, retry: None, alert_after: None };
        Tiers([policy(8), policy(4), policy(1)])
    }
}

impl Tiers {
    /// The policy of `tier`.
    pub fn get(&self, tier: Tier) -> &TierPolicy {
        &self.0[tier.index()]
    }
}

/// `[exception-queue.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExceptionQueueFile {
    /// Who works the queue. Example: `owner = "Master data team"`
    pub owner: String,
    /// How to reach them. Example: `contact = "md-team@acme.example"`
    pub contact: Option<String>,
    /// How long an exception may stay open before it is reported overdue.
    /// Example: `sla = "4h"`
    pub sla: Option<Span>,
}

/// An exception queue's owner and SLA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionQueue {
    /// Who works it.
    pub owner: String,
    /// How to reach them.
    pub contact: Option<String>,
    /// How long an exception may stay open.
    pub sla: Option<Duration>,
}

/// `breaker = { ... }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BreakerFile {
    /// Failed calls (deliveries, or plugin calls of a stage) in a row that open it (0: none).
    pub failures: Option<u32>,
    /// Failure share over `window` that opens it. Example: `rate = "50%"`
    pub rate: Option<String>,
    /// The window of the rate. Example: `window = "30s"`
    pub window: Option<Span>,
    /// Deliveries in the window before the rate counts.
    pub min_calls: Option<u32>,
    /// How long it stays open before the first probe. Example: `open-for = "5s"`
    pub open_for: Option<Span>,
    /// Each failed probe doubles the wait, up to this. Example: `max-open-for = "60s"`
    pub max_open_for: Option<Span>,
}

fn default_sink_batch() -> usize {
    50
}

fn default_sink_batch_bytes() -> Size {
    Size(4 << 20)
}

fn default_sink_workers() -> u32 {
    4
}

// ------------------------------------------------------------- checked model

/// A checked config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Server settings.
    pub server: Server,
    /// Store settings (path resolved).
    pub store: Store,
    /// Plugin folder (resolved).
    pub plugins_dir: PathBuf,
    /// Compile cache folder, if set.
    pub cache_dir: Option<PathBuf>,
    /// Which plugin versions may go live.
    pub plugin_mode: PluginMode,
    /// Tenant ids.
    pub tenants: Vec<Name>,
    /// Pipelines.
    pub pipelines: Vec<Pipeline>,
    /// Sinks by name.
    pub sinks: BTreeMap<Name, Sink>,
    /// Declared exception queues by name.
    pub exception_queues: BTreeMap<Name, ExceptionQueue>,
    /// Service tiers.
    pub tiers: Tiers,
    /// API tokens (none: the API is open, on a loopback address only).
    pub tokens: Vec<std::sync::Arc<super::access::Token>>,
    /// Tenants' ingest quotas.
    pub tenant_ingest: BTreeMap<Name, super::access::IngestQuota>,
}

impl Config {
    /// Every plugin the config names, with who needs it.
    pub fn plugin_refs(&self) -> Vec<&PluginRef> {
        let mut out = Vec::new();
        for p in &self.pipelines {
            if let Source::Poll { plugin, .. } = &p.source {
                out.push(plugin);
            }
            out.extend(p.stages.iter().map(|s| &s.plugin));
        }
        out.extend(self.sinks.values().map(|s| &s.plugin));
        out
    }

    /// The pipeline `id` of `tenant`.
    pub fn pipeline(&self, tenant: &str, id: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.tenant.as_str() == tenant && p.id.as_str() == id)
    }
}

/// A plugin named by the config, resolved to a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRef {
    /// Name as written.
    pub name: String,
    /// Resolved file.
    pub path: PathBuf,
    /// World the user needs.
    pub world: World,
    /// Who needs it (for error messages).
    pub needed_by: String,
}

/// What a plugin is given.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Config as JSON (secrets resolved).
    pub config: serde_json::Value,
    /// Config keys holding secrets.
    pub secret_keys: Vec<String>,
    /// Tables: name -> CSV file.
    pub tables: BTreeMap<String, PathBuf>,
    /// Allowed `host:port`s.
    pub allowed_hosts: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

/// Where a pipeline's messages come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// HTTP ingest.
    Http,
    /// No source: messages come only from replay (`http = false`).
    None,
    /// A polled source plugin.
    Poll {
        /// The plugin.
        plugin: PluginRef,
        /// Interval.
        every: Duration,
        /// Its settings.
        settings: PluginSettings,
    },
}

/// Kind of stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Transformer.
    Transform,
    /// Validator.
    Validate,
    /// Allocator.
    Allocate,
}

/// What a failed validation does with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnViolation {
    /// Dead-letter it with the violations.
    DeadLetter,
    /// Park it in an exception queue for the business.
    Exception(String),
    /// Log and continue.
    Warn,
    /// Drop it (recorded in its trace).
    Drop,
}

impl OnViolation {
    pub(crate) fn parse(s: &str) -> Result<OnViolation, String> {
        match s {
            "dead-letter" => Ok(OnViolation::DeadLetter),
            "warn" => Ok(OnViolation::Warn),
            "drop" => Ok(OnViolation::Drop),
            _ => match s.strip_prefix("exception:") {
                Some(q) if Name::try_from(q.to_string()).is_ok() => Ok(OnViolation::Exception(q.to_string())),
                _ => Err(format!("`{s}` is not an on-violation policy")),
            },
        }
    }
}

/// A checked stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Kind.
    pub kind: StageKind,
    /// Plugin.
    pub plugin: PluginRef,
    /// Validation policy (validate stages).
    pub on_violation: OnViolation,
    /// Batching (allocate stages).
    pub batch: BatchPolicy,
    /// Plugin settings.
    pub settings: PluginSettings,
    /// The digest this stage must run, whatever the file holds.
    pub pin: Option<String>,
}

/// A condition over message fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// All must hold.
    All(Vec<Condition>),
    /// One must hold.
    Any(Vec<Condition>),
    /// The field's value is one of these.
    Field {
        /// `kind`, `tenant`, `source-system`, `priority`, `headers.NAME` or `body.PATH`.
        path: String,
        /// Accepted values.
        values: Vec<String>,
    },
}

impl Condition {
    /// Parses a `when` table: keys are field paths (values: a string or a
    /// list of strings), `any = [...]` / `all = [...]` nest; all keys must hold.
    pub(crate) fn parse(table: &toml::Table) -> Result<Condition, String> {
        let mut all = Vec::new();
        for (key, value) in table {
            match key.as_str() {
                "any" | "all" => {
                    let items = value.as_array().ok_or_else(|| format!("`{key}` must be a list of tables"))?;
                    let mut subs = Vec::new();
                    for item in items {
                        let t = item.as_table().ok_or_else(|| format!("`{key}` must be a list of tables"))?;
                        subs.push(Condition::parse(t)?);
                    }
                    all.push(if key == "any" { Condition::Any(subs) } else { Condition::All(subs) });
                }
                path => {
                    let known = ["kind", "tenant", "source-system", "priority", "schema-version", "correlation-id"];
                    if !(known.contains(&path) || path.starts_with("headers.") || path.starts_with("body.")) {
                        return Err(format!(
                            "`{path}` is not a message field; use one of {}, `headers.NAME` or `body.PATH`",
                            known.join(", ")
                        ));
                    }
                    let scalar = |v: &toml::Value| match v {
                        toml::Value::String(s) => Some(s.clone()),
                        toml::Value::Integer(i) => Some(i.to_string()),
                        toml::Value::Float(f) => Some(f.to_string()),
                        toml::Value::Boolean(b) => Some(b.to_string()),
                        _ => None,
                    };
                    let values = match value {
                        toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
                        v => scalar(v).map(|s| vec![s]),
                    }
                    .ok_or_else(|| format!("`{path}` must be a value or a list of values"))?;
                    all.push(Condition::Field { path: path.to_string(), values });
                }
            }
        }
        if all.is_empty() {
            return Err("an empty condition; leave out `when` for the default route".into());
        }
        Ok(if all.len() == 1 { all.pop().unwrap() } else { Condition::All(all) })
    }
}

/// A checked route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Condition; `None` is the default route.
    pub when: Option<Condition>,
    /// Sinks.
    pub to: Vec<Name>,
}

/// A checked pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Id.
    pub id: Name,
    /// Tenant.
    pub tenant: Name,
    /// Source.
    pub source: Source,
    /// Service tier of its messages (a message's own priority may change it).
    pub tier: Tier,
    /// Each stage's circuit breaker (`None`: off).
    pub breaker: Option<BreakerPolicy>,
    /// What orders its messages.
    pub ordering_key: OrderingKey,
    /// Stages.
    pub stages: Vec<Stage>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Attempts for retryable stage failures.
    pub max_attempts: u32,
    /// The planning baseline it keeps, if any.
    pub baseline: Option<BaselinePolicy>,
    /// The planning pipeline whose baseline it takes when that feed is stale.
    pub fallback: Option<FallbackPolicy>,
    /// Execution statuses expected for the orders it delivers.
    pub expect_status: Option<ExpectStatus>,
}

/// A checked sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    /// Name.
    pub name: Name,
    /// Owning tenant, if restricted.
    pub tenant: Option<Name>,
    /// Plugin.
    pub plugin: PluginRef,
    /// Plugin settings.
    pub settings: PluginSettings,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Messages per deliver call.
    pub batch: usize,
    /// Bytes of messages per deliver call.
    pub batch_bytes: usize,
    /// Concurrent delivery workers.
    pub workers: u32,
    /// The circuit breaker (`None`: off).
    pub breaker: Option<BreakerPolicy>,
    /// Maintenance windows.
    pub maintenance: Vec<Window>,
    /// The sink's rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// The service tiers (the config's), for weights and retry policies.
    pub tiers: Tiers,
}

/// A rate limit: `count` messages per `per`, `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages.
    pub count: u32,
    /// Per this long.
    pub per: Duration,
    /// At once.
    pub burst: u32,
    /// As written (`50/s`).
    pub text: String,
}

impl RateLimit {
    /// `N/s`, `N/m` or `N/h`, with `burst` (default: one second's worth, at least 1).
    ///
    /// # Errors
    ///
    /// What is wrong with `text`.
    pub fn parse(text: &str, burst: Option<u32>) -> Result<RateLimit, String> {
        let (count, unit) = text.trim().split_once('/').ok_or("write messages per time: `50/s`, `300/m` or `1000/h`")?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0).ok_or("the count is a whole number above 0")?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err("the time is `s`, `m` or `h`".into()),
        };
        let per_second = (f64::from(count) / per.as_secs_f64()).ceil() as u32;
        let burst = burst.unwrap_or(per_second).max(1);
        Ok(RateLimit { count, per, burst, text: text.trim().to_string() })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, burst {}", self.text, self.burst)
    }
}

/// When a sink's circuit breaker opens and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Failed calls in a row that open it (0: not counted).
    pub failures: u32,
    /// Failure share over `window` that opens it (0 < rate ≤ 1), if any.
    pub rate: Option<f64>,
    /// The window the rate is taken over.
    pub window: Duration,
    /// Deliveries the window must hold before the rate counts.
    pub min_calls: u32,
    /// How long it stays open before the first probe.
    pub open_for: Duration,
    /// Each failed probe doubles the wait, up to this.
    pub max_open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> BreakerPolicy {
        BreakerPolicy {
            failures: 5,
            rate: None,
            window: Duration::from_secs(30),
            min_calls: 20,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_its_cap() {
        let p = RetryPolicy { attempts: 8, initial: Span(Duration::from_millis(200)), max: Span(Duration::from_secs(1)) };
        for _ in 0..200 {
            for (failed, exp) in [(1, 200), (2, 400), (3, 800), (4, 1000), (30, 1000)] {
                let b = p.backoff(failed).as_millis() as u64;
                assert!((exp / 2..=exp).contains(&b), "after {failed} failures: {b} ms, not within [{}, {exp}]", exp / 2);
            }
        }
    }
}

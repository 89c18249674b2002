//! The typed records of what happened to a message: its processing (one
//! [`Step`] per stage call and route) as the pipeline writes it, and the
//! whole [`Trace`] as the store reads it back — the answer of
//! `GET /v1/messages/{id}` and what `syncline trace` prints. One set of
//! types for the pipeline, the store, the API and the CLI; their JSON form
//! is the API's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a message went through its pipeline's stages and routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Processing {
    /// Which worker processed it: shard `index` of `of` of its pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRef>,
    /// Stage calls and routes, in order.
    pub steps: Vec<Step>,
}

/// A pipeline shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    /// Which one, from 0.
    pub index: u32,
    /// Of how many.
    pub of: u32,
}

/// One step of a message's processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// A plugin call of a stage for one message.
    Stage(StageStep),
    /// A message routed to sinks.
    Route(RouteStep),
}

/// A plugin call of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StageStep {
    /// Stage number, from 1.
    pub stage: usize,
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest.
    pub digest: String,
    /// The message it was called with (the input or an earlier output).
    pub input: String,
    /// How long the call took.
    pub micros: u64,
    /// What came of it.
    pub outcome: StepOutcome,
    /// Log lines the plugin's log limits dropped during the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_dropped: Option<u64>,
}

/// What a stage call gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepOutcome {
    /// The call failed.
    Error {
        /// The error.
        error: String,
    },
    /// A transform or allocate call's outputs (ids); `batch` for allocate.
    Outputs {
        /// Size of the allocate batch the message was in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<usize>,
        /// Output message ids.
        outputs: Vec<String>,
    },
    /// A validate call's verdict.
    Validated {
        /// Whether the message passed.
        valid: bool,
        /// The violations found (field, code, severity, text).
        violations: Value,
        /// The policy applied when it did not pass.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
}

/// A message routed to sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStep {
    /// The routed message's id.
    pub route: String,
    /// The sinks it went to.
    pub to: Vec<String>,
}

/// Everything known about one message, as input or as output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Trace {
    /// The id asked about.
    pub id: String,
    /// The message as accepted, when the id is an accepted message's.
    pub input: Option<Input>,
    /// Its outputs queued for sinks.
    pub outputs: Vec<DeliveryRecord>,
    /// The deliveries of the id as an output.
    pub deliveries: Vec<DeliveryRecord>,
    /// Dead letters of it and its outputs.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Exceptions of it and its outputs.
    pub exceptions: Vec<ExceptionRecord>,
}

impl Trace {
    /// The tenant whose message this is: the accepted message's, else the
    /// one its dead letters, exceptions or delivered message name.
    pub fn tenant(&self) -> Option<&str> {
        self.input
            .as_ref()
            .map(|i| i.tenant.as_str())
            .or_else(|| self.dead_letters.first().map(|d| d.tenant.as_str()))
            .or_else(|| self.exceptions.first().map(|e| e.tenant.as_str()))
            .or_else(|| self.outputs.iter().chain(&self.deliveries).find_map(|d| d.message.get("tenant").and_then(Value::as_str)))
    }
}

/// An accepted message and how its processing went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Input {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// `accepted`, `done`, `dead`, `exception` or `dropped`.
    pub state: String,
    /// When it was accepted (ms since the epoch).
    pub received_at: i64,
    /// When its processing was recorded.
    pub processed_at: Option<i64>,
    /// The message (JSON form).
    pub message: Value,
    /// Its processing, once recorded.
    pub processing: Option<Processing>,
    /// Attempts that failed retryably so far.
    pub attempts: i64,
    /// Their errors.
    pub retry_errors: Option<Vec<String>>,
    /// When the next attempt is due (0: not waiting).
    pub next_attempt_at: i64,
}

/// An output queued for a sink and its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeliveryRecord {
    /// Output message id.
    pub id: String,
    /// The accepted message it came from.
    pub source_id: String,
    /// Sink.
    pub sink: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// The downstream's reference, once delivered.
    pub reference: Option<String>,
    /// When it was queued.
    pub queued_at: i64,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
    /// The output message (JSON form).
    pub message: Value,
    /// Every attempt, the successful one last.
    pub attempts: Vec<AttemptRecord>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: i64,
    /// When (ms since the epoch).
    pub at: Option<i64>,
    /// `retry`, `dead` or `delivered`.
    pub outcome: String,
    /// The error, or the reference when delivered.
    pub detail: Option<String>,
    /// The sink plugin's digest (failed attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeadLetterRecord {
    /// Its number in the store.
    #[serde(default)]
    pub id: i64,
    /// Tenant.
    #[serde(default)]
    pub tenant: String,
    /// Pipeline.
    #[serde(default)]
    pub pipeline: String,
    /// The accepted message it came from.
    #[serde(default)]
    pub source_id: String,
    /// When.
    pub at: i64,
    /// Where it died (`stage 2 (plugin)`, `sink erp`, `routing`, `decode`).
    pub place: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest.
    pub digest: String,
    /// Why.
    pub reason: String,
    /// Every attempt's error.
    pub attempts: Vec<String>,
    /// The dead message's id.
    pub message_id: String,
    /// `not-delivered`, or `unknown` when an attempt may have delivered it.
    pub outcome: String,
    /// `open`, `replayed` (put back to work) or `purged`.
    #[serde(default = "open")]
    pub state: String,
    /// When it was replayed or purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// Why it was purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn open() -> String {
    "open".into()
}

/// Which dead letters to list or replay. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DeadLetterFilter {
    /// Tenant.
    pub tenant: Option<String>,
    /// Only these tenants (a caller's scope; never read from a request); none: every tenant.
    #[serde(skip)]
    pub scope: Option<Vec<String>>,
    /// Pipeline.
    pub pipeline: Option<String>,
    /// Where it died, by prefix: `sink`, `sink erp`, `stage 2`.
    pub place: Option<String>,
    /// Text its reason contains (an error class: `HTTP 422`, `trapped`, `timed out`).
    pub reason: Option<String>,
    /// Died before this time (ms since the epoch).
    pub before: Option<i64>,
    /// `open` when not given, `replayed`, `purged` or `all`.
    pub state: Option<String>,
}

/// Whether `tenant` is within `scope` (none: every tenant is).
fn in_scope(scope: &Option<Vec<String>>, tenant: &str) -> bool {
    scope.as_ref().is_none_or(|s| s.iter().any(|t| t == tenant))
}

/// A tenant scope as the SQL of a filter takes it: a JSON array, or NULL.
pub fn scope_json(scope: &Option<Vec<String>>) -> Option<String> {
    scope.as_ref().map(|s| serde_json::to_string(s).expect("names serialize"))
}

impl DeadLetterFilter {
    /// The state asked for (`open` when none).
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("open")
    }

    /// Whether `d` is one of those asked for.
    pub fn matches(&self, d: &DeadLetterRecord) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == d.tenant)
            && in_scope(&self.scope, &d.tenant)
            && self.pipeline.as_ref().is_none_or(|p| *p == d.pipeline)
            && self.place.as_ref().is_none_or(|p| d.place.starts_with(p.as_str()))
            && self.reason.as_ref().is_none_or(|r| d.reason.contains(r.as_str()))
            && self.before.is_none_or(|b| d.at < b)
            && (self.state() == "all" || self.state() == d.state)
    }
}

/// An operator's pause of a sink: its queue holds until resumed, across
/// reloads and restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkPause {
    /// Why (shown with the sink).
    pub reason: String,
    /// Since when (ms since the epoch).
    pub at: i64,
}

/// One entry of a planning baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BaselineRecord {
    /// Record kind.
    pub kind: String,
    /// Item.
    pub item: String,
    /// Location.
    pub location: String,
    /// The approved message's id.
    pub message_id: String,
    /// When it was approved (ms).
    pub at: i64,
    /// The message (JSON form).
    pub message: Value,
}

/// What a replay put back to work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Replayed {
    /// The accepted message, processed again from its first stage through
    /// the current plugins (the dead letter died in a stage or routing).
    Message {
        /// Tenant.
        tenant: String,
        /// Pipeline.
        pipeline: String,
        /// Message id.
        id: String,
    },
    /// The output, delivered again with the same idempotency key (the dead
    /// letter died at a sink).
    Delivery {
        /// Sink.
        sink: String,
        /// Output id.
        id: String,
    },
}

/// Why a message was parked in an exception queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExceptionDetail {
    /// A validate stage found blocking violations (`on-violation = "exception:QUEUE"`).
    Violations {
        /// The violations.
        violations: Vec<syncline_model::Violation>,
        /// Stage number.
        stage: usize,
        /// Validator plugin.
        plugin: String,
    },
    /// A plugin produced a canonical `exception` record.
    Record {
        /// Exception code.
        code: String,
        /// Its text.
        text: String,
        /// Severity.
        severity: String,
    },
}

impl ExceptionDetail {
    /// One line for people.
    pub fn text(&self) -> String {
        match self {
            ExceptionDetail::Violations { violations, .. } => {
                violations.iter().map(|v| format!("{}: {}", v.field, v.text)).collect::<Vec<_>>().join("; ")
            }
            ExceptionDetail::Record { text, .. } => text.clone(),
        }
    }
}

/// A message parked in an exception queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExceptionRecord {
    /// Its number in the store.
    #[serde(default)]
    pub id: i64,
    /// Tenant.
    #[serde(default)]
    pub tenant: String,
    /// Pipeline.
    #[serde(default)]
    pub pipeline: String,
    /// The accepted message it came from.
    #[serde(default)]
    pub source_id: String,
    /// When.
    pub at: i64,
    /// Queue.
    pub queue: String,
    /// What is wrong.
    pub detail: ExceptionDetail,
    /// `open`, `resolved` (fixed outside), `retried` (processed again) or
    /// `discarded`.
    pub state: String,
    /// The parked message's id.
    pub message_id: String,
    /// When it was resolved, retried or discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
    /// The comment or reason it was settled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was reported past its queue's SLA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_at: Option<i64>,
}

/// A delivered purchase requisition or transfer proposal and the execution
/// status it waits for (the closed loop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoopRecord {
    /// Its number.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// The pipeline that delivered it.
    pub pipeline: String,
    /// The sink it went to.
    pub sink: String,
    /// The delivered message.
    pub message_id: String,
    /// Its kind.
    pub kind: String,
    /// Its correlation id.
    pub correlation: Option<String>,
    /// The reference the downstream gave it (what a status's `order-ref` names).
    pub reference: Option<String>,
    /// When it was delivered (ms since the epoch).
    pub delivered_at: i64,
    /// When the status is due.
    pub due_at: i64,
    /// `open`, `overdue` (an exception was parked) or `closed`.
    pub state: String,
    /// The exception parked when it went overdue.
    pub exception_id: Option<i64>,
    /// The execution status that closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<i64>,
}

/// Which loops to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopFilter {
    /// `open`, `overdue`, `closed`, or all when none.
    pub state: Option<String>,
    /// Only these tenants; none: every tenant.
    pub scope: Option<Vec<String>>,
    /// Due before this time.
    pub due_before: Option<i64>,
    /// Closed late, with the exception of their overdue spell still open.
    pub closed_late_unsettled: bool,
}

/// Which exceptions to list. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExceptionFilter {
    /// Queue.
    pub queue: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Only these tenants (a caller's scope; never read from a request); none: every tenant.
    #[serde(skip)]
    pub scope: Option<Vec<String>>,
    /// Pipeline.
    pub pipeline: Option<String>,
    /// Parked before this time (ms since the epoch).
    pub before: Option<i64>,
    /// `open` when not given, `resolved`, `retried`, `discarded` or `all`.
    pub state: Option<String>,
}

impl ExceptionFilter {
    /// The state asked for (`open` when none).
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("open")
    }

    /// Whether `e` is one of those asked for.
    pub fn matches(&self, e: &ExceptionRecord) -> bool {
        self.queue.as_ref().is_none_or(|q| *q == e.queue)
            && self.tenant.as_ref().is_none_or(|t| *t == e.tenant)
            && in_scope(&self.scope, &e.tenant)
            && self.pipeline.as_ref().is_none_or(|p| *p == e.pipeline)
            && self.before.is_none_or(|b| e.at < b)
            && (self.state() == "all" || self.state() == e.state)
    }
}

/// How an open exception is settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Settle {
    /// Fixed outside Syncline; nothing more to do here.
    Resolve {
        /// What was done.
        comment: String,
    },
    /// Processed again from its first stage through the current plugins
    /// (after master data was corrected or a plugin redeployed).
    Retry {
        /// What changed.
        comment: String,
    },
    /// Dropped for good.
    Discard {
        /// Why.
        reason: String,
    },
}

impl Settle {
    /// The state it leaves the exception in.
    pub fn state(&self) -> &'static str {
        match self {
            Settle::Resolve { .. } => "resolved",
            Settle::Retry { .. } => "retried",
            Settle::Discard { .. } => "discarded",
        }
    }

    /// Its comment or reason.
    pub fn note(&self) -> &str {
        match self {
            Settle::Resolve { comment } | Settle::Retry { comment } => comment,
            Settle::Discard { reason } => reason,
        }
    }
}

/// One plugin swapped by a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginChange {
    /// Plugin name.
    pub plugin: String,
    /// Who uses it.
    pub who: String,
    /// Digest before.
    pub old: String,
    /// Digest after.
    pub new: String,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReloadRecord {
    /// When (RFC 3339).
    pub at: String,
    /// `watch`, `signal`, `api`, `approval`, `rollback`, or `cluster` (another process's API call, see `from`).
    pub trigger: String,
    /// `applied`, `unchanged` or `rejected`.
    pub outcome: String,
    /// Pipelines and sinks added, removed, rebuilt.
    pub changes: Vec<String>,
    /// Plugins swapped in place.
    pub plugins: Vec<PluginChange>,
    /// Work kept in the store for removed pipelines and sinks.
    pub kept: Vec<String>,
    /// Why it was rejected.
    pub error: Option<String>,
    /// How long it took.
    pub millis: u64,
    /// On a shared store: the process whose API call this reload follows
    /// (trigger `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// On a shared store, for a reload made through the API: whether the
    /// other processes were told to make it too (`told`), or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A change made through one process's API that every process sharing
/// the store makes too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ClusterCommand {
    /// Reload from your own files and the store (after `POST /v1/reload`
    /// or a plugin approval, `trigger` saying which).
    Reload {
        /// `api` or `approval`.
        trigger: String,
    },
    /// Run version `digest` of `plugin` instead of its file while the file
    /// is `file_digest`, as `POST /v1/plugins/{name}/rollback` did.
    #[serde(rename_all = "kebab-case")]
    RollBack {
        /// The plugin.
        plugin: String,
        /// The version to run (in the shared plugin archive).
        digest: String,
        /// The file's version when it was rolled back.
        file_digest: String,
    },
}

impl ClusterCommand {
    /// Whether this is a rollback made while its plugin's file was
    /// `file_digest` (one that a newly deployed file ends).
    pub fn rolls_back_from(&self, file_digest: &str) -> bool {
        matches!(self, ClusterCommand::RollBack { file_digest: f, .. } if f == file_digest)
    }
}

/// A [`ClusterCommand`] as one process sends it to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Broadcast {
    /// The process that sends it (its holder name).
    pub from: String,
    /// Who asked it to (`token:ID`, `open`), for the audit log.
    pub actor: String,
    /// When (ms since the epoch).
    pub at: i64,
    /// What to do.
    pub command: ClusterCommand,
}

/// A pipeline as it went live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePipelineRecord {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Its stages as `plugin@digest`.
    pub stages: Vec<String>,
}

/// A plugin version approved to run (`[plugins] mode = "approved"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Approval {
    /// Plugin name.
    pub plugin: String,
    /// The approved digest (`sha256:…`).
    pub digest: String,
    /// Who approved it (an audit actor).
    pub by: String,
    /// When (ms since the epoch).
    pub at: i64,
    /// What the review said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Something an operator or the host did that the audit log keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// The host started with a config.
    Start {
        /// The config file.
        config: String,
        /// What went live.
        pipelines: Vec<LivePipelineRecord>,
    },
    /// The host stopped.
    Stop,
    /// A reload ran (applied, unchanged or rejected).
    Reload(ReloadRecord),
    /// A dead letter was put back to work.
    DeadLetterReplayed {
        /// Its number.
        id: i64,
        /// What went back to work.
        replayed: Replayed,
    },
    /// A circuit breaker changed state.
    Breaker {
        /// Whose: `sink erp`, or `stage 2 of acme/orders (plugin)`.
        target: String,
        /// Before: `closed`, `open`, `half-open`.
        from: String,
        /// After.
        to: String,
        /// Why.
        reason: String,
    },
    /// A sink was paused.
    SinkPaused {
        /// Sink.
        sink: String,
        /// Why.
        reason: String,
    },
    /// A paused sink was resumed.
    SinkResumed {
        /// Sink.
        sink: String,
    },
    /// An exception was resolved, retried or discarded.
    ExceptionSettled {
        /// Its number.
        id: i64,
        /// Its queue.
        queue: String,
        /// How, with the comment or reason.
        settle: Settle,
    },
    /// A sink's deliveries of a tier waited longer than the tier's
    /// `alert-after` (reported once until that lane catches up).
    TierLate {
        /// Sink.
        sink: String,
        /// Tier.
        tier: String,
        /// Deliveries of that tier waiting.
        pending: i64,
        /// How long the oldest has waited (ms).
        oldest_ms: i64,
    },
    /// A planning feed went stale: its baseline is served instead.
    BaselineStale {
        /// Tenant.
        tenant: String,
        /// The planning pipeline.
        pipeline: String,
        /// How old its last approved record is (ms).
        age_ms: i64,
        /// Pipelines its baseline was released to, with how many records each.
        released: Vec<(String, usize)>,
    },
    /// A baseline was released by hand.
    BaselineReleased {
        /// Tenant.
        tenant: String,
        /// The planning pipeline.
        pipeline: String,
        /// The execution pipeline it went to.
        to: String,
        /// Records accepted there anew.
        records: usize,
    },
    /// A stale planning feed delivered again: the baseline is no longer released.
    BaselineRecovered {
        /// Tenant.
        tenant: String,
        /// The planning pipeline.
        pipeline: String,
    },
    /// An exception stayed open past its queue's SLA.
    ExceptionOverdue {
        /// Its number.
        id: i64,
        /// Its queue.
        queue: String,
        /// The queue's owner.
        owner: String,
        /// How long it had been open (ms).
        age_ms: i64,
    },
    /// An API call was refused: no token, an unknown token, a role or
    /// tenant outside the token's. (At most a few per second are kept; the
    /// count of those left out rides on the next one kept.)
    Denied {
        /// `GET`, `POST`.
        method: String,
        /// The path asked for (cut to 256 characters).
        path: String,
        /// 401 or 403.
        status: u16,
        /// Why, as answered.
        reason: String,
        /// Denials left out since the last one kept.
        #[serde(default, skip_serializing_if = "is_zero")]
        suppressed: u64,
    },
    /// A plugin decided about a message and said why (its output's
    /// `decision` header): e.g. a reconciler accepting one recommendation
    /// and deferring another.
    Decision {
        /// The pipeline.
        pipeline: String,
        /// The message the plugin was given.
        message_id: String,
        /// The output that carries the decision.
        output_id: String,
        /// What was decided and why.
        decision: String,
    },
    /// A delivered order got no execution status in time.
    LoopOverdue {
        /// The loop.
        id: i64,
        /// The delivered message.
        message_id: String,
        /// The exception parked.
        exception_id: i64,
    },
    /// A plugin version was approved to run.
    PluginApproved {
        /// Plugin name.
        plugin: String,
        /// Its digest.
        digest: String,
        /// What the review said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A plugin version's approval was withdrawn.
    PluginApprovalRevoked {
        /// Plugin name.
        plugin: String,
        /// Its digest.
        digest: String,
    },
    /// A dead letter was purged.
    DeadLetterPurged {
        /// Its number.
        id: i64,
        /// The dead message's id.
        message_id: String,
        /// Why.
        reason: String,
    },
}

impl AuditEvent {
    /// Its kind as stored: `start`, `stop`, `reload`, `dead-letter-replayed`,
    /// `dead-letter-purged`, `breaker`, `sink-paused`, `sink-resumed`,
    /// `exception-settled`, `exception-overdue`, `tier-late`, `baseline-stale`,
    /// `baseline-released`, `baseline-recovered`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Start { .. } => "start",
            AuditEvent::Stop => "stop",
            AuditEvent::Reload(_) => "reload",
            AuditEvent::DeadLetterReplayed { .. } => "dead-letter-replayed",
            AuditEvent::DeadLetterPurged { .. } => "dead-letter-purged",
            AuditEvent::Breaker { .. } => "breaker",
            AuditEvent::ExceptionSettled { .. } => "exception-settled",
            AuditEvent::ExceptionOverdue { .. } => "exception-overdue",
            AuditEvent::TierLate { .. } => "tier-late",
            AuditEvent::BaselineStale { .. } => "baseline-stale",
            AuditEvent::BaselineRecovered { .. } => "baseline-recovered",
            AuditEvent::BaselineReleased { .. } => "baseline-released",
            AuditEvent::SinkPaused { .. } => "sink-paused",
            AuditEvent::SinkResumed { .. } => "sink-resumed",
            AuditEvent::Denied { .. } => "denied",
            AuditEvent::PluginApproved { .. } => "plugin-approved",
            AuditEvent::LoopOverdue { .. } => "loop-overdue",
            AuditEvent::Decision { .. } => "decision",
            AuditEvent::PluginApprovalRevoked { .. } => "plugin-approval-revoked",
        }
    }

    /// The tenant the event is about, when it names one itself.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            AuditEvent::BaselineStale { tenant, .. } | AuditEvent::BaselineReleased { tenant, .. } | AuditEvent::BaselineRecovered { tenant, .. } => Some(tenant),
            AuditEvent::DeadLetterReplayed { replayed: Replayed::Message { tenant, .. }, .. } => Some(tenant),
            _ => None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A process sharing the store, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterMember {
    /// The name it holds leases under (`host-pid`).
    pub holder: String,
    /// When it joined (ms since the epoch).
    pub since: i64,
    /// Its last sign of life (ms since the epoch).
    pub seen_at: i64,
    /// The queues it holds part of, and how many of each queue's 64 slots.
    pub holds: Vec<QueueShare>,
}

/// A process's share of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct QueueShare {
    /// `messages/TENANT/PIPELINE` or `deliveries/SINK`.
    pub queue: String,
    /// Slots held, of 64.
    pub slots: u32,
}

/// An audit event to append: who did it and which tenant it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// `host` for what the host did by itself, `token:ID` for a call made
    /// with token ID, `open` for a call to an API without tokens.
    pub actor: String,
    /// The tenant it concerns; none for host-wide events (reloads, sinks,
    /// starts), which only callers scoped to every tenant see.
    pub tenant: Option<String>,
    /// What happened.
    pub event: AuditEvent,
}

impl AuditEntry {
    /// Something the host did by itself.
    pub fn host(event: AuditEvent) -> AuditEntry {
        AuditEntry { actor: "host".into(), tenant: event.tenant().map(str::to_string), event }
    }
}

/// Which audit events to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Kind (`reload`, `denied`, ...).
    pub kind: Option<String>,
    /// Actor (`host`, `token:ID`).
    pub actor: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Only events of these tenants (a caller's scope; host-wide events
    /// are left out); none: every event.
    pub scope: Option<Vec<String>>,
    /// At or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Before this time (ms since the epoch).
    pub until: Option<i64>,
}

impl AuditFilter {
    /// Whether `a` is one of those asked for.
    pub fn matches(&self, a: &AuditRecord) -> bool {
        self.kind.as_ref().is_none_or(|k| k == a.event.kind())
            && self.actor.as_ref().is_none_or(|x| *x == a.actor)
            && self.tenant.as_ref().is_none_or(|t| a.tenant.as_ref() == Some(t))
            && self.scope.as_ref().is_none_or(|s| a.tenant.as_ref().is_some_and(|t| s.contains(t)))
            && self.since.is_none_or(|t| a.at >= t)
            && self.until.is_none_or(|t| a.at < t)
    }
}

/// An audit event as kept: its id and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Order of recording.
    pub id: i64,
    /// When (ms since the epoch).
    pub at: i64,
    /// Who: `host`, `token:ID` or `open`.
    pub actor: String,
    /// The tenant it concerns, if one.
    pub tenant: Option<String>,
    /// The event.
    pub event: AuditEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_back_as_written() {
        let steps = vec![
            Step::Stage(StageStep {
                stage: 1,
                plugin: "p".into(),
                digest: "sha256:x".into(),
                input: "m".into(),
                micros: 5,
                outcome: StepOutcome::Outputs { batch: Some(3), outputs: vec!["o".into()] },
                logs_dropped: Some(2),
            }),
            Step::Stage(StageStep {
                stage: 2,
                plugin: "v".into(),
                digest: "sha256:y".into(),
                input: "o".into(),
                micros: 1,
                outcome: StepOutcome::Validated { valid: false, violations: serde_json::json!([]), policy: Some("Warn".into()) },
                logs_dropped: None,
            }),
            Step::Stage(StageStep {
                stage: 3,
                plugin: "t".into(),
                digest: "sha256:z".into(),
                input: "o".into(),
                micros: 1,
                outcome: StepOutcome::Error { error: "trapped".into() },
                logs_dropped: None,
            }),
            Step::Route(RouteStep { route: "o".into(), to: vec!["erp".into()] }),
        ];
        let p = Processing { shard: Some(ShardRef { index: 1, of: 2 }), steps };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""logs-dropped":2"#) && text.contains(r#""outcome":{"batch":3,"outputs":["o"]}"#), "{text}");
        assert_eq!(serde_json::from_str::<Processing>(&text).unwrap(), p);
    }
}

//! Running a batch of accepted messages through a pipeline's stages and
//! routes, producing the [`Commit`] that records every result at once. Each
//! stage kind has its module ([`transform`], [`validate`], [`allocate`]),
//! routing its own ([`route`]); this one holds what they share and
//! [`settle`], which turns each row's result into what the store records.
//!
//! Outputs get deterministic ids and idempotency keys (derived from their
//! input's and their position, see [`super::keys`]), so re-processing after
//! a crash yields the same deliveries and a sink never sees a new key for
//! the same business effect.
//!
//! A stage call that fails retryably (the plugin says so, or no instance
//! was free) is not retried here: the message's whole attempt is set aside
//! and the store schedules its next one (exponential backoff), so a
//! retrying message never holds up the other keys of its shard; after
//! `max-attempts` it is dead-lettered with every attempt's error.
//!
//! Processing can be cancelled between plugin calls (a stop or a reload
//! retiring the pipeline): then nothing is committed and the rows stay
//! pending, to be processed again — with the same ids and keys — by
//! whoever runs the pipeline next.

mod allocate;
mod fit;
mod route;
mod transform;
mod validate;

use std::time::Instant;

use sha2::{Digest, Sha256};
use syncline_model::{json as mjson, Message};

use super::{keys, LivePipeline};
use crate::config::{RetryPolicy, StageKind};
use crate::metrics::Allocated;
use crate::runtime::{CallError, CallReport, PluginInstance};
use crate::store::records::{AuditEntry, AuditEvent, Processing, ShardRef, StageStep, Step, StepOutcome};
use crate::store::{Commit, Final, NewBaseline, NewDeadLetter, NewDelivery, NewException, Pending, Processed, Retry};

/// A message in flight: which input row it descends from, and the key a
/// sink gets for it.
struct Item {
    row: usize,
    msg: Message,
    key: String,
}

/// What happened to one input row.
#[derive(Default)]
struct RowResult {
    steps: Vec<Step>,
    deliveries: Vec<NewDelivery>,
    dead: Vec<NewDeadLetter>,
    exceptions: Vec<NewException>,
    baseline: Vec<NewBaseline>,
    dropped: usize,
    /// What became of the recommendations of this row at allocate stages.
    allocated: Allocated,
    /// Decisions plugins stated on this row's outputs.
    decisions: Vec<Decision>,
    /// A retryable failure with attempts left: the whole row is tried again
    /// later (from its first stage), nothing else of it is kept.
    retry: Option<String>,
}

/// A deterministic ULID for output `n` of `parent`: the parent's timestamp,
/// randomness from a hash of (parent id, n).
pub fn derive_id(parent: &str, n: usize) -> String {
    let ms = ulid::Ulid::from_string(parent).map(|u| u.timestamp_ms()).unwrap_or_else(|_| crate::store::now_ms() as u64);
    let h = Sha256::digest(format!("{parent}/{n}").as_bytes());
    let mut r = [0u8; 16];
    r.copy_from_slice(&h[..16]);
    ulid::Ulid::from_parts(ms, u128::from_be_bytes(r)).to_string()
}

/// Makes a plugin's output a proper child of `parent` (keyed `parent_key`).
fn adopt(parent: &Message, parent_key: &str, mut out: Message, n: usize, tenant: &str) -> Item {
    if out.tenant != tenant {
        if !out.tenant.is_empty() {
            tracing::warn!(tenant, plugin_tenant = %out.tenant, "a plugin output named another tenant; kept in the input's tenant");
        }
        out.tenant = tenant.to_string();
    }
    if out.correlation_id.is_empty() {
        out.correlation_id = parent.correlation_id.clone();
    }
    out.causation_id = Some(parent.id.clone());
    out.id = derive_id(&parent.id, n);
    // Always derived, never taken from the plugin: a plugin that clones its
    // input for several outputs would otherwise give them one key, and the
    // sink would drop all but the first as duplicates.
    let key = keys::child(parent_key, n);
    out.idempotency_key = Some(key.clone());
    if out.occurred_at.is_empty() {
        out.occurred_at = parent.occurred_at.clone();
    }
    if out.source_system.is_empty() {
        out.source_system = parent.source_system.clone();
    }
    Item { row: 0, msg: out, key }
}

/// A decision a plugin stated on an output (its `decision` header, new at
/// that stage): kept in the audit log in the batch's own commit.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    /// The message the plugin was given.
    pub input: String,
    /// The output that carries the decision.
    pub output: String,
    /// The plugin.
    pub plugin: String,
    /// What it decided and why.
    pub text: String,
}

impl Decision {
    /// Its audit entry, by its plugin.
    fn entry(self, tenant: &str, pipeline: &str) -> AuditEntry {
        let event = AuditEvent::Decision { pipeline: pipeline.to_string(), message_id: self.input, output_id: self.output, decision: self.text };
        AuditEntry { actor: format!("plugin:{}", self.plugin), tenant: Some(tenant.to_string()), event }
    }
}

/// What the recorded rows of a batch say besides their results (rows set
/// aside for a retry say nothing yet).
#[derive(Debug, Default)]
struct Notes {
    /// What became of its recommendations.
    allocated: Allocated,
    /// The decisions plugins stated.
    decisions: Vec<Decision>,
}

/// Records `out`'s decision when its plugin stated one at this stage (a
/// header inherited from `parent` is not a new decision).
fn note_decision(r: &mut RowResult, plugin: &str, parent: &Message, out: &Message) {
    if let Some(text) = out.header("decision").filter(|d| parent.header("decision") != Some(*d)) {
        let text = crate::runtime::clip::text(text.to_string(), crate::runtime::clip::TEXT);
        r.decisions.push(Decision { input: parent.id.clone(), output: out.id.clone(), plugin: plugin.to_string(), text });
    }
}

/// Why processing stopped before its end.
struct Cancelled;

/// One call of `at`'s plugin by `instance` for the message of `row` (none:
/// a batch), unless processing was cancelled before it; the call runs in a
/// `stage` span under the message's (or the batch's). The stage's breaker
/// counts a call that failed as a whole (trap, time or memory limit)
/// against the plugin.
fn call<R>(
    at: &Stage,
    row: Option<usize>,
    instance: &PluginInstance,
    f: impl FnOnce() -> (Result<R, CallError>, CallReport),
) -> Result<(Result<R, CallError>, CallReport), Cancelled> {
    if (at.cancel)() {
        return Err(Cancelled);
    }
    let plugin = instance.plugin();
    let parent = row.and_then(|r| at.spans.get(r)).cloned().unwrap_or_else(tracing::Span::current);
    let span = tracing::debug_span!(parent: &parent, "stage", stage = at.no, plugin = %plugin.name, digest = %plugin.digest);
    let (result, report) = span.in_scope(f);
    match &result {
        // No free instance is load, not the plugin's fault.
        Err(e) if e.failure.is_whole_call() && !matches!(e.failure, crate::runtime::Failure::Instantiate(_)) => at.live.record(Some(&e.to_string())),
        _ => at.live.record(None),
    }
    Ok((result, report))
}

/// A failed stage call for `msg` of `row`: tried again later (the store
/// schedules it) when it may succeed and the pipeline's attempts are not
/// spent, else dead-lettered with every attempt's error.
fn failed(r: &mut RowResult, row: &Pending, max_attempts: u32, stage_no: usize, instance: &PluginInstance, msg: &Message, e: &CallError) {
    if e.failure.is_retryable() && row.attempts + 1 < max_attempts.max(1) {
        r.retry.get_or_insert_with(|| e.to_string());
        return;
    }
    let mut attempts = row.errors.clone();
    attempts.push(e.to_string());
    r.dead.push(dead_letter(stage_no, instance, msg, e.to_string(), attempts));
}

fn dead_letter(stage_no: usize, instance: &PluginInstance, msg: &Message, reason: String, attempts: Vec<String>) -> NewDeadLetter {
    let plugin = instance.plugin();
    NewDeadLetter {
        message_id: msg.id.clone(),
        place: format!("stage {stage_no} ({})", plugin.name),
        plugin: plugin.name.clone(),
        digest: plugin.digest.clone(),
        reason,
        attempts,
        json: mjson::to_string(msg),
        outcome_unknown: false,
    }
}

fn step(stage_no: usize, instance: &PluginInstance, input: &str, started: Instant, report: &CallReport, outcome: StepOutcome) -> Step {
    let plugin = instance.plugin();
    Step::Stage(StageStep {
        stage: stage_no,
        plugin: plugin.name.clone(),
        digest: plugin.digest.clone(),
        input: input.to_string(),
        micros: started.elapsed().as_micros() as u64,
        outcome,
        logs_dropped: (report.logs_dropped > 0).then_some(report.logs_dropped),
    })
}

fn error(e: &CallError) -> StepOutcome {
    StepOutcome::Error { error: e.to_string() }
}

/// A stage as a call site: its number, the live stage, the pipeline's
/// attempts, the tenant, the batch's rows and their `message` spans, and
/// the cancel check.
struct Stage<'a> {
    no: usize,
    live: &'a super::LiveStage,
    max_attempts: u32,
    tenant: &'a str,
    rows: &'a [Pending],
    spans: &'a [tracing::Span],
    cancel: &'a dyn Fn() -> bool,
}

/// Processes `rows` (in order) through `pipeline`: the commit (with the
/// decisions its plugins stated, for the audit log), and what became of the
/// recommendations of the rows it records; `None` when `cancel` said to
/// stop before the end (nothing of the batch is to be committed). A row
/// handed over in memory gives its message up; the others are parsed.
/// `limit`: the most bytes the store keeps in one message (`None`: no
/// limit of its own); a row that made a larger record is dead-lettered
/// ([`fit`]).
pub fn process(pipeline: &LivePipeline, shard: ShardRef, rows: &mut [Pending], limit: Option<usize>, cancel: &dyn Fn() -> bool) -> Option<(Commit, Allocated)> {
    let messages: Vec<Result<Message, mjson::JsonError>> = rows
        .iter_mut()
        .map(|p| match p.message.take() {
            // Alone with it (the usual case), the message moves; else a copy.
            Some(m) => Ok(std::sync::Arc::try_unwrap(m).unwrap_or_else(|shared| (*shared).clone())),
            None => mjson::from_str(&p.json),
        })
        .collect();
    process_all(pipeline, shard, rows, messages, limit, cancel).ok()
}

fn process_all(
    pipeline: &LivePipeline,
    shard: ShardRef,
    rows: &[Pending],
    messages: Vec<Result<Message, mjson::JsonError>>,
    limit: Option<usize>,
    cancel: &dyn Fn() -> bool,
) -> Result<(Commit, Allocated), Cancelled> {
    let cfg = &pipeline.cfg;
    let tenant = cfg.tenant.as_str();
    let mut results: Vec<RowResult> = rows.iter().map(|_| RowResult::default()).collect();
    let mut items: Vec<Item> = Vec::with_capacity(rows.len());
    // Each message's span (disabled, and free, unless spans are exported or logged at debug).
    let spans: Vec<tracing::Span> = rows
        .iter()
        .map(|p| tracing::debug_span!("message", tenant, pipeline = cfg.id.as_str(), message_id = %p.id, correlation_id = tracing::field::Empty, attempt = p.attempts + 1))
        .collect();
    for (row, (p, parsed)) in rows.iter().zip(messages).enumerate() {
        match parsed {
            Ok(msg) => {
                let key = keys::root(tenant, cfg.id.as_str(), msg.idempotency_key.as_deref(), &msg.id);
                spans[row].record("correlation_id", msg.correlation_id.as_str());
                crate::telemetry::join_flow(&spans[row], &msg.correlation_id);
                items.push(Item { row, msg, key })
            }
            Err(e) => results[row].dead.push(NewDeadLetter {
                message_id: p.id.clone(),
                place: "decode".into(),
                plugin: String::new(),
                digest: String::new(),
                reason: format!("stored message no longer parses: {e}"),
                attempts: vec![],
                json: p.json.clone(),
                outcome_unknown: false,
            }),
        }
    }

    for (i, stage) in pipeline.stages.iter().enumerate() {
        let no = i + 1;
        let at = |no: usize| Stage { no, live: stage, max_attempts: cfg.max_attempts, tenant, rows, spans: &spans, cancel };
        let mut next = Vec::with_capacity(items.len());
        match stage.cfg.kind {
            StageKind::Transform => {
                for item in items {
                    transform::call_one(&at(no), item, &mut results, &mut next)?;
                }
            }
            StageKind::Validate => {
                for item in items {
                    validate::call_one(&at(no), item, &mut results, &mut next)?;
                }
            }
            StageKind::Allocate => {
                let max = stage.cfg.batch.max.max(1);
                let mut rest = items.into_iter().peekable();
                while rest.peek().is_some() {
                    let batch: Vec<Item> = rest.by_ref().take(max).collect();
                    allocate::call_batch(&at(no), batch, &mut results, &mut next)?;
                }
            }
        }
        items = next;
    }

    // Route what is left; canonical exceptions go to their queue instead.
    for item in items {
        route::place(cfg, item, &mut results);
    }
    if let Some(limit) = limit {
        for (row, r) in rows.iter().zip(results.iter_mut()) {
            fit::fit(row, r, limit);
        }
    }

    let (processed, notes) = settle(shard, rows, results);
    let audit = notes.decisions.into_iter().map(|d| d.entry(tenant, cfg.id.as_str())).collect();
    Ok((Commit { tenant: tenant.to_string(), pipeline: cfg.id.to_string(), processed, audit }, notes.allocated))
}

/// What to record for each row: a row set aside for a retry is nacked and
/// holds its key — later rows of the same key in this batch are left out
/// (they stay claimable and are taken once it has gone through); every
/// other row is settled with its end state, outputs, dead letters and
/// exceptions. Also gathers the recorded rows' notes (recommendations'
/// fate, decisions).
fn settle(shard: ShardRef, rows: &[Pending], results: Vec<RowResult>) -> (Vec<Processed>, Notes) {
    // A message set aside for a retry holds its key: later messages of the
    // same key in this batch are not recorded (they stay pending, and are
    // taken once it has gone through).
    let mut held = std::collections::HashSet::new();
    let mut notes = Notes::default();
    let processed = rows
        .iter()
        .zip(results)
        .filter(|(p, r)| {
            if held.contains(&p.key_hash) {
                return false;
            }
            if r.retry.is_some() {
                held.insert(p.key_hash);
            }
            true
        })
        .map(|(p, r)| {
            if let Some(error) = r.retry {
                let mut errors = p.errors.clone();
                errors.push(error);
                let next_at = crate::store::now_ms() + RetryPolicy::default().backoff(p.attempts + 1).as_millis() as i64;
                return Processed {
                    id: p.id.clone(),
                    state: Final::Done,
                    processing: Processing::default(),
                    retry: Some(Retry { next_at, errors }),
                    deliveries: vec![],
                    dead_letters: vec![],
                    exceptions: vec![],
                    baseline: vec![],
                };
            }
            notes.allocated.ordered += r.allocated.ordered;
            notes.allocated.deferred += r.allocated.deferred;
            notes.decisions.extend(r.decisions);
            let state = if !r.deliveries.is_empty() {
                Final::Done
            } else if !r.exceptions.is_empty() {
                Final::Exception
            } else if !r.dead.is_empty() {
                Final::Dead
            } else if r.dropped > 0 {
                Final::Dropped
            } else {
                Final::Done
            };
            Processed {
                id: p.id.clone(),
                state,
                processing: Processing { shard: Some(shard), steps: r.steps },
                retry: None,
                deliveries: r.deliveries,
                dead_letters: r.dead,
                exceptions: r.exceptions,
                baseline: r.baseline,
            }
        })
        .collect();
    (processed, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, key_hash: u32) -> Pending {
        Pending { seq: 0, id: id.into(), json: String::new(), key_hash, attempts: 1, errors: vec!["first".into()], message: None }
    }

    #[test]
    fn a_retrying_row_holds_its_key_for_the_rest_of_the_batch() {
        let rows = [row("a1", 1), row("b1", 2), row("a2", 1), row("b2", 2)];
        let mut results: Vec<RowResult> = rows.iter().map(|_| RowResult::default()).collect();
        results[0].retry = Some("flaky".into());
        results[3].dropped = 1;
        let shard = ShardRef { index: 0, of: 1 };
        results[1].allocated = Allocated { ordered: 2, deferred: 1 };
        results[2].allocated = Allocated { ordered: 5, deferred: 5 };
        let (out, notes) = settle(shard, &rows, results);
        assert_eq!(notes.allocated, Allocated { ordered: 2, deferred: 1 }, "only recorded rows count: a2 stays pending, a1 is tried again");
        let ids: Vec<&str> = out.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1", "b2"], "a2 stays claimable behind a1");
        let retry = out[0].retry.as_ref().unwrap();
        assert_eq!(retry.errors, ["first", "flaky"], "every attempt's error, this one last");
        assert!(retry.next_at > crate::store::now_ms());
        assert_eq!((out[1].state.clone(), out[2].state.clone()), (Final::Done, Final::Dropped));
        assert_eq!(out[1].processing.shard, Some(shard));
    }
}

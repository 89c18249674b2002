//! Running a batch of accepted messages through a pipeline's stages and
//! routes, producing the [`Commit`] that records every result at once.
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

use std::collections::HashMap;
use std::time::Instant;

use sha2::{Digest, Sha256};
use syncline_model::{json as mjson, Body, Message};

use super::fields::View;
use super::{keys, LivePipeline};
use crate::config::{OnViolation, RetryPolicy, StageKind};
use crate::runtime::{CallError, CallReport, PluginInstance};
use crate::store::records::{ExceptionDetail, Processing, RouteStep, ShardRef, StageStep, Step, StepOutcome};
use crate::store::{Commit, Final, NewDeadLetter, NewDelivery, NewException, Pending, Processed, Retry};

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
    dropped: usize,
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

/// Why processing stopped before its end.
struct Cancelled;

/// One call, unless processing was cancelled before it.
fn call<R>(cancel: &dyn Fn() -> bool, f: impl FnOnce() -> (Result<R, CallError>, CallReport)) -> Result<(Result<R, CallError>, CallReport), Cancelled> {
    if cancel() {
        return Err(Cancelled);
    }
    Ok(f())
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

/// An allocate stage as a call site.
struct Stage<'a> {
    no: usize,
    live: &'a super::LiveStage,
    max_attempts: u32,
    tenant: &'a str,
    rows: &'a [Pending],
    cancel: &'a dyn Fn() -> bool,
}

/// Runs `batch` through an allocate stage, adding outputs to `next`. A call
/// that fails as a whole (trap or limit) says nothing about any one message:
/// the batch is split in halves, each allocated on its own, down to single
/// messages, so only a message that fails alone is dead-lettered. (The
/// plugin's own error is its answer for the batch it was given.)
fn allocate(at: &Stage, mut batch: Vec<Item>, results: &mut [RowResult], next: &mut Vec<Item>) -> Result<(), Cancelled> {
    let instance = at.live.instance.load_full();
    let instance = instance.as_ref();
    let started = Instant::now();
    // One copy per attempt: the batch's own messages stay the outputs' parents.
    // A copy for the call: the batch's own messages stay the outputs' parents.
    let (result, report) = call(at.cancel, || instance.allocate_reported(batch.iter().map(|it| it.msg.clone()).collect()))?;
    match result {
        Ok(outs) => {
            let index: HashMap<&str, usize> = batch.iter().enumerate().map(|(k, it)| (it.msg.id.as_str(), k)).collect();
            let mut per_parent: Vec<Vec<String>> = vec![Vec::new(); batch.len()];
            let mut produced = Vec::with_capacity(outs.len());
            for o in outs {
                let k = o.causation_id.as_deref().and_then(|c| index.get(c).copied()).unwrap_or(0);
                let n = per_parent[k].len();
                let o = Item { row: batch[k].row, ..adopt(&batch[k].msg, &batch[k].key, o, n, at.tenant) };
                per_parent[k].push(o.msg.id.clone());
                produced.push(o);
            }
            for (k, it) in batch.iter().enumerate() {
                let outcome = StepOutcome::Outputs { batch: Some(batch.len()), outputs: per_parent[k].clone() };
                results[it.row].steps.push(step(at.no, instance, &it.msg.id, started, &report, outcome));
            }
            next.extend(produced);
        }
        Err(e) if batch.len() > 1 && e.failure.is_whole_call() && !e.failure.is_retryable() => {
            tracing::warn!(plugin = %instance.plugin().name, messages = batch.len(), error = %e, "allocate call failed as a whole; splitting its batch");
            let second = batch.split_off(batch.len() / 2);
            allocate(at, batch, results, next)?;
            allocate(at, second, results, next)?;
        }
        Err(e) => {
            for it in &batch {
                results[it.row].steps.push(step(at.no, instance, &it.msg.id, started, &report, error(&e)));
                failed(&mut results[it.row], &at.rows[it.row], at.max_attempts, at.no, instance, &it.msg, &e);
            }
        }
    }
    Ok(())
}

/// Processes `rows` (in order) through `pipeline`; `None` when `cancel`
/// said to stop before the end (nothing of the batch is to be committed).
pub fn process(pipeline: &LivePipeline, shard: ShardRef, rows: &[Pending], cancel: &dyn Fn() -> bool) -> Option<Commit> {
    process_all(pipeline, shard, rows, cancel).ok()
}

fn process_all(pipeline: &LivePipeline, shard: ShardRef, rows: &[Pending], cancel: &dyn Fn() -> bool) -> Result<Commit, Cancelled> {
    let cfg = &pipeline.cfg;
    let tenant = cfg.tenant.as_str();
    let mut results: Vec<RowResult> = rows.iter().map(|_| RowResult::default()).collect();
    let mut items: Vec<Item> = Vec::with_capacity(rows.len());
    for (row, p) in rows.iter().enumerate() {
        match mjson::from_str(&p.json) {
            Ok(msg) => {
                let key = keys::root(tenant, cfg.id.as_str(), msg.idempotency_key.as_deref(), &msg.id);
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
        let mut next = Vec::with_capacity(items.len());
        match stage.cfg.kind {
            StageKind::Transform => {
                for Item { row, msg, key } in items {
                    // Each call takes the version live now: a swap affects the next message.
                    let instance = stage.instance.load_full();
                    let instance = instance.as_ref();
                    let started = Instant::now();
                    let (result, report) = call(cancel, || instance.transform_reported(msg.clone()))?;
                    match result {
                        Ok(outs) => {
                            let outs: Vec<Item> =
                                outs.into_iter().enumerate().map(|(n, o)| Item { row, ..adopt(&msg, &key, o, n, tenant) }).collect();
                            let outputs = outs.iter().map(|o| o.msg.id.clone()).collect();
                            results[row].steps.push(step(no, instance, &msg.id, started, &report, StepOutcome::Outputs { batch: None, outputs }));
                            next.extend(outs);
                        }
                        Err(e) => {
                            results[row].steps.push(step(no, instance, &msg.id, started, &report, error(&e)));
                            failed(&mut results[row], &rows[row], cfg.max_attempts, no, instance, &msg, &e);
                        }
                    }
                }
            }
            StageKind::Validate => {
                for Item { row, msg, key } in items {
                    let instance = stage.instance.load_full();
                    let instance = instance.as_ref();
                    let started = Instant::now();
                    let (result, report) = call(cancel, || instance.validate_reported(msg.clone()))?;
                    match result {
                        Ok(violations) => {
                            let blocking = violations.iter().any(|v| v.is_blocking());
                            let vjson = serde_json::to_value(&violations).unwrap();
                            let r = &mut results[row];
                            if !blocking {
                                let outcome = StepOutcome::Validated { valid: true, violations: vjson, policy: None };
                                r.steps.push(step(no, instance, &msg.id, started, &report, outcome));
                                next.push(Item { row, msg, key });
                                continue;
                            }
                            let text: Vec<String> = violations.iter().map(|v| format!("{}: {} ({})", v.field, v.text, v.code)).collect();
                            let policy = &stage.cfg.on_violation;
                            let outcome = StepOutcome::Validated { valid: false, violations: vjson.clone(), policy: Some(format!("{policy:?}")) };
                            r.steps.push(step(no, instance, &msg.id, started, &report, outcome));
                            match policy {
                                OnViolation::Warn => {
                                    tracing::warn!(message = %msg.id, violations = %text.join("; "), "validation failed; continuing (on-violation = warn)");
                                    next.push(Item { row, msg, key });
                                }
                                OnViolation::Drop => r.dropped += 1,
                                OnViolation::DeadLetter => r.dead.push(dead_letter(no, instance, &msg, format!("validation failed: {}", text.join("; ")), vec![])),
                                OnViolation::Exception(queue) => r.exceptions.push(NewException {
                                    queue: queue.clone(),
                                    message_id: msg.id.clone(),
                                    detail: ExceptionDetail::Violations { violations: violations.clone(), stage: no, plugin: instance.plugin().name.clone() },
                                    json: mjson::to_string(&msg),
                                }),
                            }
                        }
                        Err(e) => {
                            results[row].steps.push(step(no, instance, &msg.id, started, &report, error(&e)));
                            failed(&mut results[row], &rows[row], cfg.max_attempts, no, instance, &msg, &e);
                        }
                    }
                }
            }
            StageKind::Allocate => {
                let max = stage.cfg.batch.max.max(1);
                let mut rest = items.into_iter().peekable();
                while rest.peek().is_some() {
                    let batch: Vec<Item> = rest.by_ref().take(max).collect();
                    let at = Stage { no, live: stage, max_attempts: cfg.max_attempts, tenant, rows, cancel };
                    allocate(&at, batch, &mut results, &mut next)?;
                }
            }
        }
        items = next;
    }

    // Route what is left; canonical exceptions go to their queue instead.
    for Item { row, mut msg, key } in items {
        let r = &mut results[row];
        if let Body::Exception(e) = &msg.body {
            r.exceptions.push(NewException {
                queue: e.queue.clone(),
                message_id: msg.id.clone(),
                detail: ExceptionDetail::Record { code: e.code.clone(), text: e.text.clone(), severity: e.severity.as_str().to_string() },
                json: mjson::to_string(&msg),
            });
            continue;
        }
        let (route, ordering_key) = {
            let view = View::new(&msg);
            (cfg.routes.iter().find(|r| r.when.as_ref().is_none_or(|c| view.matches(c))), view.ordering_key(&cfg.ordering_key))
        };
        match route {
            Some(route) => {
                // What the sink gets carries its scoped key (a message that
                // passed the stages unchanged still has the client's).
                msg.idempotency_key = Some(key);
                let json = mjson::to_string(&msg);
                let sinks: Vec<&str> = route.to.iter().map(|s| s.as_str()).collect();
                r.steps.push(Step::Route(RouteStep { route: msg.id.clone(), to: sinks.iter().map(|s| s.to_string()).collect() }));
                for sink in &route.to {
                    r.deliveries.push(NewDelivery { id: msg.id.clone(), sink: sink.to_string(), ordering_key: ordering_key.clone(), json: json.clone() });
                }
            }
            None => r.dead.push(NewDeadLetter {
                message_id: msg.id.clone(),
                place: "routing".into(),
                plugin: String::new(),
                digest: String::new(),
                reason: "no route matched and the pipeline has no default route".into(),
                attempts: vec![],
                json: mjson::to_string(&msg),
                outcome_unknown: false,
            }),
        }
    }

    // A message set aside for a retry holds its key: later messages of the
    // same key in this batch are not recorded (they stay pending, and are
    // taken once it has gone through).
    let mut held = std::collections::HashSet::new();
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
                    trace: String::new(),
                    retry: Some(Retry { next_at, errors }),
                    deliveries: vec![],
                    dead_letters: vec![],
                    exceptions: vec![],
                };
            }
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
                trace: serde_json::to_string(&Processing { shard: Some(shard), steps: r.steps }).expect("a processing record serializes"),
                retry: None,
                deliveries: r.deliveries,
                dead_letters: r.dead,
                exceptions: r.exceptions,
            }
        })
        .collect();
    Ok(Commit { tenant: tenant.to_string(), pipeline: cfg.id.to_string(), processed })
}

//! A validate stage: one call per message; a message without blocking
//! violations goes on unchanged; one with them is handled by the stage's
//! `on-violation` policy (warn and go on, drop, dead-letter, or park in an
//! exception queue).

use std::time::Instant;

use syncline_model::json as mjson;

use super::{call, dead_letter, error, failed, step, Cancelled, Item, RowResult, Stage};
use crate::config::OnViolation;
use crate::pipeline::capture::Answer;
use crate::store::records::{ExceptionDetail, StepOutcome};
use crate::store::NewException;

/// Validates one message, adding it to `next` when it goes on.
pub(super) fn call_one(at: &Stage, item: Item, results: &mut [RowResult], next: &mut Vec<Item>) -> Result<(), Cancelled> {
    let Item { row, msg, key } = item;
    let instance = at.live.instance.load_full();
    let instance = instance.as_ref();
    let started = Instant::now();
    let (result, report) = call(at, Some(row), instance, || instance.validate_reported(msg.clone()))?;
    at.live.captured(&[&msg], match &result {
        Ok(v) => Answer::Violations(v),
        Err(e) => Answer::Error(e),
    });
    match result {
        Ok(violations) => {
            let blocking = violations.iter().any(|v| v.is_blocking());
            let vjson = serde_json::to_value(&violations).unwrap();
            let r = &mut results[row];
            if !blocking {
                let outcome = StepOutcome::Validated { valid: true, violations: vjson, policy: None };
                r.steps.push(step(at.no, instance, &msg.id, started, &report, outcome));
                next.push(Item { row, msg, key });
                return Ok(());
            }
            let text: Vec<String> = violations.iter().map(|v| format!("{}: {} ({})", v.field, v.text, v.code)).collect();
            let policy = &at.live.cfg.on_violation;
            let outcome = StepOutcome::Validated { valid: false, violations: vjson.clone(), policy: Some(format!("{policy:?}")) };
            r.steps.push(step(at.no, instance, &msg.id, started, &report, outcome));
            match policy {
                OnViolation::Warn => {
                    tracing::warn!(message = %msg.id, violations = %text.join("; "), "validation failed; continuing (on-violation = warn)");
                    next.push(Item { row, msg, key });
                }
                OnViolation::Drop => r.dropped += 1,
                OnViolation::DeadLetter => r.dead.push(dead_letter(at.no, instance, &msg, format!("validation failed: {}", text.join("; ")), vec![])),
                OnViolation::Exception(queue) => r.exceptions.push(NewException {
                    queue: queue.clone(),
                    message_id: msg.id.clone(),
                    detail: ExceptionDetail::Violations { violations: violations.clone(), stage: at.no, plugin: instance.plugin().name.clone() },
                    json: mjson::to_string(&msg),
                }),
            }
        }
        Err(e) => {
            results[row].steps.push(step(at.no, instance, &msg.id, started, &report, error(&e)));
            failed(&mut results[row], &at.rows[row], at.max_attempts, at.no, instance, &msg, &e);
        }
    }
    Ok(())
}

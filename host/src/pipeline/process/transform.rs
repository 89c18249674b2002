//! A transform stage: one call per message; each output becomes a child of
//! its input (derived id and key) and goes on to the next stage.

use std::time::Instant;

use super::{adopt, call, error, failed, note_decision, step, Cancelled, Item, RowResult, Stage};
use crate::pipeline::capture::Answer;
use crate::store::records::StepOutcome;

/// Transforms one message, adding its outputs to `next`.
pub(super) fn call_one(at: &Stage, item: Item, results: &mut [RowResult], next: &mut Vec<Item>) -> Result<(), Cancelled> {
    let Item { row, msg, key } = item;
    // Each call takes the version live now: a swap affects the next message.
    let instance = at.live.instance.load_full();
    let instance = instance.as_ref();
    let started = Instant::now();
    let (result, report) = call(at, Some(row), instance, || instance.transform_reported(msg.clone()))?;
    at.live.captured(&[&msg], match &result {
        Ok(outs) => Answer::Outputs(outs),
        Err(e) => Answer::Error(e),
    });
    match result {
        Ok(outs) => {
            let outs: Vec<Item> =
                outs.into_iter().enumerate().map(|(n, o)| Item { row, ..adopt(&msg, &key, o, n, at.tenant) }).collect();
            for o in &outs {
                note_decision(&mut results[row], &instance.plugin().name, &msg, &o.msg);
            }
            let outputs = outs.iter().map(|o| o.msg.id.clone()).collect();
            results[row].steps.push(step(at.no, instance, &msg.id, started, &report, StepOutcome::Outputs { batch: None, outputs }));
            next.extend(outs);
        }
        Err(e) => {
            results[row].steps.push(step(at.no, instance, &msg.id, started, &report, error(&e)));
            failed(&mut results[row], &at.rows[row], at.max_attempts, at.no, instance, &msg, &e);
        }
    }
    Ok(())
}

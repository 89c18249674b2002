//! An allocate stage: a batch per call; outputs matched to their parents (a
//! message passed through by its own id, a derived one by its causation
//! id); a call that fails as a whole is split in halves.

use std::collections::HashMap;
use std::time::Instant;

use syncline_model::Kind;

use super::{adopt, call, error, failed, note_decision, step, Cancelled, Item, RowResult, Stage};
use crate::pipeline::capture::Answer;
use crate::store::records::StepOutcome;

/// Runs `batch` through an allocate stage, adding outputs to `next`. A call
/// that fails as a whole (trap or limit) says nothing about any one message:
/// the batch is split in halves, each allocated on its own, down to single
/// messages, so only a message that fails alone is dead-lettered. (The
/// plugin's own error is its answer for the batch it was given.)
pub(super) fn call_batch(at: &Stage, mut batch: Vec<Item>, results: &mut [RowResult], next: &mut Vec<Item>) -> Result<(), Cancelled> {
    let instance = at.live.instance.load_full();
    let instance = instance.as_ref();
    let started = Instant::now();
    // A copy for the call: the batch's own messages stay the outputs' parents.
    let (result, report) = call(at, None, instance, || instance.allocate_reported(batch.iter().map(|it| it.msg.clone()).collect()))?;
    let inputs: Vec<&syncline_model::Message> = batch.iter().map(|it| &it.msg).collect();
    at.live.captured(&inputs, match &result {
        Ok(outs) => Answer::Outputs(outs),
        Err(e) => Answer::Error(e),
    });
    match result {
        Ok(outs) => {
            let index: HashMap<&str, usize> = batch.iter().enumerate().map(|(k, it)| (it.msg.id.as_str(), k)).collect();
            let mut per_parent: Vec<Vec<String>> = vec![Vec::new(); batch.len()];
            let mut produced = Vec::with_capacity(outs.len());
            // Which inputs became an order (for the acceptance rate).
            let mut ordered = vec![false; batch.len()];
            for o in outs {
                // A message passed through unchanged keeps its own id; a
                // derived one names its input as its cause.
                let k = index
                    .get(o.id.as_str())
                    .or_else(|| o.causation_id.as_deref().and_then(|c| index.get(c)))
                    .copied()
                    .unwrap_or(0);
                ordered[k] |= matches!(o.body.kind(), Kind::PurchaseRequisition | Kind::TransferProposal);
                let n = per_parent[k].len();
                let o = Item { row: batch[k].row, ..adopt(&batch[k].msg, &batch[k].key, o, n, at.tenant) };
                note_decision(&mut results[batch[k].row], &instance.plugin().name, &batch[k].msg, &o.msg);
                per_parent[k].push(o.msg.id.clone());
                produced.push(o);
            }
            for (k, it) in batch.iter().enumerate() {
                if it.msg.body.kind() == Kind::ReplenishmentRecommendation {
                    let a = &mut results[it.row].allocated;
                    if ordered[k] {
                        a.ordered += 1
                    } else {
                        a.deferred += 1
                    }
                }
                let outcome = StepOutcome::Outputs { batch: Some(batch.len()), outputs: per_parent[k].clone() };
                results[it.row].steps.push(step(at.no, instance, &it.msg.id, started, &report, outcome));
            }
            next.extend(produced);
        }
        Err(e) if batch.len() > 1 && e.failure.is_whole_call() && !e.failure.is_retryable() => {
            tracing::warn!(plugin = %instance.plugin().name, messages = batch.len(), error = %e, "allocate call failed as a whole; splitting its batch");
            let second = batch.split_off(batch.len() / 2);
            call_batch(at, batch, results, next)?;
            call_batch(at, second, results, next)?;
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

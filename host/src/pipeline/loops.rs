//! The closed loop: a purchase requisition or transfer proposal delivered
//! by a pipeline with `expect-status` waits for an execution status. The
//! store opens the loop with the delivery's acknowledgement and closes it
//! when a status answering it (same correlation, or `order-ref` = the
//! reference the downstream gave) is accepted. Here, once a second: a loop
//! past its due time parks an exception in the pipeline's queue (with the
//! delivered order) and is audited; a loop closed after that — a late
//! status — resolves its exception.

use super::{TopologyView, WorkerCtx};
use crate::store::records::{AuditEntry, AuditEvent, ExceptionDetail, LoopFilter, Settle};
use crate::store::NewException;

/// Loops handled per pass.
const PAGE: usize = 500;

/// Parks an exception for each loop past its due time, and resolves the
/// exceptions of loops a late status closed.
pub(super) fn check(ctx: &WorkerCtx, topology: &TopologyView, now: i64) {
    let store = ctx.store();
    let overdue = LoopFilter { state: Some("open".into()), due_before: Some(now), ..Default::default() };
    match store.loops(&overdue, 0, PAGE) {
        Ok(rows) => {
            let topology = topology.current();
            for l in rows {
                let policy = topology.config.pipeline(&l.tenant, &l.pipeline).and_then(|p| p.expect_status.clone());
                let queue = policy.as_ref().map_or_else(|| "open-loops".to_string(), |p| p.queue.clone());
                let order = store.trace(&l.message_id).ok().flatten().and_then(|t| t.deliveries.into_iter().find(|d| d.sink == l.sink));
                let text = format!(
                    "no execution status for {} {} delivered to {} (reference {}) by {}",
                    l.kind,
                    l.message_id,
                    l.sink,
                    l.reference.as_deref().unwrap_or("-"),
                    crate::pipeline::rfc3339(l.due_at)
                );
                let exception = NewException {
                    queue,
                    message_id: l.message_id.clone(),
                    detail: ExceptionDetail::Record { code: "no-execution-status".into(), text: text.clone(), severity: "error".into() },
                    json: order.map_or_else(|| "{}".into(), |d| d.message.to_string()),
                };
                match store.loop_overdue(l.id, exception) {
                    Ok(Some(exception_id)) => {
                        tracing::warn!(tenant = %l.tenant, pipeline = %l.pipeline, message = %l.message_id, exception = exception_id, "{text}");
                        let event = AuditEvent::LoopOverdue { id: l.id, message_id: l.message_id.clone(), exception_id };
                        if let Err(e) = store.audit(&AuditEntry { actor: "host".into(), tenant: Some(l.tenant.clone()), event }) {
                            tracing::warn!(error = %e, "cannot audit an overdue loop");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(id = l.id, error = %e, "cannot record an overdue loop"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot check open loops"),
    }
    let late = LoopFilter { closed_late_unsettled: true, ..Default::default() };
    let Ok(rows) = store.loops(&late, 0, PAGE) else { return };
    for l in rows {
        let Some(exception_id) = l.exception_id else { continue };
        let comment = format!("closed by execution status {}, after its due time", l.closed_by.as_deref().unwrap_or("?"));
        let settle = Settle::Resolve { comment };
        match store.settle_exception(exception_id, &settle) {
            Ok(Some(record)) => {
                tracing::info!(exception = exception_id, message = %l.message_id, "a late execution status closed its loop");
                let event = AuditEvent::ExceptionSettled { id: exception_id, queue: record.queue, settle };
                if let Err(e) = store.audit(&AuditEntry { actor: "host".into(), tenant: Some(l.tenant.clone()), event }) {
                    tracing::warn!(error = %e, "cannot audit a closed loop");
                }
            }
            Ok(None) | Err(crate::store::StoreError::Conflict(_)) => {}
            Err(e) => tracing::warn!(exception = exception_id, error = %e, "cannot resolve a closed loop's exception"),
        }
    }
}

//! The fallback baseline. A planning pipeline with `baseline` keeps the
//! latest approved forecast or recommendation per item and location (its
//! routed outputs, recorded with their commit). When its feed goes stale —
//! nothing approved for `freshness` — the host reports it once (an
//! exception in the baseline's queue, a `baseline-stale` audit event) and
//! releases the baseline to every execution pipeline that falls back on it
//! with `release = "auto"`, each message flagged `fallback: true`, so
//! execution goes on with the last approved plan instead of halting. When
//! the feed delivers again it switches back (`baseline-recovered`).
//!
//! A release is idempotent per stale episode: each message's key names the
//! planning pipeline, the record and the time the feed last delivered, so a
//! restart during an episode does not release the same record twice.

use std::collections::HashMap;

use syncline_model::{json as mjson, Message};

use super::{Ingest, LivePipeline, TopologyView, WorkerCtx};
use crate::store::records::{AuditEntry, AuditEvent, BaselineRecord, ExceptionDetail};
use crate::store::{NewException, Store};

/// Stale planning feeds: (tenant, pipeline) -> when the feed last delivered.
pub(crate) type Stale = HashMap<(String, String), i64>;

/// Releases the baseline of `from` (its records) into `to`, each flagged as a
/// fallback; `episode` (when the feed last delivered) scopes the keys.
/// Returns how many were accepted anew.
///
/// # Errors
///
/// What ingest says.
pub fn release(ingest: &Ingest, from: &str, records: &[BaselineRecord], to: &LivePipeline, episode: i64) -> Result<usize, String> {
    let mut prepared = Vec::with_capacity(records.len());
    for r in records {
        let mut msg: Message = mjson::from_value(r.message.clone()).map_err(|e| format!("a baseline record of {from} does not read: {e}"))?;
        msg.id = String::new();
        msg.idempotency_key = Some(format!("fallback/{from}/{}/{}/{}/{episode}", r.kind, r.item, r.location));
        msg.set_header("fallback", "true");
        msg.set_header("baseline-from", from);
        msg.set_header("baseline-message-id", r.message_id.as_str());
        prepared.push(ingest.prepare(to, msg, "fallback", None).map_err(|e| e.to_string())?);
    }
    let outcomes = ingest.accept(to, prepared).map_err(|e| e.to_string())?;
    Ok(outcomes.iter().filter(|o| matches!(o, crate::store::IngestOutcome::Accepted { .. })).count())
}

/// Checks every planning baseline at `now`: reports feeds that went stale
/// (and releases their baselines where configured) and those that recovered.
pub(crate) fn check(ctx: &WorkerCtx, topology: &TopologyView, ingest: &Ingest, now: i64, stale: &mut Stale) {
    let t = topology.current();
    for p in t.pipelines.values() {
        let Some(policy) = &p.cfg.baseline else { continue };
        let (tenant, id) = (p.cfg.tenant.to_string(), p.cfg.id.to_string());
        let updated = match ctx.store().baseline_updated(&tenant, &id) {
            Ok(Some(at)) => at,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%tenant, pipeline = %id, error = %e, "cannot read a planning baseline");
                continue;
            }
        };
        let key = (tenant.clone(), id.clone());
        let age_ms = now - updated;
        if age_ms <= policy.freshness.as_millis() as i64 {
            if stale.remove(&key).is_some() {
                tracing::info!(%tenant, pipeline = %id, "planning feed delivers again: the baseline is no longer released");
                audit(ctx.store(), &AuditEvent::BaselineRecovered { tenant, pipeline: id });
            }
            continue;
        }
        if stale.get(&key) == Some(&updated) {
            continue;
        }
        // A new stale episode: report it and release where configured.
        let records = match ctx.store().baselines(&tenant, &id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%tenant, pipeline = %id, error = %e, "cannot read a planning baseline");
                continue;
            }
        };
        let mut released = Vec::new();
        let targets = t.pipelines.values().filter(|q| q.cfg.tenant == p.cfg.tenant && q.cfg.fallback.as_ref().is_some_and(|f| f.auto && f.from == p.cfg.id));
        for to in targets {
            match release(ingest, &id, &records, to, updated) {
                Ok(n) => released.push((to.cfg.id.to_string(), n)),
                Err(e) => {
                    tracing::warn!(%tenant, from = %id, to = %to.cfg.id, error = %e, "cannot release a planning baseline; trying again");
                    return;
                }
            }
        }
        tracing::warn!(%tenant, pipeline = %id, age_ms, ?released, "planning feed stale: its baseline is served");
        let text = format!("nothing approved from {id} for {} s (freshness {} s); the baseline of {} record(s) is served", age_ms / 1000, policy.freshness.as_secs(), records.len());
        let exception = NewException {
            queue: policy.queue.clone(),
            message_id: format!("baseline/{id}"),
            detail: ExceptionDetail::Record { code: "planning-feed-stale".into(), text, severity: "warning".into() },
            json: serde_json::json!({"pipeline": id, "last-approved-at": updated}).to_string(),
        };
        if let Err(e) = ctx.store().park(&tenant, &id, exception) {
            tracing::warn!(error = %e, "cannot park the stale-feed exception");
        }
        audit(ctx.store(), &AuditEvent::BaselineStale { tenant: tenant.clone(), pipeline: id.clone(), age_ms, released });
        stale.insert(key, updated);
    }
}

fn audit(store: &dyn Store, event: &AuditEvent) {
    if let Err(e) = store.audit(&AuditEntry::host(event.clone())) {
        tracing::warn!(error = %e, kind = event.kind(), "cannot record an audit event");
    }
}

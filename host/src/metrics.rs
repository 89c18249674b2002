//! The host's live instruments, in Prometheus' model (`prometheus-client`):
//! what is counted and timed as it happens — messages accepted, stage
//! results and their time, plugin calls by result, deliveries by outcome and
//! their latency from acceptance, dead letters and exceptions raised — and
//! the business KPIs that come from the same events: recommendations turned
//! into orders or deferred by the rules, replenishment delivered late,
//! inventory event latency.
//!
//! Everything here is recorded only once it is durable (after the store
//! acknowledged the batch), so a batch processed again after a crash or a
//! reload is not counted twice. Values read at scrape time from the store
//! and the live topology (queue depths and ages, open dead letters and
//! exceptions, loops, breakers) are the `/metrics` endpoint's
//! ([`crate::api`]); this module owns the registry and what is recorded
//! into it. Label values come from the config (tenants, pipelines, stages,
//! sinks, plugins) or fixed sets, never from message content, so the number
//! of series stays bounded.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use syncline_model::Kind;

use crate::store::records::{Step, StepOutcome};
use crate::store::Commit;

/// A family of histograms sharing one bucket layout.
type Timing<L> = Family<L, Histogram, fn() -> Histogram>;

/// Plugin calls: 50 µs to 52 s.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 11))
}

/// Acceptance to delivery: 10 ms to about 3 h.
fn flow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 11))
}

/// A business event to its delivery: 1 s to about 3 days.
fn event_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 10))
}

/// A pipeline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    /// Tenant.
    pub tenant: String,
    /// Pipeline id.
    pub pipeline: String,
}

/// A stage of a pipeline and the plugin that ran it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    tenant: String,
    pipeline: String,
    stage: String,
    plugin: String,
}

/// A stage's result for one message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageResult {
    tenant: String,
    pipeline: String,
    stage: String,
    plugin: String,
    /// `passed`, `dropped`, `invalid` or `failed`.
    outcome: &'static str,
}

/// A plugin and the world it was called in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    world: &'static str,
}

/// A plugin call's result: `ok` or the failure's class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginResult {
    plugin: String,
    world: &'static str,
    result: &'static str,
}

/// A sink's deliveries by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink: String,
    /// `delivered`, `retry` or `dead-lettered`.
    outcome: &'static str,
}

/// Deliveries a sink's workers took, by where from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkFrom {
    sink: String,
    /// `memory` or `store`.
    from: &'static str,
}

/// Messages a pipeline's shards took, by where from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineFrom {
    tenant: String,
    pipeline: String,
    /// `memory` or `store`.
    from: &'static str,
}

/// A tenant's messages at a sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantSink {
    tenant: String,
    sink: String,
}

/// A tenant's messages of one kind at a sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantSinkKind {
    tenant: String,
    sink: String,
    kind: &'static str,
}

/// Where messages were dead-lettered: `pipeline/ID` or `sink/NAME`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLabels {
    tenant: String,
    place: String,
}

/// A pipeline's messages out to a sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    tenant: String,
    pipeline: String,
    sink: String,
}

/// An exception queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    queue: String,
}

/// What became of replenishment recommendations at an allocate stage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecommendationLabels {
    tenant: String,
    pipeline: String,
    /// `ordered` (a requisition or transfer proposal came out) or
    /// `deferred` (the rules answered with an exception or nothing).
    outcome: &'static str,
}

/// Plugin calls by plugin, world and result, and their time. Shared by
/// the runtime (which records) and [`Metrics`] (which exposes).
#[derive(Clone)]
pub struct PluginCalls {
    calls: Family<PluginResult, Counter>,
    seconds: Timing<PluginLabels>,
}

impl Default for PluginCalls {
    fn default() -> PluginCalls {
        PluginCalls { calls: Family::default(), seconds: Family::new_with_constructor(call_buckets) }
    }
}

impl PluginCalls {
    /// The meter of one plugin in one world; its `ok` series and timing are
    /// resolved once, so a call records without a lookup.
    pub fn meter(&self, plugin: &str, world: &'static str) -> CallMeter {
        let ok = self.calls.get_or_create_owned(&PluginResult { plugin: plugin.to_string(), world, result: "ok" });
        let seconds = self.seconds.get_or_create_owned(&PluginLabels { plugin: plugin.to_string(), world });
        CallMeter { calls: self.calls.clone(), plugin: plugin.to_string(), world, ok, seconds }
    }
}

/// Records one plugin's calls.
#[derive(Clone)]
pub struct CallMeter {
    calls: Family<PluginResult, Counter>,
    plugin: String,
    world: &'static str,
    ok: Counter,
    seconds: Histogram,
}

impl CallMeter {
    /// A call that took `elapsed` and ended with `result` (`ok` or a
    /// failure class).
    pub fn record(&self, result: &'static str, elapsed: Duration) {
        self.seconds.observe(elapsed.as_secs_f64());
        if result == "ok" {
            self.ok.inc();
        } else {
            self.calls.get_or_create(&PluginResult { plugin: self.plugin.clone(), world: self.world, result }).inc();
        }
    }
}

/// What became of the recommendations of a processed batch (counted only
/// for messages whose processing was recorded, not those set aside to be
/// tried again).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// Turned into a requisition or a transfer proposal.
    pub ordered: u64,
    /// Answered with an exception or nothing.
    pub deferred: u64,
}

/// What a processed batch did, taken from its commit before the store
/// takes it (the commit holds every message; this only what is counted).
#[derive(Debug, Clone)]
pub struct Observed {
    tenant: String,
    pipeline: String,
    /// Each stage step: stage number, plugin, call time (µs), outcome.
    stages: Vec<(usize, String, u64, &'static str)>,
    dead_letters: u64,
    /// The queue of each exception raised.
    exceptions: Vec<String>,
    /// The sink of each delivery queued.
    routed: Vec<String>,
    allocated: Allocated,
}

impl Observed {
    /// What `commit` records, with its recommendations' fate.
    pub fn of(commit: &Commit, allocated: Allocated) -> Observed {
        let mut stages = Vec::new();
        let (mut dead_letters, mut exceptions, mut routed) = (0, Vec::new(), Vec::new());
        for row in &commit.processed {
            for step in &row.processing.steps {
                let Step::Stage(s) = step else { continue };
                let outcome = match &s.outcome {
                    StepOutcome::Error { .. } => "failed",
                    StepOutcome::Outputs { outputs, .. } if outputs.is_empty() => "dropped",
                    StepOutcome::Outputs { .. } | StepOutcome::Validated { valid: true, .. } => "passed",
                    StepOutcome::Validated { .. } => "invalid",
                };
                stages.push((s.stage, s.plugin.clone(), s.micros, outcome));
            }
            dead_letters += row.dead_letters.len() as u64;
            exceptions.extend(row.exceptions.iter().map(|e| e.queue.clone()));
            routed.extend(row.deliveries.iter().map(|d| d.sink.clone()));
        }
        Observed { tenant: commit.tenant.clone(), pipeline: commit.pipeline.clone(), stages, dead_letters, exceptions, routed, allocated }
    }
}

/// A message a sink call recorded an outcome for.
#[derive(Debug, Clone)]
pub struct DeliveryFacts {
    /// Tenant.
    pub tenant: String,
    /// Its kind.
    pub kind: Kind,
    /// When it was accepted (ms; the timestamp of its ULID).
    pub accepted_ms: Option<i64>,
    /// For an inventory position, when the stock was counted (its `as-of`,
    /// else the message's `occurred-at`), in ms.
    pub occurred_ms: Option<i64>,
    /// Its tier's `alert-after`: delivered later, it was delayed.
    pub alert_after: Option<Duration>,
    /// `delivered`, `retry` or `dead-lettered`.
    pub outcome: &'static str,
}

/// Every live instrument, and the registry exposing them.
pub struct Metrics {
    registry: Registry,
    accepted: Family<PipelineLabels, Counter>,
    duplicates: Family<PipelineLabels, Counter>,
    source_refused: Family<PipelineLabels, Counter>,
    routed: Family<RouteLabels, Counter>,
    stage_messages: Family<StageResult, Counter>,
    stage_seconds: Timing<StageLabels>,
    deliveries: Family<SinkOutcome, Counter>,
    taken: Family<SinkFrom, Counter>,
    messages_taken: Family<PipelineFrom, Counter>,
    delivery_latency: Timing<TenantSink>,
    dead_letters: Family<DeadLabels, Counter>,
    exceptions: Family<QueueLabels, Counter>,
    recommendations: Family<RecommendationLabels, Counter>,
    delayed: Family<TenantSinkKind, Counter>,
    inventory_latency: Timing<TenantSink>,
}

impl Metrics {
    /// The instruments, with the runtime's plugin calls among them.
    pub fn new(plugin_calls: &PluginCalls) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("syncline"),
            accepted: Family::default(),
            duplicates: Family::default(),
            source_refused: Family::default(),
            routed: Family::default(),
            stage_messages: Family::default(),
            stage_seconds: Family::new_with_constructor(call_buckets),
            deliveries: Family::default(),
            taken: Family::default(),
            messages_taken: Family::default(),
            delivery_latency: Family::new_with_constructor(flow_buckets),
            dead_letters: Family::default(),
            exceptions: Family::default(),
            recommendations: Family::default(),
            delayed: Family::default(),
            inventory_latency: Family::new_with_constructor(event_buckets),
        };
        let r = &mut m.registry;
        r.register("messages_accepted", "Messages accepted (durably stored) per pipeline, from ingest and sources.", m.accepted.clone());
        r.register("messages_duplicate", "Messages refused as duplicates of an earlier idempotency key, per pipeline.", m.duplicates.clone());
        r.register(
            "source_refused",
            "Messages a pipeline's source plugin returned that could not be accepted (malformed, another tenant's, larger than the store keeps), per pipeline; the source moves past them, and each is logged with why.",
            m.source_refused.clone(),
        );
        r.register("messages_routed", "Messages a pipeline queued for a sink (its messages out), per tenant, pipeline and sink.", m.routed.clone());
        r.register("stage_messages", "Messages through a stage by outcome: passed, dropped, invalid, failed.", m.stage_messages.clone());
        r.register("stage_seconds", "Time of a stage's plugin call per message (an allocate batch's call counts for each of its messages).", m.stage_seconds.clone());
        r.register("plugin_calls", "Plugin calls by plugin, world and result: ok, or the failure class (plugin-error, timeout, memory-limit, output-limit, trap, contract, instantiate).", plugin_calls.calls.clone());
        r.register("plugin_call_seconds", "Time of each plugin call, waiting in host calls included.", plugin_calls.seconds.clone());
        r.register("messages_taken", "Messages pipeline shards took to process, by where from: memory (handed over when accepted) or store (read back: after a start, a retry, a replay, or while a backlog drains).", m.messages_taken.clone());
        r.register("deliveries", "Delivery attempts per sink by outcome: delivered, retry, dead-lettered.", m.deliveries.clone());
        r.register("deliveries_taken", "Deliveries sink workers took for a call, by where from: memory (handed over when their commit was durable) or store (read back: after a start, a retry, a replay, or while a backlog drains).", m.taken.clone());
        r.register("delivery_latency_seconds", "From a message's acceptance to the delivery of what it became, per tenant and sink.", m.delivery_latency.clone());
        r.register("dead_lettered", "Messages dead-lettered, per tenant and place (pipeline/ID or sink/NAME).", m.dead_letters.clone());
        r.register("exceptions_raised", "Messages parked in an exception queue, per tenant and queue.", m.exceptions.clone());
        r.register("recommendations", "Replenishment recommendations at an allocate stage: ordered (a requisition or transfer proposal came out) or deferred by the rules. Acceptance rate: ordered / (ordered + deferred).", m.recommendations.clone());
        r.register("replenishment_delayed", "Requisitions, transfer proposals and recommendations delivered later after their acceptance than their tier's alert-after.", m.delayed.clone());
        r.register("inventory_event_latency_seconds", "From an inventory position's as-of (when the stock was counted) to its delivery, per tenant and sink.", m.inventory_latency.clone());
        m
    }

    /// The registry, for the exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Messages of `pipeline` stored: `accepted` new, `duplicate` refused.
    pub fn ingested(&self, tenant: &str, pipeline: &str, accepted: u64, duplicate: u64) {
        let labels = PipelineLabels { tenant: tenant.to_string(), pipeline: pipeline.to_string() };
        if accepted > 0 {
            self.accepted.get_or_create(&labels).inc_by(accepted);
        }
        if duplicate > 0 {
            self.duplicates.get_or_create(&labels).inc_by(duplicate);
        }
    }

    /// A message `pipeline`'s source returned and could not be accepted.
    pub fn source_refused(&self, tenant: &str, pipeline: &str) {
        self.source_refused.get_or_create(&PipelineLabels { tenant: tenant.to_string(), pipeline: pipeline.to_string() }).inc();
    }

    /// A processed batch, once the store acknowledged it.
    pub fn processed(&self, batch: Observed) {
        let Observed { tenant, pipeline, mut stages, dead_letters, exceptions, mut routed, allocated } = batch;
        // One look-up per label set and batch, not per message: a batch's
        // messages mostly share their stages, plugins and sinks.
        routed.sort_unstable();
        for same in routed.chunk_by(|a, b| a == b) {
            self.routed.get_or_create(&RouteLabels { tenant: tenant.clone(), pipeline: pipeline.clone(), sink: same[0].clone() }).inc_by(same.len() as u64);
        }
        stages.sort_unstable_by(|a, b| (a.0, &a.1, a.3).cmp(&(b.0, &b.1, b.3)));
        for step in stages.chunk_by(|a, b| (a.0, &a.1) == (b.0, &b.1)) {
            let (stage, plugin) = (step[0].0.to_string(), step[0].1.clone());
            let labels = StageLabels { tenant: tenant.clone(), pipeline: pipeline.clone(), stage, plugin };
            let timing = self.stage_seconds.get_or_create(&labels);
            for (_, _, micros, _) in step {
                timing.observe(*micros as f64 / 1e6);
            }
            drop(timing);
            for same in step.chunk_by(|a, b| a.3 == b.3) {
                let StageLabels { tenant, pipeline, stage, plugin } = labels.clone();
                self.stage_messages.get_or_create(&StageResult { tenant, pipeline, stage, plugin, outcome: same[0].3 }).inc_by(same.len() as u64);
            }
        }
        if dead_letters > 0 {
            let place = format!("pipeline/{pipeline}");
            self.dead_letters.get_or_create(&DeadLabels { tenant: tenant.clone(), place }).inc_by(dead_letters);
        }
        for queue in exceptions {
            self.exceptions.get_or_create(&QueueLabels { tenant: tenant.clone(), queue }).inc();
        }
        let count = |outcome, n: u64| {
            if n > 0 {
                self.recommendations.get_or_create(&RecommendationLabels { tenant: tenant.clone(), pipeline: pipeline.clone(), outcome }).inc_by(n);
            }
        };
        count("ordered", allocated.ordered);
        count("deferred", allocated.deferred);
    }

    /// `n` deliveries a worker of `sink` took for a call, from `memory` or the `store`.
    pub fn taken(&self, sink: &str, from: &'static str, n: usize) {
        if n > 0 {
            self.taken.get_or_create(&SinkFrom { sink: sink.to_string(), from }).inc_by(n as u64);
        }
    }

    /// `n` messages a shard of `tenant`'s `pipeline` took to process, from
    /// `memory` or the `store`.
    pub fn messages_taken(&self, tenant: &str, pipeline: &str, from: &'static str, n: usize) {
        if n > 0 {
            self.messages_taken.get_or_create(&PipelineFrom { tenant: tenant.to_string(), pipeline: pipeline.to_string(), from }).inc_by(n as u64);
        }
    }

    /// Outcomes a sink's worker recorded, at `now_ms`.
    pub fn delivered(&self, sink: &str, facts: &[DeliveryFacts], now_ms: i64) {
        for f in facts {
            self.deliveries.get_or_create(&SinkOutcome { sink: sink.to_string(), outcome: f.outcome }).inc();
            if f.outcome == "dead-lettered" {
                self.dead_letters.get_or_create(&DeadLabels { tenant: f.tenant.clone(), place: format!("sink/{sink}") }).inc();
            }
            if f.outcome != "delivered" {
                continue;
            }
            let at = TenantSink { tenant: f.tenant.clone(), sink: sink.to_string() };
            if let Some(accepted) = f.accepted_ms {
                let waited = (now_ms - accepted).max(0);
                self.delivery_latency.get_or_create(&at).observe(waited as f64 / 1000.0);
                let replenishment = matches!(f.kind, Kind::PurchaseRequisition | Kind::TransferProposal | Kind::ReplenishmentRecommendation);
                if replenishment && f.alert_after.is_some_and(|limit| waited as u128 > limit.as_millis()) {
                    self.delayed.get_or_create(&TenantSinkKind { tenant: f.tenant.clone(), sink: sink.to_string(), kind: f.kind.as_str() }).inc();
                }
            }
            if let (Kind::InventoryPosition, Some(occurred)) = (f.kind, f.occurred_ms) {
                self.inventory_latency.get_or_create(&at).observe((now_ms - occurred).max(0) as f64 / 1000.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Processing, StageStep};
    use crate::store::{Final, Processed};

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    fn step(stage: usize, plugin: &str, outcome: StepOutcome) -> Step {
        Step::Stage(StageStep { stage, plugin: plugin.into(), digest: String::new(), input: String::new(), micros: 1500, outcome, logs_dropped: None })
    }

    #[test]
    fn a_processed_batch_counts_each_stage_result_and_the_recommendations() {
        let m = Metrics::new(&PluginCalls::default());
        let row = |steps| Processed {
            id: "m".into(),
            state: Final::Done,
            processing: Processing { shard: None, steps },
            retry: None,
            deliveries: vec![],
            dead_letters: vec![],
            exceptions: vec![],
            baseline: vec![],
        };
        let passed = StepOutcome::Outputs { batch: None, outputs: vec!["o".into()] };
        let commit = Commit {
            audit: vec![],
            tenant: "acme".into(),
            pipeline: "recs".into(),
            processed: vec![
                row(vec![step(1, "mapper", passed.clone()), step(2, "rules", passed.clone())]),
                row(vec![step(1, "mapper", StepOutcome::Outputs { batch: None, outputs: vec![] })]),
                row(vec![step(1, "mapper", StepOutcome::Error { error: "boom".into() })]),
                // Counted with the first row's, though not beside it.
                row(vec![step(1, "mapper", passed.clone()), step(2, "rules", passed.clone())]),
            ],
        };
        m.processed(Observed::of(&commit, Allocated { ordered: 3, deferred: 1 }));
        let t = text(&m);
        for line in [
            r#"syncline_stage_messages_total{tenant="acme",pipeline="recs",stage="1",plugin="mapper",outcome="passed"} 2"#,
            r#"syncline_stage_messages_total{tenant="acme",pipeline="recs",stage="1",plugin="mapper",outcome="dropped"} 1"#,
            r#"syncline_stage_messages_total{tenant="acme",pipeline="recs",stage="1",plugin="mapper",outcome="failed"} 1"#,
            r#"syncline_stage_messages_total{tenant="acme",pipeline="recs",stage="2",plugin="rules",outcome="passed"} 2"#,
            r#"syncline_stage_seconds_count{tenant="acme",pipeline="recs",stage="1",plugin="mapper"} 4"#,
            r#"syncline_stage_seconds_count{tenant="acme",pipeline="recs",stage="2",plugin="rules"} 2"#,
            r#"syncline_recommendations_total{tenant="acme",pipeline="recs",outcome="ordered"} 3"#,
            r#"syncline_recommendations_total{tenant="acme",pipeline="recs",outcome="deferred"} 1"#,
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
    }

    #[test]
    fn deliveries_time_their_flow_and_count_late_replenishment_and_inventory_latency() {
        let m = Metrics::new(&PluginCalls::default());
        let now = 10_000_000;
        let fact = |kind, outcome, waited_ms: i64| DeliveryFacts {
            tenant: "acme".into(),
            kind,
            accepted_ms: Some(now - waited_ms),
            occurred_ms: Some(now - 90_000),
            alert_after: Some(Duration::from_secs(60)),
            outcome,
        };
        m.delivered(
            "erp",
            &[
                fact(Kind::PurchaseRequisition, "delivered", 120_000),
                fact(Kind::PurchaseRequisition, "delivered", 1_000),
                fact(Kind::TransferProposal, "retry", 500_000),
                fact(Kind::InventoryPosition, "delivered", 200_000),
                fact(Kind::Forecast, "dead-lettered", 5),
            ],
            now,
        );
        let t = text(&m);
        for line in [
            r#"syncline_deliveries_total{sink="erp",outcome="delivered"} 3"#,
            r#"syncline_deliveries_total{sink="erp",outcome="retry"} 1"#,
            r#"syncline_deliveries_total{sink="erp",outcome="dead-lettered"} 1"#,
            r#"syncline_dead_lettered_total{tenant="acme",place="sink/erp"} 1"#,
            r#"syncline_replenishment_delayed_total{tenant="acme",sink="erp",kind="purchase-requisition"} 1"#,
            r#"syncline_delivery_latency_seconds_count{tenant="acme",sink="erp"} 3"#,
            r#"syncline_inventory_event_latency_seconds_sum{tenant="acme",sink="erp"} 90.0"#,
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
        assert!(!t.contains(r#"kind="inventory-position"}"#), "an inventory position is not replenishment:\n{t}");
    }

    #[test]
    fn a_plugin_meter_counts_successes_and_failures_by_class() {
        let calls = PluginCalls::default();
        let m = Metrics::new(&calls);
        let meter = calls.meter("json-mapper", "transform");
        meter.record("ok", Duration::from_millis(2));
        meter.record("ok", Duration::from_millis(3));
        meter.record("timeout", Duration::from_secs(2));
        let t = text(&m);
        assert!(t.contains(r#"syncline_plugin_calls_total{plugin="json-mapper",world="transform",result="ok"} 2"#), "{t}");
        assert!(t.contains(r#"syncline_plugin_calls_total{plugin="json-mapper",world="transform",result="timeout"} 1"#), "{t}");
        assert!(t.contains(r#"syncline_plugin_call_seconds_count{plugin="json-mapper",world="transform"} 3"#), "{t}");
    }
}

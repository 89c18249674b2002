//! `GET /metrics`: the OpenMetrics text a Prometheus server scrapes. The
//! live instruments ([`crate::metrics::Metrics`]) first, then what is read
//! at scrape time into a registry made for the scrape: the store's backlog
//! (queue depths and ages, open dead letters and exceptions, loops), the
//! breakers, holds and push-backs of sinks and stages, reloads, and plugin
//! log lines dropped.

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ApiError, App};
use crate::store::{now_ms, Backlog};

/// Label pairs of a series read at scrape time.
type Labels = Vec<(&'static str, String)>;

/// A registry filled for one scrape.
struct Scrape(Registry);

impl Scrape {
    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.0.register(name, help, f.clone());
        f
    }

    fn seconds(&mut self, name: &str, help: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
        let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        self.0.register(name, help, f.clone());
        f
    }

    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.0.register(name, help, f.clone());
        f
    }
}

/// Seconds from `at_ms` to `now`.
fn age(now: i64, at_ms: i64) -> f64 {
    (now - at_ms).max(0) as f64 / 1000.0
}

fn backlog(s: &mut Scrape, b: &Backlog, now: i64) {
    let queued = s.gauge("queue_depth", "Messages accepted and not yet processed, per pipeline.");
    for ((tenant, pipeline), n) in &b.messages {
        queued.get_or_create(&vec![("tenant", tenant.clone()), ("pipeline", pipeline.clone())]).set(*n);
    }
    let depth = s.gauge("delivery_queue_depth", "Deliveries waiting, per sink and tier.");
    let oldest = s.seconds("delivery_queue_oldest_age_seconds", "Age of the oldest waiting delivery, per sink and tier.");
    for (sink, tier, n, at) in &b.lanes {
        let labels = vec![("sink", sink.clone()), ("tier", tier.as_str().to_string())];
        depth.get_or_create(&labels).set(*n);
        oldest.get_or_create(&labels).set(age(now, *at));
    }
    let dead = s.gauge("dead_letters_open", "Dead letters not yet replayed or purged, per tenant.");
    let dead_age = s.seconds("dead_letter_oldest_age_seconds", "Age of the oldest open dead letter, per tenant.");
    for (tenant, n, at) in &b.dead_letters {
        dead.get_or_create(&vec![("tenant", tenant.clone())]).set(*n);
        dead_age.get_or_create(&vec![("tenant", tenant.clone())]).set(age(now, *at));
    }
    let open = s.gauge("exceptions_open", "Open exceptions per queue.");
    let exception_age = s.seconds("exception_oldest_age_seconds", "Age of the oldest open exception per queue.");
    for (queue, n, at) in &b.exceptions {
        open.get_or_create(&vec![("queue", queue.clone())]).set(*n);
        exception_age.get_or_create(&vec![("queue", queue.clone())]).set(age(now, *at));
    }
    let loops = s.gauge("loops", "Delivered orders waiting for their execution status, per tenant and state (open, overdue).");
    for ((tenant, state), n) in &b.loops {
        loops.get_or_create(&vec![("tenant", tenant.clone()), ("state", state.clone())]).set(*n);
    }
}

fn live(s: &mut Scrape, app: &App, now: i64) {
    let (applied, rejected) = app.reloader.counts();
    let reloads = s.counter("reloads", "Reloads by outcome.");
    reloads.get_or_create(&vec![("outcome", "applied".into())]).inc_by(applied);
    reloads.get_or_create(&vec![("outcome", "rejected".into())]).inc_by(rejected);
    let dropped = s.counter("plugin_log_lines_dropped", "Plugin log lines dropped by the log limits.");
    for (plugin, n) in app.runtime.logs().dropped() {
        dropped.get_or_create(&vec![("plugin", plugin.to_string())]).inc_by(n);
    }
    let topology = app.topology.current();
    let breaker = s.gauge("sink_breaker_state", "A sink's circuit breaker: 0 closed, 1 open, 2 half-open.");
    let push_backs = s.counter("sink_push_backs", "Calls a sink's downstream pushed back on (429 or Retry-After).");
    let held = s.gauge("sink_held", "Whether a sink's queue is held: paused by an operator or in a maintenance window.");
    for sink in topology.sinks.values() {
        let view = sink.control.view(now);
        let labels = vec![("sink", sink.cfg.name.to_string())];
        if let Some(b) = &view.breaker {
            breaker.get_or_create(&labels).set(i64::from(b.state.gauge()));
        }
        push_backs.get_or_create(&labels).inc_by(view.throttle.push_backs);
        held.get_or_create(&labels).set(i64::from(view.paused.is_some() || view.maintenance.is_some()));
    }
    let stage_breaker = s.gauge("stage_breaker_state", "A stage's circuit breaker: 0 closed, 1 open, 2 half-open.");
    for p in topology.pipelines.values() {
        for (i, stage) in p.stages.iter().enumerate() {
            if let Some(b) = stage.breaker() {
                let labels = vec![("tenant", p.cfg.tenant.to_string()), ("pipeline", p.cfg.id.to_string()), ("stage", (i + 1).to_string())];
                stage_breaker.get_or_create(&labels).set(i64::from(b.state.gauge()));
            }
        }
    }
}

/// The OpenMetrics exposition.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let store = app.store.clone();
    let backlog_read = tokio::task::spawn_blocking(move || store.backlog()).await;
    let now = now_ms();
    let mut scrape = Scrape(Registry::with_prefix("syncline"));
    live(&mut scrape, &app, now);
    match backlog_read {
        Ok(Ok(b)) => backlog(&mut scrape, &b, now),
        // The live part still helps; the store's trouble is in the log.
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the backlog"),
        Err(e) => tracing::warn!(error = %e, "metrics: the backlog read failed"),
    }
    let mut body = String::new();
    let encoded = encode_registry(&mut body, app.metrics.registry()).and_then(|_| encode_registry(&mut body, &scrape.0)).and_then(|_| encode_eof(&mut body));
    if let Err(e) = encoded {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot encode metrics: {e}")).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

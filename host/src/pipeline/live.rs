//! What runs for one config: live pipelines (stages with swappable plugin
//! instances, a polled source), live sinks, and the [`Topology`] holding
//! them — behind a [`TopologyView`], the read-only handle every part but
//! the reload applier gets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::Signal;
use crate::breaker::{Admit, Breaker, BreakerPolicy, BreakerView, Change, Tally};
use crate::config::{Config, Pipeline, Sink, Stage, StageKind};
use crate::delivery::SinkControl;
use crate::runtime::PluginInstance;

/// A stage with its bound plugin (swappable).
pub struct LiveStage {
    /// Its config.
    pub cfg: Stage,
    /// The plugin instance it calls; a swap affects the next call only.
    pub instance: ArcSwap<PluginInstance>,
    /// The plugin's circuit breaker (`None`: off).
    breaker: Mutex<Option<Breaker>>,
    /// Breaker changes not yet announced (the shard logs and audits them).
    changes: Mutex<Vec<Change>>,
    /// A running contract capture of its calls, if any.
    pub capture: arc_swap::ArcSwapOption<super::capture::Capture>,
}

impl LiveStage {
    /// A stage calling `instance`, with a breaker under `policy`.
    pub fn new(cfg: Stage, instance: Arc<PluginInstance>, policy: Option<BreakerPolicy>) -> LiveStage {
        LiveStage { cfg, instance: ArcSwap::new(instance), breaker: Mutex::new(policy.map(Breaker::new)), changes: Mutex::default(), capture: Default::default() }
    }

    /// Hands a call to the running capture, if there is one.
    pub(crate) fn captured(&self, inputs: &[&syncline_model::Message], answer: super::capture::Answer<'_>) {
        if let Some(c) = self.capture.load().as_ref() {
            c.record(inputs, answer);
        }
    }

    /// Records a call of the plugin: `failed` says why it failed as a whole.
    pub(crate) fn record(&self, failed: Option<&str>) {
        let mut breaker = self.breaker.lock().unwrap();
        let Some(b) = breaker.as_mut() else { return };
        let tally = if failed.is_some() { Tally { ok: 0, failed: 1 } } else { Tally { ok: 1, failed: 0 } };
        let probe = b.probing();
        if let Some(c) = b.record(crate::store::now_ms(), tally, probe, failed.unwrap_or_default()) {
            self.changes.lock().unwrap().push(c);
        }
    }

    /// Gives back its probe, if it is out, with no outcome.
    fn return_probe(&self, now: i64) {
        if let Some(b) = self.breaker.lock().unwrap().as_mut().filter(|b| b.probing()) {
            b.record(now, Tally::default(), true, "");
        }
    }

    /// What its breaker shows (`None`: off).
    pub fn breaker(&self) -> Option<BreakerView> {
        self.breaker.lock().unwrap().as_ref().map(Breaker::view)
    }

    /// The breaker changes since last asked.
    pub(crate) fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut self.changes.lock().unwrap())
    }
}

/// A pipeline ready to run.
pub struct LivePipeline {
    /// Its config.
    pub cfg: Pipeline,
    /// Stages in order.
    pub stages: Vec<LiveStage>,
    /// Source plugin, for polled pipelines.
    pub source: Option<ArcSwap<PluginInstance>>,
    /// Rung when messages are accepted.
    pub signal: Signal,
    /// Worker shards.
    pub shards: u32,
    /// What the store announced for each shard (see [`crate::handoff`]).
    pub inboxes: crate::handoff::Inboxes<crate::store::Pending>,
    pub(crate) retired: AtomicBool,
}

/// What a pipeline's stage breakers let its workers do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageGate {
    /// Process as usual.
    All,
    /// One message, the probe of a half-open stage.
    Probe,
    /// Nothing until this time (ms): a stage's breaker is open.
    Hold(i64),
}

impl LivePipeline {
    /// What its stages' breakers let a worker do at `now`.
    pub fn gate(&self, now: i64) -> StageGate {
        let mut gate = StageGate::All;
        let mut probing = Vec::new();
        for s in &self.stages {
            let mut breaker = s.breaker.lock().unwrap();
            let Some(b) = breaker.as_mut() else { continue };
            let (admit, change) = b.admit(now);
            if let Some(c) = change {
                s.changes.lock().unwrap().push(c);
            }
            match admit {
                Admit::All => {}
                Admit::Probe => {
                    probing.push(s);
                    if gate == StageGate::All {
                        gate = StageGate::Probe;
                    }
                }
                Admit::Wait(until) => gate = StageGate::Hold(match gate { StageGate::Hold(t) => t.min(until), _ => until }),
            }
        }
        if let StageGate::Hold(_) = gate {
            // Another stage holds the pipeline: no probe goes now.
            for s in probing {
                s.return_probe(now);
            }
        }
        gate
    }

    /// Gives back a probe that found nothing to process (this worker's
    /// share of the queue was empty): another worker's message may probe.
    pub fn return_probe(&self, now: i64) {
        for s in &self.stages {
            s.return_probe(now);
        }
    }

    /// Longest time an allocate stage waits to fill a batch (zero when none).
    pub(crate) fn batch_window(&self) -> (usize, Duration) {
        self.stages
            .iter()
            .filter(|s| s.cfg.kind == StageKind::Allocate)
            .map(|s| (s.cfg.batch.max, s.cfg.batch.window.0))
            .max_by_key(|(_, w)| *w)
            .unwrap_or((500, Duration::ZERO))
    }

    /// Whether a reload replaced or removed it (its workers stop).
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }
}

/// A sink ready to deliver.
pub struct LiveSink {
    /// Its config.
    pub cfg: Sink,
    /// The sink plugin instance (swappable).
    pub instance: ArcSwap<PluginInstance>,
    /// Rung when deliveries are queued.
    pub signal: Signal,
    /// Pause, maintenance windows and circuit breaker (kept across reloads).
    pub control: Arc<SinkControl>,
    /// What the store announced for each worker's partition.
    pub inboxes: crate::handoff::Inboxes<crate::store::Delivery>,
    pub(crate) retired: AtomicBool,
}

impl LiveSink {
    /// Whether a reload replaced or removed it (its workers stop).
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }
}

/// Everything that runs for one config.
pub struct Topology {
    /// The config.
    pub config: Config,
    /// Pipelines by (tenant, id).
    pub pipelines: BTreeMap<(String, String), Arc<LivePipeline>>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, Arc<LiveSink>>,
}

/// The current topology, read-only: a reload replaces what it points to.
#[derive(Clone)]
pub struct TopologyView(Arc<ArcSwap<Topology>>);

impl TopologyView {
    /// A view of `topology`.
    pub(crate) fn new(topology: Topology) -> TopologyView {
        TopologyView(Arc::new(ArcSwap::from_pointee(topology)))
    }

    /// What runs now.
    pub fn current(&self) -> Arc<Topology> {
        self.0.load_full()
    }

    /// Makes `next` current (the reload applier's).
    pub(crate) fn replace(&self, next: Arc<Topology>) {
        self.0.store(next);
    }

    /// Wakes the workers of pipeline `pipeline` of `tenant`, if it runs.
    pub fn notify_pipeline(&self, tenant: &str, pipeline: &str) {
        if let Some(p) = self.0.load().pipelines.get(&(tenant.to_string(), pipeline.to_string())) {
            p.signal.notify();
        }
    }

    /// Wakes the workers of sink `name`, if it runs.
    pub fn notify_sink(&self, name: &str) {
        if let Some(s) = self.0.load().sinks.get(name) {
            s.signal.notify();
        }
    }
}

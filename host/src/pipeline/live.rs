//! What runs for one config: live pipelines (stages with swappable plugin
//! instances, a polled source), live sinks, and the [`Topology`] holding
//! them — behind a [`TopologyView`], the read-only handle every part but
//! the reload applier gets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::Signal;
use crate::config::{Config, Pipeline, Sink, Stage, StageKind};
use crate::delivery::SinkControl;
use crate::runtime::PluginInstance;

/// A stage with its bound plugin (swappable).
pub struct LiveStage {
    /// Its config.
    pub cfg: Stage,
    /// The plugin instance it calls; a swap affects the next call only.
    pub instance: ArcSwap<PluginInstance>,
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
    pub(crate) retired: AtomicBool,
}

impl LivePipeline {
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

//! Building a [`Topology`] from a config, against the one running now:
//! pipelines and sinks whose config is unchanged are reused as they are
//! (their workers keep running); if such a part's plugin file now has
//! another digest, the new version is compiled, checked and bound here,
//! off the hot path, and returned as a [`Swap`] to apply once the whole
//! build has succeeded. Anything that fails fails the whole build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use syncline_model::table::RefTable;

use super::{bind_plugin, LivePipeline, LiveSink, LiveStage, Signal, Topology, Versions};
use crate::config::{Config, PluginRef, PluginSettings, Source};
use crate::delivery::SinkControl;
use crate::runtime::{PluginInstance, Runtime, StateStore};

enum Target {
    Stage(Arc<LivePipeline>, usize),
    Source(Arc<LivePipeline>),
    Sink(Arc<LiveSink>),
}

/// A plugin version to put in place of the running one.
pub struct Swap {
    target: Target,
    instance: Arc<PluginInstance>,
    /// Who uses it (e.g. `stage 1 of pipeline `release``).
    pub who: String,
    /// Plugin name.
    pub plugin: String,
    /// Digest running now.
    pub old_digest: String,
    /// Digest going in.
    pub new_digest: String,
}

impl Swap {
    /// Puts the new instance in place: the next call uses it; calls in
    /// flight finish on the old one.
    pub fn apply(&self) {
        match &self.target {
            Target::Stage(p, i) => p.stages[*i].instance.store(self.instance.clone()),
            Target::Source(p) => {
                if let Some(s) = &p.source {
                    s.store(self.instance.clone());
                }
            }
            Target::Sink(s) => s.instance.store(self.instance.clone()),
        }
    }
}

/// What a build changed compared with the running topology.
#[derive(Default)]
pub struct Changes {
    /// Pipelines and sinks added (`pipeline acme/x`, `sink erp`).
    pub added: Vec<String>,
    /// Removed.
    pub removed: Vec<String>,
    /// Rebuilt because their config changed.
    pub changed: Vec<String>,
    /// Plugins swapped in place.
    pub swaps: Vec<Swap>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.swaps.is_empty()
    }
}

struct Builder<'a> {
    runtime: &'a Runtime,
    state: &'a Arc<dyn StateStore>,
    versions: &'a Versions,
    tables: BTreeMap<PathBuf, Arc<RefTable>>,
    /// Only approved versions may be bound.
    approved_only: bool,
}

impl Builder<'_> {
    fn bind_bytes(&mut self, plugin: &PluginRef, bytes: &[u8], digest: &str, settings: &PluginSettings) -> anyhow::Result<Arc<PluginInstance>> {
        if self.approved_only {
            self.versions.check_approved(plugin, digest)?;
        }
        let instance = bind_plugin(self.runtime, plugin, (bytes, digest), settings, self.state.clone(), &mut self.tables)?;
        self.versions.archive(digest, bytes);
        Ok(instance)
    }

    fn bind(&mut self, plugin: &PluginRef, settings: &PluginSettings, pin: Option<&str>) -> anyhow::Result<Arc<PluginInstance>> {
        let (bytes, digest) = self.versions.desired(plugin, pin)?;
        self.bind_bytes(plugin, &bytes, &digest, settings)
    }

    /// A new version for a reused part whose plugin (file, pin or rollback) changed, if it did.
    fn refresh(
        &mut self,
        running: &ArcSwap<PluginInstance>,
        plugin: &PluginRef,
        settings: &PluginSettings,
        pin: Option<&str>,
    ) -> anyhow::Result<Option<(Arc<PluginInstance>, String)>> {
        let old = running.load().plugin().digest.clone();
        if pin.is_none() && self.versions.unchanged(plugin, &old) {
            return Ok(None);
        }
        let (bytes, digest) = self.versions.desired(plugin, pin)?;
        if digest == old {
            return Ok(None);
        }
        Ok(Some((self.bind_bytes(plugin, &bytes, &digest, settings)?, old)))
    }
}

fn swap(target: Target, instance: Arc<PluginInstance>, plugin: &PluginRef, old_digest: String) -> Swap {
    Swap {
        target,
        new_digest: instance.plugin().digest.clone(),
        instance,
        who: plugin.needed_by.clone(),
        plugin: plugin.name.clone(),
        old_digest,
    }
}

/// Builds the topology of `config`, reusing what `previous` already runs.
///
/// # Errors
///
/// The first plugin or table that cannot be loaded, named with who needs it.
pub fn build(
    runtime: &Runtime,
    state: &Arc<dyn StateStore>,
    versions: &Versions,
    config: Config,
    previous: Option<&Topology>,
) -> anyhow::Result<(Topology, Changes)> {
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2).max(1);
    // On the NATS store a queue is cut into a power of two of parts, at
    // most 64, the same on every process of a cluster sized alike.
    let shards = match config.store.kind {
        crate::config::StoreKind::Sqlite => cores,
        crate::config::StoreKind::Nats => 1 << (31 - cores.min(64).leading_zeros()),
    };
    let approved_only = config.plugin_mode == crate::config::PluginMode::Approved;
    let mut b = Builder { runtime, state, versions, tables: BTreeMap::new(), approved_only };
    let mut changes = Changes::default();

    let mut sinks = BTreeMap::new();
    for (name, cfg) in &config.sinks {
        let label = format!("sink {name}");
        let prev = previous.and_then(|p| p.sinks.get(name.as_str()));
        match prev {
            Some(prev) if prev.cfg == *cfg => {
                if let Some((instance, old)) = b.refresh(&prev.instance, &cfg.plugin, &cfg.settings, None)? {
                    changes.swaps.push(swap(Target::Sink(prev.clone()), instance, &cfg.plugin, old));
                }
                sinks.insert(name.to_string(), prev.clone());
            }
            _ => {
                let instance = b.bind(&cfg.plugin, &cfg.settings, None)?;
                if prev.is_some() { changes.changed.push(label) } else if previous.is_some() { changes.added.push(label) }
                // The pause and the breaker's state outlive a rebuild.
                let control = match prev {
                    Some(p) => {
                        p.control.configure(cfg);
                        p.control.clone()
                    }
                    None => Arc::new(SinkControl::new(cfg)),
                };
                sinks.insert(
                    name.to_string(),
                    Arc::new(LiveSink {
                        cfg: cfg.clone(),
                        instance: ArcSwap::new(instance),
                        signal: Signal::default(),
                        control,
                        inboxes: crate::handoff::Inboxes::new(cfg.workers),
                        retired: AtomicBool::new(false),
                    }),
                );
            }
        }
    }

    let mut pipelines = BTreeMap::new();
    for cfg in &config.pipelines {
        let key = (cfg.tenant.to_string(), cfg.id.to_string());
        let label = format!("pipeline {}/{}", cfg.tenant, cfg.id);
        let prev = previous.and_then(|p| p.pipelines.get(&key));
        match prev {
            Some(prev) if prev.cfg == *cfg => {
                for (i, (stage, live)) in cfg.stages.iter().zip(&prev.stages).enumerate() {
                    if let Some((instance, old)) = b.refresh(&live.instance, &stage.plugin, &stage.settings, stage.pin.as_deref())? {
                        changes.swaps.push(swap(Target::Stage(prev.clone(), i), instance, &stage.plugin, old));
                    }
                }
                if let (Source::Poll { plugin, settings, .. }, Some(live)) = (&cfg.source, &prev.source) {
                    if let Some((instance, old)) = b.refresh(live, plugin, settings, None)? {
                        changes.swaps.push(swap(Target::Source(prev.clone()), instance, plugin, old));
                    }
                }
                pipelines.insert(key, prev.clone());
            }
            _ => {
                let mut stages = Vec::with_capacity(cfg.stages.len());
                for s in &cfg.stages {
                    stages.push(LiveStage::new(s.clone(), b.bind(&s.plugin, &s.settings, s.pin.as_deref())?, cfg.breaker.clone()));
                }
                let source = match &cfg.source {
                    Source::Poll { plugin, settings, .. } => Some(ArcSwap::new(b.bind(plugin, settings, None)?)),
                    _ => None,
                };
                if prev.is_some() { changes.changed.push(label) } else if previous.is_some() { changes.added.push(label) }
                pipelines.insert(
                    key,
                    Arc::new(LivePipeline {
                        cfg: cfg.clone(),
                        stages,
                        source,
                        signal: Signal::default(),
                        shards,
                        inboxes: crate::handoff::Inboxes::new(shards),
                        retired: AtomicBool::new(false),
                    }),
                );
            }
        }
    }

    if let Some(prev) = previous {
        changes.removed.extend(prev.sinks.keys().filter(|n| !sinks.contains_key(*n)).map(|n| format!("sink {n}")));
        changes.removed.extend(
            prev.pipelines.keys().filter(|k| !pipelines.contains_key(*k)).map(|(t, p)| format!("pipeline {t}/{p}")),
        );
    }
    Ok((Topology { config, pipelines, sinks }, changes))
}

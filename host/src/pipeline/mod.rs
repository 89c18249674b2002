//! The pipeline engine: live pipelines and sinks built from a checked config
//! (plugins loaded, world-checked and bound) and the parts that run them —
//! [`Ingest`] (the way in), the shard workers ([`shard`]: claim, process,
//! ack), the maintenance loop, worker supervision ([`crew`]) and the reload
//! applier ([`Engine::apply`]). Each part gets a narrow handle: a
//! [`TopologyView`] to read what runs, a [`WorkerCtx`] (store, lease name,
//! stop flag) to work.
//!
//! What runs is a [`Topology`] behind an atomic pointer: a reload
//! ([`crate::reload`]) builds a new one, reusing every pipeline and sink
//! whose config did not change, swaps plugin instances in place, and only
//! then replaces the pointer. Messages with the same ordering key always
//! fall in the same shard and are processed in store order; different keys
//! run in parallel across shards. Delivery is [`crate::delivery`]'s,
//! polling sources [`crate::source`]'s.

pub mod capture;
mod crew;
pub mod fallback;
pub mod fields;
mod pick;
mod ingest;
pub mod keys;
mod lease;
mod loops;
mod live;
mod maintain;
pub mod process;
mod shard;
mod signal;
pub mod state;
mod topology;
pub mod versions;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use syncline_model::table::RefTable;

pub use crew::WorkerCtx;
pub use ingest::{Ingest, IngestError};
pub use lease::LeaseKeeper;
pub use live::{LivePipeline, LiveSink, LiveStage, StageGate, Topology, TopologyView};
pub use signal::Signal;
pub use topology::{Changes, Swap};
pub use versions::Versions;

use crate::config::{Config, PluginRef, PluginSettings};
use crate::runtime::{flatten_config, PluginContext, PluginInstance, Runtime, StateStore};
use crate::metrics::Metrics;
use crate::store::Store;
use crew::{Crews, Owner};

/// The running host: the current topology, the store, the runtime, the
/// workers, and the reload applier.
pub struct Engine {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    topology: TopologyView,
    state: Arc<dyn StateStore>,
    versions: Arc<Versions>,
    ingest: Arc<Ingest>,
    crews: Crews,
    /// Serializes reloads.
    pub(crate) reload_lock: Mutex<()>,
}

/// Loads a reference table once per file.
fn table(cache: &mut BTreeMap<PathBuf, Arc<RefTable>>, path: &PathBuf) -> anyhow::Result<Arc<RefTable>> {
    if let Some(t) = cache.get(path) {
        return Ok(t.clone());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read reference table {}", path.display()))?;
    let t = Arc::new(RefTable::from_csv(&text).map_err(|e| anyhow::anyhow!("reference table {}: {e}", path.display()))?);
    cache.insert(path.clone(), t.clone());
    Ok(t)
}

/// Loads (from `bytes`), checks and binds one plugin the config names.
pub fn bind_plugin(
    runtime: &Runtime,
    plugin: &PluginRef,
    (bytes, digest): (&[u8], &str),
    settings: &PluginSettings,
    state: Arc<dyn StateStore>,
    tables: &mut BTreeMap<PathBuf, Arc<RefTable>>,
) -> anyhow::Result<Arc<PluginInstance>> {
    let loaded = runtime.load_digested(&plugin.name, bytes, digest.to_string())?;
    crate::runtime::check_world(&loaded, plugin.world, &plugin.needed_by)?;
    let mut ctx = PluginContext::new(plugin.name.clone());
    ctx.config = flatten_config(&settings.config);
    ctx.secret_keys = settings.secret_keys.clone();
    ctx.secrets = crate::runtime::Secrets::new(settings.secret_keys.iter().filter_map(|k| ctx.config.get(k).cloned()));
    for (name, path) in &settings.tables {
        ctx.tables.insert(name.clone(), table(tables, path).with_context(|| format!("for {}", plugin.needed_by))?);
    }
    ctx.allowed_hosts = settings.allowed_hosts.clone();
    ctx.limits = settings.limits.clone();
    ctx.state = state;
    runtime.bind(loaded, ctx)
}

/// The name this process holds leases under: `local` on the embedded
/// store (a restarted host takes its partitions back at once); on a shared
/// store, its machine and process id, so that no two processes share one
/// (a restarted process waits for its predecessor's leases to run out).
fn holder_name(kind: crate::config::StoreKind) -> String {
    match kind {
        crate::config::StoreKind::Sqlite => "local".into(),
        crate::config::StoreKind::Nats => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
            format!("{host}-{}", std::process::id())
        }
    }
}

impl Engine {
    /// Builds every pipeline and sink of `config`: loads and checks each
    /// plugin (world, imports) and each reference table; plugin state and
    /// archived versions come from `store`.
    ///
    /// # Errors
    ///
    /// The first plugin or table that cannot be loaded, named with who
    /// needs it, or a store that cannot be read.
    pub fn build(config: Config, runtime: Arc<Runtime>, store: Arc<dyn Store>) -> anyhow::Result<Engine> {
        let state: Arc<dyn StateStore> = Arc::new(state::StoredState::load(store.clone()).context("cannot load plugin state from the store")?);
        let versions = Arc::new(Versions::new(store.clone()));
        // Rollbacks made before this start still hold (while their files do).
        for b in store.rollbacks().context("cannot read the rollbacks in force from the store")? {
            if let crate::store::records::ClusterCommand::RollBack { plugin, digest, file_digest } = &b.command {
                tracing::info!(plugin, digest, actor = %b.actor, "a rollback made before this start holds");
                versions.roll_back(plugin, digest, file_digest);
            }
        }
        let kind = config.store.kind;
        let (topology, _) = topology::build(&runtime, &state, &versions, config, None)?;
        restore_pauses(store.as_ref(), topology.sinks.values()).context("cannot read paused sinks from the store")?;
        went_live(&versions, &topology);
        let topology = TopologyView::new(topology);
        // Queued deliveries go to the sink workers in memory once durable.
        store.watch(Arc::new(crate::handoff::Handoff(topology.clone())));
        let metrics = Arc::new(Metrics::new(runtime.calls()));
        Ok(Engine {
            ingest: Arc::new(Ingest::new(topology.clone(), store.clone(), metrics.clone())),
            crews: Crews::new(store.clone(), &holder_name(kind), metrics),
            runtime,
            store,
            topology,
            state,
            versions,
            reload_lock: Mutex::new(()),
        })
    }

    /// What runs now.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.current()
    }

    /// The read-only handle on what runs.
    pub fn view(&self) -> TopologyView {
        self.topology.clone()
    }

    /// The way in.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The store (for reads: traces, counts, backlog; and audit events).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The name this process holds leases under.
    pub fn holder(&self) -> &str {
        self.crews.ctx().holder()
    }

    /// The live instruments (what `/metrics` exposes besides the store's backlog).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.crews.ctx().metrics()
    }

    /// The component runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Archived plugin versions, their history, rollbacks.
    pub fn versions(&self) -> &Arc<Versions> {
        &self.versions
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.crews.ctx().stopping()
    }

    /// Asks every worker to stop after its current plugin call (a batch in
    /// progress is abandoned unacked and redone after a restart), and
    /// waits for them: no longer than one call's wall-time limit.
    pub fn stop(&self) {
        let t = self.topology.current();
        self.crews.stop(|| {
            t.pipelines.values().for_each(|p| p.signal.notify());
            t.sinks.values().for_each(|s| s.signal.notify());
        });
    }

    fn start_pipeline(&self, p: &Arc<LivePipeline>) {
        let owner = Owner::Pipeline(p.cfg.tenant.to_string(), p.cfg.id.to_string());
        for shard in 0..p.shards {
            let p = p.clone();
            self.crews.spawn(owner.clone(), format!("pipeline-{}-{shard}", p.cfg.id), move |ctx| shard::run(&ctx, &p, shard));
        }
        if p.source.is_some() {
            let (p, ingest) = (p.clone(), self.ingest.clone());
            self.crews.spawn(owner, format!("source-{}", p.cfg.id), move |ctx| crate::source::run(&ctx, &ingest, &p));
        }
    }

    fn start_sink(&self, s: &Arc<LiveSink>) {
        for part in 0..s.cfg.workers {
            let s = s.clone();
            self.crews.spawn(Owner::Sink(s.cfg.name.to_string()), format!("sink-{}-{part}", s.cfg.name), move |ctx| crate::delivery::run(&ctx, &s, part));
        }
    }

    /// Starts every worker: one per pipeline shard, one per polled source,
    /// `workers` per sink, and the maintenance thread.
    pub fn start(&self) {
        let t = self.topology();
        t.pipelines.values().for_each(|p| self.start_pipeline(p));
        t.sinks.values().for_each(|s| self.start_sink(s));
        let (view, ingest) = (self.topology.clone(), self.ingest.clone());
        self.crews.spawn(Owner::Maintenance, "maintenance".into(), move |ctx| maintain::run(&ctx, &view, &ingest));
    }

    /// Stops a retired pipeline's workers after their current plugin call
    /// (an unfinished batch is left pending for the successor).
    fn retire_pipeline(&self, p: &LivePipeline) {
        p.retired.store(true, Ordering::Relaxed);
        p.signal.notify();
        self.crews.retire(Owner::Pipeline(p.cfg.tenant.to_string(), p.cfg.id.to_string()));
    }

    /// Stops a retired sink's workers after their current call.
    fn retire_sink(&self, s: &LiveSink) {
        s.retired.store(true, Ordering::Relaxed);
        s.signal.notify();
        self.crews.retire(Owner::Sink(s.cfg.name.to_string()));
    }

    /// The reload applier: builds the topology for `config` against the
    /// current one and, when that succeeds, makes it current: plugin swaps
    /// first, then retired parts stopped (after their in-flight batch),
    /// then new parts started.
    ///
    /// # Errors
    ///
    /// A plugin or table that cannot be loaded: nothing changed.
    pub(crate) fn apply(&self, config: Config) -> anyhow::Result<Changes> {
        let current = self.topology();
        let (next, changes) = topology::build(&self.runtime, &self.state, &self.versions, config, Some(&current))?;
        let added = next.sinks.iter().filter(|(name, _)| !current.sinks.contains_key(*name)).map(|(_, s)| s);
        restore_pauses(self.store.as_ref(), added).context("cannot read paused sinks from the store")?;
        for swap in &changes.swaps {
            swap.apply();
        }
        went_live(&self.versions, &next);
        let next = Arc::new(next);
        self.topology.replace(next.clone());
        for (key, p) in &current.pipelines {
            if !next.pipelines.get(key).is_some_and(|n| Arc::ptr_eq(n, p)) {
                self.retire_pipeline(p);
            }
        }
        for (name, s) in &current.sinks {
            if !next.sinks.get(name).is_some_and(|n| Arc::ptr_eq(n, s)) {
                self.retire_sink(s);
            }
        }
        for (key, p) in &next.pipelines {
            if !current.pipelines.get(key).is_some_and(|c| Arc::ptr_eq(c, p)) {
                self.start_pipeline(p);
            }
        }
        for (name, s) in &next.sinks {
            if !current.sinks.get(name).is_some_and(|c| Arc::ptr_eq(c, s)) {
                self.start_sink(s);
            }
        }
        Ok(changes)
    }
}

/// Pauses the sinks an operator paused before (a restart, or a sink back in
/// the config).
fn restore_pauses<'a>(store: &dyn Store, sinks: impl Iterator<Item = &'a Arc<LiveSink>>) -> Result<(), crate::store::StoreError> {
    let pauses = store.sink_pauses()?;
    for s in sinks {
        if let Some(p) = pauses.get(s.cfg.name.as_str()) {
            s.control.set_pause(Some(p.clone()));
        }
    }
    Ok(())
}

/// Every plugin instance of a topology: (plugin name, digest).
pub fn running_plugins(t: &Topology) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |i: &PluginInstance| out.push((i.plugin().name.clone(), i.plugin().digest.clone()));
    for p in t.pipelines.values() {
        p.stages.iter().for_each(|s| push(&s.instance.load()));
        if let Some(s) = &p.source {
            push(&s.load());
        }
    }
    t.sinks.values().for_each(|s| push(&s.instance.load()));
    out
}

fn went_live(versions: &Versions, t: &Topology) {
    for (name, digest) in running_plugins(t) {
        versions.went_live(&name, &digest);
    }
}

/// Now as an RFC 3339 timestamp (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    rfc3339(crate::store::now_ms())
}

/// `ms` since the epoch as an RFC 3339 timestamp (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let date = syncline_model::date::Date::parse("1970-01-01").expect("epoch").add_days(days);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

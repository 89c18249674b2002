//! The pipeline engine: live pipelines and sinks built from a checked config
//! (plugins loaded, world-checked and bound), the ingest path into the
//! store, and one worker per pipeline shard that takes accepted messages in
//! order, processes them ([`process`]) and commits the results.
//!
//! What runs is a [`Topology`] behind an atomic pointer: a reload
//! ([`crate::reload`]) builds a new one, reusing every pipeline and sink
//! whose config did not change, swaps plugin instances in place, and only
//! then replaces the pointer. Messages with the same ordering key always
//! fall in the same shard and are processed in store order; different keys
//! run in parallel across shards. Delivery is [`crate::delivery`]'s,
//! polling sources [`crate::source`]'s.

pub mod fields;
pub mod keys;
mod lease;
pub mod process;
mod signal;
pub mod state;
mod topology;
pub mod versions;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use syncline_model::json::JsonError;
use syncline_model::table::RefTable;
use syncline_model::Message;

pub use lease::LeaseKeeper;
pub use signal::Signal;
pub use topology::{Changes, Swap};
pub use versions::Versions;

use crate::config::{Config, Pipeline, PluginRef, PluginSettings, Sink, Stage, StageKind};
use crate::runtime::{flatten_config, PluginContext, PluginInstance, Runtime, StateStore};
use crate::store::{IngestOutcome, NewMessage, Partition, Queue, Store, StoreError};

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
    retired: AtomicBool,
}

impl LivePipeline {
    /// Longest time an allocate stage waits to fill a batch (zero when none).
    fn batch_window(&self) -> (usize, Duration) {
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
    retired: AtomicBool,
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

/// Why a message was refused at ingest (before anything was stored).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No such tenant.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// No such pipeline for the tenant.
    #[error("unknown pipeline `{pipeline}` for tenant `{tenant}`{hint}")]
    UnknownPipeline {
        /// Tenant.
        tenant: String,
        /// Pipeline asked for.
        pipeline: String,
        /// A suggestion.
        hint: String,
    },
    /// The pipeline does not take HTTP ingest.
    #[error("pipeline `{0}` does not accept messages over HTTP (its source is a poller)")]
    NotHttp(String),
    /// The message is malformed or of an unsupported schema version.
    #[error("{0}")]
    Json(#[from] JsonError),
    /// The envelope names another tenant than the URL.
    #[error("the message's tenant `{found}` does not match the URL's tenant `{expected}`")]
    TenantMismatch {
        /// In the URL.
        expected: String,
        /// In the message.
        found: String,
    },
    /// The store could not commit: nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Pipeline(String, String),
    Sink(String),
    Maintenance,
}

/// How many of one owner's worker threads still run. A part rebuilt by a
/// reload starts its new workers only once the old ones have ended, so a
/// shard or a sink's key range never has two workers at once; the reload
/// itself never waits for them.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    ended: Condvar,
}

impl Running {
    fn wait_idle(&self) {
        let mut n = self.count.lock().unwrap();
        while *n > 0 {
            n = self.ended.wait(n).unwrap();
        }
    }
}

/// Counts one worker thread as running until dropped.
struct Shift(Arc<Running>);

impl Shift {
    fn start(running: &Arc<Running>) -> Shift {
        *running.count.lock().unwrap() += 1;
        Shift(running.clone())
    }
}

impl Drop for Shift {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap() -= 1;
        self.0.ended.notify_all();
    }
}

/// The worker threads of one owner.
#[derive(Default)]
struct Crew {
    handles: Vec<JoinHandle<()>>,
    running: Arc<Running>,
}

/// The running host: the current topology, the store, the runtime, workers.
pub struct Engine {
    /// The component runtime.
    pub runtime: Arc<Runtime>,
    /// The store.
    pub store: Arc<dyn Store>,
    topology: ArcSwap<Topology>,
    state: Arc<dyn StateStore>,
    /// Archived plugin versions, their history, rollbacks.
    pub versions: Arc<Versions>,
    stop: AtomicBool,
    workers: Mutex<BTreeMap<Owner, Crew>>,
    /// Workers of retired parts, still finishing (or abandoning) their
    /// current call; joined at stop.
    retiring: Mutex<Vec<JoinHandle<()>>>,
    /// The crews of retired parts, so their successors can wait for them.
    previous: Mutex<BTreeMap<Owner, Arc<Running>>>,
    /// Serializes reloads.
    pub(crate) reload_lock: Mutex<()>,
    /// This host's name in partition leases.
    holder: String,
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
    bytes: &[u8],
    settings: &PluginSettings,
    state: Arc<dyn StateStore>,
    tables: &mut BTreeMap<PathBuf, Arc<RefTable>>,
) -> anyhow::Result<Arc<PluginInstance>> {
    let loaded = runtime.load_bytes(&plugin.name, bytes)?;
    crate::runtime::check_world(&loaded, plugin.world, &plugin.needed_by)?;
    let mut ctx = PluginContext::new(plugin.name.clone());
    ctx.config = flatten_config(&settings.config);
    ctx.secret_keys = settings.secret_keys.clone();
    for (name, path) in &settings.tables {
        ctx.tables.insert(name.clone(), table(tables, path).with_context(|| format!("for {}", plugin.needed_by))?);
    }
    ctx.allowed_hosts = settings.allowed_hosts.clone();
    ctx.limits = settings.limits.clone();
    ctx.state = state;
    runtime.bind(loaded, ctx)
}

impl Engine {
    /// Builds every pipeline and sink of `config`: loads and checks each
    /// plugin (world, imports) and each reference table.
    ///
    /// # Errors
    ///
    /// The first plugin or table that cannot be loaded, named with who needs it.
    pub fn build(config: Config, runtime: Arc<Runtime>, store: Arc<dyn Store>) -> anyhow::Result<Engine> {
        let state: Arc<dyn StateStore> = Arc::new(state::StoredState::load(store.clone()).context("cannot load plugin state from the store")?);
        let versions = Arc::new(Versions::new(store.clone()));
        let (topology, _) = topology::build(&runtime, &state, &versions, config, None)?;
        went_live(&versions, &topology);
        Ok(Engine {
            runtime,
            store,
            topology: ArcSwap::from_pointee(topology),
            state,
            versions,
            stop: AtomicBool::new(false),
            workers: Mutex::default(),
            retiring: Mutex::default(),
            previous: Mutex::default(),
            reload_lock: Mutex::new(()),
            holder: "local".into(),
        })
    }

    /// What runs now.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// The pipeline for an ingest request.
    ///
    /// # Errors
    ///
    /// [`IngestError::UnknownTenant`] or [`IngestError::UnknownPipeline`] (with the nearest name).
    pub fn pipeline(&self, tenant: &str, pipeline: &str) -> Result<Arc<LivePipeline>, IngestError> {
        let t = self.topology.load();
        if !t.config.tenants.iter().any(|x| x.as_str() == tenant) {
            return Err(IngestError::UnknownTenant(tenant.to_string()));
        }
        t.pipelines.get(&(tenant.to_string(), pipeline.to_string())).cloned().ok_or_else(|| {
            let known: Vec<&str> = t.pipelines.keys().filter(|(x, _)| x == tenant).map(|(_, p)| p.as_str()).collect();
            let hint = match crate::config::nearest(pipeline, known.iter().copied()) {
                Some(n) => format!("; did you mean `{n}`?"),
                None => String::new(),
            };
            IngestError::UnknownPipeline { tenant: tenant.into(), pipeline: pipeline.into(), hint }
        })
    }

    /// Fills a new message's envelope for `pipeline` and prepares it for the store.
    ///
    /// # Errors
    ///
    /// [`IngestError::TenantMismatch`] when the envelope names another tenant.
    pub fn prepare(&self, pipeline: &LivePipeline, mut msg: Message, source_system: &str, key: Option<String>) -> Result<NewMessage, IngestError> {
        let tenant = pipeline.cfg.tenant.as_str();
        if !msg.tenant.is_empty() && msg.tenant != tenant {
            return Err(IngestError::TenantMismatch { expected: tenant.into(), found: msg.tenant });
        }
        msg.tenant = tenant.to_string();
        if !msg.id.is_empty() {
            let client_id = std::mem::take(&mut msg.id);
            msg.set_header("client-message-id", client_id);
        }
        msg.id = ulid::Ulid::new().to_string();
        if msg.correlation_id.is_empty() {
            msg.correlation_id = msg.id.clone();
        }
        if msg.occurred_at.is_empty() {
            msg.occurred_at = now_rfc3339();
        }
        if msg.source_system.is_empty() {
            msg.source_system = source_system.to_string();
        }
        if msg.idempotency_key.as_deref().is_none_or(str::is_empty) {
            msg.idempotency_key = key;
        }
        let view = fields::View::new(&msg);
        let key_hash = fields::key_hash(&view.ordering_key(&pipeline.cfg.ordering_key));
        Ok(NewMessage {
            id: msg.id.clone(),
            tenant: tenant.to_string(),
            pipeline: pipeline.cfg.id.to_string(),
            key_hash,
            idempotency_key: msg.idempotency_key.clone(),
            json: syncline_model::json::to_string(&msg),
        })
    }

    /// Stores prepared messages durably and wakes the pipeline's workers.
    ///
    /// # Errors
    ///
    /// [`IngestError::Store`]: nothing was accepted.
    pub fn accept(&self, pipeline: &LivePipeline, messages: Vec<NewMessage>) -> Result<Vec<IngestOutcome>, IngestError> {
        let out = self.store.append(messages, None).wait()?;
        pipeline.signal.notify();
        Ok(out)
    }

    /// [`Engine::accept`] for async callers: awaits the commit without
    /// holding a thread.
    ///
    /// # Errors
    ///
    /// [`IngestError::Store`]: nothing was accepted.
    pub async fn accept_async(&self, pipeline: &LivePipeline, messages: Vec<NewMessage>) -> Result<Vec<IngestOutcome>, IngestError> {
        let out = self.store.append(messages, None).committed().await?;
        pipeline.signal.notify();
        Ok(out)
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Asks every worker to stop after its current plugin call (a batch in
    /// progress is abandoned uncommitted and redone after a restart), and
    /// waits for them: no longer than one call's wall-time limit.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.topology.load();
        t.pipelines.values().for_each(|p| p.signal.notify());
        t.sinks.values().for_each(|s| s.signal.notify());
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        let retiring = std::mem::take(&mut *self.retiring.lock().unwrap());
        for handle in workers.into_values().flat_map(|c| c.handles).chain(retiring) {
            let _ = handle.join();
        }
    }

    /// Starts a worker thread for `owner`. If a retired crew of the same
    /// owner is still finishing, the new worker waits for it first.
    fn spawn(self: &Arc<Self>, owner: Owner, name: String, f: impl FnOnce(Arc<Engine>) + Send + 'static) {
        let engine = self.clone();
        let before = self.previous.lock().unwrap().get(&owner).cloned();
        let mut workers = self.workers.lock().unwrap();
        let crew = workers.entry(owner).or_default();
        let shift = Shift::start(&crew.running);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _shift = shift;
                if let Some(before) = before {
                    before.wait_idle();
                }
                f(engine)
            })
            .expect("spawn worker");
        crew.handles.push(handle);
    }

    /// Stops `owner`'s workers without waiting for them: they end after
    /// their current plugin call; a successor's workers wait for that.
    fn retire(&self, owner: Owner) {
        let Some(crew) = self.workers.lock().unwrap().remove(&owner) else { return };
        self.retiring.lock().unwrap().extend(crew.handles);
        self.previous.lock().unwrap().insert(owner, crew.running);
        // Forget the handles of workers that have ended.
        let mut retiring = self.retiring.lock().unwrap();
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *retiring).into_iter().partition(|h| h.is_finished());
        done.into_iter().for_each(|h| drop(h.join()));
        *retiring = running;
    }

    fn start_pipeline(self: &Arc<Self>, p: &Arc<LivePipeline>) {
        let owner = Owner::Pipeline(p.cfg.tenant.to_string(), p.cfg.id.to_string());
        for shard in 0..p.shards {
            let p = p.clone();
            self.spawn(owner.clone(), format!("pipeline-{}-{shard}", p.cfg.id), move |e| e.run_shard(&p, shard));
        }
        if p.source.is_some() {
            let p = p.clone();
            self.spawn(owner, format!("source-{}", p.cfg.id), move |e| crate::source::run(&e, &p));
        }
    }

    fn start_sink(self: &Arc<Self>, s: &Arc<LiveSink>) {
        for part in 0..s.cfg.workers {
            let s = s.clone();
            self.spawn(Owner::Sink(s.cfg.name.to_string()), format!("sink-{}-{part}", s.cfg.name), move |e| crate::delivery::run(&e, &s, part));
        }
    }

    /// Starts every worker: one per pipeline shard, one per polled source,
    /// `workers` per sink, and the maintenance thread.
    pub fn start(self: &Arc<Self>) {
        let t = self.topology();
        t.pipelines.values().for_each(|p| self.start_pipeline(p));
        t.sinks.values().for_each(|s| self.start_sink(s));
        self.spawn(Owner::Maintenance, "maintenance".into(), |e| e.maintain());
    }

    /// Stops a retired pipeline's workers after their current plugin call
    /// (an unfinished batch is left pending for the successor).
    fn retire_pipeline(&self, p: &LivePipeline) {
        p.retired.store(true, Ordering::Relaxed);
        p.signal.notify();
        self.retire(Owner::Pipeline(p.cfg.tenant.to_string(), p.cfg.id.to_string()));
    }

    /// Stops a retired sink's workers after their current call.
    fn retire_sink(&self, s: &LiveSink) {
        s.retired.store(true, Ordering::Relaxed);
        s.signal.notify();
        self.retire(Owner::Sink(s.cfg.name.to_string()));
    }

    /// Builds the topology for `config` against the current one and, when
    /// that succeeds, makes it current: plugin swaps first, then retired
    /// parts stopped (after their in-flight batch), then new parts started.
    ///
    /// # Errors
    ///
    /// A plugin or table that cannot be loaded: nothing changed.
    pub(crate) fn apply(self: &Arc<Self>, config: Config) -> anyhow::Result<Changes> {
        let current = self.topology();
        let (next, changes) = topology::build(&self.runtime, &self.state, &self.versions, config, Some(&current))?;
        for swap in &changes.swaps {
            swap.apply();
        }
        went_live(&self.versions, &next);
        let next = Arc::new(next);
        self.topology.store(next.clone());
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

    /// Housekeeping: forget idempotency keys older than the dedupe window
    /// and finished work older than the retention, every quarter of the
    /// retention (at least every minute, at most every second).
    fn maintain(&self) {
        let mut next = Instant::now();
        while !self.stopping() {
            if Instant::now() >= next {
                let store = self.topology.load().config.store.clone();
                let now = crate::store::now_ms();
                match self.store.prune_idempotency(now - store.dedupe_window.0.as_millis() as i64) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(keys = n, "forgot idempotency keys past the dedupe window"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune idempotency keys"),
                }
                match self.store.prune(now - store.retention.0.as_millis() as i64) {
                    Ok(p) if p.messages + p.deliveries == 0 => {}
                    Ok(p) => tracing::info!(messages = p.messages, deliveries = p.deliveries, pages_freed = p.pages_freed, "pruned finished work past the retention"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune finished work"),
                }
                next = Instant::now() + (store.retention.0 / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wakes the workers of a sink, by name, in the current topology.
    fn notify_sink(&self, name: &str) {
        if let Some(s) = self.topology.load().sinks.get(name) {
            s.signal.notify();
        }
    }

    /// This host's name in partition leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// One shard's loop: lease the shard's partition, claim due messages in
    /// order, process, ack. It claims from the head of the partition each
    /// time, so a message waiting for a retry is taken again once it is due.
    fn run_shard(&self, p: &LivePipeline, shard: u32) {
        let (tenant, id) = (p.cfg.tenant.as_str(), p.cfg.id.as_str());
        let (batch_max, window) = p.batch_window();
        let queue = Queue::Messages { tenant: tenant.to_string(), pipeline: id.to_string() };
        let mut keeper = LeaseKeeper::new(self.store.as_ref(), Partition { queue, index: shard, of: p.shards }, &self.holder);
        while !self.stopping() && !p.retired() {
            let seen = p.signal.generation();
            let lease = match keeper.lease() {
                Ok(l) => l.clone(),
                Err(e) => {
                    tracing::warn!(pipeline = id, shard, error = %e, "cannot lease the shard; trying again");
                    p.signal.wait(seen, LeaseKeeper::pause(&e));
                    continue;
                }
            };
            let now = crate::store::now_ms();
            let due = match self.store.claim(&lease, 0, now, batch_max) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(pipeline = id, error = %e, "cannot read pending messages; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            let mut rows = due.rows;
            if rows.is_empty() {
                let wait = due.next_at.map_or(250, |at| (at - now).clamp(1, 250)) as u64;
                p.signal.wait(seen, Duration::from_millis(wait));
                continue;
            }
            // An allocate stage wants full batches: wait up to its window for more.
            let deadline = Instant::now() + window;
            while rows.len() < batch_max && Instant::now() < deadline && !self.stopping() && !p.retired() {
                let seen = p.signal.generation();
                p.signal.wait(seen, deadline.saturating_duration_since(Instant::now()));
                let last = rows.last().map(|r| r.seq).unwrap_or(0);
                match self.store.claim(&lease, last, crate::store::now_ms(), batch_max - rows.len()) {
                    Ok(more) => rows.extend(more.rows),
                    Err(_) => break,
                }
            }
            let cancel = || self.stopping() || p.retired();
            let shard_ref = crate::store::records::ShardRef { index: shard, of: p.shards };
            let Some(commit) = process::process(p, shard_ref, &rows, &cancel) else {
                // Stopping or retired mid-batch: nothing is acked; the rows
                // stay claimable for whoever runs the pipeline next.
                break;
            };
            let sinks: std::collections::BTreeSet<String> =
                commit.processed.iter().flat_map(|c| c.deliveries.iter().map(|d| d.sink.clone())).collect();
            match self.store.ack(&lease, commit) {
                Ok(()) => sinks.iter().for_each(|s| self.notify_sink(s)),
                Err(e) => {
                    // Nothing was recorded: the same rows are processed again (same ids, same keys).
                    tracing::error!(pipeline = id, error = %e, "cannot ack processed messages; will process them again");
                    keeper.refused(&e);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
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

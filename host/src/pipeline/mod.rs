//! The pipeline engine: builds live pipelines and sinks from a checked
//! config (plugins loaded, world-checked and bound), accepts messages into
//! the store, and runs one worker per pipeline shard that takes accepted
//! messages in order, processes them ([`process`]) and commits the results.
//!
//! Messages with the same ordering key always fall in the same shard and are
//! processed in store order; different keys run in parallel across shards.
//! Delivery to sinks is [`crate::delivery`]'s; polling sources is
//! [`crate::source`]'s.

pub mod fields;
pub mod process;
mod signal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use syncline_model::json::JsonError;
use syncline_model::table::RefTable;
use syncline_model::Message;

pub use signal::Signal;

use crate::config::{Config, Pipeline, PluginRef, PluginSettings, Sink, Stage, StageKind};
use crate::runtime::{flatten_config, MemoryState, PluginContext, PluginInstance, Runtime, StateStore};
use crate::store::{IngestOutcome, NewMessage, Store, StoreError};

/// A stage with its bound plugin.
pub struct LiveStage {
    /// Its config.
    pub cfg: Stage,
    /// The plugin instance it calls.
    pub instance: Arc<PluginInstance>,
}

/// A pipeline ready to run.
pub struct LivePipeline {
    /// Its config.
    pub cfg: Pipeline,
    /// Stages in order.
    pub stages: Vec<LiveStage>,
    /// Source plugin, for polled pipelines.
    pub source: Option<Arc<PluginInstance>>,
    /// Rung when messages are accepted.
    pub signal: Signal,
    /// Worker shards.
    pub shards: u32,
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
}

/// A sink ready to deliver.
pub struct LiveSink {
    /// Its config.
    pub cfg: Sink,
    /// The sink plugin instance.
    pub instance: Arc<PluginInstance>,
    /// Rung when deliveries are queued.
    pub signal: Signal,
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

/// Everything running: pipelines, sinks, the store and the runtime.
pub struct Engine {
    /// The config it was built from.
    pub config: Config,
    /// The component runtime.
    pub runtime: Arc<Runtime>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Pipelines by (tenant, id).
    pub pipelines: BTreeMap<(String, String), Arc<LivePipeline>>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, Arc<LiveSink>>,
    stop: Arc<AtomicBool>,
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

/// Loads, checks and binds one plugin the config names.
pub fn bind_plugin(
    runtime: &Runtime,
    plugin: &PluginRef,
    settings: &PluginSettings,
    state: Arc<dyn StateStore>,
    tables: &mut BTreeMap<PathBuf, Arc<RefTable>>,
) -> anyhow::Result<Arc<PluginInstance>> {
    let loaded = runtime.load_for(&plugin.path, plugin.world, &plugin.needed_by)?;
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
        let state: Arc<dyn StateStore> = Arc::new(MemoryState::with_quota(1 << 20));
        let mut tables = BTreeMap::new();
        let shards = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2).max(1);
        let mut sinks = BTreeMap::new();
        for (name, s) in &config.sinks {
            let instance = bind_plugin(&runtime, &s.plugin, &s.settings, state.clone(), &mut tables)?;
            sinks.insert(name.to_string(), Arc::new(LiveSink { cfg: s.clone(), instance, signal: Signal::default() }));
        }
        let mut pipelines = BTreeMap::new();
        for p in &config.pipelines {
            let mut stages = Vec::new();
            for s in &p.stages {
                let instance = bind_plugin(&runtime, &s.plugin, &s.settings, state.clone(), &mut tables)?;
                stages.push(LiveStage { cfg: s.clone(), instance });
            }
            let source = match &p.source {
                crate::config::Source::Poll { plugin, settings, .. } => {
                    Some(bind_plugin(&runtime, plugin, settings, state.clone(), &mut tables)?)
                }
                _ => None,
            };
            pipelines.insert(
                (p.tenant.to_string(), p.id.to_string()),
                Arc::new(LivePipeline { cfg: p.clone(), stages, source, signal: Signal::default(), shards }),
            );
        }
        Ok(Engine { config, runtime, store, pipelines, sinks, stop: Arc::new(AtomicBool::new(false)) })
    }

    /// The pipeline for an ingest request.
    ///
    /// # Errors
    ///
    /// [`IngestError::UnknownTenant`] or [`IngestError::UnknownPipeline`] (with the nearest name).
    pub fn pipeline(&self, tenant: &str, pipeline: &str) -> Result<&Arc<LivePipeline>, IngestError> {
        if !self.config.tenants.iter().any(|t| t.as_str() == tenant) {
            return Err(IngestError::UnknownTenant(tenant.to_string()));
        }
        self.pipelines.get(&(tenant.to_string(), pipeline.to_string())).ok_or_else(|| {
            let known: Vec<&str> = self.pipelines.keys().filter(|(t, _)| t == tenant).map(|(_, p)| p.as_str()).collect();
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
        let out = self.store.ingest(messages, None)?;
        pipeline.signal.notify();
        Ok(out)
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Asks every worker to finish its current batch and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pipelines.values() {
            p.signal.notify();
        }
        for s in self.sinks.values() {
            s.signal.notify();
        }
    }

    /// Starts one worker thread per pipeline shard, one per sink and one per
    /// polled source.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        for p in self.pipelines.values() {
            for shard in 0..p.shards {
                let (engine, p) = (self.clone(), p.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("pipeline-{}-{shard}", p.cfg.id))
                        .spawn(move || engine.run_shard(&p, shard))
                        .expect("spawn pipeline worker"),
                );
            }
            if p.source.is_some() {
                let (engine, p) = (self.clone(), p.clone());
                handles.push(std::thread::Builder::new().name(format!("source-{}", p.cfg.id)).spawn(move || crate::source::run(&engine, &p)).expect("spawn source"));
            }
        }
        let engine = self.clone();
        handles.push(std::thread::Builder::new().name("maintenance".into()).spawn(move || engine.maintain()).expect("spawn maintenance"));
        for s in self.sinks.values() {
            for part in 0..s.cfg.workers {
                let (engine, s) = (self.clone(), s.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("sink-{}-{part}", s.cfg.name))
                        .spawn(move || crate::delivery::run(&engine, &s, part))
                        .expect("spawn sink worker"),
                );
            }
        }
        handles
    }

    /// Housekeeping every minute: forget idempotency keys older than the
    /// dedupe window.
    fn maintain(&self) {
        let window = self.config.store.dedupe_window.0.as_millis() as i64;
        let mut next = Instant::now();
        while !self.stopping() {
            if Instant::now() >= next {
                match self.store.prune_idempotency(crate::store::now_ms() - window) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(keys = n, "forgot idempotency keys past the dedupe window"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune idempotency keys"),
                }
                next = Instant::now() + Duration::from_secs(60);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One shard's loop: take pending messages in order, process, commit.
    fn run_shard(&self, p: &LivePipeline, shard: u32) {
        let (tenant, id) = (p.cfg.tenant.as_str(), p.cfg.id.as_str());
        let (batch_max, window) = p.batch_window();
        let mut after = 0i64;
        while !self.stopping() {
            let seen = p.signal.generation();
            let mut rows = match self.store.pending(tenant, id, shard, p.shards, after, batch_max) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(pipeline = id, error = %e, "cannot read pending messages; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if rows.is_empty() {
                p.signal.wait(seen, Duration::from_millis(250));
                continue;
            }
            // An allocate stage wants full batches: wait up to its window for more.
            let deadline = Instant::now() + window;
            while rows.len() < batch_max && Instant::now() < deadline && !self.stopping() {
                let seen = p.signal.generation();
                p.signal.wait(seen, deadline.saturating_duration_since(Instant::now()));
                let last = rows.last().map(|r| r.seq).unwrap_or(after);
                match self.store.pending(tenant, id, shard, p.shards, last, batch_max - rows.len()) {
                    Ok(more) => rows.extend(more),
                    Err(_) => break,
                }
            }
            let commit = process::process(p, &rows);
            let sinks: Vec<String> = commit.processed.iter().flat_map(|c| c.deliveries.iter().map(|d| d.sink.clone())).collect();
            match self.store.commit(commit) {
                Ok(()) => {
                    after = rows.last().map(|r| r.seq).unwrap_or(after);
                    for s in sinks {
                        if let Some(s) = self.sinks.get(&s) {
                            s.signal.notify();
                        }
                    }
                }
                Err(e) => {
                    // Nothing was recorded: the same rows are processed again (same ids, same keys).
                    tracing::error!(pipeline = id, error = %e, "cannot commit processed messages; will process them again");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

/// Now as an RFC 3339 timestamp (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    let ms = crate::store::now_ms();
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let date = syncline_model::date::Date::parse("1970-01-01").expect("epoch").add_days(days);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

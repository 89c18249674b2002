//! `syncline run`: wires config, runtime, store, engine and HTTP together,
//! and shuts down cleanly — on SIGTERM or Ctrl-C it stops accepting, lets
//! every worker finish and commit its current batch, then exits.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{self, Config, ConfigErrors};
use crate::pipeline::Engine;
use crate::runtime::{CompileCache, EngineOptions, Runtime};
use crate::store::records::{AuditEntry, AuditEvent, LivePipelineRecord};
use crate::store::{SqliteStore, Store};

/// Whether the process logs JSON (`--log-format json`): then nothing but
/// log objects goes to stderr.
pub static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens the store `[store]` names: the SQLite file (made when missing),
/// or the NATS server with the store's streams and buckets (made when
/// missing).
///
/// # Errors
///
/// A store that cannot be opened, named with where it is.
pub fn open_store(store: &config::Store) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match store.kind {
        config::StoreKind::Sqlite => {
            Arc::new(SqliteStore::open(&store.path, store.sync, store.max_size.map(|s| s.0)).with_context(|| format!("opening the store {}", store.path.display()))?)
        }
        config::StoreKind::Nats => {
            let url = store.url.clone().unwrap_or_default();
            let settings = crate::store::nats::Settings {
                url: url.clone(),
                replicas: store.replicas,
                retention: store.retention.0,
                dedupe_window: store.dedupe_window.0,
                connect_timeout: std::time::Duration::from_secs(10),
            };
            Arc::new(crate::store::nats::NatsStore::open(&settings).with_context(|| format!("opening the NATS store at {url}"))?)
        }
    })
}

/// Loads a config and every plugin and table it names, without starting
/// anything: what `syncline check` reports.
///
/// # Errors
///
/// Config errors (all of them), or the first plugin that cannot be loaded.
pub fn check(path: &Path, cache_dir: Option<&Path>) -> anyhow::Result<(Config, Vec<String>)> {
    let config = config::load(path).map_err(|e: ConfigErrors| anyhow::anyhow!("{e}"))?;
    let runtime = runtime_for(&config, cache_dir)?;
    let mut lines = Vec::new();
    let mut tables = std::collections::BTreeMap::new();
    let state: Arc<dyn crate::runtime::StateStore> = Arc::new(crate::runtime::MemoryState::default());
    // Pinned versions come from the store's archive when there is a store.
    let store: Arc<dyn Store> = match (config.store.kind, config.store.path.exists()) {
        (config::StoreKind::Sqlite, true) => Arc::new(SqliteStore::open(&config.store.path, config.store.sync, None)?),
        (config::StoreKind::Sqlite, false) => Arc::new(crate::store::MemoryStore::new()),
        (config::StoreKind::Nats, _) => open_store(&config.store)?,
    };
    let versions = crate::pipeline::Versions::new(store);
    let mut unapproved = Vec::new();
    let mut rebuild = Vec::new();
    for r in config.plugin_refs() {
        let (settings, pin) = settings_of(&config, r);
        let (bytes, digest) = versions.desired(r, pin)?;
        if config.plugin_mode == crate::config::PluginMode::Approved {
            if let Err(e) = versions.check_approved(r, &digest) {
                unapproved.push(e.to_string());
            }
        }
        let instance = match crate::pipeline::bind_plugin(&runtime, r, (&bytes, &digest), settings, state.clone(), &mut tables) {
            Ok(instance) => instance,
            Err(e) => match e.downcast_ref::<crate::runtime::LoadError>() {
                Some(crate::runtime::LoadError::Version { version, .. }) => {
                    rebuild.push(format!("{} ({}, for {}): built against syncline:plugin@{version}", r.name, r.path.display(), r.needed_by));
                    continue;
                }
                _ => return Err(e),
            },
        };
        let p = instance.plugin();
        lines.push(format!("{} ({}) {} {} for {}{}", p.name, p.world, p.digest, r.path.display(), r.needed_by, api_note(&p.api_version)));
    }
    anyhow::ensure!(
        rebuild.is_empty(),
        "{} plugin(s) must be rebuilt against syncline:plugin@{} before this host can run them:\n  {}",
        rebuild.len(),
        crate::runtime::plugin::PLUGIN_API_VERSION,
        rebuild.join("\n  ")
    );
    anyhow::ensure!(unapproved.is_empty(), "{}", unapproved.join("\n"));
    Ok((config, lines))
}

/// What `check` says of a plugin built against an older minor version.
fn api_note(api_version: &str) -> String {
    use crate::runtime::plugin::{api_fit, ApiFit, PLUGIN_API_VERSION};
    let ApiFit::OlderMinor(minor) = api_fit(api_version) else { return String::new() };
    let fields: Vec<String> = syncline_model::versions::PROMOTIONS
        .iter()
        .filter(|p| u64::from(p.since_minor) > minor)
        .map(|p| format!("{}.{}", p.kind.as_str(), p.field))
        .collect();
    format!(
        "\n    built against syncline:plugin@{api_version}: runs through the 1.{minor} bindings, which show it {} as extensions; rebuild against {PLUGIN_API_VERSION} to use the fields",
        fields.join(", ")
    )
}

/// The settings (and pin) that go with a plugin reference of the config.
fn settings_of<'a>(config: &'a Config, r: &crate::config::PluginRef) -> (&'a crate::config::PluginSettings, Option<&'a str>) {
    for p in &config.pipelines {
        if let crate::config::Source::Poll { plugin, settings, .. } = &p.source {
            if plugin == r {
                return (settings, None);
            }
        }
        for s in &p.stages {
            if &s.plugin == r {
                return (&s.settings, s.pin.as_deref());
            }
        }
    }
    (&config.sinks.values().find(|s| &s.plugin == r).expect("every plugin ref comes from the config").settings, None)
}

fn runtime_for(config: &Config, cache_dir: Option<&Path>) -> anyhow::Result<Runtime> {
    let dir = cache_dir.map(Path::to_path_buf).or_else(|| config.cache_dir.clone()).unwrap_or_else(CompileCache::default_dir);
    Runtime::new(&EngineOptions::default(), Some(&dir))
}

/// Runs the host until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// Config errors, plugins that cannot be loaded, a store that cannot be
/// opened, or an address that cannot be bound — before anything starts.
pub fn run(path: &Path, cache_dir: Option<&Path>, watch: bool) -> anyhow::Result<()> {
    run_with(path, cache_dir, watch, |_| Ok(()))
}

/// [`run`], with `prepare` called on the built engine before anything
/// starts (the benchmarks install native stages there).
///
/// # Errors
///
/// As [`run`], or `prepare`'s error.
pub fn run_with(path: &Path, cache_dir: Option<&Path>, watch: bool, prepare: impl FnOnce(&Engine) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let config = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = Arc::new(runtime_for(&config, cache_dir)?);
    let store = open_store(&config.store)?;
    let engine = Arc::new(Engine::build(config, runtime, store.clone())?);
    prepare(&engine)?;
    let topology = engine.topology();
    let listen = topology.config.server.listen.clone();
    let header_read_timeout = topology.config.server.header_read_timeout.0;

    let rt = tokio::runtime::Builder::new_multi_thread().thread_name("http-server").enable_all().build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&listen))
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    let addr = listener.local_addr()?;

    let mut live = Vec::new();
    for p in topology.pipelines.values() {
        let stages: Vec<String> = p
            .stages
            .iter()
            .map(|s| {
                let i = s.instance.load();
                format!("{}@{}", i.plugin().name, i.plugin().short_digest())
            })
            .collect();
        tracing::info!(tenant = %p.cfg.tenant, pipeline = %p.cfg.id, stages = %stages.join(" -> "), shards = p.shards, "pipeline live");
        live.push(LivePipelineRecord { tenant: p.cfg.tenant.to_string(), pipeline: p.cfg.id.to_string(), stages });
    }
    for s in topology.sinks.values() {
        let i = s.instance.load();
        tracing::info!(sink = %s.cfg.name, plugin = %i.plugin().name, digest = %i.plugin().short_digest(), "sink live");
    }
    store.audit(&AuditEntry::host(AuditEvent::Start { config: path.display().to_string(), pipelines: live }))?;
    engine.start();
    let reloader = crate::reload::Reloader::new(engine.clone(), path.to_path_buf());
    crate::reload::follow_cluster(reloader.clone())?;
    let _watcher = if watch {
        match crate::reload::watch(reloader.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config and plugin folder; reload with SIGHUP or POST /v1/reload");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(%addr, watch, "listening on http://{addr}");
    // The plain line scripts wait for; JSON logs stay one object per line.
    if !JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("syncline listening on http://{addr}");
    }

    let app = crate::api::router(crate::api::App::new(&engine, reloader.clone()));
    let served = rt.block_on(async {
        let hup = reloader.clone();
        tokio::spawn(async move {
            let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            while s.recv().await.is_some() {
                let r = hup.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload("signal", "host")).await;
            }
        });
        serve(listener, app, header_read_timeout, shutdown_signal()).await
    });
    tracing::info!("stopping: finishing in-flight work");
    drop(_watcher);
    engine.stop();
    store.audit(&AuditEntry::host(AuditEvent::Stop))?;
    tracing::info!("stopped");
    served.context("HTTP server failed")
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// connections finish their requests. A client that does not send a whole
/// request head within `header_read_timeout` (at connect or between
/// keep-alive requests) is disconnected, so idle or trickling connections
/// cannot pile up.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().map_request(|r: http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)));
        let watcher = graceful.watcher();
        // HTTP/1.1 only: the header-read timeout then covers a connection
        // from its first byte (a protocol sniffer would wait forever).
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Open requests finish (each bounded by its timeouts); a client that
    // keeps a connection busy longer does not hold the shutdown.
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open 30 s after the stop; closing them");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

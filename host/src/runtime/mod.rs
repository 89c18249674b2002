//! The component runtime: one engine, one linker with the host services,
//! plugins loaded from `.wasm` files (compiled once, cached on disk by
//! digest), checked for their world, and bound to a context as
//! [`PluginInstance`]s that enforce per-call limits.
//!
//! This module knows nothing of pipelines, stores or HTTP serving.

mod bindings;
mod calls;
pub mod clip;
pub mod cache;
pub mod engine;
mod error;
pub mod host;
mod http;
mod instance;
mod io;
pub mod limits;
pub mod logs;
#[cfg(feature = "native-stages")]
pub mod native;
mod output;
pub mod redact;
pub mod plugin;
mod size;
pub mod state;

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

pub use cache::{CacheOutcome, CompileCache};
pub use engine::EngineOptions;
pub use error::{CallError, Failure, LoadError};
pub use host::{flatten_config, PluginContext};
pub use state::{MemoryState, StateStore};
pub use instance::{CallReport, PluginInstance};
pub use limits::Limits;
pub use logs::LogCounters;
#[cfg(feature = "native-stages")]
pub use native::NativeStage;
pub use plugin::{digest, Plugin, World};
pub use redact::Secrets;

use bindings::host_api;
use host::HostState;

/// Loads plugins and binds them to contexts. Cheap to share.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    logs: LogCounters,
    calls: crate::metrics::PluginCalls,
}

impl Runtime {
    /// A runtime whose compiled plugins are cached in `cache_dir` (`None`
    /// turns the on-disk cache off).
    ///
    /// # Errors
    ///
    /// When the engine cannot be built or the host services cannot be linked.
    pub fn new(options: &EngineOptions, cache_dir: Option<&Path>) -> anyhow::Result<Runtime> {
        let engine = engine::build(options)?;
        let mut linker = Linker::<HostState>::new(&engine);
        // Every WASI p2 interface is linked (guests in Python or JS import
        // many of them), but the WASI context grants nothing. The async
        // versions: a guest waiting in one (a sleep, an HTTP body) waits as
        // a future that the call's deadline can drop.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        host_api::log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        host_api::config::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        host_api::reference::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        host_api::state::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        let cache = cache_dir.map(|dir| CompileCache::new(dir, &engine));
        Ok(Runtime { engine, linker, cache, logs: LogCounters::default(), calls: crate::metrics::PluginCalls::default() })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Log lines dropped per plugin name by the plugins' log limits.
    pub fn logs(&self) -> &LogCounters {
        &self.logs
    }

    /// Every bound plugin's calls: how many by result, and their time.
    pub fn calls(&self) -> &crate::metrics::PluginCalls {
        &self.calls
    }

    /// The compile cache, when on.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// Loads the plugin in `path`, named after the file (without `.wasm`).
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the file cannot be read, is not a component,
    /// implements no Syncline world, or imports what the host lacks.
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.load_bytes(&name, &bytes)
    }

    /// Loads a plugin from its bytes.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load_file`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        self.load_digested(name, bytes, plugin::digest(bytes))
    }

    /// [`Runtime::load_bytes`] when the caller has the bytes' digest
    /// already (hashing a 12 MB plugin again costs 9 ms of a reload).
    ///
    /// # Errors
    ///
    /// As [`Runtime::load_file`].
    pub fn load_digested(&self, name: &str, bytes: &[u8], digest: String) -> Result<Arc<Plugin>, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.to_string(),
            digest: digest.clone(),
            reason: format!("{e:#}"),
        };
        let (component, cache) = match &self.cache {
            Some(cache) => cache.load(&self.engine, &digest, bytes).map_err(invalid)?,
            None => (wasmtime::component::Component::new(&self.engine, bytes).map_err(invalid)?, CacheOutcome::Disabled),
        };
        let (world, imports, exports) = plugin::describe(&self.engine, &component);
        let Some((world, api_version)) = world else {
            return Err(LoadError::NoWorld { name: name.into(), digest, exports: exports.join(", ") });
        };
        if plugin::api_fit(&api_version) == plugin::ApiFit::Rebuild {
            return Err(LoadError::Version { name: name.into(), digest, version: api_version });
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link {
            name: name.into(),
            digest: digest.clone(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!(plugin = name, %digest, %world, ?cache, "plugin loaded");
        Ok(Arc::new(Plugin {
            name: name.to_string(),
            digest,
            size: bytes.len(),
            world,
            api_version,
            imports,
            exports,
            cache,
            pre,
        }))
    }

    /// Loads a plugin and checks it implements `expected`, for `needed_by`
    /// (e.g. `stage 2 of pipeline forecast-release`).
    ///
    /// # Errors
    ///
    /// As [`Runtime::load_file`], plus [`LoadError::WrongWorld`].
    pub fn load_for(&self, path: &Path, expected: World, needed_by: &str) -> Result<Arc<Plugin>, LoadError> {
        let plugin = self.load_file(path)?;
        check_world(&plugin, expected, needed_by)?;
        Ok(plugin)
    }

    /// Binds a loaded plugin to its context.
    ///
    /// # Errors
    ///
    /// When the plugin's exports do not match its world's shape.
    pub fn bind(&self, plugin: Arc<Plugin>, ctx: PluginContext) -> anyhow::Result<Arc<PluginInstance>> {
        let gate = Arc::new(logs::LogGate::new(&plugin.name, &self.logs));
        let meter = self.calls.meter(&plugin.name, plugin.world.as_str());
        let instance = PluginInstance::new(plugin, ctx, gate, meter)?;
        instance.check()?;
        Ok(Arc::new(instance))
    }
}

/// Checks that `plugin` implements `expected`.
///
/// # Errors
///
/// [`LoadError::WrongWorld`] naming both worlds and who needs it.
pub fn check_world(plugin: &Plugin, expected: World, needed_by: &str) -> Result<(), LoadError> {
    if plugin.world == expected {
        return Ok(());
    }
    Err(LoadError::WrongWorld {
        name: plugin.name.clone(),
        digest: plugin.digest.clone(),
        found: plugin.world,
        expected,
        needed_by: needed_by.to_string(),
    })
}

//! The on-disk cache of compiled plugins, keyed by the component's SHA-256
//! digest and the engine's compatibility hash, so a restart does not
//! recompile and an engine upgrade never loads a stale artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled artifacts live.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// Whether a load came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a compiled artifact from disk.
    Hit,
    /// Compiled the component (and stored the artifact).
    Miss,
    /// Caching is off.
    Disabled,
}

impl CompileCache {
    /// A cache in `dir` for `engine`'s settings.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> CompileCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache { dir: dir.into(), engine_key: format!("{:016x}", h.finish()) }
    }

    /// The default location: `$SYNCLINE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/syncline/compiled`, else `~/.cache/syncline/compiled`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SYNCLINE_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("syncline").join("compiled")
    }

    /// The directory holding artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `bytes` (whose digest is `digest`): from
    /// disk when present, else compiled and written atomically.
    ///
    /// A cached artifact that fails to load (truncated, corrupted) is
    /// removed and the component recompiled.
    ///
    /// # Errors
    ///
    /// When compilation fails; a failure to write the cache is only logged.
    pub fn load(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path_for(digest);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the file
            // name), under a name derived from the source's digest.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unreadable compiled artifact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, component.serialize()?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

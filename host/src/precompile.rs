//! `syncline precompile`: compiles plugins into the compile cache ahead of
//! time (in CI, or at deploy time before the files are dropped in), so a
//! start-up, `check`, `test` or hot reload of a big guest (a Python or
//! JavaScript runtime is 12-18 MB of Wasm) loads an artifact in milliseconds
//! instead of compiling for seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::runtime::{CacheOutcome, CompileCache, EngineOptions, Runtime};

/// One plugin file warmed.
#[derive(Debug)]
pub struct Warmed {
    /// The file.
    pub path: PathBuf,
    /// What came of it: the plugin's world, digest and size, or why it
    /// could not be compiled.
    pub result: Result<Compiled, String>,
}

/// A plugin now in the cache.
#[derive(Debug)]
pub struct Compiled {
    /// Its world.
    pub world: String,
    /// Its SHA-256 digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it was in the cache already.
    pub cached: bool,
    /// How long loading (and compiling, unless cached) took.
    pub elapsed: Duration,
}

/// The plugin files behind `targets`: a config (`*.toml`) stands for every
/// plugin it names (the file a start or reload would load), anything else is
/// a plugin file. Each comes with the cache folder it belongs in: `cache_dir`
/// when given, else the config's `cache-dir`, else the default.
///
/// # Errors
///
/// When a config does not load.
pub fn plan(targets: &[PathBuf], cache_dir: Option<&Path>) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for target in targets {
        if target.extension().is_some_and(|e| e == "toml") {
            let config = crate::config::load(target).map_err(|e| anyhow::anyhow!("{e}"))?;
            let dir = cache_dir.map(Path::to_path_buf).or_else(|| config.cache_dir.clone()).unwrap_or_else(CompileCache::default_dir);
            for r in config.plugin_refs() {
                out.push((r.path.clone(), dir.clone()));
            }
        } else {
            out.push((target.clone(), cache_dir.map(Path::to_path_buf).unwrap_or_else(CompileCache::default_dir)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

/// Compiles each planned file into its cache (one engine per cache folder).
///
/// # Errors
///
/// When an engine cannot be built; a plugin that does not compile is
/// reported in its [`Warmed`].
pub fn warm(plan: &[(PathBuf, PathBuf)]) -> anyhow::Result<Vec<Warmed>> {
    let mut runtimes: Vec<(PathBuf, Runtime)> = Vec::new();
    let mut out = Vec::new();
    for (path, dir) in plan {
        if !runtimes.iter().any(|(d, _)| d == dir) {
            runtimes.push((dir.clone(), Runtime::new(&EngineOptions::default(), Some(dir))?));
        }
        let runtime = &runtimes.iter().find(|(d, _)| d == dir).expect("just added").1;
        let started = Instant::now();
        let result = runtime.load_file(path).map_err(|e| e.to_string()).map(|p| Compiled {
            world: p.world.to_string(),
            digest: p.digest.clone(),
            size: p.size,
            cached: p.cache == CacheOutcome::Hit,
            elapsed: started.elapsed(),
        });
        out.push(Warmed { path: path.clone(), result });
    }
    Ok(out)
}

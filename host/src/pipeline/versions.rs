//! Plugin versions: every plugin version the host has run, kept in the
//! store by digest (so a pinned or rolled-back digest loads again after its
//! file was replaced, also after a restart), the order in which versions
//! went live per plugin name, and rollback overrides.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::PluginRef;
use crate::store::Store;

/// A rollback in force: run `digest` instead of the file, until a new file
/// (another digest than `file_digest`) is deployed.
#[derive(Debug, Clone)]
struct Override {
    digest: String,
    file_digest: String,
}

/// The archive and the version history.
pub struct Versions {
    store: Arc<dyn Store>,
    history: Mutex<BTreeMap<String, Vec<String>>>,
    overrides: Mutex<BTreeMap<String, Override>>,
}

impl Versions {
    /// Versions archived in `store`.
    pub fn new(store: Arc<dyn Store>) -> Versions {
        Versions { store, history: Mutex::default(), overrides: Mutex::default() }
    }

    /// Fails unless version `digest` of `plugin` is approved (under
    /// `[plugins] mode = "approved"`), saying how to approve it.
    ///
    /// # Errors
    ///
    /// The version is not approved, or the store cannot say.
    pub fn check_approved(&self, plugin: &PluginRef, digest: &str) -> anyhow::Result<()> {
        let approvals = self.store.plugin_approvals().map_err(|e| anyhow::anyhow!("cannot read plugin approvals: {e}"))?;
        anyhow::ensure!(
            approvals.iter().any(|a| a.plugin == plugin.name && a.digest == digest),
            "plugin `{}` version {digest} ({}, for {}) is not approved and does not run (plugins.mode = \"approved\"); after review: syncline plugin approve {} {digest}",
            plugin.name,
            plugin.path.display(),
            plugin.needed_by,
            plugin.name,
        );
        Ok(())
    }

    /// Keeps a copy of `bytes` (once per digest).
    pub fn archive(&self, digest: &str, bytes: &[u8]) {
        if let Err(e) = self.store.archive(digest, bytes) {
            tracing::warn!(%digest, error = %e, "cannot archive a plugin version; pinning or rolling back to it will not work");
        }
    }

    /// The bytes of an archived version.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        self.store.archived(digest).unwrap_or_else(|e| {
            tracing::warn!(%digest, error = %e, "cannot read an archived plugin version");
            None
        })
    }

    /// Notes that `digest` of plugin `name` went live.
    pub fn went_live(&self, name: &str, digest: &str) {
        let mut h = self.history.lock().unwrap();
        let list = h.entry(name.to_string()).or_default();
        if list.last().map(String::as_str) != Some(digest) {
            list.push(digest.to_string());
        }
    }

    /// The version before `current` of plugin `name`, if any.
    pub fn previous(&self, name: &str, current: &str) -> Option<String> {
        let h = self.history.lock().unwrap();
        let list = h.get(name)?;
        let at = list.iter().rposition(|d| d == current)?;
        list[..at].iter().rev().find(|d| *d != current).cloned()
    }

    /// Runs `digest` for plugin `name` instead of its file, until a
    /// different file than `file_digest` is deployed.
    pub fn roll_back(&self, name: &str, digest: &str, file_digest: &str) {
        self.overrides
            .lock()
            .unwrap()
            .insert(name.to_string(), Override { digest: digest.to_string(), file_digest: file_digest.to_string() });
    }

    /// The bytes to run for `plugin` (`pin` from the config wins, then a
    /// rollback, then the file), with their digest.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or a pinned digest is neither the
    /// file's nor archived.
    pub fn desired(&self, plugin: &PluginRef, pin: Option<&str>) -> anyhow::Result<(Vec<u8>, String)> {
        let read_file = |p: &Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read plugin file {}: {e}", p.display()));
        if let Some(pin) = pin {
            if let Some(bytes) = self.get(pin) {
                return Ok((bytes, pin.to_string()));
            }
            let bytes = read_file(&plugin.path)?;
            let digest = crate::runtime::digest(&bytes);
            anyhow::ensure!(
                digest == pin,
                "{} pins plugin `{}` to {pin}, but {} is {digest} and that version was never loaded here",
                plugin.needed_by,
                plugin.name,
                plugin.path.display()
            );
            return Ok((bytes, digest));
        }
        let bytes = read_file(&plugin.path)?;
        let digest = crate::runtime::digest(&bytes);
        let mut overrides = self.overrides.lock().unwrap();
        if let Some(o) = overrides.get(&plugin.name).cloned() {
            if o.file_digest == digest {
                if let Some(bytes) = self.get(&o.digest) {
                    return Ok((bytes, o.digest));
                }
            } else {
                tracing::info!(plugin = %plugin.name, %digest, "a new file was deployed; the rollback ends");
                overrides.remove(&plugin.name);
            }
        }
        Ok((bytes, digest))
    }
}

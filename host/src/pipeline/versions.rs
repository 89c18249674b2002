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

/// What identifies a file's content without reading it: a file replaced
/// by rename has another inode, one written in place another change time.
/// File times move by the kernel's clock tick, so a stamp taken less than
/// [`RACY`] after the file was changed is not trusted (a second write in
/// the same tick would keep it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    /// The last change of content or metadata (on Unix the change time,
    /// which no tool can set back).
    changed: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

/// How long after a file's last change its stamp starts to be trusted:
/// longer than a clock tick (10 ms at most).
const RACY: std::time::Duration = std::time::Duration::from_millis(100);

impl Stamp {
    /// Whether a file with this stamp may have changed again unseen when
    /// the stamp was taken at `at`.
    fn racy(&self, at: std::time::SystemTime) -> bool {
        self.changed.is_none_or(|c| at.duration_since(c).map_or(true, |d| d < RACY))
    }

    fn of(m: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        #[cfg(unix)]
        let changed = u64::try_from(m.ctime()).ok().map(|s| std::time::UNIX_EPOCH + std::time::Duration::new(s, m.ctime_nsec() as u32));
        #[cfg(not(unix))]
        let changed = m.modified().ok();
        Stamp {
            len: m.len(),
            changed,
            #[cfg(unix)]
            inode: (m.dev(), m.ino()),
        }
    }
}

/// The archive and the version history.
pub struct Versions {
    store: Arc<dyn Store>,
    history: Mutex<BTreeMap<String, Vec<String>>>,
    overrides: Mutex<BTreeMap<String, Override>>,
    /// The digest of each plugin file as last read, with its stamp then,
    /// if the stamp can be trusted.
    hashed: Mutex<BTreeMap<std::path::PathBuf, (Stamp, String)>>,
}

impl Versions {
    /// Versions archived in `store`.
    pub fn new(store: Arc<dyn Store>) -> Versions {
        Versions { store, history: Mutex::default(), overrides: Mutex::default(), hashed: Mutex::default() }
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

    /// Whether `digest` of plugin `name` already runs instead of its file
    /// while that is `file_digest` (a rollback made here already).
    pub fn rolled_back(&self, name: &str, digest: &str, file_digest: &str) -> bool {
        self.overrides.lock().unwrap().get(name).is_some_and(|o| o.digest == digest && o.file_digest == file_digest)
    }

    /// The bytes to run for `plugin` (`pin` from the config wins, then a
    /// rollback, then the file), with their digest.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or a pinned digest is neither the
    /// file's nor archived.
    pub fn desired(&self, plugin: &PluginRef, pin: Option<&str>) -> anyhow::Result<(Vec<u8>, String)> {
        let read_file = |p: &Path| self.read(p).map_err(|e| anyhow::anyhow!("cannot read plugin file {}: {e}", p.display()));
        if let Some(pin) = pin {
            if let Some(bytes) = self.get(pin) {
                return Ok((bytes, pin.to_string()));
            }
            let (bytes, digest) = read_file(&plugin.path)?;
            anyhow::ensure!(
                digest == pin,
                "{} pins plugin `{}` to {pin}, but {} is {digest} and that version was never loaded here",
                plugin.needed_by,
                plugin.name,
                plugin.path.display()
            );
            return Ok((bytes, digest));
        }
        let (bytes, digest) = read_file(&plugin.path)?;
        let o = self.overrides.lock().unwrap().get(&plugin.name).cloned();
        if let Some(o) = o {
            if o.file_digest == digest {
                if let Some(bytes) = self.get(&o.digest) {
                    return Ok((bytes, o.digest));
                }
            } else {
                tracing::info!(plugin = %plugin.name, %digest, "a new file was deployed; the rollback ends");
                self.overrides.lock().unwrap().remove(&plugin.name);
                // Or the next start would make it again, were that file deployed again.
                if let Err(e) = self.store.end_rollback(&plugin.name, &o.file_digest) {
                    tracing::warn!(plugin = %plugin.name, error = %e, "the store still keeps the rollback that ended; the next start ends it again");
                }
            }
        }
        Ok((bytes, digest))
    }

    /// Whether [`Versions::desired`] would give `running` again for an
    /// unpinned plugin, known without reading its file: no rollback is in
    /// force and the file is the one last read, which was `running`. A
    /// reload reads only the plugin files that changed (reading and hashing
    /// a 12 MB plugin takes ~17 ms).
    pub fn unchanged(&self, plugin: &PluginRef, running: &str) -> bool {
        if self.overrides.lock().unwrap().contains_key(&plugin.name) {
            return false;
        }
        let Ok(meta) = std::fs::metadata(&plugin.path) else { return false };
        let hashed = self.hashed.lock().unwrap();
        hashed.get(&plugin.path).is_some_and(|(stamp, digest)| *stamp == Stamp::of(&meta) && digest == running)
    }

    /// A plugin file's bytes and digest, noting its stamp as read.
    fn read(&self, path: &Path) -> std::io::Result<(Vec<u8>, String)> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let stamp = Stamp::of(&file.metadata()?);
        let mut bytes = Vec::with_capacity(stamp.len as usize);
        file.read_to_end(&mut bytes)?;
        let digest = crate::runtime::digest(&bytes);
        let mut hashed = self.hashed.lock().unwrap();
        match stamp.racy(std::time::SystemTime::now()) {
            true => hashed.remove(path),
            false => hashed.insert(path.to_path_buf(), (stamp, digest.clone())),
        };
        Ok((bytes, digest))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::World;

    #[test]
    fn a_plugin_file_is_read_again_only_when_it_may_have_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        // Stamps are trusted once files have not changed for a while.
        let settle = || std::thread::sleep(RACY + RACY / 2);
        std::fs::write(&path, b"version one").unwrap();
        settle();
        let plugin = PluginRef { name: "p".into(), path: path.clone(), world: World::Transformer, needed_by: "a test".into() };
        let v = Versions::new(Arc::new(crate::store::MemoryStore::new()));
        assert!(!v.unchanged(&plugin, "anything"), "never read");
        let (_, one) = v.desired(&plugin, None).unwrap();
        assert!(v.unchanged(&plugin, &one));
        assert!(!v.unchanged(&plugin, "sha256:another-running-version"));

        // Written in place, same length: the change time moves. Read at
        // once, the stamp is not trusted (a second write within the same
        // clock tick would not move it); once settled, it is.
        std::fs::write(&path, b"version two").unwrap();
        assert!(!v.unchanged(&plugin, &one));
        let (_, two) = v.desired(&plugin, None).unwrap();
        assert_ne!(one, two);
        assert!(!v.unchanged(&plugin, &two), "a stamp taken right after a change");
        settle();
        v.desired(&plugin, None).unwrap();
        assert!(v.unchanged(&plugin, &two));

        // Replaced by a rename: another inode.
        let tmp = dir.path().join("p.tmp");
        std::fs::write(&tmp, b"version two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(!v.unchanged(&plugin, &two));
        settle();
        v.desired(&plugin, None).unwrap();
        assert!(v.unchanged(&plugin, &two));

        // A rollback in force is the file's business no more.
        v.roll_back("p", &one, &two);
        assert!(!v.unchanged(&plugin, &two));

        // A file that is gone is not unchanged.
        std::fs::remove_file(&path).unwrap();
        assert!(!v.unchanged(&plugin, &two));
    }
}

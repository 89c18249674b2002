//! Hot reload: a debounced watcher on the config file and the plugin
//! folder, SIGHUP and `POST /v1/reload` all run the same reload: read and
//! check the config exactly as `syncline check` does, build the new topology
//! against the running one (only changed parts rebuilt; changed plugin files
//! compiled, world-checked and bound off the hot path), then swap. A reload
//! that fails changes nothing: it is logged with the same text `check`
//! prints, recorded as an audit event, counted, and kept in the history
//! served at `GET /v1/reloads`. On a store several processes share, a
//! reload, rollback or approval made through one process's API is
//! broadcast, and the others make it too (trigger `cluster`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};


use crate::pipeline::Engine;
use crate::store::records::{AuditEntry, AuditEvent, Broadcast, ClusterCommand};

pub use crate::store::records::{PluginChange, ReloadRecord};

/// Runs reloads one at a time and remembers them.
pub struct Reloader {
    engine: Arc<Engine>,
    config: PathBuf,
    history: Mutex<VecDeque<ReloadRecord>>,
    applied: AtomicU64,
    rejected: AtomicU64,
}

const HISTORY: usize = 200;

impl Reloader {
    /// A reloader for `engine`, reading `config`.
    pub fn new(engine: Arc<Engine>, config: PathBuf) -> Arc<Reloader> {
        Arc::new(Reloader { engine, config, history: Mutex::default(), applied: AtomicU64::new(0), rejected: AtomicU64::new(0) })
    }

    /// The history, newest last.
    pub fn history(&self) -> Vec<ReloadRecord> {
        self.history.lock().unwrap().iter().cloned().collect()
    }

    /// (applied, rejected) reloads so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.applied.load(Ordering::Relaxed), self.rejected.load(Ordering::Relaxed))
    }

    /// Reloads now; `actor` (`host`, `token:ID`) is who asked, for the audit log.
    pub fn reload(&self, trigger: &str, actor: &str) -> ReloadRecord {
        self.reload_from(trigger, actor, None)
    }

    /// Reloads now, and tells every other process sharing the store to
    /// reload too (an API call reaches the whole cluster; each process
    /// reads its own files and the shared store). The record says whether
    /// they were told.
    pub fn reload_everywhere(&self, trigger: &str, actor: &str) -> ReloadRecord {
        let mut record = self.reload(trigger, actor);
        record.cluster = self.tell(ClusterCommand::Reload { trigger: trigger.to_string() }, actor);
        record
    }

    /// Tells the other processes sharing the store to carry out `command`;
    /// what came of it, `None` when no other process can share the store.
    fn tell(&self, command: ClusterCommand, actor: &str) -> Option<String> {
        let b = Broadcast { from: self.engine.holder().to_string(), actor: actor.to_string(), at: crate::store::now_ms(), command };
        match self.engine.store().broadcast(&b) {
            Ok(false) => None,
            Ok(true) => Some("told".into()),
            Err(e) => {
                tracing::warn!(error = %e, command = ?b.command, "the other processes sharing the store were not told; repeat the call on each of them");
                Some(format!("not told: {e}"))
            }
        }
    }

    /// Carries out what another process sharing the store broadcast; a
    /// rollback this process already made (at its start) changes nothing.
    pub fn follow(&self, b: Broadcast) -> Option<ReloadRecord> {
        if let ClusterCommand::RollBack { plugin, digest, file_digest } = &b.command {
            if self.engine.versions().rolled_back(plugin, digest, file_digest) {
                return None;
            }
            self.engine.versions().roll_back(plugin, digest, file_digest);
        }
        tracing::info!(from = %b.from, actor = %b.actor, command = ?b.command, "carrying out another process's command");
        Some(self.reload_from("cluster", &b.actor, Some(b.from)))
    }

    fn reload_from(&self, trigger: &str, actor: &str, from: Option<String>) -> ReloadRecord {
        let _one_at_a_time = self.engine.reload_lock.lock().unwrap();
        let started = Instant::now();
        let mut record = ReloadRecord {
            at: crate::pipeline::now_rfc3339(),
            trigger: trigger.to_string(),
            outcome: "unchanged".into(),
            changes: Vec::new(),
            plugins: Vec::new(),
            kept: Vec::new(),
            error: None,
            millis: 0,
            from,
            cluster: None,
        };
        let result = crate::config::load(&self.config)
            .map_err(|e| e.to_string())
            .and_then(|config| self.engine.apply(config).map_err(|e| format!("{e:#}")));
        match result {
            Err(error) => {
                record.outcome = "rejected".into();
                tracing::error!(trigger, "reload rejected; the running configuration and plugins stay:\n{error}");
                record.error = Some(error);
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Ok(changes) => {
                if !changes.is_empty() {
                    record.outcome = "applied".into();
                    self.applied.fetch_add(1, Ordering::Relaxed);
                }
                record.changes.extend(changes.added.iter().map(|c| format!("added {c}")));
                record.changes.extend(changes.changed.iter().map(|c| format!("changed {c}")));
                record.changes.extend(changes.removed.iter().map(|c| format!("removed {c}")));
                record.plugins = changes
                    .swaps
                    .iter()
                    .map(|s| PluginChange { plugin: s.plugin.clone(), who: s.who.clone(), old: s.old_digest.clone(), new: s.new_digest.clone() })
                    .collect();
                if !changes.removed.is_empty() {
                    record.kept = self.kept(&changes.removed);
                }
                for p in &record.plugins {
                    tracing::info!(plugin = %p.plugin, who = %p.who, old = %p.old, new = %p.new, "plugin swapped");
                }
                for c in &record.changes {
                    tracing::info!(change = %c, "configuration reloaded");
                }
                for k in &record.kept {
                    tracing::warn!(kept = %k, "work kept in the store for a removed part");
                }
            }
        }
        record.millis = started.elapsed().as_millis() as u64;
        if let Err(e) = self.engine.store().audit(&AuditEntry { actor: actor.to_string(), tenant: None, event: AuditEvent::Reload(record.clone()) }) {
            tracing::warn!(error = %e, "cannot record the reload audit event");
        }
        let mut history = self.history.lock().unwrap();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record.clone());
        record
    }

    /// Returns plugin `name` to the version that ran before the current one,
    /// everywhere it runs, in one reload, and tells the other processes
    /// sharing the store to run that version too. The rollback holds until
    /// a new file for the plugin is deployed.
    ///
    /// # Errors
    ///
    /// When no plugin of that name runs, or it has no earlier version.
    pub fn rollback(&self, name: &str, actor: &str) -> Result<ReloadRecord, String> {
        let topology = self.engine.topology();
        let current = crate::pipeline::running_plugins(&topology)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| format!("no plugin named `{name}` is running"))?;
        let previous = self
            .engine
            .versions()
            .previous(name, &current)
            .ok_or_else(|| format!("plugin `{name}` has no earlier version than {current} in this host's history"))?;
        let path = topology
            .config
            .plugin_refs()
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.path.clone())
            .ok_or_else(|| format!("no plugin named `{name}` in the configuration"))?;
        let file_digest = std::fs::read(&path).map(|b| crate::runtime::digest(&b)).unwrap_or_default();
        self.engine.versions().roll_back(name, &previous, &file_digest);
        let mut record = self.reload("rollback", actor);
        record.cluster = self.tell(ClusterCommand::RollBack { plugin: name.to_string(), digest: previous, file_digest }, actor);
        Ok(record)
    }

    /// What the store still holds for removed pipelines and sinks.
    fn kept(&self, removed: &[String]) -> Vec<String> {
        let Ok(crate::store::Backlog { messages, deliveries, .. }) = self.engine.store().backlog() else { return Vec::new() };
        let mut out = Vec::new();
        for ((tenant, pipeline), n) in messages {
            if removed.contains(&format!("pipeline {tenant}/{pipeline}")) {
                out.push(format!("{n} accepted message(s) of removed pipeline {tenant}/{pipeline} kept; they resume if it comes back"));
            }
        }
        for (sink, n) in deliveries {
            if removed.contains(&format!("sink {sink}")) {
                out.push(format!("{n} pending delivery(ies) of removed sink {sink} kept; they resume if it comes back"));
            }
        }
        out
    }
}

/// Carries out, one at a time on a thread of its own, what the other
/// processes sharing the store broadcast (nothing on a store only this
/// process uses).
///
/// # Errors
///
/// When the thread cannot start.
pub fn follow_cluster(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let Some(commands) = reloader.engine.store().broadcasts(reloader.engine.holder()) else { return Ok(()) };
    std::thread::Builder::new().name("reload-cluster".into()).spawn(move || {
        for b in commands {
            reloader.follow(b);
        }
    })?;
    Ok(())
}

/// How a change asks for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The file is complete (renamed into place, or closed after writing): reload now.
    Now,
    /// The file is being written: reload once writes settle.
    Settle,
}

/// Whether an event should trigger a reload, and how: a change (not a mere
/// read) of the config file or of a `.wasm` file in the plugin folder. The
/// temporary file of a write-then-rename does not count; its rename does.
fn trigger(event: &notify::Event, config: &Path, plugins: &Path) -> Option<Trigger> {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
    use notify::EventKind;
    let how = match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => Trigger::Now,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Trigger::Now,
        EventKind::Remove(_) => Trigger::Now,
        EventKind::Create(_) | EventKind::Modify(_) => Trigger::Settle,
        _ => return None,
    };
    // A folder created in the plugin folder (a new tenant's) may already
    // hold plugins moved in before it was watched: look once writes settle.
    let folder = matches!(event.kind, EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder));
    let is_config = |p: &Path| p == config || (p.file_name() == config.file_name() && p.parent().and_then(|d| d.canonicalize().ok()).as_deref() == config.parent());
    let hit = event.paths.iter().any(|p| {
        is_config(p) || (p.starts_with(plugins) && (folder || p.extension().is_some_and(|e| e == "wasm")))
    });
    hit.then_some(if folder { Trigger::Settle } else { how })
}

/// How long in-place writes must pause before a reload: a file written in
/// several steps is taken once, when the writes stop (and only if valid).
const SETTLE: Duration = Duration::from_millis(50);

/// How long to gather the events of one complete change (a rename is
/// reported as several events).
const COALESCE: Duration = Duration::from_millis(2);

/// Watches the config file and the plugin folder and reloads: at once when
/// a file is renamed into place or closed after writing, else once writes
/// settle. Returns the watcher: dropping it stops watching.
///
/// # Errors
///
/// When the folders cannot be watched.
pub fn watch(reloader: Arc<Reloader>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let config = reloader.config.canonicalize().unwrap_or_else(|_| reloader.config.clone());
    let plugins = reloader.engine.topology().config.plugins_dir.clone();
    std::fs::create_dir_all(&plugins).ok();
    let plugins = plugins.canonicalize().unwrap_or(plugins);
    let (tx, rx) = std::sync::mpsc::channel::<Trigger>();
    let (c, p) = (config.clone(), plugins.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Some(t) = event.ok().and_then(|e| trigger(&e, &c, &p)) {
            let _ = tx.send(t);
        }
    })?;
    let config_dir = config.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    watcher.watch(&plugins, RecursiveMode::Recursive)?;
    std::thread::Builder::new().name("reload-watcher".into()).spawn(move || {
        while let Ok(mut t) = rx.recv() {
            // Coalesce: a rename arrives as several events within microseconds
            // (COALESCE); an in-place write waits until writes pause (SETTLE).
            loop {
                let quiet = if t == Trigger::Now { COALESCE } else { SETTLE };
                match rx.recv_timeout(quiet) {
                    Ok(next) => t = if t == Trigger::Now { Trigger::Now } else { next },
                    Err(_) => break,
                }
            }
            reloader.reload("watch", "host");
        }
    })?;
    Ok(watcher)
}

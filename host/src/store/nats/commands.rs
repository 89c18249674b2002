//! Changes made through one process's API that every process sharing the
//! store makes too ([`Broadcast`]): each is the value of a key of the
//! control bucket — `command.reload`, `command.rollback.PLUGIN` — and every
//! process watches those keys. Keeping the last command of each key (not a
//! passing message) is what lets a process that starts later still roll
//! back what the others rolled back; a reload asked for before it started
//! is already in what it loaded, so it skips those.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;

use super::{unavailable, Connection};
use crate::store::records::{Broadcast, ClusterCommand};
use crate::store::StoreError;

/// The keys commands are kept under.
const KEYS: &str = "command.>";

/// How long to wait before watching again after the watch failed (the
/// server went away).
const AGAIN: Duration = Duration::from_secs(1);

/// The key a command is kept under: one per kind of command and plugin,
/// so a later command replaces the one it overrides and no other.
fn key(command: &ClusterCommand) -> String {
    match command {
        ClusterCommand::Reload { .. } => "command.reload".to_string(),
        ClusterCommand::RollBack { plugin, .. } => rollback_key(plugin),
    }
}

/// The key `plugin`'s rollback is kept under.
fn rollback_key(plugin: &str) -> String {
    format!("{ROLLBACKS}{}", hex::encode(plugin.as_bytes()))
}

/// What the keys of rollbacks begin with.
const ROLLBACKS: &str = "command.rollback.";

/// Sends `b` to every process watching `control` (the `syncline-control` bucket).
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn send(conn: &Connection, control: &kv::Store, b: &Broadcast) -> Result<(), StoreError> {
    let (kv, key) = (control.clone(), key(&b.command));
    let value = serde_json::to_vec(b).expect("a broadcast serializes");
    conn.run(async move { kv.put(key, value.into()).await.map(drop).map_err(|e| unavailable("telling the other processes", e)) })
}

/// The rollbacks kept in `control` (each still in force while its file
/// digest is deployed): what a process starting now makes before it
/// loads its plugins.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn rollbacks(conn: &Connection, control: &kv::Store) -> Result<Vec<Broadcast>, StoreError> {
    let kv = control.clone();
    conn.run(async move {
        let failed = |e: &dyn std::fmt::Display| unavailable("reading the rollbacks in force", e);
        let keys: Vec<String> = kv.keys().await.map_err(|e| failed(&e))?.filter_map(|k| async move { k.ok() }).collect().await;
        let mut kept = Vec::new();
        for key in keys.into_iter().filter(|k| k.starts_with(ROLLBACKS)) {
            let Some(value) = kv.get(&key).await.map_err(|e| failed(&e))? else { continue };
            match serde_json::from_slice::<Broadcast>(&value) {
                Ok(b) if matches!(b.command, ClusterCommand::RollBack { .. }) => kept.push(b),
                _ => tracing::warn!(key, "a kept rollback does not read as one; ignored"),
            }
        }
        Ok(kept)
    })
}

/// Forgets the rollback of `plugin` kept in `control` if it was made
/// while the plugin's file was `file_digest` (a later one stays).
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the server does not answer.
pub fn end_rollback(conn: &Connection, control: &kv::Store, plugin: &str, file_digest: &str) -> Result<(), StoreError> {
    let kv = control.clone();
    let key = rollback_key(plugin);
    let file_digest = file_digest.to_string();
    conn.run(async move {
        let failed = |e: &dyn std::fmt::Display| unavailable("forgetting a rollback that ended", e);
        let Some(entry) = kv.entry(&key).await.map_err(|e| failed(&e))? else { return Ok(()) };
        if entry.operation != kv::Operation::Put {
            return Ok(());
        }
        let ends = serde_json::from_slice::<Broadcast>(&entry.value).map_or(true, |b| b.command.rolls_back_from(&file_digest));
        if ends {
            // Only the entry read: a rollback made since stays.
            kv.delete_expect_revision(&key, Some(entry.revision)).await.map_err(|e| failed(&e))?;
        }
        Ok(())
    })
}

/// What this process has taken from the watch so far.
struct Followed {
    /// The control bucket's last revision when this process began to
    /// follow: a reload asked for up to it is in what the process loaded.
    began: Option<u64>,
    /// The revision of each key last passed on (a watch made again after
    /// an outage starts with the last value of each key again).
    seen: HashMap<String, u64>,
}

impl Followed {
    /// Whether to pass on `b`, kept under `key` at `revision`, to `holder`.
    fn take(&mut self, key: &str, revision: u64, b: &Broadcast, holder: &str) -> bool {
        if self.seen.get(key).is_some_and(|r| *r >= revision) {
            return false;
        }
        self.seen.insert(key.to_string(), revision);
        let before = self.began.is_some_and(|began| revision <= began);
        b.from != holder && !(before && matches!(b.command, ClusterCommand::Reload { .. }))
    }
}

/// What other processes send to `holder` through `control`, from now on,
/// and the rollbacks sent before that (the file digest they name decides
/// whether they still hold). Watches again after the server went away.
pub fn follow(conn: &Arc<Connection>, control: kv::Store, holder: &str) -> Receiver<Broadcast> {
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = holder.to_string();
    conn.spawn(async move {
        let mut followed = Followed { began: None, seen: HashMap::new() };
        loop {
            match watch(&control, &holder, &mut followed, &tx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "watching the other processes' commands again");
                    tokio::time::sleep(AGAIN).await;
                }
            }
        }
    });
    rx
}

/// Watches once, until the watch fails (`Err`) or nobody listens (`Ok`).
async fn watch(control: &kv::Store, holder: &str, followed: &mut Followed, tx: &Sender<Broadcast>) -> Result<(), StoreError> {
    if followed.began.is_none() {
        let status = control.status().await.map_err(|e| unavailable("reading the control bucket", e))?;
        followed.began = Some(status.info.state.last_sequence);
    }
    let mut entries = control.watch_with_history(KEYS).await.map_err(|e| unavailable("watching the other processes' commands", e))?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| unavailable("watching the other processes' commands", e))?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let b = match serde_json::from_slice::<Broadcast>(&entry.value) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(key = %entry.key, error = %e, "a command from another process does not read as one; ignored");
                continue;
            }
        };
        if followed.take(&entry.key, entry.revision, &b, holder) && tx.send(b).is_err() {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable("the watch of the other processes' commands ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broadcast(from: &str, command: ClusterCommand) -> Broadcast {
        Broadcast { from: from.into(), actor: "token:ops".into(), at: 0, command }
    }

    fn reload() -> ClusterCommand {
        ClusterCommand::Reload { trigger: "api".into() }
    }

    fn rollback(plugin: &str) -> ClusterCommand {
        ClusterCommand::RollBack { plugin: plugin.into(), digest: "sha256:a".into(), file_digest: "sha256:b".into() }
    }

    #[test]
    fn each_plugin_s_rollback_has_a_key_of_its_own_and_reloads_share_one() {
        assert_eq!(key(&reload()), key(&ClusterCommand::Reload { trigger: "approval".into() }));
        assert_ne!(key(&rollback("tagger")), key(&rollback("mapper")));
        assert!(key(&rollback("a.b")).starts_with("command.rollback.") && !key(&rollback("a.b"))["command.rollback.".len()..].contains('.'));
    }

    #[test]
    fn a_process_hears_what_another_sends_and_passes_over_what_does_not_read_as_a_command() {
        let server = super::super::testing::NatsServer::start();
        let (conn, layout) = super::super::testing::connected(&server);
        let heard = follow(&conn, layout.control.clone(), "host-b");
        // Something else wrote a command key: ignored, the watch goes on.
        let control = layout.control.clone();
        conn.run(async move { control.put("command.reload", "not a command".into()).await.unwrap() });
        send(&conn, &layout.control, &broadcast("host-a", rollback("tagger"))).unwrap();
        send(&conn, &layout.control, &broadcast("host-b", reload())).unwrap();
        send(&conn, &layout.control, &broadcast("host-a", reload())).unwrap();
        let got: Vec<Broadcast> = (0..2).map(|_| heard.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(got, [broadcast("host-a", rollback("tagger")), broadcast("host-a", reload())], "its own is not passed back");
        assert!(heard.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_process_takes_what_others_sent_once_and_skips_reloads_from_before_it_began() {
        let mut f = Followed { began: Some(10), seen: HashMap::new() };
        // Before it began: the rollback still counts, the reload is in what it loaded.
        assert!(f.take("command.rollback.74", 4, &broadcast("host-1", rollback("t")), "host-2"));
        assert!(!f.take("command.reload", 7, &broadcast("host-1", reload()), "host-2"));
        // After: both; its own never; one revision once (a watch made again repeats it).
        assert!(f.take("command.reload", 11, &broadcast("host-1", reload()), "host-2"));
        assert!(!f.take("command.reload", 11, &broadcast("host-1", reload()), "host-2"));
        assert!(!f.take("command.rollback.74", 4, &broadcast("host-1", rollback("t")), "host-2"));
        assert!(!f.take("command.reload", 12, &broadcast("host-2", reload()), "host-2"));
    }
}

//! The processes sharing a NATS store, and which should hold what: each
//! beats in the control bucket (`member.HOLDER`) every [`BEAT`], and is
//! live while its last beat is younger than [`LIVE`]. A partition's
//! preferred holder is the live member that ranks it highest (rendezvous
//! hashing: partitions spread evenly, and few move when a member comes or
//! goes). A preferred holder that finds its partition held by another asks
//! for it (`want.…`); the holder lets go at its next claim or renewal —
//! after the batch it is on — and the one that asked takes it. A partition
//! nobody asks for stays with whoever took it, so work never waits for a
//! member that does not run its queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::{unavailable, Connection};
use crate::store::{now_ms, Partition, StoreError};

/// How often a member beats.
pub const BEAT: Duration = Duration::from_secs(2);

/// How long after its last beat a member counts as live.
pub const LIVE: Duration = Duration::from_secs(10);

/// A process of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Member {
    /// Its holder name (`host-pid`).
    pub holder: String,
    /// When it joined (ms since the epoch).
    pub since: i64,
    /// Its last beat.
    pub at: i64,
}

/// A request for a partition by its preferred holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Want {
    holder: String,
    at: i64,
}

/// This process's view of the members.
pub struct Members {
    conn: Arc<Connection>,
    kv: kv::Store,
    joined: Mutex<Option<String>>,
    stop: Arc<AtomicBool>,
    cache: Mutex<Option<(Instant, Vec<Member>)>>,
}

fn member_key(holder: &str) -> String {
    format!("member.{}", hex::encode(holder.as_bytes()))
}

fn want_key(p: &Partition) -> String {
    format!("want.{}.{}.{}", hex::encode(p.queue.name().as_bytes()), p.index, p.of)
}

impl Members {
    /// The members as kept in `control` (the `syncline-control` bucket).
    pub fn new(conn: Arc<Connection>, control: kv::Store) -> Members {
        Members { conn, kv: control, joined: Mutex::new(None), stop: Arc::default(), cache: Mutex::new(None) }
    }

    /// Joins as `holder` (once): its beats start.
    pub fn join(&self, holder: &str) {
        let mut joined = self.joined.lock().expect("not poisoned");
        if joined.is_some() {
            return;
        }
        *joined = Some(holder.to_string());
        let (conn, kv, stop) = (self.conn.clone(), self.kv.clone(), self.stop.clone());
        let (key, since) = (member_key(holder), now_ms());
        let holder = holder.to_string();
        let beat = move || {
            let value = serde_json::to_vec(&Member { holder: holder.clone(), since, at: now_ms() }).expect("a member serializes");
            let (kv, key) = (kv.clone(), key.clone());
            conn.run(async move { kv.put(key, value.into()).await.map(drop) })
        };
        if let Err(e) = beat() {
            tracing::warn!(error = %e, "could not announce this process to the NATS store's members; trying again");
        }
        let _ = std::thread::Builder::new().name("store-beat".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(BEAT);
                if let Err(e) = beat() {
                    tracing::debug!(error = %e, "a beat to the NATS store's members failed");
                }
            }
        });
    }

    /// The live members, oldest first (read at most once a second).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn live(&self) -> Result<Vec<Member>, StoreError> {
        if let Some((read, members)) = self.cache.lock().expect("not poisoned").as_ref() {
            if read.elapsed() < Duration::from_secs(1) {
                return Ok(members.clone());
            }
        }
        let kv = self.kv.clone();
        let all: Vec<Member> = self.conn.run(async move {
            use futures_util::TryStreamExt;
            let keys: Vec<String> = kv.keys().await.map_err(|e| unavailable("listing members", e))?.try_collect().await.map_err(|e| unavailable("listing members", e))?;
            let mut found = Vec::new();
            for key in keys.into_iter().filter(|k| k.starts_with("member.")) {
                if let Some(v) = kv.get(key.as_str()).await.map_err(|e| unavailable("reading a member", e))? {
                    found.extend(serde_json::from_slice::<Member>(&v).ok());
                }
            }
            Ok::<_, StoreError>(found)
        })?;
        let now = now_ms();
        let mut live: Vec<Member> = all.into_iter().filter(|m| now - m.at < LIVE.as_millis() as i64).collect();
        live.sort_by(|a, b| (a.since, &a.holder).cmp(&(b.since, &b.holder)));
        *self.cache.lock().expect("not poisoned") = Some((Instant::now(), live.clone()));
        Ok(live)
    }

    /// Of `live`, the one that should hold `p`.
    pub fn preferred<'a>(p: &Partition, live: &'a [Member]) -> Option<&'a str> {
        live.iter().max_by_key(|m| crate::pipeline::fields::key_hash(&format!("{}/{}/{}/{}", p.queue.name(), p.index, p.of, m.holder))).map(|m| m.holder.as_str())
    }

    /// Asks for `p` as `holder`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn want(&self, p: &Partition, holder: &str) -> Result<(), StoreError> {
        let (kv, key) = (self.kv.clone(), want_key(p));
        let value = serde_json::to_vec(&Want { holder: holder.to_string(), at: now_ms() }).expect("a want serializes");
        self.conn.run(async move { kv.put(key, value.into()).await.map(drop).map_err(|e| unavailable("asking for a partition", e)) })
    }

    /// The live member other than `holder` that asked for `p`, if one did.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn wanted_by_another(&self, p: &Partition, holder: &str) -> Result<Option<String>, StoreError> {
        let (kv, key) = (self.kv.clone(), want_key(p));
        let found = self.conn.run(async move { kv.get(key).await.map_err(|e| unavailable("reading who asks for a partition", e)) })?;
        let Some(want) = found.and_then(|v| serde_json::from_slice::<Want>(&v).ok()) else { return Ok(None) };
        if want.holder == holder || now_ms() - want.at > LIVE.as_millis() as i64 {
            return Ok(None);
        }
        Ok(self.live()?.iter().any(|m| m.holder == want.holder).then_some(want.holder))
    }

    /// Withdraws the request for `p` (its asker has it).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn granted(&self, p: &Partition) -> Result<(), StoreError> {
        let (kv, key) = (self.kv.clone(), want_key(p));
        self.conn.run(async move { kv.delete(key).await.map_err(|e| unavailable("withdrawing a request for a partition", e)) })
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

//! Records with a number and a state that changes — dead letters,
//! exceptions, closed loops — each kind a key-value bucket keyed by the
//! number (zero-padded, so keys sort as numbers). A record a commit keeps
//! is numbered from the commit's log entry ([`number`]), so publishing it
//! again after a holder died writes the same key; one kept outside a
//! commit (an exception parked about a pipeline, a loop gone overdue) is
//! numbered by a message of its own in the commits stream. A state change
//! is a compare-and-set on the key's revision, so of two operators
//! replaying one dead letter at once, one is told it was already done.
//! Listing reads the bucket's stream once (its latest entry per key),
//! filters, and sorts by number.

use std::marker::PhantomData;

use async_nats::jetstream::{kv, stream};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::reader::read_all;
use super::{unavailable, Connection};
use crate::store::StoreError;

/// How many records one commit-log entry may number.
pub const PER_ENTRY: i64 = 10_000;

/// The number of the `index`th record kept by commit-log entry `entry`.
///
/// # Errors
///
/// [`StoreError::Other`] when an entry keeps more than [`PER_ENTRY`].
pub fn number(entry: u64, index: usize) -> Result<i64, StoreError> {
    if index as i64 >= PER_ENTRY {
        return Err(StoreError::Other(format!("one commit keeps at most {PER_ENTRY} records (dead letters, exceptions, loops)")));
    }
    Ok(entry as i64 * PER_ENTRY + index as i64)
}

/// A record as kept: the record and the message it is about (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case<T> {
    /// The record.
    pub record: T,
    /// The message's JSON, when the record keeps one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// A bucket of numbered records of type `T`.
pub struct Cases<T> {
    kv: kv::Store,
    stream: stream::Stream,
    bucket: &'static str,
    what: &'static str,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Cases<T> {
    fn clone(&self) -> Self {
        Cases { kv: self.kv.clone(), stream: self.stream.clone(), bucket: self.bucket, what: self.what, kind: PhantomData }
    }
}

/// The key of record `id`.
fn key(id: i64) -> String {
    format!("{id:016}")
}

impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> Cases<T> {
    /// The records of `bucket` (made by [`super::Layout::ensure`]),
    /// called `what` in messages.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: &Connection, bucket: &'static str, what: &'static str) -> Result<Cases<T>, StoreError> {
        let js = conn.jetstream();
        let (kv, stream) = conn.run(async move {
            let kv = js.get_key_value(bucket).await.map_err(|e| unavailable(&format!("opening bucket `{bucket}`"), e))?;
            let stream = js.get_stream(format!("KV_{bucket}")).await.map_err(|e| unavailable(&format!("opening bucket `{bucket}`"), e))?;
            Ok::<_, StoreError>((kv, stream))
        })?;
        Ok(Cases { kv, stream, bucket, what, kind: PhantomData })
    }

    /// A new number for a record kept outside a commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn fresh_number(conn: &Connection) -> Result<i64, StoreError> {
        let js = conn.jetstream();
        let seq = conn.run(async move {
            let ack = js.publish("syncline.commits.numbers", Vec::<u8>::new().into()).await.map_err(|e| unavailable("numbering a record", e))?;
            ack.await.map(|a| a.sequence).map_err(|e| unavailable("numbering a record", e))
        })?;
        number(seq, 0)
    }

    /// Keeps `case` as record `id` (again: the same).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn put(&self, conn: &Connection, id: i64, case: &Case<T>) -> Result<(), StoreError> {
        let (kv, value, what) = (self.kv.clone(), super::shrink::to_fit(case, conn.piece(), &["body"]), self.what);
        conn.run(async move { kv.put(key(id), value.into()).await.map(drop).map_err(|e| unavailable(&format!("keeping {what} {id}"), e)) })
    }

    /// Record `id`, if kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when it does not read.
    pub fn get(&self, conn: &Connection, id: i64) -> Result<Option<Case<T>>, StoreError> {
        Ok(self.entry(conn, id)?.map(|(case, _)| case))
    }

    fn entry(&self, conn: &Connection, id: i64) -> Result<Option<(Case<T>, u64)>, StoreError> {
        if id < 0 {
            return Ok(None);
        }
        let (kv, what) = (self.kv.clone(), self.what);
        let found = conn.run(async move { kv.entry(key(id)).await.map_err(|e| unavailable(&format!("reading {what} {id}"), e)) })?;
        match found.filter(|e| e.operation == kv::Operation::Put) {
            None => Ok(None),
            Some(e) => {
                let case = serde_json::from_slice(&e.value).map_err(|err| StoreError::Corrupt(format!("{what} {id} does not read: {err}")))?;
                Ok(Some((case, e.revision)))
            }
        }
    }

    /// Changes record `id` with `change` (which refuses with an error a
    /// change its state does not allow), unless someone changed it
    /// meanwhile — then it is read and asked again. The record as changed;
    /// `None` when there is no record `id`.
    ///
    /// # Errors
    ///
    /// What `change` returns; [`StoreError::Unavailable`] when the server
    /// does not answer.
    pub fn update(&self, conn: &Connection, id: i64, change: impl Fn(&mut T) -> Result<(), StoreError>) -> Result<Option<Case<T>>, StoreError> {
        for _ in 0..16 {
            let Some((mut case, revision)) = self.entry(conn, id)? else { return Ok(None) };
            change(&mut case.record)?;
            let (kv, value, what) = (self.kv.clone(), super::shrink::to_fit(&case, conn.piece(), &["body"]), self.what);
            let written = conn.run(async move {
                match kv.update(key(id), value.into(), revision).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(e) => Err(unavailable(&format!("changing {what} {id}"), e)),
                }
            })?;
            if written {
                return Ok(Some(case));
            }
        }
        Err(StoreError::Unavailable(format!("{} {id} kept changing while it was being changed", self.what)))
    }

    /// Forgets record `id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn delete(&self, conn: &Connection, id: i64) -> Result<(), StoreError> {
        let (kv, what) = (self.kv.clone(), self.what);
        conn.run(async move { kv.purge(key(id)).await.map_err(|e| unavailable(&format!("forgetting {what} {id}"), e)) })
    }

    /// Every record kept, by number.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when one does not read.
    pub fn all(&self, conn: &Connection) -> Result<Vec<(i64, Case<T>)>, StoreError> {
        let subject = format!("$KV.{}.>", self.bucket);
        let prefix = format!("$KV.{}.", self.bucket);
        let mut found = Vec::new();
        read_all(conn, &self.stream, &subject, 500, |m| {
            // A deleted or purged key: its marker has headers saying so.
            if m.headers.get("KV-Operation").is_some() {
                return Ok(());
            }
            let Some(id) = m.subject.strip_prefix(prefix.as_str()).and_then(|k| k.parse::<i64>().ok()) else { return Ok(()) };
            let case = serde_json::from_slice(&m.payload).map_err(|e| StoreError::Corrupt(format!("{} {id} does not read: {e}", self.what)))?;
            found.push((id, case));
            Ok(())
        })?;
        found.sort_by_key(|(id, _)| *id);
        Ok(found)
    }

    /// Records after number `after` that `wanted` takes, by number, up to `limit`.
    ///
    /// # Errors
    ///
    /// As [`Cases::all`].
    pub fn list(&self, conn: &Connection, after: i64, limit: usize, wanted: impl Fn(&T) -> bool) -> Result<Vec<Case<T>>, StoreError> {
        Ok(self.all(conn)?.into_iter().filter(|(id, c)| *id > after && wanted(&c.record)).take(limit).map(|(_, c)| c).collect())
    }
}

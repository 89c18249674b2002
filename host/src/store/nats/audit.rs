//! The audit log on the NATS store: one stream, `SYNCLINE_AUDIT`, an event
//! per message on `syncline.audit.TENANT` (`syncline.audit._` for
//! host-wide events), its stream sequence its id — so ids rise in the
//! order events were kept, as SQLite's do. Listing reads forward from an
//! id through the tenant's subject when the filter names one, else
//! through all of them, and applies the rest of the filter as it reads.
//!
//! An ack's audit entries ride in its commit-log entry and are published
//! after it with ids derived from the entry ([`Event::publish`]), so they
//! are kept with the commit or not at all, and once.

use async_nats::jetstream::stream;
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};

use super::reader::read_subject;
use super::{publish_all, token, unavailable, Connection};
use crate::store::records::{AuditEntry, AuditEvent, AuditFilter, AuditRecord};
use crate::store::StoreError;

/// The stream audit events are kept in.
const AUDIT: &str = "SYNCLINE_AUDIT";

/// How many events one read of the log asks for.
const PAGE: usize = 500;

/// An audit event as stored (its id is its stream sequence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Event {
    /// When (ms since the epoch).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// The tenant it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What happened.
    pub event: AuditEvent,
}

impl Event {
    /// `entry` as kept at `at`.
    pub fn new(entry: &AuditEntry, at: i64) -> Event {
        Event { at, actor: entry.actor.clone(), tenant: entry.tenant.clone(), event: entry.event.clone() }
    }

    /// The subject it is kept on.
    fn subject(&self) -> Result<String, StoreError> {
        Ok(match &self.tenant {
            Some(t) => format!("syncline.audit.{}", token(t)?),
            None => "syncline.audit._".to_string(),
        })
    }

    /// Publishes `events` in order; `ids` (one per event, when given) make
    /// a repeat within the stream's duplicate window stored once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Other`] for a tenant that cannot be a subject token.
    pub fn publish(conn: &Connection, events: &[Event], ids: Option<&[String]>) -> Result<Vec<i64>, StoreError> {
        let mut sent = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let mut headers = HeaderMap::new();
            if let Some(id) = ids.and_then(|ids| ids.get(i)) {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            sent.push((e.subject()?, headers, super::shrink::to_fit(e, conn.piece(), &[])));
        }
        Ok(publish_all(conn, sent, "keeping an audit event")?.into_iter().map(|seq| seq as i64).collect())
    }
}

/// Reads the audit log.
pub struct AuditLog {
    stream: stream::Stream,
}

impl AuditLog {
    /// Opens the log's stream (made by [`super::Layout::ensure`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer.
    pub fn open(conn: &Connection) -> Result<AuditLog, StoreError> {
        let js = conn.jetstream();
        let stream = conn.run(async move { js.get_stream(AUDIT).await.map_err(|e| unavailable(&format!("opening stream `{AUDIT}`"), e)) })?;
        Ok(AuditLog { stream })
    }

    /// As [`crate::store::Store::audit_events`]: events after id `after`
    /// that `filter` asks for, oldest first, up to `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server does not answer;
    /// [`StoreError::Corrupt`] when a kept event does not read.
    pub fn list(&self, conn: &Connection, filter: &AuditFilter, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        // One tenant asked for: read only its subject.
        let one = filter.tenant.as_ref().or(match filter.scope.as_deref() {
            Some([only]) => Some(only),
            _ => None,
        });
        let subject = match one {
            Some(t) => format!("syncline.audit.{}", token(t)?),
            None => "syncline.audit.>".to_string(),
        };
        let mut found = Vec::new();
        let mut from = u64::try_from(after).unwrap_or(0) + 1;
        while found.len() < limit {
            let page = read_subject(conn, &self.stream, &subject, from, PAGE)?;
            let Some(last) = page.last() else { break };
            from = last.sequence + 1;
            for m in &page {
                let e: Event = serde_json::from_slice(&m.payload).map_err(|e| StoreError::Corrupt(format!("audit event {} does not read: {e}", m.sequence)))?;
                let record = AuditRecord { id: m.sequence as i64, at: e.at, actor: e.actor, tenant: e.tenant, event: e.event };
                if filter.matches(&record) && found.len() < limit {
                    found.push(record);
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(found)
    }
}

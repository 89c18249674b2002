//! Waking the other processes' workers: a process that queues work (an
//! append accepts messages, a commit queues deliveries) says so on a plain
//! NATS subject — `syncline.wake.messages.TENANT.PIPELINE`,
//! `syncline.wake.deliveries.SINK`, kept by no stream — and every process
//! hands what it hears to its [`QueueWatcher`], whose workers then claim
//! from the store at once instead of at their next poll. A wake lost (the
//! connection down at that moment) costs only the poll interval: the work
//! is in the store either way.

use std::sync::Arc;

use futures_util::StreamExt;

use super::{token, Connection};
use crate::store::QueueWatcher;

/// The subjects wakes are sent on.
const ALL: &str = "syncline.wake.>";

/// Tells every process that `tenant`'s `pipeline` has new messages.
pub fn messages(conn: &Connection, tenant: &str, pipeline: &str) {
    if let (Ok(t), Ok(p)) = (token(tenant), token(pipeline)) {
        send(conn, format!("syncline.wake.messages.{t}.{p}"));
    }
}

/// Tells every process that `sink` has new deliveries.
pub fn deliveries(conn: &Connection, sink: &str) {
    if let Ok(s) = token(sink) {
        send(conn, format!("syncline.wake.deliveries.{s}"));
    }
}

/// Sends one wake without waiting for it: it is a hint.
fn send(conn: &Connection, subject: String) {
    let client = conn.jetstream().client();
    conn.spawn(async move {
        if let Err(e) = client.publish(subject, bytes::Bytes::new()).await {
            tracing::debug!(error = %e, "a wake for the other processes was not sent");
        }
    });
}

/// What a wake's subject asks for.
#[derive(Debug, PartialEq, Eq)]
enum Wake<'a> {
    Messages { tenant: &'a str, pipeline: &'a str },
    Deliveries { sink: &'a str },
}

fn parse(subject: &str) -> Option<Wake<'_>> {
    let rest = subject.strip_prefix("syncline.wake.")?;
    if let Some(queue) = rest.strip_prefix("messages.") {
        let (tenant, pipeline) = queue.split_once('.')?;
        return Some(Wake::Messages { tenant, pipeline });
    }
    rest.strip_prefix("deliveries.").map(|sink| Wake::Deliveries { sink })
}

/// Hands every wake any process sends to `watcher`, from when this
/// returns for as long as the store runs (the client subscribes again
/// after a reconnect).
pub fn follow(conn: &Arc<Connection>, watcher: Arc<dyn QueueWatcher>) {
    let client = conn.jetstream().client();
    // Subscribed, and the server knows it, before this returns.
    let subscribed = conn.run(async move {
        let wakes = client.subscribe(ALL).await?;
        client.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(wakes)
    });
    let mut wakes = match subscribed {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hear the other processes' wakes; workers find their work at their next poll");
            return;
        }
    };
    conn.spawn(async move {
        while let Some(m) = wakes.next().await {
            match parse(m.subject.as_str()) {
                Some(Wake::Messages { tenant, pipeline }) => watcher.reopened(tenant, pipeline),
                Some(Wake::Deliveries { sink }) => watcher.requeued(sink),
                None => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_names_its_queue() {
        assert_eq!(parse("syncline.wake.messages.acme.recs"), Some(Wake::Messages { tenant: "acme", pipeline: "recs" }));
        assert_eq!(parse("syncline.wake.deliveries.erp-cloud"), Some(Wake::Deliveries { sink: "erp-cloud" }));
        assert_eq!(parse("syncline.wake.messages.acme"), None);
        assert_eq!(parse("syncline.other"), None);
    }
}

//! The ingest path: resolve a tenant's pipeline, fill a new message's
//! envelope (id, correlation, time, source, idempotency key, ordering-key
//! hash) and append it to the store, waking the pipeline's workers.

use std::sync::Arc;

use syncline_model::json::JsonError;
use syncline_model::Message;

use super::{fields, now_rfc3339, LivePipeline, TopologyView};
use crate::store::{IngestOutcome, NewMessage, Store, StoreError};

/// Why a message was refused at ingest (before anything was stored).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No such tenant.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// No such pipeline for the tenant.
    #[error("unknown pipeline `{pipeline}` for tenant `{tenant}`{hint}")]
    UnknownPipeline {
        /// Tenant.
        tenant: String,
        /// Pipeline asked for.
        pipeline: String,
        /// A suggestion.
        hint: String,
    },
    /// The pipeline does not take HTTP ingest.
    #[error("pipeline `{0}` does not accept messages over HTTP (its source is a poller)")]
    NotHttp(String),
    /// The message is malformed or of an unsupported schema version.
    #[error("{0}")]
    Json(#[from] JsonError),
    /// The envelope names another tenant than the URL.
    #[error("the message's tenant `{found}` does not match the URL's tenant `{expected}`")]
    TenantMismatch {
        /// In the URL.
        expected: String,
        /// In the message.
        found: String,
    },
    /// The store could not commit: nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The ingest handle: what the API and the pollers use to accept messages.
pub struct Ingest {
    topology: TopologyView,
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Ingest {
    /// Ingest into `store` for the pipelines of `topology`, counting into `metrics`.
    pub fn new(topology: TopologyView, store: Arc<dyn Store>, metrics: Arc<crate::metrics::Metrics>) -> Ingest {
        Ingest { topology, store, metrics }
    }

    /// Counts what the store answered for messages of `pipeline` (once durable).
    pub fn counted(&self, pipeline: &LivePipeline, outcomes: &[IngestOutcome]) {
        let accepted = outcomes.iter().filter(|o| matches!(o, IngestOutcome::Accepted { .. })).count() as u64;
        let duplicate = outcomes.len() as u64 - accepted;
        self.metrics.ingested(pipeline.cfg.tenant.as_str(), pipeline.cfg.id.as_str(), accepted, duplicate);
    }

    /// The pipeline for an ingest request.
    ///
    /// # Errors
    ///
    /// [`IngestError::UnknownTenant`] or [`IngestError::UnknownPipeline`] (with the nearest name).
    pub fn pipeline(&self, tenant: &str, pipeline: &str) -> Result<Arc<LivePipeline>, IngestError> {
        let t = self.topology.current();
        if !t.config.tenants.iter().any(|x| x.as_str() == tenant) {
            return Err(IngestError::UnknownTenant(tenant.to_string()));
        }
        t.pipelines.get(&(tenant.to_string(), pipeline.to_string())).cloned().ok_or_else(|| {
            let known: Vec<&str> = t.pipelines.keys().filter(|(x, _)| x == tenant).map(|(_, p)| p.as_str()).collect();
            let hint = match crate::config::nearest(pipeline, known.iter().copied()) {
                Some(n) => format!("; did you mean `{n}`?"),
                None => String::new(),
            };
            IngestError::UnknownPipeline { tenant: tenant.into(), pipeline: pipeline.into(), hint }
        })
    }

    /// Fills a new message's envelope for `pipeline` and prepares it for the store.
    ///
    /// # Errors
    ///
    /// [`IngestError::TenantMismatch`] when the envelope names another
    /// tenant; [`StoreError::TooLarge`] when the store cannot keep it.
    pub fn prepare(&self, pipeline: &LivePipeline, mut msg: Message, source_system: &str, key: Option<String>) -> Result<NewMessage, IngestError> {
        let tenant = pipeline.cfg.tenant.as_str();
        if !msg.tenant.is_empty() && msg.tenant != tenant {
            return Err(IngestError::TenantMismatch { expected: tenant.into(), found: msg.tenant });
        }
        msg.tenant = tenant.to_string();
        if !msg.id.is_empty() {
            let client_id = std::mem::take(&mut msg.id);
            msg.set_header("client-message-id", client_id);
        }
        msg.id = ulid::Ulid::new().to_string();
        if msg.correlation_id.is_empty() {
            msg.correlation_id = msg.id.clone();
        }
        if msg.occurred_at.is_empty() {
            msg.occurred_at = now_rfc3339();
        }
        if msg.source_system.is_empty() {
            msg.source_system = source_system.to_string();
        }
        if msg.idempotency_key.as_deref().is_none_or(str::is_empty) {
            msg.idempotency_key = key;
        }
        let view = fields::View::new(&msg);
        let key_hash = fields::key_hash(&view.ordering_key(&pipeline.cfg.ordering_key));
        let json = syncline_model::json::to_string(&msg);
        // Refused here rather than by the store's append, so that one
        // polled message too large does not fail its whole poll for ever.
        if let Some(limit) = self.store.record_limit().filter(|&l| json.len() > l) {
            return Err(IngestError::Store(StoreError::TooLarge(format!(
                "message {} is {} bytes as stored; the store keeps at most {limit} bytes in one message (the NATS server's max_payload less room for headers): raise max_payload in the server's config, or send smaller messages",
                msg.id,
                json.len()
            ))));
        }
        Ok(NewMessage {
            id: msg.id.clone(),
            tenant: tenant.to_string(),
            pipeline: pipeline.cfg.id.to_string(),
            key_hash,
            idempotency_key: msg.idempotency_key.clone(),
            correlation: (msg.correlation_id != msg.id).then(|| msg.correlation_id.clone()),
            answers: match &msg.body {
                syncline_model::Body::ExecutionStatus(st) => Some(crate::store::LoopAnswer { correlation: msg.correlation_id.clone(), order_ref: st.order_ref.clone() }),
                _ => None,
            },
            json,
            // Handed to the shard once accepted: what parsing `json` gives.
            message: Some(std::sync::Arc::new(msg)),
        })
    }

    /// Stores prepared messages durably and wakes the pipeline's workers.
    ///
    /// # Errors
    ///
    /// [`IngestError::Store`]: nothing was accepted.
    pub fn accept(&self, pipeline: &LivePipeline, messages: Vec<NewMessage>) -> Result<Vec<IngestOutcome>, IngestError> {
        let out = self.store.append(messages, None).wait()?;
        pipeline.signal.notify();
        self.counted(pipeline, &out);
        Ok(out)
    }

    /// [`Engine::accept`] for async callers: awaits the commit without
    /// holding a thread.
    ///
    /// # Errors
    ///
    /// [`IngestError::Store`]: nothing was accepted.
    pub async fn accept_async(&self, pipeline: &LivePipeline, messages: Vec<NewMessage>) -> Result<Vec<IngestOutcome>, IngestError> {
        let out = self.store.append(messages, None).committed().await?;
        pipeline.signal.notify();
        self.counted(pipeline, &out);
        Ok(out)
    }
}

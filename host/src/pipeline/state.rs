//! Plugin state kept in the store: read from memory, written through to
//! the store. Entries are loaded once when the engine is built, so a
//! plugin's state survives restarts; a call's writes are queued to the
//! store as one write when the call returns, durable no later than the ack
//! of the message whose processing wrote them.

use std::sync::Arc;

use crate::runtime::state::Writes;
use crate::runtime::{MemoryState, StateStore};
use crate::store::{Store, StoreError};

/// Bytes a tenant may keep per plugin.
pub const QUOTA: usize = 1 << 20;

/// State read from memory and written through to the store.
pub struct StoredState {
    memory: MemoryState,
    store: Arc<dyn Store>,
}

impl StoredState {
    /// The state `store` holds.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when it cannot be read.
    pub fn load(store: Arc<dyn Store>) -> Result<StoredState, StoreError> {
        let memory = MemoryState::with_quota(QUOTA);
        for ((tenant, plugin, key), value) in store.state()? {
            if let Err(e) = memory.commit(&tenant, &plugin, vec![(key.clone(), Some(value))]) {
                tracing::warn!(%tenant, %plugin, %key, error = %e, "a stored state entry is left out");
            }
        }
        Ok(StoredState { memory, store })
    }
}

impl StateStore for StoredState {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.memory.get(tenant, plugin, key)
    }

    fn used(&self, tenant: &str, plugin: &str) -> usize {
        self.memory.used(tenant, plugin)
    }

    fn quota(&self) -> usize {
        self.memory.quota()
    }

    fn commit(&self, tenant: &str, plugin: &str, writes: Writes) -> Result<(), String> {
        // A value the store cannot keep would live in memory only, and be
        // gone at the next start: refused like one over the quota.
        if let Some(limit) = self.store.record_limit() {
            if let Some((key, n)) = writes.iter().find_map(|(k, v)| v.as_ref().filter(|v| k.len() + v.len() > limit).map(|v| (k, v.len()))) {
                return Err(format!("state value of {n} bytes under key `{key}` is larger than the store keeps in one value ({limit} bytes)"));
            }
        }
        self.memory.commit(tenant, plugin, writes.clone())?;
        // Queued, not awaited: the store keeps write order, so the ack of
        // the message being processed commits these writes with it or after.
        drop(self.store.put_state(tenant, plugin, writes));
        Ok(())
    }
}

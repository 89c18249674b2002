//! Plugin state kept in the store: read from memory, written through to
//! the store. Entries are loaded once when the engine is built, so a
//! plugin's state survives restarts; a write is queued to the store before
//! the plugin call returns and is durable no later than the ack of the
//! message whose processing wrote it.

use std::sync::Arc;

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
            if let Err(e) = memory.set(&tenant, &plugin, &key, value) {
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

    fn set(&self, tenant: &str, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        self.memory.set(tenant, plugin, key, value.clone())?;
        // Queued, not awaited: the store keeps write order, so the ack of
        // the message being processed commits this write with it or after it.
        drop(self.store.put_state(tenant, plugin, key, Some(value)));
        Ok(())
    }

    fn delete(&self, tenant: &str, plugin: &str, key: &str) {
        self.memory.delete(tenant, plugin, key);
        drop(self.store.put_state(tenant, plugin, key, None));
    }
}

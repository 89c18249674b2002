//! A small key-value state private to this plugin and the message's tenant,
//! kept by the host across calls.

use crate::PluginError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::generated::syncline::plugin::state as host;

/// The value under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return host::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| h.state.get(key).cloned());
}

/// Stores `value` under `key`.
///
/// # Errors
///
/// A retryable `state-quota` error when the tenant's quota is exhausted or
/// the call has already written 10,000 other keys. Writes take effect when
/// the call returns; a call that traps leaves the state as it was.
pub fn set(key: &str, value: &[u8]) -> Result<(), PluginError> {
    #[cfg(target_arch = "wasm32")]
    return host::set(key, value).map_err(|e| PluginError::retryable("state-quota", e));
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| {
        h.state.insert(key.to_string(), value.to_vec());
        Ok(())
    });
}

/// Removes `key`.
pub fn delete(key: &str) {
    #[cfg(target_arch = "wasm32")]
    host::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::with(|h| {
        h.state.remove(key);
    });
}

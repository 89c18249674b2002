//! The plugin's own configuration from the pipeline TOML. Nested keys are
//! joined with `.`; lists and tables that are not plain text come as JSON.

use crate::PluginError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::generated::syncline::plugin::config as host;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return host::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| h.config.get(key).cloned());
}

/// The value of `key`, or `default` when unset.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key`.
///
/// # Errors
///
/// A permanent `missing-config` [`PluginError`] naming the key when unset.
pub fn require(key: &str) -> Result<String, PluginError> {
    get(key).ok_or_else(|| PluginError::permanent("missing-config", format!("config key `{key}` is not set")))
}

/// The value of `key` parsed as JSON, when set.
///
/// # Errors
///
/// A permanent `bad-config` [`PluginError`] when the value is not valid JSON
/// of the expected shape.
pub fn json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
    match get(key) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PluginError::permanent("bad-config", format!("config key `{key}`: {e}"))),
    }
}

/// Every (key, value) entry, sorted by key.
pub fn entries() -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    return host::entries();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| h.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
}

//! The plugin's own configuration from the pipeline TOML. Nested keys are
//! joined with `.`; lists and tables that are not plain text come as JSON.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

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

/// The plugin's parsed configuration, parsed once per instance: `parse`
/// runs on the first call, its result is kept and handed to every later
/// call. A plugin instance's configuration never changes (a changed config
/// means a new instance), so a mapping table, a compiled pattern or a
/// field map need not be rebuilt per message. An error is not kept: the
/// next call parses again. Natively the result is kept by the current
/// `TestHost` (whose config is fixed once built), so native twins and
/// tests behave the same.
///
/// ```ignore
/// struct Settings { fields: Map<String, Value> }
/// let settings = config::cached(|| Ok(Settings { fields: config::json("fields")?.unwrap_or_default() }))?;
/// ```
///
/// # Errors
///
/// What `parse` returns.
pub fn cached<T: Send + Sync + 'static>(parse: impl FnOnce() -> Result<T, PluginError>) -> Result<Arc<T>, PluginError> {
    let key = TypeId::of::<T>();
    #[cfg(target_arch = "wasm32")]
    let found = {
        static KEPT: std::sync::OnceLock<std::sync::Mutex<Kept>> = std::sync::OnceLock::new();
        let kept = KEPT.get_or_init(Default::default);
        let found = kept.lock().unwrap().get(&key).cloned();
        (found, move |v: Arc<dyn Any + Send + Sync>| drop(kept.lock().unwrap().insert(key, v)))
    };
    #[cfg(not(target_arch = "wasm32"))]
    let found = (
        crate::testing::with(|h| h.parsed.get(&key).cloned()),
        move |v: Arc<dyn Any + Send + Sync>| crate::testing::with(|h| drop(h.parsed.insert(key, v))),
    );
    let (found, keep) = found;
    if let Some(v) = found {
        return Ok(v.downcast::<T>().expect("kept under its own type"));
    }
    // Parsed outside any lock: `parse` reads the config itself.
    let value = Arc::new(parse()?);
    keep(value.clone());
    Ok(value)
}

/// Parsed configurations by type.
pub(crate) type Kept = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// Every (key, value) entry, sorted by key.
pub fn entries() -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    return host::entries();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| h.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
}

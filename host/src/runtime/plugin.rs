//! A loaded plugin: its bytes' identity (name, SHA-256 digest, size), the
//! world it implements, what it imports and exports, and its compiled,
//! linked, ready-to-instantiate form.

use std::fmt;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};
use wasmtime::Engine;

use super::cache::CacheOutcome;
use super::host::HostState;

/// The five plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum World {
    /// Maps, enriches, filters or splits messages.
    Transformer,
    /// Checks messages.
    Validator,
    /// Decides over batches.
    Allocator,
    /// Pulls from an external system.
    Source,
    /// Delivers to an external system.
    Sink,
}

impl World {
    /// Every world.
    pub const ALL: [World; 5] = [World::Transformer, World::Validator, World::Allocator, World::Source, World::Sink];

    /// The world's name in WIT and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Transformer => "transformer",
            World::Validator => "validator",
            World::Allocator => "allocator",
            World::Source => "source",
            World::Sink => "sink",
        }
    }

    /// Parses a world name.
    pub fn parse(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The interface the world exports (`syncline:plugin/<it>`).
    pub fn export_interface(self) -> &'static str {
        match self {
            World::Transformer => "transform",
            World::Validator => "validate",
            World::Allocator => "allocate",
            World::Source => "poll",
            World::Sink => "deliver",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The major version of `syncline:plugin` this host runs.
pub const PLUGIN_API_MAJOR: u64 = 1;

/// A compiled plugin, linked against the host and ready to instantiate.
pub struct Plugin {
    /// Name (the file name without `.wasm`).
    pub name: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// The world it implements.
    pub world: World,
    /// Version of `syncline:plugin` it was built against (e.g. `1.0.0`).
    pub api_version: String,
    /// Interfaces it imports.
    pub imports: Vec<String>,
    /// Interfaces it exports.
    pub exports: Vec<String>,
    /// Whether loading hit the compile cache.
    pub cache: CacheOutcome,
    pub(crate) pre: InstancePre<HostState>,
}

impl Plugin {
    /// The first 12 hex digits of the digest, for log lines.
    pub fn short_digest(&self) -> &str {
        let hex = self.digest.trim_start_matches("sha256:");
        &hex[..hex.len().min(12)]
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("world", &self.world)
            .field("size", &self.size)
            .finish()
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What a component's type says: (world and API version if recognised,
/// imports, exports).
pub(crate) fn describe(engine: &Engine, component: &Component) -> (Option<(World, String)>, Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .filter(|(_, item)| !matches!(item.ty, ComponentItem::Type(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let world = exports.iter().find_map(|name| {
        let rest = name.strip_prefix("syncline:plugin/")?;
        let (iface, version) = rest.split_once('@')?;
        let world = World::ALL.into_iter().find(|w| w.export_interface() == iface)?;
        Some((world, version.to_string()))
    });
    (world, imports, exports)
}

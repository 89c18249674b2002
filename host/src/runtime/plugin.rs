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
/// The newest minor version of `syncline:plugin` 1.x this host runs; plugins
/// built against 1.0 run through the 1.0 bindings.
pub const PLUGIN_API_MINOR: u64 = 1;
/// The `syncline:plugin` version this host's WIT declares.
pub const PLUGIN_API_VERSION: &str = "1.1.0";

/// How a plugin built against `syncline:plugin@version` can run on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFit {
    /// Built against this host's version.
    Current,
    /// Built against an older minor of this major: runs through that minor's
    /// bindings; fields added since reach it as extensions.
    OlderMinor(u64),
    /// Built against another major, or a newer minor: must be rebuilt
    /// against this host's version (or run on a host that speaks it).
    Rebuild,
}

/// How a plugin built against `syncline:plugin@version` fits this host.
pub fn api_fit(version: &str) -> ApiFit {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(PLUGIN_API_MAJOR), Some(PLUGIN_API_MINOR)) => ApiFit::Current,
        (Some(PLUGIN_API_MAJOR), Some(minor)) if minor < PLUGIN_API_MINOR => ApiFit::OlderMinor(minor),
        _ => ApiFit::Rebuild,
    }
}

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
    /// The WASI interfaces it imports that its world does not need, each
    /// with what the host grants through it (see [`beyond_world`]).
    pub fn beyond_world(&self) -> Vec<(&str, &'static str)> {
        beyond_world(self.world, &self.imports)
    }

    /// The minor version of `syncline:plugin` 1.x it was built against
    /// (loading refuses other majors and newer minors).
    pub fn api_minor(&self) -> u32 {
        match api_fit(&self.api_version) {
            ApiFit::OlderMinor(m) => m as u32,
            _ => PLUGIN_API_MINOR as u32,
        }
    }

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

/// The imports in `imports` that `world` does not need, each with what the
/// host grants through it. A language runtime (CPython, a JavaScript engine)
/// imports files, sockets and HTTP whether the plugin uses them or not; the
/// host links them so such a plugin loads, and grants nothing through them.
/// The runtime's own needs (streams, clocks, random, stdout/stderr, empty
/// environment) are not listed: they are part of every plugin.
pub fn beyond_world<'a>(world: World, imports: &'a [String]) -> Vec<(&'a str, &'static str)> {
    imports
        .iter()
        .filter_map(|i| {
            let grant = if i.starts_with("wasi:http/") {
                if matches!(world, World::Source | World::Sink) {
                    return None;
                }
                "not in this world: requests are refused unless the stage lists `allowed-hosts` (a JavaScript build drops it with `componentize-js -d http fetch-event`)"
            } else if i.starts_with("wasi:sockets/") {
                "no sockets are granted"
            } else if i.starts_with("wasi:filesystem/") {
                "no folder is granted: there is nothing to open"
            } else {
                return None;
            };
            Some((i.as_str(), grant))
        })
        .collect()
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

#[cfg(test)]
mod beyond_tests {
    use super::*;

    #[test]
    fn plugin_versions_fit_by_major_and_minor() {
        assert_eq!(api_fit("1.1.0"), ApiFit::Current);
        assert_eq!(api_fit("1.1.4"), ApiFit::Current);
        assert_eq!(api_fit("1.0.0"), ApiFit::OlderMinor(0));
        for v in ["1.2.0", "2.0.0", "0.9.0", "", "x.y"] {
            assert_eq!(api_fit(v), ApiFit::Rebuild, "{v}");
        }
        assert_eq!(PLUGIN_API_VERSION, format!("{PLUGIN_API_MAJOR}.{PLUGIN_API_MINOR}.0"));
    }

    #[test]
    fn http_is_beyond_every_world_but_the_connectors_and_files_and_sockets_beyond_all() {
        let imports: Vec<String> = ["wasi:http/outgoing-handler@0.2.12", "wasi:io/streams@0.2.12", "wasi:filesystem/preopens@0.2.12", "wasi:sockets/tcp@0.2.12", "syncline:plugin/log@1.0.0"]
            .map(String::from)
            .to_vec();
        let names = |w| beyond_world(w, &imports).into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(names(World::Validator), ["wasi:http/outgoing-handler@0.2.12", "wasi:filesystem/preopens@0.2.12", "wasi:sockets/tcp@0.2.12"]);
        assert_eq!(names(World::Sink), ["wasi:filesystem/preopens@0.2.12", "wasi:sockets/tcp@0.2.12"]);
        assert!(beyond_world(World::Transformer, &imports[1..2]).is_empty(), "streams are every plugin's");
    }
}

//! Rust plugin projects: a crate on the syncline-sdk.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{camel, sample_case};
use crate::runtime::World;

/// Where the SDK is, for the new crate's path dependency: `$SYNCLINE_SDK`,
/// else the SDK beside this binary's source tree.
pub fn default_sdk_path() -> PathBuf {
    std::env::var_os("SYNCLINE_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"))
}

fn source(world: World, ty: &str) -> String {
    let body = match world {
        World::Transformer => format!(
            "impl Transformer for {ty} {{\n    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {{\n        Ok(vec![msg.with_header(\"mapped-by\", \"{ty}\")])\n    }}\n}}\n\nexport_transformer!({ty});\n"
        ),
        World::Validator => format!(
            "impl Validator for {ty} {{\n    fn validate(msg: Message) -> Vec<Violation> {{\n        let mut out = Vec::new();\n        if let Body::Forecast(f) = &msg.body {{\n            if f.quantity < 0.0 {{\n                out.push(Violation::error(\"body.quantity\", \"negative-quantity\", \"quantity must not be negative\"));\n            }}\n        }}\n        out\n    }}\n}}\n\nexport_validator!({ty});\n"
        ),
        World::Allocator => format!(
            "impl Allocator for {ty} {{\n    fn allocate(batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {{\n        Ok(batch.into_iter().map(|m| m.with_header(\"allocated-by\", \"{ty}\")).collect())\n    }}\n}}\n\nexport_allocator!({ty});\n"
        ),
        World::Source => format!(
            "impl Source for {ty} {{\n    fn poll(cursor: Option<String>) -> Result<PollBatch, PluginError> {{\n        let n: u64 = cursor.as_deref().unwrap_or(\"0\").parse().unwrap_or(0);\n        Ok(PollBatch {{ messages: Vec::new(), cursor: Some((n + 1).to_string()), more: false }})\n    }}\n}}\n\nexport_source!({ty});\n"
        ),
        World::Sink => format!(
            "impl Sink for {ty} {{\n    fn deliver(messages: Vec<Message>) -> Vec<DeliveryOutcome> {{\n        messages.iter().map(|m| DeliveryOutcome::Delivered {{ reference: m.id.clone() }}).collect()\n    }}\n}}\n\nexport_sink!({ty});\n"
        ),
    };
    format!("//! A Syncline {world} plugin.\nuse syncline_sdk::prelude::*;\n\n/// The plugin.\npub struct {ty};\n\n{body}")
}

/// Writes the crate into `dir`.
pub(super) fn write(dir: &Path, name: &str, world: World, sdk: &Path) -> anyhow::Result<()> {
    let sdk = sdk.canonicalize().with_context(|| format!("the SDK is not at {} (set SYNCLINE_SDK)", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("cases"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nsyncline-sdk = {{ path = {:?} }}\n\n[profile.release]\n# Speed over size: about 15 % faster calls for about 15 % more bytes.\nopt-level = 3\nlto = true\nstrip = true\n\n# A plugin is its own workspace.\n[workspace]\n",
            sdk.display().to_string()
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), source(world, &camel(name)))?;
    std::fs::write(dir.join("cases/sample.json"), sample_case(world, name))?;
    let file = name.replace('-', "_");
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# {name}\n\nA Syncline `{world}` plugin.\n\n```sh\ncargo build --release --target wasm32-wasip2\nsyncline test target/wasm32-wasip2/release/{file}.wasm --cases cases\n```\n\nThen copy the `.wasm` into the host's plugins folder as `{name}.wasm`.\n"
        ),
    )?;
    Ok(())
}

//! `syncline new plugin`: writes a plugin project for one world, in Rust,
//! Python or JavaScript, that builds with that language's own component tool
//! and passes its own sample case out of the box.

mod guest;
mod rust;

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::runtime::World;

pub use rust::default_sdk_path;

/// The language a plugin project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the syncline-sdk, built with cargo for wasm32-wasip2.
    Rust,
    /// A Python module built with componentize-py.
    Python,
    /// A JavaScript module built with componentize-js.
    Js,
}

/// The pinned versions of the component tools, shared with the project's
/// scripts (`scripts/tool-versions`: `tool=version` lines).
const TOOL_VERSIONS: &str = include_str!("../../../scripts/tool-versions");

/// The pinned version of a component tool.
pub fn tool_version(tool: &str) -> &'static str {
    TOOL_VERSIONS
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(t, _)| t.trim() == tool)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("scripts/tool-versions pins no {tool}"))
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
}

fn camel(name: &str) -> String {
    name.split('-').map(|w| {
        let mut c = w.chars();
        c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
    }).collect()
}

const FORECAST: &str = r#"{"kind": "forecast", "body": {"item": "SKU-1", "location": "DC-1",
      "bucket": {"start": "2026-12-07", "granularity": "week"}, "quantity": 10, "uom": "EA",
      "forecast-version": "v1", "scenario": "baseline", "channel": "retail", "source-engine": "stat"}}"#;

/// The sample golden case of a plugin that does no I/O (every Rust scaffold,
/// and the non-connector worlds in every language).
fn sample_case(world: World, name: &str) -> String {
    let ty = camel(name);
    let with_header = |h: &str| {
        FORECAST.replacen("{\"kind\"", &format!("{{\"headers\": {{\"{h}\": \"{ty}\"}}, \"kind\""), 1)
    };
    let (input, expect) = match world {
        World::Transformer => (format!("\"input\": {FORECAST}"), format!("\"outputs\": [{}]", with_header("mapped-by"))),
        World::Validator => (format!("\"input\": {FORECAST}"), "\"violations\": []".to_string()),
        World::Allocator => (format!("\"inputs\": [{FORECAST}]"), format!("\"outputs\": [{}]", with_header("allocated-by"))),
        World::Source => ("\"cursor\": \"41\"".to_string(), "\"batch\": {\"messages\": [], \"cursor\": \"42\", \"more\": false}".to_string()),
        World::Sink => (format!("\"inputs\": [{FORECAST}]"), "\"outcomes\": [{\"outcome\": \"delivered\", \"reference\": \"sample-0\"}]".to_string()),
    };
    case("the sample passes", &input, &expect)
}

fn case(description: &str, input: &str, expect: &str) -> String {
    format!("{{\n  \"description\": \"{description}\",\n  {input},\n  \"expect\": {{{expect}}}\n}}\n")
}

/// Writes a new plugin project `name` of `world` in `lang` into
/// `parent/name` (`sdk` is the Rust SDK, used by Rust projects only).
///
/// # Errors
///
/// When the name is not lower-case words joined by `-`, the folder exists,
/// or files cannot be written.
pub fn new_plugin(parent: &Path, name: &str, world: World, lang: Lang, sdk: &Path) -> anyhow::Result<PathBuf> {
    if !is_valid_name(name) {
        bail!("`{name}` is not a valid plugin name: use lower-case words separated by '-', e.g. `acme-forecast-mapper`");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or remove it", dir.display());
    }
    match lang {
        Lang::Rust => rust::write(&dir, name, world, sdk)?,
        Lang::Python | Lang::Js => guest::write(&dir, name, world, lang)?,
    }
    Ok(dir)
}

/// What to run next in a new project, for the CLI to print.
pub fn next_steps(dir: &Path, name: &str, lang: Lang) -> String {
    let (build, wasm) = match lang {
        Lang::Rust => ("cargo build --release --target wasm32-wasip2".to_string(), format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"))),
        Lang::Python => (format!("pip install -r requirements.txt   # componentize-py {}\n  ./build.sh", tool_version("componentize-py")), format!("{name}.wasm")),
        Lang::Js => (format!("npm install   # componentize-js {}\n  npm run build", tool_version("componentize-js")), format!("{name}.wasm")),
    };
    format!("next:\n  cd {}\n  {build}\n  syncline test {wasm} --cases cases", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_guest_tools_are_pinned() {
        assert!(tool_version("componentize-py").starts_with("0."));
        assert!(tool_version("componentize-js").starts_with("0."));
    }
}

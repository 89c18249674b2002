//! Python and JavaScript plugin projects: the module, the WIT it is built
//! against (a copy, so the project stands alone), the build command of the
//! language's component tool, and a sample case. Connector worlds talk HTTP
//! (`fetch` in JavaScript, a small wasi:http helper in Python).

use std::path::Path;

use super::{camel, case, sample_case, tool_version, Lang, FORECAST};
use crate::runtime::World;

/// The plugin WIT and its dependencies, as the host was built with them.
const WIT: &[(&str, &str)] = &[
    ("plugin.wit", include_str!("../../../wit/plugin.wit")),
    ("deps/syncline-canonical.wit", include_str!("../../../wit/deps/syncline-canonical.wit")),
    ("deps/wasi-cli.wit", include_str!("../../../wit/deps/wasi-cli.wit")),
    ("deps/wasi-clocks.wit", include_str!("../../../wit/deps/wasi-clocks.wit")),
    ("deps/wasi-filesystem.wit", include_str!("../../../wit/deps/wasi-filesystem.wit")),
    ("deps/wasi-http.wit", include_str!("../../../wit/deps/wasi-http.wit")),
    ("deps/wasi-io.wit", include_str!("../../../wit/deps/wasi-io.wit")),
    ("deps/wasi-random.wit", include_str!("../../../wit/deps/wasi-random.wit")),
    ("deps/wasi-sockets.wit", include_str!("../../../wit/deps/wasi-sockets.wit")),
];

fn template(lang: Lang, world: World) -> &'static str {
    match (lang, world) {
        (Lang::Python, World::Transformer) => include_str!("../../templates/python/transformer.py"),
        (Lang::Python, World::Validator) => include_str!("../../templates/python/validator.py"),
        (Lang::Python, World::Allocator) => include_str!("../../templates/python/allocator.py"),
        (Lang::Python, World::Source) => include_str!("../../templates/python/source.py"),
        (Lang::Python, World::Sink) => include_str!("../../templates/python/sink.py"),
        (_, World::Transformer) => include_str!("../../templates/js/transformer.js"),
        (_, World::Validator) => include_str!("../../templates/js/validator.js"),
        (_, World::Allocator) => include_str!("../../templates/js/allocator.js"),
        (_, World::Source) => include_str!("../../templates/js/source.js"),
        (_, World::Sink) => include_str!("../../templates/js/sink.js"),
    }
}

/// The connector worlds: they import wasi:http.
fn connects(world: World) -> bool {
    matches!(world, World::Source | World::Sink)
}

/// The componentize-py command line (`SYNCLINE_WIT` and `OUT` override the
/// WIT folder and the output file).
pub fn python_build(name: &str, world: World) -> String {
    // One module name for the canonical types in every world (the connector
    // worlds also import wasi:http's `types`, which the HTTP helper expects).
    let http = if connects(world) { " \\\n  --import-interface-name wasi:http/types@0.2.12=types" } else { "" };
    let canonical = syncline_model::SCHEMA_VERSION;
    format!(
        "componentize-py -d \"${{SYNCLINE_WIT:-wit}}\" -w {world} \\\n  --import-interface-name syncline:canonical/types@{canonical}=canonical{http} \\\n  componentize app -o \"${{OUT:-{name}.wasm}}\""
    )
}

/// The componentize-js command line: only the WASI features the world
/// uses (stdio stays, so `console.log` reaches the host's capture).
pub fn js_build(name: &str, world: World) -> String {
    let disable = if connects(world) { "fetch-event" } else { "http fetch-event" };
    format!("componentize-js app.js --wit \"${{SYNCLINE_WIT:-wit}}\" --world-name {world} -d {disable} -o \"${{OUT:-{name}.wasm}}\"")
}

/// The sample case; connector samples answer from the test's HTTP stub.
fn sample(world: World, name: &str, lang: Lang) -> String {
    match world {
        World::Sink => case(
            "the sample posts each message and keeps the downstream's reference",
            &format!("\"config\": {{\"url\": \"{{{{stub}}}}/orders\"}},\n  \"responses\": [{{\"status\": 200, \"body\": \"{{\\\"id\\\": \\\"ERP-1\\\"}}\"}}],\n  \"inputs\": [{FORECAST}]"),
            "\"outcomes\": [{\"outcome\": \"delivered\", \"reference\": \"ERP-1\"}],\n    \"requests\": [{\"method\": \"POST\", \"path\": \"/orders\", \"body-contains\": \"SKU-1\"}]",
        ),
        World::Source => {
            let text = match lang {
                Lang::Python => r#"{\"sku\": \"SKU-1\", \"qty\": 5}"#,
                _ => r#"{\"sku\":\"SKU-1\",\"qty\":5}"#,
            };
            case(
                "the sample polls the feed since its cursor and hands each record on as raw JSON",
                "\"config\": {\"url\": \"{{stub}}/feed\"},\n  \"cursor\": \"41\",\n  \"responses\": [{\"status\": 200, \"body\": \"{\\\"records\\\": [{\\\"sku\\\": \\\"SKU-1\\\", \\\"qty\\\": 5}], \\\"cursor\\\": \\\"42\\\"}\"}]",
                &format!("\"batch\": {{\"messages\": [{{\"kind\": \"raw\", \"body\": {{\"content-type\": \"application/json\", \"text\": \"{text}\"}}}}], \"cursor\": \"42\", \"more\": false}},\n    \"requests\": [{{\"method\": \"GET\", \"path\": \"/feed?since=41\"}}]"),
            )
        }
        _ => sample_case(world, name),
    }
}

/// Writes the project into `dir`.
pub(super) fn write(dir: &Path, name: &str, world: World, lang: Lang) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("cases"))?;
    std::fs::create_dir_all(dir.join("wit/deps"))?;
    for (path, text) in WIT {
        std::fs::write(dir.join("wit").join(path), text)?;
    }
    let source = template(lang, world)
        .replace("__NAME__", name)
        .replace("__TYPE__", &camel(name))
        .replace("__PLUGIN_API__", crate::runtime::plugin::PLUGIN_API_VERSION)
        .replace("__SCHEMA_VERSION__", syncline_model::SCHEMA_VERSION);
    std::fs::write(dir.join("cases/sample.json"), sample(world, name, lang))?;
    let (build, test) = match lang {
        Lang::Python => {
            std::fs::write(dir.join("app.py"), source)?;
            if connects(world) {
                std::fs::write(dir.join("http_client.py"), include_str!("../../templates/python/http_client.py"))?;
            }
            std::fs::write(dir.join("requirements.txt"), format!("componentize-py=={}\n", tool_version("componentize-py")))?;
            let script = dir.join("build.sh");
            std::fs::write(&script, format!("#!/bin/sh\n# Builds {name}.wasm from app.py with componentize-py (pip install -r requirements.txt).\nset -e\ncd \"$(dirname \"$0\")\"\n{}\n", python_build(name, world)))?;
            make_executable(&script)?;
            std::fs::write(dir.join(".gitignore"), "*.wasm\n__pycache__/\n")?;
            ("pip install -r requirements.txt\n./build.sh".to_string(), "Python")
        }
        _ => {
            std::fs::write(dir.join("app.js"), source)?;
            let package = serde_json::json!({
                "name": name,
                "version": "0.1.0",
                "private": true,
                "type": "module",
                "scripts": { "build": js_build(name, world) },
                "devDependencies": { "@bytecodealliance/componentize-js": tool_version("componentize-js") },
            });
            std::fs::write(dir.join("package.json"), serde_json::to_string_pretty(&package)? + "\n")?;
            std::fs::write(dir.join(".gitignore"), "*.wasm\nnode_modules/\n")?;
            ("npm install\nnpm run build".to_string(), "JavaScript")
        }
    };
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# {name}\n\nA Syncline `{world}` plugin in {test}.\n\n```sh\n{build}\nsyncline test {name}.wasm --cases cases\n```\n\nThen copy `{name}.wasm` into the host's plugins folder. `wit/` is the\nplugin interface this project is built against; the plugin guide\n(docs/PLUGINS.md in Syncline) shows how its types look in {test}.\n"
        ),
    )?;
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

//! `syncline new plugin`: every kind, in Rust, Python and JavaScript,
//! scaffolds a project that builds to a component with that language's own
//! tool and passes its own sample case (connectors over real HTTP).

use std::path::Path;
use std::process::Command;

use crate::support::*;

#[test]
fn scaffolded_plugins_build_and_pass_their_sample_case() {
    plugins_dir(); // installs the wasm32-wasip2 target if missing
    let dir = tempfile::tempdir().unwrap();
    // One shared target dir keeps the SDK compiled once for all five.
    let target = root().join("target/scaffold");
    for kind in ["transformer", "validator", "allocator", "source", "sink"] {
        let name = format!("acme-{kind}");
        let out = syncline().args(["new", "plugin", &name, "--kind", kind, "--dir"]).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let crate_dir = dir.path().join(&name);
        let build = Command::new("cargo")
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(build.status.success(), "{kind}: {}", String::from_utf8_lossy(&build.stderr));
        let wasm = target.join("wasm32-wasip2/release").join(format!("acme_{kind}.wasm"));
        let test = syncline().arg("test").arg(&wasm).arg("--cases").arg(crate_dir.join("cases")).arg("--no-cache").output().unwrap();
        let t = String::from_utf8_lossy(&test.stdout);
        assert!(test.status.success(), "{kind}: {t}{}", String::from_utf8_lossy(&test.stderr));
        assert!(t.contains(&format!("({kind} ")) && t.contains("1 passed, 0 failed"), "{kind}: {t}");
    }
}

#[test]
fn a_bad_name_or_an_existing_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = syncline().args(["new", "plugin", "Acme_Mapper", "--kind", "transformer", "--dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use lower-case words separated by '-'"));
    let out = syncline().args(["new", "plugin", "x", "--kind", "mapper"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("`mapper` is not a plugin kind"));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = syncline().args(["new", "plugin", "taken", "--kind", "sink", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// The pinned component tools `scripts/setup` installed (the plugin build in
/// `plugins_dir()` runs it), first on PATH.
fn tools_path() -> std::ffi::OsString {
    plugins_dir();
    let tools = root().join("target/tools/bin");
    assert!(tools.join("componentize-py").exists() && tools.join("componentize-js").exists(), "scripts/setup installs the component tools");
    std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))).unwrap()
}

/// Scaffolds, builds with the language's own build command and tests every
/// world in `lang`; returns the folder holding the projects.
fn every_world_builds_and_passes(lang: &str, build: &[&str]) -> tempfile::TempDir {
    let path = tools_path();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["transformer", "validator", "allocator", "source", "sink"] {
        let name = format!("acme-{lang}-{kind}");
        let out = syncline().args(["new", "plugin", &name, "--kind", kind, "--lang", lang, "--dir"]).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let next = String::from_utf8_lossy(&out.stdout);
        assert!(next.contains(&format!("syncline test {name}.wasm --cases cases")), "{next}");
        let project = dir.path().join(&name);
        let built = Command::new(build[0]).args(&build[1..]).current_dir(&project).env("PATH", &path).output().unwrap();
        assert!(built.status.success(), "{lang} {kind}: {}{}", String::from_utf8_lossy(&built.stdout), String::from_utf8_lossy(&built.stderr));
        let wasm = project.join(format!("{name}.wasm"));
        let test = syncline().arg("test").arg(&wasm).arg("--cases").arg(project.join("cases")).arg("--no-cache").output().unwrap();
        let t = String::from_utf8_lossy(&test.stdout);
        assert!(test.status.success(), "{lang} {kind}: {t}{}", String::from_utf8_lossy(&test.stderr));
        assert!(t.contains(&format!("({kind} ")) && t.contains("1 passed, 0 failed"), "{lang} {kind}: {t}");
        check_imports(&wasm, kind, lang);
    }
    dir
}

/// A scaffolded plugin imports no HTTP its world does not need, and nothing
/// beyond what its language's runtime always brings (JavaScript: file
/// types; Python: files and sockets).
fn check_imports(wasm: &Path, kind: &str, lang: &str) {
    let out = syncline().arg("inspect").arg(wasm).arg("--json").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let beyond: Vec<&str> = v["beyond-world"].as_array().unwrap().iter().map(|b| b["interface"].as_str().unwrap()).collect();
    assert!(beyond.iter().all(|i| !i.starts_with("wasi:http/")), "{lang} {kind} imports HTTP it does not need: {beyond:?}");
    if lang == "js" {
        assert!(beyond.iter().all(|i| i.starts_with("wasi:filesystem/")), "a JavaScript {kind} imports no sockets: {beyond:?}");
    }
}

#[test]
fn python_plugins_of_every_world_build_with_componentize_py_and_pass_their_sample_case() {
    every_world_builds_and_passes("python", &["./build.sh"]);
}

#[test]
fn javascript_plugins_of_every_world_build_with_componentize_js_and_pass_their_sample_case() {
    let dir = every_world_builds_and_passes("js", &["npm", "run", "--silent", "build"]);

    // A bug in the scaffold's transformer (a TypeError) comes back as an
    // `uncaught` plugin error naming it, not as an abort without text.
    let project = dir.path().join("acme-js-transformer");
    let app = std::fs::read_to_string(project.join("app.js")).unwrap();
    std::fs::write(project.join("app.js"), app.replace("return [msg];", "return [msg.body.val.nothing.here];")).unwrap();
    let built = Command::new("npm").args(["run", "--silent", "build"]).current_dir(&project).env("PATH", tools_path()).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let case = std::fs::read_to_string(project.join("cases/sample.json")).unwrap();
    let expect = case.find("\"expect\"").unwrap();
    let bug = format!("{}\"expect\": {{\"error\": {{\"code\": \"uncaught\", \"retryable\": false}}}}\n}}\n", &case[..expect]);
    std::fs::write(project.join("cases/sample.json"), bug).unwrap();
    let test = syncline().arg("test").arg(project.join("acme-js-transformer.wasm")).arg("--cases").arg(project.join("cases")).arg("--no-cache").output().unwrap();
    let t = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success(), "{t}{}", String::from_utf8_lossy(&test.stderr));
}

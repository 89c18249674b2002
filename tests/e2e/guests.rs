//! Python and JavaScript plugins as the host sees them: compiled ahead of
//! time by `syncline precompile`, the imports beyond their world shown by
//! `inspect`, the memory they need at start, and what a failure inside the
//! guest says.

use crate::harness::*;
use crate::support::*;

/// A site whose pipeline maps with the Python example and delivers with the
/// JavaScript one.
fn site(erp: &Erp) -> Site {
    let site = Site::new(
        r#"version = 1
[plugins]
dir = "plugins"
[[tenant]]
id = "acme"
[[pipeline]]
id = "release"
tenant = "acme"
stages = [{ transform = "acme-xml-mapper", tables = { plants = "ref/plants.csv" } }]
routes = [{ to = "erp" }]
[sink.erp]
plugin = "erp-order-sink"
config = { url = "http://{ERP}/erp" }
allowed-hosts = ["{ERP}"]
"#,
        erp,
    );
    for p in ["acme-xml-mapper", "erp-order-sink"] {
        site.share_plugin(p, p);
    }
    std::fs::write(site.dir.path().join("ref/plants.csv"), "plant,location\n1000,DC-1\n").unwrap();
    site
}

fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = syncline().args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn precompile_warms_the_cache_for_every_plugin_of_a_config_and_for_files() {
    let erp = Erp::start(&[]);
    let site = site(&erp);
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().as_os_str();
    let config = site.config();

    let (ok, out) = run(&["--cache-dir".as_ref(), cache_arg, "precompile".as_ref(), config.as_os_str()]);
    assert!(ok, "{out}");
    for (file, world) in [("acme-xml-mapper.wasm", "transformer"), ("erp-order-sink.wasm", "sink")] {
        assert!(out.lines().any(|l| l.starts_with("compiled") && l.contains(file) && l.contains(&format!("({world}, "))), "{out}");
    }
    // A second run (a restart, a reload, `check`) loads what the first compiled.
    let (ok, out) = run(&["--cache-dir".as_ref(), cache_arg, "precompile".as_ref(), config.as_os_str()]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("cached")).count(), 2, "{out}");
    let (ok, out) = run(&["--cache-dir".as_ref(), cache_arg, "check".as_ref(), config.as_os_str()]);
    assert!(ok, "{out}");

    // Files too; one that is not a component fails the run, naming it.
    let junk = site.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let (ok, out) = run(&["--cache-dir".as_ref(), cache_arg, "precompile".as_ref(), plugin("moq-leadtime").as_os_str(), junk.as_os_str()]);
    assert!(!ok, "{out}");
    assert!(out.lines().any(|l| l.starts_with("compiled") && l.contains("moq-leadtime.wasm (allocator, ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAILED") && l.contains("junk.wasm")), "{out}");
    let (ok, out) = run(&["--no-cache".as_ref(), "precompile".as_ref(), config.as_os_str()]);
    assert!(!ok && out.contains("--no-cache leaves nothing to precompile into"), "{out}");
}

#[test]
fn inspect_names_the_imports_a_plugin_has_beyond_its_world() {
    let (ok, out) = run(&["inspect".as_ref(), plugin("acme-xml-mapper").as_os_str()]);
    assert!(ok, "{out}");
    let beyond = out.split("imports its transformer world does not need (linked; nothing granted)\n").nth(1).unwrap_or_else(|| panic!("{out}"));
    assert!(beyond.lines().any(|l| l.contains("wasi:sockets/tcp@") && l.contains("no sockets are granted")), "{out}");
    assert!(beyond.lines().any(|l| l.contains("wasi:filesystem/preopens@") && l.contains("no folder is granted")), "{out}");
    // A connector's HTTP is its world's; a Rust plugin imports nothing beyond.
    let (_, out) = run(&["inspect".as_ref(), "--json".as_ref(), plugin("erp-order-sink").as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("wasi:http/outgoing-handler@")), "{v:#}");
    assert!(v["beyond-world"].as_array().unwrap().iter().all(|b| !b["interface"].as_str().unwrap().starts_with("wasi:http/")), "{v:#}");
    let (_, out) = run(&["inspect".as_ref(), "--json".as_ref(), plugin("moq-leadtime").as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["beyond-world"], serde_json::json!([]), "{v:#}");
}

#[test]
fn a_python_plugin_given_less_memory_than_its_runtime_needs_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let case = |mb: u32| {
        format!(
            r#"{{"description": "{mb} MiB", "limits": {{"memory-mb": {mb}}}, "tables": {{"plants": "plants.csv"}},
 "input": {{"kind": "raw", "body": {{"content-type": "application/xml", "text": "<PlanRelease/>"}}}}, "expect": {{"outputs": []}}}}"#
        )
    };
    std::fs::write(dir.path().join("plants.csv"), "plant,location\n").unwrap();
    std::fs::write(dir.path().join("small.json"), case(8)).unwrap();
    std::fs::write(dir.path().join("enough.json"), case(32)).unwrap();
    let (ok, out) = run(&["test".as_ref(), plugin("acme-xml-mapper").as_os_str(), "--cases".as_ref(), dir.path().as_os_str()]);
    assert!(!ok, "{out}");
    assert!(out.contains("ok    enough"), "{out}");
    assert!(out.contains("FAIL  small") && out.contains("exceeded its memory limit of 8 MiB (asked for "), "{out}");
}

#[test]
fn the_guest_projects_pin_the_tools_the_scripts_install() {
    let pins = std::fs::read_to_string(root().join("scripts/tool-versions")).unwrap();
    let pin = |tool: &str| pins.lines().find_map(|l| l.strip_prefix(&format!("{tool}="))).unwrap().to_string();
    let (py, js) = (pin("componentize-py"), pin("componentize-js"));
    for dir in ["examples/guest-plugins", "tests/guest-fixtures"] {
        for project in std::fs::read_dir(root().join(dir)).unwrap() {
            let project = project.unwrap().path();
            if let Ok(req) = std::fs::read_to_string(project.join("requirements.txt")) {
                assert_eq!(req.trim(), format!("componentize-py=={py}"), "{}", project.display());
            }
            if let Ok(package) = std::fs::read_to_string(project.join("package.json")) {
                let v: serde_json::Value = serde_json::from_str(&package).unwrap();
                assert_eq!(v["devDependencies"]["@bytecodealliance/componentize-js"], js.as_str(), "{}", project.display());
            }
        }
    }
}

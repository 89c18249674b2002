//! `syncline new plugin`: every kind scaffolds a crate that builds to a
//! component and passes its own sample case.

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

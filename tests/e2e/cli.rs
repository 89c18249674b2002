//! The `syncline` binary: `test` over golden cases (passing and failing,
//! with JUnit), and `inspect`.

use std::process::Output;

use crate::support::*;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_standard_plugin_passes_its_golden_cases() {
    for name in ["canonical-validator", "uom-normalizer", "json-mapper", "moq-leadtime", "http-sink", "http-source", "json-formatter", "csv-formatter", "channel-reconciler", "regional-allocator", "csv-mapper", "x12-formatter", "edifact-formatter"] {
        let cases = root().join("plugins").join(name).join("cases");
        let out = syncline().arg("test").arg(plugin(name)).arg("--cases").arg(&cases).arg("--no-cache").output().unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{name}:\n{t}");
        assert!(t.contains(", 0 failed"), "{name}:\n{t}");
        assert!(!t.contains("FAIL"), "{name}:\n{t}");
    }
}

#[test]
fn a_mismatch_prints_a_diff_exits_non_zero_and_writes_junit() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("plugins/uom-normalizer/cases");
    for f in ["items.csv", "conversions.csv", "case-to-each.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let good = std::fs::read_to_string(src.join("case-to-each.json")).unwrap();
    std::fs::write(dir.path().join("wrong.json"), good.replace("\"quantity\": 36", "\"quantity\": 35")).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{ not json").unwrap();
    let junit = dir.path().join("report.xml");
    let out = syncline()
        .arg("test")
        .arg(plugin("uom-normalizer"))
        .arg("--cases")
        .arg(dir.path())
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("ok    case-to-each"), "{t}");
    assert!(t.contains("FAIL  wrong"), "{t}");
    assert!(t.contains("-      \"quantity\": 35.0,"), "{t}");
    assert!(t.contains("+      \"quantity\": 36.0,"), "{t}");
    assert!(t.contains("FAIL  broken"), "{t}");
    assert!(t.contains("the case could not run"), "{t}");
    assert!(t.contains("1 passed, 2 failed"), "{t}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\"") && xml.contains("failures=\"2\""), "{xml}");
    assert!(xml.contains("<testcase name=\"wrong\""), "{xml}");
}

#[test]
fn inspect_shows_world_versions_imports_exports_digest_and_size() {
    let path = plugin("http-sink");
    let bytes = std::fs::read(&path).unwrap();
    let digest = syncline::runtime::digest(&bytes);
    let out = syncline().arg("inspect").arg(&path).arg("--no-cache").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("name     http-sink"), "{t}");
    assert!(t.contains(&format!("digest   {digest}")), "{t}");
    assert!(t.contains(&format!("({} bytes)", bytes.len())), "{t}");
    assert!(t.contains("world    syncline:plugin/sink@1.1.0"), "{t}");
    assert!(t.contains("syncline:plugin/deliver@1.1.0"), "{t}");
    assert!(t.contains("wasi:http/outgoing-handler@0.2"), "{t}");

    let out = syncline().arg("inspect").arg(&path).arg("--json").arg("--no-cache").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["world"], "sink");
    assert_eq!(v["digest"], digest);
}

#[test]
fn a_file_that_is_not_a_plugin_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    let out = syncline().arg("inspect").arg(&bad).arg("--no-cache").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("error: plugin `bad` (sha256:") && t.contains("not a valid WebAssembly component"), "{t}");
}

#[test]
fn a_failing_validator_can_be_matched_with_expect_error_and_broken_cases_keep_their_description() {
    let dir = tempfile::tempdir().unwrap();
    let input = r#"{"kind": "forecast", "body": {"item": "SKU-1", "location": "DC-1", "bucket": {"start": "2026-12-07", "granularity": "week"},
        "quantity": 1, "uom": "EA", "forecast-version": "v1", "scenario": "base", "channel": "retail", "source-engine": "stat"}}"#;
    // 1 MiB is less than the plugin's own starting memory: every call fails.
    std::fs::write(
        dir.path().join("starved.json"),
        format!(r#"{{"description": "a validator without memory fails with a clear code", "limits": {{"memory-mb": 1}}, "input": {input}, "expect": {{"error": {{"code": "memory-limit", "retryable": false}}}}}}"#),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), r#"{"description": "a case with no input", "expect": {"violations": []}}"#).unwrap();
    let out = syncline().arg("test").arg(plugin("canonical-validator")).arg("--cases").arg(dir.path()).arg("--no-cache").output().unwrap();
    let t = text(&out);
    assert!(t.contains("ok    starved  a validator without memory fails with a clear code"), "{t}");
    assert!(t.contains("FAIL  broken  a case with no input"), "{t}");
    assert!(t.contains("the case has no `input` or `inputs`"), "{t}");
    assert!(t.contains("1 passed, 1 failed"), "{t}");
}

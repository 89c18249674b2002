//! Config errors are golden files: each `tests/config/invalid/NAME.toml` is
//! loaded next to the standard plugins and its rendered errors must equal
//! `NAME.err` (regenerate with `UPDATE_GOLDEN=1`). `syncline check` prints
//! the same text and exits 1.

use crate::support::*;

fn render(case: &std::path::Path) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("plugins/shared");
    std::fs::create_dir_all(&shared).unwrap();
    for p in ["json-mapper", "canonical-validator", "uom-normalizer", "http-sink", "http-source"] {
        std::fs::copy(plugin(p), shared.join(format!("{p}.wasm"))).unwrap();
    }
    let file = dir.path().join(case.file_name().unwrap());
    std::fs::copy(case, &file).unwrap();
    let text = match syncline::config::load(&file) {
        Ok(_) => "loaded without errors".to_string(),
        Err(e) => e.to_string(),
    };
    let text = text.replace(&dir.path().display().to_string(), "$DIR") + "\n";
    (dir, text)
}

#[test]
fn config_errors_match_their_golden_files() {
    let cases = root().join("tests/config/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&cases).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (_dir, actual) = render(&path);
        let golden = path.with_extension("err");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            expected == actual,
            "{}:\n{}",
            path.display(),
            similar::TextDiff::from_lines(&expected, &actual).unified_diff().header("expected", "actual")
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn check_reports_the_same_errors_and_exits_1() {
    let case = root().join("tests/config/invalid/references.toml");
    let (dir, expected) = render(&case);
    let out = syncline().arg("check").arg(dir.path().join("references.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "$DIR");
    assert!(stderr.contains(expected.trim_end()), "{stderr}");
}

#[test]
fn check_accepts_the_bundled_example_and_names_every_plugin_digest() {
    let dir = tempfile::tempdir().unwrap();
    let ex = root().join("examples/forecast-release");
    std::fs::copy(ex.join("syncline.toml"), dir.path().join("syncline.toml")).unwrap();
    let refs = dir.path().join("ref");
    std::fs::create_dir_all(&refs).unwrap();
    for t in ["moq.csv", "lead-times.csv"] {
        std::fs::copy(ex.join("ref").join(t), refs.join(t)).unwrap();
    }
    let shared = dir.path().join("plugins/shared");
    std::fs::create_dir_all(&shared).unwrap();
    for p in ["json-mapper", "canonical-validator", "moq-leadtime", "http-sink"] {
        std::fs::copy(plugin(p), shared.join(format!("{p}.wasm"))).unwrap();
    }
    let out = syncline().arg("check").arg(dir.path().join("syncline.toml")).env("ERP_TOKEN", "x").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 tenants, 1 pipelines, 2 sinks"), "{stdout}");
    let digest = syncline::runtime::digest(&std::fs::read(plugin("moq-leadtime")).unwrap());
    assert!(stdout.contains(&format!("moq-leadtime (allocator) {digest}")), "{stdout}");
    // Without the secret's environment variable, the same config is refused.
    let out = syncline().arg("check").arg(dir.path().join("syncline.toml")).env_remove("ERP_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment variable `ERP_TOKEN` is not set"));
}

#[test]
fn a_tenant_cannot_name_another_tenants_plugin_by_path() {
    // tenantb's private plugin exists; acme's pipeline and an unscoped sink
    // try to reach it by a relative and an absolute path.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("plugins/tenantb");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins/shared")).unwrap();
    std::fs::copy(plugin("tagger-v1"), secret.join("b-secret.wasm")).unwrap();
    std::fs::copy(plugin("http-sink"), secret.join("b-sink.wasm")).unwrap();
    let config = dir.path().join("syncline.toml");
    let absolute = secret.join("b-secret").display().to_string();
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[[tenant]]
id = "acme"
[[tenant]]
id = "tenantb"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{{ transform = "../tenantb/b-secret" }}, {{ transform = "{absolute}" }}]
routes = [{{ to = "erp" }}]
[sink.erp]
plugin = "../tenantb/b-sink"
"#
        ),
    )
    .unwrap();
    let out = syncline().arg("check").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`../tenantb/b-secret` is not a plugin name (for stage 1 of pipeline `orders`)"), "{stderr}");
    assert!(stderr.contains(&format!("`{absolute}` is not a plugin name (for stage 2 of pipeline `orders`)")), "{stderr}");
    assert!(stderr.contains("`../tenantb/b-sink` is not a plugin name (for sink `erp`)"), "{stderr}");
    assert!(stderr.contains("3 errors in the configuration"), "{stderr}");
}

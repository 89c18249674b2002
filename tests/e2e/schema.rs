//! The JSON Schema given to partners matches the types the host parses.
//! Regenerate the checked-in copy with `UPDATE_GOLDEN=1`.

use crate::support::root;

#[test]
fn checked_in_schema_matches_the_types() {
    let generated = serde_json::to_string_pretty(&syncline_model::schema::message_schema()).unwrap() + "\n";
    // Each published version keeps its file; this host's is checked.
    let name = format!("docs/schema/canonical-{}.json", syncline_model::SCHEMA_VERSION);
    let path = root().join(&name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(checked_in == generated, "{name} is stale: run `UPDATE_GOLDEN=1 cargo test -p syncline --test e2e schema`");
}

#[test]
fn every_golden_case_message_parses_against_the_model() {
    // The schema's cases are what partners copy: each input must be a valid message.
    let mut checked = 0;
    for plugin in std::fs::read_dir(root().join("plugins")).unwrap() {
        let cases = plugin.unwrap().path().join("cases");
        let Ok(files) = std::fs::read_dir(&cases) else { continue };
        for f in files {
            let f = f.unwrap().path();
            if f.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let inputs = case.get("inputs").and_then(|v| v.as_array().cloned()).unwrap_or_default();
            for mut input in case.get("input").cloned().into_iter().chain(inputs) {
                input.as_object_mut().unwrap().entry("schema-version").or_insert("1.0.0".into());
                syncline_model::json::from_value(input).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} inputs found");
}

//! The host's own log: `--log-format json` writes one JSON object per line
//! on stderr — nothing else — with a plugin's log lines attributed to the
//! plugin, tenant and correlation id; text logs carry no color codes when
//! stderr is not a terminal.

use serde_json::Value;

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "hostile" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

fn logging_order(id: &str) -> String {
    let mut m = recommendation(id);
    m["correlation-id"] = "flow-42".into();
    m["headers"] = serde_json::json!({"do": "log-flood", "lines": "1", "line-bytes": "12"});
    m.to_string()
}

#[test]
fn json_logs_are_one_object_per_line_with_plugin_lines_attributed_and_text_logs_have_no_color_in_a_pipe() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    site.share_plugin("hostile", "hostile");

    let host = Host::start_env(&site.config(), &["--log-format", "json"], &[]);
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], logging_order("L-1").as_bytes());
    assert_eq!(status, 202, "{answer}");
    host.settled(answer["id"].as_str().unwrap());
    let log = host.log.lock().unwrap().clone();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string()), "{log}");
    let plugin_line = lines.iter().find(|l| l["target"] == "plugin").unwrap_or_else(|| panic!("no plugin log line: {log}"));
    assert_eq!(
        (plugin_line["plugin"].as_str(), plugin_line["tenant"].as_str(), plugin_line["correlation_id"].as_str(), plugin_line["message"].as_str()),
        (Some("hostile"), Some("acme"), Some("flow-42"), Some("xxxxxxxxxxxx")),
        "{plugin_line}"
    );
    assert!(lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.starts_with("listening on http://"))), "{log}");
    drop(host);

    // Text, into a pipe: no escape codes.
    let host = Host::start(&site);
    let (status, _) = host.ingest("acme", "orders", "messages", "application/json", &[], logging_order("L-2").as_bytes());
    assert_eq!(status, 202);
    let log = host.log.lock().unwrap().clone();
    assert!(!log.contains('\u{1b}'), "color codes in a piped log: {log:?}");
    assert!(log.contains("syncline listening on http://"), "{log}");
}

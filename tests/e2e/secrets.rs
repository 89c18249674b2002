//! A planted secret stays secret: a plugin given a credential through
//! `{ env = "VAR" }` leaks it every way it can (a log line, stderr, an
//! output header, its error text, a panic message), and the secret is then
//! searched for in everything the host exposes or keeps — its log, every
//! API answer, the audit log, dead letters, traces and the store's files.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const SECRET: &str = "PLANTED-7f3a9c2e-d41b-secret";

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "hostile", config = { token = { env = "PLANTED_SECRET" } } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions", token = { env = "PLANTED_SECRET" } }
allowed-hosts = ["{ERP}"]
"#
);

fn order(id: &str, then: Option<&str>) -> String {
    let mut headers = json!({"do": "leak"});
    if let Some(t) = then {
        headers["then"] = json!(t);
    }
    let mut m = recommendation(id);
    m["headers"] = headers;
    m.to_string()
}

#[test]
fn a_secret_a_plugin_leaks_appears_in_no_log_trace_answer_dead_letter_or_store_file() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    site.share_plugin("hostile", "hostile");
    let host = Host::start_env(&site.config(), &[], &[("PLANTED_SECRET", SECRET)]);

    let mut ids = Vec::new();
    for (key, then) in [("S-1", None), ("S-2", Some("fail")), ("S-3", Some("panic"))] {
        let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(key, then).as_bytes());
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    let passed = host.settled(&ids[0]);
    assert_eq!(passed["outputs"][0]["state"], "delivered", "{passed}");
    // The leak paths were taken, and each shows the redaction instead.
    assert_eq!(passed["outputs"][0]["message"]["headers"]["token"], "[redacted]", "{passed}");
    let failed = host.settled(&ids[1]);
    let panicked = host.settled(&ids[2]);
    assert!(failed["dead-letters"][0]["reason"].as_str().unwrap().contains("the token [redacted] was refused"), "{failed}");
    assert!(panicked["dead-letters"][0]["reason"].as_str().unwrap().contains("cannot use token [redacted]"), "{panicked}");
    eventually(Duration::from_secs(10), "the plugin's log line", || host.log.lock().unwrap().contains("connecting with token [redacted]").then_some(()));
    // The ERP got the credential where it belongs: in the sink's request.
    assert_eq!(erp.unique(), 1);

    // Everything the API answers.
    let mut seen = String::new();
    let mut read = |path: &str| {
        let (status, body) = get(&format!("{}{path}", host.url));
        assert_eq!(status, 200, "{path}: {body}");
        seen.push_str(&body.to_string());
        body
    };
    for id in &ids {
        read(&format!("/v1/messages/{id}"));
    }
    let letters = read("/v1/dead-letters?state=all");
    for d in letters["dead-letters"].as_array().unwrap() {
        read(&format!("/v1/dead-letters/{}", d["id"]));
    }
    for path in ["/v1/exceptions?state=all", "/v1/audit?limit=1000", "/v1/pipelines", "/v1/reloads", "/v1/sinks"] {
        read(path);
    }
    seen.push_str(&get_text(&format!("{}/metrics", host.url)));
    assert!(!seen.contains(SECRET), "an API answer holds the secret");
    assert!(seen.contains("[redacted]"));

    // The host's own log, and every file of the store.
    assert!(!host.log.lock().unwrap().contains(SECRET), "the log holds the secret");
    for entry in std::fs::read_dir(site.dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "{} holds the secret", path.display());
    }
}

//! Contract capture against a running host: `syncline capture` records a
//! live stage's calls for a while as golden cases (the config's secret and
//! a named field redacted), `syncline test` passes them on the version that
//! ran and catches a new version that behaves differently.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::{plugin, syncline};

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "orders"
tenant = "acme"
# The tagger counts calls per instance; a fresh instance per call makes it
# a function of its input, as a contract needs.
stages = [{ transform = "tagger", config = { region = "north", token = { env = "ERP_TOKEN" } }, limits = { fresh-instance = true } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

fn order(id: &str) -> String {
    recommendation(id).to_string()
}

#[test]
fn captured_calls_become_golden_cases_that_pass_on_the_live_version_and_catch_a_changed_one() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    site.share_plugin("tagger-v1", "tagger");
    let host = Host::start(&site);
    let out = site.dir.path().join("captured");

    // Bad requests are refused clearly.
    let capture_url = format!("{}/v1/tenants/acme/pipelines/orders/stages/1/capture", host.url);
    let (status, body) = get(&capture_url);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("no-capture")), "{body}");
    let (status, body) = send("POST", &capture_url.replace("/stages/1/", "/stages/9/"), "application/json", &[], br#"{"for": "1s"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown-stage")), "{body}");
    let (status, _) = send("POST", &capture_url, "application/json", &[], br#"{"for": "soon"}"#);
    assert_eq!(status, 400);

    // Record for a few seconds while three orders go through.
    let cli = syncline()
        .args(["capture", "--tenant", "acme", "--pipeline", "orders", "--stage", "1", "--for", "4s", "--redact", "body.source.supplier", "--server", &host.url, "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "the capture to start", || host.log.lock().unwrap().contains("contract capture started").then_some(()));
    for id in ["C-1", "C-2", "C-3"] {
        let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(id).as_bytes());
        assert_eq!(status, 202, "{answer}");
        host.settled(answer["id"].as_str().unwrap());
    }
    let done = within_secs(60, move || cli.wait_with_output().unwrap());
    let printed = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success() && printed.contains("wrote 3 case(s)"), "{printed}{}", String::from_utf8_lossy(&done.stderr));

    // The cases: inputs and outputs with the named field redacted, the secret gone.
    let mut files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let case: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(case["config"], json!({"region": "north", "token": "[redacted]"}), "{case}");
    assert_eq!(case["input"]["body"]["source"]["supplier"], "[redacted]", "{case}");
    assert_eq!(case["input"]["idempotency-key"], "C-1", "{case}");
    assert_eq!(case["expect"]["outputs"][0]["headers"]["version"], "v1", "{case}");
    assert_eq!(case["expect"]["outputs"][0]["body"]["source"]["supplier"], "[redacted]", "{case}");
    assert!(case["description"].as_str().unwrap().starts_with("captured from acme/orders stage 1 (tagger sha256:"), "{case}");
    for f in &files {
        assert!(!std::fs::read_to_string(f).unwrap().contains("test-token"), "{} holds the secret", f.display());
    }

    // The version that ran passes them; a version that tags differently does not.
    let run = |built: &str| syncline().args(["test"]).arg(plugin(built)).arg("--cases").arg(&out).output().unwrap();
    let same = run("tagger-v1");
    assert!(same.status.success() && String::from_utf8_lossy(&same.stdout).contains("3 passed, 0 failed"), "{same:?}");
    let changed = run("tagger-v2");
    assert_eq!(changed.status.code(), Some(1), "{changed:?}");
    assert!(String::from_utf8_lossy(&changed.stdout).contains("0 passed, 3 failed"), "{}", String::from_utf8_lossy(&changed.stdout));

    // Once over, nothing more is recorded.
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order("C-4").as_bytes());
    assert_eq!(status, 202);
    host.settled(answer["id"].as_str().unwrap());
    let (status, body) = get(&capture_url);
    assert_eq!((status, body["running"].as_bool(), body["cases"].as_array().map(Vec::len)), (200, Some(false), Some(0)), "{body}");
}

fn within_secs<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    crate::support::within(Duration::from_secs(secs), "the capture command", f)
}

//! Plugin approval (`[plugins] mode = "approved"`) against a running host:
//! an unapproved plugin keeps the host from starting and `syncline check`
//! names it; approved offline it runs; a new version dropped into the
//! folder is reported and does not run until approved, when it goes live
//! at once; every approval is audited with who made it.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::support::{plugin, syncline};

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "tagger" }]
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

/// The tagger version that processed a newly ingested message.
fn version_now(host: &Host, id: &str) -> String {
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(id).as_bytes());
    assert_eq!(status, 202, "{answer}");
    let t = host.settled(answer["id"].as_str().unwrap());
    t["outputs"][0]["message"]["headers"]["version"].as_str().unwrap_or("none").to_string()
}

fn digest_of(built: &str) -> String {
    syncline::runtime::digest(&std::fs::read(plugin(built)).unwrap())
}

#[test]
fn only_approved_plugin_versions_go_live_and_each_approval_is_audited() {
    let erp = Erp::start(&[]);
    // Approval mode applies to every plugin, the sink's too.
    let config = CONFIG.replace("[plugins]\n", "[plugins]\nmode = \"approved\"\n");
    let site = Site::new(&config, &erp);
    site.share_plugin("tagger-v1", "tagger");
    let (v1, v2, sink) = (digest_of("tagger-v1"), digest_of("tagger-v2"), digest_of("http-sink"));

    // Nothing approved: check names each plugin, and the host does not start.
    let out = syncline().arg("check").arg(site.config()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("plugin `tagger` version {v1}")) && err.contains(&format!("syncline plugin approve tagger {v1}")), "{err}");
    assert!(err.contains(&format!("plugin `http-sink` version {sink}")), "{err}");
    let out = syncline().arg("run").arg(site.config()).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is not approved"), "{out:?}");

    // Approved offline (no host running), with a bad digest refused first.
    let approve = |name: &str, digest: &str| syncline().args(["plugin", "approve", name, digest, "--note", "reviewed", "--config"]).arg(site.config()).output().unwrap();
    let bad = approve("tagger", "sha256:1234");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a plugin digest"), "{bad:?}");
    for (name, digest) in [("tagger", &v1), ("http-sink", &sink)] {
        let out = approve(name, digest.trim_start_matches("sha256:"));
        assert!(out.status.success(), "{out:?}");
    }
    let host = Host::start(&site);
    assert_eq!(version_now(&host, "O-1"), "v1");

    // A new version dropped into the folder is reported and does not run.
    replace_file(&site.dir.path().join("plugins/shared/tagger.wasm"), &std::fs::read(plugin("tagger-v2")).unwrap());
    let rejected = host.effective_reload(1);
    assert_eq!(rejected["outcome"], "rejected", "{rejected}");
    let why = rejected["error"].as_str().unwrap();
    assert!(why.contains(&format!("plugin `tagger` version {v2}")) && why.contains("is not approved"), "{why}");
    assert_eq!(version_now(&host, "O-2"), "v1", "the approved version keeps running");

    // Approved through the running host: it goes live at once.
    let out = syncline().args(["plugin", "approve", "tagger", &v2, "--note", "reviewed v2", "--server", &host.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("reload applied"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version_now(&host, "O-3"), "v2");
    let listed = syncline().args(["plugin", "approvals", "--server", &host.url]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.starts_with("mode: approved") && listed.contains(&v1) && listed.contains(&v2) && listed.contains("\"reviewed v2\""), "{listed}");

    // Revoked: gone from the list (the running version runs on until replaced).
    let (status, body) = send("POST", &format!("{}/v1/plugins/tagger/revoke", host.url), "application/json", &[], json!({"digest": v1}).to_string().as_bytes());
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)), "{body}");
    let (status, _) = send("POST", &format!("{}/v1/plugins/tagger/revoke", host.url), "application/json", &[], json!({"digest": v1}).to_string().as_bytes());
    assert_eq!(status, 404);
    let (status, body) = send("POST", &format!("{}/v1/plugins/tagger/approve", host.url), "application/json", &[], br#"{"digest": "nope"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad-request")), "{body}");

    // The audit log: who approved what, the swap, the revocation.
    let (_, audit) = get(&format!("{}/v1/audit?limit=1000", host.url));
    let events = audit["events"].as_array().unwrap();
    let approved: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"]["kind"] == "plugin-approved")
        .map(|e| (e["event"]["digest"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(approved.len(), 3, "{approved:?}");
    assert!(approved[0].1.starts_with("cli:") && approved[2] == (v2.as_str(), "open"), "{approved:?}");
    let swap = events.iter().rev().find(|e| e["event"]["kind"] == "reload" && e["event"]["outcome"] == "applied").expect("the approval's reload");
    assert_eq!((swap["event"]["trigger"].as_str(), swap["event"]["plugins"][0]["new"].as_str()), (Some("approval"), Some(v2.as_str())), "{swap}");
    assert!(events.iter().any(|e| e["event"]["kind"] == "plugin-approval-revoked" && e["event"]["digest"] == v1.as_str()));
    eventually(Duration::from_secs(5), "three documents", || (erp.unique() == 3).then_some(()));
}

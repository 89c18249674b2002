//! The fallback baseline against a running host: a planning pipeline keeps
//! its last approved recommendations; when the planning feed goes stale the
//! host reports it (exception, audit) and releases the baseline to the
//! execution pipeline, flagged as a fallback, so requisitions reach the ERP;
//! a restart during the stale spell releases nothing twice; when planning
//! delivers again it switches back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "planning"
tenant = "acme"
baseline = { freshness = "2s", exception-queue = "planning-feed" }
stages = [{ validate = "canonical-validator" }]
routes = [{ to = "plans" }]

[[pipeline]]
id = "execution"
tenant = "acme"
fallback = { from = "planning" }
stages = [{ allocate = "moq-leadtime", batch = { max = 50, window = "0ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[sink.plans]
plugin = "http-sink"
config = { url = "http://{ERP}/plans" }
allowed-hosts = ["{ERP}"]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

fn rec(id: &str, item: &str, qty: f64) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": id,
           "body": {"id": id, "item": item, "location": "DC-1", "quantity": qty, "uom": "EA", "need-by": "2026-12-21",
                    "source": {"supplier": "SUP-7"}, "reason": "below-safety-stock", "priority": 2}})
    .to_string()
}

fn plan(host: &Host, id: &str, item: &str, qty: f64) -> String {
    let (status, answer) = host.ingest("acme", "planning", "messages", "application/json", &[], rec(id, item, qty).as_bytes());
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn by_path(erp: &Erp, path: &str) -> u64 {
    erp.received()["by-path"][path].as_u64().unwrap_or(0)
}

fn audit_count(site: &Site, kind: &str) -> i64 {
    let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM audit WHERE kind = ?1", [kind], |r| r.get(0)).unwrap()
}

#[test]
fn a_stale_planning_feed_releases_its_baseline_to_execution_once_and_switches_back() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let mut host = Host::start(&site);

    // Planning approves three recommendations; the second is revised.
    let ids = [plan(&host, "R-1", "SKU-100", 10.0), plan(&host, "R-2", "SKU-200", 5.0), plan(&host, "R-2b", "SKU-200", 7.0), plan(&host, "R-3", "SKU-300", 30.0)];
    for id in &ids {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    let (status, baseline) = get(&format!("{}/v1/tenants/acme/baselines/planning", host.url));
    assert_eq!(status, 200, "{baseline}");
    let records = baseline["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "the latest per item and location: {baseline}");
    let sku200 = records.iter().find(|r| r["item"] == "SKU-200").unwrap();
    assert_eq!(sku200["message"]["body"]["quantity"], 7.0, "{sku200}");
    let (_, one) = get(&format!("{}/v1/tenants/acme/baselines/planning?item=SKU-300", host.url));
    assert_eq!(one["records"].as_array().unwrap().len(), 1);
    assert_eq!(get(&format!("{}/v1/tenants/acme/baselines/execution", host.url)).0, 404, "execution keeps no baseline");
    assert_eq!(by_path(&erp, "/requisitions"), 0);

    // Planning goes quiet past its freshness: the baseline is released to execution.
    eventually(Duration::from_secs(30), "three fallback requisitions at the ERP", || (by_path(&erp, "/requisitions") == 3).then_some(()));
    let (_, stale) = get(&format!("{}/v1/tenants/acme/baselines/planning", host.url));
    assert_eq!(stale["stale"], true, "{stale}");
    let (_, exceptions) = get(&format!("{}/v1/exceptions?queue=planning-feed", host.url));
    let parked = &exceptions["exceptions"][0];
    assert_eq!(parked["detail"]["code"], "planning-feed-stale", "{exceptions}");
    assert_eq!(audit_count(&site, "baseline-stale"), 1);
    // Each fallback requisition says so, and the revised plan was the one used.
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let requisitions: Vec<Value> = keys
        .iter()
        .filter(|k| k.starts_with("acme/execution/"))
        .map(|k| get(&format!("{}/_admin/record/{}", erp.url, k.replace('%', "%25").replace('/', "%2F"))).1["record"].clone())
        .collect();
    assert_eq!(requisitions.len(), 3, "{keys:?}");
    for r in &requisitions {
        assert_eq!(r["body"]["headers"]["fallback"], "true", "{r}");
        assert_eq!(r["body"]["headers"]["baseline-from"], "planning", "{r}");
    }
    assert!(requisitions.iter().any(|r| r["body"]["body"]["recommendation"] == "R-2b"), "the revised SKU-200 plan: {requisitions:?}");

    // A restart in the stale spell releases nothing twice.
    host.kill9();
    let host = Host::start(&site);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(by_path(&erp, "/requisitions"), 3, "released once per stale spell");

    // Planning delivers again: back to normal, audited; nothing more is released.
    let fresh = plan(&host, "R-4", "SKU-100", 12.0);
    assert_eq!(host.settled(&fresh)["outputs"][0]["state"], "delivered");
    eventually(Duration::from_secs(20), "the recovery audited", || (audit_count(&site, "baseline-recovered") == 1).then_some(()));
    assert_eq!(by_path(&erp, "/requisitions"), 3);

    // A release by hand goes only to a pipeline that falls back on planning.
    let (status, body) = send("POST", &format!("{}/v1/tenants/acme/baselines/planning/release", host.url), "application/json", &[], br#"{"to": "planning"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not-a-fallback")), "{body}");
}

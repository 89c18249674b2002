//! Sinks through failures and maintenance against a running host and
//! erp-sim: the circuit breaker opens on a failing ERP, holds the queue
//! (no requests, no attempts spent, nothing dead-lettered), probes, opens
//! again on a failed probe and closes on a good one; a paused sink stays
//! paused across a restart and its queue leaves in order on resume; a
//! maintenance window holds the queue until it is no longer configured.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::syncline;

fn config(sink_extra: &str) -> String {
    crate::site_config!(
        r#"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "trap" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions", timeout-ms = "500" }
allowed-hosts = ["{ERP}"]
workers = 1
retry = { attempts = 3, initial = "20ms", max = "50ms" }
"#
    )
    .to_string()
        + sink_extra
}

fn order(id: &str, item: &str) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": id,
           "body": {"id": id, "item": item, "location": "DC-1", "quantity": 5.0, "uom": "EA", "need-by": "2026-12-21",
                    "source": {"supplier": "SUP-7"}, "reason": "below-safety-stock", "priority": 2}})
    .to_string()
}

fn ingest(host: &Host, id: &str, item: &str) -> String {
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(id, item).as_bytes());
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn erp_sink(host: &Host) -> Value {
    let (status, body) = get(&format!("{}/v1/sinks", host.url));
    assert_eq!(status, 200, "{body}");
    body["sinks"].as_array().unwrap().iter().find(|s| s["name"] == "erp").unwrap().clone()
}

fn breaker(host: &Host) -> Value {
    erp_sink(host)["control"]["breaker"].clone()
}

fn requests(erp: &Erp) -> u64 {
    erp.received()["requests"].as_u64().unwrap()
}

fn sink_cli(host: &Host, args: &[&str]) -> String {
    let out = syncline().arg("sink").args(args).args(["--server", &host.url]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn audit_kinds(site: &Site) -> Vec<String> {
    let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
    let mut stmt = db.prepare("SELECT kind FROM audit ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn a_failing_erp_opens_the_breaker_which_holds_the_queue_probes_and_closes_with_nothing_lost() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config("breaker = { failures = 3, open-for = \"1500ms\" }\n"), &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);
    assert_eq!(breaker(&host)["state"], "closed");

    erp.mode("503", None);
    let ids: Vec<String> = (0..6).map(|i| ingest(&host, &format!("B-{i}"), &format!("SKU-{i}"))).collect();
    let open = eventually(Duration::from_secs(20), "the breaker opens", || Some(breaker(&host)).filter(|b| b["state"] == "open"));
    let reason = open["reason"].as_str().unwrap();
    assert!(reason.contains("calls in a row failed") && reason.contains("503"), "{open}");

    // While it is open the ERP gets nothing: the count read before and
    // after a pause is the same as long as the breaker still says open
    // (the probe turns it half-open before it sends).
    let before = requests(&erp);
    std::thread::sleep(Duration::from_millis(300));
    let after = requests(&erp);
    if breaker(&host)["state"] == "open" {
        assert_eq!(after, before, "no request while the breaker is open");
    }
    // The probe fails (the ERP is still down) and the breaker opens again.
    eventually(Duration::from_secs(20), "a failed probe", || {
        Some(breaker(&host)).filter(|b| b["state"] == "open" && b["reason"].as_str().unwrap_or("").starts_with("the probe failed"))
    });

    // The ERP is back: the next probe closes it and everything is delivered once.
    erp.mode("ok", None);
    eventually(Duration::from_secs(20), "the breaker closes", || Some(breaker(&host)).filter(|b| b["state"] == "closed"));
    for id in &ids {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    assert_eq!((erp.unique(), erp.received()["duplicates"].as_u64()), (6, Some(0)));
    let (_, dead) = get(&format!("{}/v1/dead-letters?state=all", host.url));
    assert_eq!(dead["dead-letters"], json!([]), "the open breaker spent no attempts: nothing is dead");

    let kinds: Vec<String> = audit_kinds(&site).into_iter().filter(|k| k == "breaker").collect();
    assert!(kinds.len() >= 5, "closed→open→half-open→open→half-open→closed: {kinds:?}");
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains("syncline_sink_breaker_state{sink=\"erp\"} 0"), "{metrics}");
}

#[test]
fn a_paused_sink_keeps_its_queue_across_a_restart_and_delivers_it_in_order_on_resume() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config(""), &erp);
    site.share_plugin("trap", "trap");
    let mut host = Host::start(&site);

    assert_eq!(sink_cli(&host, &["pause", "erp", "--reason", "ERP upgrade"]).trim(), "sink erp paused");
    let ids: Vec<String> = (0..5).map(|i| ingest(&host, &format!("P-{i}"), "SKU-1")).collect();
    eventually(Duration::from_secs(20), "five deliveries queued", || (erp_sink(&host)["pending"] == 5).then_some(()));
    let listed = sink_cli(&host, &["list"]);
    assert!(listed.starts_with("erp  5 pending, oldest ") && listed.contains("paused: ERP upgrade"), "{listed}");
    assert!(get_text(&format!("{}/metrics", host.url)).contains("syncline_sink_held{sink=\"erp\"} 1"));

    // Still paused after a restart.
    assert!(host.terminate());
    let host = Host::start(&site);
    assert_eq!(erp_sink(&host)["control"]["paused"]["reason"], "ERP upgrade");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(requests(&erp), 0, "a paused sink sends nothing");

    assert_eq!(sink_cli(&host, &["resume", "erp"]).trim(), "sink erp resumed");
    for id in &ids {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let order: Vec<usize> = (0..5).map(|i| keys.iter().position(|k| k.contains(&format!("P-{i}"))).unwrap()).collect();
    assert_eq!(order, [0, 1, 2, 3, 4], "in the order they were queued: {keys:?}");
    let kinds = audit_kinds(&site);
    assert!(kinds.contains(&"sink-paused".to_string()) && kinds.contains(&"sink-resumed".to_string()), "{kinds:?}");
    let (status, body) = send("POST", &format!("{}/v1/sinks/nope/pause", host.url), "application/json", &[], br#"{"reason": "x"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown-sink")));
    let (status, _) = send("POST", &format!("{}/v1/sinks/erp/pause", host.url), "application/json", &[], b"{}");
    assert_eq!(status, 400, "a pause needs a reason");
}

#[test]
fn a_maintenance_window_holds_the_queue_while_it_is_configured() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config(""), &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);

    // A window from a minute ago to ten minutes from now, every day.
    let minute = |offset: i64| {
        let m = (syncline::store::now_ms() / 60_000 + offset).rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let window = format!("daily {}-{} UTC", minute(-1), minute(10));
    site.rewrite(&config(&format!("maintenance = [\"{window}\"]\n")), &erp);
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    let id = ingest(&host, "M-1", "SKU-1");
    eventually(Duration::from_secs(20), "one delivery queued", || (erp_sink(&host)["pending"] == 1).then_some(()));
    assert_eq!(erp_sink(&host)["control"]["maintenance"], window.as_str());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(requests(&erp), 0, "nothing leaves in the window");

    site.rewrite(&config(""), &erp);
    assert_eq!(host.effective_reload(2)["outcome"], "applied");
    assert_eq!(host.settled(&id)["outputs"][0]["state"], "delivered");
    assert_eq!(erp.unique(), 1);
}

#[test]
fn a_rate_limit_holds_under_a_burst_and_push_back_holds_the_sink() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config("rate-limit = \"20/s\"\nburst = 5\n"), &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);

    let ids: Vec<String> = (0..60).map(|i| ingest(&host, &format!("R-{i}"), &format!("SKU-{i}"))).collect();
    for id in &ids {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    let (_, received) = get(&format!("{}/_admin/received?times=true", erp.url));
    let times: Vec<i64> = received["times"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(times.len(), 60);
    // 20 a second with bursts of 5: no second holds more than 25 (and one
    // call's worth of slack for requests arriving out of step).
    let busiest = times.iter().map(|t| times.iter().filter(|u| (*t..t + 1000).contains(u)).count()).max().unwrap();
    assert!(busiest <= 30, "{busiest} deliveries within one second under a 20/s limit");
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(span >= 2_000, "60 deliveries at 20/s after a burst of 5 take at least 2.75 s, took {span} ms");
    assert_eq!(erp_sink(&host)["control"]["throttle"]["limit"], "20/s, burst 5");

    // The ERP answers 429 with Retry-After: the whole sink holds and slows down, nothing is lost.
    erp.mode("429", Some(3));
    let more: Vec<String> = (0..10).map(|i| ingest(&host, &format!("S-{i}"), &format!("SKU-{i}"))).collect();
    for id in &more {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    let throttle = erp_sink(&host)["control"]["throttle"].clone();
    assert!(throttle["push-backs"].as_u64().unwrap() >= 1, "{throttle}");
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains("syncline_sink_push_backs_total{sink=\"erp\"} "), "{metrics}");
    assert_eq!((erp.unique(), erp.received()["duplicates"].as_u64()), (70, Some(0)));
}

fn order_with(id: &str, item: &str, priority: &str) -> String {
    let mut m: Value = serde_json::from_str(&order(id, item)).unwrap();
    m["priority"] = json!(priority);
    m.to_string()
}

#[test]
fn critical_overtakes_a_bulk_backlog_keeping_order_per_key_and_bulk_is_not_starved() {
    let erp = Erp::start(&[]);
    let tiers = "\n[tier.bulk]\nalert-after = \"500ms\"\n";
    let text = config("batch = 5\n").replace("[[pipeline]]", &format!("{tiers}\n[[pipeline]]"));
    let site = Site::new(&text, &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);

    // A backlog: 30 bulk messages over 10 keys, then one critical message on
    // the first bulk key and five on keys of their own.
    sink_cli(&host, &["pause", "erp", "--reason", "build a backlog"]);
    let send = |id: &str, item: &str, priority: &str| {
        let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order_with(id, item, priority).as_bytes());
        assert_eq!(status, 202, "{answer}");
    };
    for i in 0..30 {
        send(&format!("B-{i}"), &format!("SKU-B{}", i % 10), "low");
    }
    send("C-K", "SKU-B0", "critical");
    for i in 0..5 {
        send(&format!("C-{i}"), &format!("SKU-C{i}"), "critical");
    }
    eventually(Duration::from_secs(20), "36 deliveries queued", || (erp_sink(&host)["pending"] == 36).then_some(()));
    let tiers = erp_sink(&host)["tiers"].clone();
    assert_eq!((tiers["critical"]["pending"].as_i64(), tiers["bulk"]["pending"].as_i64()), (Some(6), Some(30)), "{tiers}");
    // Bulk waiting past its alert-after is reported.
    eventually(Duration::from_secs(20), "a late bulk lane reported", || {
        let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
        let n: i64 = db.query_row("SELECT COUNT(*) FROM audit WHERE kind = 'tier-late'", [], |r| r.get(0)).unwrap();
        (n == 1).then_some(())
    });

    sink_cli(&host, &["resume", "erp"]);
    eventually(Duration::from_secs(30), "36 documents at the ERP", || (erp.unique() == 36).then_some(()));
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let at = |id: &str| keys.iter().position(|k| k.ends_with(&format!(":{id}/0"))).unwrap_or_else(|| panic!("{id} not in {keys:?}"));
    // Five calls of five: the critical ones are all in the first two calls.
    for i in 0..5 {
        assert!(at(&format!("C-{i}")) < 10, "C-{i} at {} of {keys:?}", at(&format!("C-{i}")));
    }
    // Its key's earlier bulk messages went first, lifted into the critical lane.
    let key = [at("B-0"), at("B-10"), at("B-20"), at("C-K")];
    assert!(key.windows(2).all(|w| w[0] < w[1]), "order per key: {key:?} in {keys:?}");
    assert!(at("C-K") < 20, "C-K waited for the bulk lane: {keys:?}");
    // Bulk still had a place in the first call.
    assert!((0..30).any(|i| at(&format!("B-{i}")) < 5), "bulk starved: {keys:?}");
    assert_eq!(erp.received()["duplicates"], 0);
}

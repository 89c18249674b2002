//! The scenarios under `examples/`, run from their own files (config,
//! reference tables, sample data) against a test host and the simulated
//! ERP: what each scenario's README says it shows is checked here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::support::root;

/// An example's folder copied to a temporary site: its config pointed at
/// this test's ERP and an ephemeral port, its tables, and every standard
/// plugin in `plugins/shared/`.
struct Scenario {
    site: Site,
    data: PathBuf,
}

impl Scenario {
    fn new(name: &str, erp: &Erp) -> Scenario {
        let example = root().join("examples").join(name);
        let config = std::fs::read_to_string(example.join("syncline.toml")).unwrap();
        let config = config.replace("127.0.0.1:19001", &erp.authority).replace("listen = \"127.0.0.1:18080\"", "listen = \"127.0.0.1:0\"");
        assert!(config.contains("127.0.0.1:0"), "the example listens on 127.0.0.1:18080");
        let site = Site::new(&config, erp);
        let refs = example.join("ref");
        if refs.is_dir() {
            for f in std::fs::read_dir(&refs).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, site.dir.path().join("ref").join(f.file_name().unwrap())).unwrap();
            }
        }
        Scenario { site, data: example.join("data-in") }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.data.join(name)).unwrap()
    }
}

fn ids(answer: &Value) -> Vec<String> {
    answer["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn planning_engines_are_reconciled_and_each_system_gets_its_own_format() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("planning-engines", &erp);
    let host = Host::start(&scenario.site);
    let mut sent = Vec::new();
    for engine in ["retail-engine.ndjson", "b2b-engine.ndjson"] {
        let (status, answer) = host.ingest("acme", "recommendations", "messages:batch", "application/x-ndjson", &[], &scenario.file(engine));
        assert_eq!(status, 202, "{answer}");
        sent.extend(ids(&answer));
    }
    sent.iter().for_each(|id| {
        host.settled(id);
    });
    eventually(Duration::from_secs(20), "three documents", || (erp.unique() == 3).then_some(()));
    let docs = erp.documents();
    let orders: Vec<&Value> = docs.iter().filter(|d| d["path"] == "/erp/purchase-orders").map(|d| &d["body"]).collect();
    let mut lines: Vec<(String, i64)> = orders.iter().map(|o| (o["items"][0]["material"].as_str().unwrap().to_string(), o["items"][0]["quantity"].as_i64().unwrap())).collect();
    lines.sort();
    assert_eq!(lines, [("SKU-100".to_string(), 120), ("SKU-300".to_string(), 48)], "{docs:#?}");
    assert!(orders.iter().all(|o| o["header"]["doc-type"] == "NB" && o["items"][0]["unit"] == "PCE"), "{orders:#?}");
    let imports: Vec<&Value> = docs.iter().filter(|d| d["path"] == "/wms/transfer-imports").collect();
    assert_eq!(imports.len(), 1, "{docs:#?}");
    let csv = imports[0]["body"]["text"].as_str().unwrap();
    assert!(csv.starts_with("MATERIAL;FROM_SITE;TO_SITE;QTY;SHIP_DATE\r\nSKU-200;DC-CENTRAL;STORE-9;18;"), "{csv:?}");

    // B2B's SKU-100 at DC-1 waits in the reconciliation queue, with the reason.
    let (_, queue) = get(&format!("{}/v1/exceptions?queue=reconciliation", host.url));
    let waiting = queue["exceptions"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{queue}");
    assert_eq!(waiting[0]["owner"], "Demand planning");
    assert!(waiting[0]["detail"]["text"].as_str().unwrap().starts_with("deferred: B-100 from b2b-engine for SKU-100 at DC-1: R-100 from retail-engine ranks first"), "{queue}");
    let (_, audit) = get(&format!("{}/v1/audit?kind=decision", host.url));
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "one accepted, one deferred: {audit}");
}

#[test]
fn every_scenario_has_its_readme_data_and_demo_steps() {
    let examples = root().join("examples");
    let mut found = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("syncline.toml").is_file() {
            continue;
        }
        found += 1;
        let has = |p: &str| dir.join(p).exists();
        assert!(has("demo.sh") && has("data-in"), "{} needs demo.sh and data-in/", dir.display());
        assert!(has("README.md") || dir.ends_with(Path::new("forecast-release")), "{} needs a README", dir.display());
    }
    assert!(found >= 2, "{found} scenarios");
}

#[test]
fn the_erps_statuses_reach_planning_correlated_and_close_every_loop() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("status-feedback", &erp);
    let host = Host::start(&scenario.site);
    let (status, answer) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], &scenario.file("recommendations.ndjson"));
    assert_eq!(status, 202, "{answer}");
    // Four orders out, four statuses back (the feed is polled every second).
    eventually(Duration::from_secs(30), "4 orders and 4 statuses", || (erp.unique() == 8).then_some(()));
    let docs = erp.documents();
    let statuses: Vec<&Value> = docs.iter().filter(|d| d["path"] == "/planning/order-status").collect();
    assert_eq!(statuses.len(), 4, "{docs:#?}");
    let mut seen: Vec<(String, String, String)> = statuses
        .iter()
        .map(|d| (d["body"]["recommendation"].as_str().unwrap().to_string(), d["body"]["state"].as_str().unwrap().to_string(), d["correlation-id"].as_str().unwrap_or("").to_string()))
        .collect();
    seen.sort();
    // Each status names the recommendation it answers and travels in its flow.
    for (rec, _, flow) in &seen {
        assert_eq!(flow, &format!("plan-2026-W49-{rec}"), "{seen:?}");
    }
    let mut states: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    states.sort();
    assert_eq!(states, ["confirmed", "delayed", "received", "short"], "{seen:?}");
    let delayed = statuses.iter().find(|d| d["body"]["state"] == "delayed").unwrap();
    assert_eq!(delayed["body"]["expected"], "2026-12-24", "three days after need-by: {delayed}");

    // Every order's loop closed by its status.
    let closed = eventually(Duration::from_secs(20), "4 closed loops", || {
        let (_, loops) = get(&format!("{}/v1/loops?state=closed", host.url));
        loops["loops"].as_array().filter(|l| l.len() == 4).cloned()
    });
    assert!(closed.iter().all(|l| l["closed-by"].is_string()), "{closed:?}");
    let (_, open) = get(&format!("{}/v1/loops?state=open", host.url));
    assert_eq!(open["loops"].as_array().map(Vec::len), Some(0), "{open}");

    // One flow as one timeline: its status delivered to planning is in it.
    let (_, flow) = get(&format!("{}/v1/correlations/plan-2026-W49-R-2", host.url));
    let kinds: Vec<&str> = flow["messages"].as_array().unwrap().iter().filter_map(|m| m["input"]["message"]["kind"].as_str()).collect();
    assert!(kinds.contains(&"replenishment-recommendation") && kinds.contains(&"execution-status"), "{flow}");
}

#[test]
fn master_data_reaches_planning_clean_and_the_rest_waits_for_the_stewards() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("master-sync", &erp);
    let host = Host::start(&scenario.site);
    for (pipeline, file) in [("items", "items.csv"), ("locations", "locations.csv")] {
        let (status, answer) = host.ingest("acme", pipeline, "messages", "text/csv", &[], &scenario.file(file));
        assert_eq!(status, 202, "{answer}");
        host.settled(answer["id"].as_str().unwrap());
    }
    eventually(Duration::from_secs(20), "six clean records at planning", || (erp.unique() == 6).then_some(()));
    let docs = erp.documents();
    let mut nodes: Vec<(String, String)> = docs.iter().map(|d| (d["body"]["node"]["type"].as_str().unwrap().to_string(), d["body"]["node"]["id"].as_str().unwrap().to_string())).collect();
    nodes.sort();
    let expected: Vec<(String, String)> =
        [("PRODUCT", "SKU-100"), ("PRODUCT", "SKU-200"), ("PRODUCT", "SKU-300"), ("SITE", "DC-1"), ("SITE", "DC-2"), ("SITE", "STORE-9")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(nodes, expected, "{docs:#?}");
    let bolts = docs.iter().find(|d| d["body"]["node"]["id"] == "SKU-100").unwrap();
    assert_eq!((bolts["body"]["attributes"]["uom"].as_str(), bolts["body"]["attributes"]["status"].as_str()), (Some("EA"), Some("active")), "{bolts}");

    let (_, queue) = get(&format!("{}/v1/exceptions?queue=master-data", host.url));
    let waiting = queue["exceptions"].as_array().unwrap();
    assert_eq!(waiting.len(), 5, "{queue}");
    let text = queue.to_string();
    for why in ["`MEINS` is empty", "`BAG` is not in its code table", "WIDGET-9", "`REGION` is empty", "shop 12"] {
        assert!(text.contains(why), "no exception saying {why}: {queue}");
    }
}

#[test]
fn two_businesses_formats_feed_one_view_in_the_groups_ids() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("merged-businesses", &erp);
    let host = Host::start(&scenario.site);
    for (pipeline, file, media) in [("nordic-stock", "nordic-stock.json", "application/vnd.nordic.stock+json"), ("southern-stock", "southern-stock.csv", "text/csv")] {
        let (status, answer) = host.ingest("acme", pipeline, "messages", media, &[], &scenario.file(file));
        assert_eq!(status, 202, "{answer}");
        host.settled(answer["id"].as_str().unwrap());
    }
    eventually(Duration::from_secs(20), "four positions", || (erp.unique() == 4).then_some(()));
    let docs = erp.documents();
    let mut view: Vec<(String, String, String, f64)> = docs
        .iter()
        .map(|d| {
            let m = &d["body"];
            (m["source-system"].as_str().unwrap().to_string(), m["body"]["item"].as_str().unwrap().to_string(), m["body"]["location"].as_str().unwrap().to_string(), m["body"]["available"].as_f64().unwrap())
        })
        .collect();
    view.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let expected = [("nordic-erp", "SKU-100", "DC-1", 360.0), ("nordic-erp", "SKU-200", "DC-3", 75.0), ("southern-erp", "SKU-100", "DC-2", 120.0), ("southern-erp", "SKU-400", "DC-4", 18.5)];
    let expected: Vec<(String, String, String, f64)> = expected.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d)).collect();
    assert_eq!(view, expected, "{docs:#?}");
    assert!(docs.iter().all(|d| d["body"]["kind"] == "inventory-position"), "one canonical model: {docs:#?}");

    let (_, queue) = get(&format!("{}/v1/exceptions?queue=master-data", host.url));
    let waiting = queue["exceptions"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{queue}");
    assert!(waiting[0]["detail"]["text"].as_str().unwrap().contains("`1009999` is not in its code table"), "{queue}");
}

/// The recommendation each document at the ERP answers, and which ERP has it.
fn by_recommendation(docs: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in docs {
        let path = d["path"].as_str().unwrap().to_string();
        match d["body"]["content-type"].as_str() {
            Some("text/csv") => {
                let text = d["body"]["text"].as_str().unwrap();
                let mut lines = text.split("\r\n");
                let header: Vec<&str> = lines.next().unwrap().split(';').collect();
                let at = header.iter().position(|h| *h == "RECOMMENDATION").unwrap();
                for line in lines.filter(|l| !l.is_empty()) {
                    out.push((line.split(';').nth(at).unwrap().to_string(), path.clone()));
                }
            }
            _ => out.push((d["body"]["recommendation"].as_str().unwrap().to_string(), path)),
        }
    }
    out.sort();
    out
}

#[test]
fn a_site_moves_to_the_cloud_erp_by_editing_the_config_while_requisitions_keep_coming() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("erp-cutover", &erp);
    let host = Host::start(&scenario.site);
    let (status, answer) = host.ingest("acme", "replenishment", "messages:batch", "application/x-ndjson", &[], &scenario.file("week-49.ndjson"));
    assert_eq!(status, 202, "{answer}");
    eventually(Duration::from_secs(20), "the first half delivered", || (erp.unique() == 15).then_some(()));

    // Requisitions for DC-2 keep coming while the cutover applies.
    let url = host.url.clone();
    let sender = std::thread::spawn(move || {
        for n in 1..=40 {
            let body = recommendation(&format!("X-{n:03}")).to_string().replace("\"DC-1\"", "\"DC-2\"");
            let (status, _) = send("POST", &format!("{url}/v1/tenants/acme/pipelines/replenishment/messages"), "application/json", &[], body.as_bytes());
            assert_eq!(status, 202);
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    let out = std::process::Command::new(root().join("examples/erp-cutover/cutover.sh")).arg(scenario.site.config()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sender.join().unwrap();
    eventually(Duration::from_secs(20), "the cutover applied", || host.reloads().iter().any(|r| r["outcome"] == "applied").then_some(()));

    let (status, answer) = host.ingest("acme", "replenishment", "messages:batch", "application/x-ndjson", &[], &scenario.file("week-49-late.ndjson"));
    assert_eq!(status, 202, "{answer}");
    eventually(Duration::from_secs(30), "70 documents", || (erp.unique() == 70).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    let docs = erp.documents();
    let sent = by_recommendation(&docs);
    // Exactly once: 70 recommendations, each at one ERP.
    let mut ids: Vec<&str> = sent.iter().map(|(r, _)| r.as_str()).collect();
    ids.dedup();
    assert_eq!((sent.len(), ids.len()), (70, 70), "{sent:?}");
    assert_eq!(erp.received()["duplicates"], 0);
    // The second half: DC-2 and DC-1 at the cloud ERP, DC-3 still at the legacy one.
    let late = std::fs::read_to_string(root().join("examples/erp-cutover/data-in/week-49-late.ndjson")).unwrap();
    for line in late.lines() {
        let m: Value = serde_json::from_str(line).unwrap();
        let (id, site) = (m["body"]["id"].as_str().unwrap(), m["body"]["location"].as_str().unwrap());
        let at = &sent.iter().find(|(r, _)| r == id).unwrap_or_else(|| panic!("{id} missing: {sent:?}")).1;
        let expected = if site == "DC-3" { "/legacy-erp/import" } else { "/cloud-erp/purchase-orders" };
        assert_eq!(at, expected, "{id} at {site}");
    }
}

#[test]
fn python_and_javascript_plugins_work_beside_the_rust_ones() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("partner-plugins", &erp);
    for p in ["acme-xml-mapper", "erp-order-sink"] {
        scenario.site.share_plugin(p, p);
    }
    let host = Host::start(&scenario.site);
    // The ERP is down for the first two requests: the JavaScript connector's
    // 503s are retried, and no order arrives twice.
    erp.mode("503", Some(2));
    let release = scenario.file("release-w49.xml");
    let (status, answer) = host.ingest("acme", "plan-release", "messages", "application/xml", &[("idempotency-key", "release-2026-W49")], &release);
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let trace = host.settled(&id);
    eventually(Duration::from_secs(30), "three orders at the ERP", || (erp.unique() == 3).then_some(()));

    // Python mapped the XML (decimal comma, unit code, plant table, DD.MM.YYYY),
    // Rust applied MOQ and packs, JavaScript wrote the ERP's documents.
    let docs = erp.documents();
    let mut orders: Vec<(String, String, String, i64, String)> = docs
        .iter()
        .map(|d| {
            let b = &d["body"];
            (d["path"].as_str().unwrap().into(), b["orderType"].as_str().unwrap().into(), b["material"].as_str().unwrap().into(), b["quantity"].as_i64().unwrap(), b["unit"].as_str().unwrap().into())
        })
        .collect();
    orders.sort();
    assert_eq!(
        orders,
        [
            ("/erp/purchase-orders".into(), "NB".into(), "SKU-100".into(), 120, "PCE".into()),
            ("/erp/purchase-orders".into(), "NB".into(), "SKU-300".into(), 48, "PCE".into()),
            ("/erp/transfer-orders".into(), "UB".into(), "SKU-200".into(), 18, "PCE".into()),
        ],
        "{docs:#?}"
    );
    let transfer = docs.iter().find(|d| d["path"] == "/erp/transfer-orders").unwrap();
    assert_eq!((transfer["body"]["supplyingPlant"].as_str(), transfer["body"]["plant"].as_str(), transfer["body"]["deliveryDate"].as_str()), (Some("DC-CENTRAL"), Some("DC-2"), Some("2026-12-28")));
    assert!(docs.iter().all(|d| d["correlation-id"] == id.as_str()), "the connector passes the flow's correlation id (the release's id): {docs:#?}");
    assert_eq!(erp.received()["duplicates"], 0, "retries after 503 never order twice");
    // The trace names the Python plugin and the Rust ones at their stages.
    let text = trace.to_string();
    assert!(text.contains("acme-xml-mapper") && text.contains("moq-leadtime"), "{trace:#}");

    // The negative quantity waits for the master data team.
    let (_, queue) = get(&format!("{}/v1/exceptions?queue=master-data", host.url));
    assert_eq!(queue["exceptions"].as_array().unwrap().len(), 1, "{queue}");

    // A plant the table lacks: the plugin's own refusal; a quantity it cannot
    // read: a Python exception whose traceback is kept with the dead letter.
    for file in ["release-unknown-plant.xml", "release-bad-quantity.xml"] {
        let (status, answer) = host.ingest("acme", "plan-release", "messages", "application/xml", &[], &scenario.file(file));
        assert_eq!(status, 202, "{answer}");
        host.settled(answer["id"].as_str().unwrap());
    }
    let (_, letters) = get(&format!("{}/v1/dead-letters?tenant=acme", host.url));
    let reasons: Vec<&str> = letters["dead-letters"].as_array().unwrap().iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{letters:#}");
    assert!(reasons.iter().any(|r| r.contains("unknown-plant") && r.contains("proposal P-2001: plant 4711 is not in the plants table")), "{reasons:#?}");
    let traceback = reasons.iter().find(|r| r.contains("ValueError")).unwrap_or_else(|| panic!("{reasons:#?}"));
    assert!(traceback.contains("Traceback (most recent call last)") && traceback.contains("could not convert string to float: 'twelve'"), "{traceback}");
    assert_eq!(erp.unique(), 3, "nothing of the refused releases reached the ERP");
}

#[test]
fn inventory_events_overtake_a_forecast_release_queued_at_the_same_planning_system() {
    let args = std::fs::read_to_string(root().join("examples/inventory-events/erp-sim.args")).unwrap();
    let erp = Erp::start(&args.split_whitespace().collect::<Vec<_>>());
    let scenario = Scenario::new("inventory-events", &erp);
    // A shorter cadence than the example's 10 minutes, to see a scheduled poll.
    let config = std::fs::read_to_string(scenario.site.config()).unwrap().replace("every = \"10m\"", "every = \"2s\"");
    std::fs::write(scenario.site.config(), config).unwrap();
    let host = Host::start(&scenario.site);

    // The release is read at start (pages of 500) and queues at the planning
    // API (200/s); the WMS's events arrive while it drains.
    eventually(Duration::from_secs(30), "the first forecasts at planning", || (erp.unique() >= 1).then_some(()));
    let mut events = Vec::new();
    for file in ["movement.json", "stock-out.json", "receipt.json"] {
        let (status, answer) = host.ingest("acme", "wms-events", "messages", "application/vnd.acme.wms-event+json", &[], &scenario.file(file));
        assert_eq!(status, 202, "{answer}");
        events.push(answer["id"].as_str().unwrap().to_string());
    }
    eventually(Duration::from_secs(60), "the release and the events at planning", || (erp.unique() == 1043).then_some(()));

    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let at = |pipeline: &str| keys.iter().enumerate().filter(|(_, k)| k.contains(&format!("/{pipeline}/"))).map(|(i, _)| i).collect::<Vec<_>>();
    let (forecasts, wms) = (at("forecast-release"), at("wms-events"));
    assert_eq!((forecasts.len(), wms.len()), (1040, 3), "{keys:?}");
    let last_forecast = *forecasts.last().unwrap();
    assert!(wms.iter().all(|&i| i < last_forecast), "each inventory event overtook the queued forecasts: events at {wms:?}, the release ended at {last_forecast}");
    assert_eq!(erp.received()["duplicates"], 0);
    // Of the forecasts already waiting when an event was queued (a page of
    // the release, ~450), how many still went out before it: a few calls'
    // worth (10–50 here), not all of them (while a worker holding an event
    // waited for room for its whole call in the rate limit that four workers
    // share, ~750 forecasts went out during each wait). Counted against what
    // was waiting rather than as a fixed number, so a loaded machine (slower
    // calls; the receipt also waits for the stock-out of its item and site
    // before it) does not read as a regression: it overtook at least half of
    // that backlog (or, when the backlog was small, waited for fewer than 100).
    let db = rusqlite::Connection::open(scenario.site.dir.path().join("data/syncline.db")).unwrap();
    let waits: Vec<(i64, i64)> = db
        .prepare(
            "SELECT (SELECT COUNT(*) FROM deliveries f WHERE f.pipeline = 'forecast-release' AND f.queued_at <= e.queued_at
                       AND f.delivered_at > e.queued_at AND f.delivered_at < e.delivered_at),
                    (SELECT COUNT(*) FROM deliveries f WHERE f.pipeline = 'forecast-release' AND f.queued_at <= e.queued_at
                       AND f.delivered_at > e.queued_at)
             FROM deliveries e WHERE e.pipeline = 'wms-events'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        waits.len() == 3 && waits.iter().all(|&(behind, backlog)| behind * 2 < backlog.max(200)),
        "(forecasts that went out while each event waited, forecasts waiting when it was queued): {waits:?}"
    );

    // Mapped from the WMS's JSON, in the order they happened per item and site.
    let docs = erp.documents();
    let positions: Vec<(String, String, f64, String)> = docs
        .iter()
        .filter(|d| d["body"]["kind"] == "inventory-position")
        .map(|d| {
            let b = &d["body"]["body"];
            (b["item"].as_str().unwrap().into(), b["location"].as_str().unwrap().into(), b["available"].as_f64().unwrap(), b["extensions"]["wms-event"].as_str().unwrap().into())
        })
        .collect();
    let sku101: Vec<&str> = positions.iter().filter(|p| p.0 == "SKU-101").map(|p| p.3.as_str()).collect();
    assert_eq!(sku101, ["stock-out", "goods-receipt"], "{positions:?}");
    assert!(positions.contains(&("SKU-100".into(), "DC-1".into(), 34.0, "goods-issue".into())), "{positions:?}");

    // The cadence: the release is polled again on schedule, from where it
    // stopped (the cursor kept with the messages), and nothing is read twice.
    eventually(Duration::from_secs(20), "a scheduled poll after the release", || {
        erp.received()["forecast-cursors"].as_array().unwrap().iter().filter(|c| c.as_u64() == Some(1040)).count().ge(&1).then_some(())
    });
    assert_eq!(erp.unique(), 1043);
    for id in &events {
        let trace = host.settled(id);
        assert_eq!(trace["outputs"][0]["state"], "delivered", "{trace:#}");
    }
}

#[test]
fn a_release_is_allocated_across_regions_and_reaches_the_erp_in_its_own_formats() {
    let erp = Erp::start(&[]);
    let scenario = Scenario::new("forecast-to-execution", &erp);
    let host = Host::start(&scenario.site);
    let (status, answer) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], &scenario.file("release-w49.ndjson"));
    assert_eq!(status, 202, "{answer}");
    for id in ids(&answer) {
        host.settled(&id);
    }
    eventually(Duration::from_secs(20), "five documents at the ERP", || (erp.unique() == 5).then_some(()));
    let docs = erp.documents();

    // Purchase orders in the ERP's JSON, sized by MOQ and packs.
    let mut orders: Vec<(String, i64, String)> = docs
        .iter()
        .filter(|d| d["path"] == "/erp/purchase-orders")
        .map(|d| {
            let line = &d["body"]["items"][0];
            (line["material"].as_str().unwrap().into(), line["quantity"].as_i64().unwrap(), line["unit"].as_str().unwrap().into())
        })
        .collect();
    orders.sort();
    assert_eq!(orders, [("SKU-100".into(), 120, "PCE".into()), ("SKU-300".into(), 48, "PCE".into())], "{docs:#?}");
    assert!(docs.iter().filter(|d| d["path"] == "/erp/purchase-orders").all(|d| d["body"]["header"]["doc-type"] == "NB"), "{docs:#?}");

    // Stock transfers in its CSV import: the central DC's 100 shared by
    // priority (DC-1: 60) and fair share (DC-2 and DC-3: 27 and 13 of 40).
    let mut transfers: Vec<String> = docs
        .iter()
        .filter(|d| d["path"] == "/erp/stock-transfers")
        .map(|d| {
            let csv = d["body"]["text"].as_str().unwrap();
            assert!(csv.starts_with("MATERIAL;SUPPLYING_PLANT;RECEIVING_PLANT;QTY;UNIT;SHIP_DATE;RULE\r\n"), "{csv:?}");
            csv.lines().nth(1).unwrap().split(';').take(5).collect::<Vec<_>>().join(";")
        })
        .collect();
    transfers.sort();
    assert_eq!(transfers, ["SKU-400;DC-CENTRAL;DC-1;60;PCE", "SKU-400;DC-CENTRAL;DC-2;27;PCE", "SKU-400;DC-CENTRAL;DC-3;13;PCE"], "{docs:#?}");

    // Each cut is a decision in the audit log, with its reason.
    let (_, audit) = get(&format!("{}/v1/audit?kind=decision", host.url));
    let decisions: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["event"]["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions.len(), 2, "{audit}");
    assert!(decisions.iter().any(|d| d.starts_with("cut: T-2004 gets 27 of 60 EA (priority 2): DC-CENTRAL has 100 EA")), "{decisions:?}");
}

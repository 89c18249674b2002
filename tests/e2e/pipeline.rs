//! `syncline run` end to end on loopback: ingest, stages, routes, delivery
//! into the simulated ERP, sources, restarts and a kill -9 under load.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Two tenants; `release` validates, allocates and routes by location and
/// kind with a fan-out; `statuses` polls the ERP's feed.
const CONFIG: &str = crate::site_config!(r#"

[[tenant]]
id = "globex"

[[pipeline]]
id = "release"
tenant = "acme"
stages = [
  { transform = "json-mapper", config = { kind = "replenishment-recommendation", records = "/recs", fields = { id = "/id", item = "/sku", location = "/site", quantity = "/qty", uom = "/uom", need-by = "/need", "source.supplier" = "/sup", reason = "/why", priority = "/prio" } } },
  { validate = "canonical-validator", on-violation = "exception:master-data" },
  { allocate = "moq-leadtime", batch = { max = 200, window = "20ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } },
]
routes = [
  { when = { "body.location" = ["DC-EU-1", "DC-EU-2"] }, to = ["erp-eu", "archive"] },
  { when = { kind = "transfer-proposal" }, to = "erp-transfers" },
  { to = "erp" },
]

[[pipeline]]
id = "statuses"
tenant = "acme"
source = { plugin = "http-source", every = "100ms", config = { url = "http://{ERP}/feed", page-size = "10" }, allowed-hosts = ["{ERP}"] }
routes = [{ to = "status-sink" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions", token = { env = "ERP_TOKEN" } }
allowed-hosts = ["{ERP}"]
retry = { attempts = 6, initial = "50ms", max = "500ms" }
# These tests are about retries; the breaker has its own (tests/e2e/sinks.rs).
breaker = { failures = 0 }

[sink.erp-eu]
plugin = "http-sink"
config = { url = "http://{ERP}/eu" }
allowed-hosts = ["{ERP}"]

[sink.archive]
plugin = "http-sink"
config = { url = "http://{ERP}/archive" }
allowed-hosts = ["{ERP}"]

[sink.erp-transfers]
plugin = "http-sink"
config = { url = "http://{ERP}/transfers" }
allowed-hosts = ["{ERP}"]

[sink.status-sink]
plugin = "http-sink"
config = { url = "http://{ERP}/statuses" }
allowed-hosts = ["{ERP}"]
"#);

/// A canonical replenishment recommendation as one JSON line.
fn rec(id: &str, item: &str, location: &str, qty: f64, source: Value) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": id,
           "body": {"id": id, "item": item, "location": location, "quantity": qty, "uom": "EA", "need-by": "2026-12-21",
                    "source": source, "reason": "below-safety-stock", "priority": 2}})
    .to_string()
}

fn supplier(id: &str, item: &str, location: &str, qty: f64) -> String {
    rec(id, item, location, qty, json!({"supplier": "SUP-7"}))
}

fn accepted_id(answer: &(u16, Value)) -> String {
    assert_eq!(answer.0, 202, "{answer:?}");
    answer.1["id"].as_str().expect("an id").to_string()
}

#[test]
fn happy_path_maps_validates_allocates_and_delivers_with_trace() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let raw = br#"{"recs": [{"id": "R-1", "sku": "SKU-100", "site": "DC-1", "qty": 100, "uom": "EA", "need": "2026-12-21", "sup": "SUP-7", "why": "low", "prio": 2}]}"#;
    let id = accepted_id(&host.ingest("acme", "release", "messages", "application/vnd.acme+json", &[("idempotency-key", "file-1")], raw));
    let t = host.settled(&id);
    assert_eq!(t["input"]["state"], "done");
    let steps = t["input"]["processing"]["steps"].as_array().unwrap();
    let plugins: Vec<&str> = steps.iter().filter_map(|s| s["plugin"].as_str()).collect();
    assert_eq!(plugins, ["json-mapper", "canonical-validator", "moq-leadtime"]);
    for s in steps.iter().filter(|s| s.get("plugin").is_some()) {
        assert!(s["digest"].as_str().unwrap().starts_with("sha256:"), "{s}");
    }
    let out = &t["outputs"][0];
    assert_eq!(out["sink"], "erp");
    assert_eq!(out["state"], "delivered");
    assert_eq!(out["message"]["kind"], "purchase-requisition");
    assert_eq!(out["message"]["body"]["quantity"], 120.0);
    assert_eq!(out["message"]["correlation-id"], id.as_str());
    // The ERP got it once, under the output's idempotency key, with the token.
    let key = out["message"]["idempotency-key"].as_str().unwrap();
    // Scoped by tenant and pipeline; `/0/0`: output 0 of the mapper's output 0.
    assert_eq!(key, "acme/release/k:file-1/0/0");
    let (_, record) = get(&format!("{}/_admin/record/{}", erp.url, key.replace('/', "%2F")));
    assert_eq!(record["record"]["path"], "/requisitions");
    assert_eq!(record["record"]["correlation-id"], id.as_str());
    assert_eq!(out["reference"], record["id"]);
    // An output's own id answers too.
    let (status, by_output) = host.trace(out["id"].as_str().unwrap());
    assert_eq!(status, 200);
    assert_eq!(by_output["deliveries"][0]["state"], "delivered");
}

#[test]
fn ingest_refuses_bad_input_with_clear_json_errors() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let json_ct = "application/json";
    let good = supplier("R-1", "SKU-100", "DC-1", 5.0);

    let (s, b) = host.ingest("acme", "release", "messages", json_ct, &[], b"{not json");
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("malformed-message")), "{b}");

    let (s, b) = host.ingest("acme", "release", "messages", json_ct, &[], good.replace("\"quantity\"", "\"quantty\"").as_bytes());
    assert_eq!(s, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains("body.quantty"), "{b}");

    let (s, b) = host.ingest("nobody", "release", "messages", json_ct, &[], good.as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("unknown-tenant")), "{b}");

    let (s, b) = host.ingest("acme", "relase", "messages", json_ct, &[], good.as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("unknown-pipeline")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("did you mean `release`?"), "{b}");

    let (s, b) = host.ingest("globex", "release", "messages", json_ct, &[], good.as_bytes());
    assert_eq!(s, 404, "a tenant never reaches another tenant's pipeline: {b}");

    let (s, b) = host.ingest("acme", "release", "messages", json_ct, &[], good.replace("\"1.0.0\"", "\"2.0.0\"").as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("unsupported-schema-version")), "{b}");

    let (s, b) = host.ingest("acme", "release", "messages", json_ct, &[], good.replace("\"schema-version\"", "\"tenant\": \"globex\", \"schema-version\"").as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("tenant-mismatch")), "{b}");

    let big = vec![b'x'; (1 << 20) + 1024]; // over the default server.max-body of 1 MiB
    let (s, b) = host.ingest("acme", "release", "messages", "text/csv", &[], &big);
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("payload-too-large")), "{b}");

    let (s, b) = host.ingest("acme", "statuses", "messages", json_ct, &[], good.as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("not-http-ingest")), "{b}");

    // A batch with one bad line is refused whole, naming the line.
    let batch = format!("{good}\n{}\n", "{\"kind\": 1}");
    let (s, b) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], batch.as_bytes());
    assert_eq!((s, b["error"]["line"].as_u64()), (400, Some(2)), "{b}");
    let (s, b) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], b"\n\n");
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("empty-batch")), "{b}");

    let (s, b) = get(&format!("{}/v1/messages/NOPE", host.url));
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("unknown-message")));
    // None of the refused requests left anything behind.
    let (_, ready) = get(&format!("{}/readyz", host.url));
    assert!(ready["store"]["messages"].as_object().unwrap().is_empty(), "{ready}");
    assert_eq!(erp.unique(), 0);
}

#[test]
fn idempotent_ingest_answers_200_with_the_original_id_and_delivers_once() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let msg = supplier("R-9", "SKU-100", "DC-1", 5.0);
    let first = host.ingest("acme", "release", "messages", "application/json", &[], msg.as_bytes());
    let id = accepted_id(&first);
    let again = host.ingest("acme", "release", "messages", "application/json", &[], msg.as_bytes());
    assert_eq!(again.0, 200);
    assert_eq!(again.1, json!({"id": id, "status": "duplicate"}));
    // The header key works the same way, and a batch reports duplicates per line.
    let other = supplier("R-10", "SKU-100", "DC-1", 5.0).replace("\"idempotency-key\":\"R-10\",", "");
    let a = accepted_id(&host.ingest("acme", "release", "messages", "application/json", &[("idempotency-key", "hdr-1")], other.as_bytes()));
    let b = host.ingest("acme", "release", "messages", "application/json", &[("idempotency-key", "hdr-1")], other.as_bytes());
    assert_eq!((b.0, b.1["id"].as_str()), (200, Some(a.as_str())));
    let batch = format!("{msg}\n{}\n", supplier("R-11", "SKU-100", "DC-1", 5.0));
    let (s, body) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], batch.as_bytes());
    assert_eq!((s, body["accepted"].as_u64(), body["duplicates"].as_u64()), (202, Some(1), Some(1)), "{body}");
    assert_eq!(body["results"][0], json!({"status": "duplicate", "id": id}));
    host.settled(&id);
    host.settled(&a);
    eventually(Duration::from_secs(20), "3 documents at the ERP", || (erp.unique() == 3).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(erp.received()["requests"], 3, "nothing was delivered twice");
}

#[test]
fn routes_fan_out_and_default_and_invalid_records_go_to_their_queue() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let lines = [
        supplier("R-EU", "SKU-100", "DC-EU-1", 10.0),
        rec("R-TR", "SKU-200", "STORE-9", 14.0, json!({"location": "DC-CENTRAL"})),
        supplier("R-DEF", "SKU-300", "DC-2", 30.0),
        supplier("R-BAD", "SKU-100", "DC-1", -3.0),
    ];
    let (s, body) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], lines.join("\n").as_bytes());
    assert_eq!(s, 202, "{body}");
    let ids: Vec<String> = body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let traces: Vec<Value> = ids.iter().map(|id| host.settled(id)).collect();
    let sinks = |t: &Value| -> Vec<String> {
        let mut s: Vec<String> = t["outputs"].as_array().unwrap().iter().map(|o| o["sink"].as_str().unwrap().to_string()).collect();
        s.sort();
        s
    };
    assert_eq!(sinks(&traces[0]), ["archive", "erp-eu"]);
    assert_eq!(sinks(&traces[1]), ["erp-transfers"]);
    assert_eq!(sinks(&traces[2]), ["erp"]);
    assert!(sinks(&traces[3]).is_empty());
    assert_eq!(traces[3]["input"]["state"], "exception");
    assert_eq!(traces[3]["exceptions"][0]["queue"], "master-data");
    assert_eq!(traces[3]["exceptions"][0]["detail"]["violations"][0]["code"], "negative-quantity");
    eventually(Duration::from_secs(20), "4 documents", || (erp.unique() == 4).then_some(()));
    let by_path = erp.received()["by-path"].clone();
    assert_eq!(by_path, json!({"/eu": 1, "/archive": 1, "/transfers": 1, "/requisitions": 1}));
}

#[test]
fn messages_with_the_same_key_are_delivered_in_order_while_keys_run_in_parallel() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    // 4 item/location keys, 25 messages each, interleaved, sent in 4 batches.
    let mut lines = Vec::new();
    for i in 0..25 {
        for k in 0..4 {
            lines.push(supplier(&format!("K{k}-{i:02}"), &format!("SKU-{}", 100 + k), "DC-1", 1.0 + i as f64));
        }
    }
    // Make the ERP flaky for a while: retries must not reorder a key.
    erp.mode("503", Some(15));
    let mut ids = Vec::new();
    for chunk in lines.chunks(25) {
        let (s, body) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], chunk.join("\n").as_bytes());
        assert_eq!(s, 202, "{body}");
        ids.extend(body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
    }
    eventually(Duration::from_secs(60), "100 documents", || (erp.unique() == 100).then_some(()));
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut last: HashMap<String, String> = HashMap::new();
    for key in &keys {
        // Keys look like `acme/release/k:K2-07/0/0`: the group before '-' is the ordering key.
        let (group, seq) = key.trim_start_matches("acme/release/k:").split_once('-').unwrap();
        if let Some(prev) = last.get(group) {
            assert!(seq > prev.as_str(), "key {group}: {seq} arrived after {prev}; order {keys:?}");
        }
        last.insert(group.to_string(), seq.to_string());
    }
    assert_eq!(last.len(), 4);
}

#[test]
fn source_polls_with_a_persisted_cursor_across_restarts() {
    let erp = Erp::start(&["--feed", "25"]);
    let site = Site::new(CONFIG, &erp);
    let mut host = Host::start(&site);
    eventually(Duration::from_secs(30), "25 statuses delivered", || {
        let by_path = erp.received()["by-path"].clone();
        (by_path["/statuses"] == 25).then_some(())
    });
    assert!(host.terminate(), "clean shutdown");
    let polls_before = erp.received()["feed-cursors"].as_array().unwrap().len();
    let host = Host::start(&site);
    eventually(Duration::from_secs(10), "a poll after restart", || {
        let cursors = erp.received()["feed-cursors"].as_array().unwrap().clone();
        (cursors.len() > polls_before).then_some(())
    });
    let cursors = erp.received()["feed-cursors"].clone();
    assert_eq!(cursors[0], Value::Null, "the very first poll has no cursor");
    assert_eq!(cursors[polls_before], json!(25), "after a restart polling resumes at the stored cursor: {cursors}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(erp.received()["by-path"]["/statuses"], 25, "nothing was read twice");
    drop(host);
}

#[test]
fn a_restart_resumes_every_pending_delivery() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let mut host = Host::start(&site);
    erp.mode("503", None);
    let lines: Vec<String> = (0..20).map(|i| supplier(&format!("RS-{i}"), "SKU-100", &format!("DC-{i}"), 5.0)).collect();
    let (s, _) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], lines.join("\n").as_bytes());
    assert_eq!(s, 202);
    eventually(Duration::from_secs(20), "failed attempts", || (erp.received()["refused"].as_u64().unwrap_or(0) >= 20).then_some(()));
    assert!(host.terminate(), "SIGTERM drains and exits 0");
    assert!(host.log.lock().unwrap().contains("stopped"));
    erp.mode("ok", None);
    let _host = Host::start(&site);
    eventually(Duration::from_secs(30), "20 documents after restart", || (erp.unique() == 20).then_some(()));
}

#[test]
fn kill_9_under_load_loses_nothing_and_delivers_each_message_once() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let mut host = Host::start(&site);
    let url = host.url.clone();
    // 4 senders x 10 batches x 100 messages; the host dies part-way.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for b in 0..10 {
                    let lines: Vec<String> = (0..100)
                        .map(|i| supplier(&format!("C{t}-{b:02}-{i:03}"), &format!("SKU-{}", i % 7), &format!("DC-{t}"), 1.0 + i as f64))
                        .collect();
                    let (s, body) = send("POST", &format!("{url}/v1/tenants/acme/pipelines/release/messages:batch"), "application/x-ndjson", &[], lines.join("\n").as_bytes());
                    if s != 202 {
                        break; // the host is gone: this batch was never acknowledged
                    }
                    assert_eq!(body["accepted"], 100);
                    acked.extend((0..100).map(|i| format!("C{t}-{b:02}-{i:03}")));
                }
                acked
            })
        })
        .collect();
    eventually(Duration::from_secs(30), "some deliveries", || (erp.unique() > 200).then_some(()));
    host.kill9();
    let acked: HashSet<String> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    assert!(acked.len() >= 300, "only {} acknowledged before the kill", acked.len());
    let before = erp.unique();
    assert!(before < 4000, "the kill happened before everything was delivered");

    let host = Host::start(&site);
    let expected: HashSet<String> = acked.iter().map(|k| format!("acme/release/k:{k}/0/0")).collect();
    eventually(Duration::from_secs(120), "every acknowledged message at the ERP", || {
        let keys: HashSet<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        expected.is_subset(&keys).then_some(())
    });
    let received = erp.received();
    let keys: Vec<&str> = received["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    let unique: HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "the ERP holds each document once");
    // Nothing but acknowledged messages (and batches in flight at the kill, committed but unanswered) arrived.
    for k in &keys {
        assert!(k.starts_with("acme/release/k:C"), "{k}");
    }
    eprintln!(
        "kill -9: {} acknowledged, {before} at the ERP at the kill, {} at the end, {} duplicate deliveries absorbed by idempotency keys",
        acked.len(),
        keys.len(),
        received["duplicates"]
    );
    drop(host);
}

/// A pipeline whose stage traps on demand and whose sink the ERP refuses.
const HOSTILE: &str = crate::site_config!(r#"

[[pipeline]]
id = "hostile"
tenant = "acme"
max-attempts = 2
stages = [{ transform = "trap" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions", timeout-ms = "300" }
allowed-hosts = ["{ERP}"]
retry = { attempts = 3, initial = "50ms", max = "100ms" }
"#);

fn hostile_site(erp: &Erp) -> Site {
    let site = Site::new(HOSTILE, erp);
    site.share_plugin("trap", "trap");
    site
}

#[test]
fn a_trapping_stage_dead_letters_the_message_with_plugin_and_digest_and_the_next_one_flows() {
    let erp = Erp::start(&[]);
    let site = hostile_site(&erp);
    let host = Host::start(&site);
    let bad = supplier("T-1", "SKU-100", "DC-1", 5.0).replace("\"idempotency-key\"", "\"headers\": {\"trap\": \"yes\"}, \"idempotency-key\"");
    let bad_id = accepted_id(&host.ingest("acme", "hostile", "messages", "application/json", &[], bad.as_bytes()));
    let good_id = accepted_id(&host.ingest("acme", "hostile", "messages", "application/json", &[], supplier("T-2", "SKU-100", "DC-1", 5.0).as_bytes()));
    let t = host.settled(&bad_id);
    assert_eq!(t["input"]["state"], "dead");
    let dl = &t["dead-letters"][0];
    assert_eq!(dl["plugin"], "trap");
    assert_eq!(dl["place"], "stage 1 (trap)");
    let digest = syncline::runtime::digest(&std::fs::read(crate::support::plugin("trap")).unwrap());
    assert_eq!(dl["digest"], digest.as_str());
    assert!(dl["reason"].as_str().unwrap().contains("trapped"), "{dl}");
    // A trap is not retried (the same input traps again).
    assert_eq!(dl["attempts"].as_array().unwrap().len(), 1, "{dl}");
    let t = host.settled(&good_id);
    assert_eq!(t["outputs"][0]["state"], "delivered");
}

#[test]
fn downstream_refusals_and_hangs_end_in_dead_letters_with_every_attempt() {
    let erp = Erp::start(&[]);
    let site = hostile_site(&erp);
    let host = Host::start(&site);
    // 422: permanent at once.
    erp.mode("422", None);
    let id = accepted_id(&host.ingest("acme", "hostile", "messages", "application/json", &[], supplier("D-1", "SKU-100", "DC-1", 5.0).as_bytes()));
    let t = host.settled(&id);
    let out = &t["outputs"][0];
    assert_eq!(out["state"], "dead", "{t}");
    assert_eq!(t["dead-letters"][0]["place"], "sink erp");
    assert!(t["dead-letters"][0]["reason"].as_str().unwrap().contains("HTTP 422: unknown supplier"), "{t}");
    // A hanging ERP: every attempt times out, then the message is dead-lettered with all three errors.
    erp.mode("hang", None);
    let id = accepted_id(&host.ingest("acme", "hostile", "messages", "application/json", &[], supplier("D-2", "SKU-100", "DC-2", 5.0).as_bytes()));
    let t = host.settled(&id);
    let attempts = t["dead-letters"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 3, "{t}");
    assert!(attempts.iter().all(|a| a.as_str().unwrap().contains("timed out") || a.as_str().unwrap().contains("gave up")), "{attempts:?}");
    // Once the ERP recovers, new messages flow again.
    erp.mode("ok", None);
    let id = accepted_id(&host.ingest("acme", "hostile", "messages", "application/json", &[], supplier("D-3", "SKU-100", "DC-3", 5.0).as_bytes()));
    assert_eq!(host.settled(&id)["outputs"][0]["state"], "delivered");
}

const SMALL_STORE: &str = r#"
version = 1

[server]
listen = "127.0.0.1:0"

[store]
path = "data/syncline.db"
sync = "normal"
max-size = "MAXSIZE"

[plugins]
dir = "plugins"
cache-dir = "{CACHE}"

[[tenant]]
id = "acme"

[[pipeline]]
id = "release"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#;

#[test]
fn a_full_store_answers_503_keeps_every_accepted_message_and_recovers() {
    let erp = Erp::start(&[]);
    let site = Site::new(&SMALL_STORE.replace("MAXSIZE", "512KiB"), &erp);
    let mut host = Host::start(&site);
    let mut accepted = Vec::new();
    let mut refusal = None;
    for b in 0..400 {
        let lines: Vec<String> = (0..20).map(|i| supplier(&format!("F-{b:03}-{i:02}"), "SKU-100", &format!("DC-{i}"), 5.0)).collect();
        let (s, body) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], lines.join("\n").as_bytes());
        if s != 202 {
            refusal = Some((s, body));
            break;
        }
        accepted.extend((0..20).map(|i| format!("F-{b:03}-{i:02}")));
    }
    let (s, body) = refusal.expect("the store filled up");
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("store-unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("full"), "{body}");
    assert!(accepted.len() >= 20, "some messages fit before the store was full");
    // Reads still work while writes are refused.
    assert_eq!(get(&format!("{}/healthz", host.url)).0, 200);

    // Room again (here: a larger cap): every acknowledged message is processed and delivered.
    host.kill9();
    std::fs::write(site.config(), SMALL_STORE.replace("MAXSIZE", "64MiB").replace("{ERP}", &erp.authority).replace("{CACHE}", &crate::support::root().join("target/test-cache").display().to_string())).unwrap();
    let _host = Host::start(&site);
    let expected: HashSet<String> = accepted.iter().map(|k| format!("acme/release/k:{k}/0")).collect();
    eventually(Duration::from_secs(60), "every acknowledged message at the ERP", || {
        let keys: HashSet<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        expected.is_subset(&keys).then_some(())
    });
}

#[test]
fn finished_work_is_pruned_after_the_retention_while_exceptions_stay() {
    let erp = Erp::start(&[]);
    let site = Site::new(&CONFIG.replace("sync = \"normal\"", "sync = \"normal\"\nretention = \"1s\""), &erp);
    let host = Host::start(&site);
    let good = accepted_id(&host.ingest("acme", "release", "messages", "application/json", &[], supplier("P-1", "SKU-100", "DC-1", 5.0).as_bytes()));
    let bad = accepted_id(&host.ingest("acme", "release", "messages", "application/json", &[], supplier("P-2", "SKU-100", "DC-1", -1.0).as_bytes()));
    let output = host.settled(&good)["outputs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(host.settled(&bad)["input"]["state"], "exception");
    eventually(Duration::from_secs(30), "the delivered message to be pruned", || (host.trace(&good).0 == 404).then_some(()));
    assert_eq!(host.trace(&output).0, 404, "its delivery went with it");
    let t = host.trace(&bad).1;
    assert_eq!(t["exceptions"][0]["queue"], "master-data", "an exception stays until resolved: {t}");
    assert!(host.log.lock().unwrap().contains("pruned finished work past the retention"));
    let (_, ready) = get(&format!("{}/readyz", host.url));
    assert_eq!(ready["store"]["messages"], json!({"exception": 1}), "{ready}");
}

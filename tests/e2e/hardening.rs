//! The host against hostile plugins, stalled and shared downstreams and
//! colliding keys, end to end: a plugin blocked in a host call fails its
//! message at the limit and never holds a reload, another tenant or a
//! shutdown; traps and log floods are explained in the trace; a sink call
//! that fails as a whole is split instead of condemning its batch; keys
//! from two tenants never merge at the ERP; ingest reads media types and
//! schema versions strictly and drops clients that never send a request.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::within;

const HOSTILE: &str = crate::site_config!(r#"
[[tenant]]
id = "globex"

[[pipeline]]
id = "sleepy"
tenant = "acme"
stages = [{ transform = "hostile", limits = { timeout = "1s" } }]
routes = [{ to = "erp" }]

[[pipeline]]
id = "other"
tenant = "globex"
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#);

/// An execution status for `tenant` with the given idempotency key and headers.
fn status(key: &str, headers: Value) -> String {
    json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": key, "headers": headers,
           "body": {"order-ref": key, "kind": "purchase", "status": "confirmed", "quantity": 1, "uom": "EA"}})
    .to_string()
}

fn accepted(answer: (u16, Value)) -> String {
    assert_eq!(answer.0, 202, "{answer:?}");
    answer.1["id"].as_str().unwrap().to_string()
}

fn hostile_site(erp: &Erp, config: &str) -> Site {
    let site = Site::new(config, erp);
    site.share_plugin("hostile", "hostile");
    site
}

#[test]
fn a_plugin_blocked_in_a_host_call_fails_at_its_limit_and_never_holds_reloads_other_tenants_or_shutdown() {
    let erp = Erp::start(&[]);
    let site = hostile_site(&erp, HOSTILE);
    let mut host = Host::start(&site);

    // The message is dead-lettered at the limit, with the reason.
    let id = accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], status("S-1", json!({"do": "sleep"})).as_bytes()));
    let t = host.settled(&id);
    assert_eq!(t["input"]["state"], "dead", "{t}");
    let reason = t["dead-letters"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("ran past its wall-time limit of 1s and was stopped"), "{reason}");

    // More sleepers keep the pipeline's worker busy; meanwhile a config edit
    // rebuilds that very pipeline, the API reloads, another tenant's
    // messages flow, and none of it waits for the sleepers.
    for i in 0..4 {
        accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], status(&format!("S-{}", 10 + i), json!({"do": "sleep"})).as_bytes()));
    }
    site.rewrite(&HOSTILE.replace(r#"limits = { timeout = "1s" }"#, r#"limits = { timeout = "1500ms" }"#), &erp);
    let record = host.effective_reload(1);
    assert_eq!(record["outcome"], "applied", "{record}");
    assert_eq!(record["changes"], json!(["changed pipeline acme/sleepy"]), "{record}");
    let (s, answer) = within(Duration::from_secs(60), "POST /v1/reload", {
        let url = host.url.clone();
        move || send("POST", &format!("{url}/v1/reload"), "application/json", &[], b"")
    });
    assert_eq!(s, 200, "{answer}");
    let other = accepted(host.ingest("globex", "other", "messages", "application/json", &[], status("G-1", json!({})).as_bytes()));
    assert_eq!(host.settled(&other)["outputs"][0]["state"], "delivered");
    // A well-behaved message on the rebuilt pipeline runs after the sleepers.
    let fine = accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], status("S-20", json!({})).as_bytes()));
    let t = host.settled(&fine);
    assert_eq!(t["outputs"][0]["message"]["headers"]["seen-by"], "hostile", "{t}");

    // Shutdown ends the process while a plugin sleeps in a host call.
    accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], status("S-30", json!({"do": "sleep"})).as_bytes()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(host.terminate(), "SIGTERM ends the host with exit 0");
}

#[test]
fn traps_and_log_floods_are_explained_in_the_trace_and_metrics() {
    let erp = Erp::start(&[]);
    let site = hostile_site(&erp, HOSTILE);
    let host = Host::start(&site);
    let panic = accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], status("P-1", json!({"do": "panic", "item": "SKU-9"})).as_bytes()));
    let t = host.settled(&panic);
    let reason = t["dead-letters"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("trapped: unreachable code reached (a panic or an abort): panicked at "), "{reason}");
    assert!(reason.ends_with("the order book for SKU-9 is corrupt"), "{reason}");
    assert_eq!(t["input"]["processing"]["steps"][0]["outcome"]["error"].as_str(), Some(reason));

    let flood = status("L-1", json!({"do": "log-flood", "lines": "3000", "line-bytes": "2000"}));
    let t = host.settled(&accepted(host.ingest("acme", "sleepy", "messages", "application/json", &[], flood.as_bytes())));
    assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
    let dropped = t["input"]["processing"]["steps"][0]["logs-dropped"].as_u64().unwrap();
    assert!(dropped >= 2000, "{t}");
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains(&format!("syncline_plugin_log_lines_dropped_total{{plugin=\"hostile\"}} {dropped}")), "{metrics}");
    // The host log holds the admitted lines only, each cut to 4 KiB at most.
    let log = host.log.lock().unwrap().clone();
    let lines = log.lines().filter(|l| l.contains("xxxxxxxx")).count();
    assert!(lines as u64 <= 3000 - dropped, "{lines} plugin lines logged");
}

const SHARED_SINK: &str = crate::site_config!(r#"
[[tenant]]
id = "globex"

[[pipeline]]
id = "release"
tenant = "acme"
routes = [{ to = "erp" }]

[[pipeline]]
id = "release-b"
tenant = "globex"
routes = [{ to = "erp" }]

[[pipeline]]
id = "hung"
tenant = "acme"
routes = [{ to = "erp-hung" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
batch = 50
batch-bytes = "256MiB"
workers = 1
retry = { attempts = 4, initial = "50ms", max = "200ms" }
limits = { memory = "16MiB" }

[sink.erp-hung]
plugin = "http-sink"
config = { url = "http://{ERP}/hung", timeout-ms = "60000" }
allowed-hosts = ["{ERP}"]
retry = { attempts = 2, initial = "50ms", max = "100ms" }
limits = { timeout = "1s" }
"#);

/// The shared-sink site, taking requests of up to 16 MiB.
fn shared_sink() -> String {
    SHARED_SINK.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax-body = \"16MiB\"")
}

/// A forecast for item `item` carrying `pad` bytes in an extension.
fn forecast(key: &str, item: &str, pad: usize) -> String {
    json!({"schema-version": "1.0.0", "kind": "forecast", "idempotency-key": key,
           "body": {"item": item, "location": "DC-1", "bucket": {"start": "2026-12-07", "granularity": "week"}, "quantity": 5, "uom": "EA",
                    "forecast-version": "v1", "scenario": "base", "channel": "retail", "source-engine": "stat",
                    "extensions": {"notes": "n".repeat(pad)}}})
    .to_string()
}

#[test]
fn a_sink_call_failing_as_a_whole_is_split_so_no_innocent_message_is_dead_lettered() {
    let erp = Erp::start(&[]);
    let site = Site::new(&shared_sink(), &erp);
    let host = Host::start(&site);
    // Hold the sink paused so both tenants' messages queue up and go out
    // together in its first call on resume (a slow call as the hold would
    // race the processing of 9 MB under load).
    let (s, b) = send("POST", &format!("{}/v1/sinks/erp/pause", host.url), "application/json", &[], br#"{"reason": "gather a batch"}"#);
    assert_eq!(s, 200, "{b}");
    // Tenant acme: six legal 1.5 MB messages; tenant globex: twenty small ones.
    let big: Vec<String> = (0..6).map(|i| forecast(&format!("A-{i}"), &format!("SKU-A{i}"), 1_500_000)).collect();
    let (s, b) = host.ingest("acme", "release", "messages:batch", "application/x-ndjson", &[], big.join("\n").as_bytes());
    assert_eq!(s, 202, "{b}");
    let mut ids: Vec<String> = b["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let small: Vec<String> = (0..20).map(|i| forecast(&format!("G-{}", i + 1), &format!("SKU-G{i}"), 10)).collect();
    let (s, b) = host.ingest("globex", "release-b", "messages:batch", "application/x-ndjson", &[], small.join("\n").as_bytes());
    assert_eq!(s, 202, "{b}");
    ids.extend(b["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
    eventually(Duration::from_secs(60), "26 deliveries queued", || {
        let (_, b) = get(&format!("{}/v1/sinks", host.url));
        (b["sinks"].as_array().unwrap().iter().any(|s| s["name"] == "erp" && s["pending"] == 26)).then_some(())
    });
    let (s, b) = send("POST", &format!("{}/v1/sinks/erp/resume", host.url), "application/json", &[], b"{}");
    assert_eq!(s, 200, "{b}");

    for id in &ids {
        let t = host.settled(id);
        assert!(t["dead-letters"].as_array().unwrap().is_empty(), "{t}");
        let out = &t["outputs"][0];
        assert_eq!(out["state"], "delivered", "{t}");
        // A failed whole call is not counted against any one message.
        assert_eq!(out["attempts"].as_array().unwrap().len(), 1, "{t}");
    }
    assert_eq!(erp.unique(), 26);
    let log = host.log.lock().unwrap().clone();
    assert!(log.contains("sink call failed as a whole; splitting its batch"), "the mixed batch failed whole and was split");
    assert!(log.contains("exceeded its memory limit of 16 MiB"), "because of the memory limit");
}

#[test]
fn a_message_failing_alone_after_sending_is_dead_lettered_with_its_outcome_unknown() {
    let erp = Erp::start(&[]);
    let site = Site::new(&shared_sink(), &erp);
    let host = Host::start(&site);
    erp.mode("hang", None);
    let id = accepted(host.ingest("acme", "hung", "messages", "application/json", &[], forecast("H-1", "SKU-H", 0).as_bytes()));
    let t = host.settled(&id);
    let dl = &t["dead-letters"][0];
    assert_eq!(dl["outcome"], "unknown", "{t}");
    let reason = dl["reason"].as_str().unwrap();
    assert!(reason.contains("ran past its wall-time limit of 1s"), "{reason}");
    assert!(reason.contains("outcome unknown: the call had sent 1 request(s) before it failed"), "{reason}");
    assert_eq!(dl["attempts"].as_array().unwrap().len(), 2, "{dl}");
}

const KEYS: &str = crate::site_config!(r#"
[[tenant]]
id = "globex"

[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "tagger" }]
routes = [{ to = "erp" }]

[[pipeline]]
id = "direct"
tenant = "acme"
routes = [{ to = "erp" }]

[[pipeline]]
id = "inbound"
tenant = "globex"
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#);

#[test]
fn keys_from_two_tenants_and_host_derived_keys_never_merge_at_the_erp() {
    let erp = Erp::start(&[]);
    let site = Site::new(KEYS, &erp);
    site.share_plugin("tagger-v1", "tagger");
    let host = Host::start(&site);
    let a1 = accepted(host.ingest("acme", "orders", "messages", "application/json", &[], status("PO-30419", json!({})).as_bytes()));
    let a2 = accepted(host.ingest("acme", "direct", "messages", "application/json", &[], status("PO-30419/0", json!({})).as_bytes()));
    let b1 = accepted(host.ingest("globex", "inbound", "messages", "application/json", &[], status("PO-30419/0", json!({})).as_bytes()));
    let mut references = HashSet::new();
    for id in [&a1, &a2, &b1] {
        let t = host.settled(id);
        assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
        references.insert(t["outputs"][0]["reference"].as_str().unwrap().to_string());
    }
    assert_eq!(references.len(), 3, "three documents, three references");
    assert_eq!(erp.unique(), 3, "the ERP holds three documents");
    let keys: HashSet<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let expected: HashSet<String> =
        ["acme/orders/k:PO-30419/0", "acme/direct/k:PO-30419%2F0", "globex/inbound/k:PO-30419%2F0"].iter().map(|s| s.to_string()).collect();
    assert_eq!(keys, expected);
}

#[test]
fn ingest_reads_media_types_and_schema_versions_strictly_and_drops_silent_clients() {
    let erp = Erp::start(&[]);
    let config = HOSTILE.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nheader-read-timeout = \"1s\"\nbody-read-timeout = \"1s\"");
    let site = hostile_site(&erp, &config);
    let host = Host::start(&site);
    // Media types are case-insensitive: this is a canonical message, not a raw payload.
    let id = accepted(host.ingest("globex", "other", "messages", "Application/JSON; Charset=UTF-8", &[], status("M-1", json!({})).as_bytes()));
    let t = host.settled(&id);
    assert_eq!(t["input"]["message"]["kind"], "execution-status", "{t}");
    // Schema versions are plain MAJOR.MINOR.PATCH.
    for v in ["01.0.0", "1.00.0", "+1.0.0", "1.0"] {
        let msg = status("M-2", json!({})).replace("\"1.0.0\"", &format!("\"{v}\""));
        let (s, b) = host.ingest("globex", "other", "messages", "application/json", &[], msg.as_bytes());
        assert_eq!((s, b["error"]["code"].as_str()), (422, Some("unsupported-schema-version")), "{v}: {b}");
    }
    // A connection that never finishes its request head is closed.
    let addr = host.url.trim_start_matches("http://").to_string();
    let closed = |partial: &'static [u8]| {
        let addr = addr.clone();
        within(Duration::from_secs(30), "the server closing a silent connection", move || {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(partial).unwrap();
            let mut buf = [0u8; 1024];
            // The server closes the connection (end of stream or reset), maybe after a 408.
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
    };
    closed(b"");
    closed(b"POST /v1/tenants/globex/pipelines/other/messages HTTP/1.1\r\nHost: x\r\n");
    // A body that stops halfway is answered 408 and nothing is accepted.
    let answer = within(Duration::from_secs(30), "the server answering a trickled body", move || {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"POST /v1/tenants/globex/pipelines/other/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"kind\":").unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        text
    });
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-read-timeout"), "{answer}");
    let (_, ready) = get(&format!("{}/readyz", host.url));
    assert_eq!(ready["store"]["messages"], json!({"done": 1}), "only the one good message: {ready}");
}

const POISON: &str = crate::site_config!(r#"
[[pipeline]]
id = "allocate"
tenant = "acme"
ordering-key = ["body.order-ref"]
stages = [{ allocate = "poison-allocator", batch = { max = 50, window = "300ms" } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#);

#[test]
fn an_allocate_batch_failing_as_a_whole_is_split_so_only_the_poison_message_is_dead_lettered() {
    let erp = Erp::start(&[]);
    let site = Site::new(POISON, &erp);
    site.share_plugin("poison-allocator", "poison-allocator");
    let host = Host::start(&site);
    let lines: Vec<String> =
        (0..12).map(|i| status(&format!("A-{i}"), if i == 7 { json!({"poison": "yes"}) } else { json!({}) })).collect();
    let (s, b) = host.ingest("acme", "allocate", "messages:batch", "application/x-ndjson", &[], lines.join("\n").as_bytes());
    assert_eq!(s, 202, "{b}");
    let ids: Vec<String> = b["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let t = host.settled(id);
        if i == 7 {
            assert_eq!(t["input"]["state"], "dead", "{t}");
            let reason = t["dead-letters"][0]["reason"].as_str().unwrap();
            assert!(reason.contains(&format!("message {id} poisons the batch")), "{reason}");
        } else {
            assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
            assert!(t["dead-letters"].as_array().unwrap().is_empty(), "{t}");
        }
    }
    assert_eq!(erp.unique(), 11);
    assert!(host.log.lock().unwrap().contains("allocate call failed as a whole; splitting its batch"));
}

const FLAKY: &str = crate::site_config!(r#"
[[pipeline]]
id = "flaky"
tenant = "acme"
ordering-key = ["body.order-ref"]
max-attempts = 4
stages = [{ transform = "hostile" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#);

/// An execution status whose order ref is `order` (its ordering key).
fn order_status(key: &str, order: &str, headers: Value) -> String {
    status(key, headers).replace(&format!("\"order-ref\":\"{key}\""), &format!("\"order-ref\":\"{order}\""))
}

#[test]
fn a_retrying_message_waits_in_the_store_without_holding_other_keys_or_its_own_order() {
    let erp = Erp::start(&[]);
    let site = Site::new(FLAKY, &erp);
    site.share_plugin("hostile", "hostile");
    let host = Host::start(&site);
    // Key K-1: its first message fails three times, its second must wait for it.
    let first = accepted(host.ingest("acme", "flaky", "messages", "application/json", &[], order_status("F-1", "K-1", json!({"do": "flaky", "fails": "3"})).as_bytes()));
    let second = accepted(host.ingest("acme", "flaky", "messages", "application/json", &[], order_status("F-2", "K-1", json!({})).as_bytes()));
    // Other keys flow while K-1 waits: all delivered before K-1's first is.
    let others: Vec<String> = (0..10)
        .map(|i| accepted(host.ingest("acme", "flaky", "messages", "application/json", &[], order_status(&format!("O-{i}"), &format!("K-O{i}"), json!({})).as_bytes())))
        .collect();
    for id in &others {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    let (_, t) = host.trace(&first);
    assert_eq!(t["input"]["state"], "accepted", "still waiting for its retries: {t}");
    let t = host.settled(&first);
    assert_eq!(t["outputs"][0]["message"]["headers"]["attempts"], "4", "{t}");
    assert_eq!(t["input"]["attempts"], 3, "{t}");
    assert_eq!(t["input"]["retry-errors"].as_array().unwrap().len(), 3, "{t}");
    host.settled(&second);
    // Order within K-1 held at the ERP; the others did not wait for it.
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let at = |k: &str| keys.iter().position(|x| x == &format!("acme/flaky/k:{k}/0")).unwrap();
    assert!(at("F-1") < at("F-2"), "{keys:?}");
    assert!(at("O-9") < at("F-1"), "{keys:?}");
    // Spent attempts end in a dead letter with every attempt's error.
    let dead = accepted(host.ingest("acme", "flaky", "messages", "application/json", &[], order_status("F-3", "K-3", json!({"do": "flaky", "fails": "9"})).as_bytes()));
    let t = host.settled(&dead);
    assert_eq!(t["input"]["state"], "dead", "{t}");
    assert_eq!(t["dead-letters"][0]["attempts"].as_array().unwrap().len(), 4, "{t}");
}

#[test]
fn plugin_state_survives_a_kill_between_retries() {
    let erp = Erp::start(&[]);
    let site = Site::new(FLAKY, &erp);
    site.share_plugin("hostile", "hostile");
    let mut host = Host::start(&site);
    // The plugin counts its attempts in its state; the store counts the failed ones.
    let id = accepted(host.ingest("acme", "flaky", "messages", "application/json", &[], order_status("S-1", "K-S", json!({"do": "flaky", "fails": "3"})).as_bytes()));
    eventually(Duration::from_secs(30), "the first failed attempt", || (host.trace(&id).1["input"]["attempts"].as_i64() >= Some(1)).then_some(()));
    host.kill9();
    let host = Host::start(&site);
    let t = host.settled(&id);
    // Had the state been lost, the plugin would have counted from 1 again:
    // four or more failed attempts in the store, and a dead letter.
    assert_eq!(t["input"]["attempts"], 3, "{t}");
    assert_eq!(t["outputs"][0]["message"]["headers"]["attempts"], "4", "{t}");
    assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
}

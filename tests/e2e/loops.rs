//! The closed loop against a running host: each purchase requisition a
//! pipeline with `expect-status` delivers waits for an execution status;
//! one answered in time (by the ERP's order reference) closes quietly, one
//! that gets no answer parks an exception in the business queue and is
//! audited, and its late status (matched by correlation) resolves it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.open-loops]
owner = "Supply planning"

[[pipeline]]
id = "recs"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", batch = { max = 10, window = "10ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]
expect-status = { within = "2s", exception-queue = "open-loops" }

[[pipeline]]
id = "statuses"
tenant = "acme"
routes = [{ to = "planning" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]

[sink.planning]
plugin = "http-sink"
config = { url = "http://{ERP}/statuses" }
allowed-hosts = ["{ERP}"]
"#
);

fn status(key: &str, order_ref: &str) -> String {
    json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": key,
           "body": {"order-ref": order_ref, "kind": "purchase", "status": "confirmed", "quantity": 120, "uom": "EA"}})
    .to_string()
}

fn loops(host: &Host, state: &str) -> Vec<Value> {
    let (status, body) = get(&format!("{}/v1/loops?state={state}", host.url));
    assert_eq!(status, 200, "{body}");
    body["loops"].as_array().unwrap().clone()
}

#[test]
fn an_unanswered_requisition_parks_an_exception_and_its_late_status_resolves_it() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let post = |pipeline: &str, headers: &[(&str, &str)], body: &str| {
        let (status, answer) = host.ingest("acme", pipeline, "messages", "application/json", headers, body.as_bytes());
        assert_eq!(status, 202, "{answer}");
        host.settled(answer["id"].as_str().unwrap())
    };

    // Two recommendations become requisitions at the ERP (ERP-1, ERP-2): two open loops.
    let first = post("recs", &[("x-correlation-id", "flow-R-1")], &recommendation("R-1").to_string());
    assert_eq!(first["outputs"][0]["message"]["kind"], "purchase-requisition", "{first}");
    post("recs", &[("x-correlation-id", "flow-R-2")], &recommendation("R-2").to_string());
    let open = eventually(Duration::from_secs(10), "two open loops", || Some(loops(&host, "open")).filter(|l| l.len() == 2));
    let by_ref = |r: &str| open.iter().find(|l| l["reference"] == r).cloned().unwrap_or_else(|| panic!("no loop for {r}: {open:?}"));
    assert_eq!((by_ref("ERP-1")["correlation"].as_str(), by_ref("ERP-2")["correlation"].as_str()), (Some("flow-R-1"), Some("flow-R-2")));

    // The ERP confirms ERP-1 in time, by its order reference; a status about another order closes nothing.
    let answered = post("statuses", &[], &status("S-1", "ERP-1"));
    post("statuses", &[], &status("S-9", "ERP-99"));
    let closed = loops(&host, "closed");
    assert_eq!((closed.len(), closed[0]["reference"].as_str(), closed[0]["closed-by"].as_str()), (1, Some("ERP-1"), answered["id"].as_str()), "{closed:?}");

    // ERP-2 gets no answer in 2 s: an exception in the business queue, audited.
    let overdue = eventually(Duration::from_secs(20), "the overdue loop", || loops(&host, "overdue").pop());
    let exception_id = overdue["exception-id"].as_i64().expect("an exception");
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains("syncline_loops{tenant=\"acme\",state=\"overdue\"} 1"), "{metrics}");
    let (_, exception) = get(&format!("{}/v1/exceptions/{exception_id}", host.url));
    assert_eq!((exception["queue"].as_str(), exception["owner"].as_str(), exception["state"].as_str()), (Some("open-loops"), Some("Supply planning"), Some("open")), "{exception}");
    assert_eq!(exception["detail"]["code"], "no-execution-status", "{exception}");
    assert!(exception["detail"]["text"].as_str().unwrap().contains("reference ERP-2"), "{exception}");
    assert_eq!(exception["message"]["kind"], "purchase-requisition", "the delivered order is kept with it: {exception}");

    // Its status comes late, matched by correlation: the loop closes and the exception is resolved.
    post("statuses", &[("x-correlation-id", "flow-R-2")], &status("S-2", "PO-77"));
    let resolved = eventually(Duration::from_secs(20), "the late status resolving the exception", || {
        let (_, e) = get(&format!("{}/v1/exceptions/{exception_id}", host.url));
        (e["state"] == "resolved").then_some(e)
    });
    assert!(resolved["note"].as_str().unwrap().contains("after its due time"), "{resolved}");
    assert!(loops(&host, "open").is_empty() && loops(&host, "overdue").is_empty());
    assert_eq!(loops(&host, "closed").len(), 2);
    let (_, audit) = get(&format!("{}/v1/audit?limit=1000", host.url));
    let kinds: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["event"]["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"loop-overdue") && kinds.contains(&"exception-settled"), "{kinds:?}");
    assert_eq!(get(&format!("{}/v1/loops?state=lost", host.url)).0, 400);
}

#[test]
fn a_lead_time_window_gives_each_order_its_own_due_time() {
    let config = CONFIG.replace(r#"expect-status = { within = "2s", exception-queue = "open-loops" }"#, r#"expect-status = { within = "lead-time", exception-queue = "open-loops" }"#);
    assert!(config.contains("lead-time"));
    let erp = Erp::start(&[]);
    let site = Site::new(&config, &erp);
    let host = Host::start(&site);
    // SUP-7 supplies in 14 days; the transfer from DC-CENTRAL takes 3.
    let mut transfer = recommendation("R-T");
    transfer["body"]["source"] = json!({"location": "DC-CENTRAL"});
    for body in [recommendation("R-P"), transfer] {
        let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &[], body.to_string().as_bytes());
        assert_eq!(status, 202, "{answer}");
    }
    let open = eventually(Duration::from_secs(10), "two open loops", || Some(loops(&host, "open")).filter(|l| l.len() == 2));
    let window_days = |kind: &str| {
        let l = open.iter().find(|l| l["kind"] == kind).unwrap_or_else(|| panic!("no {kind} loop: {open:?}"));
        (l["due-at"].as_i64().unwrap() - l["delivered-at"].as_i64().unwrap()) / 86_400_000
    };
    assert_eq!(window_days("purchase-requisition"), 14, "{open:?}");
    assert_eq!(window_days("transfer-proposal"), 3, "{open:?}");
}

//! Regional allocation when supply is short: the central DC's inventory
//! position says it has 100 of an item; three stores want 140. The
//! priority-1 store gets its 50, the two priority-2 stores share the rest
//! 60:30 (33 and 17), and the transfers reach the ERP with those
//! quantities; each cut is audited by the plugin with its reason. The next
//! batch draws on what is left (none): its recommendation is deferred as a
//! `no-supply` exception — until a new position arrives.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.allocation]
owner = "Supply planning"

[[pipeline]]
id = "transfers"
tenant = "acme"
ordering-key = ["body.item"]
stages = [
  { allocate = "regional-allocator", batch = { max = 50, window = "300ms" } },
  { allocate = "moq-leadtime", tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } },
]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/transfers" }
allowed-hosts = ["{ERP}"]
"#
);

fn position(available: f64) -> String {
    json!({"schema-version": "1.0.0", "kind": "inventory-position", "idempotency-key": format!("P-{available}"),
           "body": {"item": "SKU-400", "location": "DC-CENTRAL", "on-hand": available, "allocated": 0, "in-transit": 0,
                    "available": available, "uom": "EA", "as-of": "2026-12-01T06:00:00Z"}})
    .to_string()
}

fn transfer(id: &str, store: &str, quantity: f64, priority: u8) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": id,
           "body": {"id": id, "item": "SKU-400", "location": store, "quantity": quantity, "uom": "EA", "need-by": "2026-12-21",
                    "source": {"location": "DC-CENTRAL"}, "reason": "forecast-uplift", "priority": priority}})
    .to_string()
}

fn batch(host: &Host, lines: &[String]) -> Vec<Value> {
    let (status, answer) = host.ingest("acme", "transfers", "messages:batch", "application/x-ndjson", &[], lines.join("\n").as_bytes());
    assert_eq!(status, 202, "{answer}");
    let ids: Vec<String> = answer["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.iter().map(|id| host.settled(id)).collect()
}

/// The quantity of the transfer proposal a trace's message became.
fn proposed(trace: &Value) -> Option<f64> {
    trace["outputs"].as_array()?.iter().find(|o| o["message"]["kind"] == "transfer-proposal").and_then(|o| o["message"]["body"]["quantity"].as_f64())
}

#[test]
fn short_supply_is_shared_by_priority_then_demand_and_what_is_left_carries_over() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let first = batch(&host, &[position(100.0), transfer("T-1", "STORE-1", 50.0, 1), transfer("T-2", "STORE-2", 60.0, 2), transfer("T-3", "STORE-3", 30.0, 2)]);
    assert_eq!([proposed(&first[1]), proposed(&first[2]), proposed(&first[3])], [Some(50.0), Some(33.0), Some(17.0)], "{first:#?}");
    eventually(Duration::from_secs(20), "three transfers at the ERP", || (erp.unique() >= 3).then_some(()));

    // The two cuts are audited by the plugin, with their reasons.
    let (_, audit) = get(&format!("{}/v1/audit?kind=decision", host.url));
    let decisions: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["event"]["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions.len(), 2, "{audit}");
    assert!(decisions.iter().any(|d| d.starts_with("cut: T-2 gets 33 of 60 EA (priority 2): DC-CENTRAL has 100 EA")), "{decisions:?}");
    assert!(audit["events"].as_array().unwrap().iter().all(|e| e["actor"] == "plugin:regional-allocator"), "{audit}");

    // Nothing is left at DC-CENTRAL: the next recommendation is deferred...
    let second = batch(&host, &[transfer("T-4", "STORE-4", 10.0, 1)]);
    assert_eq!(proposed(&second[0]), None, "{:#?}", second[0]);
    let exception = &second[0]["exceptions"][0];
    assert_eq!((exception["queue"].as_str(), exception["detail"]["code"].as_str()), (Some("allocation"), Some("no-supply")), "{}", second[0]);

    // ...until a new count says there is stock again.
    let third = batch(&host, &[position(8.0), transfer("T-5", "STORE-4", 10.0, 1)]);
    assert_eq!(proposed(&third[1]), Some(8.0), "{:#?}", third[1]);
}

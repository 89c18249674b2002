//! Allocate stages and their batches: every output is attributed to the
//! input it came from — a derived output by its causation id, a message the
//! plugin passes through unchanged by its own id — so each input's trace
//! shows its own outputs and its key lineage is its own.

use serde_json::json;

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "recs"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", batch = { max = 10, window = "300ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

#[test]
fn a_message_an_allocator_passes_through_stays_its_own_inputs_output() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    // One batch: a recommendation (allocated into a requisition) and a status moq-leadtime passes through.
    let status = json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": "S-1",
                        "body": {"order-ref": "PO-1", "kind": "purchase", "status": "confirmed", "quantity": 120, "uom": "EA"}});
    let body = [recommendation("R-1").to_string(), status.to_string()].join("\n");
    let (code, answer) = host.ingest("acme", "recs", "messages:batch", "application/x-ndjson", &[], body.as_bytes());
    assert_eq!(code, 202, "{answer}");
    let ids: Vec<String> = answer["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let (rec, st) = (host.settled(&ids[0]), host.settled(&ids[1]));
    let steps = &rec["input"]["processing"]["steps"];
    assert_eq!(steps[0]["outcome"]["batch"], 2, "both went through one allocate call: {rec}");
    let kinds = |t: &serde_json::Value| t["outputs"].as_array().unwrap().iter().map(|o| o["message"]["kind"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(kinds(&rec), ["purchase-requisition"], "{rec}");
    assert_eq!(kinds(&st), ["execution-status"], "the status's output is its own: {st}");
    assert_eq!(st["outputs"][0]["message"]["causation-id"].as_str(), Some(ids[1].as_str()), "{st}");
    // Its key descends from its own (`S-1`), not from the recommendation's:
    // the same on a replay whatever batch it lands in.
    let key = st["outputs"][0]["message"]["idempotency-key"].as_str().unwrap();
    assert!(key.contains("S-1") && !key.contains("R-1"), "{key}");
}

//! Several planning engines reconciled: the retail and the B2B engine both
//! recommend for one item and location within the reconciliation window;
//! `channel-reconciler` lets retail's through (allocated and sent to the
//! ERP) and defers B2B's to the reconciliation queue; both decisions, with
//! their reasons, are in the audit log (by the plugin) and in the traces.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.reconciliation]
owner = "Demand planning"

[[pipeline]]
id = "recs"
tenant = "acme"
stages = [
  { allocate = "channel-reconciler", batch = { max = 50, window = "300ms" }, config = { channels = ["retail", "b2b"] } },
  { allocate = "moq-leadtime", tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } },
]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

fn from(engine: &str, id: &str, location: &str) -> String {
    let mut r = recommendation(id);
    r["source-system"] = json!(engine);
    r["body"]["location"] = json!(location);
    r.to_string()
}

#[test]
fn retail_outranks_b2b_and_both_decisions_are_audited_with_their_reasons() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let body = [from("b2b", "B-1", "DC-1"), from("retail", "R-1", "DC-1"), from("b2b", "U-1", "DC-2")].join("\n");
    let (status, answer) = host.ingest("acme", "recs", "messages:batch", "application/x-ndjson", &[], body.as_bytes());
    assert_eq!(status, 202, "{answer}");
    let ids: Vec<String> = answer["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let traces: Vec<Value> = ids.iter().map(|id| host.settled(id)).collect();

    // Retail's and the uncontested one reach the ERP as requisitions; B2B's does not.
    eventually(Duration::from_secs(20), "two requisitions at the ERP", || (erp.unique() == 2).then_some(()));
    let kinds = |t: &Value| t["outputs"].as_array().unwrap().iter().map(|o| o["message"]["kind"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(kinds(&traces[1]), ["purchase-requisition"], "{}", traces[1]);
    assert_eq!(kinds(&traces[2]), ["purchase-requisition"], "{}", traces[2]);
    assert!(kinds(&traces[0]).is_empty(), "{}", traces[0]);
    let accepted = traces[1]["outputs"][0]["message"]["headers"]["decision"].as_str().unwrap_or_default().to_string();
    assert!(accepted.starts_with("accepted: R-1 from retail for SKU-100 at DC-1 outranks B-1 from b2b"), "the trace shows the decision: {accepted}");

    // B2B's is deferred to the reconciliation queue, with the reason.
    let deferred = &traces[0]["exceptions"][0];
    assert_eq!((deferred["queue"].as_str(), deferred["detail"]["code"].as_str()), (Some("reconciliation"), Some("deferred-by-channel-priority")), "{}", traces[0]);
    assert!(deferred["detail"]["text"].as_str().unwrap().contains("R-1 from retail ranks first (retail > b2b)"), "{deferred}");

    // The audit log has both decisions, by the plugin, for the tenant; the
    // requisition inheriting the header is not a second decision.
    let (_, audit) = get(&format!("{}/v1/audit?kind=decision", host.url));
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    for e in events {
        assert_eq!((e["actor"].as_str(), e["tenant"].as_str(), e["event"]["pipeline"].as_str()), (Some("plugin:channel-reconciler"), Some("acme"), Some("recs")), "{e}");
    }
    let about = |id: &str| events.iter().find(|e| e["event"]["message_id"] == id).unwrap_or_else(|| panic!("no decision about {id}: {audit}"))["event"]["decision"].as_str().unwrap().to_string();
    assert!(about(&ids[1]).starts_with("accepted: R-1"), "{audit}");
    assert!(about(&ids[0]).starts_with("deferred: B-1"), "{audit}");
}

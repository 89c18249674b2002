//! A flow followed end to end by its correlation id: a recommendation sent
//! with a W3C `traceparent`, the requisition it became at the ERP (which
//! receives the id as `X-Correlation-Id`), the execution status that came
//! back with `X-Correlation-Id` — one timeline from `GET /v1/correlations/{id}`
//! and `syncline trace --correlation`; bad correlation headers are refused.

use serde_json::Value;

use crate::harness::*;
use crate::support::syncline;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "recs"
tenant = "acme"
routes = [{ to = "erp" }]

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

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn status(key: &str) -> String {
    serde_json::json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": key,
           "body": {"order-ref": key, "kind": "purchase", "status": "confirmed", "quantity": 5, "uom": "EA"}})
    .to_string()
}

#[test]
fn a_flow_is_one_timeline_from_the_release_through_the_erp_to_the_status_that_came_back() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let post = |pipeline: &str, headers: &[(&str, &str)], body: &str| {
        let (status, answer) = host.ingest("acme", pipeline, "messages", "application/json", headers, body.as_bytes());
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().unwrap().to_string()
    };

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let released = post("recs", &[("traceparent", &traceparent)], &recommendation("R-1").to_string());
    let unrelated = post("recs", &[], &recommendation("R-2").to_string());
    host.settled(&released);
    host.settled(&unrelated);
    let returned = post("statuses", &[("x-correlation-id", TRACE_ID)], &status("PO-R-1"));
    host.settled(&returned);
    // The ERP and the planning side got the id with each document.
    let received = erp.received();
    let correlations: Vec<String> = received["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let key = k.as_str().unwrap().replace('%', "%25").replace('/', "%2F");
            get(&format!("{}/_admin/record/{key}", erp.url)).1["record"]["correlation-id"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(correlations.iter().filter(|c| *c == TRACE_ID).count(), 2, "{correlations:?}");

    // One timeline: the release, its delivery, the status, its delivery.
    let (status, flow) = get(&format!("{}/v1/correlations/{TRACE_ID}", host.url));
    assert_eq!(status, 200, "{flow}");
    let ids: Vec<&str> = flow["messages"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [released.as_str(), returned.as_str()], "the unrelated message is not part of it");
    let events: Vec<(String, String)> = flow["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["event"].as_str().unwrap().to_string()))
        .collect();
    let order = ["accepted", "delivered", "accepted", "delivered"];
    let kinds = ["replenishment-recommendation", "replenishment-recommendation", "execution-status", "execution-status"];
    let milestones: Vec<(String, String)> = events.iter().filter(|(_, e)| e == "accepted" || e == "delivered").cloned().collect();
    assert_eq!(milestones, kinds.iter().zip(order).map(|(k, e)| (k.to_string(), e.to_string())).collect::<Vec<_>>(), "{events:?}");
    let times: Vec<i64> = flow["timeline"].as_array().unwrap().iter().map(|e| e["at"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // A message's own id is its correlation when none was sent.
    let (status, alone) = get(&format!("{}/v1/correlations/{unrelated}", host.url));
    assert_eq!((status, alone["messages"].as_array().map(Vec::len)), (200, Some(1)), "{alone}");
    let (status, none) = get(&format!("{}/v1/correlations/no-such-flow", host.url));
    assert_eq!((status, none["error"]["code"].as_str()), (404, Some("unknown-correlation")));

    // The CLI prints the same timeline.
    let out = syncline().args(["trace", "--correlation", TRACE_ID, "--server", &host.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.lines().count() == events.len(), "{text}");
    assert!(text.contains("(execution-status)  delivered  to planning"), "{text}");

    // The envelope's own correlation wins over a header; bad headers are refused.
    let mut own = recommendation("R-3");
    own["correlation-id"] = "from-the-envelope".into();
    let id = post("recs", &[("x-correlation-id", "from-the-header")], &own.to_string());
    let t: Value = host.settled(&id);
    assert_eq!(t["input"]["message"]["correlation-id"], "from-the-envelope", "{t}");
    for (name, value) in [("traceparent", "not-a-traceparent"), ("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"), ("x-correlation-id", &"c".repeat(200))] {
        let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &[(name, value)], recommendation("R-9").to_string().as_bytes());
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad-correlation-id")), "{name}: {answer}");
    }
}

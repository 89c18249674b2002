//! ERP-specific formatting end to end: recommendations are allocated into
//! a purchase requisition and a transfer proposal; `json-formatter` writes
//! the requisition as the ERP's purchase order (its own nesting, date
//! formats, unit codes) and `csv-formatter` the transfer as the WMS's CSV
//! import; routes by the canonical kind send each to its system, and
//! `http-sink` sends the documents as they are (their content type, the
//! same idempotency key on a retry). A formatted order is still an order to
//! the closed loop (its window is its own lead time). A message the ERP has
//! no unit code for is dead-lettered with the reason instead of being sent
//! half-formatted.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.open-orders]
owner = "Buyers"

[[pipeline]]
id = "recs"
tenant = "acme"
stages = [
  { allocate = "moq-leadtime", batch = { max = 10, window = "10ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } },
  { transform = "json-formatter", config = { kinds = ["purchase-requisition"], constants = { "/header/doc-type" = "NB" }, fields = {
      "/external-ref" = "idempotency-key", "/header/supplier" = "body.supplier", "/header/plant" = "body.location",
      "/header/order-date" = { from = "body.order-by", date = "YYYYMMDD" }, "/lines/0/material" = "body.item",
      "/lines/0/qty" = { from = "body.quantity", type = "integer" }, "/lines/0/unit" = { from = "body.uom", codes = { EA = "PCE" } },
      "/lines/0/delivery-date" = { from = "body.need-by", date = "DD.MM.YYYY" } } } },
  { transform = "csv-formatter", config = { kinds = ["transfer-proposal"], delimiter = ";", columns = [
      { name = "MATERIAL", from = "body.item" }, { name = "FROM", from = "body.from-location" }, { name = "TO", from = "body.to-location" },
      { name = "QTY", from = "body.quantity", type = "integer" }, { name = "SHIP_DATE", from = "body.ship-by", date = "DD.MM.YYYY" } ] } },
]
routes = [
  { when = { "headers.canonical-kind" = ["purchase-requisition"] }, to = "erp" },
  { when = { "headers.canonical-kind" = ["transfer-proposal"] }, to = "wms" },
]
expect-status = { within = "lead-time", exception-queue = "open-orders" }

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/orders" }
allowed-hosts = ["{ERP}"]

[sink.wms]
plugin = "http-sink"
config = { url = "http://{ERP}/transfers" }
allowed-hosts = ["{ERP}"]
"#
);

#[test]
fn each_system_receives_its_own_format_and_an_unformattable_order_is_dead_lettered() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let mut transfer = recommendation("R-T");
    transfer["body"]["source"] = json!({"location": "DC-CENTRAL"});
    for body in [recommendation("R-P"), transfer] {
        let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &[], body.to_string().as_bytes());
        assert_eq!(status, 202, "{answer}");
    }
    eventually(Duration::from_secs(20), "both documents received", || (erp.unique() == 2).then_some(()));
    let keys: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let docs = erp.documents();

    let order = docs.iter().find(|d| d["path"] == "/orders").expect("the purchase order");
    let po = &order["body"];
    assert_eq!(po["header"], json!({"doc-type": "NB", "supplier": "SUP-7", "plant": "DC-1", "order-date": "20261207"}), "{po}");
    assert_eq!(po["lines"][0]["unit"], "PCE", "{po}");
    assert_eq!(po["lines"][0]["delivery-date"], "21.12.2026", "{po}");
    assert!(po["lines"][0]["qty"].is_i64(), "{po}");
    // The document names the requisition's key; the ERP dedupes on the
    // formatted message's, derived from it (both the same on every replay).
    let reference = po["external-ref"].as_str().unwrap();
    assert!(keys.iter().any(|k| k.starts_with(&format!("{reference}/"))), "{reference} vs {keys:?}");
    assert!(po.get("kind").is_none() && po.get("schema-version").is_none(), "no canonical envelope leaves the host: {po}");

    let import = docs.iter().find(|d| d["path"] == "/transfers").expect("the CSV import");
    assert_eq!(import["body"]["content-type"], "text/csv", "{import}");
    let csv = import["body"]["text"].as_str().unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "MATERIAL;FROM;TO;QTY;SHIP_DATE", "{csv:?}");
    assert!(lines[1].starts_with("SKU-100;DC-CENTRAL;DC-1;"), "{csv:?}");

    // Both formatted orders wait for their status within their own lead time (14 and 3 days).
    let (_, loops) = get(&format!("{}/v1/loops?state=open", host.url));
    let mut days: Vec<i64> = loops["loops"].as_array().unwrap().iter().map(|l| (l["due-at"].as_i64().unwrap() - l["delivered-at"].as_i64().unwrap()) / 86_400_000).collect();
    days.sort();
    assert_eq!(days, [3, 14], "{loops}");

    // A requisition in a unit the ERP has no code for: dead-lettered with the reason.
    let mut kilos = recommendation("R-KG");
    kilos["body"]["uom"] = json!("KG");
    let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &[], kilos.to_string().as_bytes());
    assert_eq!(status, 202, "{answer}");
    let trace = host.settled(answer["id"].as_str().unwrap());
    let dead = trace["dead-letters"].as_array().and_then(|d| d.first().cloned()).unwrap_or_else(|| panic!("a dead letter: {trace}"));
    assert!(dead["reason"].as_str().unwrap().contains("`KG` is not in its code table"), "{dead}");
    assert_eq!(erp.unique(), 2, "nothing half-formatted was sent");
}

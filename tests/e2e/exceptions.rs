//! Exception queues worked by the business through `syncline exceptions`
//! and the HTTP API against a running host: listed with owner and age,
//! reported once past the queue's SLA, retried after the master data is
//! fixed (delivered once), resolved with a comment, discarded with a
//! reason; each settlement audited; open counts and age as metrics.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::support::syncline;

fn config(uoms: &str) -> String {
    crate::site_config!(
        r#"
[exception-queue.master-data]
owner = "Master data team"
contact = "md-team@acme.example"
sla = "1s"

[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ validate = "canonical-validator", config = { uoms = "{UOMS}" }, on-violation = "exception:master-data" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
    )
    .replace("{UOMS}", uoms)
}

fn order(id: &str, uom: &str) -> String {
    let mut m = recommendation(id);
    m["body"]["uom"] = uom.into();
    m.to_string()
}

fn ingest(host: &Host, id: &str, uom: &str) -> String {
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(id, uom).as_bytes());
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn cli(host: &Host, args: &[&str]) -> Output {
    syncline().arg("exceptions").args(args).args(["--server", &host.url]).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn open_exceptions(host: &Host) -> Vec<Value> {
    let (status, body) = get(&format!("{}/v1/exceptions", host.url));
    assert_eq!(status, 200, "{body}");
    body["exceptions"].as_array().unwrap().clone()
}

fn id_of(host: &Host, source: &str) -> String {
    open_exceptions(host).iter().find(|e| e["source-id"] == source).unwrap()["id"].as_i64().unwrap().to_string()
}

#[test]
fn exceptions_are_worked_by_their_owners_retried_after_a_fix_resolved_and_discarded() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config("EA,CS"), &erp);
    let host = Host::start(&site);

    let boxes = ingest(&host, "X-1", "BOX");
    let pallets = ingest(&host, "X-2", "PAL");
    let drums = ingest(&host, "X-3", "DRUM");
    let fine = ingest(&host, "X-4", "EA");
    for id in [&boxes, &pallets, &drums] {
        assert_eq!(host.settled(id)["input"]["state"], "exception");
    }
    assert_eq!(host.settled(&fine)["outputs"][0]["state"], "delivered");

    // Listed with owner and what is wrong; reported once past the 1 s SLA.
    let listed = stdout(&cli(&host, &["list"]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("master-data (Master data team)  acme/orders") && listed.contains("BOX"), "{listed}");
    let overdue = eventually(Duration::from_secs(20), "three overdue exceptions", || {
        Some(open_exceptions(&host)).filter(|rows| rows.iter().all(|e| e["overdue-at"].is_i64()))
    });
    assert_eq!((overdue[0]["owner"].as_str(), overdue[0]["sla-ms"].as_i64()), (Some("Master data team"), Some(1000)));
    assert!(stdout(&cli(&host, &["list"])).contains("OVERDUE"));
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains("syncline_exceptions_open{queue=\"master-data\"} 3"), "{metrics}");
    assert!(metrics.contains("syncline_exception_oldest_age_seconds{queue=\"master-data\"} "), "{metrics}");

    // The master data is fixed (BOX is a known unit now): a retry delivers it once.
    site.rewrite(&config("EA,CS,BOX"), &erp);
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    let box_exception = id_of(&host, &boxes);
    assert_eq!(stdout(&cli(&host, &["retry", &box_exception, "--comment", "BOX added to the units"])).trim(), format!("exception {box_exception} retried"));
    let t = host.settled(&boxes);
    assert_eq!((t["input"]["state"].as_str(), t["outputs"][0]["state"].as_str()), (Some("done"), Some("delivered")), "{t}");
    assert_eq!(erp.unique(), 2);
    let again = cli(&host, &["retry", &box_exception]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already retried"), "{again:?}");

    // Resolved outside (comment required), discarded (reason required).
    let pallet_exception = id_of(&host, &pallets);
    let (status, _) = send("POST", &format!("{}/v1/exceptions/{pallet_exception}/resolve", host.url), "application/json", &[], b"{}");
    assert_eq!(status, 400);
    stdout(&cli(&host, &["resolve", &pallet_exception, "--comment", "entered by hand in the ERP"]));
    let drum_exception = id_of(&host, &drums);
    assert_eq!(cli(&host, &["discard", &drum_exception]).status.code(), Some(2), "clap wants --reason");
    stdout(&cli(&host, &["discard", &drum_exception, "--reason", "test order"]));
    assert!(open_exceptions(&host).is_empty());
    let (_, all) = get(&format!("{}/v1/exceptions?state=all", host.url));
    let states: Vec<&str> = all["exceptions"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["retried", "resolved", "discarded"]);
    assert_eq!(get(&format!("{}/v1/exceptions/999999", host.url)).0, 404);
    assert_eq!(send("POST", &format!("{}/v1/exceptions/{drum_exception}/approve", host.url), "application/json", &[], b"{}").0, 404);
    assert_eq!(erp.unique(), 2, "nothing resolved or discarded reached the ERP");

    let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
    let count = |kind: &str| -> i64 { db.query_row("SELECT COUNT(*) FROM audit WHERE kind = ?1", [kind], |r| r.get(0)).unwrap() };
    assert_eq!((count("exception-overdue"), count("exception-settled")), (3, 3));
}

//! Ordering keys for raw payloads: a mapping pipeline's raw JSON input is
//! keyed by JSON pointers, spreads over every shard, and keeps its order
//! per key end to end — through sink retries and a restart, and when the
//! shards and the sink's workers take their work in memory as the commits queue it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::harness::*;

pub(crate) const RAW: &str = crate::site_config!(r#"
[[pipeline]]
id = "recs"
tenant = "acme"
ordering-key = { raw = ["/sku", "/site"] }
stages = [
  { transform = "json-mapper", config = { kind = "replenishment-recommendation", fields = { id = "/rec_id", item = "/sku", location = "/site", quantity = { path = "/qty", type = "number" }, uom = "/unit", need-by = "/need_by", "source.supplier" = "/supplier", reason = "/reason", priority = { path = "/prio", type = "integer" } } } },
]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
retry = { attempts = 50, initial = "20ms", max = "200ms" }
# These tests are about retries; the breaker has its own (tests/e2e/sinks.rs).
breaker = { failures = 0 }
"#);

/// Recommendation `i` of key `k` as the planning system exports it.
pub(crate) fn rec(k: usize, i: usize) -> String {
    format!(r#"{{"rec_id": "R{k}-{i:02}", "sku": "SKU-{k}", "site": "DC-{}", "qty": "{}", "unit": "EA", "need_by": "2026-12-21", "supplier": "SUP-7", "reason": "below-safety-stock", "prio": 2}}"#, k % 3, 1 + i)
}

/// Asserts the ERP got each of the `keys` keys' recommendations in order
/// (its idempotency keys look like `acme/recs/k:K3-07/0`).
pub(crate) fn in_order_per_key(erp: &Erp, keys: usize) {
    let received: Vec<String> = erp.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut last: HashMap<String, String> = HashMap::new();
    for key in &received {
        let (group, seq) = key.trim_start_matches("acme/recs/k:").split_once('-').unwrap();
        if let Some(prev) = last.get(group) {
            assert!(seq >= prev.as_str(), "key {group}: {seq} arrived after {prev}; order {received:?}");
        }
        last.insert(group.to_string(), seq.to_string());
    }
    assert_eq!(last.len(), keys);
}

#[test]
fn raw_payloads_spread_over_every_shard_and_keep_their_order_per_key() {
    let erp = Erp::start(&[]);
    let site = Site::new(RAW, &erp);
    let mut host = Host::start(&site);
    const KEYS: usize = 8;
    const EACH: usize = 12;
    let send = |host: &Host, i: usize| -> Vec<String> {
        (0..KEYS)
            .map(|k| {
                let key = format!("K{k}-{i:02}");
                let (s, body) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", &key)], rec(k, i).as_bytes());
                assert_eq!(s, 202, "{body}");
                body["id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    // The ERP refuses a while: retries must not reorder a key.
    erp.mode("503", Some(20));
    let mut ids: Vec<String> = (0..EACH / 2).flat_map(|i| send(&host, i)).collect();
    // Killed mid-flight; the rest is sent after the restart.
    host.kill9();
    let host = Host::start(&site);
    ids.extend((EACH / 2..EACH).flat_map(|i| send(&host, i)));
    eventually(Duration::from_secs(60), "every recommendation at the ERP", || (erp.unique() == (KEYS * EACH) as u64).then_some(()));

    in_order_per_key(&erp, KEYS);

    // Spread: the keys were processed by every shard of the pipeline.
    let mut used = BTreeSet::new();
    let mut of = 0;
    for id in &ids {
        let t = host.settled(id);
        let shard = &t["input"]["processing"]["shard"];
        used.insert(shard["index"].as_u64().unwrap());
        of = shard["of"].as_u64().unwrap();
        assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
    }
    assert_eq!(used.len() as u64, of, "every one of the {of} shards took keys: {used:?}");
}

/// The deliveries `host`'s workers of sink `erp` took from `from`.
fn taken(host: &Host, from: &str) -> u64 {
    counted(host, "syncline_deliveries_taken_total{", "sink=\"erp\"", from)
}

/// The messages `host`'s shards of pipeline `acme/recs` took from `from`.
fn messages_taken(host: &Host, from: &str) -> u64 {
    counted(host, "syncline_messages_taken_total{", "pipeline=\"recs\"", from)
}

fn counted(host: &Host, metric: &str, label: &str, from: &str) -> u64 {
    let metrics = get_text(&format!("{}/metrics", host.url));
    let line = format!("from=\"{from}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(&line) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn messages_and_outputs_are_handed_over_in_memory_in_order_and_a_failing_erp_sends_the_sink_back_to_the_store() {
    let erp = Erp::start(&[]);
    let site = Site::new(RAW, &erp);
    let host = Host::start(&site);
    const KEYS: usize = 8;
    // A steady trickle, as in production: each message is handed to its
    // shard, and each output to its sink, in memory once its commit is
    // durable, and order per key holds.
    let mut sent = 0;
    let mut send = |host: &Host, rounds: std::ops::Range<usize>| {
        for i in rounds {
            for k in 0..KEYS {
                let (s, body) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", &format!("K{k}-{i:02}"))], rec(k, i).as_bytes());
                assert_eq!(s, 202, "{body}");
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    };
    let n = send(&host, 0..10);
    eventually(Duration::from_secs(60), "every recommendation at the ERP", || (erp.unique() == n as u64).then_some(()));
    let (memory, store) = (taken(&host, "memory"), taken(&host, "store"));
    assert!(memory > store, "most deliveries came from memory: {memory} from memory, {store} from the store");
    assert_eq!(memory + store, n as u64, "each taken once");
    let (memory, store) = (messages_taken(&host, "memory"), messages_taken(&host, "store"));
    assert!(memory > store, "most messages came from memory: {memory} from memory, {store} from the store");
    assert_eq!(memory + store, n as u64, "each message taken once");
    // The ERP refuses for a while: the retries wait in the store, the
    // workers read it back, and order per key still holds.
    erp.mode("503", Some(30));
    let n = send(&host, 10..20);
    eventually(Duration::from_secs(60), "every recommendation at the ERP", || (erp.unique() == n as u64).then_some(()));
    assert!(taken(&host, "store") > store, "retries are read back from the store");
    in_order_per_key(&erp, KEYS);
}

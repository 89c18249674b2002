//! Several `syncline run` processes on one NATS JetStream server: they
//! share a pipeline's work, a process killed with `kill -9` mid-flight
//! loses nothing (every accepted message reaches the ERP exactly once by
//! its idempotency key, in order per key) and a restarted one rejoins;
//! while the server is down ingest answers 503 and accepts nothing, and
//! the hosts resume when it is back.

#[path = "../../host/src/store/nats/test_server.rs"]
#[allow(dead_code)]
mod nats_server;

use std::time::Duration;

use nats_server::NatsServer;

use crate::harness::*;
use crate::ordering::{in_order_per_key, rec, RAW};

/// The deliveries `host`'s workers of sink `erp` took (from memory or the store).
fn deliveries_taken(host: &Host) -> u64 {
    get_text(&format!("{}/metrics", host.url))
        .lines()
        .filter(|l| l.starts_with("syncline_deliveries_taken_total{") && l.contains("sink=\"erp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The ordering tests' raw-JSON pipeline on the NATS store at `nats`,
/// its sink cut into 32 parts (so that every process gets some).
fn cluster_config(nats: &NatsServer) -> String {
    let config = RAW
        .replace("[store]\npath = \"data/syncline.db\"\nsync = \"normal\"", &format!("[store]\nkind = \"nats\"\nurl = \"{}\"", nats.url()))
        .replace("[sink.erp]\nplugin = \"http-sink\"", "[sink.erp]\nplugin = \"http-sink\"\nworkers = 32");
    assert!(config.contains("kind = \"nats\"") && config.contains("workers = 32"), "the ordering tests' config changed shape");
    config
}

/// A pipeline polling the ERP's status feed, and its sink.
const STATUSES: &str = r#"
[[pipeline]]
id = "statuses"
tenant = "acme"
source = { plugin = "http-source", every = "100ms", config = { url = "http://{ERP}/feed", page-size = "5" }, allowed-hosts = ["{ERP}"] }
routes = [{ to = "status-sink" }]

[sink.status-sink]
plugin = "http-sink"
workers = 2
config = { url = "http://{ERP}/statuses" }
allowed-hosts = ["{ERP}"]
"#;

/// A site whose config names `nats`.
fn site(nats: &NatsServer, erp: &Erp) -> Site {
    Site::new(&cluster_config(nats), erp)
}

/// Sends recommendation `i` of each of `keys` keys to `host`; every one
/// accepted. Their ids.
fn send(host: &Host, keys: usize, i: usize) -> Vec<String> {
    (0..keys)
        .map(|k| {
            let key = format!("K{k}-{i:02}");
            let (s, body) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", &key)], rec(k, i).as_bytes());
            assert_eq!(s, 202, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The processes `/v1/cluster` lists, with how many slots of the sink's
/// queue each holds.
fn shares(host: &Host) -> Vec<(String, u64)> {
    let (status, body) = get(&format!("{}/v1/cluster", host.url));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store"], "nats");
    body["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let holds = p["holds"].as_array().unwrap();
            let slots = holds.iter().filter(|h| h["queue"] == "deliveries/erp").map(|h| h["slots"].as_u64().unwrap()).sum();
            (p["holder"].as_str().unwrap().to_string(), slots)
        })
        .collect()
}

/// Waits until `n` processes are listed, none of them `gone`, each
/// holding part of the sink's queue, and every slot of it held.
fn balanced(host: &Host, n: usize, gone: &str) -> Vec<(String, u64)> {
    eventually(Duration::from_secs(90), &format!("{n} processes sharing the sink's queue"), || {
        let s = shares(host);
        let all_held = s.iter().map(|(_, slots)| slots).sum::<u64>() == 64;
        (s.len() == n && all_held && s.iter().all(|(h, slots)| *slots > 0 && h != gone)).then_some(s)
    })
}

/// The name `host` holds leases under.
fn this(host: &Host) -> String {
    get(&format!("{}/v1/cluster", host.url)).1["this"].as_str().unwrap().to_string()
}

#[test]
fn three_hosts_share_the_work_and_one_killed_mid_flight_loses_nothing() {
    let nats = NatsServer::start();
    let erp = Erp::start(&[]);
    let site = site(&nats, &erp);
    let mut hosts: Vec<Host> = (0..3).map(|_| Host::start(&site)).collect();
    // Each process asks for the parts that should be its own, and gets them.
    balanced(&hosts[2], 3, "");
    const KEYS: usize = 8;
    const EACH: usize = 12;
    // The ERP refuses a while: retries must not reorder a key.
    erp.mode("503", Some(20));
    let mut ids = Vec::new();
    for i in 0..EACH / 2 {
        ids.extend(send(&hosts[i % 3], KEYS, i));
    }
    // One host is killed mid-flight: its partitions' leases run out and
    // the others take them over where its commits left them.
    let killed = this(&hosts[1]);
    hosts[1].kill9();
    for i in EACH / 2..EACH {
        send(&hosts[if i % 2 == 0 { 0 } else { 2 }], KEYS, i);
    }
    // It comes back and rejoins: its parts come back to it.
    hosts[1] = Host::start(&site);
    let after = balanced(&hosts[0], 3, &killed);
    assert!(after.iter().any(|(h, _)| *h == this(&hosts[1])), "the restarted process holds its part: {after:?}");
    eventually(Duration::from_secs(120), "every recommendation at the ERP", || (erp.unique() == (KEYS * EACH) as u64).then_some(()));
    in_order_per_key(&erp, KEYS);
    // Exactly once by idempotency key: each key received, none refused as
    // a conflicting repeat.
    let received = erp.received();
    assert_eq!(received["unique"], (KEYS * EACH) as u64, "{received}");
    // Any host traces any message, whichever host took or processed it.
    for id in ids.iter().step_by(7) {
        let t = hosts[2].settled(id);
        assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
    }
    // The work was shared: the deliveries were made by every process.
    let took: Vec<u64> = hosts.iter().map(deliveries_taken).collect();
    assert!(took.iter().filter(|n| **n > 0).count() >= 2, "the processes shared the deliveries: {took:?}");
}

#[test]
fn while_the_nats_server_is_down_ingest_answers_503_and_the_hosts_resume_when_it_is_back() {
    let mut nats = NatsServer::start();
    let erp = Erp::start(&[]);
    let site = site(&nats, &erp);
    let host = Host::start(&site);
    send(&host, 2, 0);
    eventually(Duration::from_secs(60), "the first two at the ERP", || (erp.unique() == 2).then_some(()));
    nats.stop();
    let (status, body) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", "down")], rec(0, 1).as_bytes());
    assert_eq!(status, 503, "nothing is accepted that cannot be kept: {body}");
    nats.restart();
    eventually(Duration::from_secs(60), "ingest accepting again", || {
        let (s, _) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", "K0-02")], rec(0, 2).as_bytes());
        (s == 202).then_some(())
    });
    send(&host, 2, 3);
    eventually(Duration::from_secs(60), "everything accepted at the ERP", || (erp.unique() == 5).then_some(()));
}

#[test]
fn a_source_is_polled_by_one_process_at_a_time() {
    let nats = NatsServer::start();
    let erp = Erp::start(&["--feed", "40"]);
    let site = Site::new(&format!("{}{STATUSES}", cluster_config(&nats)), &erp);
    let hosts: Vec<Host> = (0..2).map(|_| Host::start(&site)).collect();
    eventually(Duration::from_secs(60), "40 statuses delivered", || (erp.received()["by-path"]["/statuses"] == 40).then_some(()));
    // Every page before the feed's end was asked for once: two pollers
    // would each have asked for it.
    let cursors: Vec<serde_json::Value> = erp.received()["feed-cursors"].as_array().unwrap().clone();
    let pages: Vec<String> = cursors.iter().filter(|c| c.as_u64().is_none_or(|n| n < 40)).map(|c| c.to_string()).collect();
    let once: std::collections::BTreeSet<&String> = pages.iter().collect();
    assert_eq!(once.len(), pages.len(), "a page was polled twice: {cursors:?}");
    // The cluster view names the one process polling it.
    let (_, cluster) = get(&format!("{}/v1/cluster", hosts[0].url));
    let pollers: Vec<&serde_json::Value> = cluster["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["holds"].as_array().unwrap().iter().any(|h| h["queue"] == "source/acme/statuses"))
        .collect();
    assert_eq!(pollers.len(), 1, "{cluster}");
}

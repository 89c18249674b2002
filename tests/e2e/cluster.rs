//! Several `syncline run` processes on one NATS JetStream server: they
//! share a pipeline's work, a process killed with `kill -9` mid-flight
//! loses nothing (every accepted message reaches the ERP exactly once by
//! its idempotency key, in order per key) and a restarted one rejoins;
//! while the server is down ingest answers 503 and accepts nothing, and
//! the hosts resume when it is back; on a three-node cluster with one node
//! stopped they serve on; a reload, approval or rollback made through one
//! process's API reaches every process, also one started later.

#[path = "../../host/src/store/nats/test_server.rs"]
#[allow(dead_code)]
mod nats_server;

use std::time::Duration;

use nats_server::NatsServer;

use crate::harness::*;
use crate::ordering::{in_order_per_key, rec, RAW};
use crate::reload::{status, TAGGED};
use crate::support::{plugin, syncline};

/// The deliveries `host`'s workers of sink `erp` took (from memory or the store).
fn deliveries_taken(host: &Host) -> u64 {
    get_text(&format!("{}/metrics", host.url))
        .lines()
        .filter(|l| l.starts_with("syncline_deliveries_taken_total{") && l.contains("sink=\"erp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A test site's config on the NATS store at `nats` instead of SQLite.
fn on_nats(config: &str, nats: &NatsServer) -> String {
    on_servers(config, &nats.url(), 1)
}

/// A test site's config on the NATS store at `url` (one server or a
/// cluster's, comma-separated) with `replicas` copies of everything.
fn on_servers(config: &str, url: &str, replicas: usize) -> String {
    let config = config.replace("[store]\npath = \"data/syncline.db\"\nsync = \"normal\"", &format!("[store]\nkind = \"nats\"\nurl = \"{url}\"\nreplicas = {replicas}"));
    assert!(config.contains("kind = \"nats\""), "the test sites' store section changed shape");
    config
}

/// The ordering tests' raw-JSON pipeline on the NATS store at `nats`,
/// its sink cut into 32 parts (so that every process gets some).
fn cluster_config(nats: &NatsServer) -> String {
    let config = on_nats(RAW, nats).replace("[sink.erp]\nplugin = \"http-sink\"", "[sink.erp]\nplugin = \"http-sink\"\nworkers = 32");
    assert!(config.contains("workers = 32"), "the ordering tests' config changed shape");
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
fn two_hosts_on_a_three_node_nats_cluster_keep_serving_with_one_node_stopped() {
    let mut nodes = NatsServer::cluster();
    let erp = Erp::start(&[]);
    let url = nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",");
    let site = Site::new(&on_servers(RAW, &url, 3).replace("[sink.erp]\nplugin = \"http-sink\"", "[sink.erp]\nplugin = \"http-sink\"\nworkers = 32"), &erp);
    // The cluster elects its JetStream leaders before it takes streams:
    // `syncline check` (which opens the store) says when it is ready.
    eventually(Duration::from_secs(60), "the cluster ready", || syncline().arg("check").arg(site.config()).output().unwrap().status.success().then_some(()));
    let hosts: Vec<Host> = (0..2).map(|_| Host::start(&site)).collect();
    const KEYS: usize = 6;
    const EACH: usize = 8;
    // Each accepted, if need be after 503s while the cluster elects new leaders.
    let accept = |host: &Host, k: usize, i: usize| {
        let key = format!("K{k}-{i:02}");
        eventually(Duration::from_secs(60), &format!("{key} accepted"), || {
            let (s, _) = host.ingest("acme", "recs", "messages", "application/vnd.acme.recs+json", &[("Idempotency-Key", &key)], rec(k, i).as_bytes());
            (s == 202).then_some(())
        })
    };
    for i in 0..EACH / 2 {
        (0..KEYS).for_each(|k| accept(&hosts[i % 2], k, i));
    }
    // One node of three stops (perhaps the one a host talks to): the two
    // left keep a quorum and elect new leaders; the hosts serve on.
    nodes[0].stop();
    for i in EACH / 2..EACH {
        (0..KEYS).for_each(|k| accept(&hosts[i % 2], k, i));
    }
    eventually(Duration::from_secs(120), "every recommendation at the ERP", || (erp.unique() == (KEYS * EACH) as u64).then_some(()));
    in_order_per_key(&erp, KEYS);
    assert_eq!(erp.received()["unique"], (KEYS * EACH) as u64);
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

#[test]
fn a_batch_whose_outputs_are_larger_than_the_server_takes_in_one_message_is_delivered_and_a_message_that_is_is_refused() {
    let nats = NatsServer::start();
    let erp = Erp::start(&[]);
    let config = on_nats(TAGGED, &nats).replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax-body = \"8MiB\"");
    assert!(config.contains("max-body"), "the test sites' server section changed shape");
    let site = Site::new(&config, &erp);
    site.share_plugin("tagger-v1", "tagger");
    let host = Host::start(&site);
    // 24 statuses of one order with a 60 kB header each, in one request:
    // processed as one batch, their outputs are one commit of about
    // 1.5 MB, over nats-server's 1 MiB message limit.
    let note = "n".repeat(60_000);
    let big = |i: usize, note: &str| {
        let mut m: serde_json::Value = serde_json::from_str(&status(i)).unwrap();
        m["body"]["order-ref"] = "PO-1".into();
        m["headers"] = serde_json::json!({ "note": note });
        m.to_string()
    };
    let body: Vec<String> = (0..24).map(|i| big(i, &note)).collect();
    let (s, b) = host.ingest("acme", "tagged", "messages:batch", "application/x-ndjson", &[], body.join("\n").as_bytes());
    assert_eq!(s, 202, "{b}");
    eventually(Duration::from_secs(60), "the 24 statuses at the ERP", || (erp.unique() == 24).then_some(()));
    // One message larger than the server takes in one message is refused
    // as too large (not 503: sending it again would not help), and the
    // batch it is in with it.
    let huge = big(100, &"n".repeat(1_100_000));
    let (s, b) = host.ingest("acme", "tagged", "messages", "application/json", &[], huge.as_bytes());
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("message-too-large")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("max_payload"), "{b}");
    let (s, b) = host.ingest("acme", "tagged", "messages:batch", "application/x-ndjson", &[], format!("{}\n{huge}", status(101)).as_bytes());
    assert_eq!(s, 413, "{b}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(erp.unique(), 24, "nothing of the refused requests was accepted");
}

#[test]
fn an_output_an_error_or_a_polled_message_larger_than_the_server_takes_is_dead_lettered_clipped_or_refused_and_the_rest_flows() {
    let nats = NatsServer::start();
    // The feed's status 2 carries a 1.2 MB note: over nats-server's 1 MiB.
    let erp = Erp::start(&["--feed", "6", "--feed-large-at", "2"]);
    let config = on_nats(&TAGGED.replace("transform = \"tagger\"", "transform = \"hostile\""), &nats);
    assert!(config.contains("hostile"), "the reload tests' config changed shape");
    let site = Site::new(&format!("{config}{STATUSES}"), &erp);
    site.share_plugin("hostile", "hostile");
    let host = Host::start(&site);

    // Status `i` with the hostile plugin's `headers` goes to its dead
    // letter; the next status of its order is processed. The dead letter.
    let dies = |i: usize, headers: serde_json::Value| {
        let mut m: serde_json::Value = serde_json::from_str(&status(i)).unwrap();
        m["headers"] = headers;
        let (s, b) = host.ingest("acme", "tagged", "messages", "application/json", &[], m.to_string().as_bytes());
        assert_eq!(s, 202, "{b}");
        let trace = host.settled(b["id"].as_str().unwrap());
        assert_eq!(trace["input"]["state"], "dead", "{trace}");
        let next = status(i).replace(&format!("S-{i}"), &format!("S-{i}b"));
        let (s, b) = host.ingest("acme", "tagged", "messages", "application/json", &[], next.as_bytes());
        assert_eq!(s, 202, "{b}");
        assert_eq!(host.settled(b["id"].as_str().unwrap())["input"]["state"], "done");
        trace["dead-letters"][0].clone()
    };

    // A stage whose output is larger than the server takes in one message:
    // the message is dead-lettered with the reason, nothing of it queued —
    // before, the commit was kept and its delivery's publish refused and
    // retried for ever, holding the partition.
    let dead = dies(1, serde_json::json!({ "do": "big-output", "copies": "1", "bytes": "1200000" }));
    let reason = dead["reason"].as_str().unwrap();
    assert!(reason.contains("for sink erp") && reason.contains("max_payload") && reason.contains("replay"), "{reason}");
    assert_eq!(dead["place"], "store", "{dead}");
    eventually(Duration::from_secs(30), "the order's next status at the ERP", || (erp.received()["by-path"]["/requisitions"].as_u64() >= Some(1)).then_some(()));

    // A plugin failing with an error of 2 MB: its dead letter keeps the
    // error's head and tail (where a traceback ends) — before, the dead
    // letter could not be kept and the partition retried it for ever.
    let dead = dies(2, serde_json::json!({ "do": "big-error", "bytes": "2000000" }));
    let reason = dead["reason"].as_str().unwrap();
    assert!(reason.len() < 20_000 && reason.contains("bytes left out") && reason.ends_with("the end of the error"), "{} bytes: {}", reason.len(), &reason[reason.len().saturating_sub(200)..]);

    // Plugin state of 1,000,000 bytes (within the 1 MiB quota, over what
    // the server keeps in one value): refused like a write over the quota
    // — before, it was kept in memory only and gone at the next start.
    let dead = dies(3, serde_json::json!({ "do": "big-state", "bytes": "1000000" }));
    let reason = dead["reason"].as_str().unwrap();
    assert!(reason.contains("state value of 1000000 bytes under key `big` is larger than the store keeps"), "{reason}");

    // A polled message too large to keep is refused like a malformed one;
    // the rest of its page and the cursor move on (before, the whole page
    // was refused at every poll and the source never got past it).
    eventually(Duration::from_secs(30), "the feed's five other statuses", || (erp.received()["by-path"]["/statuses"] == 5).then_some(()));
    eventually(Duration::from_secs(10), "the cursor past the feed's end", || {
        erp.received()["feed-cursors"].as_array().unwrap().iter().any(|c| c.as_str() == Some("6") || c.as_u64() == Some(6)).then_some(())
    });
    let log = host.log.lock().unwrap().clone();
    assert!(log.lines().any(|l| l.contains("polled message refused") && l.contains("bytes as stored") && l.contains("max_payload")), "the refusal is logged with its reason");
    let refused = get_text(&format!("{}/metrics", host.url)).lines().find(|l| l.starts_with("syncline_source_refused_total{")).map(str::to_string);
    assert!(refused.as_deref().is_some_and(|l| l.contains("pipeline=\"statuses\"") && l.ends_with(" 1")), "and counted: {refused:?}");
}

/// The tagger versions (`v1`, `v2`) that processed `n` new messages over
/// as many ordering keys (so every part of the pipeline gets some,
/// whichever process holds it), sent to `host`.
fn versions_now(host: &Host, n: usize, from: usize) -> std::collections::BTreeSet<String> {
    let ids: Vec<String> = (from..from + n)
        .map(|i| {
            let (s, b) = host.ingest("acme", "tagged", "messages", "application/json", &[], status(i).as_bytes());
            assert_eq!(s, 202, "{b}");
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.iter().map(|id| host.settled(id)["outputs"][0]["message"]["headers"]["version"].as_str().unwrap_or("none").to_string()).collect()
}

/// The tagger digest `host` runs (`GET /v1/pipelines`).
fn running(host: &Host) -> String {
    let (_, p) = get(&format!("{}/v1/pipelines", host.url));
    p["pipelines"][0]["stages"][0]["digest"].as_str().unwrap().to_string()
}

/// The last reload `host` made on another process's word, once it made `n`.
fn followed(host: &Host, n: usize) -> serde_json::Value {
    eventually(Duration::from_secs(30), &format!("reload #{n} on another process's word"), || {
        host.reloads().into_iter().filter(|r| r["trigger"] == "cluster").nth(n - 1)
    })
}

#[test]
fn an_approval_a_reload_and_a_rollback_made_through_one_process_reach_every_process() {
    let nats = NatsServer::start();
    let erp = Erp::start(&[]);
    // Approval mode; the hosts do not watch their files, so only the
    // cluster can tell them of a change.
    let site = Site::new(&on_nats(TAGGED, &nats).replace("[plugins]\n", "[plugins]\nmode = \"approved\"\n"), &erp);
    site.share_plugin("tagger-v1", "tagger");
    let digest_of = |built: &str| syncline::runtime::digest(&std::fs::read(plugin(built)).unwrap());
    for (name, built) in [("tagger", "tagger-v1"), ("http-sink", "http-sink")] {
        let out = syncline().args(["plugin", "approve", name, &digest_of(built), "--config"]).arg(site.config()).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let hosts: Vec<Host> = (0..2).map(|_| Host::start_args(&site.config(), &["--no-watch"])).collect();
    // The pipeline's two parts may both be one process's (rendezvous
    // hashing): what each process runs is asked of it, what processed the
    // messages is read from their traces.
    assert!(hosts.iter().all(|h| running(h) == digest_of("tagger-v1")));
    assert_eq!(versions_now(&hosts[0], 16, 0), ["v1".to_string()].into());

    // v2 is deployed to the (shared) folder and approved through host 0:
    // both hosts run it.
    replace_file(&site.dir.path().join("plugins/shared/tagger.wasm"), &std::fs::read(plugin("tagger-v2")).unwrap());
    let (s, approved) = crate::harness::send("POST", &format!("{}/v1/plugins/tagger/approve", hosts[0].url), "application/json", &[], serde_json::json!({"digest": digest_of("tagger-v2")}).to_string().as_bytes());
    assert_eq!(s, 200, "{approved}");
    assert_eq!((approved["reload"]["outcome"].as_str(), approved["reload"]["cluster"].as_str()), (Some("applied"), Some("told")), "{approved}");
    let r = followed(&hosts[1], 1);
    assert_eq!((r["outcome"].as_str(), r["from"].as_str()), (Some("applied"), Some(this(&hosts[0]).as_str())), "{r}");
    assert!(hosts.iter().all(|h| running(h) == digest_of("tagger-v2")));
    assert_eq!(versions_now(&hosts[1], 16, 100), ["v2".to_string()].into(), "every process runs the approved version");

    // A reload through host 0's API is made by host 1 as well.
    let (s, r) = crate::harness::send("POST", &format!("{}/v1/reload", hosts[0].url), "application/json", &[], b"");
    assert_eq!((s, r["outcome"].as_str(), r["cluster"].as_str()), (200, Some("unchanged"), Some("told")), "{r}");
    assert_eq!(followed(&hosts[1], 2)["outcome"], "unchanged");

    // A rollback through host 1 returns both to v1, the file still v2.
    let out = syncline().args(["plugin", "rollback", "tagger", "--server", &hosts[1].url]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r = followed(&hosts[0], 1);
    assert_eq!((r["outcome"].as_str(), r["from"].as_str()), (Some("applied"), Some(this(&hosts[1]).as_str())), "{r}");
    assert!(hosts.iter().all(|h| running(h) == digest_of("tagger-v1")));
    assert_eq!(versions_now(&hosts[0], 16, 200), ["v1".to_string()].into(), "every process runs the rolled-back version");

    // A process started after the rollback makes it before it loads its
    // plugins (it never runs v2); neither the rollback nor the reload
    // asked before it began is made again.
    let late = Host::start_args(&site.config(), &["--no-watch"]);
    assert_eq!(running(&late), digest_of("tagger-v1"));
    assert!(late.log.lock().unwrap().contains("a rollback made before this start holds"));
    assert_eq!(versions_now(&late, 16, 300), ["v1".to_string()].into());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(late.reloads().iter().filter(|r| r["trigger"] == "cluster").count(), 0, "{:?}", late.reloads());
}

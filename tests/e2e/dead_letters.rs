//! Dead letters worked through `syncline dlq` and the HTTP API against a
//! running host: listed by filter, shown with their message, replayed once
//! the cause is fixed (the ERP back, the plugin redeployed) with exactly one
//! document at the ERP, purged with a reason; each replay and purge audited.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::{plugin, syncline};

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ transform = "trap" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions", timeout-ms = "300" }
allowed-hosts = ["{ERP}"]
retry = { attempts = 2, initial = "50ms", max = "100ms" }
"#
);

fn order(id: &str, trap: bool) -> String {
    let mut m = recommendation(id);
    if trap {
        m["headers"] = json!({"trap": "yes"});
    }
    m.to_string()
}

fn ingest(host: &Host, id: &str, trap: bool) -> String {
    let (status, answer) = host.ingest("acme", "orders", "messages", "application/json", &[], order(id, trap).as_bytes());
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn dlq(host: &Host, args: &[&str]) -> Output {
    syncline().arg("dlq").args(args).args(["--server", &host.url]).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn open_letters(host: &Host, query: &str) -> Vec<Value> {
    let (status, body) = get(&format!("{}/v1/dead-letters{query}", host.url));
    assert_eq!(status, 200, "{body}");
    body["dead-letters"].as_array().unwrap().clone()
}

fn audit_kinds(site: &Site) -> Vec<String> {
    let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
    let mut stmt = db.prepare("SELECT kind FROM audit ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn dead_letters_are_listed_replayed_after_the_fix_exactly_once_and_purged() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);

    // The ERP refuses the first order; the second traps in its stage.
    erp.mode("422", None);
    let refused = ingest(&host, "D-1", false);
    let trapped = ingest(&host, "T-1", true);
    assert_eq!(host.settled(&refused)["outputs"][0]["state"], "dead");
    assert_eq!(host.settled(&trapped)["input"]["state"], "dead");

    // Listed, by the CLI and the API, and filtered by place and reason.
    let listed = stdout(&dlq(&host, &["list"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let sink_line = stdout(&dlq(&host, &["list", "--place", "sink"]));
    assert!(sink_line.contains("acme/orders  sink erp") && sink_line.contains("HTTP 422"), "{sink_line}");
    assert_eq!(sink_line.lines().count(), 1, "{sink_line}");
    let at_sink = open_letters(&host, "?place=sink%20erp&reason=HTTP%20422");
    assert_eq!(at_sink.len(), 1, "{at_sink:?}");
    let in_stage = open_letters(&host, "?place=stage");
    assert_eq!((in_stage.len(), in_stage[0]["source-id"].as_str()), (1, Some(trapped.as_str())), "{in_stage:?}");
    let sink_id = at_sink[0]["id"].as_i64().unwrap();
    assert!(open_letters(&host, "?older-than=1h").is_empty());
    assert_eq!(get(&format!("{}/v1/dead-letters?state=lost", host.url)).0, 400);
    assert_eq!(get(&format!("{}/v1/dead-letters?colour=red", host.url)).0, 400);

    // Shown with the message as it died and every attempt.
    let shown: Value = serde_json::from_str(&stdout(&dlq(&host, &["show", &sink_id.to_string()]))).unwrap();
    assert_eq!(shown["message"]["kind"], "replenishment-recommendation", "{shown}");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 1, "a 422 is not retried: {shown}");
    assert_eq!(get(&format!("{}/v1/dead-letters/999999", host.url)).0, 404);

    // The ERP is fixed: the refused output is delivered once, with its key.
    erp.mode("ok", None);
    stdout(&dlq(&host, &["replay", &sink_id.to_string()]));
    let t = host.settled(&refused);
    assert_eq!(t["outputs"][0]["state"], "delivered", "{t}");
    assert_eq!(erp.unique(), 1);
    let again = dlq(&host, &["replay", &sink_id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already replayed"), "{again:?}");

    // The plugin is redeployed: the trapped message runs through the new one.
    replace_file(&site.dir.path().join("plugins/shared/trap.wasm"), &std::fs::read(plugin("tagger-v1")).unwrap());
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    let replayed = stdout(&dlq(&host, &["replay", "--all", "--place", "stage"]));
    assert_eq!(replayed.trim(), "replayed 1 dead letter(s)");
    let t = host.settled(&trapped);
    assert_eq!((t["input"]["state"].as_str(), t["outputs"][0]["state"].as_str()), (Some("done"), Some("delivered")), "{t}");
    assert_eq!(t["outputs"][0]["message"]["headers"]["version"], "v1", "the current plugin ran: {t}");
    eventually(Duration::from_secs(20), "two documents at the ERP", || (erp.unique() == 2).then_some(()));
    assert_eq!(erp.received()["duplicates"], 0, "exactly once at the ERP");
    let replayed_list = stdout(&dlq(&host, &["list", "--state", "replayed"]));
    assert_eq!(replayed_list.lines().count(), 2, "{replayed_list}");
    assert!(open_letters(&host, "").is_empty());

    // A third one is purged: a reason is required, then it leaves the open list.
    erp.mode("422", None);
    let junk = ingest(&host, "J-1", false);
    assert_eq!(host.settled(&junk)["outputs"][0]["state"], "dead");
    let junk_id = open_letters(&host, "")[0]["id"].as_i64().unwrap();
    assert_eq!(dlq(&host, &["purge", &junk_id.to_string()]).status.code(), Some(2), "clap wants --reason");
    let (status, _) = send("POST", &format!("{}/v1/dead-letters/{junk_id}/purge", host.url), "application/json", &[], br#"{"reason": " "}"#);
    assert_eq!(status, 400);
    stdout(&dlq(&host, &["purge", &junk_id.to_string(), "--reason", "test order sent by mistake"]));
    assert!(open_letters(&host, "").is_empty());
    let purged = open_letters(&host, "?state=purged");
    assert_eq!((purged.len(), purged[0]["note"].as_str()), (1, Some("test order sent by mistake")));
    assert_eq!(erp.unique(), 2, "nothing purged reached the ERP");

    let kinds = audit_kinds(&site);
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!((count("dead-letter-replayed"), count("dead-letter-purged")), (2, 1), "{kinds:?}");
}

#[test]
fn a_plugin_that_keeps_trapping_trips_its_stage_breaker_and_the_held_messages_survive_the_fix() {
    let erp = Erp::start(&[]);
    let config = CONFIG.replace("stages = [{ transform = \"trap\" }]", "stages = [{ transform = \"trap\" }]\nbreaker = { failures = 3, open-for = \"1s\", max-open-for = \"1s\" }");
    let site = Site::new(&config, &erp);
    site.share_plugin("trap", "trap");
    let host = Host::start(&site);

    // Every message traps: three dead letters, then the stage's breaker holds the rest.
    let ids: Vec<String> = (0..10).map(|i| ingest(&host, &format!("T-{i}"), true)).collect();
    let stage_breaker = || get(&format!("{}/v1/pipelines", host.url)).1["pipelines"][0]["stages"][0]["breaker"].clone();
    let open = eventually(Duration::from_secs(20), "the stage breaker opens", || Some(stage_breaker()).filter(|b| b["state"] == "open"));
    assert!(open["reason"].as_str().unwrap().contains("trapped"), "{open}");
    let dead_now = open_letters(&host, "").len();
    assert!((3..10).contains(&dead_now), "{dead_now} dead letters: the breaker held the rest");

    // The plugin is fixed: the probe goes through, the breaker closes, the held messages flow.
    replace_file(&site.dir.path().join("plugins/shared/trap.wasm"), &std::fs::read(plugin("tagger-v1")).unwrap());
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    eventually(Duration::from_secs(20), "the stage breaker closes", || Some(stage_breaker()).filter(|b| b["state"] == "closed"));
    let dead = open_letters(&host, "");
    for id in &ids {
        let t = host.settled(id);
        let died = dead.iter().any(|d| d["source-id"] == id.as_str());
        assert_eq!(t["input"]["state"], if died { "dead" } else { "done" }, "{t}");
    }
    assert_eq!(erp.unique() as usize, 10 - dead.len(), "every held message was delivered");
    let kinds = audit_kinds(&site);
    assert!(kinds.iter().filter(|k| *k == "breaker").count() >= 3, "{kinds:?}");
    let db = rusqlite::Connection::open(site.dir.path().join("data/syncline.db")).unwrap();
    let target: String = db.query_row("SELECT detail FROM audit WHERE kind = 'breaker' ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    assert!(target.contains("stage 1 of acme/orders (trap)"), "{target}");
}

#[test]
fn a_replay_killed_midway_loses_nothing_and_each_message_reaches_the_erp_once() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    site.share_plugin("trap", "trap");
    let mut host = Host::start(&site);
    erp.mode("422", None);
    let ids: Vec<String> = (0..200).map(|i| ingest(&host, &format!("K-{i}"), false)).collect();
    eventually(Duration::from_secs(60), "200 dead letters", || (open_letters(&host, "?limit=500").len() == 200).then_some(()));

    // The ERP is back; the replay of all of them is killed halfway.
    erp.mode("ok", None);
    let url = host.url.clone();
    let replay = std::thread::spawn(move || send("POST", &format!("{url}/v1/dead-letters:replay"), "application/json", &[], b"{}"));
    eventually(Duration::from_secs(60), "the replay under way", || (erp.unique() > 0).then_some(()));
    host.kill9();
    let _ = replay.join();

    // After the restart, what was replayed is delivered and the rest is still open: replay it.
    let host = Host::start(&site);
    stdout(&dlq(&host, &["replay", "--all"]));
    for id in &ids {
        assert_eq!(host.settled(id)["outputs"][0]["state"], "delivered");
    }
    // A delivery sent just before the kill is sent again with the same key: once in effect.
    assert_eq!(erp.unique(), 200, "each once at the ERP");
    assert!(open_letters(&host, "").is_empty());
}

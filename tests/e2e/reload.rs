//! Hot reload with a running host and real files: plugin swaps under load,
//! broken files rejected while the old version serves, config edits
//! (add a pipeline, change a route, remove a sink with pending deliveries,
//! an invalid edit), SIGHUP, `POST /v1/reload` and `--no-watch`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::support::*;
use syncline::runtime::digest;

pub(crate) const TAGGED: &str = crate::site_config!(r#"

[[pipeline]]
id = "tagged"
tenant = "acme"
ordering-key = ["body.order-ref"]
stages = [{ transform = "tagger" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
retry = { attempts = 8, initial = "50ms", max = "500ms" }
"#);

pub(crate) fn status(i: usize) -> String {
    json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": format!("S-{i}"),
           "body": {"order-ref": format!("PO-{i}"), "kind": "purchase", "status": "confirmed", "quantity": 1, "uom": "EA"}})
    .to_string()
}

fn tagged_site(erp: &Erp) -> Site {
    let site = Site::new(TAGGED, erp);
    site.share_plugin("tagger-v1", "tagger");
    site
}

/// Most load messages accepted but not yet at the ERP: the loader waits
/// above it, so a probe never queues behind more than this much work
/// whatever the machine's speed (the settle budget is for this much).
const MAX_BACKLOG: usize = 100;

/// Sends one message and returns the version and digest that handled it.
fn probe(host: &Host, i: usize) -> (String, String) {
    let (s, b) = host.ingest("acme", "tagged", "messages", "application/json", &[], status(i).as_bytes());
    assert_eq!(s, 202, "{b}");
    let started = std::time::Instant::now();
    let t = host.settled(b["id"].as_str().unwrap());
    eprintln!("probe {i} settled after {:?}", started.elapsed());
    let version = t["outputs"][0]["message"]["headers"]["version"].as_str().unwrap().to_string();
    let digest = t["input"]["processing"]["steps"][0]["digest"].as_str().unwrap().to_string();
    (version, digest)
}

#[test]
fn plugin_swaps_under_load_process_every_message_once_by_one_version() {
    let erp = Erp::start(&[]);
    let site = tagged_site(&erp);
    let host = Host::start(&site);
    let v1 = std::fs::read(plugin("tagger-v1")).unwrap();
    let v2 = std::fs::read(plugin("tagger-v2")).unwrap();
    let digests: HashMap<String, &str> = [(digest(&v1), "v1"), (digest(&v2), "v2")].into_iter().collect();
    let target = site.dir.path().join("plugins/shared/tagger.wasm");

    // Continuous load from another thread, as fast as the host delivers
    // but never more than MAX_BACKLOG ahead of the ERP.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let loader = {
        let (stop, accepted, url, erp_url) = (stop.clone(), accepted.clone(), host.url.clone(), erp.url.clone());
        std::thread::spawn(move || {
            let mut i = 100_000;
            while !stop.load(Ordering::Relaxed) {
                // (The ERP's count includes the probes: the backlog is at most 21 more.)
                let at_erp = get(&format!("{erp_url}/_admin/received")).1["unique"].as_u64().unwrap_or(0) as usize;
                if accepted.lock().unwrap().len() > at_erp + MAX_BACKLOG {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let lines: Vec<String> = (0..5).map(|k| status(i + k)).collect();
                i += 5;
                let (s, b) = send("POST", &format!("{url}/v1/tenants/acme/pipelines/tagged/messages:batch"), "application/x-ndjson", &[], lines.join("\n").as_bytes());
                if s != 202 {
                    // Reported by the test once it joins (a panic here would
                    // only show after the host is gone, as a reset).
                    return Err(format!("ingest answered {s}: {b}"));
                }
                let ids = b["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string());
                accepted.lock().unwrap().extend(ids);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    };
    // Stops the loader when the test ends, also by a failed assertion
    // (before the host process is dropped, which is declared earlier).
    struct StopLoad(Arc<AtomicBool>);
    impl Drop for StopLoad {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_load = StopLoad(stop.clone());

    for n in 1..=20 {
        let (bytes, version) = if n % 2 == 1 { (&v2, "v2") } else { (&v1, "v1") };
        replace_file(&target, bytes);
        let record = host.effective_reload(n);
        assert_eq!(record["outcome"], "applied", "{record}");
        assert_eq!(record["trigger"], "watch");
        assert_eq!(record["plugins"][0]["new"], digest(bytes).as_str(), "{record}");
        assert_eq!(record["plugins"][0]["old"], digest(if version == "v2" { &v1 } else { &v2 }).as_str());
        // The very next message runs on the new version.
        let (seen, d) = probe(&host, n);
        assert_eq!(seen, version, "after swap {n}");
        assert_eq!(digests[&d], version);
        std::thread::sleep(Duration::from_millis(30));
    }

    // A corrupt file and a wrong-world file are rejected; v1 (the last good) keeps serving.
    replace_file(&target, b"\0asm garbage");
    let record = host.effective_reload(21);
    assert_eq!(record["outcome"], "rejected", "{record}");
    assert!(record["error"].as_str().unwrap().contains("is not a valid WebAssembly component"), "{record}");
    replace_file(&target, &std::fs::read(plugin("wrong-world")).unwrap());
    let record = host.effective_reload(22);
    assert_eq!(record["outcome"], "rejected", "{record}");
    assert!(record["error"].as_str().unwrap().contains("implements the `validator` world, but stage 1 of pipeline `tagged` needs a `transformer` plugin"), "{record}");
    assert_eq!(probe(&host, 99).0, "v1");
    let metrics = get_text(&format!("{}/metrics", host.url));
    assert!(metrics.contains("syncline_reloads_total{outcome=\"applied\"} 20"), "{metrics}");
    assert!(metrics.contains("syncline_reloads_total{outcome=\"rejected\"} 2"), "{metrics}");

    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap().expect("every load batch was accepted");
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() > 100, "load ran: {}", accepted.len());
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for id in &accepted {
        let t = host.settled(id);
        let steps = t["input"]["processing"]["steps"].as_array().unwrap();
        let d = steps[0]["digest"].as_str().unwrap();
        let version = digests[d];
        assert_eq!(t["outputs"].as_array().unwrap().len(), 1, "{t}");
        assert_eq!(t["outputs"][0]["message"]["headers"]["version"], version, "the trace names the version that ran: {t}");
        assert_eq!(t["outputs"][0]["state"], "delivered");
        *by_version.entry(version).or_default() += 1;
    }
    assert!(by_version.len() == 2, "both versions processed load: {by_version:?}");
    let received = erp.received();
    let keys: Vec<&str> = received["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    let unique: HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len());
    assert_eq!(keys.len(), accepted.len() + 21, "every message (load + probes) delivered exactly once");
}

const EDIT_BASE: &str = crate::site_config!(r#"

[[pipeline]]
id = "a"
tenant = "acme"
stages = [{ transform = "tagger" }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/one" }
allowed-hosts = ["{ERP}"]
"#);

const EDIT_B: &str = r#"
[[pipeline]]
id = "b"
tenant = "acme"
routes = [{ to = "erp" }]
"#;

const EDIT_SINK2: &str = r#"
[sink.erp2]
plugin = "http-sink"
config = { url = "http://{ERP}/two", timeout-ms = "200" }
allowed-hosts = ["{ERP}"]
"#;

#[test]
fn config_edits_add_change_remove_and_an_invalid_edit_is_rejected() {
    let erp = Erp::start(&[]);
    let site = Site::new(EDIT_BASE, &erp);
    site.share_plugin("tagger-v1", "tagger");
    let host = Host::start(&site);

    // Add a pipeline.
    site.rewrite(&format!("{EDIT_BASE}{EDIT_B}"), &erp);
    let r = host.effective_reload(1);
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["changes"], json!(["added pipeline acme/b"]));
    let (s, b) = host.ingest("acme", "b", "messages", "application/json", &[], status(1).as_bytes());
    assert_eq!(s, 202, "{b}");
    assert_eq!(host.settled(b["id"].as_str().unwrap())["outputs"][0]["state"], "delivered");

    // Change a route: pipeline a now goes to a new sink erp2.
    let changed = format!("{EDIT_BASE}{EDIT_B}{EDIT_SINK2}").replacen("routes = [{ to = \"erp\" }]", "routes = [{ to = \"erp2\" }]", 1);
    site.rewrite(&changed, &erp);
    let r = host.effective_reload(2);
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["changes"], json!(["added sink erp2", "changed pipeline acme/a"]), "{r}");
    let (_, b) = host.ingest("acme", "a", "messages", "application/json", &[], status(2).as_bytes());
    let t = host.settled(b["id"].as_str().unwrap());
    assert_eq!(t["outputs"][0]["sink"], "erp2");
    assert_eq!(erp.received()["by-path"]["/two"], 1);

    // Remove sink erp2 while it has pending deliveries: they are kept and reported.
    erp.mode("503", None);
    let (_, b) = host.ingest("acme", "a", "messages", "application/json", &[], status(3).as_bytes());
    let pending_id = b["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "a failed attempt", || (erp.received()["refused"].as_u64().unwrap_or(0) >= 1).then_some(()));
    site.rewrite(&format!("{EDIT_BASE}{EDIT_B}"), &erp);
    let r = host.effective_reload(3);
    assert_eq!(r["outcome"], "applied", "{r}");
    assert!(r["changes"].as_array().unwrap().contains(&json!("removed sink erp2")), "{r}");
    assert_eq!(r["kept"], json!(["1 pending delivery(ies) of removed sink erp2 kept; they resume if it comes back"]), "{r}");
    let (_, t) = host.trace(&pending_id);
    assert_eq!(t["outputs"][0]["state"], "pending", "kept, not dropped: {t}");
    erp.mode("ok", None);

    // An invalid edit is rejected whole, with the text `syncline check` gives; the running config stays.
    site.rewrite(&format!("{EDIT_BASE}{EDIT_B}").replace("routes = [{ to = \"erp\" }]\n\n[sink", "routes = [{ to = \"erp-clod\" }]\n\n[sink"), &erp);
    let r = host.effective_reload(4);
    assert_eq!(r["outcome"], "rejected", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("unknown sink `erp-clod`") && error.contains("did you mean `erp`?"), "{error}");
    assert!(error.contains("syncline.toml:"), "names file and line: {error}");
    let (s, b) = host.ingest("acme", "a", "messages", "application/json", &[], status(4).as_bytes());
    assert_eq!(s, 202);
    assert_eq!(host.settled(b["id"].as_str().unwrap())["outputs"][0]["sink"], "erp");

    // Bringing erp2 back resumes its kept delivery.
    site.rewrite(&format!("{EDIT_BASE}{EDIT_B}{EDIT_SINK2}"), &erp);
    assert_eq!(host.effective_reload(5)["outcome"], "applied");
    assert_eq!(host.settled(&pending_id)["outputs"][0]["state"], "delivered");
}

#[test]
fn no_watch_ignores_files_until_sighup_or_the_api_reloads() {
    let erp = Erp::start(&[]);
    let site = tagged_site(&erp);
    let host = Host::start_args(&site.config(), &["--no-watch"]);
    let target = site.dir.path().join("plugins/shared/tagger.wasm");
    replace_file(&target, &std::fs::read(plugin("tagger-v2")).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    assert!(host.reloads().is_empty(), "--no-watch must not reload");
    assert_eq!(probe(&host, 1).0, "v1");

    host.signal("HUP");
    let r = host.effective_reload(1);
    assert_eq!((r["trigger"].as_str(), r["outcome"].as_str()), (Some("signal"), Some("applied")), "{r}");
    assert_eq!(probe(&host, 2).0, "v2");

    replace_file(&target, &std::fs::read(plugin("tagger-v1")).unwrap());
    let (s, r) = send("POST", &format!("{}/v1/reload", host.url), "application/json", &[], b"");
    assert_eq!((s, r["trigger"].as_str(), r["outcome"].as_str()), (200, Some("api"), Some("applied")), "{r}");
    assert_eq!(probe(&host, 3).0, "v1");
    let (s, r) = send("POST", &format!("{}/v1/reload", host.url), "application/json", &[], b"");
    assert_eq!((s, r["outcome"].as_str()), (200, Some("unchanged")), "{r}");
}

#[test]
fn rollback_returns_to_the_previous_version_in_one_step_and_a_pin_holds_a_version() {
    let erp = Erp::start(&[]);
    let site = tagged_site(&erp);
    let host = Host::start(&site);
    let target = site.dir.path().join("plugins/shared/tagger.wasm");
    let (v1, v2) = (std::fs::read(plugin("tagger-v1")).unwrap(), std::fs::read(plugin("tagger-v2")).unwrap());

    // Nothing to roll back to yet.
    let out = syncline().args(["plugin", "rollback", "tagger", "--server", &host.url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no earlier version"), "{}", String::from_utf8_lossy(&out.stderr));

    replace_file(&target, &v2);
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    assert_eq!(probe(&host, 1).0, "v2");
    let out = syncline().args(["plugin", "rollback", "tagger", "--server", &host.url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{} -> {}", digest(&v2), digest(&v1))), "{stdout}");
    let r = host.effective_reload(2);
    assert_eq!((r["trigger"].as_str(), r["outcome"].as_str()), (Some("rollback"), Some("applied")), "{r}");
    assert_eq!(probe(&host, 2).0, "v1", "rolled back although the file still holds v2");
    // The rollback holds across other reloads while the file is unchanged.
    let (_, r) = send("POST", &format!("{}/v1/reload", host.url), "application/json", &[], b"");
    assert_eq!(r["outcome"], "unchanged", "{r}");
    assert_eq!(probe(&host, 3).0, "v1");

    // Deploying another file ends the rollback (here: v1 again, which already runs).
    let before = host.reloads().len();
    replace_file(&target, &v1);
    host.reload_number(before + 1);
    // A stage pinned to v1 keeps v1 while the file moves on to v2.
    let pinned = TAGGED.replace("stages = [{ transform = \"tagger\" }]", &format!("stages = [{{ transform = \"tagger\", pin = \"{}\" }}]", digest(&v1)));
    site.rewrite(&pinned, &erp);
    assert_eq!(host.effective_reload(3)["changes"], json!(["changed pipeline acme/tagged"]));
    let before = host.reloads().len();
    replace_file(&target, &v2);
    host.reload_number(before + 1);
    let applied = host.reloads().iter().filter(|r| r["outcome"] == "applied").count();
    assert_eq!(applied, 3, "the pinned stage does not follow the file");
    assert_eq!(probe(&host, 4).0, "v1");
    // A pin that is not a digest is a config error; the running config stays.
    site.rewrite(&TAGGED.replace("stages = [{ transform = \"tagger\" }]", "stages = [{ transform = \"tagger\", pin = \"latest\" }]"), &erp);
    let r = host.effective_reload(4);
    assert_eq!(r["outcome"], "rejected");
    assert!(r["error"].as_str().unwrap().contains("`latest` is not a plugin digest"), "{r}");
    assert_eq!(probe(&host, 5).0, "v1");
}

#[test]
fn a_rollback_holds_across_a_restart_until_another_file_is_deployed() {
    let erp = Erp::start(&[]);
    let site = tagged_site(&erp);
    let target = site.dir.path().join("plugins/shared/tagger.wasm");
    let (v1, v2) = (std::fs::read(plugin("tagger-v1")).unwrap(), std::fs::read(plugin("tagger-v2")).unwrap());
    let mut host = Host::start(&site);
    replace_file(&target, &v2);
    assert_eq!(host.effective_reload(1)["outcome"], "applied");
    let (s, r) = send("POST", &format!("{}/v1/plugins/tagger/rollback", host.url), "application/json", &[], b"");
    assert_eq!((s, r["outcome"].as_str()), (200, Some("applied")), "{r}");
    assert_eq!(probe(&host, 1).0, "v1");

    // A restart (the file still holds v2) keeps the rollback: before, the
    // host came back on v2, the version the operator had rolled back from.
    assert!(host.terminate(), "the host stops on SIGTERM");
    let mut host = Host::start(&site);
    assert_eq!(probe(&host, 2), ("v1".to_string(), digest(&v1)), "the rollback holds after a restart");
    assert!(host.log.lock().unwrap().contains("a rollback made before this start holds"));

    // Another file ends it, also for the next start: v2 deployed again
    // afterwards is run as deployed, now and after a restart.
    let before = host.reloads().len();
    replace_file(&target, &v1);
    host.reload_number(before + 1);
    let before = host.reloads().len();
    replace_file(&target, &v2);
    assert_eq!(host.reload_number(before + 1)["outcome"], "applied");
    assert_eq!(probe(&host, 3).0, "v2");
    assert!(host.terminate());
    let host = Host::start(&site);
    assert_eq!(probe(&host, 4).0, "v2", "the rollback that ended is not made again");
}

#[test]
fn a_file_written_in_place_in_pieces_is_taken_only_when_complete_and_a_tenant_file_shadows_shared() {
    let erp = Erp::start(&[]);
    let site = tagged_site(&erp);
    let host = Host::start(&site);
    let target = site.dir.path().join("plugins/shared/tagger.wasm");
    let v2 = std::fs::read(plugin("tagger-v2")).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&target).unwrap();
        f.write_all(&v2[..v2.len() / 2]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        f.write_all(&v2[v2.len() / 2..]).unwrap();
    }
    // A half-written file may be seen and refused; the complete one is taken, and nothing half-written ever runs.
    let applied = eventually(Duration::from_secs(20), "the complete file applied", || {
        host.reloads().into_iter().find(|r| r["outcome"] == "applied")
    });
    assert_eq!(applied["plugins"][0]["new"], digest(&v2).as_str(), "{applied}");
    for r in host.reloads() {
        assert!(r["outcome"] == "applied" || r["outcome"] == "rejected", "{r}");
    }
    assert_eq!(probe(&host, 1).0, "v2");

    // A tenant's own copy, added later, takes precedence over the shared one.
    let n = host.reloads().len();
    let tenant_dir = site.dir.path().join("plugins/acme");
    std::fs::create_dir_all(&tenant_dir).unwrap();
    replace_file(&tenant_dir.join("tagger.wasm"), &std::fs::read(plugin("tagger-v1")).unwrap());
    let r = eventually(Duration::from_secs(20), "the tenant plugin picked up", || {
        host.reloads().into_iter().skip(n).find(|r| r["outcome"] == "applied")
    });
    assert_eq!(r["changes"], json!(["changed pipeline acme/tagged"]), "{r}");
    assert_eq!(probe(&host, 2).0, "v1");
}

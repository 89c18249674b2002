//! The workload an integration team brings: a planning system's flat JSON
//! recommendations POSTed one at a time (32 senders) as raw payloads
//! through json-mapper → canonical-validator → uom-normalizer (tables for
//! 1,000 items) → moq-leadtime → http-sink (one POST per requisition, with
//! its idempotency key) into `erp-sim` — measured through Syncline and
//! through the hand-written service a user would write instead
//! ([`crate::service`]), in the same run.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::e2e::{self, root, Proc};
use crate::procstat;
use crate::stats::Figures;

/// Items in the reference tables.
const ITEMS: usize = 1_000;

/// Writes the reference tables for [`ITEMS`] items into `dir`.
pub fn tables(dir: &Path) -> anyhow::Result<()> {
    let items: Vec<String> = (0..ITEMS).map(|i| format!("SKU-{i:04}")).collect();
    let rows = |header: &str, row: &dyn Fn(&str) -> String| {
        std::iter::once(header.to_string()).chain(items.iter().map(|i| row(i))).collect::<Vec<_>>().join("\n") + "\n"
    };
    std::fs::write(dir.join("items.csv"), rows("item,base-uom", &|i| format!("{i},EA")))?;
    std::fs::write(dir.join("conversions.csv"), "item,from-uom,to-uom,factor\n*,CS,EA,12\n*,PK,EA,6\n")?;
    std::fs::write(dir.join("moq.csv"), rows("item,moq,pack-size", &|i| format!("{i},24,6")))?;
    std::fs::write(dir.join("lead-times.csv"), "source,lead-time-days\nSUP-7,14\nSUP-9,21\n")?;
    Ok(())
}

/// Recommendation `i` as the planning system exports it (one per POST).
pub fn flat(i: usize) -> String {
    format!(
        r#"{{"rec_id": "R-{i}", "sku": "SKU-{:04}", "site": "DC-{}", "qty": "{}", "unit": "CS", "need_by": "2026-12-21", "supplier": "SUP-7", "reason": "below-safety-stock", "prio": 2}}"#,
        i % ITEMS,
        i % 7,
        1 + i % 40
    )
}

fn syncline_config(erp: &str, refs: &Path) -> String {
    let r = refs.display();
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
[store]
path = "data/syncline.db"
sync = "full"
[plugins]
dir = "{plugins}"
cache-dir = "{cache}"
[[tenant]]
id = "acme"
[[pipeline]]
id = "recs"
tenant = "acme"
ordering-key = {{ raw = ["/sku", "/site"] }}
stages = [
  {{ transform = "json-mapper", config = {{ kind = "replenishment-recommendation", fields = {{ id = "/rec_id", item = "/sku", location = "/site", quantity = {{ path = "/qty", type = "number" }}, uom = "/unit", need-by = "/need_by", "source.supplier" = "/supplier", reason = "/reason", priority = {{ path = "/prio", type = "integer" }} }} }} }},
  {{ validate = "canonical-validator", on-violation = "exception:master-data" }},
  {{ transform = "uom-normalizer", tables = {{ items = "{r}/items.csv", conversions = "{r}/conversions.csv" }} }},
  {{ allocate = "moq-leadtime", batch = {{ max = 500, window = "0ms" }}, tables = {{ moq = "{r}/moq.csv", lead-times = "{r}/lead-times.csv" }} }},
]
routes = [{{ to = "erp" }}]
[sink.erp]
plugin = "http-sink"
config = {{ url = "http://{erp}/requisitions" }}
allowed-hosts = ["{erp}"]
"#,
        plugins = refs.join("plugins").display(),
        cache = root().join("target/bench-cache").display(),
    )
}

/// Sends recommendations `0..n` from `concurrency` senders, one per POST,
/// each answered 202; returns the accept latencies (ms) in order of
/// completion and the wall time (ms) until the last answer.
fn send(url: &str, content_type: &str, n: usize, concurrency: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let started = Instant::now();
    let url = Arc::new(url.to_string());
    let senders: Vec<_> = (0..concurrency)
        .map(|t| {
            let (url, ct) = (url.clone(), content_type.to_string());
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut latencies = Vec::new();
                for i in (t..n).step_by(concurrency) {
                    let at = Instant::now();
                    let mut resp = agent.post(url.as_str()).header("content-type", &ct).send(flat(i).as_bytes())?;
                    anyhow::ensure!(resp.status().as_u16() == 202, "recommendation {i} answered {}", resp.status());
                    // Read to its end, or the agent closes the connection
                    // instead of reusing it (a new TCP connection a message).
                    resp.body_mut().read_to_vec()?;
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for s in senders {
        all.extend(s.join().map_err(|_| anyhow::anyhow!("a sender panicked"))??);
    }
    Ok((all, started.elapsed().as_secs_f64() * 1000.0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits until the ERP holds `n` documents; the time (ms) since `started`.
fn delivered(erp: &str, n: usize, started: Instant) -> anyhow::Result<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    loop {
        let v: Value = agent.get(&format!("{erp}/_admin/received")).call()?.body_mut().read_json()?;
        if v["unique"].as_u64().unwrap_or(0) >= n as u64 {
            anyhow::ensure!(v["duplicates"].as_u64() == Some(0), "the ERP got duplicates: {v}");
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "only {} of {n} delivered", v["unique"]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which system takes the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// `syncline run` with the five plugins, the raw payloads keyed by
    /// `/sku` and `/site` (spread over the pipeline's shards).
    Syncline,
    /// The same without a raw ordering key: every raw payload has one key,
    /// so one shard processes them all (how it ran before raw keys).
    SynclineOneKey,
    /// The hand-written native service.
    Service,
}

/// One run of `n` recommendations through `system`; figures into `f` under
/// `{label}:accepted|delivered|p50|p99|cpu|stored`.
pub fn run(system: System, n: usize, f: &mut Figures) -> anyhow::Result<()> {
    let label = match system {
        System::Syncline => "syncline",
        System::SynclineOneKey => "one-key",
        System::Service => "service",
    };
    let (_erp, erp_url) = e2e::erp("127.0.0.1:0")?;
    let site = tempfile::tempdir()?;
    tables(site.path())?;
    let shared = site.path().join("plugins/shared");
    std::fs::create_dir_all(&shared)?;
    for p in ["json-mapper", "canonical-validator", "uom-normalizer", "moq-leadtime", "http-sink"] {
        std::fs::copy(root().join("target/plugins").join(format!("{p}.wasm")), shared.join(format!("{p}.wasm")))?;
    }
    let erp_authority = erp_url.trim_start_matches("http://");
    let (process, url, content_type): (Proc, String, &str) = match system {
        System::Syncline | System::SynclineOneKey => {
            let path = site.path().join("syncline.toml");
            let mut config = syncline_config(erp_authority, site.path());
            if matches!(system, System::SynclineOneKey) {
                config = config.replace("ordering-key = { raw = [\"/sku\", \"/site\"] }\n", "");
            }
            std::fs::write(&path, config)?;
            let (p, base) = e2e::host(&path, false)?;
            (p, format!("{base}/v1/tenants/acme/pipelines/recs/messages"), "application/vnd.acme.recs+json")
        }
        System::Service => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("service").arg("--erp").arg(&erp_url).arg("--tables").arg(site.path());
            let (p, base) = e2e::spawn(c, "listening on", true)?;
            (p, format!("{base}/recs"), "application/json")
        }
    };
    let pid = process.0.id();
    let (cpu0, threads0) = (procstat::cpu_seconds(pid), procstat::threads_by_full_name(pid));
    let groups0 = procstat::threads(pid);
    let started = Instant::now();
    let (mut latencies, accept_ms) = send(&url, content_type, n, 32)?;
    let deliver_ms = delivered(&erp_url, n, started)?;
    let cpu = procstat::cpu_seconds(pid) - cpu0;
    // How evenly the pipeline's shards shared the work: the busiest shard's
    // share of the CPU of all of them (1 = one shard did everything).
    let shards: Vec<f64> = procstat::threads_by_full_name(pid)
        .into_iter()
        .filter(|(name, _)| name.starts_with("pipeline-recs"))
        .map(|(name, v)| v - threads0.get(&name).copied().unwrap_or(0.0))
        .collect();
    let total: f64 = shards.iter().sum();
    // Where a message's CPU went, by thread (threads named by what they do;
    // the shards and sink workers each summed under one name).
    if matches!(system, System::Syncline) {
        for (group, after) in procstat::threads(pid) {
            let used = after - groups0.get(&group).copied().unwrap_or(0.0);
            f.add(&format!("{label}:thread:{group}"), used * 1e6 / n as f64);
        }
    }
    if total > 0.0 {
        f.add(&format!("{label}:busiest-shard"), shards.iter().copied().fold(0.0, f64::max) / total);
    }
    latencies.sort_by(f64::total_cmp);
    f.add(&format!("{label}:accepted"), n as f64 / (accept_ms / 1000.0));
    f.add(&format!("{label}:delivered"), n as f64 / (deliver_ms / 1000.0));
    f.add(&format!("{label}:p50"), percentile(&latencies, 0.5));
    f.add(&format!("{label}:p99"), percentile(&latencies, 0.99));
    f.add(&format!("{label}:cpu"), cpu * 1e6 / n as f64);
    // The database file once the write-ahead log is checkpointed into it
    // (the store checkpoints every 100 ms).
    std::thread::sleep(Duration::from_secs(1));
    let stored = std::fs::metadata(site.path().join("data/syncline.db")).map_or(0, |m| m.len());
    f.add(&format!("{label}:stored"), stored as f64 / n as f64);
    if std::env::var_os("SYNCLINE_BENCH_KEEP").is_some() {
        eprintln!("workload site kept for inspection: {}", site.keep().display());
    }
    Ok(())
}

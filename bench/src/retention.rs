//! Store size under a steady load with a retention shorter than the run:
//! the bundled example takes waves of messages (batch ingest, bulk sink),
//! and after each wave is delivered and the retention has passed, the size
//! of the store's files on disk is taken. With pruning it stays flat
//! instead of growing with every message ever accepted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::e2e::{self, example_config, rec};

/// One sample: messages sent so far, store files in bytes, messages and
/// deliveries the store still holds.
pub struct Sample {
    /// Messages accepted and delivered so far.
    pub sent: usize,
    /// The database file, bytes.
    pub db: u64,
    /// Its write-ahead log, bytes.
    pub wal: u64,
    /// Messages still held (any state).
    pub messages: u64,
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn held(v: &Value) -> u64 {
    v["store"]["messages"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Sends `waves` waves of `per_wave` messages through the example with
/// `retention`, and samples the store after each.
pub fn run(waves: usize, per_wave: usize, retention: Duration) -> anyhow::Result<Vec<Sample>> {
    let (_erp, erp_url) = e2e::erp("127.0.0.1:0")?;
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    let config = example_config(erp_url.trim_start_matches("http://"), "normal", true)
        // The dedupe window as short as the retention: idempotency keys are
        // kept for the window, and a steady state needs both to be bounded.
        .replace(
            "path = \"data/syncline.db\"",
            &format!("path = \"data/syncline.db\"\nretention = \"{0}ms\"\ndedupe-window = \"{0}ms\"", retention.as_millis()),
        );
    std::fs::write(&path, config)?;
    let (_host, url) = e2e::host(&path, false)?;
    let db = site.path().join("data/syncline.db");
    let wal = site.path().join("data/syncline.db-wal");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let ingest = format!("{url}/v1/tenants/acme/pipelines/replenishment-release/messages:batch");
    let mut samples = Vec::new();
    for wave in 0..waves {
        let first = wave * per_wave;
        // Four senders, batches of 100.
        std::thread::scope(|s| -> anyhow::Result<()> {
            let senders: Vec<_> = (0..4)
                .map(|t| {
                    let (agent, ingest) = (agent.clone(), ingest.clone());
                    s.spawn(move || -> anyhow::Result<()> {
                        let mut i = first + t * 100;
                        while i < first + per_wave {
                            let end = (i + 100).min(first + per_wave);
                            let body: Vec<String> = (i..end).map(rec).collect();
                            let mut resp = agent.post(&ingest).header("content-type", "application/x-ndjson").send(body.join("\n").as_bytes())?;
                            anyhow::ensure!(resp.status().as_u16() == 202, "batch ingest answered {}", resp.status());
                            // Read to its end so the connection is reused.
                            resp.body_mut().read_to_vec()?;
                            i += 400;
                        }
                        Ok(())
                    })
                })
                .collect();
            for s in senders {
                s.join().expect("sender")?;
            }
            Ok(())
        })?;
        let sent = first + per_wave;
        let until = Instant::now() + Duration::from_secs(600);
        loop {
            let v: Value = agent.get(&format!("{erp_url}/_admin/received")).call()?.body_mut().read_json()?;
            if v["unique"].as_u64().unwrap_or(0) >= sent as u64 {
                break;
            }
            anyhow::ensure!(Instant::now() < until, "wave {wave} not delivered in 10 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Past the retention, and one more pruning period.
        std::thread::sleep(retention + (retention / 4).max(Duration::from_secs(1)) + Duration::from_millis(500));
        let ready: Value = agent.get(&format!("{url}/readyz")).call()?.body_mut().read_json().context("readyz")?;
        samples.push(Sample { sent, db: size(&db), wal: size(&wal), messages: held(&ready) });
    }
    Ok(samples)
}

//! Failing downstreams: the bundled example (batch ingest, per-message
//! sink) delivering while the ERP fails one request in ten (each failure
//! retried), against the same run with an ERP that never fails; and the
//! load a failing ERP still gets from Syncline — requests per second while
//! it answers 503 to everything — with the sink's circuit breaker on (the
//! default) and off.

use std::time::Duration;

use serde_json::{json, Value};

use crate::e2e::{self, epoch_ms, example_config, Setup};
use crate::stats::Figures;

/// The example's config with the sink's retry policy (and `extra` lines)
/// in the `[sink.erp]` table.
fn config(erp_authority: &str, extra: &str) -> String {
    let retry = "retry = { attempts = 1000, initial = \"100ms\", max = \"1s\" }";
    example_config(erp_authority, "full", false)
        .lines()
        .filter(|l| !l.starts_with("retry = "))
        .map(|l| if l.starts_with("allowed-hosts = ") { format!("{l}\n{retry}\n{extra}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn set_mode(erp_url: &str, mode: &Value) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent.post(&format!("{erp_url}/_admin/mode")).send_json(mode)?.status();
    anyhow::ensure!(status == 204, "erp-sim refused the mode {mode}: {status}");
    Ok(())
}

fn erp_counts(erp_url: &str) -> anyhow::Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    Ok(agent.get(&format!("{erp_url}/_admin/received")).call()?.body_mut().read_json()?)
}

fn setup(messages: usize) -> Setup {
    Setup { messages, batch: 100, concurrency: 4, sync: "full".into(), bulk: false, native: false, rate: None, window: None }
}

/// `messages` through the example while the ERP fails every `every`th
/// request (`None`: never); records `{label}:delivered` (msg/s, first send
/// to the ERP holding the last message, exactly once) and `{label}:refused`.
pub fn flaky(messages: usize, every: Option<u64>, label: &str, f: &mut Figures) -> anyhow::Result<()> {
    let (_erp, erp_url) = e2e::erp("127.0.0.1:0")?;
    if let Some(n) = every {
        set_mode(&erp_url, &json!({"mode": "503", "every": n}))?;
    }
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    std::fs::write(&path, config(erp_url.trim_start_matches("http://"), ""))?;
    let (_host, url) = e2e::host(&path, false)?;
    let started = epoch_ms();
    e2e::send_all(&url, &setup(messages))?;
    let received = e2e::await_delivery(&erp_url, messages, |k| k.starts_with("acme/replenishment-release/k:B-"), Duration::from_secs(900))?;
    let last = received.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    f.add(&format!("{label}:delivered"), messages as f64 / ((last - started) / 1000.0));
    f.add(&format!("{label}:refused"), erp_counts(&erp_url)?["refused"].as_f64().unwrap_or(0.0));
    Ok(())
}

/// The ERP answers 503 to everything: `messages` are accepted and
/// processed, then for `window` the requests the ERP receives are counted;
/// records `{label}:rps`.
pub fn down(messages: usize, window: Duration, breaker: bool, label: &str, f: &mut Figures) -> anyhow::Result<()> {
    let (_erp, erp_url) = e2e::erp("127.0.0.1:0")?;
    set_mode(&erp_url, &json!({"mode": "503"}))?;
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    let extra = if breaker { "" } else { "breaker = { failures = 0 }" };
    std::fs::write(&path, config(erp_url.trim_start_matches("http://"), extra))?;
    let (_host, url) = e2e::host(&path, false)?;
    e2e::send_all(&url, &setup(messages))?;
    // Once every output waits for the ERP, count what reaches it.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let until = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let v: Value = agent.get(&format!("{url}/readyz")).call()?.body_mut().read_json()?;
        let accepted = v["store"]["messages"]["accepted"].as_u64().unwrap_or(0);
        if accepted == 0 && v["store"]["deliveries"]["pending"].as_u64() == Some(messages as u64) {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < until, "the backlog never built up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = erp_counts(&erp_url)?["requests"].as_f64().unwrap_or(0.0);
    std::thread::sleep(window);
    let after = erp_counts(&erp_url)?["requests"].as_f64().unwrap_or(0.0);
    f.add(&format!("{label}:rps"), (after - before) / window.as_secs_f64());
    Ok(())
}

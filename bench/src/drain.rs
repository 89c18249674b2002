//! Backlog drain: the ERP is down while messages are accepted and
//! processed, so every output waits in the delivery queue (retrying with
//! backoff capped at 1 s, the circuit breaker probing every second); then the ERP comes up and the figure is how long
//! the queue takes to empty, exactly once.

use std::time::Duration;

use serde_json::Value;

use crate::e2e::{self, epoch_ms, example_config, Setup};
use crate::stats::Figures;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One drain of `messages`; records `drain-s` (ERP up to queue empty),
/// `drain-rate` (msg/s) and `first` (ms from ERP up to first receipt).
pub fn run(messages: usize, f: &mut Figures) -> anyhow::Result<()> {
    let authority = format!("127.0.0.1:{}", free_port()?);
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    // Backoff and the breaker's probe both capped at 1 s.
    let retry = "retry = { attempts = 1000, initial = \"100ms\", max = \"1s\" }\nbreaker = { open-for = \"1s\", max-open-for = \"1s\" }";
    let config = example_config(&authority, "full", true)
        .lines()
        .filter(|l| !l.starts_with("retry = "))
        .map(|l| {
            if l.starts_with("allowed-hosts = ") {
                format!("{l}\n{retry}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, config)?;
    let (_host, url) = e2e::host(&path, false)?;
    // Accept and process everything while the ERP is down.
    let setup = Setup {
        messages,
        batch: 100,
        concurrency: 4,
        sync: "full".into(),
        bulk: true,
        native: false,
        rate: None,
        window: None,
    };
    e2e::send_all(&url, &setup)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let until = std::time::Instant::now() + Duration::from_secs(900);
    loop {
        let v: Value = agent
            .get(&format!("{url}/readyz"))
            .call()?
            .body_mut()
            .read_json()?;
        let queued = v["store"]["deliveries"]["pending"].as_u64().unwrap_or(0);
        let accepted = v["store"]["messages"]["accepted"].as_u64().unwrap_or(0);
        if accepted == 0 && queued == messages as u64 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < until,
            "the backlog never built up: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_erp, erp_url) = e2e::erp(&authority)?;
    let up = epoch_ms();
    let received = e2e::await_delivery(
        &erp_url,
        messages,
        |k| k.starts_with("acme/replenishment-release/k:B-"),
        Duration::from_secs(900),
    )?;
    let last = received.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let first = received.iter().map(|(_, t)| *t).fold(f64::MAX, f64::min);
    f.add("drain-s", (last - up) / 1000.0);
    f.add("drain-rate", messages as f64 / ((last - up) / 1000.0));
    f.add("first", (first - up).max(0.0));
    Ok(())
}

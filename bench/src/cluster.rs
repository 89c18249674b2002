//! Several hosts on one store: the bundled example's pipeline with 1, 2 or
//! 3 `syncline run` processes on one NATS JetStream server (or one process
//! on the embedded store, for comparison), load sent to the processes in
//! turn, every message checked at the ERP exactly once. Prints messages a
//! second and the CPU each message costs the hosts (all of them, and each
//! one's share) and the NATS server — on a 2-core machine the total rate
//! cannot grow with processes, but the CPU per message shows whether it
//! would where each process has cores of its own.

#[path = "../../host/src/store/nats/test_server.rs"]
#[allow(dead_code)]
mod nats_server;

use std::time::Duration;

use anyhow::bail;

use crate::e2e::{await_delivery, epoch_ms, erp, example_config, host, rec};
use crate::procstat;

/// What one run does (`syncline-bench cluster`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Setup {
    /// Host processes (1 on the embedded store).
    #[arg(long, default_value_t = 1)]
    pub hosts: usize,
    /// `nats` or `sqlite`.
    #[arg(long, default_value = "nats")]
    pub store: String,
    /// Messages to send.
    #[arg(long, default_value_t = 5_000)]
    pub messages: usize,
    /// Messages per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Messages delivered a second, first accepted to last delivered.
    pub delivered: f64,
    /// Host CPU a message (µs), all processes together.
    pub host_us: f64,
    /// Each process's share of the hosts' CPU (%).
    pub shares: Vec<f64>,
    /// The NATS server's CPU a message (µs).
    pub nats_us: f64,
    /// On NATS, a process started after the run: its first `/metrics`
    /// (which reads every trace kept) and its second (what came since), ms.
    pub scrapes_ms: Option<(f64, f64)>,
}

/// Runs `setup` once.
///
/// # Errors
///
/// A process that does not start, a refused request, or a message lost or
/// delivered twice.
pub fn run(setup: &Setup) -> anyhow::Result<Figures> {
    let nats = match setup.store.as_str() {
        "nats" => Some(nats_server::NatsServer::start()),
        "sqlite" if setup.hosts == 1 => None,
        "sqlite" => bail!("the embedded store runs one host process"),
        other => bail!("unknown store `{other}`: nats or sqlite"),
    };
    let (_erp, erp_url) = erp("127.0.0.1:0")?;
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    let mut config = example_config(erp_url.trim_start_matches("http://"), "full", false);
    if let Some(n) = &nats {
        config = config.replace("path = \"data/syncline.db\"\nsync = \"full\"", &format!("kind = \"nats\"\nurl = \"{}\"", n.url()));
    }
    std::fs::write(&path, config)?;
    let mut hosts = Vec::new();
    for _ in 0..setup.hosts {
        hosts.push(host(&path, false)?);
    }
    let urls: Vec<String> = hosts.iter().map(|(_, u)| u.clone()).collect();
    if nats.is_some() {
        balanced(&urls[0], setup.hosts)?;
    }
    let pids: Vec<u32> = hosts.iter().map(|(p, _)| p.0.id()).collect();
    let nats_pid = nats.as_ref().and_then(|n| n.pid());
    let cpu = |pid: u32| procstat::cpu_seconds(pid);
    let before: Vec<f64> = pids.iter().map(|p| cpu(*p)).collect();
    let nats_before = nats_pid.map_or(0.0, cpu);
    let start = epoch_ms();
    send(&urls, setup)?;
    let received = await_delivery(&erp_url, setup.messages, |_| true, Duration::from_secs(1800))?;
    let last = received.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let used: Vec<f64> = pids.iter().zip(&before).map(|(p, b)| cpu(*p) - b).collect();
    let total: f64 = used.iter().sum();
    let n = setup.messages as f64;
    let scrapes_ms = match &nats {
        Some(_) => Some(scrapes(&path)?),
        None => None,
    };
    Ok(Figures {
        delivered: n / ((last - start).max(1.0) / 1000.0),
        host_us: total * 1e6 / n,
        shares: used.iter().map(|u| u * 100.0 / total.max(1e-9)).collect(),
        nats_us: (nats_pid.map_or(0.0, cpu) - nats_before) * 1e6 / n,
        scrapes_ms,
    })
}

/// Starts one more process on `config` and times its first two `/metrics`.
fn scrapes(config: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let (_process, url) = host(config, false)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let once = || -> anyhow::Result<f64> {
        let started = std::time::Instant::now();
        let mut r = agent.get(&format!("{url}/metrics")).call()?;
        r.body_mut().read_to_string()?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    Ok((once()?, once()?))
}

/// Waits until `hosts` processes each hold part of every queue's slots.
fn balanced(url: &str, hosts: usize) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let v: serde_json::Value = agent.get(&format!("{url}/v1/cluster")).call()?.body_mut().read_json()?;
        let processes = v["processes"].as_array().cloned().unwrap_or_default();
        let each_holds = processes.iter().all(|p| p["holds"].as_array().is_some_and(|h| !h.is_empty()));
        if processes.len() == hosts && each_holds {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            bail!("{hosts} processes did not share the queues within 120 s: {v}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends messages `0..n` in batches, request `r` to host `r % hosts`, one
/// sender a host.
fn send(urls: &[String], setup: &Setup) -> anyhow::Result<()> {
    let requests = setup.messages.div_ceil(setup.batch);
    let senders: Vec<_> = (0..urls.len())
        .map(|h| {
            let (urls, setup) = (urls.to_vec(), setup.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                for r in (h..requests).step_by(urls.len()) {
                    let (lo, hi) = (r * setup.batch, ((r + 1) * setup.batch).min(setup.messages));
                    let body: Vec<String> = (lo..hi).map(rec).collect();
                    let mut resp = agent
                        .post(&format!("{}/v1/tenants/acme/pipelines/replenishment-release/messages:batch", urls[h]))
                        .header("content-type", "application/x-ndjson")
                        .send(body.join("\n").as_bytes())?;
                    if resp.status().as_u16() != 202 {
                        bail!("ingest answered {}", resp.status());
                    }
                    resp.body_mut().read_to_vec()?;
                }
                Ok(())
            })
        })
        .collect();
    for s in senders {
        s.join().map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    Ok(())
}

//! End to end over loopback: `erp-sim` and `syncline run` (or this binary's
//! `serve --native`, the same host with native stages) as separate
//! processes, load sent from this one. Every run checks that the ERP holds
//! each message exactly once and nothing else; a run that loses or
//! duplicates a message is an error, not a figure.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::procstat;
use crate::stats::{percentile, Figures};

/// What one end-to-end run does (also `syncline-bench e2e`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Setup {
    /// Messages to send.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Messages per request (1: single-message ingest).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Store sync mode: `full` or `normal`.
    #[arg(long, default_value = "full")]
    pub sync: String,
    /// Deliver with bulk requests (one HTTP request per sink batch).
    #[arg(long)]
    pub bulk: bool,
    /// Native stages instead of Wasm components.
    #[arg(long)]
    pub native: bool,
    /// Open loop at this many messages per second (default: as fast as accepted).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The allocate stage's batch window instead of the example's 100ms.
    #[arg(long)]
    pub window: Option<String>,
}

/// A killed-on-drop child process.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Milliseconds since the epoch, fractional.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Starts `cmd` and waits for the line holding `marker`; returns the URL on it.
pub(crate) fn spawn(mut cmd: Command, marker: &str, stderr: bool) -> anyhow::Result<(Proc, String)> {
    use std::io::{BufRead, BufReader};
    if stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn()?;
    let out: Box<dyn std::io::Read + Send> = if stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let child = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    let said = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(line.clone());
            }
            let mut l = log.lock().unwrap();
            if l.len() < 50 {
                l.push(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).map_err(|_| {
        anyhow::anyhow!(
            "the process did not start; it said:\n{}",
            said.lock().unwrap().join("\n")
        )
    })?;
    let addr = line[line.find("http://").context("no URL on the start line")?..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    Ok((child, addr))
}

/// Starts the simulated ERP on `listen` (`127.0.0.1:0` picks a port).
pub fn erp(listen: &str) -> anyhow::Result<(Proc, String)> {
    let mut c = Command::new(bin_dir().join("erp-sim"));
    c.args(["--listen", listen]);
    spawn(c, "listening", false)
}

/// Starts the host on the config at `config`; native stages with `native`.
pub fn host(config: &Path, native: bool) -> anyhow::Result<(Proc, String)> {
    let mut c = if native {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("serve").arg(config);
        c
    } else {
        let mut c = Command::new(bin_dir().join("syncline"));
        c.arg("run").arg("--no-watch").arg(config);
        c
    };
    c.env("ERP_TOKEN", "bench").env("SYNCLINE_LOG", "warn");
    spawn(c, "syncline listening on", true)
}

/// The bundled example's config, made to run in `site` against the ERP at
/// `erp_authority`, with the store in `sync` mode and the sink in bulk mode
/// when asked.
pub fn example_config(erp_authority: &str, sync: &str, bulk: bool) -> String {
    let ex = root().join("examples/forecast-release");
    std::fs::read_to_string(ex.join("syncline.toml"))
        .expect("the bundled example")
        .replace("127.0.0.1:18080", "127.0.0.1:0")
        .replace("127.0.0.1:19001", erp_authority)
        .replace(
            "path = \"data/syncline.db\"",
            &format!("path = \"data/syncline.db\"\nsync = \"{sync}\""),
        )
        .replace(
            "dir = \"plugins\"",
            &format!(
                "dir = \"{}\"\ncache-dir = \"{}\"",
                ex.join("plugins").display(),
                root().join("target/bench-cache").display()
            ),
        )
        .replace("ref/", &format!("{}/ref/", ex.display()))
        .replace(
            "config = { url = ",
            if bulk {
                "config = { bulk = \"true\", url = "
            } else {
                "config = { url = "
            },
        )
}

const ITEMS: [&str; 3] = ["SKU-100", "SKU-200", "SKU-300"];

/// Canonical replenishment recommendation number `i` (150 item/location keys).
pub fn rec(i: usize) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": format!("B-{i}"),
           "body": {"id": format!("R-{i}"), "item": ITEMS[i % 3], "location": format!("DC-{}", i % 50),
                    "quantity": (i % 97) as f64 + 1.0, "uom": "EA", "need-by": "2026-12-21", "source": {"supplier": "SUP-7"},
                    "reason": "below-safety-stock", "priority": 2}})
    .to_string()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends messages `0..n` to the example pipeline at `url`: request `r`
/// (messages `r*batch..`) goes from sender `r % concurrency`, at
/// `start + r*batch/rate` in open loop. Returns each key's send time (ms):
/// the scheduled time in open loop, the actual one otherwise.
fn send(url: &str, setup: &Setup, start_ms: f64) -> anyhow::Result<HashMap<String, f64>> {
    let lines: Arc<Vec<String>> = Arc::new((0..setup.messages).map(rec).collect());
    let requests = setup.messages.div_ceil(setup.batch);
    let senders: Vec<_> = (0..setup.concurrency)
        .map(|t| {
            let (lines, url, agent, setup) =
                (lines.clone(), url.to_string(), agent(), setup.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<(usize, f64)>> {
                let mut sent = Vec::new();
                for r in (t..requests).step_by(setup.concurrency) {
                    let (lo, hi) = (r * setup.batch, ((r + 1) * setup.batch).min(lines.len()));
                    let at = match setup.rate {
                        Some(rate) => {
                            let due = start_ms + lo as f64 * 1000.0 / rate;
                            let wait = due - epoch_ms();
                            if wait > 0.0 {
                                std::thread::sleep(Duration::from_secs_f64(wait / 1000.0));
                            }
                            due
                        }
                        None => epoch_ms(),
                    };
                    let (path, body, ct) = if setup.batch == 1 {
                        ("messages", lines[lo].clone(), "application/json")
                    } else {
                        (
                            "messages:batch",
                            lines[lo..hi].join("\n"),
                            "application/x-ndjson",
                        )
                    };
                    let mut resp = agent
                        .post(&format!(
                            "{url}/v1/tenants/acme/pipelines/replenishment-release/{path}"
                        ))
                        .header("content-type", ct)
                        .send(body.as_bytes())?;
                    if resp.status().as_u16() != 202 {
                        bail!("ingest answered {}", resp.status());
                    }
                    // Read to its end so the connection is reused.
                    resp.body_mut().read_to_vec()?;
                    sent.extend((lo..hi).map(|k| (k, at)));
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent_at = HashMap::with_capacity(setup.messages);
    for s in senders {
        for (k, at) in s
            .join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))??
        {
            sent_at.insert(format!("acme/replenishment-release/k:B-{k}/0/0"), at);
        }
    }
    Ok(sent_at)
}

/// Sends messages `0..setup.messages` as fast as they are accepted.
///
/// # Errors
///
/// A refused request.
pub fn send_all(url: &str, setup: &Setup) -> anyhow::Result<()> {
    send(
        url,
        &Setup {
            rate: None,
            ..setup.clone()
        },
        epoch_ms(),
    )
    .map(drop)
}

/// Waits until the ERP holds `n` distinct documents, then checks that they
/// are exactly the expected keys, each received once; returns each
/// document's receipt time by key.
pub fn await_delivery(
    erp_url: &str,
    n: usize,
    expected: impl Fn(&str) -> bool,
    limit: Duration,
) -> anyhow::Result<Vec<(String, f64)>> {
    let agent = agent();
    let started = Instant::now();
    loop {
        let v: Value = agent
            .get(&format!("{erp_url}/_admin/received"))
            .call()?
            .body_mut()
            .read_json()?;
        if v["unique"].as_u64().unwrap_or(0) >= n as u64 {
            break;
        }
        if started.elapsed() > limit {
            bail!(
                "only {} of {n} messages delivered after {limit:?}",
                v["unique"]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: Value = agent
        .get(&format!("{erp_url}/_admin/received?keys=true&times=true"))
        .call()?
        .body_mut()
        .read_json()?;
    let (keys, times) = (
        v["keys"].as_array().context("keys")?,
        v["times"].as_array().context("times")?,
    );
    let duplicates = v["duplicates"].as_u64().unwrap_or(0);
    if keys.len() != n || duplicates != 0 {
        bail!("the ERP holds {} documents for {n} messages, {duplicates} duplicate requests: not exactly once", keys.len());
    }
    keys.iter()
        .zip(times)
        .map(|(k, t)| {
            let k = k.as_str().unwrap_or_default().to_string();
            anyhow::ensure!(expected(&k), "the ERP received an unexpected key {k}");
            Ok((k, t.as_f64().unwrap_or(0.0)))
        })
        .collect()
}

/// One run: figures recorded into `f` (accepted and delivered msg/s,
/// p50/p99/p99.9 ms, CPU µs per message, peak RSS MiB); returns the host's
/// CPU seconds per thread group.
pub fn run(setup: &Setup, f: &mut Figures) -> anyhow::Result<BTreeMap<String, f64>> {
    let (_erp, erp_url) = erp("127.0.0.1:0")?;
    let site = tempfile::tempdir()?;
    let path = site.path().join("syncline.toml");
    let mut config = example_config(
        erp_url.trim_start_matches("http://"),
        &setup.sync,
        setup.bulk,
    );
    if let Some(w) = &setup.window {
        config = config.replace("window = \"100ms\"", &format!("window = \"{w}\""));
    }
    std::fs::write(&path, config)?;
    let (host, url) = host(&path, setup.native)?;
    let pid = host.0.id();
    let (cpu0, threads0) = (procstat::cpu_seconds(pid), procstat::threads(pid));
    let start = epoch_ms();
    let sent_at = send(&url, setup, start)?;
    let accepted_ms = epoch_ms() - start;
    let received = await_delivery(
        &erp_url,
        setup.messages,
        |k| sent_at.contains_key(k),
        Duration::from_secs(900),
    )?;
    let cpu = procstat::cpu_seconds(pid) - cpu0;
    let threads: BTreeMap<String, f64> = procstat::threads(pid)
        .into_iter()
        .map(|(k, v)| (k.clone(), v - threads0.get(&k).copied().unwrap_or(0.0)))
        .collect();
    let last = received.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let mut latencies: Vec<f64> = received
        .iter()
        .map(|(k, t)| (t - sent_at[k]).max(0.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let n = setup.messages as f64;
    f.add("accepted", n / (accepted_ms / 1000.0));
    f.add("delivered", n / ((last - start).max(1.0) / 1000.0));
    f.add("p50", percentile(&latencies, 0.5));
    f.add("p99", percentile(&latencies, 0.99));
    f.add("p999", percentile(&latencies, 0.999));
    f.add("cpu", cpu * 1e6 / n);
    f.add("rss", procstat::peak_rss_mib(pid));
    Ok(threads)
}

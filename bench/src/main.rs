//! `syncline-bench`: measures the quick-start pipeline.
//!
//! - `e2e`: starts `erp-sim` and `syncline run` (release binaries next to this
//!   one) on loopback with the durable embedded store, sends replenishment
//!   recommendations as NDJSON batches (or one per request) from a separate
//!   process, and reports accepted and delivered messages per second and
//!   ingest-to-delivery latency. It fails if the ERP did not receive every
//!   message exactly once.
//! - `stages`: the same three stages (json-mapper, canonical-validator,
//!   moq-leadtime) in process, as Wasm components through the runtime and as
//!   native Rust (the same plugin crates compiled natively), for the ratio.
//!
//! Run with `./scripts/bench`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use syncline::runtime::{EngineOptions, Limits, PluginContext, Runtime};
use syncline_model::table::RefTable;
use syncline_model::{json as mjson, Message};
use syncline_sdk::{Allocator, Transformer, Validator};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// End to end over loopback HTTP with the durable store.
    E2e {
        /// Messages to send.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Messages per request (1 = single-message ingest).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Concurrent senders.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Store sync mode: full or normal.
        #[arg(long, default_value = "full")]
        sync: String,
        /// Deliver with bulk requests (one HTTP request per sink batch).
        #[arg(long)]
        bulk: bool,
    },
    /// Cost of one plugin call per kind (1, 10, 100 lines), limits armed,
    /// against the same logic compiled natively; and compile cold vs cached.
    Micro {
        /// Timed repetitions per figure (the median of `runs` batches is reported).
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        /// Batches (median, min and max are over these).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Hot-reload latency: file rename to the new version live.
    Reload {
        /// Swaps per case.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// The three stages in process: Wasm against native.
    Stages {
        /// Messages per run.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Runs (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

const ITEMS: [&str; 3] = ["SKU-100", "SKU-200", "SKU-300"];

fn rec(i: usize) -> String {
    json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": format!("B-{i}"),
           "body": {"id": format!("R-{i}"), "item": ITEMS[i % 3], "location": format!("DC-{}", i % 50),
                    "quantity": (i % 97) as f64 + 1.0, "uom": "EA", "need-by": "2026-12-21", "source": {"supplier": "SUP-7"},
                    "reason": "below-safety-stock", "priority": 2}})
    .to_string()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn spawn(mut cmd: Command, marker: &str, stderr: bool) -> anyhow::Result<(Child, String)> {
    use std::io::{BufRead, BufReader};
    if stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn()?;
    let out: Box<dyn std::io::Read + Send> =
        if stderr { Box::new(child.stderr.take().unwrap()) } else { Box::new(child.stdout.take().unwrap()) };
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(line.clone());
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).context("the process did not start")?;
    let addr = line[line.find("http://").unwrap()..].split_whitespace().next().unwrap().to_string();
    Ok((child, addr))
}

fn e2e(messages: usize, batch: usize, concurrency: usize, sync: &str, bulk: bool) -> anyhow::Result<()> {
    let bin = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let (mut erp, erp_url) = spawn(
        {
            let mut c = Command::new(bin.join("erp-sim"));
            c.args(["--listen", "127.0.0.1:0"]);
            c
        },
        "listening",
        false,
    )?;
    let authority = erp_url.trim_start_matches("http://").to_string();
    let site = tempfile::tempdir()?;
    let ex = root().join("examples/forecast-release");
    let config = std::fs::read_to_string(ex.join("syncline.toml"))?
        .replace("127.0.0.1:18080", "127.0.0.1:0")
        .replace("127.0.0.1:19001", &authority)
        .replace("path = \"data/syncline.db\"", &format!("path = \"data/syncline.db\"\nsync = \"{sync}\""))
        .replace("dir = \"plugins\"", &format!("dir = \"{}\"\ncache-dir = \"{}\"", ex.join("plugins").display(), root().join("target/bench-cache").display()))
        .replace("ref/", &format!("{}/ref/", ex.display()))
        .replace("config = { url = ", if bulk { "config = { bulk = \"true\", url = " } else { "config = { url = " });
    std::fs::write(site.path().join("syncline.toml"), config)?;
    let mut host_cmd = Command::new(bin.join("syncline"));
    host_cmd.arg("run").arg(site.path().join("syncline.toml")).env("ERP_TOKEN", "bench").env("SYNCLINE_LOG", "warn");
    let (mut host, url) = spawn(host_cmd, "syncline listening on", true)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();

    let lines: Arc<Vec<String>> = Arc::new((0..messages).map(rec).collect());
    let started = Instant::now();
    let per = messages.div_ceil(concurrency);
    let senders: Vec<_> = (0..concurrency)
        .map(|t| {
            let (lines, url, agent) = (lines.clone(), url.clone(), agent.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<(usize, u64)>> {
                let mut sent = Vec::new();
                let (lo, hi) = (t * per, ((t + 1) * per).min(lines.len()));
                let mut i = lo;
                while i < hi {
                    let j = (i + batch).min(hi);
                    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
                    let (path, body, ct) = if batch == 1 {
                        ("messages", lines[i].clone(), "application/json")
                    } else {
                        ("messages:batch", lines[i..j].join("\n"), "application/x-ndjson")
                    };
                    let resp = agent
                        .post(&format!("{url}/v1/tenants/acme/pipelines/replenishment-release/{path}"))
                        .header("content-type", ct)
                        .send(body.as_bytes())?;
                    if resp.status().as_u16() != 202 {
                        bail!("ingest answered {}", resp.status());
                    }
                    sent.extend((i..j).map(|k| (k, at)));
                    i = j;
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent_at = HashMap::new();
    for s in senders {
        for (k, at) in s.join().unwrap()? {
            sent_at.insert(format!("B-{k}/0/0"), at);
        }
    }
    let accepted_secs = started.elapsed().as_secs_f64();
    let received = loop {
        let v: Value = agent.get(&format!("{erp_url}/_admin/received?keys=true&times=true")).call()?.body_mut().read_json()?;
        if v["unique"].as_u64() == Some(messages as u64) {
            break v;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {} of {messages} delivered after 10 minutes", v["unique"]);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let delivered_secs = started.elapsed().as_secs_f64();
    let keys = received["keys"].as_array().unwrap();
    let times = received["times"].as_array().unwrap();
    let mut latencies: Vec<u64> = Vec::with_capacity(messages);
    for (k, t) in keys.iter().zip(times) {
        let sent = sent_at.get(k.as_str().unwrap()).with_context(|| format!("the ERP received an unexpected key {k}"))?;
        latencies.push(t.as_u64().unwrap().saturating_sub(*sent));
    }
    latencies.sort_unstable();
    let _ = host.kill();
    let _ = erp.kill();
    let duplicates = received["duplicates"].as_u64().unwrap_or(0);
    println!(
        "| e2e{} | {} | {messages} | {concurrency} | {sync} | {:.0} | {:.0} | {} | {} | {} | {} |",
        if bulk { ", bulk sink" } else { "" },
        if batch == 1 { "single".to_string() } else { format!("batch {batch}") },
        messages as f64 / accepted_secs,
        messages as f64 / delivered_secs,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        if duplicates == 0 && keys.len() == messages { "yes".to_string() } else { format!("NO ({duplicates} duplicate requests)") }
    );
    Ok(())
}

fn tables() -> anyhow::Result<BTreeMap<String, Arc<RefTable>>> {
    let ex = root().join("examples/forecast-release/ref");
    let mut out = BTreeMap::new();
    for (name, file) in [("moq", "moq.csv"), ("lead-times", "lead-times.csv")] {
        let t = RefTable::from_csv(&std::fs::read_to_string(ex.join(file))?).map_err(anyhow::Error::msg)?;
        out.insert(name.to_string(), Arc::new(t));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn stages(messages: usize, runs: usize) -> anyhow::Result<()> {
    let inputs: Vec<Message> = (0..messages).map(|i| mjson::from_str(&rec(i)).unwrap()).collect();
    let plugins = root().join("target/plugins");
    let rt = Runtime::new(&EngineOptions::default(), Some(&root().join("target/bench-cache")))?;
    let bind = |name: &str, tables: BTreeMap<String, Arc<RefTable>>| -> anyhow::Result<_> {
        let p = rt.load_file(&plugins.join(format!("{name}.wasm")))?;
        let mut ctx = PluginContext::new(name);
        ctx.tables = tables;
        ctx.limits = Limits { instances: 1, ..Limits::default() };
        ctx.config = syncline::runtime::flatten_config(&json!({"kind": "replenishment-recommendation"}));
        rt.bind(p, ctx)
    };
    let mapper = bind("json-mapper", BTreeMap::new())?;
    let validator = bind("canonical-validator", BTreeMap::new())?;
    let allocator = bind("moq-leadtime", tables()?)?;

    let wasm_run = || -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut valid = Vec::with_capacity(messages);
        for m in &inputs {
            for o in mapper.transform(m.clone())? {
                if validator.validate(o.clone())?.is_empty() {
                    valid.push(o);
                }
            }
        }
        let mut out = 0usize;
        for chunk in valid.chunks(500) {
            for o in allocator.allocate(chunk.to_vec())? {
                out += mjson::to_string(&o).len();
            }
        }
        std::hint::black_box(out);
        Ok(messages as f64 / started.elapsed().as_secs_f64())
    };

    let host = syncline_sdk::testing::TestHost::new()
        .config("kind", "replenishment-recommendation")
        .table_csv("moq", &std::fs::read_to_string(root().join("examples/forecast-release/ref/moq.csv"))?)
        .table_csv("lead-times", &std::fs::read_to_string(root().join("examples/forecast-release/ref/lead-times.csv"))?)
        .install();
    let native_run = || -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut valid = Vec::with_capacity(messages);
        for m in &inputs {
            for o in json_mapper::JsonMapper::transform(m.clone()).map_err(anyhow::Error::msg)? {
                if canonical_validator::CanonicalValidator::validate(o.clone()).is_empty() {
                    valid.push(o);
                }
            }
        }
        let mut out = 0usize;
        for chunk in valid.chunks(500) {
            for o in moq_leadtime::MoqLeadtime::allocate(chunk.to_vec()).map_err(anyhow::Error::msg)? {
                out += mjson::to_string(&o).len();
            }
        }
        std::hint::black_box(out);
        Ok(messages as f64 / started.elapsed().as_secs_f64())
    };
    wasm_run()?;
    native_run()?;
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    for _ in 0..runs {
        wasm.push(wasm_run()?);
        native.push(native_run()?);
    }
    drop(host);
    let (w, n) = (median(wasm.clone()), median(native.clone()));
    let range = |v: &[f64]| format!("{:.0}–{:.0}", v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(0.0, f64::max));
    println!("| stages (map, validate, allocate) | {messages} msgs x {runs} runs | Wasm {w:.0} msg/s ({}) | native {n:.0} msg/s ({}) | ratio {:.2} |", range(&wasm), range(&native), w / n);
    Ok(())
}

/// µs per call of `f`: median, min and max over `runs` batches of `iterations`.
fn time_calls(iterations: usize, runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64, f64)> {
    for _ in 0..iterations.min(200) {
        f()?;
    }
    let mut per = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            f()?;
        }
        per.push(started.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    let (lo, hi) = (per.iter().copied().fold(f64::MAX, f64::min), per.iter().copied().fold(0.0, f64::max));
    Ok((median(per), lo, hi))
}

/// A planning export of `n` lines (raw JSON) for json-mapper.
fn raw_export(n: usize) -> Message {
    let lines: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"rec_id": "R-{i}", "sku": "SKU-100", "site": "DC-{i}", "qty": "{}", "need_by": "2026-12-21", "supplier": "SUP-7", "reason": "low", "prio": 2}}"#, i + 1))
        .collect();
    let text = format!(r#"{{"recommendations": [{}]}}"#, lines.join(","));
    let mut m = Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "application/json".into(), data: text.into_bytes() }));
    m.id = "01JBENCH000000000000000000".into();
    m.tenant = "acme".into();
    m
}

fn mapper_config() -> Value {
    json!({"kind": "replenishment-recommendation", "records": "/recommendations",
           "fields": {"id": "/rec_id", "item": "/sku", "location": "/site", "quantity": {"path": "/qty", "type": "number"},
                      "uom": {"path": "/unit", "default": "EA"}, "need-by": "/need_by", "source.supplier": "/supplier",
                      "reason": "/reason", "priority": {"path": "/prio", "type": "integer"}}})
}

fn micro(iterations: usize, runs: usize) -> anyhow::Result<()> {
    use syncline_sdk::testing::TestHost;
    let plugins = root().join("target/plugins");
    let cache = tempfile::tempdir()?;
    let rt = Runtime::new(&EngineOptions::default(), Some(cache.path()))?;
    let bind = |name: &str, config: Value, tables: BTreeMap<String, Arc<RefTable>>| -> anyhow::Result<_> {
        let p = rt.load_file(&plugins.join(format!("{name}.wasm")))?;
        let mut ctx = PluginContext::new(name);
        ctx.tables = tables;
        ctx.limits = Limits { instances: 1, ..Limits::default() };
        ctx.config = syncline::runtime::flatten_config(&config);
        rt.bind(p, ctx)
    };
    let mapper = bind("json-mapper", mapper_config(), BTreeMap::new())?;
    let validator = bind("canonical-validator", json!({}), BTreeMap::new())?;
    let allocator = bind("moq-leadtime", json!({}), tables()?)?;
    let tagger = bind("tagger-v1", json!({}), BTreeMap::new())?;
    let ex = root().join("examples/forecast-release/ref");
    let mut host = TestHost::new()
        .table_csv("moq", &std::fs::read_to_string(ex.join("moq.csv"))?)
        .table_csv("lead-times", &std::fs::read_to_string(ex.join("lead-times.csv"))?);
    for (k, v) in syncline::runtime::flatten_config(&mapper_config()) {
        host = host.config(&k, &v);
    }
    let _host = host.install();

    println!("| call | lines | Wasm µs/call median (min–max) | native µs/call median (min–max) | Wasm ÷ native time |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, lines: usize, w: (f64, f64, f64), n: Option<(f64, f64, f64)>| {
        let native = n.map_or("—".to_string(), |n| format!("{:.2} ({:.2}–{:.2})", n.0, n.1, n.2));
        let ratio = n.map_or("—".to_string(), |n| format!("{:.1}", w.0 / n.0));
        println!("| {what} | {lines} | {:.2} ({:.2}–{:.2}) | {native} | {ratio} |", w.0, w.1, w.2);
    };
    let one = mjson::from_str(&rec(1))?;
    let w = time_calls(iterations, runs, || Ok(drop(tagger.transform(one.clone())?)))?;
    row("no-op transform (tagger: one header)", 1, w, None);
    for lines in [1, 10, 100] {
        let its = (iterations / lines).max(20);
        let raw = raw_export(lines);
        let w = time_calls(its, runs, || Ok(drop(mapper.transform(raw.clone())?)))?;
        let n = time_calls(its, runs, || Ok(drop(json_mapper::JsonMapper::transform(raw.clone()).map_err(anyhow::Error::msg)?)))?;
        row("transform: json-mapper (raw export of N lines)", lines, w, Some(n));
        let batch: Vec<Message> = (0..lines).map(|i| mjson::from_str(&rec(i)).unwrap()).collect();
        let w = time_calls(its, runs, || Ok(drop(allocator.allocate(batch.clone())?)))?;
        let n = time_calls(its, runs, || Ok(drop(moq_leadtime::MoqLeadtime::allocate(batch.clone()).map_err(anyhow::Error::msg)?)))?;
        row("allocate: moq-leadtime (batch of N)", lines, w, Some(n));
        let w = time_calls(its, runs, || {
            for m in &batch {
                drop(validator.validate(m.clone())?);
            }
            Ok(())
        })?;
        let n = time_calls(its, runs, || {
            for m in &batch {
                drop(canonical_validator::CanonicalValidator::validate(m.clone()));
            }
            Ok(())
        })?;
        row("validate: canonical-validator (N calls)", lines, w, Some(n));
    }

    // Compile: cold (no cache) against a load from the on-disk cache.
    let bytes = std::fs::read(plugins.join("json-mapper.wasm"))?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..runs.max(3) {
        let dir = tempfile::tempdir()?;
        let rt = Runtime::new(&EngineOptions { total_instances: 8 }, Some(dir.path()))?;
        let started = Instant::now();
        rt.load_bytes("json-mapper", &bytes)?;
        cold.push(started.elapsed().as_secs_f64() * 1e3);
        let rt2 = Runtime::new(&EngineOptions { total_instances: 8 }, Some(dir.path()))?;
        let started = Instant::now();
        let p = rt2.load_bytes("json-mapper", &bytes)?;
        warm.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(p.cache == syncline::runtime::CacheOutcome::Hit, "run {i}: the second load missed the cache");
    }
    let span = |v: &[f64]| format!("{:.2} ({:.2}–{:.2})", median(v.to_vec()), v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(0.0, f64::max));
    println!();
    println!("| load json-mapper ({:.0} KiB) | ms median (min–max) |", bytes.len() as f64 / 1024.0);
    println!("|---|---|");
    println!("| compile, cache cold | {} |", span(&cold));
    println!("| load from the on-disk cache (incl. digest, world check, link) | {} |", span(&warm));
    Ok(())
}

/// `bytes` with a custom section of `len` bytes appended (a new digest, the
/// same code): component sections may follow in any order.
fn with_custom_section(bytes: &[u8], len: usize, seed: u64) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { b } else { b | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"syncline-bench-padding";
    let mut payload = Vec::with_capacity(len + 8);
    payload.extend_from_slice(&seed.to_le_bytes());
    payload.resize(len.max(8), 0x5a);
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn reload(runs: usize) -> anyhow::Result<()> {
    use syncline::pipeline::Engine;
    use syncline::store::{SqliteStore, Store};
    let bin = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let mut erp_cmd = Command::new(bin.join("erp-sim"));
    erp_cmd.args(["--listen", "127.0.0.1:0"]);
    let (mut erp, erp_url) = spawn(erp_cmd, "listening", false)?;
    let authority = erp_url.trim_start_matches("http://");
    let plugins = root().join("target/plugins");
    let (v1, v2) = (std::fs::read(plugins.join("tagger-v1.wasm"))?, std::fs::read(plugins.join("tagger-v2.wasm"))?);
    println!("| plugin | compile cache | swaps | median ms | min ms | max ms | message delay during swaps p50 / max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (label, pad) in [("tagger (small)", 0usize), ("tagger + 5 MB", 5 << 20)] {
        for warm in [false, true] {
            let site = tempfile::tempdir()?;
            let shared = site.path().join("plugins/shared");
            std::fs::create_dir_all(&shared)?;
            let cache = site.path().join("cache");
            let variant = |n: u64| -> Vec<u8> {
                // Warm: two fixed variants, compiled once. Cold: a digest never seen.
                let base = if n % 2 == 0 { &v1 } else { &v2 };
                let seed = if warm { n % 2 } else { 1000 + n };
                with_custom_section(base, pad, seed)
            };
            std::fs::write(shared.join("tagger.wasm"), variant(0))?;
            let config = format!(
                "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/db\"\nsync = \"normal\"\n[plugins]\ndir = \"plugins\"\n\
                 [[tenant]]\nid = \"acme\"\n[[pipeline]]\nid = \"tagged\"\ntenant = \"acme\"\nstages = [{{ transform = \"tagger\" }}]\nroutes = [{{ to = \"erp\" }}]\n\
                 [sink.erp]\nplugin = \"http-sink\"\nconfig = {{ url = \"http://{authority}/r\" }}\nallowed-hosts = [\"{authority}\"]\n"
            );
            std::fs::copy(plugins.join("http-sink.wasm"), shared.join("http-sink.wasm"))?;
            let path = site.path().join("syncline.toml");
            std::fs::write(&path, config)?;
            let cfg = syncline::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let runtime = Arc::new(Runtime::new(&EngineOptions::default(), Some(&cache))?);
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.store.path, cfg.store.sync, None)?);
            let engine = Arc::new(Engine::build(cfg, runtime, store)?);
            engine.start();
            let reloader = syncline::reload::Reloader::new(engine.clone(), path.clone());
            let _watcher = syncline::reload::watch(reloader)?;
            let live = |e: &Engine| e.topology().pipelines.values().next().unwrap().stages[0].instance.load().plugin().digest.clone();
            if warm {
                // Compile both variants once.
                for n in 1..=2u64 {
                    let bytes = variant(n);
                    let tmp = shared.join("tagger.tmp");
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, shared.join("tagger.wasm"))?;
                    let want = syncline::runtime::digest(&bytes);
                    let until = Instant::now() + Duration::from_secs(60);
                    while live(&engine) != want && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            // A message every 2 ms while swapping: how long each waits to be processed.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sent = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let trickle = {
                let (engine, stop, sent) = (engine.clone(), stop.clone(), sent.clone());
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let p = engine.pipeline("acme", "tagged")?;
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let m = mjson::from_str(&rec(i))?;
                        let prepared = engine.prepare(&p, m, "bench", None)?;
                        let id = prepared.id.clone();
                        engine.accept(&p, vec![prepared])?;
                        sent.lock().unwrap().push(id);
                        i += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(())
                })
            };
            let mut times = Vec::new();
            for n in 3..3 + runs as u64 {
                let bytes = variant(n);
                let want = syncline::runtime::digest(&bytes);
                let tmp = shared.join("tagger.tmp");
                std::fs::write(&tmp, &bytes)?;
                let started = Instant::now();
                std::fs::rename(&tmp, shared.join("tagger.wasm"))?;
                while live(&engine) != want {
                    if started.elapsed() > Duration::from_secs(60) {
                        bail!("{label}: the new version did not go live");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            trickle.join().unwrap()?;
            let mut delays = Vec::new();
            for id in sent.lock().unwrap().iter() {
                let until = Instant::now() + Duration::from_secs(30);
                loop {
                    let t = engine.store.trace(id)?.unwrap_or_default();
                    if let (Some(r), Some(p)) = (t["input"]["received-at"].as_i64(), t["input"]["processed-at"].as_i64()) {
                        delays.push((p - r).max(0) as u64);
                        break;
                    }
                    anyhow::ensure!(Instant::now() < until, "message {id} was not processed");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            delays.sort_unstable();
            engine.stop();
            let med = median(times.clone());
            let (lo, hi) = (times.iter().copied().fold(f64::MAX, f64::min), times.iter().copied().fold(0.0, f64::max));
            println!(
                "| {label} ({:.1} MB) | {} | {runs} | {med:.1} | {lo:.1} | {hi:.1} | {} / {} ({} msgs) |",
                variant(1).len() as f64 / 1e6,
                if warm { "warm" } else { "cold" },
                percentile(&delays, 0.5),
                delays.last().copied().unwrap_or(0),
                delays.len()
            );
        }
    }
    let _ = erp.kill();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::E2e { messages, batch, concurrency, sync, bulk } => e2e(messages, batch, concurrency, &sync, bulk),
        Cmd::Stages { messages, runs } => stages(messages, runs),
        Cmd::Reload { runs } => reload(runs),
        Cmd::Micro { iterations, runs } => micro(iterations, runs),
    }
}

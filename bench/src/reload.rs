//! Hot-reload latency: the engine in process with the watcher on; a
//! plugin file is replaced by write-to-temp-then-rename and the figure is
//! the time from the rename until the stage's live instance is the new
//! digest. Cold: a digest never compiled; warm: two variants alternate from
//! the on-disk compile cache. A message is ingested every 2 ms meanwhile,
//! and its processing delay is reported. The Rust tagger (small, and padded
//! to 5 MB) and the same tagging in JavaScript (12 MB) are measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use syncline::runtime::{EngineOptions, Runtime};
use syncline_model::json as mjson;

use crate::e2e::{rec, root};
use crate::stats::{percentile, Stat};

/// One reload case.
pub struct Case {
    /// Plugin and size.
    pub label: String,
    /// Warm compile cache.
    pub warm: bool,
    /// Rename to live, ms.
    pub times: Stat,
    /// Processing delay of the trickle messages: p50, max ms, count.
    pub delays: (f64, f64, usize),
}

/// `bytes` with a custom section of `len` bytes appended (a new digest, the
/// same code): component sections may follow in any order.
pub fn with_custom_section(bytes: &[u8], len: usize, seed: u64) -> Vec<u8> {
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

/// Every case, `runs` swaps each.
pub fn run(runs: usize) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    use syncline::pipeline::Engine;
    use syncline::store::{SqliteStore, Store};
    let (_erp, erp_url) = crate::e2e::erp("127.0.0.1:0")?;
    let authority = erp_url.trim_start_matches("http://");
    let plugins = root().join("target/plugins");
    let (v1, v2) = (
        std::fs::read(plugins.join("tagger-v1.wasm"))?,
        std::fs::read(plugins.join("tagger-v2.wasm"))?,
    );
    // The same tagging in JavaScript: a 12 MB component (its engine inside);
    // its versions differ by a custom section.
    let js = std::fs::read(plugins.join("js-tagger.wasm"))?;
    let kinds: [(&str, &Vec<u8>, &Vec<u8>, usize); 3] =
        [("tagger (small)", &v1, &v2, 0), ("tagger + 5 MB", &v1, &v2, 5 << 20), ("JavaScript tagger", &js, &js, 0)];
    for (label, v1, v2, pad) in kinds {
        for warm in [false, true] {
            let site = tempfile::tempdir()?;
            let shared = site.path().join("plugins/shared");
            std::fs::create_dir_all(&shared)?;
            let cache = site.path().join("cache");
            let variant = |n: u64| -> Vec<u8> {
                // Warm: two fixed variants, compiled once. Cold: a digest never seen.
                let base = if n % 2 == 0 { v1 } else { v2 };
                let seed = if warm { n % 2 } else { 1000 + n };
                with_custom_section(base, pad, seed)
            };
            std::fs::write(shared.join("tagger.wasm"), variant(0))?;
            let config = format!(
                "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/db\"\nsync = \"normal\"\n[plugins]\ndir = \"plugins\"\n\
                 [[tenant]]\nid = \"acme\"\n[[pipeline]]\nid = \"tagged\"\ntenant = \"acme\"\nstages = [{{ transform = \"tagger\" }}]\nroutes = [{{ to = \"erp\" }}]\n\
                 [sink.erp]\nplugin = \"http-sink\"\nconfig = {{ url = \"http://{authority}/r\" }}\nallowed-hosts = [\"{authority}\"]\n"
            );
            std::fs::copy(
                plugins.join("http-sink.wasm"),
                shared.join("http-sink.wasm"),
            )?;
            let path = site.path().join("syncline.toml");
            std::fs::write(&path, config)?;
            let cfg = syncline::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let runtime = Arc::new(Runtime::new(&EngineOptions::default(), Some(&cache))?);
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&cfg.store.path, cfg.store.sync, None)?);
            let engine = Arc::new(Engine::build(cfg, runtime, store)?);
            engine.start();
            let reloader = syncline::reload::Reloader::new(engine.clone(), path.clone());
            let _watcher = syncline::reload::watch(reloader)?;
            let live = |e: &Engine| {
                e.topology().pipelines.values().next().unwrap().stages[0]
                    .instance
                    .load()
                    .plugin()
                    .digest
                    .clone()
            };
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
                    let p = engine.ingest().pipeline("acme", "tagged")?;
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let m = mjson::from_str(&rec(i))?;
                        let prepared = engine.ingest().prepare(&p, m, "bench", None)?;
                        let id = prepared.id.clone();
                        engine.ingest().accept(&p, vec![prepared])?;
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
                    let input = engine.store().trace(id)?.and_then(|t| t.input);
                    if let Some((r, Some(p))) = input.map(|i| (i.received_at, i.processed_at)) {
                        delays.push((p - r).max(0) as u64);
                        break;
                    }
                    anyhow::ensure!(Instant::now() < until, "message {id} was not processed");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            delays.sort_unstable();
            engine.stop();
            let delays: Vec<f64> = delays.iter().map(|d| *d as f64).collect();
            cases.push(Case {
                label: format!("{label} ({:.1} MB)", variant(1).len() as f64 / 1e6),
                warm,
                times: Stat::of(times),
                delays: (
                    percentile(&delays, 0.5),
                    delays.last().copied().unwrap_or(0.0),
                    delays.len(),
                ),
            });
        }
    }
    Ok(cases)
}

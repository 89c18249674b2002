//! A mutation fuzzer for what hostile callers and admins write: canonical
//! JSON messages (`message`), NDJSON batches (`ndjson`) and the config file
//! (`config`). It is written here because libFuzzer (cargo-fuzz) needs a
//! nightly toolchain, which the project's machines cannot install, and
//! proptest generates values from strategies rather than mutating real
//! inputs; what it does is small: take seeds (the repository's own example data, golden cases and
//! config files, plus every kept regression), mutate them with byte-level
//! and dictionary mutations, and run each through the real parser under
//! `catch_unwind`. The oracle is more than "no panic": a message that parses
//! must print and parse back to the same message, and config errors must
//! render. An input that panics is kept in `fuzz/regressions/TARGET/`,
//! which `cargo test` replays from then on. An input that kills the process
//! (a stack overflow aborts) is kept too: each input is written to
//! `target/fuzz/TARGET.current` before it runs, and the next run files a
//! leftover one as a regression.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use syncline_model::json as mjson;

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One canonical message (`POST .../messages`).
    Message,
    /// A batch (`POST .../messages:batch`).
    Ndjson,
    /// The config file.
    Config,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [Target::Message, Target::Ndjson, Target::Config];

    /// Its name (and folder).
    pub fn name(self) -> &'static str {
        match self {
            Target::Message => "message",
            Target::Ndjson => "ndjson",
            Target::Config => "config",
        }
    }

    /// The target named `name`.
    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Seeds from the repository at `root`, and the kept regressions.
    pub fn seeds(self, root: &Path) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        let messages = || {
            let mut out: Vec<Vec<u8>> = Vec::new();
            let ndjson = std::fs::read_to_string(root.join("examples/forecast-release/data-in/transfers.ndjson")).unwrap_or_default();
            out.extend(ndjson.lines().map(|l| l.as_bytes().to_vec()));
            // The inputs of the plugins' golden cases are messages.
            for case in files(&root.join("plugins"), "json", 2) {
                let text = std::fs::read_to_string(&case).unwrap_or_default();
                if let Some(input) = serde_json_value(&text).and_then(|v| v.get("input").cloned()) {
                    let mut m = input;
                    m["schema-version"] = "1.0.0".into();
                    out.push(m.to_string().into_bytes());
                }
            }
            out
        };
        match self {
            Target::Message => seeds.extend(messages()),
            Target::Ndjson => {
                let m = messages();
                seeds.extend(m.chunks(3).map(|c| c.join(&b"\n"[..])));
            }
            Target::Config => {
                seeds.push(std::fs::read(root.join("examples/forecast-release/syncline.toml")).unwrap_or_default());
                seeds.extend(files(&root.join("tests/config/invalid"), "toml", 0).iter().filter_map(|p| std::fs::read(p).ok()));
            }
        }
        seeds.extend(self.regressions(root).iter().filter_map(|p| std::fs::read(p).ok()));
        seeds.retain(|s| !s.is_empty());
        seeds
    }

    /// The kept regression inputs.
    pub fn regressions(self, root: &Path) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = std::fs::read_dir(root.join("fuzz/regressions").join(self.name()))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && !p.ends_with(".gitkeep")).collect())
            .unwrap_or_default();
        all.sort();
        all
    }

    /// Tokens worth inserting.
    fn dictionary(self) -> &'static [&'static str] {
        const JSON: &[&str] = &[
            "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "null", "true", "-0", "1e999", "-1e-999", "18446744073709551616",
            "\"schema-version\": \"1.0.0\"", "\"schema-version\": \"2.0.0\"", "\"schema-version\": \"1.99999999999999999999.0\"", "\"kind\": \"raw\"",
            "\"kind\": \"forecast\"", "\"body\": {}", "\"headers\": {\"a\": \"b\"}", "\"extensions\": [{\"key\": \"k\", \"value\": \"v\"}]",
            "\"quantity\": NaN", "\"2026-02-30\"", "\"9999-12-31\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "\u{feff}", "\u{10ffff}", "\n", "\r\n",
        ];
        const TOML: &[&str] = &[
            "[[pipeline]]\n", "[[tenant]]\nid = \"x\"\n", "[[token]]\n", "[sink.erp]\n", "[server]\n", "[plugins]\nmode = \"approved\"\n",
            "stages = [", "{ env = \"HOME\" }", "{ file = \"/dev/zero\" }", "hash = \"sha256:", "tenants = [\"*\"]", "roles = [\"admin\"]",
            "listen = \"0.0.0.0:1\"", "= \"\"\"", "'''", "1979-05-27T07:32:00Z", "inf", "nan", "-0", "\"\\u0000\"", "\u{e9}",
            "ingest = { requests = \"0/s\" }", "rate-limit = \"4294967296/s\"", "maintenance = [\"Sun 25:00-26:00 UTC\"]", "=", "[", "]", "{", "}", ".",
            "a.b.c.d.e.f.g = 1\n", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "\n", "#",
        ];
        match self {
            Target::Message | Target::Ndjson => JSON,
            Target::Config => TOML,
        }
    }

    /// Runs one input; panics on a defect (a parser panic or a broken
    /// round trip). `scratch` is a folder the config target reads from.
    pub fn run(self, input: &[u8], scratch: &Path) {
        let Ok(text) = std::str::from_utf8(input) else {
            // The API refuses a body that is not UTF-8 before parsing.
            return;
        };
        match self {
            Target::Message => round_trip(mjson::from_str(text)),
            Target::Ndjson => {
                for (_, m) in mjson::from_ndjson(text) {
                    round_trip(m);
                }
            }
            Target::Config => {
                if let Err(e) = syncline::config::load_str(&scratch.join("syncline.toml"), text) {
                    // Every error renders, with its excerpt of the file.
                    let _ = e.to_string();
                }
            }
        }
    }
}

/// A parsed message prints and parses back to itself.
fn round_trip(parsed: Result<syncline_model::Message, mjson::JsonError>) {
    if let Ok(m) = parsed {
        let text = mjson::to_string(&m);
        let again = mjson::from_str(&text).unwrap_or_else(|e| panic!("a parsed message does not parse back from {text}: {e}"));
        assert!(again == m, "a parsed message changed in a round trip through {text}");
        let _ = mjson::to_value(&m);
    }
}

fn serde_json_value(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok()
}

/// Files ending in `.ext` under `dir`, `depth` folders down.
fn files(dir: &Path, ext: &str, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() && depth > 0 && !p.ends_with("target") {
            out.extend(files(&p, ext, depth - 1));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One mutation of `input`: 1 to 8 byte-level or dictionary edits, or a
/// splice with another seed.
pub fn mutate(rng: &mut fastrand::Rng, input: &[u8], seeds: &[Vec<u8>], dictionary: &[&str]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..=8) {
        let at = rng.usize(0..=out.len());
        match rng.u8(0..7) {
            0 if !out.is_empty() => {
                let i = rng.usize(0..out.len());
                out[i] ^= 1 << rng.u8(0..8);
            }
            1 if !out.is_empty() => {
                let i = rng.usize(0..out.len());
                out[i] = *rng.choice(b"\0\xff\x80\"{}[],:\\\n0123456789-.eE ").unwrap();
            }
            2 if !out.is_empty() => {
                let end = (at + rng.usize(1..=16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let from = rng.usize(0..out.len());
                let end = (from + rng.usize(1..=32)).min(out.len());
                let piece = out[from..end].to_vec();
                out.splice(at..at, piece);
            }
            4 | 5 => {
                let token = rng.choice(dictionary).unwrap().as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                let other = rng.choice(seeds).unwrap();
                let cut = rng.usize(0..=other.len());
                out.truncate(at);
                out.extend_from_slice(&other[cut..]);
            }
        }
    }
    out.truncate(1 << 20);
    out
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run.
    pub execs: u64,
    /// Regression files written for inputs that failed.
    pub crashes: Vec<PathBuf>,
}

/// Longest a single input may take before the run counts it as a hang.
const HANG: Duration = Duration::from_secs(10);

/// Fuzzes `target` for `time` from `seed`; stops at the first failure.
///
/// # Errors
///
/// The scratch folders cannot be made.
pub fn fuzz(target: Target, root: &Path, time: Duration, seed: u64) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let work = root.join("target/fuzz");
    std::fs::create_dir_all(&work)?;
    let current = work.join(format!("{}.current", target.name()));
    // A leftover input killed the last run: keep it as a regression.
    if let Ok(bytes) = std::fs::read(&current) {
        report.crashes.push(keep(root, target, "abort", &bytes)?);
        std::fs::remove_file(&current)?;
        return Ok(report);
    }
    let scratch = tempfile::tempdir()?;
    let seeds = target.seeds(root);
    anyhow::ensure!(!seeds.is_empty(), "no seeds for {}", target.name());
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let (busy_since, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let watchdog = {
        let (busy_since, stop, current) = (busy_since.clone(), stop.clone(), current.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let since = busy_since.load(Ordering::Relaxed);
                if since > 0 && started.elapsed().as_millis() as u64 - since > HANG.as_millis() as u64 {
                    eprintln!("fuzz: an input ran longer than {HANG:?}; it is in {} and the next run keeps it", current.display());
                    std::process::exit(3);
                }
            }
        })
    };
    // Every seed as it is first, then mutations.
    let mut queue = seeds.clone().into_iter();
    while started.elapsed() < time {
        let input = match queue.next() {
            Some(s) => s,
            None => {
                let base = rng.usize(0..seeds.len());
                mutate(&mut rng, &seeds[base], &seeds, target.dictionary())
            }
        };
        std::fs::write(&current, &input)?;
        busy_since.store((started.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| target.run(&input, scratch.path())));
        busy_since.store(0, Ordering::Relaxed);
        report.execs += 1;
        if outcome.is_err() {
            report.crashes.push(keep(root, target, "panic", &input)?);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let _ = std::fs::remove_file(&current);
    Ok(report)
}

/// Writes a failing input to the target's regressions, named by its hash.
fn keep(root: &Path, target: Target, why: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = root.join("fuzz/regressions").join(target.name());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{why}-{}", &hex::encode(Sha256::digest(bytes))[..16]));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Runs every seed and kept regression of `target` once; the inputs that
/// fail, with why.
pub fn replay(target: Target, root: &Path) -> Vec<(String, String)> {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let mut failed = Vec::new();
    let named = target.regressions(root).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()));
    let seeds = target.seeds(root).into_iter().enumerate().map(|(i, s)| (format!("seed {i}"), s));
    for (name, input) in named.chain(seeds) {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| target.run(&input, scratch.path()))) {
            let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            failed.push((name, why));
        }
    }
    failed
}

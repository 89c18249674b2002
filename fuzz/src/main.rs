//! `syncline-fuzz [all|message|ndjson|config] [--time 10s] [--seed N]`:
//! fuzzes each target for the time given and exits 1 if an input failed
//! (it is kept in fuzz/regressions/TARGET/, replayed by `cargo test`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncline_fuzz::{fuzz, Target};

/// Mutation fuzzing of canonical messages, NDJSON batches and the config file.
#[derive(Parser)]
#[command(name = "syncline-fuzz")]
struct Args {
    /// `all`, `message`, `ndjson` or `config`.
    #[arg(default_value = "all")]
    target: String,
    /// Time per target: `10s`, `5m`.
    #[arg(long, default_value = "10s")]
    time: String,
    /// Random seed (default: from the clock; printed so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let targets: Vec<Target> = match args.target.as_str() {
        "all" => Target::ALL.to_vec(),
        name => vec![Target::parse(name).ok_or_else(|| anyhow::anyhow!("unknown target `{name}`: all, message, ndjson or config"))?],
    };
    let time: Duration = syncline::config::Span::try_from(args.time.clone()).map_err(anyhow::Error::msg)?.0;
    let seed = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf();
    let mut clean = true;
    for t in targets {
        let report = fuzz(t, &root, time, seed)?;
        let rate = report.execs as f64 / time.as_secs_f64().max(0.001);
        println!("fuzz {}: {} inputs ({rate:.0}/s, seed {seed}), {} crashes", t.name(), report.execs, report.crashes.len());
        for c in &report.crashes {
            println!("  kept {} (replayed by cargo test from now on; commit it)", c.display());
            let bytes = std::fs::read(c).unwrap_or_default();
            println!("  input ({} bytes): {:?}", bytes.len(), String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]));
            clean = false;
        }
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! `syncline-bench`: the benchmark suite. `all` runs every benchmark and
//! writes `docs/BENCHMARKS.md` (figures as median with min and max over
//! repeated runs, every ratio from the same run); `--quick` runs each
//! briefly (what CI does, so none rots). Benchmarks never assert on time,
//! but a run that loses or duplicates a message fails.
//!
//! Run with `./scripts/bench` (`QUICK=1` for the quick mode).

mod cluster;
mod doc;
mod drain;
mod e2e;
mod failures;
mod limits;
mod machine;
mod memory;
mod micro;
mod procstat;
mod reload;
mod retention;
mod service;
mod stages;
mod stats;
mod twins;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The host's allocator (see `host/src/main.rs`), for the host this binary
/// runs in-process and for the hand-written service alike.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "syncline-bench",
    about = "Syncline's benchmarks against native Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the whole suite and writes the report.
    All {
        /// Every benchmark briefly (CI).
        #[arg(long)]
        quick: bool,
        /// Where to write the report.
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        out: PathBuf,
        /// Only these sections (e2e, workload, drain, failures, stages, micro, limits, retention, reload, memory).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// One end-to-end run, figures on stdout.
    E2e(e2e::Setup),
    /// Several hosts on one NATS store (or one on the embedded store).
    Cluster(cluster::Setup),
    /// The hand-written service the workload benchmark compares with
    /// (a user's alternative to Syncline); used by `all`.
    Service {
        /// The ERP's base URL.
        #[arg(long)]
        erp: String,
        /// Folder with the reference tables.
        #[arg(long)]
        tables: PathBuf,
    },
    /// The host (`syncline run`) with every stage replaced by its native
    /// twin; used by the end-to-end benchmarks.
    Serve {
        /// Config file.
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::All { quick, out, only } => doc::all(quick, &out, &only),
        Cmd::E2e(setup) => {
            let mut f = stats::Figures::default();
            let threads = e2e::run(&setup, &mut f)?;
            println!("{setup:?}");
            for k in ["accepted", "delivered", "p50", "p99", "p999", "cpu", "rss"] {
                println!("{k:>10}: {}", f.get(k).show(1));
            }
            let total: f64 = threads.values().sum();
            for (name, secs) in threads.iter().filter(|(_, s)| **s > 0.0) {
                println!("{name:>24}: {:5.1} % of host CPU", secs * 100.0 / total);
            }
            Ok(())
        }
        Cmd::Cluster(setup) => {
            let f = cluster::run(&setup)?;
            println!("{setup:?}");
            println!("delivered: {:.0} msg/s", f.delivered);
            println!("host CPU:  {:.0} µs/msg (all processes)", f.host_us);
            println!("shares:    {}", f.shares.iter().map(|s| format!("{s:.0} %")).collect::<Vec<_>>().join(" / "));
            println!("NATS CPU:  {:.0} µs/msg", f.nats_us);
            if let Some((first, second)) = f.scrapes_ms {
                println!("/metrics of a process started after: {first:.0} ms first, {second:.0} ms next");
            }
            Ok(())
        }
        Cmd::Service { erp, tables } => service::serve(&erp, &tables),
        Cmd::Serve { config } => syncline::server::run_with(&config, None, false, twins::install),
    }
}

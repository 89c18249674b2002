//! What the figures were measured on: machine, date, versions, commit.

use std::path::Path;

fn first_line_with(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The version of crate `name` in the workspace's Cargo.lock.
fn locked(root: &Path, name: &str) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}

/// A markdown paragraph describing the machine and the build.
pub fn describe(root: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpu = first_line_with(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gib = first_line_with(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let date = syncline::pipeline::now_rfc3339();
    let commit = command(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = !command(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    format!(
        "Measured {date} on {cores} cores ({cpu}), {mem_gib:.0} GiB, Linux {kernel}; \
         {rustc}; wasmtime {wt}, rusqlite {rs} (SQLite bundled), tokio {tk}, hyper {hy}; \
         commit {commit}{dirty}. The load generator, `syncline` and `erp-sim` share these cores.",
        rustc = command("rustc", &["--version"]),
        wt = locked(root, "wasmtime"),
        rs = locked(root, "rusqlite"),
        tk = locked(root, "tokio"),
        hy = locked(root, "hyper"),
        dirty = if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
    )
}

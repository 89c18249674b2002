//! CPU time and memory of a process, read from `/proc`: total CPU (user +
//! system, threads that ended included), peak and current resident memory,
//! and CPU per live thread grouped by thread name.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) used so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here 11 and 12.
    (ticks(11) + ticks(12)) / ticks_per_second()
}

fn status_kib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Peak resident memory of `pid`, MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") / 1024.0
}

/// Resident memory of `pid` now, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") / 1024.0
}

/// CPU seconds of each live thread of `pid`, summed by thread name with
/// trailing numbers dropped (`sink-erp-requis` for all sink workers).
pub fn threads(pid: u32) -> BTreeMap<String, f64> {
    by_name(pid, true)
}

/// CPU seconds of each live thread of `pid` by its whole name
/// (`pipeline-recs-0`, `pipeline-recs-1`: one per shard).
pub fn threads_by_full_name(pid: u32) -> BTreeMap<String, f64> {
    by_name(pid, false)
}

fn by_name(pid: u32, group: bool) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let name = match group {
            true => comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-'),
            false => comm.trim(),
        }
        .to_string();
        let ns: f64 = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += ns / 1e9;
    }
    out
}

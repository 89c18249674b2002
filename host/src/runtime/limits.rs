//! What one configured plugin may use per call: wall time, linear memory,
//! instances at once, output size, and how much it may log.

use std::time::Duration;

use super::engine::MAX_PLUGIN_MEMORY;

/// Per-plugin limits, enforced on every call.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall time allowed per call, whatever the guest does: its own code
    /// (epoch interruption) or a wait in a host call (the call is dropped).
    pub timeout: Duration,
    /// Linear memory allowed per instance, in bytes.
    pub memory: usize,
    /// Instances of this plugin alive at once (concurrent calls).
    pub instances: usize,
    /// A fresh instance per call instead of reusing warm ones: nothing a
    /// call leaves in linear memory or globals reaches the next call.
    pub fresh: bool,
    /// Bytes a call may hand back (messages, violations, outcomes); past
    /// it the call fails rather than the host storing or re-reading it.
    pub output: usize,
}

/// Default output limit per call.
pub const DEFAULT_OUTPUT: usize = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(5), memory: 64 << 20, instances: 4, fresh: false, output: DEFAULT_OUTPUT }
    }
}

impl Limits {
    /// What is wrong with these limits, if anything, each with its fix
    /// (the engine cannot give more memory than [`MAX_PLUGIN_MEMORY`]).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.memory > MAX_PLUGIN_MEMORY {
            out.push((
                format!("memory limit {} is more than the engine allows a plugin ({})", bytes(self.memory), bytes(MAX_PLUGIN_MEMORY)),
                format!("write `memory = \"{}\"` or less", bytes(MAX_PLUGIN_MEMORY).replace(' ', "")),
            ));
        }
        if self.memory < 1 << 20 {
            out.push((format!("memory limit {} is too small for any plugin", bytes(self.memory)), "give it at least `memory = \"1MiB\"`".into()));
        }
        if self.timeout.is_zero() {
            out.push(("a timeout of zero stops every call at once".into(), "write e.g. `timeout = \"5s\"`".into()));
        }
        if self.output == 0 {
            out.push(("an output limit of zero fails every call".into(), "write e.g. `output = \"16MiB\"`".into()));
        }
        out
    }
}

/// How much a plugin may log, per configured plugin: longer lines are cut,
/// lines past the rate are dropped and counted.
pub mod log {
    /// Longest log line kept, in bytes (the rest is cut and marked).
    pub const MAX_LINE: usize = 4096;
    /// Lines per second, sustained.
    pub const LINES_PER_SECOND: u32 = 100;
    /// Lines allowed in a burst.
    pub const LINE_BURST: u32 = 200;
    /// Bytes per second, sustained.
    pub const BYTES_PER_SECOND: u32 = 256 << 10;
    /// Bytes allowed in a burst.
    pub const BYTE_BURST: u32 = 512 << 10;
}

/// A byte count for people: `64 MiB`, `12.06 MiB`, `512 KiB`, `100 bytes`.
/// Never rounds a value to look like another (a limit and a request above
/// it always print differently).
pub fn bytes(n: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;
    let exact = |unit: usize, name: &str| n.is_multiple_of(unit).then(|| format!("{} {name}", n / unit));
    if n >= GIB {
        if let Some(s) = exact(GIB, "GiB") {
            return s;
        }
    }
    if n >= MIB {
        return exact(MIB, "MiB").unwrap_or_else(|| format!("{:.2} MiB ({n} bytes)", n as f64 / MIB as f64));
    }
    if n >= KIB {
        return exact(KIB, "KiB").unwrap_or_else(|| format!("{n} bytes"));
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_never_round_to_look_equal() {
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes((12 << 20) + (64 << 10)), "12.06 MiB (12648448 bytes)");
        assert_eq!(bytes(512 << 10), "512 KiB");
        assert_eq!(bytes(100), "100 bytes");
        assert_ne!(bytes(12 << 20), bytes((12 << 20) + 1));
    }

    #[test]
    fn limits_past_the_engine_are_problems() {
        let l = Limits { memory: 2 << 30, ..Limits::default() };
        let problems = l.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "memory limit 2 GiB is more than the engine allows a plugin (1 GiB)");
        assert_eq!(problems[0].1, "write `memory = \"1GiB\"` or less");
        assert!(Limits::default().problems().is_empty());
    }
}

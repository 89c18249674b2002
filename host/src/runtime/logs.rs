//! Keeping plugin logs within bounds: each configured plugin has a gate
//! that cuts long lines and drops lines past its rate (lines and bytes per
//! second, with a burst), counting what it dropped. The counts per plugin
//! name live in the [`LogCounters`] of the runtime, so they survive reloads
//! and are served at `/metrics`; each call's own count goes in its trace.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::limits::log::{BYTES_PER_SECOND, BYTE_BURST, LINES_PER_SECOND, LINE_BURST, MAX_LINE};

/// Dropped log lines per plugin name, for the whole process.
#[derive(Default)]
pub struct LogCounters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl LogCounters {
    fn counter(&self, plugin: &str) -> Arc<AtomicU64> {
        self.0.lock().unwrap().entry(plugin.to_string()).or_default().clone()
    }

    /// (plugin name, lines dropped) for every plugin that ever ran.
    pub fn dropped(&self) -> Vec<(String, u64)> {
        self.0.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect()
    }
}

/// The gate of one configured plugin (shared by its instances).
pub struct LogGate {
    lines: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
    dropped: Arc<AtomicU64>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
    Quota::per_second(nz(per_second)).allow_burst(nz(burst))
}

impl LogGate {
    /// A gate for `plugin`, counting into `counters`.
    pub fn new(plugin: &str, counters: &LogCounters) -> LogGate {
        LogGate {
            lines: RateLimiter::direct(quota(LINES_PER_SECOND, LINE_BURST)),
            bytes: RateLimiter::direct(quota(BYTES_PER_SECOND, BYTE_BURST)),
            dropped: counters.counter(plugin),
        }
    }

    /// The line to log (cut to [`MAX_LINE`] bytes), or `None` when it is
    /// over the rate and was dropped (and counted).
    pub fn admit<'a>(&self, line: &'a str) -> Option<Cow<'a, str>> {
        let line = cut(line);
        let size = NonZeroU32::new(line.len().max(1) as u32).expect("non-zero");
        let ok = self.lines.check().is_ok() && matches!(self.bytes.check_n(size), Ok(Ok(())));
        if ok {
            Some(line)
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `line` cut to [`MAX_LINE`] bytes on a character boundary, saying how
/// much was cut.
fn cut(line: &str) -> Cow<'_, str> {
    if line.len() <= MAX_LINE {
        return Cow::Borrowed(line);
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… [{} more bytes cut]", &line[..end], line.len() - end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_floods_dropped_and_counted() {
        let counters = LogCounters::default();
        let gate = LogGate::new("p", &counters);
        let long = "x".repeat(10_000);
        let kept = gate.admit(&long).unwrap();
        assert!(kept.len() < 4200 && kept.ends_with("[5904 more bytes cut]"), "{}", &kept[4000..]);
        let admitted = (0..1000).filter(|_| gate.admit("hello").is_some()).count();
        assert!(admitted < 300, "{admitted} lines got through a flood");
        assert_eq!(counters.dropped(), vec![("p".to_string(), (1000 - admitted) as u64)]);
    }
}

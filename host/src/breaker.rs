//! A circuit breaker, for a sink (its downstream) or a pipeline stage (its
//! plugin). Closed, calls go as usual; after `failures` failures in a row,
//! or a failure rate of at least `rate` over the last `window` (once
//! `min-calls` were made in it), it opens: the queue in front holds —
//! nothing is sent or called, no attempt is spent, nothing is dead-lettered
//! because of it — for `open-for`. Then it is half-open: one message goes
//! alone as a probe; if it succeeds the breaker closes, if not it opens
//! again for twice as long (up to `max-open-for`), so a short outage costs
//! seconds and a long one is probed rarely.
//!
//! What counts as a failure is the caller's: for a sink, a retryable outcome
//! (5xx, 429, a timeout, a refused connection) — a 4xx is an answer, not an
//! outage; for a stage, a call that failed as a whole (trap, time or memory
//! limit) — an error the plugin chose is an answer. Time is passed in (ms
//! since the epoch), so the logic is tested without clocks.

use std::collections::VecDeque;

use serde::Serialize;

pub use crate::config::BreakerPolicy;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Deliveries go.
    Closed,
    /// The queue holds.
    Open,
    /// One probe goes.
    HalfOpen,
}

impl BreakerState {
    /// Its name: `closed`, `open`, `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// Its number in metrics: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A change of state and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
    /// Why.
    pub reason: String,
}

/// What a worker may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Anything due.
    All,
    /// One message, as the probe.
    Probe,
    /// Nothing until this time (ms).
    Wait(i64),
}

/// How a call's deliveries went, for the breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// The downstream answered (delivered, or refused on the merits).
    pub ok: u32,
    /// The downstream failed.
    pub failed: u32,
}

/// What a breaker shows (`GET /v1/sinks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BreakerView {
    /// Its state.
    pub state: BreakerState,
    /// Since when (ms; 0 for a breaker that never changed).
    pub since: i64,
    /// When an open breaker lets a probe through (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_at: Option<i64>,
    /// Failed calls in a row so far.
    pub consecutive_failures: u32,
    /// Why it last changed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One sink's breaker.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    since: i64,
    open_until: i64,
    /// How long it opens next time (ms).
    hold_ms: i64,
    consecutive: u32,
    /// (time, failed) of recent deliveries, for the rate.
    recent: VecDeque<(i64, bool)>,
    probing: bool,
    reason: String,
}

/// Deliveries kept for the rate at most (the window is trimmed by time first).
const RECENT_MAX: usize = 100_000;

/// While a probe is out, others look again this often (ms).
const PROBE_WAIT_MS: i64 = 200;

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Breaker {
        let hold_ms = policy.open_for.as_millis() as i64;
        Breaker { policy, state: BreakerState::Closed, since: 0, open_until: 0, hold_ms, consecutive: 0, recent: VecDeque::new(), probing: false, reason: String::new() }
    }

    /// Takes a new policy (a reload), keeping the state.
    pub fn set_policy(&mut self, policy: BreakerPolicy) {
        self.hold_ms = self.hold_ms.clamp(policy.open_for.as_millis() as i64, policy.max_open_for.as_millis() as i64);
        self.policy = policy;
    }

    /// Whether a worker may send now, and the change that asking made (an
    /// open breaker whose time is up turns half-open).
    pub fn admit(&mut self, now: i64) -> (Admit, Option<Change>) {
        match self.state {
            BreakerState::Closed => (Admit::All, None),
            BreakerState::Open if now < self.open_until => (Admit::Wait(self.open_until), None),
            BreakerState::Open => {
                let change = self.enter(now, BreakerState::HalfOpen, format!("open for {} ms: probing with one message", now - self.since));
                self.probing = true;
                (Admit::Probe, Some(change))
            }
            BreakerState::HalfOpen if self.probing => (Admit::Wait(now + PROBE_WAIT_MS), None),
            BreakerState::HalfOpen => {
                self.probing = true;
                (Admit::Probe, None)
            }
        }
    }

    /// Records how a call went (`probe`: it was the probe); `last_error` is
    /// the last failure's text. Returns the change it made, if any.
    pub fn record(&mut self, now: i64, tally: Tally, probe: bool, last_error: &str) -> Option<Change> {
        if probe {
            self.probing = false;
            return if tally.failed > 0 {
                self.hold_ms = (self.hold_ms * 2).min(self.policy.max_open_for.as_millis() as i64);
                Some(self.open(now, format!("the probe failed: {last_error}")))
            } else if tally.ok > 0 {
                self.consecutive = 0;
                self.hold_ms = self.policy.open_for.as_millis() as i64;
                Some(self.enter(now, BreakerState::Closed, "the probe went through".into()))
            } else {
                None
            };
        }
        if self.state != BreakerState::Closed {
            // From calls that were out when it opened.
            return None;
        }
        self.consecutive = if tally.ok > 0 { 0 } else { self.consecutive + tally.failed };
        if let Some(rate) = self.policy.rate {
            let window = self.policy.window.as_millis() as i64;
            while self.recent.front().is_some_and(|(at, _)| *at <= now - window) || self.recent.len() > RECENT_MAX {
                self.recent.pop_front();
            }
            self.recent.extend(std::iter::repeat_n((now, false), tally.ok as usize).chain(std::iter::repeat_n((now, true), tally.failed as usize)));
            let failed = self.recent.iter().filter(|(_, f)| *f).count();
            let calls = self.recent.len();
            if calls >= self.policy.min_calls as usize && calls > 0 && failed as f64 >= rate * calls as f64 && tally.failed > 0 {
                let share = 100.0 * failed as f64 / calls as f64;
                return Some(self.open(now, format!("{share:.0}% of {calls} calls over {:?} failed; last: {last_error}", self.policy.window)));
            }
        }
        if self.policy.failures > 0 && self.consecutive >= self.policy.failures {
            return Some(self.open(now, format!("{} calls in a row failed; last: {last_error}", self.consecutive)));
        }
        None
    }

    fn open(&mut self, now: i64, reason: String) -> Change {
        self.open_until = now + self.hold_ms;
        self.consecutive = 0;
        self.recent.clear();
        self.enter(now, BreakerState::Open, reason)
    }

    fn enter(&mut self, now: i64, to: BreakerState, reason: String) -> Change {
        let from = self.state;
        (self.state, self.since, self.reason) = (to, now, reason.clone());
        Change { from, to, reason }
    }

    /// Whether its probe is out (a result recorded now is the probe's).
    pub fn probing(&self) -> bool {
        self.state == BreakerState::HalfOpen && self.probing
    }

    /// What it shows.
    pub fn view(&self) -> BreakerView {
        BreakerView {
            state: self.state,
            since: self.since,
            probe_at: (self.state == BreakerState::Open).then_some(self.open_until),
            consecutive_failures: self.consecutive,
            reason: self.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy { failures: 3, rate: None, window: Duration::from_secs(10), min_calls: 4, open_for: Duration::from_secs(5), max_open_for: Duration::from_secs(8) }
    }

    fn failed(n: u32) -> Tally {
        Tally { ok: 0, failed: n }
    }

    const OK: Tally = Tally { ok: 1, failed: 0 };

    #[test]
    fn failures_in_a_row_open_it_and_a_success_between_resets_the_count() {
        let mut b = Breaker::new(policy());
        assert_eq!(b.record(0, failed(2), false, "HTTP 503"), None);
        assert_eq!(b.record(1, OK, false, ""), None);
        assert_eq!(b.record(2, failed(2), false, "HTTP 503"), None);
        let change = b.record(3, failed(1), false, "HTTP 503").unwrap();
        assert_eq!((change.from, change.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(change.reason, "3 calls in a row failed; last: HTTP 503");
        assert_eq!(b.admit(4), (Admit::Wait(5_003), None), "the queue holds until the probe time");
        assert_eq!(b.view().probe_at, Some(5_003));
    }

    #[test]
    fn a_probe_closes_it_or_opens_it_again_and_only_one_goes_at_a_time() {
        let mut b = Breaker::new(policy());
        b.record(0, failed(3), false, "timed out");
        let (admit, change) = b.admit(5_000);
        assert_eq!((admit, change.map(|c| c.to)), (Admit::Probe, Some(BreakerState::HalfOpen)));
        assert_eq!(b.admit(5_001), (Admit::Wait(5_201), None), "one probe at a time");
        // Results of calls that were out when it opened do not count.
        assert_eq!(b.record(5_002, failed(9), false, "late"), None);
        let change = b.record(5_100, failed(1), true, "HTTP 503").unwrap();
        assert_eq!((change.to, change.reason.as_str()), (BreakerState::Open, "the probe failed: HTTP 503"));
        assert_eq!(b.admit(6_000), (Admit::Wait(13_100), None), "a failed probe doubles the wait: 8 s (capped), not 5");
        assert_eq!(b.admit(13_100).0, Admit::Probe);
        let change = b.record(13_200, OK, true, "").unwrap();
        assert_eq!((change.from, change.to), (BreakerState::HalfOpen, BreakerState::Closed));
        assert_eq!(b.admit(13_201), (Admit::All, None));
        // Closed again, the next opening waits the first 5 s again.
        b.record(14_000, failed(3), false, "x");
        assert_eq!(b.admit(14_001), (Admit::Wait(19_000), None));
        // A probe that came back with no outcome (the worker stopped) lets another go.
        b.admit(19_000);
        assert_eq!(b.record(19_001, Tally::default(), true, ""), None);
        assert_eq!(b.admit(19_002).0, Admit::Probe);
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it_once_enough_calls_were_made() {
        let mut b = Breaker::new(BreakerPolicy { failures: 0, rate: Some(0.5), ..policy() });
        assert_eq!(b.record(0, Tally { ok: 1, failed: 2 }, false, "HTTP 500"), None, "3 calls: under min-calls");
        let change = b.record(1, Tally { ok: 1, failed: 1 }, false, "HTTP 500").unwrap();
        assert_eq!(change.reason, "60% of 5 calls over 10s failed; last: HTTP 500");
        // Old calls leave the window.
        let mut b = Breaker::new(BreakerPolicy { failures: 0, rate: Some(0.5), ..policy() });
        b.record(0, failed(3), false, "x");
        assert_eq!(b.record(10_000, Tally { ok: 3, failed: 1 }, false, "x"), None, "the three failures at 0 are out of the window");
    }

    #[test]
    fn refusals_on_the_merits_are_answers_not_failures() {
        // The worker counts a 4xx as `ok`: many of them never open it.
        let mut b = Breaker::new(policy());
        for t in 0..100 {
            assert_eq!(b.record(t, OK, false, ""), None);
        }
        assert_eq!(b.view().state, BreakerState::Closed);
    }
}

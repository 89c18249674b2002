//! Whether a sink's workers send now: an operator's pause, a maintenance
//! window, the downstream's request to wait, the circuit breaker — in that
//! order — and at what pace (the rate limit). One per sink, shared by
//! its workers and the API, handed on when a reload rebuilds the sink (so a
//! reload neither resumes a paused sink nor closes an open breaker).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::breaker::{Admit, Breaker, BreakerView, Change, Tally};
use super::throttle::{Throttle, ThrottleView};
use crate::config::{Sink, Window};
use crate::store::records::SinkPause;

/// What a worker may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Send anything due.
    All,
    /// Send one delivery, the breaker's probe.
    Probe,
    /// Send nothing: why, and until when if known (ms).
    Hold {
        /// Why.
        why: String,
        /// When to look again.
        until: Option<i64>,
    },
}

/// What the API shows of a sink's control.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlView {
    /// The operator's pause, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<SinkPause>,
    /// The maintenance window the sink is in now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// Every maintenance window configured.
    pub windows: Vec<String>,
    /// The breaker (`None`: turned off).
    pub breaker: Option<BreakerView>,
    /// The pace: rate limit and push-back.
    pub throttle: ThrottleView,
}

/// One sink's pause, windows and breaker.
#[derive(Debug)]
pub struct SinkControl {
    breaker: Mutex<Option<Breaker>>,
    pause: Mutex<Option<SinkPause>>,
    windows: Mutex<Vec<Window>>,
    throttle: Mutex<Arc<Throttle>>,
}

impl SinkControl {
    /// A control for `cfg`: not paused, breaker closed.
    pub fn new(cfg: &Sink) -> SinkControl {
        SinkControl {
            breaker: Mutex::new(cfg.breaker.clone().map(Breaker::new)),
            pause: Mutex::default(),
            windows: Mutex::new(cfg.maintenance.clone()),
            throttle: Mutex::new(Arc::new(Throttle::new(cfg.rate_limit.clone()))),
        }
    }

    /// Takes `cfg`'s breaker policy and windows (a reload), keeping the
    /// pause and the breaker's state.
    pub fn configure(&self, cfg: &Sink) {
        let mut breaker = self.breaker.lock().unwrap();
        match (breaker.as_mut(), &cfg.breaker) {
            (Some(b), Some(policy)) => b.set_policy(policy.clone()),
            (_, policy) => *breaker = policy.clone().map(Breaker::new),
        }
        *self.windows.lock().unwrap() = cfg.maintenance.clone();
        let mut throttle = self.throttle.lock().unwrap();
        if let Some(next) = throttle.reconfigured(cfg.rate_limit.clone()) {
            *throttle = Arc::new(next);
        }
    }

    /// The sink's pace.
    pub fn throttle(&self) -> Arc<Throttle> {
        self.throttle.lock().unwrap().clone()
    }

    /// Pauses (`Some`) or resumes (`None`).
    pub fn set_pause(&self, pause: Option<SinkPause>) {
        *self.pause.lock().unwrap() = pause;
    }

    /// The operator's pause, if any.
    pub fn paused(&self) -> Option<SinkPause> {
        self.pause.lock().unwrap().clone()
    }

    fn window(&self, now: i64) -> Option<String> {
        self.windows.lock().unwrap().iter().find(|w| w.contains(now)).map(ToString::to_string)
    }

    /// What a worker may do at `now`, and the breaker change asking made.
    pub fn admit(&self, now: i64) -> (Gate, Option<Change>) {
        if let Some(p) = self.paused() {
            return (Gate::Hold { why: format!("paused: {}", p.reason), until: None }, None);
        }
        if let Some(w) = self.window(now) {
            // Looked at again within a minute: windows are minute-exact.
            return (Gate::Hold { why: format!("maintenance window {w}"), until: Some(now + 1_000) }, None);
        }
        // Checked on every worker loop: no view (and no formatting) built here.
        if let Some(until) = self.throttle.lock().unwrap().held_until(now) {
            return (Gate::Hold { why: "the downstream asked to wait".into(), until: Some(until) }, None);
        }
        let mut breaker = self.breaker.lock().unwrap();
        let Some(b) = breaker.as_mut() else { return (Gate::All, None) };
        match b.admit(now) {
            (Admit::All, c) => (Gate::All, c),
            (Admit::Probe, c) => (Gate::Probe, c),
            (Admit::Wait(until), c) => (Gate::Hold { why: "the circuit breaker is open".into(), until: Some(until) }, c),
        }
    }

    /// Records how a call went; the breaker change it made, if any.
    pub fn record(&self, now: i64, tally: Tally, probe: bool, last_error: &str) -> Option<Change> {
        self.breaker.lock().unwrap().as_mut().and_then(|b| b.record(now, tally, probe, last_error))
    }

    /// What the API shows at `now`.
    pub fn view(&self, now: i64) -> ControlView {
        ControlView {
            paused: self.paused(),
            maintenance: self.window(now),
            windows: self.windows.lock().unwrap().iter().map(ToString::to_string).collect(),
            breaker: self.breaker.lock().unwrap().as_ref().map(Breaker::view),
            throttle: self.throttle().view(now),
        }
    }
}

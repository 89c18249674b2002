//! A sink's pace: its configured rate limit (a token bucket: governor) and
//! how the downstream's push-back slows it further. A call takes one cell
//! per message it sends — more while the downstream pushes back: a retryable
//! answer that names a time to come back (429 or 503 with `Retry-After`)
//! halves the pace, down to a tenth, and holds the whole sink until that
//! time; each call that goes through without push-back brings the pace up
//! by a tenth again. Time is passed in (ms since the epoch) where it can be.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;

use crate::config::{RateLimit, Tier};

/// The slowest pace push-back brings a sink to, as a share of its own.
const SLOWEST: f64 = 0.1;

/// How long past the moment its cell is due a call of a more urgent lane
/// that found no room keeps the bucket for itself (calls of less urgent
/// lanes leave it alone until then; it sleeps at most until that moment).
const PRECEDENCE_MS: i64 = 50;

/// What the API shows of a sink's pace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ThrottleView {
    /// The configured limit (`50/s`, burst), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The share of it in use (1: full pace; less after push-back).
    pub pace: f64,
    /// Until when the downstream asked the sink to hold (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<i64>,
    /// Calls the downstream pushed back on, since the host started.
    pub push_backs: u64,
}

struct Pace {
    share: f64,
    hold_until: i64,
    push_backs: u64,
}

/// One sink's limiter and pace.
pub struct Throttle {
    limit: Option<(RateLimit, DefaultDirectRateLimiter)>,
    pace: Mutex<Pace>,
    /// Per lane: until when a call led by that lane waits for room (ms; 0:
    /// none waits). The sink's workers share the bucket; this gives its
    /// cells to the most urgent lane first.
    waiting: [AtomicI64; 3],
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("limit", &self.limit.as_ref().map(|(l, _)| l)).finish_non_exhaustive()
    }
}

/// A token bucket holding `limit`: one cell per message (or request).
pub(crate) fn limiter(limit: &RateLimit) -> DefaultDirectRateLimiter {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
    let quota = Quota::with_period(limit.per / limit.count.max(1)).expect("a rate limit's period is above zero").allow_burst(nz(limit.burst));
    RateLimiter::direct(quota)
}

impl Throttle {
    /// A throttle at full pace for `limit` (`None`: no limit of its own).
    pub fn new(limit: Option<RateLimit>) -> Throttle {
        Throttle { limit: limit.map(|l| (l.clone(), limiter(&l))), pace: Mutex::new(Pace { share: 1.0, hold_until: 0, push_backs: 0 }), waiting: Default::default() }
    }

    /// The same pace under a new limit (a reload); the bucket starts full.
    pub fn reconfigured(&self, limit: Option<RateLimit>) -> Option<Throttle> {
        if self.limit.as_ref().map(|(l, _)| l) == limit.as_ref() {
            return None;
        }
        let pace = self.pace.lock().unwrap();
        Some(Throttle {
            limit: limit.map(|l| (l.clone(), limiter(&l))),
            pace: Mutex::new(Pace { share: pace.share, hold_until: pace.hold_until, push_backs: pace.push_backs }),
            waiting: Default::default(),
        })
    }

    /// Cells `n` messages take at the current pace.
    fn cells(&self, n: usize) -> u32 {
        let share = self.pace.lock().unwrap().share;
        (n as f64 / share).ceil() as u32
    }

    /// Most messages one call may take: what the bucket can hold at the
    /// current pace (everything when there is no limit).
    pub fn max_batch(&self, batch: usize) -> usize {
        match &self.limit {
            None => batch,
            Some((l, _)) => batch.min(((l.burst as f64) * self.pace.lock().unwrap().share).floor().max(1.0) as usize),
        }
    }

    /// How many of a call's `n` messages may go at `now` — as many as the
    /// bucket holds cells for, at least one — taking their cells; `Err(at)`
    /// when not even one may go yet. `lead` is the most urgent lane in the
    /// call (its first messages). A call takes what there is rather than
    /// waiting for room for all of it, and while a call of a more urgent lane
    /// waits for room, calls of less urgent lanes take nothing: several
    /// workers share one bucket, and without that a critical delivery could
    /// lose race after race to bulk ones.
    pub fn take(&self, n: usize, lead: Tier, now: i64) -> Result<usize, i64> {
        let hold_until = self.pace.lock().unwrap().hold_until;
        if now < hold_until {
            return Err(hold_until);
        }
        let Some((l, limiter)) = &self.limit else { return Ok(n) };
        if let Some(until) = self.waiting[..lead.index()].iter().map(|w| w.load(Ordering::Relaxed)).filter(|&u| u > now).max() {
            return Err(until);
        }
        let cells = NonZeroU32::new(self.cells(1).clamp(1, l.burst.max(1))).expect("at least 1");
        let mut taken = 0;
        while taken < n {
            match limiter.check_n(cells) {
                Ok(Ok(())) => taken += 1,
                Ok(Err(not_until)) if taken == 0 => {
                    let at = now + not_until.wait_time_from(DefaultClock::default().now()).as_millis().max(1) as i64;
                    // Less urgent calls leave the bucket alone until a little
                    // after the cell this call waits for is there.
                    self.waiting[lead.index()].fetch_max(at + PRECEDENCE_MS, Ordering::Relaxed);
                    return Err(at);
                }
                // More cells than the bucket holds: cannot happen (capped above); go at the bucket's pace.
                Err(_) if taken == 0 => return Err(now + 1_000),
                _ => break,
            }
        }
        self.waiting[lead.index()].store(0, Ordering::Relaxed);
        Ok(taken)
    }

    /// The downstream pushed back and asked for `after_ms`: halve the pace
    /// and hold until then.
    pub fn pushed_back(&self, now: i64, after_ms: u64) {
        let mut pace = self.pace.lock().unwrap();
        pace.share = (pace.share / 2.0).max(SLOWEST);
        pace.hold_until = pace.hold_until.max(now + after_ms as i64);
        pace.push_backs += 1;
    }

    /// A call went through without push-back: a tenth faster, up to full pace.
    pub fn went_through(&self) {
        let mut pace = self.pace.lock().unwrap();
        pace.share = (pace.share + 0.1).min(1.0);
    }

    /// Until when the downstream asked the sink to hold, if that is still ahead of `now`.
    pub fn held_until(&self, now: i64) -> Option<i64> {
        let hold_until = self.pace.lock().unwrap().hold_until;
        (hold_until > now).then_some(hold_until)
    }

    /// What the API shows at `now`.
    pub fn view(&self, now: i64) -> ThrottleView {
        let pace = self.pace.lock().unwrap();
        ThrottleView {
            limit: self.limit.as_ref().map(|(l, _)| l.to_string()),
            pace: (pace.share * 100.0).round() / 100.0,
            held_until: (pace.hold_until > now).then_some(pace.hold_until),
            push_backs: pace.push_backs,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn per_second(count: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit { count, per: Duration::from_secs(1), burst, text: format!("{count}/s") })
    }

    #[test]
    fn a_burst_goes_at_once_and_then_the_rate_holds() {
        let t = Throttle::new(per_second(10, 5));
        assert_eq!(t.max_batch(50), 5, "no more than the bucket holds");
        assert_eq!(t.take(5, Tier::Standard, 0), Ok(5));
        let at = t.take(1, Tier::Standard, 0).unwrap_err();
        assert!((1..=150).contains(&at), "one more after about 100 ms, not {at}");
    }

    #[test]
    fn a_call_takes_what_the_bucket_holds_rather_than_waiting_for_room_for_all() {
        let t = Throttle::new(per_second(10, 5));
        assert_eq!(t.take(3, Tier::Bulk, 0), Ok(3));
        assert_eq!(t.take(8, Tier::Bulk, 0), Ok(2), "the two cells left, not nothing");
        assert!(t.take(8, Tier::Bulk, 0).is_err(), "an empty bucket gives none");
    }

    #[test]
    fn while_a_more_urgent_call_waits_for_room_less_urgent_ones_take_nothing() {
        let t = Throttle::new(per_second(1000, 1));
        assert_eq!(t.take(1, Tier::Bulk, 0), Ok(1));
        assert!(t.take(1, Tier::Critical, 0).is_err(), "no room: the critical call waits");
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.take(1, Tier::Bulk, 1).is_err(), "a cell is back, but the critical call comes first");
        assert_eq!(t.take(1, Tier::Critical, 1), Ok(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.take(1, Tier::Bulk, 2), Ok(1), "then bulk goes on");
    }

    #[test]
    fn push_back_halves_the_pace_holds_and_recovers() {
        let t = Throttle::new(per_second(10, 8));
        t.pushed_back(1_000, 2_000);
        assert_eq!(t.take(1, Tier::Standard, 1_500), Err(3_000), "held until the downstream's time");
        assert_eq!(t.view(1_500).pace, 0.5);
        assert_eq!(t.max_batch(50), 4, "half the bucket per call");
        assert_eq!(t.cells(3), 6, "each message takes two cells");
        for _ in 0..10 {
            t.pushed_back(1_000, 0);
        }
        assert_eq!(t.view(5_000).pace, 0.1, "never slower than a tenth");
        for _ in 0..20 {
            t.went_through();
        }
        assert_eq!((t.view(5_000).pace, t.view(5_000).held_until, t.view(5_000).push_backs), (1.0, None, 11));
    }

    #[test]
    fn without_a_limit_only_push_back_holds() {
        let t = Throttle::new(None);
        assert_eq!(t.max_batch(50), 50);
        assert_eq!(t.take(1000, Tier::Bulk, 0), Ok(1000));
        t.pushed_back(0, 500);
        assert_eq!(t.take(1, Tier::Bulk, 100), Err(500));
        assert_eq!(t.take(1, Tier::Bulk, 500), Ok(1));
    }
}

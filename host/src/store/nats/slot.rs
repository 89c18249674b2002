//! A queue slot's state as its commit log tells it: which of the slot's
//! stored items are settled and which wait for a retry, folded entry by
//! entry; and, given the slot's items read in stream order, which are due.
//! Pure logic — no server — so a holder taking a slot over, replaying its
//! log from the last checkpoint, ends in the state its predecessor had.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// An item nacked with a next-attempt time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Waiting {
    /// Its stream sequence.
    pub seq: u64,
    /// Its ordering-key hash (later items of the key wait behind it).
    pub key_hash: u32,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before (ms since the epoch).
    pub next_at: i64,
    /// Each attempt's error.
    pub errors: Vec<String>,
    /// Whether an attempt may have done its work although it failed (a
    /// delivery whose request went out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
}

/// What one commit-log entry says of a slot's items (the entry's body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SlotCommit {
    /// Items at an end: processed (or delivered), dead-lettered, or copies
    /// that never counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<u64>,
    /// Items to try again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Waiting>,
    /// Every item of the slot below this sequence is settled (the holder
    /// saw them so, reading in order); lets the state forget them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
    /// Outputs the settled items queue for sinks: published after the
    /// entry is appended, and again by a holder taking the slot over while
    /// the log does not say they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<Output>,
    /// Audit entries of the ack (the decisions plugins stated about its
    /// messages): published with the outputs, so kept with the commit or
    /// not at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<super::audit::Event>,
    /// The records the commit keeps besides: trace events, dead letters,
    /// exceptions, baseline entries, loops (published with the outputs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<super::kept::Kept>,
    /// When it was committed (ms since the epoch).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at: i64,
    /// Every entry of the log up to this sequence has had its outputs
    /// published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An output a commit queues for a sink (the commit's tenant and pipeline
/// are the slot's queue's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Output {
    /// The sink.
    pub sink: String,
    /// The output message's id.
    pub id: String,
    /// Its ordering key within the tenant and pipeline.
    pub ordering_key: String,
    /// Its service tier (`critical`, `standard`, `bulk`).
    pub tier: String,
    /// How long after its delivery an execution status is expected (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_ms: Option<i64>,
    /// The output message as JSON.
    pub json: String,
    /// The accepted message it came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A slot's state; also its checkpoint's form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SlotState {
    /// Every item below it is settled: reading starts here.
    pub floor: u64,
    /// Settled items at or above the floor.
    settled: BTreeSet<u64>,
    /// Items waiting for a retry, by sequence.
    waiting: BTreeMap<u64, Waiting>,
    /// The last log entry folded in (a replay starts after it).
    pub through: u64,
    /// Every entry up to this one has had its outputs published.
    #[serde(default)]
    pub published: u64,
}

/// An item read from the slot, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Stream sequence.
    pub seq: u64,
    /// Ordering-key hash.
    pub key_hash: u32,
}

/// What a claim of the slot gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotDue {
    /// The due items in stream order, with what an earlier attempt left
    /// (none for a first attempt).
    pub items: Vec<(Item, Option<Waiting>)>,
    /// When the earliest item still waiting becomes due.
    pub next_at: Option<i64>,
    /// The floor the items read allow: past the settled ones they began with.
    pub floor: u64,
}

impl SlotState {
    /// Folds in log entry `log_seq` (an entry already folded is skipped,
    /// so a replay overlapping a checkpoint is harmless).
    pub fn apply(&mut self, log_seq: u64, commit: &SlotCommit) {
        if log_seq <= self.through {
            return;
        }
        self.through = log_seq;
        for &seq in &commit.settled {
            self.waiting.remove(&seq);
            if seq >= self.floor {
                self.settled.insert(seq);
            }
        }
        for w in &commit.retries {
            if w.seq >= self.floor && !self.settled.contains(&w.seq) {
                self.waiting.insert(w.seq, w.clone());
            }
        }
        if let Some(published) = commit.published {
            self.published = self.published.max(published);
        }
        if let Some(floor) = commit.floor.filter(|f| *f > self.floor) {
            self.floor = floor;
            self.settled = self.settled.split_off(&floor);
            self.waiting = self.waiting.split_off(&floor);
        }
    }

    /// What item `seq` waits with, if an attempt at it failed.
    pub fn waiting(&self, seq: u64) -> Option<&Waiting> {
        self.waiting.get(&seq)
    }

    /// Whether item `seq` is settled.
    pub fn is_settled(&self, seq: u64) -> bool {
        seq < self.floor || self.settled.contains(&seq)
    }

    /// Of `read` — the slot's items from the floor on, in stream order —
    /// up to `limit` due at `now_ms`: unsettled, not waiting past now, and
    /// not behind an earlier item of their key that waits (a retry never
    /// lets a later item of its key overtake it). With `one_per_key` (a
    /// sink's deliveries) only each key's first unsettled item is due;
    /// otherwise (a pipeline's messages) a key's items come in order.
    pub fn due(&self, read: &[Item], now_ms: i64, limit: usize, one_per_key: bool) -> SlotDue {
        let mut out = SlotDue { floor: self.floor, ..SlotDue::default() };
        let mut held: HashSet<u32> = HashSet::new();
        let mut settled_prefix = true;
        for item in read.iter().filter(|i| i.seq >= self.floor) {
            if self.is_settled(item.seq) {
                if settled_prefix {
                    out.floor = item.seq + 1;
                }
                continue;
            }
            settled_prefix = false;
            if held.contains(&item.key_hash) {
                continue;
            }
            match self.waiting.get(&item.seq) {
                Some(w) if w.next_at > now_ms => {
                    held.insert(item.key_hash);
                    out.next_at = Some(out.next_at.map_or(w.next_at, |n: i64| n.min(w.next_at)));
                }
                waiting => {
                    if out.items.len() < limit {
                        out.items.push((*item, waiting.cloned()));
                    }
                    if one_per_key {
                        held.insert(item.key_hash);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, key_hash: u32) -> Item {
        Item { seq, key_hash }
    }

    fn waiting(seq: u64, key_hash: u32, next_at: i64) -> Waiting {
        Waiting { seq, key_hash, attempts: 1, next_at, errors: vec!["HTTP 503".into()], outcome_unknown: false }
    }

    fn seqs(d: &SlotDue) -> Vec<u64> {
        d.items.iter().map(|(i, _)| i.seq).collect()
    }

    #[test]
    fn items_are_due_in_order_one_per_key_and_settled_ones_drop_out() {
        let read = [item(3, 1), item(7, 2), item(9, 1), item(12, 3)];
        let mut state = SlotState::default();
        let d = state.due(&read, 0, 10, false);
        assert_eq!(seqs(&d), [3, 7, 9, 12], "messages: every due one, in order");
        assert_eq!((d.floor, d.next_at), (0, None));
        assert_eq!(seqs(&state.due(&read, 0, 10, true)), [3, 7, 12], "deliveries: a key's later one waits for its earlier one's outcome");
        state.apply(1, &SlotCommit { settled: vec![3, 7], ..Default::default() });
        let d = state.due(&read, 0, 10, true);
        assert_eq!(seqs(&d), [9, 12]);
        assert_eq!(d.floor, 8, "the settled items the slot begins with can be forgotten");
        assert_eq!(seqs(&state.due(&read, 0, 1, false)), [9], "up to the limit");
    }

    #[test]
    fn a_waiting_item_holds_its_key_until_due() {
        let read = [item(3, 1), item(7, 2), item(9, 1)];
        let mut state = SlotState::default();
        state.apply(1, &SlotCommit { retries: vec![waiting(3, 1, 1_000)], settled: vec![7], ..Default::default() });
        let before = state.due(&read, 500, 10, false);
        assert!(before.items.is_empty(), "9 waits behind 3: {before:?}");
        assert_eq!(before.next_at, Some(1_000));
        let after = state.due(&read, 1_000, 10, true);
        assert_eq!(seqs(&after), [3]);
        assert_eq!(seqs(&state.due(&read, 1_000, 10, false)), [3, 9], "messages of the key follow it once it is due");
        assert_eq!(after.items[0].1.as_ref().map(|w| (w.attempts, w.errors.clone())), Some((1, vec!["HTTP 503".to_string()])), "with what the attempt left");
        // Retried again, then settled: 9 is due.
        state.apply(2, &SlotCommit { retries: vec![Waiting { attempts: 2, ..waiting(3, 1, 2_000) }], ..Default::default() });
        assert_eq!(state.due(&read, 1_500, 10, false).next_at, Some(2_000));
        assert!(state.due(&read, 1_500, 10, false).items.is_empty());
        state.apply(3, &SlotCommit { settled: vec![3], ..Default::default() });
        assert_eq!(seqs(&state.due(&read, 1_500, 10, true)), [9]);
    }

    #[test]
    fn a_replay_over_a_checkpoint_ends_where_the_log_does() {
        let log = [
            SlotCommit { settled: vec![3], retries: vec![waiting(5, 2, 100)], ..Default::default() },
            SlotCommit { settled: vec![5], floor: Some(6), ..Default::default() },
            SlotCommit { retries: vec![waiting(8, 4, 900)], ..Default::default() },
        ];
        let mut whole = SlotState::default();
        for (i, c) in log.iter().enumerate() {
            whole.apply(i as u64 + 10, c);
        }
        // A checkpoint after the second entry, written and read back, then
        // the log replayed from its start (entries folded in are skipped).
        let mut resumed = SlotState::default();
        for (i, c) in log.iter().take(2).enumerate() {
            resumed.apply(i as u64 + 10, c);
        }
        let mut resumed: SlotState = serde_json::from_str(&serde_json::to_string(&resumed).unwrap()).unwrap();
        for (i, c) in log.iter().enumerate() {
            resumed.apply(i as u64 + 10, c);
        }
        assert_eq!(resumed, whole);
        assert_eq!((whole.floor, whole.through), (6, 12));
        assert!(whole.is_settled(3) && whole.is_settled(5) && !whole.is_settled(8));
        // The floor forgot what is below it.
        assert_eq!(whole.settled.len() + whole.waiting.len(), 1);
    }

    #[test]
    fn a_settled_item_is_not_brought_back_by_a_stale_retry() {
        let mut state = SlotState::default();
        state.apply(1, &SlotCommit { settled: vec![4], ..Default::default() });
        state.apply(2, &SlotCommit { retries: vec![waiting(4, 1, 0)], ..Default::default() });
        assert!(state.is_settled(4));
        assert!(state.due(&[item(4, 1)], 10, 10, false).items.is_empty());
    }
}

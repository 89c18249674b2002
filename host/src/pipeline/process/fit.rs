//! What the store can keep of a row's result: a store with a limit on one
//! message (the NATS server's `max_payload`) cannot queue an output, keep
//! an exception or a dead letter larger than that. A row that made one is
//! dead-lettered whole instead — its input, which the store took when it
//! was accepted, with a reason naming the output and the limit — before
//! anything of it is committed: a commit the store refused would be
//! processed again and refused again, holding its partition for ever.
//! Replaying the dead letter once the limit is raised (or the plugin
//! fixed) processes the message again.

use super::RowResult;
use crate::store::{NewDeadLetter, Pending};

/// Where such a dead letter says the message stopped.
pub(super) const PLACE: &str = "store";

/// Dead-letters `r` (the result of `row`) in place when one of its records
/// is larger than `limit` bytes; keeps its steps (the trace shows what ran).
pub(super) fn fit(row: &Pending, r: &mut RowResult, limit: usize) {
    if r.retry.is_some() {
        return;
    }
    let Some(too_large) = oversized(r, limit) else { return };
    let reason = format!(
        "{too_large} is larger than the store keeps in one message ({limit} bytes: the NATS server's max_payload less room for headers and for the record that keeps it); \
         nothing of this message was recorded but this dead letter: raise max_payload on the server or have the plugin emit smaller messages, then replay it"
    );
    r.deliveries.clear();
    r.exceptions.clear();
    r.baseline.clear();
    r.dead = vec![NewDeadLetter {
        message_id: row.id.clone(),
        place: PLACE.into(),
        plugin: String::new(),
        digest: String::new(),
        reason,
        attempts: row.errors.clone(),
        json: row.json.clone(),
        outcome_unknown: false,
    }];
    r.allocated = Default::default();
    r.decisions.clear();
}

/// The first record of `r` over `limit` bytes, described.
fn oversized(r: &RowResult, limit: usize) -> Option<String> {
    let over = |n: usize| n > limit;
    if let Some(d) = r.deliveries.iter().find(|d| over(d.json.len())) {
        return Some(format!("output {} for sink {} ({} bytes)", d.id, d.sink, d.json.len()));
    }
    if let Some(e) = r.exceptions.iter().find(|e| over(e.json.len())) {
        return Some(format!("exception {} for queue {} ({} bytes)", e.message_id, e.queue, e.json.len()));
    }
    if let Some(d) = r.dead.iter().find(|d| over(d.json.len())) {
        return Some(format!("dead letter of {} ({} bytes)", d.message_id, d.json.len()));
    }
    r.baseline.iter().find(|b| over(b.json.len())).map(|b| format!("baseline record {} ({} bytes)", b.message_id, b.json.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tier;
    use crate::store::NewDelivery;

    fn row() -> Pending {
        Pending { seq: 1, id: "m1".into(), json: r#"{"id":"m1"}"#.into(), key_hash: 7, attempts: 0, errors: vec![], message: None }
    }

    fn delivery(id: &str, bytes: usize) -> NewDelivery {
        NewDelivery { id: id.into(), sink: "erp".into(), ordering_key: "k".into(), tier: Tier::Standard, expect_ms: None, json: "x".repeat(bytes), message: None }
    }

    #[test]
    fn a_row_with_an_output_over_the_limit_becomes_one_dead_letter_of_its_input() {
        let mut r = RowResult { deliveries: vec![delivery("o1", 10), delivery("o2", 101)], ..Default::default() };
        fit(&row(), &mut r, 100);
        assert!(r.deliveries.is_empty());
        assert_eq!(r.dead.len(), 1);
        let d = &r.dead[0];
        assert_eq!((d.message_id.as_str(), d.place.as_str(), d.json.as_str()), ("m1", PLACE, r#"{"id":"m1"}"#));
        assert!(d.reason.contains("output o2 for sink erp (101 bytes)") && d.reason.contains("100 bytes") && d.reason.contains("max_payload"), "{}", d.reason);
    }

    #[test]
    fn a_row_within_the_limit_or_waiting_for_a_retry_is_left_alone() {
        let mut r = RowResult { deliveries: vec![delivery("o1", 100)], ..Default::default() };
        fit(&row(), &mut r, 100);
        assert_eq!((r.deliveries.len(), r.dead.len()), (1, 0));
        let mut retrying = RowResult { deliveries: vec![delivery("o1", 1000)], retry: Some("later".into()), ..Default::default() };
        fit(&row(), &mut retrying, 100);
        assert_eq!(retrying.deliveries.len(), 1, "nothing of a retried row is recorded anyway");
    }
}

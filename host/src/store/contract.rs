//! The [`Store`] contract as tests every backend runs: append with dedupe
//! and cursors, leases as fences, claims that keep order per key through
//! retries, acks and nacks of messages and deliveries, pruning, state,
//! archive and audit.

use super::records::{AuditEntry, AuditEvent, AuditFilter, ExceptionDetail};
use super::*;

/// A message of tenant `acme`, pipeline `p`, key hash 0.
pub fn msg(id: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant: "acme".into(),
        pipeline: "p".into(),
        key_hash: 0,
        idempotency_key: key.map(Into::into),
        correlation: None,
        answers: None,
        json: format!("{{\"id\":\"{id}\"}}"),
        message: None,
    }
}

/// The one partition of pipeline `acme/p`.
pub fn partition() -> Partition {
    Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "p".into() }, index: 0, of: 1 }
}

/// A lease on the whole of pipeline `acme/p`.
pub fn lease_all(s: &dyn Store) -> Lease {
    s.lease(&partition(), "test", now_ms(), 60_000).unwrap()
}

fn sink_lease(s: &dyn Store) -> Lease {
    s.lease(&Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 }, "test", now_ms(), 60_000).unwrap()
}

fn settled(id: &str, deliveries: Vec<NewDelivery>) -> Processed {
    Processed { id: id.into(), state: Final::Done, processing: Default::default(), retry: None, deliveries, dead_letters: vec![], exceptions: vec![], baseline: vec![] }
}

fn commit(processed: Vec<Processed>) -> Commit {
    Commit { tenant: "acme".into(), pipeline: "p".into(), processed, audit: vec![] }
}

fn out(id: &str, key: &str) -> NewDelivery {
    NewDelivery { id: id.into(), sink: "erp".into(), ordering_key: key.into(), tier: Default::default(), expect_ms: None, json: "{}".into(), message: None }
}

/// Output `id` refused for good by sink `erp`.
fn refused(id: &str) -> NewDeadLetter {
    NewDeadLetter {
        message_id: id.into(),
        place: "sink erp".into(),
        plugin: "http-sink".into(),
        digest: "sha256:x".into(),
        reason: "HTTP 422".into(),
        attempts: vec![],
        json: "{}".into(),
        outcome_unknown: false,
    }
}

fn ids<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| id(r).to_string()).collect()
}

pub fn append_dedupes_and_moves_cursors(s: &dyn Store) {
    let out = s.append(vec![msg("a", Some("k1")), msg("b", Some("k1")), msg("c", None)], None).wait().unwrap();
    assert_eq!(
        out,
        vec![IngestOutcome::Accepted { id: "a".into() }, IngestOutcome::Duplicate { id: "a".into() }, IngestOutcome::Accepted { id: "c".into() }]
    );
    let again = s.append(vec![msg("d", Some("k1"))], Some(Cursor { source: "acme/p".into(), position: "c1".into() })).wait().unwrap();
    assert_eq!(again, vec![IngestOutcome::Duplicate { id: "a".into() }]);
    assert_eq!(s.cursor("acme/p").unwrap().as_deref(), Some("c1"));
    // Past the dedupe window the key is forgotten and accepted anew.
    assert_eq!(s.prune_idempotency(now_ms() + 1).unwrap(), 1);
    assert_eq!(s.append(vec![msg("f", Some("k1"))], None).wait().unwrap(), vec![IngestOutcome::Accepted { id: "f".into() }]);
    let other = NewMessage { tenant: "globex".into(), ..msg("e", Some("k1")) };
    assert_eq!(s.append(vec![other], None).wait().unwrap(), vec![IngestOutcome::Accepted { id: "e".into() }]);
    let b = s.backlog().unwrap();
    assert_eq!(b.messages, vec![(("acme".into(), "p".into()), 3), (("globex".into(), "p".into()), 1)]);
}

pub fn a_lease_fences_acks(s: &dyn Store) {
    s.append(vec![msg("a", None)], None).wait().unwrap();
    let now = now_ms();
    let a = s.lease(&partition(), "host-a", now, 1_000).unwrap();
    assert_eq!(s.lease(&partition(), "host-a", now + 10, 1_000).unwrap().token, a.token, "a renewal keeps the token");
    let refused = s.lease(&partition(), "host-b", now + 500, 1_000).unwrap_err();
    assert!(matches!(&refused, StoreError::Conflict(t) if t.contains("host-a")), "{refused}");
    // host-a's lease runs out; host-b takes the partition over.
    let b = s.lease(&partition(), "host-b", now + 2_000, 1_000).unwrap();
    assert!(b.token > a.token);
    // An ack carries the audit entries of its batch: kept with it, or not at all.
    let decided = |text: &str| {
        let event = records::AuditEvent::Decision { pipeline: "p".into(), message_id: "a".into(), output_id: "o".into(), decision: text.into() };
        Commit { audit: vec![records::AuditEntry { actor: "plugin:r".into(), tenant: Some("acme".into()), event }], ..commit(vec![settled("a", vec![])]) }
    };
    let decisions = || {
        let filter = records::AuditFilter { kind: Some("decision".into()), ..Default::default() };
        s.audit_events(&filter, 0, 10).unwrap().into_iter().map(|r| (r.actor, r.tenant)).collect::<Vec<_>>()
    };
    let stale = s.ack(&a, decided("stale")).unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale}");
    assert_eq!(s.claim(&b, 0, now_ms(), 10).unwrap().rows.len(), 1, "the refused ack recorded nothing");
    assert!(decisions().is_empty(), "nor its audit entries");
    s.ack(&b, decided("kept")).unwrap();
    assert!(s.claim(&b, 0, now_ms(), 10).unwrap().rows.is_empty());
    assert_eq!(decisions(), [("plugin:r".to_string(), Some("acme".to_string()))]);
    // Released, the partition is free at once.
    s.release(&b).unwrap();
    assert!(s.lease(&partition(), "host-c", now + 2_001, 1_000).is_ok());
}

pub fn a_waiting_message_holds_its_key_only_until_due(s: &dyn Store) {
    let keyed = |id: &str, hash: u32| NewMessage { key_hash: hash, ..msg(id, None) };
    s.append(vec![keyed("a1", 1), keyed("b1", 2), keyed("a2", 1), keyed("b2", 2)], None).wait().unwrap();
    let lease = lease_all(s);
    let now = now_ms();
    let due = s.claim(&lease, 0, now, 10).unwrap();
    assert_eq!(ids(&due.rows, |r| &r.id), ["a1", "b1", "a2", "b2"]);
    // a1 is nacked: it waits until now + 1000.
    let retry = Processed { retry: Some(Retry { next_at: now + 1000, errors: vec!["flaky".into()] }), ..settled("a1", vec![]) };
    s.ack(&lease, commit(vec![retry])).unwrap();
    let due = s.claim(&lease, 0, now, 10).unwrap();
    assert_eq!(ids(&due.rows, |r| &r.id), ["b1", "b2"], "key 1 waits behind a1");
    assert_eq!(due.next_at, Some(now + 1000));
    let due = s.claim(&lease, 0, now + 1000, 10).unwrap();
    assert_eq!(ids(&due.rows, |r| &r.id), ["a1", "b1", "a2", "b2"]);
    assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["flaky".to_string()]));
    assert_eq!(due.next_at, None);
    // Only the partition's own keys: hash 1 is part 1 of 2.
    let odd = s.lease(&Partition { index: 1, of: 2, ..partition() }, "test", now, 60_000).unwrap();
    assert_eq!(ids(&s.claim(&odd, 0, now + 1000, 10).unwrap().rows, |r| &r.id), ["a1", "a2"]);
    let input = s.trace("a1").unwrap().unwrap().input.unwrap();
    assert_eq!((input.attempts, input.retry_errors), (1, Some(vec!["flaky".to_string()])));
}

pub fn acked_outputs_are_delivered_in_order_per_key(s: &dyn Store) {
    s.append(vec![msg("a", None), msg("b", None)], None).wait().unwrap();
    let lease = lease_all(s);
    s.ack(&lease, commit(vec![settled("a", vec![out("o1", "k"), out("o2", "k")]), settled("b", vec![out("o3", "j")])])).unwrap();
    let sink = sink_lease(s);
    let due = s.claim_deliveries(&sink, now_ms(), 10).unwrap();
    assert_eq!(ids(&due.rows, |d| &d.id), ["o1", "o3"], "the first of each key, in queue order");
    let now = now_ms();
    let mut seqs: std::collections::HashMap<String, i64> = due.rows.iter().map(|d| (d.id.clone(), d.seq)).collect();
    let nack = AttemptResult::Retry { error: "HTTP 503".into(), next_at: now + 5_000, outcome_unknown: false };
    s.ack_deliveries(&sink, vec![Attempt { seq: seqs["o1"], digest: "sha256:x".into(), result: nack }]).unwrap();
    let due = s.claim_deliveries(&sink, now, 10).unwrap();
    assert_eq!(ids(&due.rows, |d| &d.id), ["o3"], "o2 waits behind o1 of its key");
    assert_eq!(due.next_at, Some(now + 5_000));
    let due = s.claim_deliveries(&sink, now + 5_000, 10).unwrap();
    assert_eq!(ids(&due.rows, |d| &d.id), ["o1", "o3"]);
    assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["HTTP 503".to_string()]));
    let delivered = |seq: i64, id: &str| Attempt { seq, digest: "sha256:x".into(), result: AttemptResult::Delivered(format!("ERP-{id}")) };
    s.ack_deliveries(&sink, vec![delivered(seqs["o1"], "o1"), delivered(seqs["o3"], "o3")]).unwrap();
    let due = s.claim_deliveries(&sink, now + 5_000, 10).unwrap();
    assert_eq!(ids(&due.rows, |d| &d.id), ["o2"], "its key's next, once o1 is delivered");
    seqs.insert("o2".into(), due.rows[0].seq);
    let seq = |id: &str| seqs[id];
    let dead = NewDeadLetter { attempts: vec!["HTTP 422".into()], ..refused("o2") };
    s.ack_deliveries(&sink, vec![Attempt { seq: seq("o2"), digest: "sha256:x".into(), result: AttemptResult::Dead(dead) }]).unwrap();
    assert!(s.claim_deliveries(&sink, now + 5_000, 10).unwrap().rows.is_empty());
    let t = s.trace("a").unwrap().unwrap();
    assert_eq!(t.input.unwrap().state, "done");
    assert_eq!(ids(&t.outputs, |d| &d.state), ["delivered", "dead"]);
    assert_eq!(t.outputs[0].reference.as_deref(), Some("ERP-o1"));
    assert_eq!(ids(&t.outputs[0].attempts, |a| &a.outcome), ["retry", "delivered"]);
    assert_eq!(t.dead_letters[0].reason, "HTTP 422");
    assert_eq!(s.trace("o3").unwrap().unwrap().deliveries[0].state, "delivered");
    assert!(s.trace("nope").unwrap().is_none());
    let c = s.counts().unwrap();
    assert_eq!((c.messages.get("done"), c.deliveries.get("delivered"), c.deliveries.get("dead"), c.dead_letters), (Some(&2), Some(&2), Some(&1), 1));
    // Acking under a message lease a delivery queue's work is refused.
    assert!(s.ack_deliveries(&lease, vec![]).is_err());
}

pub fn prune_keeps_dead_letters_and_pending_work(s: &dyn Store) {
    s.append(vec![msg("done", None), msg("dead", None), msg("parked", None), msg("waiting", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let dl = NewDeadLetter {
        message_id: "dead".into(),
        place: "stage 1".into(),
        plugin: "x".into(),
        digest: "sha256:x".into(),
        reason: "trapped".into(),
        attempts: vec![],
        json: "{}".into(),
        outcome_unknown: false,
    };
    let exception = NewException {
        queue: "master-data".into(),
        message_id: "parked".into(),
        detail: ExceptionDetail::Record { code: "unknown-item".into(), text: "no such item".into(), severity: "error".into() },
        json: "{}".into(),
    };
    s.ack(
        &lease,
        commit(vec![
            settled("done", vec![out("o-done", "d")]),
            Processed { state: Final::Dead, dead_letters: vec![dl], ..settled("dead", vec![]) },
            Processed { state: Final::Exception, exceptions: vec![exception], ..settled("parked", vec![]) },
            settled("waiting", vec![out("o-waiting", "w")]),
        ]),
    )
    .unwrap();
    let sink = sink_lease(s);
    let d = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    let done = d.iter().find(|d| d.id == "o-done").unwrap().seq;
    let nack = AttemptResult::Retry { error: "503".into(), next_at: 0, outcome_unknown: false };
    s.ack_deliveries(&sink, vec![Attempt { seq: done, digest: "sha256:x".into(), result: nack }]).unwrap();
    s.ack_deliveries(&sink, vec![Attempt { seq: done, digest: "sha256:x".into(), result: AttemptResult::Delivered("ERP-1".into()) }]).unwrap();
    // Nothing is old enough yet.
    assert_eq!(s.prune(now_ms() - 60_000).unwrap(), Pruned::default());
    let pruned = s.prune(now_ms() + 1).unwrap();
    assert_eq!((pruned.messages, pruned.deliveries), (1, 1));
    assert!(s.trace("done").unwrap().is_none(), "the delivered message and its trace are gone");
    assert!(s.trace("o-done").unwrap().is_none());
    assert_eq!(s.trace("dead").unwrap().unwrap().dead_letters[0].reason, "trapped", "a dead letter stays until resolved");
    assert_eq!(s.trace("parked").unwrap().unwrap().exceptions[0].queue, "master-data", "an exception stays until resolved");
    assert_eq!(s.trace("waiting").unwrap().unwrap().outputs[0].state, "pending", "unfinished work stays");
    let c = s.counts().unwrap();
    assert_eq!(c.messages.into_iter().collect::<Vec<_>>(), [("dead".into(), 1), ("done".into(), 1), ("exception".into(), 1)]);
    assert_eq!(c.deliveries.into_iter().collect::<Vec<_>>(), [("pending".into(), 1)]);
}

pub fn keeps_state_archive_and_audit(s: &dyn Store) {
    let put = |key: &str, value: Option<&[u8]>| vec![(key.to_string(), value.map(<[u8]>::to_vec))];
    s.put_state("acme", "counter", put("n", Some(b"1"))).wait().unwrap();
    s.put_state("acme", "counter", [put("n", Some(b"2")), put("gone", Some(b"x"))].concat()).wait().unwrap();
    s.put_state("acme", "counter", put("gone", None)).wait().unwrap();
    assert_eq!(s.state().unwrap(), vec![(("acme".into(), "counter".into(), "n".into()), b"2".to_vec())]);
    s.archive("sha256:abc", b"one").unwrap();
    s.archive("sha256:abc", b"two").unwrap();
    assert_eq!(s.archived("sha256:abc").unwrap().as_deref(), Some(&b"one"[..]), "a digest is archived once");
    assert_eq!(s.archived("sha256:none").unwrap(), None);
    s.audit(&AuditEntry::host(AuditEvent::Start { config: "c.toml".into(), pipelines: vec![] })).unwrap();
    let by = |actor: &str, tenant: Option<&str>, event| AuditEntry { actor: actor.into(), tenant: tenant.map(str::to_string), event };
    s.audit(&by("token:ops", Some("acme"), AuditEvent::SinkResumed { sink: "erp".into() })).unwrap();
    s.audit(&by("token:ops", Some("globex"), AuditEvent::SinkResumed { sink: "erp".into() })).unwrap();
    s.audit(&AuditEntry::host(AuditEvent::Stop)).unwrap();
    let all = AuditFilter::default();
    let events = s.audit_events(&all, 0, 10).unwrap();
    assert_eq!(events.iter().map(|e| e.event.kind()).collect::<Vec<_>>(), ["start", "sink-resumed", "sink-resumed", "stop"]);
    assert_eq!((events[1].actor.as_str(), events[1].tenant.as_deref(), events[0].actor.as_str()), ("token:ops", Some("acme"), "host"));
    assert_eq!(s.audit_events(&all, events[0].id, 10).unwrap().len(), 3);
    // Plugin approvals: listed by plugin, replaced when given again, revoked.
    let approval = |plugin: &str, digest: &str, at: i64| records::Approval { plugin: plugin.into(), digest: digest.into(), by: "token:admin".into(), at, note: None };
    s.approve_plugin(&approval("tagger", "sha256:b", 2)).unwrap();
    s.approve_plugin(&approval("tagger", "sha256:a", 1)).unwrap();
    s.approve_plugin(&records::Approval { note: Some("reviewed".into()), ..approval("mapper", "sha256:c", 3) }).unwrap();
    s.approve_plugin(&records::Approval { note: Some("again".into()), ..approval("mapper", "sha256:c", 4) }).unwrap();
    let listed: Vec<(String, String, Option<String>)> = s.plugin_approvals().unwrap().into_iter().map(|a| (a.plugin, a.digest, a.note)).collect();
    assert_eq!(listed, [("mapper".into(), "sha256:c".into(), Some("again".into())), ("tagger".into(), "sha256:a".into(), None), ("tagger".into(), "sha256:b".into(), None)]);
    assert!(s.revoke_plugin_approval("tagger", "sha256:a").unwrap());
    assert!(!s.revoke_plugin_approval("tagger", "sha256:a").unwrap());
    assert_eq!(s.plugin_approvals().unwrap().len(), 2);
    let ids = |f: &AuditFilter| s.audit_events(f, 0, 10).unwrap().iter().map(|e| e.id).collect::<Vec<_>>();
    let scoped = AuditFilter { scope: Some(vec!["acme".into()]), ..Default::default() };
    assert_eq!(ids(&scoped), [events[1].id], "a scope sees its tenants' events, not host-wide ones");
    assert_eq!(ids(&AuditFilter { actor: Some("host".into()), ..Default::default() }), [events[0].id, events[3].id]);
    assert_eq!(ids(&AuditFilter { kind: Some("stop".into()), ..Default::default() }), [events[3].id]);
    assert_eq!(ids(&AuditFilter { tenant: Some("globex".into()), ..Default::default() }), [events[2].id]);
    assert_eq!(ids(&AuditFilter { until: Some(events[0].at), ..Default::default() }), Vec::<i64>::new());
}

/// A processing record of `input` through two stages and a route.
pub fn processing(input: &str, digest: &str) -> records::Processing {
    use records::{RouteStep, ShardRef, StageStep, Step, StepOutcome};
    let stage = |stage: usize, plugin: &str, input: &str, outcome: StepOutcome| {
        Step::Stage(StageStep { stage, plugin: plugin.into(), digest: digest.into(), input: input.into(), micros: 42, outcome, logs_dropped: None })
    };
    let output = format!("{input}-out");
    records::Processing {
        shard: Some(ShardRef { index: 0, of: 1 }),
        steps: vec![
            stage(1, "mapper", input, StepOutcome::Outputs { batch: None, outputs: vec![output.clone()] }),
            stage(2, "validator", &output, StepOutcome::Validated { valid: true, violations: serde_json::json!([]), policy: None }),
            Step::Route(RouteStep { route: output, to: vec!["erp".into()] }),
        ],
    }
}

pub fn keeps_each_processing_record(s: &dyn Store) {
    s.append(vec![msg("p1", None), msg("p2", None), msg("p3", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let (one, two) = (processing("p1", "sha256:aaa"), processing("p2", "sha256:bbb"));
    let nack = Processed { retry: Some(Retry { next_at: now_ms() + 60_000, errors: vec!["later".into()] }), ..settled("p3", vec![]) };
    s.ack(&lease, commit(vec![Processed { processing: one.clone(), ..settled("p1", vec![]) }, Processed { processing: two.clone(), ..settled("p2", vec![]) }, nack]))
        .unwrap();
    let read = |id: &str| s.trace(id).unwrap().unwrap().input.unwrap().processing;
    assert_eq!((read("p1"), read("p2")), (Some(one), Some(two)));
    assert_eq!(read("p3"), None, "a nack records no processing");
    assert_eq!(s.prune(now_ms() + 1).unwrap().messages, 2);
    assert!(s.trace("p1").unwrap().is_none());
}

fn dead_letter(message_id: &str, place: &str, reason: &str) -> NewDeadLetter {
    NewDeadLetter {
        message_id: message_id.into(),
        place: place.into(),
        plugin: "p".into(),
        digest: "sha256:x".into(),
        reason: reason.into(),
        attempts: vec![reason.into()],
        json: format!(r#"{{"id": "{message_id}"}}"#),
        outcome_unknown: false,
    }
}

/// A dead letter whose reasons weigh more than its message (an error per
/// attempt, each as long as a plugin may make it) and a processing record
/// as heavy are kept — cut to fit where the store has a limit on one
/// record — with the message whole, and the commit does not fail.
pub fn keeps_a_dead_letter_whatever_its_reasons_weigh(s: &dyn Store) {
    use records::{DeadLetterFilter, Processing, StageStep, Step, StepOutcome};
    let body = format!(r#"{{"id": "heavy", "note": "{}"}}"#, "m".repeat(800_000));
    s.append(vec![NewMessage { json: body.clone(), ..msg("heavy", None) }], None).wait().unwrap();
    let lease = lease_all(s);
    let error = format!("Traceback (most recent call last): {} ValueError: twelve", "e".repeat(16_000));
    let dead = NewDeadLetter { attempts: vec![error.clone(); 100], json: body.clone(), ..dead_letter("heavy", "stage 1 (m)", &error) };
    let step = Step::Stage(StageStep { stage: 1, plugin: "m".into(), digest: "sha256:x".into(), input: "heavy".into(), micros: 1, outcome: StepOutcome::Error { error: "x".repeat(1_500_000) }, logs_dropped: None });
    let processed = Processed { state: Final::Dead, dead_letters: vec![dead], processing: Processing { shard: None, steps: vec![step] }, ..settled("heavy", vec![]) };
    s.ack(&lease, commit(vec![processed])).unwrap();

    let listed = s.dead_letters(&DeadLetterFilter::default(), 0, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].reason.starts_with("Traceback (most recent call last)"), "{}", &listed[0].reason[..100]);
    let (_, kept) = s.dead_letter(listed[0].id).unwrap().unwrap();
    assert!(kept == serde_json::from_str::<serde_json::Value>(&body).unwrap(), "the message is kept whole");
    let trace = s.trace("heavy").unwrap().expect("its trace");
    assert_eq!(trace.input.expect("its input").state, "dead");
}

pub fn dead_letters_are_listed_replayed_and_purged(s: &dyn Store) {
    use records::{DeadLetterFilter, Replayed};
    s.append(vec![msg("in1", None), msg("in2", None), msg("in3", None)], None).wait().unwrap();
    let lease = lease_all(s);
    // in1 dies in stage 2 twice (two of its outputs), in2's output dies at the sink, in3 in stage 1.
    let dead_in1 = Processed { state: Final::Dead, dead_letters: vec![dead_letter("in1-a", "stage 2 (v)", "trapped"), dead_letter("in1-b", "stage 2 (v)", "trapped")], ..settled("in1", vec![]) };
    let dead_in3 = Processed { state: Final::Dead, dead_letters: vec![dead_letter("in3", "stage 1 (m)", "bad-json")], ..settled("in3", vec![]) };
    s.ack(&lease, commit(vec![dead_in1, settled("in2", vec![out("in2-out", "k")]), dead_in3])).unwrap();
    let sink = sink_lease(s);
    let due = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    s.ack_deliveries(&sink, vec![Attempt { seq: due[0].seq, digest: "sha256:x".into(), result: AttemptResult::Dead(dead_letter("in2-out", "sink erp", "HTTP 422: unknown supplier")) }])
        .unwrap();

    let list = |f: DeadLetterFilter| s.dead_letters(&f, 0, 100).unwrap().into_iter().map(|d| d.message_id).collect::<Vec<_>>();
    assert_eq!(list(DeadLetterFilter::default()), ["in1-a", "in1-b", "in3", "in2-out"]);
    let open = |s: &dyn Store| s.backlog().unwrap().dead_letters.into_iter().map(|(t, n, at)| (t, n, at > 0)).collect::<Vec<_>>();
    assert_eq!(open(s), [("acme".to_string(), 4, true)], "open dead letters per tenant, with the oldest's time");
    assert_eq!(list(DeadLetterFilter { place: Some("sink".into()), ..Default::default() }), ["in2-out"]);
    assert_eq!(list(DeadLetterFilter { reason: Some("HTTP 422".into()), tenant: Some("acme".into()), ..Default::default() }), ["in2-out"]);
    assert_eq!(list(DeadLetterFilter { tenant: Some("other".into()), ..Default::default() }), Vec::<String>::new());
    assert_eq!(list(DeadLetterFilter { before: Some(0), ..Default::default() }), Vec::<String>::new());
    let all = s.dead_letters(&DeadLetterFilter::default(), 0, 100).unwrap();
    let id_of = |m: &str| all.iter().find(|d| d.message_id == m).unwrap().id;
    assert_eq!(s.dead_letters(&DeadLetterFilter::default(), id_of("in1-b"), 1).unwrap()[0].message_id, "in3", "paged by number");
    let (record, body) = s.dead_letter(id_of("in2-out")).unwrap().unwrap();
    assert_eq!((record.pipeline.as_str(), record.source_id.as_str(), body["id"].as_str()), ("p", "in2", Some("in2-out")));

    // A sink dead letter goes back to its queue, with its attempts counted afresh.
    let replayed = s.replay_dead_letter(id_of("in2-out")).unwrap().unwrap();
    assert_eq!(replayed, Replayed::Delivery { sink: "erp".into(), id: "in2-out".into() });
    let due = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    assert_eq!((due.len(), due[0].id.as_str(), due[0].attempts), (1, "in2-out", 0));
    assert!(matches!(s.replay_dead_letter(id_of("in2-out")), Err(StoreError::Conflict(_))), "replayed once");
    // A stage dead letter puts its accepted message back to work, and with
    // it the other stage dead letter of the same message.
    let replayed = s.replay_dead_letter(id_of("in1-b")).unwrap().unwrap();
    assert_eq!(replayed, Replayed::Message { tenant: "acme".into(), pipeline: "p".into(), id: "in1".into() });
    assert_eq!(ids(&s.claim(&lease, 0, now_ms(), 10).unwrap().rows, |m| &m.id), ["in1"]);
    assert_eq!(list(DeadLetterFilter::default()), ["in3"]);
    assert_eq!(list(DeadLetterFilter { state: Some("replayed".into()), ..Default::default() }), ["in1-a", "in1-b", "in2-out"]);
    // Purged with a reason, then gone from the open list; unknown numbers are `None`.
    let purged = s.purge_dead_letter(id_of("in3"), "test data").unwrap().unwrap();
    assert_eq!((purged.state.as_str(), purged.note.as_deref()), ("purged", Some("test data")));
    assert!(matches!(s.purge_dead_letter(id_of("in3"), "again"), Err(StoreError::Conflict(_))));
    assert_eq!(list(DeadLetterFilter::default()), Vec::<String>::new());
    assert_eq!(open(s), [], "replayed and purged ones are not open");
    assert!(s.replay_dead_letter(9_999_999).unwrap().is_none());
    assert!(s.purge_dead_letter(9_999_999, "x").unwrap().is_none());
    // Resolved dead letters are pruned with the rest.
    s.prune(now_ms() + 1).unwrap();
    assert_eq!(list(DeadLetterFilter { state: Some("all".into()), ..Default::default() }), Vec::<String>::new());
}

/// For a store that keeps rollbacks (every persistent one): a rollback
/// broadcast is kept, one per plugin, the last replacing the one before;
/// ending it for another file than the kept one's changes nothing.
pub fn keeps_rollbacks_until_they_end(s: &dyn Store) {
    use super::records::{Broadcast, ClusterCommand};
    let rollback = |plugin: &str, digest: &str, file: &str| Broadcast {
        from: "host-a".into(),
        actor: "token:ops".into(),
        at: now_ms(),
        command: ClusterCommand::RollBack { plugin: plugin.into(), digest: digest.into(), file_digest: file.into() },
    };
    assert!(s.rollbacks().unwrap().is_empty());
    let (first, mapper, since) = (rollback("tagger", "sha256:v1", "sha256:v2"), rollback("mapper", "sha256:m1", "sha256:m2"), rollback("tagger", "sha256:v2", "sha256:v3"));
    s.broadcast(&first).unwrap();
    s.broadcast(&mapper).unwrap();
    // A reload is not kept: a process starting later loads what is there.
    s.broadcast(&Broadcast { command: ClusterCommand::Reload { trigger: "api".into() }, ..rollback("x", "", "") }).unwrap();
    s.broadcast(&since).unwrap();
    let mut kept = s.rollbacks().unwrap();
    kept.sort_by_key(|b| format!("{:?}", b.command));
    assert_eq!(kept, [mapper, since]);
    // The rollback made while the file was v2 ended long ago: the one made since stays.
    s.end_rollback("tagger", "sha256:v2").unwrap();
    assert_eq!(s.rollbacks().unwrap().len(), 2);
    s.end_rollback("tagger", "sha256:v3").unwrap();
    s.end_rollback("nothing-kept", "sha256:v3").unwrap();
    let left: Vec<Broadcast> = s.rollbacks().unwrap();
    assert_eq!(left.len(), 1);
    assert!(matches!(&left[0].command, ClusterCommand::RollBack { plugin, .. } if plugin == "mapper"));
}

pub fn sink_pauses_are_kept_until_resumed(s: &dyn Store) {
    let pause = records::SinkPause { reason: "ERP upgrade".into(), at: 42 };
    s.set_sink_pause("erp", Some(&pause)).unwrap();
    s.set_sink_pause("wms", Some(&pause)).unwrap();
    s.set_sink_pause("wms", None).unwrap();
    assert_eq!(s.sink_pauses().unwrap().into_iter().collect::<Vec<_>>(), [("erp".to_string(), pause)]);
}

fn parked(message_id: &str, queue: &str) -> NewException {
    NewException {
        queue: queue.into(),
        message_id: message_id.into(),
        detail: ExceptionDetail::Record { code: "unknown-item".into(), text: format!("{message_id}: no such item"), severity: "error".into() },
        json: format!(r#"{{"id": "{message_id}"}}"#),
    }
}

pub fn exceptions_are_listed_resolved_retried_and_discarded(s: &dyn Store) {
    use records::{ExceptionFilter, Settle};
    s.append(vec![msg("x1", None), msg("x2", None), msg("x3", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let park = |id: &str, queues: &[&str]| Processed {
        state: Final::Exception,
        exceptions: queues.iter().enumerate().map(|(i, q)| parked(&format!("{id}-{i}"), q)).collect(),
        ..settled(id, vec![])
    };
    s.ack(&lease, commit(vec![park("x1", &["master-data", "master-data"]), park("x2", &["approvals"]), park("x3", &["master-data"])])).unwrap();
    let list = |f: ExceptionFilter| s.exceptions(&f, 0, 100).unwrap().into_iter().map(|e| e.message_id).collect::<Vec<_>>();
    assert_eq!(list(ExceptionFilter::default()), ["x1-0", "x1-1", "x2-0", "x3-0"]);
    assert_eq!(list(ExceptionFilter { queue: Some("approvals".into()), ..Default::default() }), ["x2-0"]);
    assert_eq!(list(ExceptionFilter { before: Some(0), ..Default::default() }), Vec::<String>::new());
    let all = s.exceptions(&ExceptionFilter::default(), 0, 100).unwrap();
    let id_of = |m: &str| all.iter().find(|e| e.message_id == m).unwrap().id;
    let (record, body) = s.exception(id_of("x2-0")).unwrap().unwrap();
    assert_eq!((record.tenant.as_str(), record.source_id.as_str(), body["id"].as_str()), ("acme", "x2", Some("x2-0")));

    // Resolved outside: nothing goes back to work.
    let done = s.settle_exception(id_of("x2-0"), &Settle::Resolve { comment: "approved by phone".into() }).unwrap().unwrap();
    assert_eq!((done.state.as_str(), done.note.as_deref()), ("resolved", Some("approved by phone")));
    assert!(matches!(s.settle_exception(id_of("x2-0"), &Settle::Discard { reason: "x".into() }), Err(StoreError::Conflict(_))));
    // Retried after a fix: the message is processed again, its other open exception goes with it.
    let retried = s.settle_exception(id_of("x1-1"), &Settle::Retry { comment: "item SKU-9 created".into() }).unwrap().unwrap();
    assert_eq!(retried.state, "retried");
    assert_eq!(ids(&s.claim(&lease, 0, now_ms(), 10).unwrap().rows, |m| &m.id), ["x1"]);
    assert_eq!(list(ExceptionFilter::default()), ["x3-0"]);
    // Discarded with a reason; overdue marks are kept.
    s.mark_exception_overdue(id_of("x3-0"), 77).unwrap();
    assert_eq!(s.exceptions(&ExceptionFilter::default(), 0, 10).unwrap()[0].overdue_at, Some(77));
    s.settle_exception(id_of("x3-0"), &Settle::Discard { reason: "test data".into() }).unwrap().unwrap();
    assert_eq!(list(ExceptionFilter { state: Some("discarded".into()), ..Default::default() }), ["x3-0"]);
    assert!(s.settle_exception(9_999_999, &Settle::Resolve { comment: "x".into() }).unwrap().is_none());
    // Settled ones are pruned with the rest, and the messages only they held.
    s.prune(now_ms() + 1).unwrap();
    assert_eq!(list(ExceptionFilter { state: Some("all".into()), ..Default::default() }), Vec::<String>::new());
    assert!(s.trace("x2").unwrap().is_none() && s.trace("x3").unwrap().is_none());
    assert!(s.trace("x1").unwrap().is_some(), "at work again");
}

pub fn tiers_are_served_in_lanes_keeping_order_per_key(s: &dyn Store) {
    use crate::config::Tier;
    s.append(vec![msg("m", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let of = |id: &str, key: &str, tier: Tier| NewDelivery { tier, ..out(id, key) };
    let outputs = vec![of("b1", "k", Tier::Bulk), of("b2", "j", Tier::Bulk), of("s1", "h", Tier::Standard), of("c1", "i", Tier::Critical), of("c2", "k", Tier::Critical)];
    s.ack(&lease, commit(vec![settled("m", outputs)])).unwrap();
    let sink = sink_lease(s);
    let due = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    let lanes: Vec<(&str, Tier)> = due.iter().map(|d| (d.id.as_str(), d.lane)).collect();
    // c2 lifts its key's earlier bulk b1 into the critical lane: b1 goes first, in order.
    assert_eq!(lanes, [("b1", Tier::Critical), ("c1", Tier::Critical), ("s1", Tier::Standard), ("b2", Tier::Bulk)]);
    assert_eq!(due[0].tier, Tier::Bulk, "its own tier is kept");
    let b = s.backlog().unwrap();
    let lanes: Vec<(Tier, i64)> = b.lanes.iter().map(|(_, t, n, _)| (*t, *n)).collect();
    assert_eq!(lanes, [(Tier::Critical, 2), (Tier::Standard, 1), (Tier::Bulk, 2)]);
}

/// At a sink several tenants and pipelines share, a key is theirs alone:
/// another pipeline's equal key neither waits for theirs nor lifts it.
pub fn a_key_keeps_order_within_its_tenant_and_pipeline_only(s: &dyn Store) {
    use crate::config::Tier;
    let of = |id: &str, tier: Tier| NewDelivery { tier, ..out(id, "k") };
    for (tenant, pipeline, outputs) in [
        ("acme", "p", vec![of("p1", Tier::Bulk), of("p2", Tier::Bulk)]),
        ("acme", "q", vec![of("q1", Tier::Bulk), of("q2", Tier::Critical)]),
        ("globex", "p", vec![of("g1", Tier::Standard)]),
    ] {
        let id = format!("m-{tenant}-{pipeline}");
        s.append(vec![NewMessage { tenant: tenant.into(), pipeline: pipeline.into(), ..msg(&id, None) }], None).wait().unwrap();
        let part = Partition { queue: Queue::Messages { tenant: tenant.into(), pipeline: pipeline.into() }, index: 0, of: 1 };
        let lease = s.lease(&part, "test", now_ms(), 60_000).unwrap();
        s.ack(&lease, Commit { tenant: tenant.into(), pipeline: pipeline.into(), ..commit(vec![settled(&id, outputs)]) }).unwrap();
    }
    let sink = sink_lease(s);
    let now = now_ms();
    let due = s.claim_deliveries(&sink, now, 10).unwrap().rows;
    let lanes: Vec<(&str, Tier)> = due.iter().map(|d| (d.id.as_str(), d.lane)).collect();
    // q2 lifts its own key's q1, not acme/p's earlier p1.
    assert_eq!(lanes, [("q1", Tier::Critical), ("g1", Tier::Standard), ("p1", Tier::Bulk)]);
    let seq = |id: &str| due.iter().find(|d| d.id == id).unwrap().seq;
    let retry = AttemptResult::Retry { error: "HTTP 503".into(), next_at: now + 60_000, outcome_unknown: false };
    let delivered = |id: &str| Attempt { seq: seq(id), digest: "sha256:x".into(), result: AttemptResult::Delivered(id.into()) };
    s.ack_deliveries(&sink, vec![Attempt { seq: seq("p1"), digest: "sha256:x".into(), result: retry }, delivered("q1"), delivered("g1")]).unwrap();
    let due = s.claim_deliveries(&sink, now, 10).unwrap();
    assert_eq!(ids(&due.rows, |d| &d.id), ["q2"], "p1's retry holds p2 only");
    assert_eq!(due.next_at, Some(now + 60_000));
}

pub fn finds_messages_by_correlation(s: &dyn Store) {
    let with = |id: &str, tenant: &str, correlation: Option<&str>| NewMessage { tenant: tenant.into(), correlation: correlation.map(Into::into), ..msg(id, None) };
    s.append(vec![with("flow-1", "acme", None), with("m2", "acme", Some("flow-1")), with("m3", "globex", Some("flow-1")), with("m4", "acme", Some("other"))], None)
        .wait()
        .unwrap();
    assert_eq!(s.correlated("flow-1", &None, 10).unwrap(), ["flow-1", "m2", "m3"], "its own id and those naming it, oldest first");
    assert_eq!(s.correlated("flow-1", &Some(vec!["acme".into()]), 10).unwrap(), ["flow-1", "m2"], "cut to the scope");
    assert_eq!(s.correlated("flow-1", &None, 2).unwrap().len(), 2);
    assert!(s.correlated("nothing", &None, 10).unwrap().is_empty());
}

pub fn closes_loops(s: &dyn Store) {
    use records::LoopFilter;
    // Two requisitions delivered with a status expected within 1 s; one plain delivery.
    let order = |id: &str| format!("{{\"kind\":\"purchase-requisition\",\"correlation-id\":\"flow-{id}\",\"id\":\"{id}\"}}");
    let expect = |id: &str, ms: Option<i64>| NewDelivery { expect_ms: ms, json: order(id), ..out(id, id) };
    s.append(vec![msg("m", None)], None).wait().unwrap();
    s.ack(&lease_all(s), commit(vec![settled("m", vec![expect("r1", Some(1000)), expect("r2", Some(1000)), expect("plain", None)])])).unwrap();
    let sink = sink_lease(s);
    let due = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    assert_eq!(due.len(), 3);
    let delivered = due.iter().map(|d| Attempt { seq: d.seq, digest: "sha256:x".into(), result: AttemptResult::Delivered(format!("ERP-{}", d.id)) }).collect();
    s.ack_deliveries(&sink, delivered).unwrap();
    let all = s.loops(&LoopFilter::default(), 0, 10).unwrap();
    assert_eq!(
        all.iter().map(|l| (l.message_id.as_str(), l.state.as_str(), l.kind.as_str(), l.tenant.as_str())).collect::<Vec<_>>(),
        [("r1", "open", "purchase-requisition", "acme"), ("r2", "open", "purchase-requisition", "acme")]
    );
    assert_eq!(all[0].due_at - all[0].delivered_at, 1000);
    assert_eq!((all[0].correlation.as_deref(), all[0].reference.as_deref()), (Some("flow-r1"), Some("ERP-r1")));
    assert_eq!(s.loops(&LoopFilter { due_before: Some(all[0].due_at), ..Default::default() }, 0, 10).unwrap().len(), 0);

    // r1 goes overdue: an exception is parked with it, once.
    let exception = |id: &str| NewException {
        queue: "open-loops".into(),
        message_id: id.into(),
        detail: records::ExceptionDetail::Record { code: "no-execution-status".into(), text: "late".into(), severity: "error".into() },
        json: "{}".into(),
    };
    let parked = s.loop_overdue(all[0].id, exception("r1")).unwrap().expect("parked");
    assert_eq!(s.loop_overdue(all[0].id, exception("r1")).unwrap(), None, "only an open loop goes overdue");
    assert_eq!(s.exception(parked).unwrap().unwrap().0.queue, "open-loops");

    // A status answering r2 by correlation, one answering r1 by reference (late), one of another tenant.
    let status = |id: &str, tenant: &str, correlation: &str, order_ref: &str| NewMessage {
        tenant: tenant.into(),
        answers: Some(LoopAnswer { correlation: correlation.into(), order_ref: order_ref.into() }),
        ..msg(id, None)
    };
    // (s1 names r1's reference and r2's flow: the reference wins, r2 stays open until s2.)
    s.append(vec![status("s0", "globex", "flow-r2", "ERP-r1"), status("s1", "acme", "flow-r2", "ERP-r1")], None).wait().unwrap();
    assert_eq!(s.loops(&LoopFilter { state: Some("open".into()), ..Default::default() }, 0, 10).unwrap()[0].message_id, "r2");
    s.append(vec![status("s2", "acme", "flow-r2", "PO-9")], None).wait().unwrap();
    let closed: Vec<(String, Option<String>)> = s.loops(&LoopFilter { state: Some("closed".into()), ..Default::default() }, 0, 10).unwrap().into_iter().map(|l| (l.message_id, l.closed_by)).collect();
    assert_eq!(closed, [("r1".to_string(), Some("s1".to_string())), ("r2".to_string(), Some("s2".to_string()))]);
    let late = s.loops(&LoopFilter { closed_late_unsettled: true, ..Default::default() }, 0, 10).unwrap();
    assert_eq!((late.len(), late[0].exception_id), (1, Some(parked)), "closed late with its exception open");
    assert!(s.loops(&LoopFilter { scope: Some(vec!["globex".into()]), ..Default::default() }, 0, 10).unwrap().is_empty());
    // Closed loops go with the retention.
    s.prune(now_ms() + 1_000).unwrap();
    assert!(s.loops(&LoopFilter::default(), 0, 10).unwrap().is_empty());
}

/// Work one process queues wakes another's workers: `this` store's
/// watcher hears that the pipeline has messages `other` accepted, and that
/// the sink has the deliveries `other`'s commit queued (stores several
/// processes share).
pub fn another_process_s_work_wakes_this_one(this: &dyn Store, other: &dyn Store) {
    let heard = std::sync::Arc::new(Heard::default());
    this.watch(heard.clone());
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "not heard within 10 s: {what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    other.append(vec![msg("a", None)], None).wait().unwrap();
    until("the pipeline has messages", &|| heard.reopened.lock().unwrap().contains(&("acme".to_string(), "p".to_string())));
    let lease = lease_all(other);
    other.ack(&lease, commit(vec![settled("a", vec![out("o1", "k")])])).unwrap();
    until("the sink has deliveries", &|| heard.requeued.lock().unwrap().contains(&"erp".to_string()));
    // Only that there is work: the work itself is claimed from the store.
    assert!(heard.appended.lock().unwrap().is_empty() && heard.queued.lock().unwrap().is_empty());
}

/// Collects what a store announces.
#[derive(Default)]
struct Heard {
    appended: std::sync::Mutex<Vec<Appended>>,
    reopened: std::sync::Mutex<Vec<(String, String)>>,
    queued: std::sync::Mutex<Vec<Queued>>,
    requeued: std::sync::Mutex<Vec<String>>,
}

impl QueueWatcher for Heard {
    fn appended(&self, rows: Vec<Appended>) {
        self.appended.lock().unwrap().extend(rows);
    }
    fn reopened(&self, tenant: &str, pipeline: &str) {
        self.reopened.lock().unwrap().push((tenant.to_string(), pipeline.to_string()));
    }
    fn queued(&self, rows: Vec<Queued>) {
        self.queued.lock().unwrap().extend(rows);
    }
    fn requeued(&self, sink: &str) {
        self.requeued.lock().unwrap().push(sink.to_string());
    }
}

pub fn queued_deliveries_are_announced_once_durable_in_queue_order(s: &dyn Store) {
    let heard = std::sync::Arc::new(Heard::default());
    s.watch(heard.clone());
    s.append(vec![msg("a", None), msg("b", None), msg("c", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let message = std::sync::Arc::new(syncline_model::Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "text/plain".into(), data: b"o1".to_vec() })));
    let o1 = NewDelivery { message: Some(message.clone()), ..out("o1", "k") };
    s.ack(&lease, commit(vec![settled("a", vec![o1, out("o2", "j")]), settled("b", vec![out("o3", "k")])])).unwrap();
    // A refused ack queues nothing and announces nothing.
    let stale = Lease { token: lease.token - 1, ..lease.clone() };
    assert!(s.ack(&stale, commit(vec![settled("c", vec![out("o4", "k")])])).is_err());
    // Processed again (a worker that raced a restart): nothing new is queued.
    s.ack(&lease, commit(vec![settled("a", vec![out("o1", "k")])])).unwrap();
    let queued = heard.queued.lock().unwrap().clone();
    assert_eq!(ids(&queued, |q| &q.delivery.id), ["o1", "o2", "o3"]);
    let sink = sink_lease(s);
    let claimed = s.claim_deliveries(&sink, now_ms(), 10).unwrap().rows;
    for q in &queued {
        assert_eq!(q.sink, "erp");
        assert_eq!(q.key_hash, crate::pipeline::fields::key_hash(if q.delivery.id == "o2" { "j" } else { "k" }));
        let d = &q.delivery;
        assert_eq!((d.attempts, d.next_at, d.lane, d.json.as_str()), (0, 0, d.tier, "{}"));
        if let Some(c) = claimed.iter().find(|c| c.id == d.id) {
            assert_eq!((c.seq, &c.ordering_key), (d.seq, &d.ordering_key), "as the claim gives it");
        }
    }
    assert!(queued.windows(2).all(|w| w[0].delivery.seq < w[1].delivery.seq), "in queue order");
    assert!(std::sync::Arc::ptr_eq(queued[0].delivery.message.as_ref().unwrap(), &message), "the message handed in, handed on");
    // A dead letter replayed to its sink is pending again, unannounced: the store says so.
    let dead = refused("o2");
    let o2 = queued[1].delivery.seq;
    s.ack_deliveries(&sink, vec![Attempt { seq: o2, digest: "sha256:x".into(), result: AttemptResult::Dead(dead) }]).unwrap();
    assert!(heard.requeued.lock().unwrap().is_empty());
    let letter = s.dead_letters(&Default::default(), 0, 10).unwrap()[0].id;
    s.replay_dead_letter(letter).unwrap();
    assert_eq!(*heard.requeued.lock().unwrap(), ["erp"]);
    assert_eq!(heard.queued.lock().unwrap().len(), 3);
}

pub fn a_snapshot_is_every_pending_delivery_or_none(s: &dyn Store) {
    s.append(vec![msg("a", None), msg("b", None)], None).wait().unwrap();
    let lease = lease_all(s);
    let sink = sink_lease(s);
    assert_eq!(s.snapshot_deliveries(&sink, now_ms(), 10).unwrap().map(|s| s.rows.len()), Some(0), "an empty queue");
    s.ack(&lease, commit(vec![settled("a", vec![out("o1", "k"), out("o2", "k")])])).unwrap();
    let snap = s.snapshot_deliveries(&sink, now_ms(), 10).unwrap().unwrap();
    assert_eq!(ids(&snap.rows, |d| &d.id), ["o1", "o2"], "every pending one, not only each key's first");
    assert!(snap.high >= snap.rows[1].seq);
    assert!(s.snapshot_deliveries(&sink, now_ms(), 1).unwrap().is_none(), "more than asked for");
    let other = Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 1, of: 2 };
    let part = s.lease(&other, "test", now_ms(), 60_000).unwrap();
    let in_part = s.snapshot_deliveries(&part, now_ms(), 10).unwrap().unwrap().rows.len();
    assert_eq!(in_part, if crate::pipeline::fields::key_hash("k") % 2 == 1 { 2 } else { 0 }, "only the partition's keys");
    // A retry waiting: no snapshot until it is due.
    let now = now_ms();
    let nack = AttemptResult::Retry { error: "HTTP 503".into(), next_at: now + 5_000, outcome_unknown: false };
    s.ack_deliveries(&sink, vec![Attempt { seq: snap.rows[0].seq, digest: "sha256:x".into(), result: nack }]).unwrap();
    assert!(s.snapshot_deliveries(&sink, now, 10).unwrap().is_none());
    let due = s.snapshot_deliveries(&sink, now + 5_000, 10).unwrap().unwrap();
    assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["HTTP 503".to_string()]));
    // `high` tells later deliveries from those it holds.
    s.ack(&lease, commit(vec![settled("b", vec![out("o3", "j")])])).unwrap();
    let later = s.claim_deliveries(&sink, now + 5_000, 10).unwrap().rows.into_iter().find(|d| d.id == "o3").unwrap();
    assert!(later.seq > snap.high);
}

pub fn accepted_messages_are_announced_once_durable_and_snapshotted(s: &dyn Store) {
    use records::Replayed;
    let heard = std::sync::Arc::new(Heard::default());
    s.watch(heard.clone());
    let message = std::sync::Arc::new(syncline_model::Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "text/plain".into(), data: b"a".to_vec() })));
    let a = NewMessage { message: Some(message.clone()), key_hash: 3, ..msg("a", Some("k1")) };
    s.append(vec![a, msg("b", None)], None).wait().unwrap();
    // A duplicate is not accepted, so not announced.
    s.append(vec![msg("a-again", Some("k1")), msg("c", None)], None).wait().unwrap();
    let appended = heard.appended.lock().unwrap().clone();
    assert_eq!(ids(&appended, |a| &a.pending.id), ["a", "b", "c"]);
    assert!(appended.iter().all(|a| (a.tenant.as_str(), a.pipeline.as_str()) == ("acme", "p")));
    assert!(appended.windows(2).all(|w| w[0].pending.seq < w[1].pending.seq), "in queue order");
    assert!(std::sync::Arc::ptr_eq(appended[0].pending.message.as_ref().unwrap(), &message), "the message handed in, handed on");
    let lease = lease_all(s);
    let now = now_ms();
    let claimed = s.claim(&lease, 0, now, 10).unwrap().rows;
    for (a, c) in appended.iter().zip(&claimed) {
        let p = &a.pending;
        assert_eq!((p.seq, &p.id, p.key_hash, &p.json, p.attempts, p.errors.is_empty()), (c.seq, &c.id, c.key_hash, &c.json, 0, true), "as the claim gives it");
    }

    // A snapshot: every accepted message of the partition, or none.
    let snap = s.snapshot_messages(&lease, now, 10).unwrap().unwrap();
    assert_eq!(ids(&snap.rows, |p| &p.id), ["a", "b", "c"]);
    assert!(snap.high >= snap.rows[2].seq);
    assert!(s.snapshot_messages(&lease, now, 2).unwrap().is_none(), "more than asked for");
    let shard = |index| s.lease(&Partition { queue: Queue::Messages { tenant: "acme".into(), pipeline: "p".into() }, index, of: 2 }, "test", now, 60_000).unwrap();
    assert_eq!(ids(&s.snapshot_messages(&shard(1), now, 10).unwrap().unwrap().rows, |p| &p.id), ["a"], "only the shard's keys (a hashes to 3)");
    let sink = sink_lease(s);
    assert!(s.snapshot_messages(&sink, now, 10).is_err(), "not a message queue");
    // Processed ones leave it; one waiting for a retry withholds it until due.
    let retry = Processed { retry: Some(Retry { next_at: now + 5_000, errors: vec!["flaky".into()] }), ..settled("b", vec![]) };
    s.ack(&lease, commit(vec![settled("a", vec![]), retry])).unwrap();
    assert!(s.snapshot_messages(&lease, now, 10).unwrap().is_none());
    let due = s.snapshot_messages(&lease, now + 5_000, 10).unwrap().unwrap();
    assert_eq!(ids(&due.rows, |p| &p.id), ["b", "c"]);
    assert_eq!((due.rows[0].attempts, due.rows[0].errors.clone()), (1, vec!["flaky".to_string()]));
    assert!(heard.reopened.lock().unwrap().is_empty());
    // A message dead-lettered in a stage and replayed is accepted again
    // under its old seq, unannounced: the store says so.
    let dead = Processed { state: Final::Dead, dead_letters: vec![dead_letter("c", "stage 1 (m)", "trapped")], ..settled("c", vec![]) };
    s.ack(&lease, commit(vec![dead])).unwrap();
    let letter = s.dead_letters(&Default::default(), 0, 10).unwrap()[0].id;
    assert!(matches!(s.replay_dead_letter(letter).unwrap(), Some(Replayed::Message { .. })));
    assert_eq!(*heard.reopened.lock().unwrap(), [("acme".to_string(), "p".to_string())]);
    assert_eq!(heard.appended.lock().unwrap().len(), 3);
}

//! `channel-reconciler`: an allocator that reconciles replenishment
//! recommendations from several planning engines (retail, B2B, ...). In each
//! batch (the stage's `batch = { window }` is the reconciliation window),
//! recommendations for the same item and location compete: the one from
//! the channel ranked first wins and goes on unchanged; each other is
//! deferred as an `exception` for the reconciliation queue. Every contested
//! recommendation's output carries a `decision` header saying what was
//! decided and why; the host records each such decision in the audit log
//! (actor `plugin:channel-reconciler`) and the trace shows it on the output.
//! An uncontested recommendation and every other kind pass through
//! unchanged.
//!
//! Ranking: the channel's place in `channels`; a channel not listed ranks
//! after every listed one; then the recommendation's own priority (1 first);
//! then the order of arrival.
//!
//! Config:
//! - `channels`: channel names, first wins (required): `["retail", "b2b"]`
//! - `channel-from`: where a message's channel is, as a path into its JSON
//!   form (default `source-system`; e.g. `body.extensions.channel`)
//! - `exception-queue`: where deferred ones go (default `reconciliation`)
use plugin_fields::{bad_config, canonical, lookup};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct ChannelReconciler;

struct Rules {
    channels: Vec<String>,
    channel_from: String,
    queue: String,
}

impl Rules {
    fn load() -> Result<Rules, PluginError> {
        let channels = config::json::<Vec<String>>("channels")?.unwrap_or_default();
        if channels.is_empty() {
            return Err(bad_config("`channels` is required: the channels in priority order, e.g. [\"retail\", \"b2b\"]"));
        }
        Ok(Rules {
            channels,
            channel_from: config::get("channel-from").unwrap_or_else(|| "source-system".into()),
            queue: config::get_or("exception-queue", "reconciliation"),
        })
    }

    fn channel(&self, msg: &Message) -> String {
        let doc = canonical(msg);
        lookup(&doc, &self.channel_from).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()
    }

    /// A channel's rank: its place in the list, unknown ones after all.
    fn rank(&self, channel: &str) -> usize {
        self.channels.iter().position(|c| c == channel).unwrap_or(self.channels.len())
    }
}

/// One recommendation in the batch.
struct Contender<'a> {
    at: usize,
    msg: &'a Message,
    rec: &'a ReplenishmentRecommendation,
    channel: String,
}

/// Decides a batch: for each input position, its output.
fn reconcile(rules: &Rules, batch: &[Message]) -> Vec<Message> {
    let mut out: Vec<Option<Message>> = vec![None; batch.len()];
    // Recommendations by item and location, in order of first arrival.
    let mut groups: Vec<((String, String), Vec<Contender>)> = Vec::new();
    for (at, msg) in batch.iter().enumerate() {
        let Body::ReplenishmentRecommendation(rec) = &msg.body else {
            out[at] = Some(msg.clone());
            continue;
        };
        let key = (rec.item.clone(), rec.location.clone());
        let c = Contender { at, msg, rec, channel: rules.channel(msg) };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(c),
            None => groups.push((key, vec![c])),
        }
    }
    for ((item, location), mut group) in groups {
        if group.len() == 1 {
            let c = &group[0];
            out[c.at] = Some(c.msg.clone());
            continue;
        }
        group.sort_by_key(|c| (rules.rank(&c.channel), c.rec.priority, c.at));
        let winner = &group[0];
        let losers: Vec<String> = group[1..].iter().map(|c| format!("{} from {}", c.rec.id, label(&c.channel))).collect();
        let accepted = format!(
            "accepted: {} from {} for {item} at {location} outranks {} ({})",
            winner.rec.id,
            label(&winner.channel),
            losers.join(", "),
            rules.channels.join(" > ")
        );
        out[winner.at] = Some(winner.msg.clone().with_header("decision", accepted).with_header("reconciled-by", "channel-reconciler"));
        for c in &group[1..] {
            let why = format!(
                "deferred: {} from {} for {item} at {location}: {} from {} ranks first ({})",
                c.rec.id,
                label(&c.channel),
                winner.rec.id,
                label(&winner.channel),
                rules.channels.join(" > ")
            );
            let exception = Exception {
                code: "deferred-by-channel-priority".into(),
                severity: Severity::Info,
                domain: "reconciliation".into(),
                entities: vec![
                    EntityRef { kind: "recommendation".into(), id: c.rec.id.clone() },
                    EntityRef { kind: "recommendation".into(), id: winner.rec.id.clone() },
                    EntityRef { kind: "item".into(), id: item.clone() },
                    EntityRef { kind: "location".into(), id: location.clone() },
                ],
                text: why.clone(),
                queue: rules.queue.clone(),
                extensions: vec![],
            };
            out[c.at] = Some(c.msg.derive(Body::Exception(exception)).with_header("decision", why).with_header("reconciled-by", "channel-reconciler"));
        }
    }
    out.into_iter().map(|m| m.expect("every input has its output")).collect()
}

fn label(channel: &str) -> String {
    if channel.is_empty() { "no channel".into() } else { channel.to_string() }
}

impl Allocator for ChannelReconciler {
    fn allocate(batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {
        let rules = config::cached(Rules::load)?;
        Ok(reconcile(&rules, &batch))
    }
}

export_allocator!(ChannelReconciler);

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, item: &str, channel: &str, priority: u8) -> Message {
        let mut m = Message::new(Body::ReplenishmentRecommendation(ReplenishmentRecommendation {
            id: id.into(),
            item: item.into(),
            location: "DC-1".into(),
            quantity: 10.0,
            uom: "EA".into(),
            need_by: "2026-12-21".into(),
            source: SourceRef::Supplier("SUP-7".into()),
            reason: "r".into(),
            priority,
            extensions: vec![],
        }));
        m.id = format!("M-{id}");
        m.source_system = channel.into();
        m
    }

    fn rules() -> Rules {
        Rules { channels: vec!["retail".into(), "b2b".into()], channel_from: "source-system".into(), queue: "reconciliation".into() }
    }

    #[test]
    fn the_first_channel_wins_and_the_others_are_deferred_with_reasons() {
        let batch = vec![rec("B1", "SKU-1", "b2b", 1), rec("R1", "SKU-1", "retail", 5), rec("X1", "SKU-2", "b2b", 3), rec("U1", "SKU-1", "", 1)];
        let out = reconcile(&rules(), &batch);
        assert_eq!(out.len(), 4);
        assert!(matches!(out[0].body, Body::Exception(_)), "b2b deferred");
        assert_eq!(out[0].causation_id.as_deref(), Some("M-B1"));
        assert!(out[0].header("decision").unwrap().starts_with("deferred: B1 from b2b for SKU-1 at DC-1: R1 from retail ranks first"), "{:?}", out[0].header("decision"));
        assert_eq!(out[1].id, "M-R1", "the winner goes on unchanged");
        assert_eq!(out[1].header("decision"), Some("accepted: R1 from retail for SKU-1 at DC-1 outranks B1 from b2b, U1 from no channel (retail > b2b)"));
        assert_eq!(out[2].header("decision"), None, "uncontested");
        assert!(out[3].header("decision").unwrap().contains("U1 from no channel"), "an unknown channel ranks last");
    }

    #[test]
    fn within_a_channel_the_recommendations_own_priority_then_arrival_decide() {
        let out = reconcile(&rules(), &[rec("A", "SKU-1", "retail", 4), rec("B", "SKU-1", "retail", 2), rec("C", "SKU-1", "retail", 2)]);
        assert_eq!(out[1].id, "M-B");
        assert!(matches!(out[0].body, Body::Exception(_)) && matches!(out[2].body, Body::Exception(_)));
    }
}

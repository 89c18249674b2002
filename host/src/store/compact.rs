//! The stored form of a message's [`Processing`]: the same record, a
//! third of the size. Each message id the steps name is listed once and
//! referred to by its position; each plugin version (name and digest) by a
//! number the backend keeps for it; field names are one letter. A trace is
//! written for every message, so its size is most of what the store holds
//! per message after processing. Expanded back to [`Processing`] on read.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::records::{Processing, RouteStep, ShardRef, StageStep, Step, StepOutcome};

#[derive(Serialize, Deserialize)]
struct Compact {
    /// Shard index and count.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    shard: Option<(u32, u32)>,
    /// The message ids the steps name, in order of first mention.
    #[serde(rename = "i")]
    ids: Vec<String>,
    /// The steps.
    #[serde(rename = "s")]
    steps: Vec<CompactStep>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CompactStep {
    Stage(CompactStage),
    Route {
        /// The routed message (position in `ids`).
        r: usize,
        to: Vec<String>,
    },
}

/// A stage call. Its outcome is `e` (an error), `v` with `x` and `y` (a
/// verdict; no `x` means no violations), or else `o` with `b` (outputs).
#[derive(Serialize, Deserialize)]
struct CompactStage {
    /// Stage number.
    n: usize,
    /// Plugin version.
    p: i64,
    /// Input (position in `ids`).
    i: usize,
    /// Microseconds.
    t: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<usize>,
    /// Log lines dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<u64>,
}

/// Positions of message ids in a trace, in order of first mention.
#[derive(Default)]
struct Ids<'a> {
    list: Vec<String>,
    at: HashMap<&'a str, usize>,
}

impl<'a> Ids<'a> {
    fn of(&mut self, id: &'a str) -> usize {
        *self.at.entry(id).or_insert_with(|| {
            self.list.push(id.to_string());
            self.list.len() - 1
        })
    }
}

/// `processing` in its stored form; `version` gives the number kept for a
/// plugin name and digest.
///
/// # Errors
///
/// What `version` returns.
pub fn encode<E>(processing: &Processing, mut version: impl FnMut(&str, &str) -> Result<i64, E>) -> Result<String, E> {
    let mut ids = Ids::default();
    let mut steps = Vec::with_capacity(processing.steps.len());
    for step in &processing.steps {
        steps.push(match step {
            Step::Stage(s) => {
                let mut c = CompactStage {
                    n: s.stage,
                    p: version(&s.plugin, &s.digest)?,
                    i: ids.of(&s.input),
                    t: s.micros,
                    e: None,
                    v: None,
                    x: None,
                    y: None,
                    o: None,
                    b: None,
                    l: s.logs_dropped,
                };
                match &s.outcome {
                    StepOutcome::Error { error } => c.e = Some(error.clone()),
                    StepOutcome::Validated { valid, violations, policy } => {
                        c.v = Some(*valid);
                        c.x = (!matches!(violations, Value::Array(a) if a.is_empty())).then(|| violations.clone());
                        c.y = policy.clone();
                    }
                    StepOutcome::Outputs { batch, outputs } => {
                        c.o = Some(outputs.iter().map(|id| ids.of(id)).collect());
                        c.b = *batch;
                    }
                }
                CompactStep::Stage(c)
            }
            Step::Route(r) => CompactStep::Route { r: ids.of(&r.route), to: r.to.clone() },
        });
    }
    let shard = processing.shard.map(|s| (s.index, s.of));
    Ok(serde_json::to_string(&Compact { shard, ids: ids.list, steps }).expect("a processing record serializes"))
}

/// The [`Processing`] a stored form holds; `version` names the plugin and
/// digest of a number `encode` was given. `None` when `text` is not a
/// stored form.
pub fn decode(text: &str, version: impl Fn(i64) -> Option<(String, String)>) -> Option<Processing> {
    let c: Compact = serde_json::from_str(text).ok()?;
    let id = |i: usize| c.ids.get(i).cloned().unwrap_or_default();
    let steps = c
        .steps
        .into_iter()
        .map(|step| match step {
            CompactStep::Stage(s) => {
                let (plugin, digest) = version(s.p).unwrap_or_else(|| ("?".into(), "?".into()));
                let outcome = match (s.e, s.v) {
                    (Some(error), _) => StepOutcome::Error { error },
                    (None, Some(valid)) => StepOutcome::Validated { valid, violations: s.x.unwrap_or_else(|| Value::Array(vec![])), policy: s.y },
                    (None, None) => StepOutcome::Outputs { batch: s.b, outputs: s.o.unwrap_or_default().into_iter().map(id).collect() },
                };
                Step::Stage(StageStep { stage: s.n, plugin, digest, input: id(s.i), micros: s.t, outcome, logs_dropped: s.l })
            }
            CompactStep::Route { r, to } => Step::Route(RouteStep { route: id(r), to }),
        })
        .collect();
    Some(Processing { shard: c.shard.map(|(index, of)| ShardRef { index, of }), steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage(stage: usize, plugin: &str, input: &str, outcome: StepOutcome) -> Step {
        Step::Stage(StageStep {
            stage,
            plugin: plugin.into(),
            digest: format!("sha256:{}", plugin.len().to_string().repeat(64)),
            input: input.into(),
            micros: 100 + stage as u64,
            outcome,
            logs_dropped: (stage == 2).then_some(7),
        })
    }

    fn sample() -> Processing {
        let outputs = |ids: &[&str]| StepOutcome::Outputs { batch: None, outputs: ids.iter().map(|s| s.to_string()).collect() };
        Processing {
            shard: Some(ShardRef { index: 1, of: 2 }),
            steps: vec![
                stage(1, "json-mapper", "01IN", outputs(&["01A", "01B"])),
                stage(2, "canonical-validator", "01A", StepOutcome::Validated { valid: true, violations: json!([]), policy: None }),
                stage(
                    2,
                    "canonical-validator",
                    "01B",
                    StepOutcome::Validated {
                        valid: false,
                        violations: json!([{"field": "quantity", "code": "negative"}]),
                        policy: Some("exception".into()),
                    },
                ),
                stage(3, "moq-leadtime", "01A", StepOutcome::Outputs { batch: Some(3), outputs: vec!["01C".into()] }),
                stage(3, "moq-leadtime", "01C", StepOutcome::Error { error: "no lead time".into() }),
                stage(3, "moq-leadtime", "01C", StepOutcome::Outputs { batch: None, outputs: vec![] }),
                Step::Route(RouteStep { route: "01C".into(), to: vec!["erp".into(), "audit".into()] }),
            ],
        }
    }

    #[test]
    fn a_processing_record_survives_its_stored_form() {
        let mut versions: Vec<(String, String)> = Vec::new();
        let text = encode::<()>(&sample(), |plugin, digest| {
            let v = (plugin.to_string(), digest.to_string());
            Ok(versions.iter().position(|k| *k == v).unwrap_or_else(|| {
                versions.push(v);
                versions.len() - 1
            }) as i64)
        })
        .unwrap();
        let back = decode(&text, |n| versions.get(n as usize).cloned()).unwrap();
        assert_eq!(back, sample());
        let full = serde_json::to_string(&sample()).unwrap();
        assert!(text.len() * 2 < full.len(), "stored {} bytes for {}: {text}", text.len(), full.len());
    }

    #[test]
    fn an_empty_record_and_foreign_text() {
        let empty = Processing::default();
        let text = encode::<()>(&empty, |_, _| Ok(0)).unwrap();
        assert_eq!(decode(&text, |_| None), Some(empty));
        assert_eq!(decode(r#"{"steps": []}"#, |_| None), None, "the JSON form is not the stored form");
    }
}

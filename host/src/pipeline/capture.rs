//! Contract capture: for a while, one stage records what its plugin was
//! given and what it answered, as golden cases (`plugin_test::Case`) that
//! `syncline test` runs against a new plugin version before it is deployed.
//! Secrets are already out of what a plugin answers (`runtime::redact`);
//! the config's secret values and the fields the operator names are
//! replaced by `[redacted]` here, in inputs and expected outputs alike (a
//! redacted field must not steer the plugin for the case to hold).

use std::sync::Mutex;

use serde_json::{Map, Value};
use syncline_model::{json as mjson, Message, Violation};

use crate::plugin_test::{Case, Expect};
use crate::runtime::CallError;

/// Most cases one capture keeps.
pub const MAX_CASES: usize = 1000;

/// What the plugin answered.
pub enum Answer<'a> {
    /// Output messages (transform, allocate).
    Outputs(&'a [Message]),
    /// Violations (validate).
    Violations(&'a [Violation]),
    /// A failure.
    Error(&'a CallError),
}

/// One running capture of a stage.
pub struct Capture {
    /// Until when (ms since the epoch).
    pub until: i64,
    /// Most cases kept.
    pub max: usize,
    /// Field paths replaced in inputs and outputs (`body.supplier`, `headers.token`).
    pub redact: Vec<String>,
    /// What the case files say about where they come from.
    pub origin: String,
    /// The stage's plugin config, secrets replaced.
    pub config: Map<String, Value>,
    /// Its reference tables: name -> file name (to copy next to the cases).
    pub tables: std::collections::BTreeMap<String, String>,
    cases: Mutex<Vec<Case>>,
}

impl Capture {
    /// A capture until `until`, of at most `max` cases.
    pub fn new(until: i64, max: usize, redact: Vec<String>, origin: String, stage: &crate::config::Stage) -> Capture {
        let mut config = stage.settings.config.clone();
        for key in &stage.settings.secret_keys {
            redact_path(&mut config, key);
        }
        let config = match config {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let tables = stage
            .settings
            .tables
            .iter()
            .map(|(name, path)| (name.clone(), path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()))
            .collect();
        Capture { until, max: max.clamp(1, MAX_CASES), redact, origin, config, tables, cases: Mutex::default() }
    }

    /// Whether it still records at `now`.
    pub fn running(&self, now: i64) -> bool {
        now < self.until && self.cases.lock().unwrap().len() < self.max
    }

    /// Records one call: `inputs` (one for transform and validate, the
    /// batch for allocate) and the `answer`.
    pub fn record(&self, inputs: &[&Message], answer: Answer<'_>) {
        if !self.running(crate::store::now_ms()) {
            return;
        }
        let mut inputs: Vec<Value> = inputs.iter().map(|m| self.redacted(mjson::to_value(m))).collect();
        let expect = match answer {
            Answer::Outputs(outs) => Expect { outputs: Some(outs.iter().map(|m| self.redacted(mjson::to_value(m))).collect()), ..Expect::default() },
            Answer::Violations(v) => Expect { violations: Some(v.iter().map(|v| serde_json::to_value(v).expect("a violation serializes")).collect()), ..Expect::default() },
            // The error's kind, not its text (which names the version).
            Answer::Error(e) => {
                let mut error = Map::new();
                error.insert("code".into(), e.failure.code().into());
                error.insert("retryable".into(), e.failure.is_retryable().into());
                Expect { error: Some(error), ..Expect::default() }
            }
        };
        let mut cases = self.cases.lock().unwrap();
        let description = format!("{}, call {}", self.origin, cases.len() + 1);
        let (input, inputs) = if inputs.len() == 1 { (inputs.pop(), None) } else { (None, Some(inputs)) };
        cases.push(Case { description, config: self.config.clone(), tables: self.tables.clone(), input, inputs, expect, ..Case::default() });
    }

    /// The cases so far (taken: a second look starts empty).
    pub fn take(&self) -> Vec<Case> {
        std::mem::take(&mut *self.cases.lock().unwrap())
    }

    fn redacted(&self, mut v: Value) -> Value {
        for path in &self.redact {
            redact_path(&mut v, path);
        }
        v
    }
}

/// Replaces the value at dotted `path` (object keys) with `[redacted]`.
pub fn redact_path(v: &mut Value, path: &str) {
    let mut at = v;
    let mut keys = path.split('.').peekable();
    while let Some(k) = keys.next() {
        let Some(next) = at.as_object_mut().and_then(|o| o.get_mut(k)) else { return };
        if keys.peek().is_none() {
            *next = Value::String(crate::runtime::redact::REDACTED.into());
            return;
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_redacted_where_it_exists_and_nothing_else_changes() {
        let mut v = serde_json::json!({"body": {"source": {"supplier": "SUP-7"}, "item": "SKU-1"}, "headers": {}});
        redact_path(&mut v, "body.source.supplier");
        redact_path(&mut v, "body.missing.deeper");
        redact_path(&mut v, "headers.token");
        assert_eq!(v, serde_json::json!({"body": {"source": {"supplier": "[redacted]"}, "item": "SKU-1"}, "headers": {}}));
    }
}

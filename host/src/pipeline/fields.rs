//! Reading message fields by path (`kind`, `tenant`, `headers.NAME`,
//! `body.location`, ...) for routes and ordering keys. The body's JSON form
//! is built at most once per message.

use std::cell::OnceCell;

use serde_json::Value;
use syncline_model::Message;

use crate::config::Condition;

/// A message with a lazily built JSON view of its body.
pub struct View<'a> {
    msg: &'a Message,
    body: OnceCell<Value>,
}

impl<'a> View<'a> {
    /// A view of `msg`.
    pub fn new(msg: &'a Message) -> View<'a> {
        View { msg, body: OnceCell::new() }
    }

    /// The field at `path` as text, if present.
    pub fn get(&self, path: &str) -> Option<String> {
        let m = self.msg;
        match path {
            "kind" => Some(m.kind().as_str().to_string()),
            "tenant" => Some(m.tenant.clone()),
            "source-system" => Some(m.source_system.clone()),
            "priority" => Some(m.priority.as_str().to_string()),
            "schema-version" => Some(m.schema_version.clone()),
            "correlation-id" => Some(m.correlation_id.clone()),
            _ => {
                if let Some(h) = path.strip_prefix("headers.") {
                    return m.header(h).map(str::to_string);
                }
                let rest = path.strip_prefix("body.")?;
                let body = self.body.get_or_init(|| serde_json::to_value(&m.body).unwrap_or(Value::Null));
                let mut cur = body;
                for part in rest.split('.') {
                    cur = cur.get(part)?;
                }
                match cur {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    Value::Object(o) if o.len() == 1 => {
                        // A variant such as `source = {supplier = "S1"}`: its value.
                        o.values().next().and_then(|v| v.as_str()).map(str::to_string)
                    }
                    other => Some(other.to_string()),
                }
            }
        }
    }

    /// Whether `cond` holds.
    pub fn matches(&self, cond: &Condition) -> bool {
        match cond {
            Condition::All(cs) => cs.iter().all(|c| self.matches(c)),
            Condition::Any(cs) => cs.iter().any(|c| self.matches(c)),
            Condition::Field { path, values } => self.get(path).is_some_and(|v| values.iter().any(|x| *x == v)),
        }
    }

    /// The ordering key: the values of `paths` joined by `|` (missing: empty).
    pub fn ordering_key(&self, paths: &[String]) -> String {
        paths.iter().map(|p| self.get(p).unwrap_or_default()).collect::<Vec<_>>().join("|")
    }
}

/// A stable 32-bit hash of an ordering key (FNV-1a), the same in every process.
pub fn key_hash(key: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in key.as_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

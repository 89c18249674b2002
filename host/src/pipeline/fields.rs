//! Reading message fields by path (`kind`, `tenant`, `headers.NAME`,
//! `body.location`, ...) for routes and ordering keys. A body field is read
//! without building the body's JSON form ([`super::pick`]); where that
//! cannot tell, the form is built, at most once per message.

use std::cell::OnceCell;

use serde_json::Value;
use syncline_model::Message;

use super::pick::Picked;
use crate::config::{Condition, OrderingKey};

/// A message, with its body's JSON form built only if a path needs it.
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
                let parts: Vec<&str> = rest.split('.').collect();
                let picked = match self.body.get() {
                    None => super::pick::pick(&m.body, &parts),
                    Some(_) => Picked::Unsure,
                };
                let owned;
                let cur = match picked {
                    Picked::Found(v) => {
                        owned = v?;
                        &owned
                    }
                    Picked::Unsure => {
                        let mut cur = self.body.get_or_init(|| serde_json::to_value(&m.body).unwrap_or(Value::Null));
                        for part in parts {
                            cur = cur.get(part)?;
                        }
                        cur
                    }
                };
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

    /// The values of `paths` joined by `|` (missing: empty).
    pub fn joined(&self, paths: &[String]) -> String {
        paths.iter().map(|p| self.get(p).unwrap_or_default()).collect::<Vec<_>>().join("|")
    }

    /// The message's ordering key under `key`: its id when there is no
    /// order to keep; for a raw JSON payload the values at the raw
    /// pointers (when the pipeline names any); otherwise the fields.
    pub fn ordering_key(&self, key: &OrderingKey) -> String {
        match (key, &self.msg.body) {
            (OrderingKey::None, _) => self.msg.id.clone(),
            (OrderingKey::Keyed { raw, .. }, syncline_model::Body::Raw(r)) if !raw.is_empty() => match serde_json::from_slice::<Value>(&r.data) {
                Ok(doc) => raw.iter().map(|p| doc.pointer(p).map(text).unwrap_or_default()).collect::<Vec<_>>().join("|"),
                // Not JSON (CSV, XML...): one key for all such payloads.
                Err(_) => String::new(),
            },
            (OrderingKey::Keyed { fields, .. }, _) => self.joined(fields),
        }
    }
}

/// A JSON value as key text: strings as they are, others as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_model::{Body, Message, Raw};

    fn raw(text: &str) -> Message {
        let mut m = Message::new(Body::Raw(Raw { content_type: "application/json".into(), data: text.as_bytes().to_vec() }));
        m.id = "01ID".into();
        m
    }

    #[test]
    fn raw_json_payloads_are_keyed_by_their_pointers() {
        let key = OrderingKey::Keyed { fields: OrderingKey::default_fields(), raw: vec!["/sku".into(), "/site/id".into()] };
        assert_eq!(View::new(&raw(r#"{"sku": "A-1", "site": {"id": 7}}"#)).ordering_key(&key), "A-1|7");
        assert_eq!(View::new(&raw(r#"{"sku": "A-1"}"#)).ordering_key(&key), "A-1|", "a missing value is empty");
        assert_eq!(View::new(&raw("sku,site\nA-1,7\n")).ordering_key(&key), "", "not JSON: one key for all");
        assert_eq!(View::new(&raw(r#"{"sku": "A-1"}"#)).ordering_key(&OrderingKey::None), "01ID", "no order: its own key");
        let fields_only = OrderingKey::Keyed { fields: OrderingKey::default_fields(), raw: vec![] };
        assert_eq!(View::new(&raw(r#"{"sku": "A-1"}"#)).ordering_key(&fields_only), "|", "fields of a raw payload are empty");
    }
}

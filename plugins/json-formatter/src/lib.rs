//! `json-formatter`: writes a canonical message in a target system's own
//! JSON shape (an ERP's purchase order, a WMS's transfer), the inverse of
//! `json-mapper`. The output is a `raw` message (the document and its
//! content type) derived from the input, which `http-sink` sends as it is.
//!
//! Config:
//! - `fields`: object of target JSON pointer (`/header/supplier`,
//!   `/lines/0/qty`) -> field spec: a path into the canonical message
//!   (`body.supplier`) or a table `{ from, type, date, codes, keep-unknown,
//!   default }` (see the `plugin-fields` crate)
//! - `constants`: object of target JSON pointer -> fixed value
//! - `kinds`: canonical kinds to format (default: every kind; `raw`
//!   messages always pass through unchanged, as do kinds not listed)
//! - `only`: field path -> values: format only messages with those values
//!   (`only = { "body.location" = ["DC-1"] }`); the others pass unchanged
//! - `content-type`: default `application/json`
//!
//! A message a field cannot be made for fails permanently, naming the
//! field (it is dead-lettered with that reason, not sent half-formatted).
use plugin_fields::{bad_config, canonical, formatted, selection, wanted, Selection, Spec};
use serde_json::{Map, Value};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct JsonFormatter;

/// The layout, read from the config once per instance.
struct Layout {
    fields: Vec<(String, Spec)>,
    constants: Map<String, Value>,
    selection: Selection,
    content_type: String,
}

impl Layout {
    fn load() -> Result<Layout, PluginError> {
        let fields = config::json::<Map<String, Value>>("fields")?.unwrap_or_default();
        let constants = config::json::<Map<String, Value>>("constants")?.unwrap_or_default();
        if fields.is_empty() && constants.is_empty() {
            return Err(bad_config("`fields` (target pointer -> canonical path) is required"));
        }
        for pointer in fields.keys().chain(constants.keys()) {
            if !pointer.starts_with('/') {
                return Err(bad_config(format!("`{pointer}`: a target field is a JSON pointer, e.g. `/header/supplier`")));
            }
        }
        let fields = fields.iter().map(|(p, v)| Spec::parse(p, v).map(|s| (p.clone(), s))).collect::<Result<_, _>>()?;
        let content_type = config::get("content-type").unwrap_or_else(|| "application/json".into());
        Ok(Layout { fields, constants, selection: selection()?, content_type })
    }
}

/// Sets `value` at the JSON `pointer` inside `doc`, making objects (or, for
/// a numeric segment under an array, array items) on the way.
pub fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    let parts: Vec<String> = pointer.split('/').skip(1).map(|p| p.replace("~1", "/").replace("~0", "~")).collect();
    set_at(doc, &parts, value);
}

fn set_at(cur: &mut Value, parts: &[String], value: Value) {
    let Some((part, rest)) = parts.split_first() else {
        *cur = value;
        return;
    };
    let next_is_index = rest.first().is_some_and(|p| p.parse::<usize>().is_ok());
    let fresh = || if next_is_index { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
    if let (Value::Array(items), Ok(n)) = (&mut *cur, part.parse::<usize>()) {
        while items.len() <= n {
            items.push(Value::Null);
        }
        let slot = &mut items[n];
        if !rest.is_empty() && !(slot.is_object() || slot.is_array()) {
            *slot = fresh();
        }
        return set_at(slot, rest, value);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    let slot = cur.as_object_mut().expect("an object").entry(part.clone()).or_insert(Value::Null);
    if !rest.is_empty() && !(slot.is_object() || slot.is_array()) {
        *slot = fresh();
    }
    set_at(slot, rest, value)
}

/// The target document for `msg`.
fn document(layout: &Layout, msg: &Message) -> Result<Value, String> {
    let source = canonical(msg);
    let mut doc = Value::Object(Map::new());
    for (pointer, value) in &layout.constants {
        set_pointer(&mut doc, pointer, value.clone());
    }
    for (pointer, spec) in &layout.fields {
        set_pointer(&mut doc, pointer, spec.value(&source, pointer)?);
    }
    Ok(doc)
}

impl Transformer for JsonFormatter {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let layout = config::cached(Layout::load)?;
        if !wanted(&layout.selection, &msg) {
            return Ok(vec![msg]);
        }
        let doc = document(&layout, &msg).map_err(|e| PluginError::permanent("format-failed", format!("{} {}: {e}", msg.body.kind().as_str(), msg.id)))?;
        let data = serde_json::to_vec(&doc).expect("a JSON value serializes");
        Ok(vec![formatted(&msg, "json-formatter", &layout.content_type, data)])
    }
}

export_transformer!(JsonFormatter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_build_objects_and_arrays() {
        let mut doc = json!({});
        set_pointer(&mut doc, "/header/supplier", json!("SUP-7"));
        set_pointer(&mut doc, "/lines/0/item", json!("SKU-1"));
        set_pointer(&mut doc, "/lines/0/qty", json!(5));
        set_pointer(&mut doc, "/a~1b", json!(true));
        assert_eq!(doc, json!({"header": {"supplier": "SUP-7"}, "lines": [{"item": "SKU-1", "qty": 5}], "a/b": true}));
    }
}

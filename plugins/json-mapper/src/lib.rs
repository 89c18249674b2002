//! `json-mapper`: maps a tenant's JSON (a `raw` body) to canonical records
//! using field mappings from its config, so most tenants need no code.
//!
//! Config:
//! - `kind`: the canonical kind to produce (e.g. `forecast`)
//! - `records`: JSON pointer to the array of records (default: the document
//!   itself when it is an array, else the document as one record)
//! - `fields`: object of canonical field path -> JSON pointer into a record,
//!   or `{ path = "/qty", type = "number", default = ..., codes = { A-100 =
//!   "SKU-100" } }` (a code table from the record's values to canonical
//!   ones; a value not in it fails the record); nested canonical fields use
//!   dots (`bucket.start`)
//! - `constants`: object of canonical field path -> fixed value
//! - `extensions`: object of extension key -> JSON pointer
//! - `source-system`: set on every output
//!
//! Every output is derived from the input (same tenant and correlation id)
//! and carries the header `mapped-by: json-mapper`. A record that cannot be
//! mapped fails the message with an error naming the record and field.
use serde_json::{Map, Value};
use plugin_fields::set_path;
use syncline_sdk::prelude::*;

/// The plugin.
pub struct JsonMapper;

fn bad_config(text: String) -> PluginError {
    PluginError::permanent("bad-config", text)
}

fn coerce(value: Value, ty: Option<&str>, field: &str) -> Result<Value, String> {
    match (ty, value) {
        (None, v) => Ok(v),
        (Some("string"), Value::String(s)) => Ok(Value::String(s)),
        (Some("string"), v @ (Value::Number(_) | Value::Bool(_))) => Ok(Value::String(v.to_string())),
        (Some("number"), Value::Number(n)) => Ok(Value::Number(n)),
        (Some("number"), Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{field}`: `{s}` is not a number")),
        (Some("integer"), Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("`{field}`: `{s}` is not an integer")),
        (Some("integer"), Value::Number(n)) => Ok(Value::Number(n)),
        (Some(t), v) => Err(format!("`{field}`: cannot turn {v} into {t}")),
    }
}

fn map_record(record: &Value, fields: &Map<String, Value>, constants: &Map<String, Value>, extensions: &Map<String, Value>) -> Result<Value, String> {
    let mut out = Map::new();
    for (field, spec) in constants {
        set_path(&mut out, field, spec.clone());
    }
    for (field, spec) in fields {
        let (pointer, ty, default, codes) = match spec {
            Value::String(p) => (p.as_str(), None, None, None),
            Value::Object(o) => (
                o.get("path").and_then(Value::as_str).unwrap_or(""),
                o.get("type").and_then(Value::as_str),
                o.get("default"),
                o.get("codes").and_then(Value::as_object),
            ),
            other => return Err(format!("mapping for `{field}` must be a JSON pointer or a table, not {other}")),
        };
        let found = record.pointer(pointer).filter(|v| !v.is_null()).cloned();
        let found = match (found, codes) {
            // A code table translates what the record says (a merged
            // business's own item or site codes) into canonical values.
            (Some(v), Some(codes)) => {
                let key = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                Some(codes.get(&key).cloned().ok_or_else(|| format!("`{field}`: `{key}` is not in its code table"))?)
            }
            (found, _) => found,
        };
        match found.or_else(|| default.cloned()) {
            Some(v) => set_path(&mut out, field, coerce(v, ty, field)?),
            None => return Err(format!("`{field}`: the record has nothing at `{pointer}` and no default is set")),
        }
    }
    let mut ext = Map::new();
    for (key, pointer) in extensions {
        let pointer = pointer.as_str().unwrap_or("");
        if let Some(v) = record.pointer(pointer).filter(|v| !v.is_null()) {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            ext.insert(key.clone(), Value::String(text));
        }
    }
    if !ext.is_empty() {
        out.insert("extensions".into(), Value::Object(ext));
    }
    Ok(Value::Object(out))
}

/// The mapping, parsed from the config once per instance.
struct Settings {
    kind: Kind,
    fields: Map<String, Value>,
    constants: Map<String, Value>,
    extensions: Map<String, Value>,
    records: Option<String>,
    source_system: Option<String>,
}

impl Settings {
    fn load() -> Result<Settings, PluginError> {
        let kind_name = config::require("kind")?;
        let kind = Kind::parse(&kind_name).ok_or_else(|| bad_config(format!("`kind`: `{kind_name}` is not a canonical kind")))?;
        Ok(Settings {
            kind,
            fields: config::json::<Map<String, Value>>("fields")?.unwrap_or_default(),
            constants: config::json::<Map<String, Value>>("constants")?.unwrap_or_default(),
            extensions: config::json::<Map<String, Value>>("extensions")?.unwrap_or_default(),
            records: config::get("records"),
            source_system: config::get("source-system"),
        })
    }
}

impl Transformer for JsonMapper {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let Body::Raw(raw) = &msg.body else {
            // Already canonical: nothing to map.
            return Ok(vec![msg]);
        };
        let settings = config::cached(Settings::load)?;
        let Settings { kind, fields, constants, extensions, records, source_system } = settings.as_ref();
        let doc: Value = serde_json::from_slice(&raw.data)
            .map_err(|e| PluginError::permanent("bad-json", format!("the payload is not valid JSON: {e}")))?;
        let records: Vec<&Value> = match records {
            Some(pointer) => match doc.pointer(pointer) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(_) => return Err(PluginError::permanent("bad-shape", format!("`{pointer}` is not an array"))),
                None => return Err(PluginError::permanent("bad-shape", format!("the payload has nothing at `{pointer}`"))),
            },
            None => match &doc {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            },
        };
        let mut out = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let fail = |text: String| PluginError::permanent("mapping-failed", format!("record {i}: {text}"));
            let body = map_record(record, fields, constants, extensions).map_err(fail)?;
            let body = json::body_from_value(*kind, body).map_err(|e| fail(e.to_string()))?;
            let mut m = msg.derive(body).with_header("mapped-by", "json-mapper");
            if let Some(s) = source_system {
                m.source_system = s.clone();
            }
            out.push(m);
        }
        Ok(out)
    }
}

export_transformer!(JsonMapper);

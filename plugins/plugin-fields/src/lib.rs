//! What the standard mappers and formatters share: canonical fields written
//! by dotted path ([`set_path`], the mappers) and read by dotted path from a
//! message's JSON form ([`lookup`]: `body.need-by`, `idempotency-key`), and
//! the field spec that turns one into what a target system wants (the
//! formatters):
//!
//! - `"body.item"`: the value as it is;
//! - `{ from = "body.need-by", date = "YYYYMMDD" }`: a date rewritten with
//!   the tokens `YYYY`, `YY`, `MM`, `DD` (an RFC 3339 time keeps its date);
//! - `{ from = "body.uom", codes = { EA = "PCE", CS = "CAS" } }`: a value
//!   translated by a code table (a value not in it is an error, unless
//!   `keep-unknown = true`);
//! - `{ from = "body.quantity", type = "integer" }`: `string`, `number`,
//!   `integer` (rounded half away from zero) or `boolean`;
//! - `default`: used when the message has nothing at `from`.
//!
//! Kinds: `kinds = ["purchase-requisition", "transfer-proposal"]` limits a
//! formatter to those kinds (others pass through unchanged); by default it
//! formats every canonical kind and passes `raw` messages through. `only =
//! { "body.location" = ["DC-1", "DC-2"] }` limits it further to messages
//! whose fields have one of those values (every field listed must match):
//! two formatters, one per target system, split a flow between them (a
//! phased cutover by site, business unit or product family).

use serde_json::{Map, Value};
use syncline_sdk::prelude::*;

/// A configuration error, permanent.
pub fn bad_config(text: impl Into<String>) -> PluginError {
    PluginError::permanent("bad-config", text.into())
}

/// The message's JSON form: what field paths read.
pub fn canonical(msg: &Message) -> Value {
    json::to_value(msg)
}

/// The value at the dotted `path` (`body.bucket.start`; a number indexes
/// an array: `body.lines.0.qty`).
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |cur, part| match cur {
        Value::Object(o) => o.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Sets `value` at the dotted `path` (`bucket.start`) inside `target`,
/// making objects on the way.
pub fn set_path(target: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = target;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_string(), value);
            return;
        }
        let next = cur.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("just made an object");
    }
}

/// How one target field is made from the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Dotted path into the message's JSON form.
    pub from: String,
    /// `string`, `number`, `integer` or `boolean`.
    pub ty: Option<String>,
    /// A date pattern (`YYYYMMDD`, `DD.MM.YYYY`...).
    pub date: Option<String>,
    /// A code table.
    pub codes: Option<Map<String, Value>>,
    /// Keep a value the code table lacks instead of failing.
    pub keep_unknown: bool,
    /// Used when the message has nothing at `from`.
    pub default: Option<Value>,
}

impl Spec {
    /// Reads a spec written as a path or a table, for the target `field`.
    ///
    /// # Errors
    ///
    /// A spec that is neither, or names an unknown type.
    pub fn parse(field: &str, v: &Value) -> Result<Spec, PluginError> {
        let spec = match v {
            Value::String(from) => Spec { from: from.clone(), ty: None, date: None, codes: None, keep_unknown: false, default: None },
            Value::Object(o) => {
                let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
                let from = text("from").ok_or_else(|| bad_config(format!("`{field}`: a table needs `from` (a path such as `body.item`)")))?;
                let codes = match o.get("codes") {
                    None => None,
                    Some(Value::Object(c)) => Some(c.clone()),
                    Some(other) => return Err(bad_config(format!("`{field}`: `codes` must be a table, not {other}"))),
                };
                let keep_unknown = matches!(o.get("keep-unknown"), Some(Value::Bool(true))) || text("keep-unknown").as_deref() == Some("true");
                Spec { from, ty: text("type"), date: text("date"), codes, keep_unknown, default: o.get("default").cloned() }
            }
            other => return Err(bad_config(format!("`{field}`: write a path such as \"body.item\" or a table with `from`, not {other}"))),
        };
        if let Some(t) = &spec.ty {
            if !["string", "number", "integer", "boolean"].contains(&t.as_str()) {
                return Err(bad_config(format!("`{field}`: type `{t}` is not string, number, integer or boolean")));
            }
        }
        Ok(spec)
    }

    /// The target value for `doc`, the message's JSON form.
    ///
    /// # Errors
    ///
    /// Nothing at `from` and no default, a date that does not read, a code
    /// the table lacks, a value that is not of the type.
    pub fn value(&self, doc: &Value, field: &str) -> Result<Value, String> {
        let found = lookup(doc, &self.from).filter(|v| !v.is_null()).cloned().or_else(|| self.default.clone());
        let mut v = found.ok_or_else(|| format!("`{field}`: the message has nothing at `{}` and no default is set", self.from))?;
        if let Some(pattern) = &self.date {
            let text = v.as_str().ok_or_else(|| format!("`{field}`: `{}` is {v}, not a date", self.from))?;
            v = Value::String(format_date(text, pattern).map_err(|e| format!("`{field}`: {e}"))?);
        }
        if let Some(codes) = &self.codes {
            let key = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            v = match codes.get(&key) {
                Some(code) => code.clone(),
                None if self.keep_unknown => v,
                None => return Err(format!("`{field}`: `{key}` is not in its code table")),
            };
        }
        if let Some(t) = &self.ty {
            v = coerce(v, t).map_err(|e| format!("`{field}`: {e}"))?;
        }
        Ok(v)
    }
}

/// `text` (a date, or an RFC 3339 time whose date is used) in `pattern`.
///
/// # Errors
///
/// A text that is not a date.
pub fn format_date(text: &str, pattern: &str) -> Result<String, String> {
    let day = text.get(..10).unwrap_or(text);
    let d = syncline_sdk::date::Date::parse(day).map_err(|e| format!("`{text}` is not a date: {e}"))?;
    let (y, m, dd) = d.ymd();
    Ok(pattern
        .replace("YYYY", &format!("{y:04}"))
        .replace("YY", &format!("{:02}", y.rem_euclid(100)))
        .replace("MM", &format!("{m:02}"))
        .replace("DD", &format!("{dd:02}")))
}

fn coerce(v: Value, ty: &str) -> Result<Value, String> {
    match (ty, v) {
        ("string", Value::String(s)) => Ok(Value::String(s)),
        ("string", v) => Ok(Value::String(v.to_string())),
        ("number", Value::Number(n)) => Ok(Value::Number(n)),
        ("number", Value::String(s)) => s.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).ok_or_else(|| format!("`{s}` is not a number")),
        ("integer", v) => {
            let n = match &v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.filter(|n| n.is_finite()).map(|n| Value::Number((n.round() as i64).into())).ok_or_else(|| format!("{v} is not a number"))
        }
        ("boolean", Value::Bool(b)) => Ok(Value::Bool(b)),
        ("boolean", Value::String(s)) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
        (t, v) => Err(format!("cannot turn {v} into {t}")),
    }
}

/// Which kinds a formatter formats (`kinds` in its config; none: every
/// canonical kind).
pub fn kinds() -> Result<Option<Vec<Kind>>, PluginError> {
    let Some(names) = config::json::<Vec<String>>("kinds")? else { return Ok(None) };
    names
        .iter()
        .map(|n| Kind::parse(n).ok_or_else(|| bad_config(format!("`kinds`: `{n}` is not a canonical kind"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Which messages a formatter formats.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Kinds (none: every canonical kind).
    pub kinds: Option<Vec<Kind>>,
    /// Field path -> the values it may have.
    pub only: Vec<(String, Vec<String>)>,
}

/// The selection in the formatter's config (`kinds`, `only`).
pub fn selection() -> Result<Selection, PluginError> {
    let mut only = Vec::new();
    for (path, values) in config::json::<Map<String, Value>>("only")?.unwrap_or_default() {
        let values = match values {
            Value::String(v) => vec![v],
            Value::Array(vs) => vs.into_iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect(),
            other => return Err(bad_config(format!("`only.{path}`: write a value or a list of values, not {other}"))),
        };
        only.push((path, values));
    }
    Ok(Selection { kinds: kinds()?, only })
}

/// Whether `msg` is one to format.
pub fn wanted(selection: &Selection, msg: &Message) -> bool {
    let kind = msg.body.kind();
    if kind == Kind::Raw || !selection.kinds.as_ref().is_none_or(|k| k.contains(&kind)) {
        return false;
    }
    if selection.only.is_empty() {
        return true;
    }
    let doc = canonical(msg);
    selection.only.iter().all(|(path, values)| {
        lookup(&doc, path).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).is_some_and(|v| values.contains(&v))
    })
}

/// The formatted document as the message that carries it: a `raw` body
/// of `content_type`, derived from `msg` (same tenant, correlation and key
/// lineage), with headers naming the formatter and the canonical kind; an
/// order also keeps its `need-by` and `placed-by` (order-by or ship-by)
/// dates there, so the host's closed loop still knows it as an order.
pub fn formatted(msg: &Message, formatter: &str, content_type: &str, data: Vec<u8>) -> Message {
    let out = msg
        .derive(Body::Raw(Raw { content_type: content_type.to_string(), data }))
        .with_header("formatted-by", formatter)
        .with_header("canonical-kind", msg.body.kind().as_str());
    match &msg.body {
        Body::PurchaseRequisition(r) => out.with_header("need-by", r.need_by.clone()).with_header("placed-by", r.order_by.clone()),
        Body::TransferProposal(t) => out.with_header("need-by", t.need_by.clone()).with_header("placed-by", t.ship_by.clone()),
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_nested_fields_and_array_items() {
        let doc = json!({"body": {"bucket": {"start": "2026-12-07"}, "lines": [{"qty": 4}]}, "idempotency-key": "K"});
        assert_eq!(lookup(&doc, "body.bucket.start"), Some(&json!("2026-12-07")));
        assert_eq!(lookup(&doc, "body.lines.0.qty"), Some(&json!(4)));
        assert_eq!(lookup(&doc, "idempotency-key"), Some(&json!("K")));
        assert_eq!(lookup(&doc, "body.nothing"), None);
    }

    #[test]
    fn a_spec_formats_dates_translates_codes_coerces_and_defaults() {
        let doc = json!({"body": {"need-by": "2026-12-21", "uom": "EA", "quantity": 12.5, "at": "2026-03-04T10:00:00Z"}});
        let spec = |v: Value| Spec::parse("f", &v).unwrap();
        assert_eq!(spec(json!({"from": "body.need-by", "date": "YYYYMMDD"})).value(&doc, "f"), Ok(json!("20261221")));
        assert_eq!(spec(json!({"from": "body.need-by", "date": "DD.MM.YY"})).value(&doc, "f"), Ok(json!("21.12.26")));
        assert_eq!(spec(json!({"from": "body.at", "date": "MM/DD/YYYY"})).value(&doc, "f"), Ok(json!("03/04/2026")));
        assert_eq!(spec(json!({"from": "body.uom", "codes": {"EA": "PCE"}})).value(&doc, "f"), Ok(json!("PCE")));
        assert!(spec(json!({"from": "body.uom", "codes": {"KG": "KGM"}})).value(&doc, "f").unwrap_err().contains("not in its code table"));
        assert_eq!(spec(json!({"from": "body.uom", "codes": {"KG": "KGM"}, "keep-unknown": true})).value(&doc, "f"), Ok(json!("EA")));
        assert_eq!(spec(json!({"from": "body.quantity", "type": "integer"})).value(&doc, "f"), Ok(json!(13)));
        assert_eq!(spec(json!({"from": "body.quantity", "type": "string"})).value(&doc, "f"), Ok(json!("12.5")));
        assert_eq!(spec(json!({"from": "body.site", "default": "DC-1"})).value(&doc, "f"), Ok(json!("DC-1")));
        assert!(spec(json!("body.site")).value(&doc, "f").unwrap_err().contains("nothing at `body.site`"));
        assert!(spec(json!({"from": "body.need-by", "date": "YYYY"})).value(&json!({"body": {"need-by": "soon"}}), "f").unwrap_err().contains("not a date"));
        assert!(Spec::parse("f", &json!({"from": "x", "type": "decimal"})).is_err());
        assert!(Spec::parse("f", &json!({"type": "string"})).is_err());
    }
}

/// A control number for an EDI interchange from `key` (a message's
/// idempotency key), 1 to 999,999,999: the same key, the same number, so a
/// retry or a replay writes the very same document.
pub fn control_number(key: &str) -> u32 {
    // FNV-1a, folded to nine digits (never 0).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 999_999_999) as u32 + 1
}

/// `value` through a code table (`{ EA = "PCE" }`), or as it is when the
/// table does not list it.
pub fn code(table: &Map<String, Value>, value: &str) -> String {
    match table.get(value) {
        Some(Value::String(c)) => c.clone(),
        Some(other) => other.to_string(),
        None => value.to_string(),
    }
}

/// A quantity as EDI writes it: whole numbers without a decimal point.
pub fn edi_quantity(q: f64) -> String {
    if q.fract() == 0.0 {
        format!("{}", q as i64)
    } else {
        format!("{q}")
    }
}

/// `YYYY-MM-DD` (or an RFC 3339 time's date) as `YYYYMMDD`.
pub fn date8(text: &str, what: &str) -> Result<String, String> {
    let day = text.get(..10).unwrap_or(text);
    syncline_sdk::date::Date::parse(day).map_err(|e| format!("{what}: {e}"))?;
    Ok(day.replace('-', ""))
}

/// What an EDI formatter returns for a purchase requisition: its document
/// as a `raw` message of `content_type` (see [`formatted`]), or the reason it
/// could not be written, failing the message permanently with its id.
pub fn edi_output(msg: &Message, formatter: &str, content_type: &str, doc: Result<String, String>) -> Result<Vec<Message>, PluginError> {
    let doc = doc.map_err(|e| PluginError::permanent("format-failed", format!("purchase-requisition {}: {e}", msg.id)))?;
    Ok(vec![formatted(msg, formatter, content_type, doc.into_bytes())])
}

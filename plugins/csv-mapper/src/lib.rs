//! `csv-mapper`: maps a CSV export (an ERP's item, supplier or location
//! master; a WMS's stock list) to canonical records, one per row, by column
//! name, so most tenants need no code. The counterpart of `json-mapper` for
//! CSV, and the inverse of `csv-formatter`.
//!
//! Config:
//! - `kind`: the canonical kind to produce (e.g. `item`)
//! - `fields`: object of canonical field path (dots for nesting:
//!   `bucket.start`) -> column name, or a table `{ column, type, date,
//!   codes, default }`: `type` is `string`, `number` or `integer`; `date`
//!   the column's date pattern (`DD.MM.YYYY`, `YYYYMMDD`, `MM/DD/YYYY`),
//!   turned into the canonical `YYYY-MM-DD`; `codes` a table from the
//!   export's codes to canonical ones (`PCE = "EA"`)
//! - `constants`: object of canonical field path -> fixed value
//! - `extensions`: object of extension key -> column name
//! - `delimiter`: one character (default `,`; `;`, `\t`)
//! - `source-system`: set on every output
//! - `on-bad-row`: `fail` (default: a row that cannot be mapped fails the
//!   whole export, naming row and field) or `exception` (that row becomes an
//!   `exception` for `exception-queue`, default `master-data`, and the
//!   others go on)
//!
//! Empty cells count as missing. Every output is derived from the input
//! (same tenant and correlation) with the header `mapped-by: csv-mapper`.
use serde_json::{Map, Value};
use plugin_fields::set_path;
use syncline_sdk::prelude::*;

/// The plugin.
pub struct CsvMapper;

fn bad_config(text: String) -> PluginError {
    PluginError::permanent("bad-config", text)
}

/// How one canonical field is read from a row.
struct Field {
    path: String,
    column: String,
    ty: Option<String>,
    date: Option<String>,
    codes: Option<Map<String, Value>>,
    default: Option<Value>,
}

struct Layout {
    kind: Kind,
    fields: Vec<Field>,
    constants: Map<String, Value>,
    extensions: Map<String, Value>,
    delimiter: u8,
    source_system: Option<String>,
    exceptions: Option<String>,
}

impl Layout {
    fn load() -> Result<Layout, PluginError> {
        let kind_name = config::require("kind")?;
        let kind = Kind::parse(&kind_name).ok_or_else(|| bad_config(format!("`kind`: `{kind_name}` is not a canonical kind")))?;
        let mut fields = Vec::new();
        for (path, spec) in config::json::<Map<String, Value>>("fields")?.unwrap_or_default() {
            let field = match spec {
                Value::String(column) => Field { path, column, ty: None, date: None, codes: None, default: None },
                Value::Object(o) => {
                    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
                    let column = text("column").ok_or_else(|| bad_config(format!("`{path}`: a table needs `column`")))?;
                    let codes = o.get("codes").and_then(Value::as_object).cloned();
                    Field { path, column, ty: text("type"), date: text("date"), codes, default: o.get("default").cloned() }
                }
                other => return Err(bad_config(format!("`{path}`: write a column name or a table with `column`, not {other}"))),
            };
            fields.push(field);
        }
        if fields.is_empty() {
            return Err(bad_config("`fields` (canonical field -> column) is required".into()));
        }
        let delimiter = match config::get("delimiter").as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 && d != "\"" => d.as_bytes()[0],
            Some(d) => return Err(bad_config(format!("`delimiter`: `{d}` is not one character other than a quote"))),
        };
        let exceptions = match config::get("on-bad-row").as_deref() {
            None | Some("fail") => None,
            Some("exception") => Some(config::get_or("exception-queue", "master-data")),
            Some(other) => return Err(bad_config(format!("`on-bad-row`: `{other}` is not fail or exception"))),
        };
        Ok(Layout {
            kind,
            fields,
            constants: config::json::<Map<String, Value>>("constants")?.unwrap_or_default(),
            extensions: config::json::<Map<String, Value>>("extensions")?.unwrap_or_default(),
            delimiter,
            source_system: config::get("source-system"),
            exceptions,
        })
    }
}

/// `text` written as `pattern` (tokens `YYYY`, `MM`, `DD`) as `YYYY-MM-DD`.
pub fn parse_date(text: &str, pattern: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not a date like `{pattern}`");
    if text.len() != pattern.len() {
        return Err(bad());
    }
    let take = |token: &str| -> Result<u32, String> {
        let at = pattern.find(token).ok_or_else(|| format!("the date pattern `{pattern}` has no `{token}`"))?;
        text.get(at..at + token.len()).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    let (y, m, d) = (take("YYYY")?, take("MM")?, take("DD")?);
    let iso = format!("{y:04}-{m:02}-{d:02}");
    syncline_sdk::date::Date::parse(&iso).map_err(|_| bad())?;
    Ok(iso)
}

fn cell(headers: &csv::StringRecord, row: &csv::StringRecord, column: &str) -> Result<Option<String>, String> {
    let at = headers.iter().position(|h| h.trim() == column).ok_or_else(|| format!("the export has no column `{column}`"))?;
    Ok(row.get(at).map(str::trim).filter(|c| !c.is_empty()).map(str::to_string))
}

fn map_row(layout: &Layout, headers: &csv::StringRecord, row: &csv::StringRecord) -> Result<Value, String> {
    let mut out = Map::new();
    for (path, v) in &layout.constants {
        set_path(&mut out, path, v.clone());
    }
    for f in &layout.fields {
        let value = match cell(headers, row, &f.column)? {
            Some(mut text) => {
                if let Some(pattern) = &f.date {
                    text = parse_date(&text, pattern).map_err(|e| format!("`{}`: {e}", f.path))?;
                }
                if let Some(codes) = &f.codes {
                    text = match codes.get(&text) {
                        Some(Value::String(c)) => c.clone(),
                        Some(other) => other.to_string(),
                        None => return Err(format!("`{}`: `{text}` is not in its code table", f.path)),
                    };
                }
                match f.ty.as_deref() {
                    None | Some("string") => Value::String(text),
                    Some("number") => text.replace(',', ".").parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).ok_or_else(|| format!("`{}`: `{text}` is not a number", f.path))?,
                    Some("integer") => text.parse::<i64>().map(|n| Value::Number(n.into())).map_err(|_| format!("`{}`: `{text}` is not an integer", f.path))?,
                    Some(t) => return Err(format!("`{}`: type `{t}` is not string, number or integer", f.path)),
                }
            }
            None => f.default.clone().ok_or_else(|| format!("`{}`: column `{}` is empty and no default is set", f.path, f.column))?,
        };
        set_path(&mut out, &f.path, value);
    }
    let mut ext = Map::new();
    for (key, column) in &layout.extensions {
        if let Some(text) = cell(headers, row, column.as_str().unwrap_or(""))? {
            ext.insert(key.clone(), Value::String(text));
        }
    }
    if !ext.is_empty() {
        out.insert("extensions".into(), Value::Object(ext));
    }
    Ok(Value::Object(out))
}

fn bad_row(msg: &Message, layout: &Layout, queue: &str, row: usize, why: String) -> Message {
    msg.derive(Body::Exception(Exception {
        code: "unmappable-row".into(),
        severity: Severity::Error,
        domain: "master-data".into(),
        entities: vec![EntityRef { kind: layout.kind.as_str().into(), id: format!("row {row}") }],
        text: format!("row {row}: {why}"),
        queue: queue.to_string(),
        extensions: vec![],
    }))
    .with_header("mapped-by", "csv-mapper")
}

impl Transformer for CsvMapper {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let Body::Raw(raw) = &msg.body else {
            // Already canonical: nothing to map.
            return Ok(vec![msg]);
        };
        let layout = config::cached(Layout::load)?;
        let mut reader = csv::ReaderBuilder::new().delimiter(layout.delimiter).flexible(true).from_reader(raw.data.as_slice());
        let headers = reader.headers().map_err(|e| PluginError::permanent("bad-csv", format!("the export has no header line: {e}")))?.clone();
        let mut out = Vec::new();
        for (i, record) in reader.records().enumerate() {
            // Rows count from 2: the header is line 1.
            let row = i + 2;
            let mapped = record
                .map_err(|e| format!("not CSV: {e}"))
                .and_then(|r| map_row(&layout, &headers, &r))
                .and_then(|body| json::body_from_value(layout.kind, body).map_err(|e| e.to_string()));
            match (mapped, &layout.exceptions) {
                (Ok(body), _) => {
                    let mut m = msg.derive(body).with_header("mapped-by", "csv-mapper");
                    if let Some(s) = &layout.source_system {
                        m.source_system = s.clone();
                    }
                    out.push(m);
                }
                (Err(why), Some(queue)) => out.push(bad_row(&msg, &layout, queue, row, why)),
                (Err(why), None) => return Err(PluginError::permanent("mapping-failed", format!("row {row}: {why}"))),
            }
        }
        Ok(out)
    }
}

export_transformer!(CsvMapper);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_by_their_pattern_and_checked() {
        assert_eq!(parse_date("21.12.2026", "DD.MM.YYYY"), Ok("2026-12-21".into()));
        assert_eq!(parse_date("20261221", "YYYYMMDD"), Ok("2026-12-21".into()));
        assert_eq!(parse_date("12/21/2026", "MM/DD/YYYY"), Ok("2026-12-21".into()));
        assert!(parse_date("31.02.2026", "DD.MM.YYYY").is_err(), "no such day");
        assert!(parse_date("2026-12-21", "DD.MM.YYYY").is_err());
    }
}

//! `csv-formatter`: writes a canonical message as a CSV document (a header
//! line and one record, RFC 4180 quoting, CRLF line ends) for systems that
//! import files or CSV over HTTP. The output is a `raw` message derived from
//! the input, which `http-sink` sends as it is.
//!
//! Config:
//! - `columns`: array of `{ name = "ITEM", from = "body.item", ... }` in
//!   column order; each is a field spec (`type`, `date`, `codes`,
//!   `keep-unknown`, `default`; see the `plugin-fields` crate) with its column
//!   name
//! - `delimiter`: one character (default `,`; `;` for many European ERPs,
//!   `\t` for a tab)
//! - `header`: `true` (default) or `false`
//! - `kinds`: canonical kinds to format (default: every kind; others and
//!   `raw` messages pass through unchanged)
//! - `only`: field path -> values: format only messages with those values
//!   (`only = { "body.location" = ["DC-1"] }`); the others pass unchanged
//! - `content-type`: default `text/csv`
use plugin_fields::{bad_config, canonical, formatted, selection, wanted, Selection, Spec};
use serde_json::Value;
use syncline_sdk::prelude::*;

/// The plugin.
pub struct CsvFormatter;

/// The layout, read from the config once per instance.
struct Layout {
    columns: Vec<(String, Spec)>,
    delimiter: char,
    header: bool,
    selection: Selection,
    content_type: String,
}

impl Layout {
    fn load() -> Result<Layout, PluginError> {
        let raw = config::json::<Vec<serde_json::Map<String, Value>>>("columns")?.unwrap_or_default();
        if raw.is_empty() {
            return Err(bad_config("`columns` is required: [{ name = \"ITEM\", from = \"body.item\" }, ...]"));
        }
        let mut columns = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let name = c.get("name").and_then(Value::as_str).ok_or_else(|| bad_config(format!("column {}: `name` is required", i + 1)))?;
            columns.push((name.to_string(), Spec::parse(name, &Value::Object(c.clone()))?));
        }
        let delimiter = match config::get("delimiter").as_deref() {
            None => ',',
            Some("\\t") | Some("\t") => '\t',
            Some(d) if d.chars().count() == 1 && !matches!(d, "\"" | "\r" | "\n") => d.chars().next().expect("one char"),
            Some(d) => return Err(bad_config(format!("`delimiter`: `{d}` is not one character other than a quote or a line break"))),
        };
        let header = match config::get("header").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(h) => return Err(bad_config(format!("`header`: `{h}` is not true or false"))),
        };
        let content_type = config::get("content-type").unwrap_or_else(|| "text/csv".into());
        Ok(Layout { columns, delimiter, header, selection: selection()?, content_type })
    }
}

/// One CSV field: quoted when it holds the delimiter, a quote or a line break.
pub fn field(text: &str, delimiter: char) -> String {
    if text.contains(delimiter) || text.contains('"') || text.contains('\n') || text.contains('\r') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn line(cells: &[String], delimiter: char) -> String {
    let mut out = cells.iter().map(|c| field(c, delimiter)).collect::<Vec<_>>().join(&delimiter.to_string());
    out.push_str("\r\n");
    out
}

/// The CSV document for `msg`.
fn document(layout: &Layout, msg: &Message) -> Result<String, String> {
    let source = canonical(msg);
    let cells = layout
        .columns
        .iter()
        .map(|(name, spec)| spec.value(&source, name).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    if layout.header {
        out.push_str(&line(&layout.columns.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), layout.delimiter));
    }
    out.push_str(&line(&cells, layout.delimiter));
    Ok(out)
}

impl Transformer for CsvFormatter {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let layout = config::cached(Layout::load)?;
        if !wanted(&layout.selection, &msg) {
            return Ok(vec![msg]);
        }
        let doc = document(&layout, &msg).map_err(|e| PluginError::permanent("format-failed", format!("{} {}: {e}", msg.body.kind().as_str(), msg.id)))?;
        Ok(vec![formatted(&msg, "csv-formatter", &layout.content_type, doc.into_bytes())])
    }
}

export_transformer!(CsvFormatter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("SKU-1", ','), "SKU-1");
        assert_eq!(field("Bolts, M8", ','), "\"Bolts, M8\"");
        assert_eq!(field("Bolts, M8", ';'), "Bolts, M8");
        assert_eq!(field("6\" pipe", ','), "\"6\"\" pipe\"");
        assert_eq!(field("two\nlines", ';'), "\"two\nlines\"");
        assert_eq!(line(&["a".into(), "b;c".into()], ';'), "a;\"b;c\"\r\n");
    }
}

//! `edifact-formatter`: writes a purchase requisition as a UN/EDIFACT ORDERS
//! purchase order (directory D.96A, syntax UNOC version 3) for ERPs and
//! suppliers that take EDIFACT: one interchange (`UNB`/`UNZ`) holding one
//! message (`UNH`/`UNT`):
//!
//! ```text
//! UNA:+.? '
//! UNB+UNOC:3+ACME:ZZ+SUP7EDI:ZZ+261130:0615+612460817'
//! UNH+1+ORDERS:D:96A:UN'
//! BGM+220+PR-R1+9'                 order (220), its number, original (9)
//! DTM+137:20261207:102'            document date: the order-by date
//! DTM+2:20261221:102'              delivery date requested: need-by
//! NAD+BY+ACME::92'                 buyer
//! NAD+SU+SUP-7::92'                supplier
//! NAD+DP+DC-1::92'                 delivery party: the location
//! LIN+1++SKU-100:BP'               line 1, the buyer's part number
//! QTY+21:120:PCE'                  ordered quantity and unit
//! UNS+S'
//! CNT+2:1'                         one line
//! UNT+12+1'                        segments in the message, UNH and UNT included
//! UNZ+1+612460817'
//! ```
//!
//! Dates come from the message (its order-by, need-by and occurred-at) and
//! the interchange reference from a hash of its idempotency key, so a retry
//! or a replay writes the very same document. A separator inside a value is
//! escaped with EDIFACT's release character (`?+`, `?:`, `?'`, `??`); a
//! character outside Latin-1 (UNOC) fails the message, naming it.
//!
//! Config: `sender-id` and `receiver-id` (required, at most 35 characters),
//! `sender-qualifier` / `receiver-qualifier` (default `ZZ`), `buyer` (default:
//! the sender id), `usage` (`P` production, default, or `T`: the test
//! indicator is set), `units` (a code table, e.g. `{ EA = "PCE" }`). Other
//! kinds pass through unchanged. The output is a `raw` message of content
//! type `application/EDIFACT`.
use plugin_fields::{bad_config, code, control_number, date8, edi_quantity, edi_output};
use serde_json::{Map, Value};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct EdifactFormatter;

struct Envelope {
    sender: (String, String),
    receiver: (String, String),
    buyer: String,
    test: bool,
    units: Map<String, Value>,
}

impl Envelope {
    fn load() -> Result<Envelope, PluginError> {
        let id = |key: &str| -> Result<String, PluginError> {
            let v = config::require(key)?;
            if v.is_empty() || v.chars().count() > 35 || value(&v).is_err() {
                return Err(bad_config(format!("`{key}`: `{v}` must be 1 to 35 Latin-1 characters")));
            }
            Ok(v)
        };
        let usage = config::get_or("usage", "P");
        if usage != "P" && usage != "T" {
            return Err(bad_config(format!("`usage`: `{usage}` is not P (production) or T (test)")));
        }
        let sender = id("sender-id")?;
        Ok(Envelope {
            buyer: config::get("buyer").unwrap_or_else(|| sender.clone()),
            sender: (config::get_or("sender-qualifier", "ZZ"), sender),
            receiver: (config::get_or("receiver-qualifier", "ZZ"), id("receiver-id")?),
            test: usage == "T",
            units: config::json::<Map<String, Value>>("units")?.unwrap_or_default(),
        })
    }
}

/// A data element's text with EDIFACT's separators released (`?` before
/// `+`, `:`, `'` and `?`); UNOC holds Latin-1 only.
fn value(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c as u32) > 0xff || c.is_control() {
            return Err(format!("`{text}` holds `{}`, which UNOC (Latin-1) cannot carry", c.escape_default()));
        }
        if matches!(c, '+' | ':' | '\'' | '?') {
            out.push('?');
        }
        out.push(c);
    }
    Ok(out)
}

/// The ORDERS interchange for requisition `r` of `msg`.
fn interchange(env: &Envelope, msg: &Message, r: &PurchaseRequisition) -> Result<String, String> {
    let key = msg.idempotency_key.clone().unwrap_or_else(|| msg.id.clone());
    let reference = control_number(&key);
    let at = if msg.occurred_at.len() >= 16 { msg.occurred_at.clone() } else { format!("{}T00:00", r.order_by) };
    let day = date8(&at, "occurred-at")?;
    let time = at.get(11..16).unwrap_or("00:00").replace(':', "");
    let message = [
        "UNH+1+ORDERS:D:96A:UN".to_string(),
        format!("BGM+220+{}+9", value(&r.id)?),
        format!("DTM+137:{}:102", date8(&r.order_by, "order-by")?),
        format!("DTM+2:{}:102", date8(&r.need_by, "need-by")?),
        format!("NAD+BY+{}::92", value(&env.buyer)?),
        format!("NAD+SU+{}::92", value(&r.supplier)?),
        format!("NAD+DP+{}::92", value(&r.location)?),
        format!("LIN+1++{}:BP", value(&r.item)?),
        format!("QTY+21:{}:{}", edi_quantity(r.quantity), value(&code(&env.units, &r.uom))?),
        "UNS+S".to_string(),
        "CNT+2:1".to_string(),
    ];
    let mut segments = vec![
        "UNA:+.? ".to_string(),
        format!(
            "UNB+UNOC:3+{}:{}+{}:{}+{}:{time}+{reference}{}",
            value(&env.sender.1)?,
            value(&env.sender.0)?,
            value(&env.receiver.1)?,
            value(&env.receiver.0)?,
            &day[2..],
            if env.test { "++++++1" } else { "" }
        ),
    ];
    segments.extend(message.iter().cloned());
    // UNT counts the message's segments, UNH and UNT included.
    segments.push(format!("UNT+{}+1", message.len() + 1));
    segments.push(format!("UNZ+1+{reference}"));
    Ok(segments.iter().map(|s| format!("{s}'\n")).collect())
}

impl Transformer for EdifactFormatter {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let Body::PurchaseRequisition(r) = &msg.body else {
            return Ok(vec![msg]);
        };
        let env = config::cached(Envelope::load)?;
        edi_output(&msg, "edifact-formatter", "application/EDIFACT", interchange(&env, &msg, r))
    }
}

export_transformer!(EdifactFormatter);

#[cfg(test)]
mod tests {
    use super::*;

    fn requisition(id: &str) -> PurchaseRequisition {
        PurchaseRequisition {
            id: id.into(),
            item: "SKU-100".into(),
            location: "DC-1".into(),
            supplier: "SUP-7".into(),
            quantity: 120.0,
            uom: "EA".into(),
            need_by: "2026-12-21".into(),
            order_by: "2026-12-07".into(),
            recommendation: None,
            rule: String::new(),
            extensions: vec![],
        }
    }

    fn envelope(test: bool) -> Envelope {
        Envelope { sender: ("ZZ".into(), "ACME".into()), receiver: ("ZZ".into(), "SUP7EDI".into()), buyer: "ACME".into(), test, units: Map::new() }
    }

    #[test]
    fn separators_are_released_and_non_latin1_refused() {
        assert_eq!(value("A+B:C'D?E").unwrap(), "A?+B?:C?'D??E");
        assert_eq!(value("Müller").unwrap(), "Müller");
        assert!(value("倉庫").unwrap_err().contains("UNOC"));
    }

    #[test]
    fn a_requisition_becomes_one_orders_interchange() {
        let r = requisition("PR-R1");
        let mut msg = Message::new(Body::PurchaseRequisition(r.clone()));
        msg.idempotency_key = Some("K1".into());
        msg.occurred_at = "2026-11-30T06:15:00Z".into();
        let doc = interchange(&envelope(false), &msg, &r).unwrap();
        let n = control_number("K1");
        let lines: Vec<String> = doc.lines().map(str::to_string).collect();
        let expected: Vec<String> = [
            "UNA:+.? '".to_string(),
            format!("UNB+UNOC:3+ACME:ZZ+SUP7EDI:ZZ+261130:0615+{n}'"),
            "UNH+1+ORDERS:D:96A:UN'".into(),
            "BGM+220+PR-R1+9'".into(),
            "DTM+137:20261207:102'".into(),
            "DTM+2:20261221:102'".into(),
            "NAD+BY+ACME::92'".into(),
            "NAD+SU+SUP-7::92'".into(),
            "NAD+DP+DC-1::92'".into(),
            "LIN+1++SKU-100:BP'".into(),
            "QTY+21:120:EA'".into(),
            "UNS+S'".into(),
            "CNT+2:1'".into(),
            "UNT+12+1'".into(),
            format!("UNZ+1+{n}'"),
        ]
        .into();
        assert_eq!(lines, expected);
        // The test indicator is UNB's eleventh element.
        let test = interchange(&envelope(true), &msg, &r).unwrap();
        assert!(test.lines().nth(1).unwrap().ends_with(&format!("+{n}++++++1'")), "{test}");
    }
}

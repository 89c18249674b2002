//! `x12-formatter`: writes a purchase requisition as an ANSI X12 850
//! purchase order (version 004010) for ERPs and suppliers that take EDI:
//! one interchange (`ISA`/`IEA`) holding one functional group (`GS`/`GE`)
//! holding one transaction set (`ST`/`SE`):
//!
//! ```text
//! ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *261130*0600*U*00401*123456789*0*P*>~
//! GS*PO*SENDER*RECEIVER*20261130*0600*123456789*X*004010~
//! ST*850*0001~
//! BEG*00*SA*PR-R1**20261207~           new stand-alone order, its number, order date (order-by)
//! DTM*002*20261221~                    delivery requested (need-by)
//! N1*ST**92*DC-1~                      ship to: the location
//! N1*SE**92*SUP-7~                     selling party: the supplier
//! PO1*1*120*EA***BP*SKU-100~           line: quantity, unit, buyer's part number
//! CTT*1~
//! SE*8*0001~
//! GE*1*123456789~
//! IEA*1*123456789~
//! ```
//!
//! Dates and times come from the message (its order-by, need-by and
//! occurred-at) and the control number from a hash of its idempotency key,
//! so a retry or a replay writes the very same document.
//!
//! Config: `sender-id` and `receiver-id` (required, at most 15 characters),
//! `sender-qualifier` / `receiver-qualifier` (default `ZZ`), `usage` (`P`
//! production, default, or `T` test), `units` (a code table, e.g.
//! `{ PCE = "EA" }`; default: the unit as it is). Other kinds pass through
//! unchanged. The output is a `raw` message of content type
//! `application/edi-x12`.
use plugin_fields::{bad_config, code, control_number as control, date8, edi_quantity, edi_output};
use serde_json::{Map, Value};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct X12Formatter;

struct Envelope {
    sender: (String, String),
    receiver: (String, String),
    usage: String,
    units: Map<String, Value>,
}

impl Envelope {
    fn load() -> Result<Envelope, PluginError> {
        let id = |key: &str| -> Result<String, PluginError> {
            let v = config::require(key)?;
            if v.is_empty() || v.len() > 15 || !v.chars().all(|c| c.is_ascii_graphic() || c == ' ') || v.contains(['*', '~', '>']) {
                return Err(bad_config(format!("`{key}`: `{v}` must be 1 to 15 printable characters without `*`, `~` or `>`")));
            }
            Ok(v)
        };
        let usage = config::get_or("usage", "P");
        if usage != "P" && usage != "T" {
            return Err(bad_config(format!("`usage`: `{usage}` is not P (production) or T (test)")));
        }
        Ok(Envelope {
            sender: (config::get_or("sender-qualifier", "ZZ"), id("sender-id")?),
            receiver: (config::get_or("receiver-qualifier", "ZZ"), id("receiver-id")?),
            usage,
            units: config::json::<Map<String, Value>>("units")?.unwrap_or_default(),
        })
    }
}

/// An element's text: X12's separators are not allowed inside one.
fn element(text: &str) -> Result<String, String> {
    if text.contains(['*', '~', '>']) {
        return Err(format!("`{text}` holds an X12 separator (*, ~ or >)"));
    }
    Ok(text.to_string())
}

/// The 850 interchange for requisition `r` of `msg`.
fn interchange(env: &Envelope, msg: &Message, r: &PurchaseRequisition) -> Result<String, String> {
    let key = msg.idempotency_key.clone().unwrap_or_else(|| msg.id.clone());
    let number = control(&key);
    let at = if msg.occurred_at.len() >= 16 { msg.occurred_at.clone() } else { format!("{}T00:00", r.order_by) };
    let day = date8(&at, "occurred-at")?;
    let time = at.get(11..16).unwrap_or("00:00").replace(':', "");
    let unit = code(&env.units, &r.uom);
    let quantity = edi_quantity(r.quantity);
    let body = [
        "ST*850*0001".to_string(),
        format!("BEG*00*SA*{}**{}", element(&r.id)?, date8(&r.order_by, "order-by")?),
        format!("DTM*002*{}", date8(&r.need_by, "need-by")?),
        format!("N1*ST**92*{}", element(&r.location)?),
        format!("N1*SE**92*{}", element(&r.supplier)?),
        format!("PO1*1*{quantity}*{}***BP*{}", element(&unit)?, element(&r.item)?),
        "CTT*1".to_string(),
    ];
    let mut segments = vec![
        format!(
            "ISA*00*{:10}*00*{:10}*{}*{:15}*{}*{:15}*{}*{}*U*00401*{number:09}*0*{}*>",
            "", "", env.sender.0, env.sender.1, env.receiver.0, env.receiver.1, &day[2..], time, env.usage
        ),
        format!("GS*PO*{}*{}*{day}*{time}*{number}*X*004010", env.sender.1.trim(), env.receiver.1.trim()),
    ];
    segments.extend(body.iter().cloned());
    // SE counts the segments of the transaction set, ST and SE included.
    segments.push(format!("SE*{}*0001", body.len() + 1));
    segments.push(format!("GE*1*{number}"));
    segments.push(format!("IEA*1*{number:09}"));
    Ok(segments.iter().map(|s| format!("{s}~\n")).collect())
}

impl Transformer for X12Formatter {
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
        let Body::PurchaseRequisition(r) = &msg.body else {
            return Ok(vec![msg]);
        };
        let env = config::cached(Envelope::load)?;
        edi_output(&msg, "x12-formatter", "application/edi-x12", interchange(&env, &msg, r))
    }
}

export_transformer!(X12Formatter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_numbers_are_stable_nine_digit_numbers() {
        assert_eq!(control("acme/recs/k:R1/0"), control("acme/recs/k:R1/0"));
        assert_ne!(control("acme/recs/k:R1/0"), control("acme/recs/k:R2/0"));
        assert!((1..=999_999_999).contains(&control("")));
    }

    #[test]
    fn separators_inside_an_element_are_refused() {
        assert!(element("SKU*100").is_err());
        assert_eq!(element("SKU-100"), Ok("SKU-100".into()));
    }

    #[test]
    fn a_requisition_becomes_one_850_interchange() {
        let env = Envelope { sender: ("ZZ".into(), "ACME".into()), receiver: ("ZZ".into(), "SUP7EDI".into()), usage: "T".into(), units: Map::new() };
        let r = PurchaseRequisition {
            id: "PR-R1".into(),
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
        };
        let mut msg = Message::new(Body::PurchaseRequisition(r.clone()));
        msg.idempotency_key = Some("K1".into());
        msg.occurred_at = "2026-11-30T06:15:00Z".into();
        let doc = interchange(&env, &msg, &r).unwrap();
        let n = control("K1");
        let lines: Vec<&str> = doc.lines().collect();
        assert_eq!(lines[0], format!("ISA*00*          *00*          *ZZ*ACME           *ZZ*SUP7EDI        *261130*0615*U*00401*{n:09}*0*T*>~"));
        assert_eq!(lines[0].len(), 106, "ISA is fixed width: 105 characters and the terminator");
        assert_eq!(&lines[1..], [
            format!("GS*PO*ACME*SUP7EDI*20261130*0615*{n}*X*004010~").as_str(),
            "ST*850*0001~", "BEG*00*SA*PR-R1**20261207~", "DTM*002*20261221~", "N1*ST**92*DC-1~", "N1*SE**92*SUP-7~",
            "PO1*1*120*EA***BP*SKU-100~", "CTT*1~", "SE*8*0001~", format!("GE*1*{n}~").as_str(), format!("IEA*1*{n:09}~").as_str(),
        ]);
    }
}

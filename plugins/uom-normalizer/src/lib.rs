//! `uom-normalizer`: converts quantities to the item's base unit of measure
//! using reference tables. An unknown conversion is never guessed: the record
//! is replaced by an `exception` for the master-data queue.
//!
//! Tables:
//! - `items`: `item,base-uom` — the base unit of each item
//! - `conversions`: `item,from-uom,to-uom,factor` — `item` may be `*` for a
//!   conversion that holds for every item
//!
//! Config: `exception-queue` (default `master-data`).
use syncline_sdk::prelude::*;

/// The plugin.
pub struct UomNormalizer;

/// The factor turning `from` into `to` for `item`: item-specific rows first,
/// then `*` rows; a reverse row is used inverted.
fn factor(item: &str, from: &str, to: &str) -> Result<Option<f64>, PluginError> {
    for key in [item, "*"] {
        for row in reference::find("conversions", "item", key)? {
            let (f, t) = (row.get("from-uom").unwrap_or(""), row.get("to-uom").unwrap_or(""));
            if f == from && t == to {
                return Ok(Some(row.number("conversions", "factor")?));
            }
            if f == to && t == from {
                return Ok(Some(1.0 / row.number("conversions", "factor")?));
            }
        }
    }
    Ok(None)
}

/// Rounds away binary noise (12 * 0.1 = 1.2000000000000002).
fn tidy(q: f64) -> f64 {
    (q * 1e9).round() / 1e9
}

fn unknown(msg: &Message, item: &str, from: &str, to: Option<&str>) -> Message {
    let text = match to {
        Some(to) => format!("no conversion from `{from}` to base unit `{to}` for item `{item}`"),
        None => format!("item `{item}` has no base unit in the `items` table"),
    };
    msg.derive(Body::Exception(Exception {
        code: "unknown-uom-conversion".into(),
        severity: Severity::Error,
        domain: "master-data".into(),
        entities: vec![EntityRef { kind: "item".into(), id: item.into() }],
        text,
        queue: config::get_or("exception-queue", "master-data"),
        extensions: vec![],
    }))
}

impl Transformer for UomNormalizer {
    fn transform(mut msg: Message) -> Result<Vec<Message>, PluginError> {
        let (item, uom, quantities): (String, &mut String, Vec<&mut f64>) = match &mut msg.body {
            Body::Forecast(r) => (r.item.clone(), &mut r.uom, vec![&mut r.quantity]),
            Body::ReplenishmentRecommendation(r) => (r.item.clone(), &mut r.uom, vec![&mut r.quantity]),
            Body::PurchaseRequisition(r) => (r.item.clone(), &mut r.uom, vec![&mut r.quantity]),
            Body::TransferProposal(r) => (r.item.clone(), &mut r.uom, vec![&mut r.quantity]),
            Body::ExecutionStatus(r) => {
                // Execution statuses may not name the item; they pass as they are.
                let _ = r;
                return Ok(vec![msg]);
            }
            Body::InventoryPosition(r) => (
                r.item.clone(),
                &mut r.uom,
                vec![&mut r.on_hand, &mut r.allocated, &mut r.in_transit, &mut r.available],
            ),
            _ => return Ok(vec![msg]),
        };
        let from = uom.clone();
        let Some(base) = reference::get("items", &item)?.and_then(|r| r.get("base-uom").map(str::to_string)) else {
            return Ok(vec![unknown(&msg, &item, &from, None)]);
        };
        if from == base {
            return Ok(vec![msg]);
        }
        let Some(f) = factor(&item, &from, &base)? else {
            return Ok(vec![unknown(&msg, &item, &from, Some(&base))]);
        };
        for q in quantities {
            *q = tidy(*q * f);
        }
        *uom = base.clone();
        msg.set_header("uom-normalized", format!("{from}->{base} x{f}"));
        Ok(vec![msg])
    }
}

export_transformer!(UomNormalizer);

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_sdk::testing::TestHost;

    fn rec(q: f64, uom: &str) -> Message {
        Message::new(Body::ReplenishmentRecommendation(ReplenishmentRecommendation {
            id: "R1".into(),
            item: "SKU-1".into(),
            location: "DC-1".into(),
            quantity: q,
            uom: uom.into(),
            need_by: "2026-12-14".into(),
            source: SourceRef::Supplier("SUP-1".into()),
            reason: "below-safety-stock".into(),
            priority: 2,
            extensions: vec![],
        }))
    }

    fn host() -> syncline_sdk::testing::Installed {
        TestHost::new()
            .table_csv("items", "item,base-uom\nSKU-1,EA\n")
            .table_csv("conversions", "item,from-uom,to-uom,factor\nSKU-1,CS,EA,12\n*,PAL,CS,40\n")
            .install()
    }

    #[test]
    fn converts_with_item_rows_and_reverse_rows() {
        let _h = host();
        let out = UomNormalizer::transform(rec(3.0, "CS")).unwrap();
        let Body::ReplenishmentRecommendation(r) = &out[0].body else { panic!() };
        assert_eq!((r.quantity, r.uom.as_str()), (36.0, "EA"));
        assert_eq!(out[0].header("uom-normalized"), Some("CS->EA x12"));
    }

    #[test]
    fn unknown_conversion_becomes_an_exception() {
        let _h = host();
        let out = UomNormalizer::transform(rec(1.0, "PAL")).unwrap();
        let Body::Exception(e) = &out[0].body else { panic!("{:?}", out[0].body) };
        assert_eq!(e.code, "unknown-uom-conversion");
    }
}

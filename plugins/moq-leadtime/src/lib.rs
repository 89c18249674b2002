//! `moq-leadtime`: an allocator that turns replenishment recommendations into
//! ERP-ready proposals. A supplier source gives a purchase requisition, a
//! location source a transfer proposal. Quantities are rounded up to the
//! minimum order quantity and to whole packs; the order-by / ship-by date is
//! the need-by date moved back by the lead time. Each output's `rule` states
//! exactly what shaped it. Other kinds pass through unchanged.
//!
//! Tables:
//! - `moq`: `item,moq,pack-size` (missing item: no minimum, pack of 1)
//! - `lead-times`: `source,lead-time-days` keyed by supplier id or shipping
//!   location id (missing: an `exception` for the `allocation` queue)
use syncline_sdk::date::Date;
use syncline_sdk::prelude::*;

/// The plugin.
pub struct MoqLeadtime;

/// The quantity to order: at least `moq`, in whole packs.
pub fn round_quantity(quantity: f64, moq: f64, pack: f64) -> f64 {
    let q = quantity.max(moq);
    if pack > 0.0 {
        let packs = (q / pack - 1e-9).ceil().max(0.0);
        packs * pack
    } else {
        q
    }
}

fn exception(msg: &Message, code: &str, rec: &ReplenishmentRecommendation, text: String) -> Message {
    msg.derive(Body::Exception(Exception {
        code: code.into(),
        severity: Severity::Error,
        domain: "allocation".into(),
        entities: vec![
            EntityRef { kind: "recommendation".into(), id: rec.id.clone() },
            EntityRef { kind: "item".into(), id: rec.item.clone() },
        ],
        text,
        queue: config::get_or("exception-queue", "allocation"),
        extensions: vec![],
    }))
}

fn allocate_one(msg: &Message, rec: &ReplenishmentRecommendation) -> Result<Message, PluginError> {
    let (moq, pack) = match reference::get("moq", &rec.item)? {
        Some(row) => (row.number("moq", "moq")?, row.number("moq", "pack-size")?),
        None => (0.0, 1.0),
    };
    let source = match &rec.source {
        SourceRef::Supplier(s) | SourceRef::Location(s) => s.as_str(),
    };
    let Some(lead) = reference::get("lead-times", source)? else {
        return Ok(exception(msg, "missing-lead-time", rec, format!("no lead time for source `{source}` in table `lead-times`")));
    };
    let lead_days = lead.number("lead-times", "lead-time-days")? as i64;
    let need_by = match Date::parse(&rec.need_by) {
        Ok(d) => d,
        Err(e) => return Ok(exception(msg, "bad-need-by", rec, e)),
    };
    let quantity = round_quantity(rec.quantity, moq, pack);
    let by = need_by.add_days(-lead_days).to_string();
    let rule = format!("moq={moq} pack={pack} lead={lead_days}d: {} -> {quantity} {}", rec.quantity, rec.uom);
    let body = match &rec.source {
        SourceRef::Supplier(supplier) => Body::PurchaseRequisition(PurchaseRequisition {
            id: format!("PR-{}", rec.id),
            item: rec.item.clone(),
            location: rec.location.clone(),
            supplier: supplier.clone(),
            quantity,
            uom: rec.uom.clone(),
            need_by: rec.need_by.clone(),
            order_by: by,
            recommendation: Some(rec.id.clone()),
            rule,
            extensions: rec.extensions.clone(),
        }),
        SourceRef::Location(from) => Body::TransferProposal(TransferProposal {
            id: format!("TP-{}", rec.id),
            item: rec.item.clone(),
            from_location: from.clone(),
            to_location: rec.location.clone(),
            quantity,
            uom: rec.uom.clone(),
            need_by: rec.need_by.clone(),
            ship_by: by,
            recommendation: Some(rec.id.clone()),
            rule,
            extensions: rec.extensions.clone(),
        }),
    };
    Ok(msg.derive(body).with_header("allocated-by", "moq-leadtime"))
}

impl Allocator for MoqLeadtime {
    fn allocate(batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {
        batch
            .into_iter()
            .map(|msg| match &msg.body {
                Body::ReplenishmentRecommendation(rec) => allocate_one(&msg, rec),
                _ => Ok(msg),
            })
            .collect()
    }
}

export_allocator!(MoqLeadtime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_moq_then_packs() {
        assert_eq!(round_quantity(100.0, 120.0, 12.0), 120.0);
        assert_eq!(round_quantity(130.0, 120.0, 12.0), 132.0);
        assert_eq!(round_quantity(144.0, 120.0, 12.0), 144.0);
        assert_eq!(round_quantity(5.0, 0.0, 1.0), 5.0);
        assert_eq!(round_quantity(0.0, 0.0, 6.0), 0.0);
    }
}

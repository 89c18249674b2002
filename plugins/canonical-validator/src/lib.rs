//! `canonical-validator`: checks canonical records before they reach
//! planning or the ERP: required fields, non-negative quantities, known units
//! of measure, dates that parse, and item/location ids matching the
//! configured patterns.
//!
//! Config (all optional):
//! - `uoms`: known units, comma-separated (default `EA,CS,PK,PAL,KG,G,L,ML,M`)
//! - `item-pattern`, `location-pattern`: regular expressions ids must match
//!   (anchored at both ends)
use syncline_sdk::date::{check_timestamp, Date};
use syncline_sdk::prelude::*;

/// The plugin.
pub struct CanonicalValidator;

const DEFAULT_UOMS: &str = "EA,CS,PK,PAL,KG,G,L,ML,M";

/// The rules from the config, built once per instance.
struct Rules {
    uoms: Vec<String>,
    item_re: Option<regex_lite::Regex>,
    location_re: Option<regex_lite::Regex>,
    /// What is wrong with the config itself, reported on every message.
    problems: Vec<Violation>,
}

impl Rules {
    fn load() -> Result<Rules, PluginError> {
        let mut problems = Vec::new();
        let uoms = config::get_or("uoms", DEFAULT_UOMS).split(',').map(|u| u.trim().to_string()).collect();
        let item_re = pattern("item-pattern", &mut problems);
        let location_re = pattern("location-pattern", &mut problems);
        Ok(Rules { uoms, item_re, location_re, problems })
    }
}

/// Collects violations for one message.
struct Checker<'a> {
    out: Vec<Violation>,
    rules: &'a Rules,
}

fn pattern(key: &str, out: &mut Vec<Violation>) -> Option<regex_lite::Regex> {
    let text = config::get(key)?;
    match regex_lite::Regex::new(&format!("^(?:{text})$")) {
        Ok(re) => Some(re),
        Err(e) => {
            out.push(Violation::error(format!("config.{key}"), "bad-config", format!("`{text}` is not a valid pattern: {e}")));
            None
        }
    }
}

impl Checker<'_> {
    fn required(&mut self, field: &str, value: &str) -> bool {
        if value.trim().is_empty() {
            self.out.push(Violation::error(field, "required", format!("`{field}` must not be empty")));
            return false;
        }
        true
    }

    fn id(&mut self, field: &str, value: &str, item: bool) {
        if !self.required(field, value) {
            return;
        }
        let re = if item { &self.rules.item_re } else { &self.rules.location_re };
        if let Some(re) = re {
            if !re.is_match(value) {
                let what = if item { "item" } else { "location" };
                self.out.push(Violation::error(
                    field,
                    format!("bad-{what}-id"),
                    format!("`{value}` does not match the {what} id pattern `{}`", &re.as_str()[4..re.as_str().len() - 2]),
                ));
            }
        }
    }

    fn quantity(&mut self, field: &str, q: f64) {
        if !q.is_finite() {
            self.out.push(Violation::error(field, "not-a-number", format!("`{field}` must be a finite number")));
        } else if q < 0.0 {
            self.out.push(Violation::error(field, "negative-quantity", format!("`{field}` is {q}; quantities must not be negative")));
        }
    }

    fn uom(&mut self, field: &str, uom: &str) {
        if self.required(field, uom) && !self.rules.uoms.iter().any(|u| u == uom) {
            self.out.push(Violation::error(
                field,
                "unknown-uom",
                format!("unit of measure `{uom}` is not known (known: {})", self.rules.uoms.join(", ")),
            ));
        }
    }

    fn date(&mut self, field: &str, text: &str) {
        if self.required(field, text) {
            if let Err(e) = Date::parse(text) {
                self.out.push(Violation::error(field, "bad-date", e));
            }
        }
    }

    fn opt_date(&mut self, field: &str, text: &Option<String>) {
        if let Some(t) = text {
            self.date(field, t);
        }
    }

    fn timestamp(&mut self, field: &str, text: &str) {
        if self.required(field, text) {
            if let Err(e) = check_timestamp(text) {
                self.out.push(Violation::error(field, "bad-timestamp", e));
            }
        }
    }
}

impl Validator for CanonicalValidator {
    fn validate(msg: Message) -> Vec<Violation> {
        let rules = match config::cached(Rules::load) {
            Ok(r) => r,
            Err(e) => return vec![Violation::error("config", e.code, e.message)],
        };
        let mut c = Checker { out: rules.problems.clone(), rules: rules.as_ref() };
        match &msg.body {
            Body::Item(r) => {
                c.id("body.id", &r.id, true);
                c.required("body.description", &r.description);
                c.uom("body.base-uom", &r.base_uom);
                if !(r.pack_size > 0.0) {
                    c.out.push(Violation::error("body.pack-size", "bad-pack-size", "pack size must be greater than zero"));
                }
            }
            Body::Location(r) => {
                c.id("body.id", &r.id, false);
                c.required("body.region", &r.region);
                c.required("body.business-unit", &r.business_unit);
            }
            Body::Supplier(r) => {
                c.required("body.id", &r.id);
                c.required("body.name", &r.name);
            }
            Body::UomConversion(r) => {
                c.uom("body.from-uom", &r.from_uom);
                c.uom("body.to-uom", &r.to_uom);
                if !(r.factor > 0.0) {
                    c.out.push(Violation::error("body.factor", "bad-factor", "conversion factor must be greater than zero"));
                }
            }
            Body::Forecast(r) => {
                c.id("body.item", &r.item, true);
                c.id("body.location", &r.location, false);
                c.date("body.bucket.start", &r.bucket.start);
                c.quantity("body.quantity", r.quantity);
                c.uom("body.uom", &r.uom);
                c.required("body.forecast-version", &r.forecast_version);
            }
            Body::ReplenishmentRecommendation(r) => {
                c.required("body.id", &r.id);
                c.id("body.item", &r.item, true);
                c.id("body.location", &r.location, false);
                c.quantity("body.quantity", r.quantity);
                c.uom("body.uom", &r.uom);
                c.date("body.need-by", &r.need_by);
                match &r.source {
                    SourceRef::Supplier(s) => {
                        c.required("body.source.supplier", s);
                    }
                    SourceRef::Location(l) => {
                        c.id("body.source.location", l, false);
                        if l == &r.location {
                            c.out.push(Violation::error("body.source.location", "self-transfer", "a location cannot replenish itself"));
                        }
                    }
                }
                if !(1..=9).contains(&r.priority) {
                    c.out.push(Violation::warning("body.priority", "priority-out-of-range", format!("priority {} is outside 1..9", r.priority)));
                }
            }
            Body::InventoryPosition(r) => {
                c.id("body.item", &r.item, true);
                c.id("body.location", &r.location, false);
                c.quantity("body.on-hand", r.on_hand);
                c.quantity("body.allocated", r.allocated);
                c.quantity("body.in-transit", r.in_transit);
                c.uom("body.uom", &r.uom);
                c.timestamp("body.as-of", &r.as_of);
            }
            Body::PurchaseRequisition(r) => {
                c.required("body.id", &r.id);
                c.id("body.item", &r.item, true);
                c.id("body.location", &r.location, false);
                c.required("body.supplier", &r.supplier);
                c.quantity("body.quantity", r.quantity);
                c.uom("body.uom", &r.uom);
                c.date("body.need-by", &r.need_by);
                c.date("body.order-by", &r.order_by);
            }
            Body::TransferProposal(r) => {
                c.required("body.id", &r.id);
                c.id("body.item", &r.item, true);
                c.id("body.from-location", &r.from_location, false);
                c.id("body.to-location", &r.to_location, false);
                c.quantity("body.quantity", r.quantity);
                c.uom("body.uom", &r.uom);
                c.date("body.need-by", &r.need_by);
                c.date("body.ship-by", &r.ship_by);
            }
            Body::ExecutionStatus(r) => {
                c.required("body.order-ref", &r.order_ref);
                c.quantity("body.quantity", r.quantity);
                c.uom("body.uom", &r.uom);
                c.opt_date("body.expected-date", &r.expected_date);
            }
            Body::Exception(r) => {
                c.required("body.code", &r.code);
                c.required("body.queue", &r.queue);
            }
            Body::Raw(_) => c.out.push(Violation::error(
                "kind",
                "not-canonical",
                "a raw payload must be mapped to canonical records before validation",
            )),
        }
        c.out
    }
}

export_validator!(CanonicalValidator);

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_sdk::testing::TestHost;

    fn forecast(q: f64, uom: &str, start: &str) -> Message {
        Message::new(Body::Forecast(Forecast {
            item: "SKU-1".into(),
            location: "DC-1".into(),
            bucket: TimeBucket { start: start.into(), granularity: Granularity::Week },
            quantity: q,
            uom: uom.into(),
            forecast_version: "v1".into(),
            scenario: "baseline".into(),
            channel: "retail".into(),
            source_engine: "stat".into(),
            extensions: vec![],
        }))
    }

    #[test]
    fn reports_each_problem_with_its_field() {
        let _h = TestHost::new().config("item-pattern", "SKU-[0-9]{3}").install();
        let v = CanonicalValidator::validate(forecast(-1.0, "BOX", "2026-02-30"));
        let codes: Vec<_> = v.iter().map(|v| (v.field.as_str(), v.code.as_str())).collect();
        assert_eq!(
            codes,
            [
                ("body.item", "bad-item-id"),
                ("body.bucket.start", "bad-date"),
                ("body.quantity", "negative-quantity"),
                ("body.uom", "unknown-uom")
            ]
        );
    }

    #[test]
    fn valid_forecast_passes() {
        let _h = TestHost::new().install();
        assert!(CanonicalValidator::validate(forecast(5.0, "EA", "2026-12-07")).is_empty());
    }
}

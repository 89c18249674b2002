//! Minor versions of the canonical schema and the rules between them.
//!
//! A minor version only adds: 1.1 promoted two extensions most tenants
//! carried to fields (`item.gtin`, `inventory-position.safety-stock`). The
//! rules here move a value between the field and the extension of the same
//! name, both ways:
//!
//! - **lift** (upgrade): a record of an older minor gets its promoted
//!   extensions as fields — messages ingested as 1.0, and records a plugin
//!   built against 1.0 returns;
//! - **lower**: a record is shown to a plugin built against an older minor
//!   with those fields as extensions, so a plugin that passes a record on
//!   loses nothing of it.
//!
//! An extension that does not fit its field (a `safety-stock` that is not a
//! number) stays an extension: there is no rule for it.

use crate::{Body, Extension, Extensions, InventoryPosition, Item, Kind};

/// A field that a minor version added by promoting an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotion {
    /// The minor version that added the field.
    pub since_minor: u32,
    /// The record that carries it.
    pub kind: Kind,
    /// The field's name in JSON and WIT; also the extension it was promoted from.
    pub field: &'static str,
}

/// Every promotion, oldest first.
pub const PROMOTIONS: &[Promotion] = &[
    Promotion { since_minor: 1, kind: Kind::Item, field: "gtin" },
    Promotion { since_minor: 1, kind: Kind::InventoryPosition, field: "safety-stock" },
];

/// A record whose fields depend on the minor version.
pub trait Evolve {
    /// Moves extensions promoted after `from_minor` into their fields
    /// (a field already set is left as it is, and so is its extension).
    fn lift(&mut self, from_minor: u32);
    /// Moves fields added after `to_minor` into extensions of the same name
    /// (replacing such an extension: the field is the newer truth).
    fn lower(&mut self, to_minor: u32);
    /// The first field set that `minor` does not have, as a path below the
    /// body (e.g. `gtin`).
    fn newer_field(&self, minor: u32) -> Option<&'static str>;
}

fn take(extensions: &mut Extensions, key: &str) -> Option<String> {
    let at = extensions.iter().position(|e| e.key == key)?;
    Some(extensions.remove(at).value)
}

fn put(extensions: &mut Extensions, key: &str, value: String) {
    extensions.retain(|e| e.key != key);
    extensions.push(Extension { key: key.to_string(), value });
}

impl Evolve for Item {
    fn lift(&mut self, from_minor: u32) {
        if from_minor < 1 && self.gtin.is_none() {
            self.gtin = take(&mut self.extensions, "gtin");
        }
    }

    fn lower(&mut self, to_minor: u32) {
        if to_minor < 1 {
            if let Some(gtin) = self.gtin.take() {
                put(&mut self.extensions, "gtin", gtin);
            }
        }
    }

    fn newer_field(&self, minor: u32) -> Option<&'static str> {
        (minor < 1 && self.gtin.is_some()).then_some("gtin")
    }
}

impl Evolve for InventoryPosition {
    fn lift(&mut self, from_minor: u32) {
        if from_minor < 1 && self.safety_stock.is_none() {
            let at = self.extensions.iter().position(|e| e.key == "safety-stock");
            let number = at.and_then(|i| self.extensions[i].value.trim().parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| (i, n)));
            if let Some((i, n)) = number {
                self.extensions.remove(i);
                self.safety_stock = Some(n);
            }
        }
    }

    fn lower(&mut self, to_minor: u32) {
        if to_minor < 1 {
            if let Some(n) = self.safety_stock.take() {
                // `{}` of an f64 is the shortest text that parses back to it.
                put(&mut self.extensions, "safety-stock", n.to_string());
            }
        }
    }

    fn newer_field(&self, minor: u32) -> Option<&'static str> {
        (minor < 1 && self.safety_stock.is_some()).then_some("safety-stock")
    }
}

impl Evolve for Body {
    fn lift(&mut self, from_minor: u32) {
        match self {
            Body::Item(i) => i.lift(from_minor),
            Body::InventoryPosition(p) => p.lift(from_minor),
            _ => {}
        }
    }

    fn lower(&mut self, to_minor: u32) {
        match self {
            Body::Item(i) => i.lower(to_minor),
            Body::InventoryPosition(p) => p.lower(to_minor),
            _ => {}
        }
    }

    fn newer_field(&self, minor: u32) -> Option<&'static str> {
        match self {
            Body::Item(i) => i.newer_field(minor),
            Body::InventoryPosition(p) => p.newer_field(minor),
            _ => None,
        }
    }
}

/// The minor part of a `1.MINOR.PATCH` label, when it is one this crate
/// knows the major of (used for labels plugins write; ingest checks labels
/// strictly with [`crate::json::schema_minor`]).
pub fn minor_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    (major == crate::SCHEMA_MAJOR).then_some(minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lifecycle;

    fn item(gtin: Option<&str>, extensions: &[(&str, &str)]) -> Item {
        Item {
            id: "SKU-1".into(),
            description: "Cola 0.33".into(),
            base_uom: "EA".into(),
            pack_size: 24.0,
            product_family: "beverages".into(),
            lifecycle: Lifecycle::Active,
            gtin: gtin.map(String::from),
            extensions: extensions.iter().map(|(k, v)| Extension { key: k.to_string(), value: v.to_string() }).collect(),
        }
    }

    fn position(safety_stock: Option<f64>, extensions: &[(&str, &str)]) -> InventoryPosition {
        InventoryPosition {
            item: "SKU-1".into(),
            location: "DC-1".into(),
            on_hand: 10.0,
            allocated: 0.0,
            in_transit: 0.0,
            available: 10.0,
            uom: "EA".into(),
            as_of: "2026-11-30T08:00:00Z".into(),
            safety_stock,
            extensions: extensions.iter().map(|(k, v)| Extension { key: k.to_string(), value: v.to_string() }).collect(),
        }
    }

    #[test]
    fn lowering_then_lifting_gives_the_record_back() {
        for original in [item(Some("04012345678901"), &[("buyer", "B7")]), item(None, &[("buyer", "B7")])] {
            let mut i = original.clone();
            i.lower(0);
            assert_eq!(i.gtin, None);
            i.lift(0);
            assert_eq!(i, original);
        }
        for n in [12.5, 0.1 + 0.2, 1e-9, 0.0] {
            let original = position(Some(n), &[("bin", "A-7")]);
            let mut p = original.clone();
            p.lower(0);
            assert_eq!(p.extensions.last().unwrap(), &Extension { key: "safety-stock".into(), value: n.to_string() });
            p.lift(0);
            assert_eq!(p, original);
        }
    }

    #[test]
    fn lifting_takes_the_extension_only_where_a_rule_fits() {
        let mut i = item(None, &[("gtin", "4012345678901"), ("buyer", "B7")]);
        i.lift(0);
        assert_eq!(i.gtin.as_deref(), Some("4012345678901"));
        assert_eq!(i.extensions, vec![Extension { key: "buyer".into(), value: "B7".into() }]);

        let mut set = item(Some("1"), &[("gtin", "2")]);
        set.lift(0);
        assert_eq!((set.gtin.as_deref(), set.extensions.len()), (Some("1"), 1), "a set field is not overwritten");

        let mut words = position(None, &[("safety-stock", "about twelve")]);
        words.lift(0);
        assert_eq!((words.safety_stock, words.extensions.len()), (None, 1), "no rule for a word");
        let mut nan = position(None, &[("safety-stock", "NaN")]);
        nan.lift(0);
        assert_eq!(nan.safety_stock, None);
        let mut number = position(None, &[("safety-stock", " 40 ")]);
        number.lift(0);
        assert_eq!((number.safety_stock, number.extensions.len()), (Some(40.0), 0));

        let mut current = item(None, &[("gtin", "4012345678901")]);
        current.lift(1);
        assert_eq!(current.gtin, None, "a 1.1 record's extension is its own business");
    }

    #[test]
    fn lowering_replaces_an_extension_of_the_same_name() {
        let mut i = item(Some("new"), &[("gtin", "old"), ("buyer", "B7")]);
        i.lower(0);
        assert_eq!(i.extensions.iter().filter(|e| e.key == "gtin").map(|e| e.value.as_str()).collect::<Vec<_>>(), ["new"]);
    }

    #[test]
    fn newer_fields_are_named() {
        assert_eq!(Body::Item(item(Some("1"), &[])).newer_field(0), Some("gtin"));
        assert_eq!(Body::Item(item(Some("1"), &[])).newer_field(1), None);
        assert_eq!(Body::InventoryPosition(position(Some(1.0), &[])).newer_field(0), Some("safety-stock"));
        assert_eq!(Body::Item(item(None, &[("gtin", "1")])).newer_field(0), None);
        let promoted: Vec<_> = PROMOTIONS.iter().map(|p| (p.kind, p.field)).collect();
        assert_eq!(promoted, [(Kind::Item, "gtin"), (Kind::InventoryPosition, "safety-stock")]);
    }

    #[test]
    fn minors_of_labels() {
        assert_eq!(minor_of("1.0.0"), Some(0));
        assert_eq!(minor_of("1.1.3"), Some(1));
        assert_eq!(minor_of("2.0.0"), None);
        assert_eq!(minor_of("banana"), None);
    }
}

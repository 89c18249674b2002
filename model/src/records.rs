//! The canonical distribution records (`syncline:canonical/types@1.1.0`) as
//! plain Rust values. Field docs live in `wit/deps/syncline-canonical.wit`.

use serde::{Deserialize, Serialize};

use crate::pairs;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// A tenant-specific field the canonical model does not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Extension {
    /// Field name, as the tenant calls it.
    pub key: String,
    /// Field value, as text.
    pub value: String,
}

/// Tenant-specific fields, written in JSON as an object of strings.
pub type Extensions = Vec<Extension>;

macro_rules! kebab_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(JsonSchema))]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The name used in JSON, WIT and configuration.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

kebab_enum!(
    /// Where an item is in its life.
    Lifecycle {
        /// Announced, not yet orderable.
        Planned = "planned",
        /// Bought, stocked and sold.
        Active = "active",
        /// Being run down.
        PhaseOut = "phase-out",
        /// No longer bought or sold.
        Discontinued = "discontinued",
    }
);

kebab_enum!(
    /// What kind of place a location is.
    LocationKind {
        /// A warehouse.
        Warehouse = "warehouse",
        /// A distribution centre.
        Dc = "dc",
        /// A store.
        Store = "store",
        /// A supplier's shipping site.
        SupplierSite = "supplier-site",
    }
);

kebab_enum!(
    /// Length of a planning time bucket.
    Granularity {
        /// One day.
        Day = "day",
        /// One ISO week.
        Week = "week",
        /// One calendar month.
        Month = "month",
    }
);

kebab_enum!(
    /// Kind of order an execution status reports on.
    OrderKind {
        /// Purchase.
        Purchase = "purchase",
        /// Transfer.
        Transfer = "transfer",
    }
);

kebab_enum!(
    /// State of an order in execution.
    OrderStatus {
        /// Accepted.
        Confirmed = "confirmed",
        /// Late.
        Delayed = "delayed",
        /// Received in full.
        Received = "received",
        /// Received short.
        Short = "short",
        /// Cancelled.
        Cancelled = "cancelled",
    }
);

kebab_enum!(
    /// How serious something is.
    Severity {
        /// Information only.
        Info = "info",
        /// Worth a look.
        Warning = "warning",
        /// Blocks this record.
        Error = "error",
        /// Blocks the flow.
        Critical = "critical",
    }
);

kebab_enum!(
    /// Processing priority lane.
    Priority {
        /// May wait.
        Low = "low",
        /// The default.
        Normal = "normal",
        /// Operationally important.
        High = "high",
        /// Overtakes everything else.
        Critical = "critical",
    }
);

impl Default for Priority {
    fn default() -> Self {
        Priority::Normal
    }
}

/// Declares a canonical record: kebab-case JSON, unknown fields rejected,
/// `extensions` written as a JSON object and optional in input.
macro_rules! record {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(JsonSchema))]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
            /// Tenant-specific fields.
            #[serde(default, with = "pairs::extensions", skip_serializing_if = "Vec::is_empty")]
            #[cfg_attr(feature = "schema", schemars(with = "std::collections::BTreeMap<String, String>"))]
            pub extensions: Extensions,
        }
    };
}

record!(
    /// Master data: a stock-keeping item.
    Item {
        /// Item id.
        id: String,
        /// Description.
        description: String,
        /// Base unit of measure.
        base_uom: String,
        /// Units of the base unit per pack.
        pack_size: f64,
        /// Product family.
        product_family: String,
        /// Lifecycle state.
        lifecycle: Lifecycle,
        /// GS1 Global Trade Item Number, when the item has one (since 1.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtin: Option<String>,
    }
);

record!(
    /// Master data: a place that holds or ships stock.
    Location {
        /// Location id.
        id: String,
        /// Kind of location.
        kind: LocationKind,
        /// Planning region.
        region: String,
        /// Owning business unit.
        business_unit: String,
    }
);

record!(
    /// Master data: a supplier.
    Supplier {
        /// Supplier id.
        id: String,
        /// Name.
        name: String,
        /// Standard lead time in days.
        lead_time_days: u32,
    }
);

record!(
    /// Master data: a unit-of-measure conversion.
    UomConversion {
        /// Item it applies to; none for a global conversion.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<String>,
        /// Unit converted from.
        from_uom: String,
        /// Unit converted to.
        to_uom: String,
        /// Multiply by this to convert.
        factor: f64,
    }
);

/// A planning time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TimeBucket {
    /// First day of the bucket (ISO 8601 date).
    pub start: String,
    /// Length of the bucket.
    pub granularity: Granularity,
}

record!(
    /// Planning intent: expected demand.
    Forecast {
        /// Item id.
        item: String,
        /// Location id.
        location: String,
        /// Time bucket.
        bucket: TimeBucket,
        /// Quantity.
        quantity: f64,
        /// Unit of measure.
        uom: String,
        /// Forecast run version.
        forecast_version: String,
        /// Scenario.
        scenario: String,
        /// Sales channel.
        channel: String,
        /// Engine that produced it.
        source_engine: String,
    }
);

/// Where replenishment comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceRef {
    /// Bought from this supplier.
    Supplier(String),
    /// Moved from this location.
    Location(String),
}

record!(
    /// Planning intent: a replenishment recommendation.
    ReplenishmentRecommendation {
        /// Recommendation id.
        id: String,
        /// Item id.
        item: String,
        /// Location to replenish.
        location: String,
        /// Quantity.
        quantity: f64,
        /// Unit of measure.
        uom: String,
        /// Need-by date.
        need_by: String,
        /// Supplier or location to source from.
        source: SourceRef,
        /// Reason.
        reason: String,
        /// Priority 1 (highest) to 9.
        priority: u8,
    }
);

record!(
    /// Execution: stock at a location.
    InventoryPosition {
        /// Item id.
        item: String,
        /// Location id.
        location: String,
        /// On hand.
        on_hand: f64,
        /// Allocated.
        allocated: f64,
        /// In transit.
        in_transit: f64,
        /// Available.
        available: f64,
        /// Unit of measure.
        uom: String,
        /// When taken (RFC 3339).
        as_of: String,
        /// Stock kept back against uncertainty, in `uom` (since 1.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        safety_stock: Option<f64>,
    }
);

record!(
    /// Execution: a purchase requisition for the ERP.
    PurchaseRequisition {
        /// Requisition id.
        id: String,
        /// Item id.
        item: String,
        /// Receiving location.
        location: String,
        /// Supplier id.
        supplier: String,
        /// Quantity.
        quantity: f64,
        /// Unit of measure.
        uom: String,
        /// Need-by date.
        need_by: String,
        /// Order-by date.
        order_by: String,
        /// Recommendation answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recommendation: Option<String>,
        /// The rule that shaped it.
        rule: String,
    }
);

record!(
    /// Execution: a transfer proposal for the ERP.
    TransferProposal {
        /// Proposal id.
        id: String,
        /// Item id.
        item: String,
        /// Shipping location.
        from_location: String,
        /// Receiving location.
        to_location: String,
        /// Quantity.
        quantity: f64,
        /// Unit of measure.
        uom: String,
        /// Need-by date.
        need_by: String,
        /// Ship-by date.
        ship_by: String,
        /// Recommendation answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recommendation: Option<String>,
        /// The rule that shaped it.
        rule: String,
    }
);

record!(
    /// Execution: what happened to an order.
    ExecutionStatus {
        /// Order reference.
        order_ref: String,
        /// Kind of order.
        kind: OrderKind,
        /// State.
        status: OrderStatus,
        /// Quantity concerned.
        quantity: f64,
        /// Unit of measure.
        uom: String,
        /// Expected date.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_date: Option<String>,
        /// Recommendation answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recommendation: Option<String>,
    }
);

/// A reference to a business entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EntityRef {
    /// Entity kind.
    pub kind: String,
    /// Entity id.
    pub id: String,
}

record!(
    /// A business exception for a human queue.
    Exception {
        /// Code.
        code: String,
        /// Severity.
        severity: Severity,
        /// Business domain.
        domain: String,
        /// Entities concerned.
        #[serde(default)]
        entities: Vec<EntityRef>,
        /// Explanation.
        text: String,
        /// Owning queue.
        queue: String,
    }
);

/// A tenant's native payload. In JSON: `{"content-type": ..., "text": ...}`
/// for UTF-8 data, `{"content-type": ..., "base64": ...}` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// MIME type.
    pub content_type: String,
    /// The bytes as received.
    pub data: Vec<u8>,
}

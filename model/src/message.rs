//! The message envelope, its body variant and the message kind.

use crate::records::*;

/// A free-form envelope header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// The business content of a message; its case is the message kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// An item.
    Item(Item),
    /// A location.
    Location(Location),
    /// A supplier.
    Supplier(Supplier),
    /// A unit-of-measure conversion.
    UomConversion(UomConversion),
    /// A forecast.
    Forecast(Forecast),
    /// A replenishment recommendation.
    ReplenishmentRecommendation(ReplenishmentRecommendation),
    /// An inventory position.
    InventoryPosition(InventoryPosition),
    /// A purchase requisition.
    PurchaseRequisition(PurchaseRequisition),
    /// A transfer proposal.
    TransferProposal(TransferProposal),
    /// An execution status.
    ExecutionStatus(ExecutionStatus),
    /// A business exception.
    Exception(Exception),
    /// A tenant's native payload.
    Raw(Raw),
}

macro_rules! kinds {
    ($($variant:ident = $text:literal),+ $(,)?) => {
        /// The kind of a message: which case its body is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $(
            #[doc = concat!("`", $text, "`")]
            $variant
        ),+ }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            /// The kind's name in JSON, WIT and configuration.
            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $text),+ }
            }

            /// Parses a kind name.
            pub fn parse(name: &str) -> Option<Kind> {
                match name { $($text => Some(Kind::$variant),)+ _ => None }
            }
        }

        impl Body {
            /// The kind of this body.
            pub fn kind(&self) -> Kind {
                match self { $(Body::$variant(_) => Kind::$variant),+ }
            }
        }
    };
}

kinds!(
    Item = "item",
    Location = "location",
    Supplier = "supplier",
    UomConversion = "uom-conversion",
    Forecast = "forecast",
    ReplenishmentRecommendation = "replenishment-recommendation",
    InventoryPosition = "inventory-position",
    PurchaseRequisition = "purchase-requisition",
    TransferProposal = "transfer-proposal",
    ExecutionStatus = "execution-status",
    Exception = "exception",
    Raw = "raw",
);

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The envelope every message travels in.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique, sortable id (ULID). Empty in a plugin's output until the host
    /// assigns one.
    pub id: String,
    /// One id per business flow.
    pub correlation_id: String,
    /// Id of the message this one was derived from.
    pub causation_id: Option<String>,
    /// Owning tenant.
    pub tenant: String,
    /// Originating system.
    pub source_system: String,
    /// Canonical schema version of the body.
    pub schema_version: String,
    /// When the business event happened (RFC 3339).
    pub occurred_at: String,
    /// Priority lane.
    pub priority: Priority,
    /// Key a sink uses to apply the message at most once.
    pub idempotency_key: Option<String>,
    /// Free-form headers.
    pub headers: Vec<Header>,
    /// The business content.
    pub body: Body,
}

impl Message {
    /// A message with this body and empty envelope fields, at the current
    /// schema version; the host fills in id, tenant and timestamps on ingest.
    pub fn new(body: Body) -> Message {
        Message {
            id: String::new(),
            correlation_id: String::new(),
            causation_id: None,
            tenant: String::new(),
            source_system: String::new(),
            schema_version: crate::SCHEMA_VERSION.to_string(),
            occurred_at: String::new(),
            priority: Priority::Normal,
            idempotency_key: None,
            headers: Vec::new(),
            body,
        }
    }

    /// The kind of this message.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// A new message derived from this one: same tenant, correlation id,
    /// source system, priority and headers, causation id set to this
    /// message's id, a new body, and no id or idempotency key (the host
    /// assigns both deterministically).
    pub fn derive(&self, body: Body) -> Message {
        Message {
            id: String::new(),
            correlation_id: self.correlation_id.clone(),
            causation_id: if self.id.is_empty() { None } else { Some(self.id.clone()) },
            tenant: self.tenant.clone(),
            source_system: self.source_system.clone(),
            schema_version: crate::SCHEMA_VERSION.to_string(),
            occurred_at: self.occurred_at.clone(),
            priority: self.priority,
            idempotency_key: None,
            headers: self.headers.clone(),
            body,
        }
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_str())
    }

    /// Sets header `key` to `value`, replacing an existing one.
    pub fn set_header(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.headers.iter_mut().find(|h| h.key == key) {
            Some(h) => h.value = value,
            None => self.headers.push(Header { key, value }),
        }
    }

    /// This message with header `key` set to `value` (builder style).
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.set_header(key, value);
        self
    }

    /// The item and location this message is about, when its body has them
    /// (the default ordering key).
    pub fn item_location(&self) -> Option<(&str, &str)> {
        match &self.body {
            Body::Forecast(r) => Some((&r.item, &r.location)),
            Body::ReplenishmentRecommendation(r) => Some((&r.item, &r.location)),
            Body::InventoryPosition(r) => Some((&r.item, &r.location)),
            Body::PurchaseRequisition(r) => Some((&r.item, &r.location)),
            Body::TransferProposal(r) => Some((&r.item, &r.to_location)),
            _ => None,
        }
    }
}

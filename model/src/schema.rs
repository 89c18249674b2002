//! The JSON Schema of the canonical message (draft 2020-12), for partners
//! who produce or consume the JSON form. Generated from the Rust types, so it
//! cannot drift from what the host parses; `docs/schema/` holds the
//! checked-in copy, compared against this in tests.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

use crate::*;

impl JsonSchema for Raw {
    fn schema_name() -> Cow<'static, str> {
        "Raw".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A tenant's native payload: UTF-8 `text` or binary `base64`.",
            "type": "object",
            "properties": {
                "content-type": {"type": "string"},
                "text": {"type": "string"},
                "base64": {"type": "string", "contentEncoding": "base64"}
            },
            "required": ["content-type"],
            "oneOf": [{"required": ["text"]}, {"required": ["base64"]}],
            "additionalProperties": false
        })
    }
}

/// The JSON Schema of one canonical message in its JSON form.
pub fn message_schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let body = match kind {
            Kind::Item => generator.subschema_for::<Item>(),
            Kind::Location => generator.subschema_for::<Location>(),
            Kind::Supplier => generator.subschema_for::<Supplier>(),
            Kind::UomConversion => generator.subschema_for::<UomConversion>(),
            Kind::Forecast => generator.subschema_for::<Forecast>(),
            Kind::ReplenishmentRecommendation => generator.subschema_for::<ReplenishmentRecommendation>(),
            Kind::InventoryPosition => generator.subschema_for::<InventoryPosition>(),
            Kind::PurchaseRequisition => generator.subschema_for::<PurchaseRequisition>(),
            Kind::TransferProposal => generator.subschema_for::<TransferProposal>(),
            Kind::ExecutionStatus => generator.subschema_for::<ExecutionStatus>(),
            Kind::Exception => generator.subschema_for::<Exception>(),
            Kind::Raw => generator.subschema_for::<Raw>(),
        };
        cases.push(json!({
            "properties": {"kind": {"const": kind.as_str()}, "body": body}
        }));
    }
    let priority = generator.subschema_for::<Priority>();
    let defs: Map<String, Value> = generator.take_definitions(true);
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://syncline.dev/schema/canonical-{SCHEMA_VERSION}.json"),
        "title": format!("Syncline canonical message {SCHEMA_VERSION}"),
        "type": "object",
        "required": ["schema-version", "kind", "body"],
        "properties": {
            "schema-version": {"type": "string", "pattern": format!("^{SCHEMA_MAJOR}\\.[0-9]+\\.[0-9]+$")},
            "kind": {"enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
            "id": {"type": "string"},
            "correlation-id": {"type": "string"},
            "causation-id": {"type": ["string", "null"]},
            "tenant": {"type": "string"},
            "source-system": {"type": "string"},
            "occurred-at": {"type": "string"},
            "priority": priority,
            "idempotency-key": {"type": ["string", "null"]},
            "headers": strings,
            "body": {"type": "object"}
        },
        "additionalProperties": false,
        "oneOf": cases,
        "$defs": defs
    })
}

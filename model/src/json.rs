//! The JSON form of messages, used by files, HTTP and tests.
//!
//! ```json
//! {"schema-version": "1.0.0", "kind": "forecast", "tenant": "acme",
//!  "correlation-id": "...", "headers": {"k": "v"}, "body": {...}}
//! ```
//!
//! Parsing checks the schema version first, then the body against the kind,
//! and rejects unknown fields, so a typo is an error with a field path rather
//! than silently lost data.

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::message::{Body, Header, Kind, Message};
use crate::records::{Priority, Raw};
use crate::versions::Evolve;
use crate::{pairs, SCHEMA_MAJOR, SCHEMA_MINOR, SCHEMA_VERSION};

/// Why a JSON message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, or JSON of the wrong shape; carries the field path when known.
    Malformed {
        /// Dotted path of the offending field (`body.quantity`), empty for the root.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The `schema-version` is one this host cannot read.
    UnsupportedSchemaVersion {
        /// The version the message declared.
        found: String,
        /// The version this host speaks.
        supported: &'static str,
    },
    /// The `kind` names no canonical record.
    UnknownKind(String),
    /// The body sets a field that the declared (older) minor version does
    /// not have.
    FieldNotInVersion {
        /// Path of the field (`body.gtin`).
        path: String,
        /// The version the message declared.
        version: String,
    },
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Malformed { path, message } if path.is_empty() || path == "." => {
                write!(f, "malformed message: {message}")
            }
            JsonError::Malformed { path, message } => {
                write!(f, "malformed message at `{path}`: {message}")
            }
            JsonError::UnsupportedSchemaVersion { found, supported } => write!(
                f,
                "unsupported schema version `{found}`: this host reads {SCHEMA_MAJOR}.x up to {supported}"
            ),
            JsonError::UnknownKind(kind) => {
                let all: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                write!(f, "unknown message kind `{kind}`; expected one of: {}", all.join(", "))
            }
            JsonError::FieldNotInVersion { path, version } => write!(
                f,
                "`{path}` is not part of schema version {version}: declare schema-version {SCHEMA_VERSION} to send it, or send it as the extension of the same name"
            ),
        }
    }
}

impl std::error::Error for JsonError {}

impl JsonError {
    /// A short machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            JsonError::Malformed { .. } => "malformed-message",
            JsonError::UnsupportedSchemaVersion { .. } => "unsupported-schema-version",
            JsonError::UnknownKind(_) => "unknown-kind",
            JsonError::FieldNotInVersion { .. } => "field-not-in-version",
        }
    }
}

/// Checks that `version` is a `MAJOR.MINOR.PATCH` this host can read: three
/// numbers written plainly (digits only, no leading zeros, no sign), the
/// same major version and a minor version no newer than its own.
pub fn check_schema_version(version: &str) -> Result<(), JsonError> {
    schema_minor(version).map(drop)
}

/// The minor version of `version`, when it is one this host can read (see
/// [`check_schema_version`]).
///
/// # Errors
///
/// [`JsonError::UnsupportedSchemaVersion`].
pub fn schema_minor(version: &str) -> Result<u32, JsonError> {
    let unsupported = || JsonError::UnsupportedSchemaVersion {
        found: version.to_string(),
        supported: SCHEMA_VERSION,
    };
    let number = |p: &str| -> Option<u32> {
        let plain = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
        plain.then(|| p.parse().ok()).flatten()
    };
    let mut parts = version.split('.').map(number);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(major)), Some(Some(minor)), Some(Some(_)), None) if major == SCHEMA_MAJOR && minor <= SCHEMA_MINOR => Ok(minor),
        _ => Err(unsupported()),
    }
}

/// Parses one message from JSON text.
///
/// # Errors
///
/// [`JsonError`] naming the field path for malformed input, an unsupported
/// schema version, or an unknown kind.
pub fn from_str(text: &str) -> Result<Message, JsonError> {
    let wire: Wire = tracked(text).map_err(malformed)?;
    wire.into_message()
}

/// Deserializes `text`, naming the path of a failure. Read without
/// tracking the path first — most input is well-formed, and tracking costs
/// on every field — and again with it only to explain a failure.
fn tracked<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    serde_json::from_str(text).or_else(|_| serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)))
}

/// Parses NDJSON text: one message per line, blank lines skipped; each
/// with its line number (from 1).
pub fn from_ndjson(text: &str) -> impl Iterator<Item = (usize, Result<Message, JsonError>)> + '_ {
    text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).map(|(i, line)| (i + 1, from_str(line)))
}

/// Parses one message from a JSON value.
///
/// # Errors
///
/// As [`from_str`].
pub fn from_value(value: Value) -> Result<Message, JsonError> {
    // The envelope keeps the body as raw JSON text until the kind is known.
    from_str(&value.to_string())
}

/// The message as compact JSON text.
pub fn to_string(msg: &Message) -> String {
    serde_json::to_string(msg).expect("a message always serializes")
}

/// The message as pretty JSON text.
pub fn to_string_pretty(msg: &Message) -> String {
    serde_json::to_string_pretty(msg).expect("a message always serializes")
}

/// The message as a JSON value.
pub fn to_value(msg: &Message) -> Value {
    serde_json::to_value(msg).expect("a message always serializes")
}

fn malformed(e: serde_path_to_error::Error<serde_json::Error>) -> JsonError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    // serde_json appends "at line L column C"; keep it, it helps in files.
    JsonError::Malformed { path, message: inner.to_string() }
}

/// The envelope as it appears in JSON; the body is parsed once the kind is known.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Wire {
    schema_version: String,
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    correlation_id: String,
    #[serde(default)]
    causation_id: Option<String>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    source_system: String,
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default, with = "pairs::headers")]
    headers: Vec<Header>,
    /// Parsed once the kind is known: raw text, not a `Value` tree, so the
    /// body is read once.
    body: Box<serde_json::value::RawValue>,
}

impl Wire {
    fn into_message(self) -> Result<Message, JsonError> {
        let minor = schema_minor(&self.schema_version)?;
        let kind = Kind::parse(&self.kind).ok_or_else(|| JsonError::UnknownKind(self.kind.clone()))?;
        let mut body = body_from_str(kind, self.body.get())?;
        let mut schema_version = self.schema_version;
        if minor < SCHEMA_MINOR {
            // An older minor: refuse what it cannot say, then upgrade it
            // (promoted extensions become their fields); it is stored as
            // this version.
            if let Some(field) = body.newer_field(minor) {
                return Err(JsonError::FieldNotInVersion { path: format!("body.{field}"), version: schema_version });
            }
            body.lift(minor);
            schema_version = SCHEMA_VERSION.to_string();
        }
        Ok(Message {
            id: self.id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            tenant: self.tenant,
            source_system: self.source_system,
            schema_version,
            occurred_at: self.occurred_at,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            headers: self.headers,
            body,
        })
    }
}

/// Parses a body of `kind` from JSON (what a mapping plugin builds).
///
/// # Errors
///
/// [`JsonError::Malformed`] with the field path under `body`.
pub fn body_from_value(kind: Kind, body: Value) -> Result<Body, JsonError> {
    body_with(kind, Parse(Some(Source::Value(body))))
}

/// Parses a body of `kind` from JSON text.
fn body_from_str(kind: Kind, text: &str) -> Result<Body, JsonError> {
    body_with(kind, Parse(Some(Source::Text(text))))
}

/// Where a body is parsed from.
enum Source<'a> {
    Value(Value),
    Text(&'a str),
}

struct Parse<'a>(Option<Source<'a>>);

impl Parse<'_> {
    fn get<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, JsonError> {
        fn located(e: serde_path_to_error::Error<serde_json::Error>) -> JsonError {
            let path = e.path().to_string();
            let path = if path == "." { "body".to_string() } else { format!("body.{path}") };
            JsonError::Malformed { path, message: e.into_inner().to_string() }
        }
        match self.0.take().expect("a source is set") {
            Source::Value(v) => T::deserialize(&v).or_else(|_| serde_path_to_error::deserialize(v)).map_err(located),
            Source::Text(t) => tracked(t).map_err(located),
        }
    }
}

fn body_with(kind: Kind, mut source: Parse<'_>) -> Result<Body, JsonError> {
    let parse = &mut source;
    Ok(match kind {
        Kind::Item => Body::Item(parse.get()?),
        Kind::Location => Body::Location(parse.get()?),
        Kind::Supplier => Body::Supplier(parse.get()?),
        Kind::UomConversion => Body::UomConversion(parse.get()?),
        Kind::Forecast => Body::Forecast(parse.get()?),
        Kind::ReplenishmentRecommendation => Body::ReplenishmentRecommendation(parse.get()?),
        Kind::InventoryPosition => Body::InventoryPosition(parse.get()?),
        Kind::PurchaseRequisition => Body::PurchaseRequisition(parse.get()?),
        Kind::TransferProposal => Body::TransferProposal(parse.get()?),
        Kind::ExecutionStatus => Body::ExecutionStatus(parse.get()?),
        Kind::Exception => Body::Exception(parse.get()?),
        Kind::Raw => Body::Raw(parse.get()?),
    })
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Item(r) => r.serialize(s),
            Body::Location(r) => r.serialize(s),
            Body::Supplier(r) => r.serialize(s),
            Body::UomConversion(r) => r.serialize(s),
            Body::Forecast(r) => r.serialize(s),
            Body::ReplenishmentRecommendation(r) => r.serialize(s),
            Body::InventoryPosition(r) => r.serialize(s),
            Body::PurchaseRequisition(r) => r.serialize(s),
            Body::TransferProposal(r) => r.serialize(s),
            Body::ExecutionStatus(r) => r.serialize(s),
            Body::Exception(r) => r.serialize(s),
            Body::Raw(r) => r.serialize(s),
        }
    }
}

/// Borrowed view of the envelope for serialization, in a stable field order.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WireOut<'a> {
    schema_version: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    correlation_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: &'a Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    tenant: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    source_system: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    occurred_at: &'a str,
    priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: &'a Option<String>,
    #[serde(skip_serializing_if = "<[Header]>::is_empty", serialize_with = "pairs::headers::serialize")]
    headers: &'a [Header],
    body: &'a Body,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOut {
            schema_version: &self.schema_version,
            kind: self.kind().as_str(),
            id: &self.id,
            correlation_id: &self.correlation_id,
            causation_id: &self.causation_id,
            tenant: &self.tenant,
            source_system: &self.source_system,
            occurred_at: &self.occurred_at,
            priority: self.priority,
            idempotency_key: &self.idempotency_key,
            headers: &self.headers,
            body: &self.body,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        wire.into_message().map_err(D::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawWire {
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl Serialize for Raw {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (text, base64) = match std::str::from_utf8(&self.data) {
            Ok(t) => (Some(t.to_string()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&self.data))),
        };
        RawWire { content_type: self.content_type.clone(), text, base64 }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = RawWire::deserialize(d)?;
        let data = match (w.text, w.base64) {
            (Some(t), None) => t.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| D::Error::custom(format!("`base64` is not valid base64: {e}")))?,
            _ => return Err(D::Error::custom("a raw body needs exactly one of `text` or `base64`")),
        };
        Ok(Raw { content_type: w.content_type, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORECAST: &str = r#"{"schema-version":"1.0.0","kind":"forecast","tenant":"acme",
        "headers":{"b":"2","a":"1"},
        "body":{"item":"SKU-1","location":"DC-1","bucket":{"start":"2026-12-01","granularity":"week"},
        "quantity":12.5,"uom":"EA","forecast-version":"v1","scenario":"baseline","channel":"retail",
        "source-engine":"stat","extensions":{"buyer":"X"}}}"#;

    #[test]
    fn round_trips_and_keeps_header_order() {
        let m = from_str(FORECAST).unwrap();
        assert_eq!(m.kind(), Kind::Forecast);
        assert_eq!(m.headers[0].key, "b");
        let again = from_str(&to_string(&m)).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn unknown_body_field_names_its_path() {
        let bad = FORECAST.replace("\"quantity\"", "\"quantty\"");
        let err = from_str(&bad).unwrap_err();
        match &err {
            JsonError::Malformed { path, message } => {
                assert_eq!(path, "body.quantty");
                assert!(message.contains("unknown field `quantty`"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_its_path() {
        let bad = FORECAST.replace("12.5", "\"many\"");
        let err = from_str(&bad).unwrap_err();
        assert!(err.to_string().contains("body.quantity"), "{err}");
        // The same from a JSON value (what a mapping plugin builds), and in
        // the envelope: a failure is read again to name its path.
        let body: Value = serde_json::from_str::<Value>(&bad).unwrap()["body"].clone();
        let err = body_from_value(Kind::Forecast, body).unwrap_err();
        assert!(matches!(&err, JsonError::Malformed { path, .. } if path == "body.quantity"), "{err:?}");
        let err = from_str(&FORECAST.replacen("\"kind\"", "\"priority\":\"asap\",\"kind\"", 1)).unwrap_err();
        assert!(matches!(&err, JsonError::Malformed { path, .. } if path == "priority"), "{err:?}");
    }

    const ITEM_1_0: &str = r#"{"schema-version":"1.0.0","kind":"item","tenant":"acme",
        "body":{"id":"SKU-1","description":"Cola","base-uom":"EA","pack-size":24,"product-family":"beverages",
        "lifecycle":"active","extensions":{"gtin":"04012345678901","buyer":"B7"}}}"#;

    #[test]
    fn an_older_minor_is_upgraded_by_its_rules() {
        let m = from_str(ITEM_1_0).unwrap();
        assert_eq!(m.schema_version, SCHEMA_VERSION);
        let crate::Body::Item(item) = &m.body else { panic!("{m:?}") };
        assert_eq!(item.gtin.as_deref(), Some("04012345678901"));
        assert_eq!(item.extensions.len(), 1, "{:?}", item.extensions);

        // The same text declared as 1.1: the extension is the tenant's own.
        let current = from_str(&ITEM_1_0.replace("1.0.0", "1.1.0")).unwrap();
        let crate::Body::Item(item) = &current.body else { panic!() };
        assert_eq!((item.gtin.as_deref(), item.extensions.len()), (None, 2));
    }

    #[test]
    fn an_older_minor_cannot_send_a_newer_field() {
        let text = ITEM_1_0.replace(r#""lifecycle":"active""#, r#""lifecycle":"active","gtin":"1""#);
        let err = from_str(&text).unwrap_err();
        assert_eq!(err, JsonError::FieldNotInVersion { path: "body.gtin".into(), version: "1.0.0".into() });
        assert_eq!(err.code(), "field-not-in-version");
        assert!(err.to_string().contains("declare schema-version 1.1.0"), "{err}");
        assert!(from_str(&text.replace("1.0.0", "1.1.0")).is_ok());
    }

    #[test]
    fn schema_versions() {
        assert!(check_schema_version("1.0.0").is_ok());
        assert!(check_schema_version("1.0.7").is_ok());
        assert_eq!(schema_minor("1.1.0"), Ok(1));
        for v in ["2.0.0", "1.9.0", "1.2.0", "0.9.0", "1.0", "one", "", "01.0.0", "1.00.0", "1.0.00", "+1.0.0", "1.0.0.", " 1.0.0", "1.0.-0"] {
            assert!(matches!(
                check_schema_version(v),
                Err(JsonError::UnsupportedSchemaVersion { .. })
            ), "{v}");
        }
        let err = from_str(&FORECAST.replace("1.0.0", "2.0.0")).unwrap_err();
        assert_eq!(err.code(), "unsupported-schema-version");
    }

    #[test]
    fn unknown_kind_lists_the_kinds() {
        let err = from_str(&FORECAST.replace("\"forecast\"", "\"forcast\"")).unwrap_err();
        assert!(err.to_string().contains("replenishment-recommendation"), "{err}");
    }

    #[test]
    fn raw_bodies_text_and_base64() {
        let text = r#"{"schema-version":"1.0.0","kind":"raw","body":{"content-type":"text/csv","text":"a,b\n"}}"#;
        let m = from_str(text).unwrap();
        assert!(matches!(&m.body, Body::Raw(r) if r.data == b"a,b\n"));
        let bin = Message::new(Body::Raw(Raw { content_type: "application/octet-stream".into(), data: vec![0xff, 0] }));
        let json = to_string(&bin);
        assert!(json.contains("\"base64\":\"/wA=\""), "{json}");
        assert_eq!(from_str(&json).unwrap(), bin);
    }

    #[test]
    fn not_json_is_malformed() {
        let err = from_str("{not json").unwrap_err();
        assert_eq!(err.code(), "malformed-message");
    }
}

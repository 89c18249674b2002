//! One field of a serializable value, read by path without building the
//! value's whole JSON tree: a serializer that walks the value, descends only
//! into the fields on the path and renders just the one it reaches.
//!
//! Routes and ordering keys read a field or two of each output's body
//! (`body.item`, `body.location` by default); building the body's JSON tree
//! for that allocated every field of it, for every message. The answer is
//! the one `serde_json::to_value` and walking the tree would give: a field
//! of a struct or map, a newtype or `Some` as what it wraps, an enum variant
//! as `{variant: value}`, anything else as having no fields. Where the
//! walk meets what it does not read that way (a non-string map key, a
//! struct variant on the path) it says so, and the caller builds the tree.

use serde::ser::{self, Serialize};
use serde_json::Value;

/// What [`pick`] found.
#[derive(Debug, PartialEq)]
pub enum Picked {
    /// The value at the path, as JSON (`None`: absent).
    Found(Option<Value>),
    /// The walk cannot tell; build the whole tree instead.
    Unsure,
}

/// The value at `path` (field names from the top) in `value`'s JSON form.
pub fn pick<T: Serialize + ?Sized>(value: &T, path: &[&str]) -> Picked {
    if path.is_empty() {
        return Picked::Found(serde_json::to_value(value).ok());
    }
    match value.serialize(Picker { path }) {
        Ok(found) => Picked::Found(found),
        Err(Stop::Unsure) => Picked::Unsure,
        Err(Stop::Failed) => Picked::Found(None),
    }
}

/// Why a walk stopped.
#[derive(Debug)]
enum Stop {
    /// Met something it does not read (see the module doc).
    Unsure,
    /// The value failed to serialize (to_value would fail as well).
    Failed,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Unsure => "cannot pick without building the value",
            Stop::Failed => "the value does not serialize",
        })
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop::Failed
    }
}

type Outcome = Result<Option<Value>, Stop>;

/// The value of a field named `path[0]`: rendered when it is the last
/// part, walked into otherwise.
fn descend<T: Serialize + ?Sized>(path: &[&str], value: &T) -> Outcome {
    match path {
        [_] => serde_json::to_value(value).map(Some).map_err(|_| Stop::Failed),
        [_, rest @ ..] => value.serialize(Picker { path: rest }),
        [] => Err(Stop::Unsure),
    }
}

/// Walks a value looking for `path` (never empty).
struct Picker<'p> {
    path: &'p [&'p str],
}

/// A value without fields: whatever the path asks of it is absent.
macro_rules! absent {
    ($($f:ident: $t:ty),*) => {
        $(fn $f(self, _: $t) -> Outcome { Ok(None) })*
    };
}

impl<'p> ser::Serializer for Picker<'p> {
    type Ok = Option<Value>;
    type Error = Stop;
    type SerializeSeq = Skip;
    type SerializeTuple = Skip;
    type SerializeTupleStruct = Skip;
    type SerializeTupleVariant = Skip;
    type SerializeMap = Fields<'p>;
    type SerializeStruct = Fields<'p>;
    type SerializeStructVariant = Skip;

    absent!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_f32: f32,
        serialize_f64: f64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
        serialize_unit_struct: &'static str);

    fn serialize_none(self) -> Outcome {
        Ok(None)
    }

    fn serialize_unit(self) -> Outcome {
        Ok(None)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Outcome {
        value.serialize(self)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Outcome {
        Ok(None)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Outcome {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, variant: &'static str, value: &T) -> Outcome {
        if variant == self.path[0] {
            descend(self.path, value)
        } else {
            Ok(None)
        }
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Skip, Stop> {
        Ok(Skip)
    }

    fn serialize_tuple(self, _: usize) -> Result<Skip, Stop> {
        Ok(Skip)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Skip, Stop> {
        Ok(Skip)
    }

    fn serialize_tuple_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Skip, Stop> {
        // `{variant: [..]}`: the variant's value is a list, which has no fields.
        if variant == self.path[0] && self.path.len() == 1 {
            return Err(Stop::Unsure);
        }
        Ok(Skip)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Fields<'p>, Stop> {
        Ok(Fields { path: self.path, key: None, found: None })
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'p>, Stop> {
        Ok(Fields { path: self.path, key: None, found: None })
    }

    fn serialize_struct_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Skip, Stop> {
        // `{variant: {..}}`: on the path, not read here; another variant
        // has no field on it.
        if variant == self.path[0] {
            return Err(Stop::Unsure);
        }
        Ok(Skip)
    }
}

/// The fields of a struct or map, keeping the value of the one on the path
/// (the last one, if a name repeats: what a JSON object keeps).
struct Fields<'p> {
    path: &'p [&'p str],
    /// The key of the map entry whose value comes next, when it is on the path.
    key: Option<bool>,
    found: Option<Option<Value>>,
}

impl Fields<'_> {
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Stop> {
        if name == self.path[0] {
            self.found = Some(descend(self.path, value)?);
        }
        Ok(())
    }
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = Option<Value>;
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), Stop> {
        self.field(name, value)
    }

    fn end(self) -> Outcome {
        Ok(self.found.flatten())
    }
}

impl ser::SerializeMap for Fields<'_> {
    type Ok = Option<Value>;
    type Error = Stop;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        match serde_json::to_value(key) {
            Ok(Value::String(k)) => {
                self.key = Some(k == self.path[0]);
                Ok(())
            }
            _ => Err(Stop::Unsure),
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.key.take() == Some(true) {
            self.found = Some(descend(self.path, value)?);
        }
        Ok(())
    }

    fn end(self) -> Outcome {
        Ok(self.found.flatten())
    }
}

/// The elements of a list: none of them is a field.
struct Skip;

macro_rules! skip {
    ($($t:ident :: $f:ident),*) => {
        $(impl ser::$t for Skip {
            type Ok = Option<Value>;
            type Error = Stop;
            fn $f<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Stop> {
                Ok(())
            }
            fn end(self) -> Outcome {
                Ok(None)
            }
        })*
    };
}

skip!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field, SerializeTupleVariant::serialize_field);

impl ser::SerializeStructVariant for Skip {
    type Ok = Option<Value>;
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, _: &T) -> Result<(), Stop> {
        Ok(())
    }

    fn end(self) -> Outcome {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::*;

    /// What walking the whole JSON tree gives.
    fn walked<T: Serialize>(value: &T, path: &[&str]) -> Option<Value> {
        let mut cur = serde_json::to_value(value).ok()?;
        for part in path {
            cur = cur.get(part)?.clone();
        }
        Some(cur)
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Record {
        item: String,
        need_by: Option<String>,
        quantity: f64,
        source: Source,
        tags: Vec<String>,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, Value>,
        inner: Inner,
        wrapped: Wrapped,
        unit: Unit,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum Source {
        Supplier(String),
    }

    #[derive(Serialize)]
    struct Inner {
        id: u32,
        deep: Option<Box<Inner>>,
    }

    #[derive(Serialize)]
    struct Wrapped(String);

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum Unit {
        Each,
    }

    fn record() -> Record {
        Record {
            item: "SKU-1".into(),
            need_by: None,
            quantity: 4.5,
            source: Source::Supplier("S1".into()),
            tags: vec!["a".into()],
            extra: [("x-note".to_string(), json!({"text": "hi"}))].into(),
            inner: Inner { id: 7, deep: Some(Box::new(Inner { id: 8, deep: None })) },
            wrapped: Wrapped("w".into()),
            unit: Unit::Each,
        }
    }

    #[test]
    fn a_field_is_what_the_whole_json_tree_gives() {
        let r = record();
        for path in [
            &["item"][..],
            &["need-by"],
            &["quantity"],
            &["source"],
            &["source", "supplier"],
            &["source", "other"],
            &["tags"],
            &["tags", "0"],
            &["x-note"],
            &["x-note", "text"],
            &["inner", "id"],
            &["inner", "deep", "id"],
            &["inner", "deep", "deep"],
            &["inner", "deep", "deep", "id"],
            &["wrapped"],
            &["unit"],
            &["unit", "each"],
            &["missing"],
            &["item", "more"],
        ] {
            assert_eq!(pick(&r, path), Picked::Found(walked(&r, path)), "{path:?}");
        }
    }

    #[test]
    fn a_canonical_body_reads_as_its_json() {
        let text = json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation",
            "body": {"id": "R-1", "item": "SKU-9", "location": "DC-3", "quantity": 12.0, "uom": "EA", "need-by": "2026-12-21",
                     "source": {"supplier": "SUP-7"}, "reason": "below-safety-stock", "priority": 2}});
        let m = syncline_model::json::from_str(&text.to_string()).unwrap();
        let body = serde_json::to_value(&m.body).unwrap();
        for key in body.as_object().unwrap().keys() {
            assert_eq!(pick(&m.body, &[key]), Picked::Found(walked(&m.body, &[key])), "{key}");
        }
        assert_eq!(pick(&m.body, &["item"]), Picked::Found(Some(json!("SKU-9"))));
        assert_eq!(pick(&m.body, &["source", "supplier"]), Picked::Found(Some(json!("SUP-7"))));
        #[derive(Serialize)]
        enum Shape {
            Box { side: u32 },
            Line(u32, u32),
        }
        assert_eq!(pick(&Shape::Box { side: 2 }, &["Box", "side"]), Picked::Unsure, "a struct variant on the path: build the tree");
        assert_eq!(pick(&Shape::Box { side: 2 }, &["Line"]), Picked::Found(walked(&Shape::Box { side: 2 }, &["Line"])));
        assert_eq!(pick(&Shape::Line(1, 2), &["Line"]), Picked::Unsure);
        assert_eq!(pick(&Shape::Line(1, 2), &["Line", "0"]), Picked::Found(None));
    }
}

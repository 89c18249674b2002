//! How many bytes a value a plugin returned holds: the sum of its strings'
//! and byte strings' lengths plus a byte per scalar, counted with a serde
//! serializer that writes nothing. It bounds a call's output
//! ([`super::Limits::output`]) at a fraction of the cost of rendering JSON
//! (no escaping, no buffer) and stops counting once past the limit.
//!
//! Written here because serializers that only measure (bincode's size
//! checker) come with a wire format this host does not otherwise need.

use serde::ser::{self, Serialize};

/// The size of `value` in bytes, counting no further than just past `limit`.
pub fn size_of<T: Serialize>(value: &T, limit: usize) -> usize {
    let mut counter = Counter { n: 0, limit };
    let _ = value.serialize(&mut counter);
    counter.n
}

struct Counter {
    n: usize,
    limit: usize,
}

/// Past the limit: stop walking.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("past the limit")
    }
}

impl std::error::Error for Enough {}

impl ser::Error for Enough {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Enough
    }
}

impl Counter {
    fn add(&mut self, n: usize) -> Result<(), Enough> {
        self.n += n;
        if self.n > self.limit {
            Err(Enough)
        } else {
            Ok(())
        }
    }
}

macro_rules! scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, _: $ty) -> Result<(), Enough> { self.add(1) })*
    };
}

impl ser::Serializer for &mut Counter {
    type Ok = ();
    type Error = Enough;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    scalars!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
             serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
             serialize_f32: f32, serialize_f64: f64, serialize_char: char);

    fn serialize_str(self, v: &str) -> Result<(), Enough> {
        self.add(v.len())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Enough> {
        self.add(v.len())
    }
    fn serialize_none(self) -> Result<(), Enough> {
        self.add(1)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Enough> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Enough> {
        self.add(1)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Enough> {
        self.add(1)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Enough> {
        self.add(variant.len())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Enough> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, value: &T) -> Result<(), Enough> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Enough> {
        Ok(self)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, Enough> {
        Ok(self)
    }
}

/// The compound serializers all just walk their parts.
macro_rules! walk {
    ($($trait:ident: $method:ident($($name:ident: $ty:ty),*)),*) => {$(
        impl ser::$trait for &mut Counter {
            type Ok = ();
            type Error = Enough;
            fn $method<T: Serialize + ?Sized>(&mut self, $($name: $ty,)* v: &T) -> Result<(), Enough> {
                $(let _ = $name;)*
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Enough> {
                Ok(())
            }
        }
    )*};
}

walk!(
    SerializeSeq: serialize_element(),
    SerializeTuple: serialize_element(),
    SerializeTupleStruct: serialize_field(),
    SerializeTupleVariant: serialize_field(),
    SerializeStruct: serialize_field(key: &'static str),
    SerializeStructVariant: serialize_field(key: &'static str)
);

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = Enough;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Enough> {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Enough> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Enough> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_and_scalars_and_stops_past_the_limit() {
        let v = serde_json::json!({"id": "abc", "n": 5, "list": ["xy", "z"]});
        // keys 2 + 1 + 4, values 3 + 1 + 2 + 1
        assert_eq!(size_of(&v, 1000), 14);
        let big = vec!["x".repeat(1000); 1000];
        let n = size_of(&big, 10_000);
        assert!(n > 10_000 && n <= 11_000, "{n}");
    }
}

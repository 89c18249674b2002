//! JSON form of key/value lists (extensions, headers): a JSON object of
//! strings, written in list order.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserializer, Serializer};
use std::fmt;

/// Anything that is a key/value pair.
pub trait Pair {
    /// Builds the pair.
    fn new(key: String, value: String) -> Self;
    /// The key.
    fn key(&self) -> &str;
    /// The value.
    fn value(&self) -> &str;
}

pub(crate) fn serialize<S: Serializer, P: Pair>(pairs: &[P], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for p in pairs {
        map.serialize_entry(p.key(), p.value())?;
    }
    map.end()
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, P: Pair>(d: D) -> Result<Vec<P>, D::Error> {
    struct V<P>(std::marker::PhantomData<P>);
    impl<'de, P: Pair> Visitor<'de> for V<P> {
        type Value = Vec<P>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object whose values are strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<P>, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                out.push(P::new(k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V(std::marker::PhantomData))
}

macro_rules! pair_module {
    ($module:ident, $ty:ty) => {
        pub(crate) mod $module {
            use super::*;
            pub fn serialize<S: Serializer>(v: &[$ty], s: S) -> Result<S::Ok, S::Error> {
                super::serialize(v, s)
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<$ty>, D::Error> {
                super::deserialize(d)
            }
        }
    };
}

pair_module!(extensions, crate::Extension);
pair_module!(headers, crate::Header);

impl Pair for crate::Extension {
    fn new(key: String, value: String) -> Self {
        Self { key, value }
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl Pair for crate::Header {
    fn new(key: String, value: String) -> Self {
        Self { key, value }
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
}

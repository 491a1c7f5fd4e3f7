//! Typed event data: arguments read as any `serde::Deserialize` type and written from any
//! `Serialize` type, binary included. Binary travels as socket.io lays it out (a placeholder
//! object among the values, the bytes beside them), so neither direction can go through
//! `serde_json::Value`'s own serde impls, which know nothing of attachments:
//!
//! - [`De`] reads a value and its attachments: a placeholder is bytes to a type asking for
//!   bytes (`bytes::Bytes`, `serde_bytes`) or a sequence of `u8` (`Vec<u8>`), and stays the
//!   placeholder object to a `Value`;
//! - [`to_value`] writes a value, each byte string (what `Bytes` and `serde_bytes`
//!   serialise as) becoming an attachment and its placeholder.
//!
//! Layer: namespaces (used by `Args`).

use bytes::Bytes;
use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};

use crate::proto::sio;

type Error = serde_json::Error;

/// The attachment a placeholder object names.
fn attachment<'a>(v: &Value, bins: &'a [Bytes]) -> Option<&'a Bytes> {
    let m = v.as_object()?;
    if m.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    bins.get(usize::try_from(m.get("num")?.as_u64()?).ok()?)
}

/// A deserializer over one value and the attachments its placeholders name.
pub(crate) struct De<'a> {
    pub(crate) v: &'a Value,
    pub(crate) bins: &'a [Bytes],
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Array(items) => visitor.visit_seq(Seq { it: items.iter(), bins: self.bins }),
            Value::Object(m) => {
                visitor.visit_map(Entries { it: m.iter(), value: None, bins: self.bins })
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            other => de::Deserializer::deserialize_any(other, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match attachment(self.v, self.bins) {
            Some(b) => visitor.visit_borrowed_bytes(b),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match attachment(self.v, self.bins) {
            // `Vec<u8>` asks for a sequence.
            Some(b) => visitor.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.v {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(m) if m.len() == 1 => match m.iter().next() {
                Some((k, v)) => {
                    visitor.visit_enum(Variant { name: k, value: De { v, bins: self.bins } })
                }
                None => Err(de::Error::custom("empty enum object")),
            },
            _ => Err(de::Error::invalid_type(unexpected(self.v), &"a string or a one-key object")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// The elements of a slice of values, as a serde sequence.
pub(crate) struct Seq<'a> {
    it: std::slice::Iter<'a, Value>,
    bins: &'a [Bytes],
}

impl<'a> Seq<'a> {
    pub(crate) fn new(items: &'a [Value], bins: &'a [Bytes]) -> Self {
        Seq { it: items.iter(), bins }
    }
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.it.next() {
            Some(v) => seed.deserialize(De { v, bins: self.bins }).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.it.len())
    }
}

struct Entries<'a> {
    it: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
    bins: &'a [Bytes],
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.it.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key: de::value::BorrowedStrDeserializer<'de, Error> =
                    de::value::BorrowedStrDeserializer::new(k);
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(De { v, bins: self.bins }),
            None => Err(de::Error::custom("a map value before its key")),
        }
    }
}

struct Variant<'a> {
    name: &'a str,
    value: De<'a>,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = De<'de>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, De<'de>), Error> {
        let name: de::value::BorrowedStrDeserializer<'de, Error> =
            de::value::BorrowedStrDeserializer::new(self.name);
        Ok((seed.deserialize(name)?, self.value))
    }
}

impl<'de> VariantAccess<'de> for De<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

/// `v` as a value, each byte string in it appended to `bins` and replaced by its
/// placeholder.
pub(crate) fn to_value<T: Serialize + ?Sized>(
    v: &T,
    bins: &mut Vec<Bytes>,
) -> Result<Value, Error> {
    v.serialize(Ser { bins })
}

struct Ser<'b> {
    bins: &'b mut Vec<Bytes>,
}

fn float(f: f64) -> Value {
    // JSON.stringify writes NaN and the infinities as null.
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl<'b> ser::Serializer for Ser<'b> {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Items<'b>;
    type SerializeTuple = Items<'b>;
    type SerializeTupleStruct = Items<'b>;
    type SerializeTupleVariant = Items<'b>;
    type SerializeMap = Fields<'b>;
    type SerializeStruct = Fields<'b>;
    type SerializeStructVariant = Fields<'b>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(float(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        self.bins.push(Bytes::copy_from_slice(v));
        Ok(sio::placeholder(self.bins.len() - 1))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        let mut m = Map::new();
        m.insert(variant.to_owned(), v.serialize(self)?);
        Ok(Value::Object(m))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Items<'b>, Error> {
        Ok(Items { bins: self.bins, items: Vec::with_capacity(len.unwrap_or(0)), variant: None })
    }
    fn serialize_tuple(self, len: usize) -> Result<Items<'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Items<'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Items<'b>, Error> {
        Ok(Items { bins: self.bins, items: Vec::with_capacity(len), variant: Some(variant) })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Fields<'b>, Error> {
        Ok(Fields { bins: self.bins, map: Map::new(), key: None, variant: None })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Fields<'b>, Error> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Fields<'b>, Error> {
        Ok(Fields { bins: self.bins, map: Map::new(), key: None, variant: Some(variant) })
    }
}

/// A sequence being written (and, for a tuple variant, its variant's name).
struct Items<'b> {
    bins: &'b mut Vec<Bytes>,
    items: Vec<Value>,
    variant: Option<&'static str>,
}

impl Items<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.items.push(v.serialize(Ser { bins: self.bins })?);
        Ok(())
    }

    fn finish(self) -> Result<Value, Error> {
        let arr = Value::Array(self.items);
        Ok(match self.variant {
            Some(name) => Value::Object(Map::from_iter([(name.to_owned(), arr)])),
            None => arr,
        })
    }
}

impl ser::SerializeSeq for Items<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Items<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Items<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Items<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.push(v)
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

/// A map or struct being written (and, for a struct variant, its variant's name).
struct Fields<'b> {
    bins: &'b mut Vec<Bytes>,
    map: Map<String, Value>,
    key: Option<String>,
    variant: Option<&'static str>,
}

impl Fields<'_> {
    fn finish(self) -> Result<Value, Error> {
        let obj = Value::Object(self.map);
        Ok(match self.variant {
            Some(name) => Value::Object(Map::from_iter([(name.to_owned(), obj)])),
            None => obj,
        })
    }
}

impl ser::SerializeMap for Fields<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        // As JSON: a key is a string, and numbers and booleans are written as one.
        self.key = Some(match key.serialize(Ser { bins: &mut Vec::new() })? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(ser::Error::custom("a map key must be a string")),
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key =
            self.key.take().ok_or_else(|| ser::Error::custom("a map value before its key"))?;
        self.map.insert(key, v.serialize(Ser { bins: self.bins })?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.map.insert(key.to_owned(), v.serialize(Ser { bins: self.bins })?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Fields<'_> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.map.insert(key.to_owned(), v.serialize(Ser { bins: self.bins })?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    use crate::ns::args::{Args, ArgsError};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Tagged(u32),
        Shaped { x: i32 },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct State {
        name: String,
        blob: Bytes,
        list: Vec<u8>,
        maybe: Option<u32>,
        kinds: Vec<Kind>,
        nested: Vec<Bytes>,
    }

    fn state() -> State {
        State {
            name: "s".into(),
            blob: Bytes::from_static(b"\x00\x01"),
            list: vec![7, 8],
            maybe: None,
            kinds: vec![Kind::Plain, Kind::Tagged(3), Kind::Shaped { x: -1 }],
            nested: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
        }
    }

    #[test]
    fn a_struct_with_binary_goes_out_as_attachments_and_reads_back() {
        let args = Args::new().arg(state());
        assert_eq!(args.binary().len(), 3, "blob and the two nested parts");
        assert_eq!(
            args.values()[0],
            json!({
                "name": "s",
                "blob": {"_placeholder": true, "num": 0},
                "list": [7, 8],
                "maybe": null,
                "kinds": ["Plain", {"Tagged": 3}, {"Shaped": {"x": -1}}],
                "nested": [{"_placeholder": true, "num": 1}, {"_placeholder": true, "num": 2}],
            })
        );
        assert_eq!(args.parse_at::<State>(0), Ok(state()));
        // A Value sees the placeholders.
        let v: Value = args.parse_at(0).unwrap();
        assert_eq!(v["blob"], json!({"_placeholder": true, "num": 0}));
    }

    #[test]
    fn the_arguments_as_a_tuple_or_a_struct_in_order() {
        let args = Args::new().arg("move").arg(3).binary_arg(Bytes::from_static(b"xyz"));
        let (name, n, blob): (String, u32, Bytes) = args.parse().unwrap();
        assert_eq!((name.as_str(), n, &blob[..]), ("move", 3, &b"xyz"[..]));
        let as_vec: Vec<u8> = args.parse_at(2).unwrap();
        assert_eq!(as_vec, b"xyz");
        #[derive(Deserialize, Debug, PartialEq)]
        struct Move {
            name: String,
            n: u32,
        }
        let (m, _): (Move, Value) =
            Args::new().arg(json!({"name": "a", "n": 1})).arg(0).parse().unwrap();
        assert_eq!(m, Move { name: "a".into(), n: 1 });
    }

    #[test]
    fn the_wrong_shape_is_an_error_naming_the_argument() {
        let args = Args::new().arg("not a number");
        let e = args.parse_at::<u32>(0).unwrap_err();
        assert!(
            matches!(&e, ArgsError::Shape { index: Some(0), message } if message.contains("invalid type: string")),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "argument 0: invalid type: string \"not a number\", expected u32"
        );
        assert_eq!(args.parse_at::<u32>(3), Err(ArgsError::Missing { index: 3, len: 1 }));
        assert!(args.parse::<(String, u32)>().is_err());
        assert!(
            args.parse_at::<Bytes>(0).is_ok_and(|b| &b[..] == b"not a number"),
            "a string reads as its bytes"
        );
        assert!(Args::new().arg(json!({"x": 1})).parse_at::<Bytes>(0).is_err());
        assert_eq!(args.get::<u32>(0), None);
    }

    #[test]
    fn what_json_cannot_hold_is_written_as_javascript_would() {
        let args = Args::new()
            .arg(f64::NAN)
            .arg((1u8, 'c', ()))
            .arg(std::collections::BTreeMap::from([(1, "one")]));
        assert_eq!(args.values(), &[json!(null), json!([1, "c", null]), json!({"1": "one"})]);
        let bad = Args::new().arg(std::collections::BTreeMap::from([((1, 2), "pair")]));
        assert_eq!(bad.values(), &[Value::Null]);
        assert!(bad.binary().is_empty());
    }
}

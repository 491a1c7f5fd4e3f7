//! Event arguments: JSON values plus binary attachments, and what can be turned into them.
//!
//! A binary argument is kept as socket.io keeps it on the wire: a placeholder object
//! `{"_placeholder":true,"num":N}` among the values, and the bytes in `binary[N]`. This keeps
//! received binary args in place, so echoing a packet back needs no rewriting.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::proto::json::Verbatim;
use crate::proto::sio;

/// The arguments of an event or an acknowledgement.
///
/// Received arguments are JavaScript values read as `JSON.parse` reads them (see
/// `shardcast::proto::json`): a string holding a lone surrogate (`"\ud83d"`, half an
/// emoji) is seen here with U+FFFD in its place, and the argument keeps the text the client
/// sent, so emitting these `Args` again (relay, echo, ack, broadcast; also after
/// [`Args::skip`]) sends the client's escape back unchanged. [`Args::original`] shows that
/// text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    values: Vec<Value>,
    binary: Vec<Bytes>,
    verbatim: Verbatim,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::default()
    }

    pub(crate) fn from_parts(values: Vec<Value>, binary: Vec<Bytes>, verbatim: Verbatim) -> Self {
        Args { values, binary, verbatim }
    }

    /// Appends an argument: any `Serialize` value. Byte strings in it (`bytes::Bytes`,
    /// `serde_bytes`) are sent as binary (the client receives a `Buffer` / `ArrayBuffer`)
    /// wherever they are; everything else as JSON. A value that cannot be represented (a
    /// map with keys that are not strings) is sent as `null` and logged.
    pub fn arg(mut self, v: impl Serialize) -> Self {
        let mark = self.binary.len();
        let value = crate::ns::typed::to_value(&v, &mut self.binary).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "event argument is not serialisable; sending null");
            self.binary.truncate(mark);
            Value::Null
        });
        self.values.push(value);
        self
    }

    /// Appends a binary argument (the client receives an `ArrayBuffer` / `Buffer`).
    pub fn binary_arg(mut self, b: impl Into<Bytes>) -> Self {
        self.values.push(sio::placeholder(self.binary.len()));
        self.binary.push(b.into());
        self
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The JSON values; binary arguments appear as placeholder objects.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The binary attachments, in placeholder order.
    pub fn binary(&self) -> &[Bytes] {
        &self.binary
    }

    /// Argument `i` deserialised as `T`, or `None` when absent or of another shape (see
    /// [`Args::parse_at`] for why).
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
        self.parse_at(i).ok()
    }

    /// Argument `i` as any `Deserialize` type: binary in it reads as bytes to a type asking
    /// for them (`bytes::Bytes`, `Vec<u8>`, `serde_bytes`), and as its placeholder object
    /// to a `serde_json::Value`. A missing argument or one of another shape is an
    /// [`ArgsError`] saying which and why, never a panic.
    pub fn parse_at<T: DeserializeOwned>(&self, i: usize) -> Result<T, ArgsError> {
        let v = self.values.get(i).ok_or(ArgsError::Missing { index: i, len: self.len() })?;
        T::deserialize(crate::ns::typed::De { v, bins: &self.binary })
            .map_err(|e| ArgsError::Shape { index: Some(i), message: e.to_string() })
    }

    /// All the arguments as one `Deserialize` type read as a sequence: a tuple
    /// (`(String, u32, Bytes)`), a `Vec`, or a struct whose fields are the arguments in
    /// order. Binary as in [`Args::parse_at`].
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        let seq = crate::ns::typed::Seq::new(&self.values, &self.binary);
        T::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
            .map_err(|e| ArgsError::Shape { index: None, message: e.to_string() })
    }

    /// Argument `i` as a string slice, when it is a JSON string.
    pub fn str(&self, i: usize) -> Option<&str> {
        self.values.get(i).and_then(Value::as_str)
    }

    /// The JSON text argument `i` is sent as when it differs from [`Args::values`]: a
    /// received argument holding a lone surrogate, as the client wrote it (numbers as
    /// JavaScript writes them, no whitespace). `None` for every other argument.
    pub fn original(&self, i: usize) -> Option<&str> {
        self.verbatim.get(i)
    }

    /// Argument `i` as bytes, when it is a (top-level) binary argument.
    pub fn get_binary(&self, i: usize) -> Option<&Bytes> {
        let v = self.values.get(i)?;
        if v.get("_placeholder").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let num = v.get("num").and_then(Value::as_u64)?;
        self.binary.get(usize::try_from(num).ok()?)
    }

    /// Drops the first `n` arguments, renumbering nothing: placeholders keep pointing at the
    /// same attachments, which stay in place.
    pub fn skip(mut self, n: usize) -> Self {
        let n = n.min(self.values.len());
        self.values.drain(..n);
        self.verbatim.skip(n);
        self
    }

    /// The verbatim text of the arguments that have one (see [`Args::original`]).
    pub(crate) fn verbatim(&self) -> &Verbatim {
        &self.verbatim
    }

    pub(crate) fn into_parts(self) -> (Vec<Value>, Vec<Bytes>, Verbatim) {
        (self.values, self.binary, self.verbatim)
    }
}

/// Why event arguments did not read as the type asked for ([`Args::parse`],
/// [`Args::parse_at`], [`crate::Socket::on_typed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// Fewer arguments than asked for.
    #[error("argument {index} is missing (the event has {len})")]
    Missing {
        /// The argument asked for.
        index: usize,
        /// How many there are.
        len: usize,
    },
    /// An argument (or, `None`, the list) of another shape.
    #[error("{}: {message}", index.map_or_else(|| "arguments".to_owned(), |i| format!("argument {i}")))]
    Shape {
        /// The argument, or `None` for the whole list.
        index: Option<usize>,
        /// What serde said (`invalid type: string "x", expected u32`).
        message: String,
    },
}

/// What can be emitted as event arguments: [`Args`], `()` for none, a [`Value`], a string,
/// [`Bytes`] (one binary argument), or a tuple of up to six serialisable values (one
/// argument each). For anything else, build [`Args`].
pub trait IntoArgs {
    /// Converts into [`Args`].
    fn into_args(self) -> Args;
}

impl IntoArgs for Args {
    fn into_args(self) -> Args {
        self
    }
}

impl IntoArgs for () {
    fn into_args(self) -> Args {
        Args::new()
    }
}

impl IntoArgs for Value {
    fn into_args(self) -> Args {
        Args { values: vec![self], ..Args::default() }
    }
}

impl IntoArgs for &str {
    fn into_args(self) -> Args {
        Value::String(self.to_owned()).into_args()
    }
}

impl IntoArgs for String {
    fn into_args(self) -> Args {
        Value::String(self).into_args()
    }
}

impl IntoArgs for Bytes {
    fn into_args(self) -> Args {
        Args::new().binary_arg(self)
    }
}

macro_rules! tuple_into_args {
    ($($name:ident),+) => {
        impl<$($name: Serialize),+> IntoArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Args {
                let ($($name,)+) = self;
                Args::new()$(.arg($name))+
            }
        }
    };
}
tuple_into_args!(A);
tuple_into_args!(A, B);
tuple_into_args!(A, B, C);
tuple_into_args!(A, B, C, D);
tuple_into_args!(A, B, C, D, E);
tuple_into_args!(A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tuples_become_one_argument_each() {
        let a = ("x", 1, json!({"k": true})).into_args();
        assert_eq!(a.values(), &[json!("x"), json!(1), json!({"k": true})]);
        assert!(a.binary().is_empty());
    }

    #[test]
    fn binary_args_are_placeholders() {
        let a = Args::new().arg("n").binary_arg(Bytes::from_static(b"\x01\x02"));
        assert_eq!(a.values()[1], json!({"_placeholder": true, "num": 0}));
        assert_eq!(a.get_binary(1).map(|b| &b[..]), Some(&b"\x01\x02"[..]));
        assert_eq!(a.get_binary(0), None);
        assert_eq!(a.str(0), Some("n"));
        assert_eq!(a.get::<u32>(0), None);
    }
}

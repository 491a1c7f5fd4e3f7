//! MessagePack as notepack.io writes and reads it: the encoding `@socket.io/redis-adapter`
//! and `@socket.io/redis-emitter` use for what they publish (a broadcast's
//! `[uid, packet, opts]`, requests and responses). Values are JSON values as this server
//! holds them (`serde_json::Value`, numbers as JavaScript reads them), with binary kept apart:
//! a `bin` becomes a `{"_placeholder":true,"num":N}` object and attachment `N`, as the
//! Socket.IO parser lays binary out, so a received broadcast enters the same encode-once path
//! as a local one.
//!
//! What notepack.io does, and so this codec: integers in their smallest form (positive
//! fixint / uint 8-64 for ≥ 0, negative fixint / int 8-64 below), other numbers as float 64;
//! strings as fixstr / str 8-32; arrays and maps in their smallest headers; `Buffer` as
//! bin 8-32; `undefined` as nil (the old fixext 1 of type 0 is still read as `undefined`: null
//! in an array, the key dropped in a map, as `JSON.stringify` would); `Date` as the timestamp
//! extension (type -1), read as the ISO-8601 string `JSON.stringify` writes for a `Date`.
//!
//! Hand-written rather than through `rmpv`: a value tree of rmpv's would be built and then
//! copied into ours, and its reader recurses; this one is iterative with a depth limit, like
//! the JSON decoder, and decodes straight into the values the broadcast path uses.
//!
//! Layer: the bottom (sans-IO).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::json::js_number;
use super::sio;

/// Why a MessagePack message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The message ends inside a value.
    #[error("truncated MessagePack")]
    Truncated,
    /// A marker or extension this codec does not read.
    #[error("unsupported MessagePack marker {0:#04x}")]
    Unsupported(u8),
    /// A string that is not UTF-8, or a map key that is not a string.
    #[error("invalid MessagePack string or map key")]
    Invalid,
    /// Arrays and maps nested deeper than the limit.
    #[error("MessagePack nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Bytes follow the value.
    #[error("trailing bytes after MessagePack value")]
    Trailing,
}

/// A decoded message: its value, binary replaced by placeholders, and the binary parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The value, each `bin` as a placeholder object.
    pub value: Value,
    /// The `bin` parts in placeholder order.
    pub binary: Vec<Bytes>,
}

/// A container being filled.
enum Open {
    Array {
        items: Vec<Value>,
        left: usize,
    },
    /// `parts`: how many binary parts had been read when the current key was.
    Map {
        map: Map<String, Value>,
        left: usize,
        key: Option<String>,
        parts: usize,
    },
}

/// What one item read to: a value, `undefined`, or a container to open.
enum Item {
    Value(Value),
    Undefined,
    Array(usize),
    Map(usize),
}

/// Decodes one MessagePack value; arrays and maps nested at most `max_depth` deep.
pub fn decode(input: &Bytes, max_depth: usize) -> Result<Decoded, MsgpackError> {
    let mut r = Reader { b: input, i: 0, binary: Vec::new() };
    let mut stack: Vec<Open> = Vec::new();
    // A repeated map key dropped a value that held binary parts.
    let mut orphans = false;
    let value = 'outer: loop {
        // In a map, the key comes first.
        if let Some(Open::Map { key: key @ None, parts, .. }) = stack.last_mut() {
            match r.item()? {
                Item::Value(Value::String(k)) => *key = Some(k),
                _ => return Err(MsgpackError::Invalid),
            }
            *parts = r.binary.len();
        }
        let mut done = match r.item()? {
            Item::Value(v) => Some(v),
            Item::Undefined => None,
            Item::Array(n) | Item::Map(n) if stack.len() >= max_depth && n > 0 => {
                return Err(MsgpackError::TooDeep { limit: max_depth })
            }
            Item::Array(0) => Some(Value::Array(Vec::new())),
            Item::Map(0) => Some(Value::Object(Map::new())),
            Item::Array(n) => {
                // A length is only a promise: never reserve more than the bytes left can hold.
                let cap = n.min(r.b.len() - r.i);
                stack.push(Open::Array { items: Vec::with_capacity(cap), left: n });
                continue;
            }
            Item::Map(n) => {
                stack.push(Open::Map { map: Map::new(), left: n, key: None, parts: 0 });
                continue;
            }
        };
        // Put the finished value in its container; close the containers it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                break 'outer done.unwrap_or(Value::Null);
            };
            let full = match top {
                Open::Array { items, left } => {
                    // `undefined` in an array is null, as JSON.stringify writes it.
                    items.push(done.take().unwrap_or(Value::Null));
                    *left -= 1;
                    *left == 0
                }
                Open::Map { map, left, key, parts } => {
                    let k = key.take().ok_or(MsgpackError::Invalid)?;
                    // An `undefined` member is dropped, as JSON.stringify drops it. A repeated
                    // key replaces the value (the last one wins, as in JavaScript) in the
                    // key's first place: the placeholders are then renumbered in the order
                    // of the value (the replaced value's parts dropped, the new one's moved
                    // to where its key is).
                    if let Some(v) = done.take() {
                        let new_parts = r.binary.len() > *parts;
                        if let Some(old) = map.insert(k, v) {
                            orphans |= new_parts || sio::count_placeholders(&old) > 0;
                        }
                    }
                    *left -= 1;
                    *left == 0
                }
            };
            if !full {
                continue 'outer;
            }
            done = match stack.pop() {
                Some(Open::Array { items, .. }) => Some(Value::Array(items)),
                Some(Open::Map { map, .. }) => Some(Value::Object(map)),
                None => None,
            };
        }
    };
    if r.i != r.b.len() {
        return Err(MsgpackError::Trailing);
    }
    let mut value = value;
    let binary = if orphans { renumber(&mut value, &r.binary) } else { r.binary };
    Ok(Decoded { value, binary })
}

/// Keeps only the binary parts `value` still refers to, numbered in order (a hostile or
/// odd message repeated a map key over a value holding some). Recursion is bounded by the
/// decoder's depth limit.
pub(crate) fn renumber(value: &mut Value, binary: &[Bytes]) -> Vec<Bytes> {
    fn walk(v: &mut Value, binary: &[Bytes], kept: &mut Vec<Bytes>) {
        match v {
            Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)) => {
                let old =
                    m.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
                if let Some(b) = old.and_then(|n| binary.get(n)) {
                    kept.push(b.clone());
                    *v = sio::placeholder(kept.len() - 1);
                }
            }
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, binary, kept)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, binary, kept)),
            _ => {}
        }
    }
    let mut kept = Vec::new();
    walk(value, binary, &mut kept);
    kept
}

struct Reader<'a> {
    b: &'a Bytes,
    i: usize,
    binary: Vec<Bytes>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MsgpackError> {
        let end = self.i.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let s = self.b.get(self.i..end).ok_or(MsgpackError::Truncated)?;
        self.i = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, MsgpackError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn int(&mut self, n: usize) -> Result<i64, MsgpackError> {
        let u = self.uint(n)?;
        let shift = 64 - 8 * n as u32;
        Ok(((u << shift) as i64) >> shift)
    }

    fn len(&mut self, n: usize) -> Result<usize, MsgpackError> {
        usize::try_from(self.uint(n)?).map_err(|_| MsgpackError::Truncated)
    }

    fn str(&mut self, n: usize) -> Result<Item, MsgpackError> {
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| MsgpackError::Invalid)?;
        Ok(Item::Value(Value::String(s.to_owned())))
    }

    fn bin(&mut self, n: usize) -> Result<Item, MsgpackError> {
        let start = self.i;
        self.take(n)?;
        self.binary.push(self.b.slice(start..start + n));
        Ok(Item::Value(sio::placeholder(self.binary.len() - 1)))
    }

    /// An extension of `n` bytes: `fixed` for the fixext markers, which notepack.io 2
    /// (socket.io-msgpack-parser's) reads apart from ext 8/16/32 for its type 0.
    fn ext(&mut self, n: usize, fixed: bool) -> Result<Item, MsgpackError> {
        let kind = self.take(1)?[0] as i8;
        if kind == 0 && !fixed {
            // notepack.io 2 writes an `ArrayBuffer` or typed array (not a `Buffer`) as ext
            // 8/16/32 of type 0 and reads it back as binary.
            return self.bin(n);
        }
        let data = self.take(n)?;
        match (kind, n) {
            (0, 1) => Ok(Item::Undefined),
            (0, 8) => {
                // notepack.io 2's `Date`: milliseconds since the epoch, as a signed high
                // word and an unsigned low one.
                let hi = i64::from(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                let lo = i64::from(u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
                let ms = hi * (1 << 32) + lo;
                let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
                Ok(Item::Value(Value::String(iso8601(ms.div_euclid(1000), nanos))))
            }
            (-1, 4 | 8 | 12) => {
                let (secs, nanos) = match n {
                    4 => (i64::from(u32::from_be_bytes([data[0], data[1], data[2], data[3]])), 0),
                    8 => {
                        let v =
                            u64::from_be_bytes(data.try_into().map_err(|_| MsgpackError::Invalid)?);
                        ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
                    }
                    _ => {
                        let nanos = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                        let secs = i64::from_be_bytes(
                            data[4..12].try_into().map_err(|_| MsgpackError::Invalid)?,
                        );
                        (secs, nanos)
                    }
                };
                Ok(Item::Value(Value::String(iso8601(secs, nanos))))
            }
            _ => Err(MsgpackError::Unsupported(0xc7)),
        }
    }

    fn item(&mut self) -> Result<Item, MsgpackError> {
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Item::Value(Value::from(m)),
            0x80..=0x8f => Item::Map(usize::from(m & 0x0f)),
            0x90..=0x9f => Item::Array(usize::from(m & 0x0f)),
            0xa0..=0xbf => return self.str(usize::from(m & 0x1f)),
            0xc0 => Item::Value(Value::Null),
            0xc2 => Item::Value(Value::Bool(false)),
            0xc3 => Item::Value(Value::Bool(true)),
            0xc4 => {
                let n = self.len(1)?;
                return self.bin(n);
            }
            0xc5 => {
                let n = self.len(2)?;
                return self.bin(n);
            }
            0xc6 => {
                let n = self.len(4)?;
                return self.bin(n);
            }
            0xc7 => {
                let n = self.len(1)?;
                return self.ext(n, false);
            }
            0xc8 => {
                let n = self.len(2)?;
                return self.ext(n, false);
            }
            0xc9 => {
                let n = self.len(4)?;
                return self.ext(n, false);
            }
            0xca => {
                let b = self.take(4)?;
                Item::Value(js_number(f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))))
            }
            0xcb => {
                let v = self.uint(8)?;
                Item::Value(js_number(f64::from_bits(v)))
            }
            0xcc => Item::Value(Value::from(self.uint(1)?)),
            0xcd => Item::Value(Value::from(self.uint(2)?)),
            0xce => Item::Value(Value::from(self.uint(4)?)),
            // 64-bit integers are JavaScript numbers to notepack.io: rounded past 2^53.
            0xcf => Item::Value(js_number(self.uint(8)? as f64)),
            0xd0 => Item::Value(Value::from(self.int(1)?)),
            0xd1 => Item::Value(Value::from(self.int(2)?)),
            0xd2 => Item::Value(Value::from(self.int(4)?)),
            0xd3 => Item::Value(js_number(self.int(8)? as f64)),
            0xd4 => return self.ext(1, true),
            0xd5 => return self.ext(2, true),
            0xd6 => return self.ext(4, true),
            0xd7 => return self.ext(8, true),
            0xd8 => return self.ext(16, true),
            0xd9 => {
                let n = self.len(1)?;
                return self.str(n);
            }
            0xda => {
                let n = self.len(2)?;
                return self.str(n);
            }
            0xdb => {
                let n = self.len(4)?;
                return self.str(n);
            }
            0xdc => Item::Array(self.len(2)?),
            0xdd => Item::Array(self.len(4)?),
            0xde => Item::Map(self.len(2)?),
            0xdf => Item::Map(self.len(4)?),
            0xe0..=0xff => Item::Value(Value::from(i64::from(m as i8))),
            other => return Err(MsgpackError::Unsupported(other)),
        })
    }
}

/// `Date.prototype.toJSON` for a timestamp: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso8601(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    )
}

/// Appends `v` as notepack.io writes it, each placeholder object as the `bin` of its
/// attachment in `binary` (a placeholder naming no attachment is written as the object).
pub fn encode(out: &mut BytesMut, v: &Value, binary: &[Bytes]) {
    match v {
        Value::Null => out.put_u8(0xc0),
        Value::Bool(b) => out.put_u8(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                put_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                put_int(out, i);
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0 {
                    // An integral number is an integer to notepack.io (exact up to 2^63).
                    if f >= 0.0 {
                        put_uint(out, f as u64);
                    } else {
                        put_int(out, f as i64);
                    }
                } else {
                    out.put_u8(0xcb);
                    out.put_f64(f);
                }
            }
        }
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            put_array_len(out, items.len());
            for item in items {
                encode(out, item, binary);
            }
        }
        Value::Object(map) => {
            if let Some(bin) = attachment(map, binary) {
                put_len(out, bin.len(), 0, 0, [0xc4, 0xc5, 0xc6]);
                out.extend_from_slice(bin);
                return;
            }
            put_map_len(out, map.len());
            for (k, item) in map {
                put_str(out, k);
                encode(out, item, binary);
            }
        }
    }
}

/// Appends a string.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    put_len(out, s.len(), 0xa0, 0x20, [0xd9, 0xda, 0xdb]);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the header of an array of `n` items.
pub(crate) fn put_array_len(out: &mut BytesMut, n: usize) {
    put_len(out, n, 0x90, 0x10, [0, 0xdc, 0xdd]);
}

/// Appends the header of a map of `n` entries.
pub(crate) fn put_map_len(out: &mut BytesMut, n: usize) {
    put_len(out, n, 0x80, 0x10, [0, 0xde, 0xdf]);
}

/// The attachment a placeholder object stands for.
fn attachment<'a>(map: &Map<String, Value>, binary: &'a [Bytes]) -> Option<&'a Bytes> {
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    binary.get(usize::try_from(map.get("num")?.as_u64()?).ok()?)
}

/// A length header: the fix form below `fix_limit` (when `fix` is non-zero), then the 8-,
/// 16- and 32-bit forms (`wide[0]` zero: no 8-bit form, as for arrays and maps).
fn put_len(out: &mut BytesMut, n: usize, fix: u8, fix_limit: usize, wide: [u8; 3]) {
    if fix != 0 && n < fix_limit {
        out.put_u8(fix | n as u8);
    } else if wide[0] != 0 && n < 0x100 {
        out.put_u8(wide[0]);
        out.put_u8(n as u8);
    } else if n < 0x10000 {
        out.put_u8(wide[1]);
        out.put_u16(n as u16);
    } else {
        out.put_u8(wide[2]);
        out.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

pub(crate) fn put_uint(out: &mut BytesMut, u: u64) {
    if u < 0x80 {
        out.put_u8(u as u8);
    } else if u < 0x100 {
        out.put_u8(0xcc);
        out.put_u8(u as u8);
    } else if u < 0x10000 {
        out.put_u8(0xcd);
        out.put_u16(u as u16);
    } else if u < 0x1_0000_0000 {
        out.put_u8(0xce);
        out.put_u32(u as u32);
    } else {
        out.put_u8(0xcf);
        out.put_u64(u);
    }
}

fn put_int(out: &mut BytesMut, i: i64) {
    if i >= 0 {
        put_uint(out, i as u64);
    } else if i >= -0x20 {
        out.put_u8(i as u8);
    } else if i >= -0x80 {
        out.put_u8(0xd0);
        out.put_u8(i as u8);
    } else if i >= -0x8000 {
        out.put_u8(0xd1);
        out.put_u16(i as u16);
    } else if i >= -0x8000_0000 {
        out.put_u8(0xd2);
        out.put_u32(i as u32);
    } else {
        out.put_u8(0xd3);
        out.put_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(b: &[u8]) -> Result<Decoded, MsgpackError> {
        decode(&Bytes::copy_from_slice(b), 100)
    }

    #[test]
    fn literal_messages() {
        // [uid, {type: 2, data: ["ev", <bin 01 02>], nsp: "/"}, {rooms: ["r"], except: [], flags: {}}]
        let wire = b"\x93\xa3uid\x83\xa4type\x02\xa4data\x92\xa2ev\xc4\x02\x01\x02\xa3nsp\xa1/\
                     \x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80";
        let d = dec(wire).unwrap();
        assert_eq!(
            d.value,
            json!(["uid", {"type": 2, "data": ["ev", {"_placeholder": true, "num": 0}], "nsp": "/"},
                   {"rooms": ["r"], "except": [], "flags": {}}])
        );
        assert_eq!(d.binary, vec![Bytes::from_static(b"\x01\x02")]);
        let mut back = BytesMut::new();
        encode(&mut back, &d.value, &d.binary);
        assert_eq!(&back[..], &wire[..]);
    }

    #[test]
    fn undefined_dates_and_numbers_as_javascript_reads_them() {
        // old-style undefined (fixext 1, type 0): null in an array, dropped in a map
        assert_eq!(dec(b"\x92\xd4\x00\x00\x01").unwrap().value, json!([null, 1]));
        assert_eq!(dec(b"\x82\xa1a\xd4\x00\x00\xa1b\x01").unwrap().value, json!({"b": 1}));
        // timestamps 32 and 64: Date.toJSON strings
        assert_eq!(
            dec(b"\xd6\xff\x00\x00\x00\x00").unwrap().value,
            json!("1970-01-01T00:00:00.000Z")
        );
        let ms_1733040000123 = b"\xd7\xff\x1d\x53\x53\x00\x67\x4c\x17\x80";
        assert_eq!(dec(ms_1733040000123).unwrap().value, json!("2024-12-01T08:00:00.123Z"));
        // float 64 integral -> integer; -0 -> 0; Infinity -> null; uint 64 past 2^53 rounded
        assert_eq!(dec(b"\xcb\x40\x59\x00\x00\x00\x00\x00\x00").unwrap().value, json!(100));
        assert_eq!(dec(b"\xcb\x80\x00\x00\x00\x00\x00\x00\x00").unwrap().value, json!(0));
        assert_eq!(dec(b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00").unwrap().value, json!(null));
        assert_eq!(
            dec(b"\xcf\x00\x20\x00\x00\x00\x00\x00\x01").unwrap().value,
            json!(9007199254740992u64)
        );
        assert_eq!(dec(b"\xe0").unwrap().value, json!(-32));
        assert_eq!(dec(b"\xd0\x80").unwrap().value, json!(-128));
    }

    #[test]
    fn bad_input_is_a_named_error() {
        use MsgpackError as E;
        assert_eq!(dec(b""), Err(E::Truncated));
        assert_eq!(dec(b"\x92\x01"), Err(E::Truncated));
        assert_eq!(dec(b"\xdb\xff\xff\xff\xff"), Err(E::Truncated));
        assert_eq!(dec(b"\xc1"), Err(E::Unsupported(0xc1)));
        assert_eq!(dec(b"\xa2\xff\xfe"), Err(E::Invalid));
        assert_eq!(dec(b"\x81\x01\x02"), Err(E::Invalid), "map key not a string");
        assert_eq!(dec(b"\x01\x02"), Err(E::Trailing));
        assert_eq!(dec(b"\xd5\x07\x00\x00"), Err(E::Unsupported(0xc7)));
        // a length announcing 4 billion items reserves nothing it was not sent
        assert_eq!(dec(b"\xdd\xff\xff\xff\xff\x01"), Err(E::Truncated));
        // nesting: refused as it opens, without recursion
        let deep = vec![0x91u8; 100_000];
        assert_eq!(dec(&deep), Err(E::TooDeep { limit: 100 }));
        assert!(dec(&[&[0x91u8; 99][..], &[0x90]].concat()).is_ok());
    }

    #[test]
    fn a_repeated_key_drops_the_binary_it_replaced() {
        // {"a": <bin 01>, "b": <bin 02>, "a": 1}: only the 02 part is left, renumbered
        let d = dec(b"\x83\xa1a\xc4\x01\x01\xa1b\xc4\x01\x02\xa1a\x01").unwrap();
        assert_eq!(d.value, json!({"a": 1, "b": {"_placeholder": true, "num": 0}}));
        assert_eq!(d.binary, vec![Bytes::from_static(b"\x02")]);
        // found by the fuzz target (fuzz/fuzz_targets/msgpack.rs): "data" given twice
        let crash = b"\x93\xa3uid\x83\xa4type\x02\xa4data\x92\xa2ev\xc4\x02e\x02\xa4datas\x80";
        let d = dec(crash).unwrap();
        assert!(d.binary.is_empty());
        let mut back = BytesMut::new();
        encode(&mut back, &d.value, &d.binary);
        assert_eq!(dec(&back).unwrap(), d);
    }

    #[test]
    fn a_repeated_key_with_binary_keeps_its_first_place_and_the_parts_follow_the_value() {
        // {"a": "x", "b": <bin 01>, "a": <bin 02>}: "a" stays first, so its part is part 0.
        let d = dec(b"\x83\xa1a\xa1x\xa1b\xc4\x01\x01\xa1a\xc4\x01\x02").unwrap();
        assert_eq!(
            d.value,
            json!({"a": {"_placeholder": true, "num": 0}, "b": {"_placeholder": true, "num": 1}})
        );
        assert_eq!(d.binary, vec![Bytes::from_static(b"\x02"), Bytes::from_static(b"\x01")]);
        // Found by the fuzz target in CI (fuzz/fuzz_targets/msgpack.rs): nested maps with a
        // repeated key whose second value is binary; encoding it back and decoding gave
        // other part numbers.
        let crash: &[u8] = &[
            150, 163, 117, 110, 100, 131, 162, 101, 118, 196, 2, 1, 2, 163, 110, 104, 118, 196, 2,
            1, 150, 163, 117, 110, 100, 131, 162, 101, 118, 163, 117, 110, 2, 163, 110, 101, 118,
            196, 2, 1, 150, 162, 101, 118, 196, 2, 1, 2, 163, 110, 111, 109, 103, 115, 128,
        ];
        let d = dec(crash).unwrap();
        let mut back = BytesMut::new();
        encode(&mut back, &d.value, &d.binary);
        assert_eq!(dec(&back).unwrap(), d);
    }

    #[test]
    fn prefixes_never_panic_and_never_decode_to_the_whole() {
        let wire = b"\x93\xa3uid\x82\xa4data\x92\xa2ev\xc4\x02\x01\x02\xa3big\xcf\x00\x00\x00\x01\x00\x00\x00\x00\x81\xa5flags\xd6\xff\x00\x00\x00\x01";
        let whole = dec(wire).unwrap();
        for i in 0..wire.len() {
            if let Ok(d) = dec(&wire[..i]) {
                assert_ne!(d, whole);
            }
        }
    }
}

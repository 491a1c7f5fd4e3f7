//! JSON as JavaScript reads and writes it: the decoder for every JSON payload a client sends
//! (event and ack arguments, CONNECT auth, binary placeholders) and the writer for every one
//! we send.
//!
//! Socket.IO payloads are JavaScript values, so this follows `JSON.parse` and
//! `JSON.stringify`, not Rust's stricter ideas of a string or a number:
//! - **Lone surrogates.** `"\ud83d"` (half an emoji, what `JSON.stringify` writes for
//!   `"😀".slice(0, 1)`) decodes without error. A Rust `String` cannot hold it, so the
//!   value a handler sees has U+FFFD in its place, and the top-level array element that held
//!   it keeps its text as the client wrote it ([`Verbatim`]), so relaying or echoing the
//!   argument sends the client's escape back byte for byte.
//! - **Depth.** Nesting is bounded by a limit (`max_json_depth`), checked as containers open,
//!   by a parser that does not recurse: 100,000 `[` cost a named error, not a stack.
//! - **Numbers are JavaScript numbers** (IEEE doubles, read with correct rounding):
//!   `1e999999` is Infinity, which no JSON can carry, so it arrives as `null` (what
//!   `JSON.stringify` writes for it); integers beyond 2^53 are rounded as `JSON.parse` rounds
//!   them; `-0` arrives as `0`. An integral value within ±2^53 is held as an integer (`u64` /
//!   `i64`), any other as `f64`, and the writer prints numbers as JavaScript's
//!   `Number.prototype.toString` does (`1e+21`, `1.5e-7`, `0.000001`, `100`).
//!
//! Hand-written rather than `serde_json::from_slice`: serde_json recurses per level (it
//! either refuses past 128 or, unbounded, can overflow a shard's stack), rejects lone
//! surrogates and out-of-range numbers, and cannot report where a top-level element starts
//! and ends, which the verbatim copy needs. The values it builds are `serde_json::Value`, so
//! handlers keep serde's `Deserialize` for their own types.

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Number, Value};

/// Why a JSON payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON (what `JSON.parse` would throw a `SyntaxError` for).
    #[error("invalid JSON")]
    Syntax,
    /// Arrays and objects nested deeper than the limit.
    #[error("JSON nested deeper than {limit} levels (max_json_depth)")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// Something other than whitespace follows the value.
    #[error("trailing data after JSON")]
    Trailing,
}

/// The JSON text of the top-level array elements that held a lone surrogate, as they are to
/// be written again: the client's strings byte for byte (escapes included), numbers as
/// JavaScript writes them, no whitespace. When the value is not an array, entry 0 is the
/// whole value. Empty (no allocation) for every other payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verbatim(Vec<(usize, Box<str>)>);

impl Verbatim {
    /// Element `i` written as `text`.
    pub(crate) fn entry(i: usize, text: Box<str>) -> Verbatim {
        Verbatim(vec![(i, text)])
    }

    /// True when no element needs its own text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text of element `i`, when it has one.
    pub fn get(&self, i: usize) -> Option<&str> {
        // Sorted by index and almost always empty or one long.
        self.0.iter().find(|(at, _)| *at == i).map(|(_, s)| &**s)
    }

    /// Drops the entries of the first `n` elements and renumbers the rest, as removing the
    /// first `n` elements of the array does.
    pub fn skip(&mut self, n: usize) {
        if n == 0 || self.0.is_empty() {
            return;
        }
        self.0.retain(|(at, _)| *at >= n);
        for (at, _) in &mut self.0 {
            *at -= n;
        }
    }
}

/// A decoded payload: its value, and the verbatim text of top-level array elements that
/// held a lone surrogate.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The value, lone surrogates replaced by U+FFFD.
    pub value: Value,
    /// The elements of a top-level array to write from their text rather than from `value`.
    pub verbatim: Verbatim,
}

/// Decodes one JSON value (whitespace may surround it) with arrays and objects nested at
/// most `max_depth` deep (the value `[[1]]` is 2 deep).
pub fn parse(input: &str, max_depth: usize) -> Result<Parsed, JsonError> {
    let mut p = Parser { s: input, b: input.as_bytes(), i: 0, lone: false };
    let mut stack: Vec<Open> = Vec::new();
    let mut verbatim = Verbatim::default();
    // Byte offset where the current element of a top-level array starts.
    let mut elem_start = 0;
    p.ws();
    let value = 'value: loop {
        if stack.len() == 1 && matches!(stack.first(), Some(Open::Array(_))) {
            elem_start = p.i;
            p.lone = false;
        }
        let mut v = match p.peek() {
            Some(c @ (b'[' | b'{')) => {
                if stack.len() >= max_depth {
                    return Err(JsonError::TooDeep { limit: max_depth });
                }
                p.i += 1;
                p.ws();
                if c == b'[' {
                    if p.eat(b']') {
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Open::Array(Vec::new()));
                        continue 'value;
                    }
                } else if p.eat(b'}') {
                    Value::Object(Map::new())
                } else {
                    let key = p.key()?;
                    stack.push(Open::Object(Map::new(), key));
                    continue 'value;
                }
            }
            Some(b'"') => Value::String(p.string()?),
            Some(b'-' | b'0'..=b'9') => p.number()?,
            Some(b't') => p.literal("true", Value::Bool(true))?,
            Some(b'f') => p.literal("false", Value::Bool(false))?,
            Some(b'n') => p.literal("null", Value::Null)?,
            _ => return Err(JsonError::Syntax),
        };
        // `v` is complete: put it in its container, and close the containers that end here.
        loop {
            let at_top = stack.len() == 1;
            let Some(top) = stack.last_mut() else { break 'value v };
            p.ws();
            match top {
                Open::Array(items) => {
                    if at_top && p.lone {
                        let text = input.get(elem_start..p.i).ok_or(JsonError::Syntax)?;
                        verbatim.0.push((items.len(), copy_verbatim(text)));
                    }
                    items.push(v);
                    if p.eat(b',') {
                        p.ws();
                        continue 'value;
                    }
                    if !p.eat(b']') {
                        return Err(JsonError::Syntax);
                    }
                }
                Open::Object(map, key) => {
                    map.insert(std::mem::take(key), v);
                    if p.eat(b',') {
                        p.ws();
                        *key = p.key()?;
                        continue 'value;
                    }
                    if !p.eat(b'}') {
                        return Err(JsonError::Syntax);
                    }
                }
            }
            v = match stack.pop() {
                Some(Open::Array(items)) => Value::Array(items),
                Some(Open::Object(map, _)) => Value::Object(map),
                // `top` was there.
                None => return Err(JsonError::Syntax),
            };
        }
    };
    p.ws();
    if p.i != p.b.len() {
        return Err(JsonError::Trailing);
    }
    if p.lone && !value.is_array() {
        verbatim.0.push((0, copy_verbatim(input)));
    }
    Ok(Parsed { value, verbatim })
}

/// An array or object still open.
enum Open {
    Array(Vec<Value>),
    /// The map so far and the key whose value is being read.
    Object(Map<String, Value>, String),
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Set when a string held a lone surrogate (reset per top-level array element).
    lone: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// JSON whitespace only (what `JSON.parse` skips).
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, JsonError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(JsonError::Syntax)
        }
    }

    /// `"key"` then `:`, with the whitespace around the colon.
    fn key(&mut self) -> Result<String, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(JsonError::Syntax);
        }
        let key = self.string()?;
        self.ws();
        if !self.eat(b':') {
            return Err(JsonError::Syntax);
        }
        self.ws();
        Ok(key)
    }

    /// A string literal starting at the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let start = self.i;
        // The common case: no escape. Control characters are not allowed unescaped.
        loop {
            match self.peek() {
                Some(b'"') => {
                    let s = self.s.get(start..self.i).ok_or(JsonError::Syntax)?;
                    self.i += 1;
                    return Ok(s.to_owned());
                }
                Some(b'\\') => break,
                Some(c) if c >= 0x20 => self.i += 1,
                _ => return Err(JsonError::Syntax),
            }
        }
        let mut out = String::with_capacity(self.i - start + 16);
        let mut chunk = start;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(self.s.get(chunk..self.i).ok_or(JsonError::Syntax)?);
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.s.get(chunk..self.i).ok_or(JsonError::Syntax)?);
                    self.i += 1;
                    self.escape(&mut out)?;
                    chunk = self.i;
                }
                Some(c) if c >= 0x20 => self.i += 1,
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let c = self.peek().ok_or(JsonError::Syntax)?;
        self.i += 1;
        out.push(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate pairs only with an escaped low one right after it.
                        let low = self.b.get(self.i..self.i + 2) == Some(b"\\u");
                        let pair = if low { self.peek_hex4(self.i + 2) } else { None };
                        match pair {
                            Some(lo @ 0xDC00..=0xDFFF) => {
                                self.i += 6;
                                let cp = 0x10000 + ((unit - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(cp).ok_or(JsonError::Syntax)?
                            }
                            _ => {
                                self.lone = true;
                                char::REPLACEMENT_CHARACTER
                            }
                        }
                    }
                    0xDC00..=0xDFFF => {
                        self.lone = true;
                        char::REPLACEMENT_CHARACTER
                    }
                    _ => char::from_u32(unit).ok_or(JsonError::Syntax)?,
                }
            }
            _ => return Err(JsonError::Syntax),
        });
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let v = self.peek_hex4(self.i).ok_or(JsonError::Syntax)?;
        self.i += 4;
        Ok(v)
    }

    fn peek_hex4(&self, at: usize) -> Option<u32> {
        let digits = self.b.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
    }

    /// A number token (the JSON grammar exactly), as the JavaScript number it reads as.
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let negative = self.eat(b'-');
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Syntax),
        }
        let int_len = self.i - int_start;
        let mut integral = true;
        if self.eat(b'.') {
            integral = false;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Syntax);
            }
            self.digits();
        }
        // Up to 15 digits is below 2^53: exact as an integer, and the same as JS reads it.
        if integral && int_len <= 15 {
            let n = self.b[int_start..self.i]
                .iter()
                .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
            return Ok(match (negative, n) {
                (false, n) | (true, n @ 0) => Value::from(n),
                (true, n) => Value::from(-(n as i64)),
            });
        }
        let token = self.s.get(start..self.i).ok_or(JsonError::Syntax)?;
        Ok(js_number(token.parse::<f64>().map_err(|_| JsonError::Syntax)?))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }
}

/// 2^53: integers up to this are exact in a double.
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

/// A JavaScript number as a JSON value: integral values within ±2^53 as integers (so
/// handlers can read them as integers), others as `f64`; non-finite ones (which JSON cannot
/// hold) as `null`, what `JSON.stringify` writes for them.
pub(crate) fn js_number(f: f64) -> Value {
    if !f.is_finite() {
        Value::Null
    } else if f.fract() == 0.0 && f.abs() <= MAX_SAFE {
        // `as` is exact here; -0.0 becomes 0.
        if f >= 0.0 {
            Value::from(f as u64)
        } else {
            Value::from(f as i64)
        }
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// The text to re-emit for one already validated element: strings copied byte for byte,
/// numbers as JavaScript writes them, whitespace dropped. Iterative, like the parser.
fn copy_verbatim(elem: &str) -> Box<str> {
    let b = elem.as_bytes();
    let mut out = BytesMut::with_capacity(elem.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while let Some(&c) = b.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                out.extend_from_slice(&b[start..i.min(b.len())]);
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while matches!(b.get(i), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    i += 1;
                }
                let n = elem.get(start..i).and_then(|t| t.parse::<f64>().ok());
                write_value(&mut out, &n.map_or(Value::Null, js_number));
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                out.put_u8(c);
                i += 1;
            }
        }
    }
    // Only ASCII was added to what was copied from a `str` at ASCII boundaries.
    String::from_utf8(out.to_vec()).unwrap_or_default().into_boxed_str()
}

/// Appends `v` as `JSON.stringify` writes it (numbers in JavaScript's form).
pub fn write_value(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => put_json_str(out, s),
        Value::Array(items) => {
            out.put_u8(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                write_value(out, item);
            }
            out.put_u8(b']');
        }
        Value::Object(map) => {
            out.put_u8(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                put_json_str(out, k);
                out.put_u8(b':');
                write_value(out, item);
            }
            out.put_u8(b'}');
        }
    }
}

/// Appends the elements of `items` separated by commas, element `i` from `verbatim` when it
/// has text there.
pub fn write_elements(out: &mut BytesMut, items: &[Value], verbatim: &Verbatim) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        match verbatim.get(i) {
            Some(text) => out.extend_from_slice(text.as_bytes()),
            None => write_value(out, item),
        }
    }
}

fn write_number(out: &mut BytesMut, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else if let Some(f) = n.as_f64() {
        put_js_f64(out, f);
    }
}

/// Appends `f` as JavaScript's `Number.prototype.toString` writes it (ECMA-262
/// Number::toString: the shortest digits that read back as `f`, positional notation for
/// exponents from -6 to 20, `e+N` / `e-N` beyond). Non-finite values are `null`, as in
/// `JSON.stringify`.
pub fn put_js_f64(out: &mut BytesMut, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if f == 0.0 {
        out.put_u8(b'0');
        return;
    }
    // ryu gives the shortest round-tripping digits; only their layout can differ from JS.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    // Fast path: ryu's positional form (no exponent) covers decimal exponents -5..=16, all
    // inside the range JS writes positionally, with the same digits; JS drops a ".0".
    if !text.contains('e') {
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
        return;
    }
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: smallvec::SmallVec<[u8; 24]> =
        int_part.bytes().chain(frac_part.bytes()).collect();
    let lead = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..lead);
    let trail = digits.iter().rev().take_while(|&&d| d == b'0').count();
    digits.truncate(digits.len() - trail);
    // value = digits × 10^(n - k), as ECMA-262 names them.
    let k = digits.len() as i32;
    let n = k + exp - frac_part.len() as i32 + trail as i32;
    if negative {
        out.put_u8(b'-');
    }
    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(n as usize);
        out.extend_from_slice(a);
        out.put_u8(b'.');
        out.extend_from_slice(b);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
        out.extend_from_slice(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.extend_from_slice(first);
        if !rest.is_empty() {
            out.put_u8(b'.');
            out.extend_from_slice(rest);
        }
        let e = n - 1;
        out.put_u8(b'e');
        out.put_u8(if e < 0 { b'-' } else { b'+' });
        out.extend_from_slice(itoa::Buffer::new().format(e.unsigned_abs()).as_bytes());
    }
}

/// Appends `s` as a JSON string literal, escaped as `JSON.stringify` escapes it.
pub fn put_json_str(out: &mut BytesMut, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.put_u8(b'"');
        out.extend_from_slice(s.as_bytes());
        out.put_u8(b'"');
    } else {
        // Writing to a BytesMut cannot fail, and a &str always serialises; serde_json
        // escapes exactly the characters JSON.stringify does, with the same short forms.
        let _ = serde_json::to_writer((&mut *out).writer(), s);
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;

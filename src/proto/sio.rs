//! Socket.IO v5 codec: packet decode/encode, fast broadcast encoders and
//! binary attachment reassembly.
//!
//! Wire format: `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`, carried as
//! the data of an Engine.IO message (`'4'`). Facts from socket.io-parser v4
//! (protocol 5) that this codec follows:
//! - the namespace is present only when the byte after the type/attachments
//!   is `'/'`; it runs to the first `','` (consumed) or to the end, so
//!   `0/admin` and `0/admin,` both mean `/admin`; anything else means `/`;
//! - the ack id is the run of digits after the namespace (we parse it as a
//!   `u64` and reject overflow; JS would silently lose precision);
//! - binary types carry `N-` with `N >= 1`, and the decoder caps `N` with
//!   `maxAttachments` (default 10) -> "too many attachments";
//! - data validity (`isPayloadValid`), checked only when data is present:
//!   CONNECT object; DISCONNECT none; CONNECT_ERROR string or object;
//!   EVENT / BINARY_EVENT array whose first element is a number or a string
//!   that is not a reserved event name; ACK / BINARY_ACK array.
//!
//! Where we are stricter than the reference: EVENT / ACK / CONNECT_ERROR
//! without data, and ACK without an id, are rejected (the reference decoder
//! lets them through, its encoder-side `isPacketValid` does not); trailing
//! bytes after the JSON are `TrailingData` (JSON.parse also fails on them);
//! digits are ASCII digits only (JS `Number()` coercion also takes spaces).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::eio::put_u64;
use super::json::{self, put_json_str, JsonError, Verbatim};

/// Socket.IO packet type, the first byte of a packet (`'0'..='6'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `'0'`: connect to a namespace (client) / connected (server).
    Connect,
    /// `'1'`: leave a namespace.
    Disconnect,
    /// `'2'`: an event, `[name, ...args]`.
    Event,
    /// `'3'`: an acknowledgement, `[...args]`.
    Ack,
    /// `'4'`: namespace connection refused.
    ConnectError,
    /// `'5'`: an event with binary attachments.
    BinaryEvent,
    /// `'6'`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The type for a wire byte, if it is one.
    pub fn from_byte(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The wire byte (`b'0'..=b'6'`).
    pub fn as_byte(self) -> u8 {
        match self {
            PacketType::Connect => b'0',
            PacketType::Disconnect => b'1',
            PacketType::Event => b'2',
            PacketType::Ack => b'3',
            PacketType::ConnectError => b'4',
            PacketType::BinaryEvent => b'5',
            PacketType::BinaryAck => b'6',
        }
    }

    /// True for the types that carry binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// Why a Socket.IO packet was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet has no bytes.
    #[error("empty socket.io packet")]
    Empty,
    /// The first byte is not a packet type.
    #[error("unknown socket.io packet type {0:#04x}")]
    UnknownType(u8),
    /// The `N-` attachment count of a binary packet is missing, malformed or 0.
    #[error("invalid socket.io attachment count")]
    InvalidAttachments,
    /// The attachment count is above the configured maximum.
    #[error("too many socket.io attachments (limit {limit})")]
    TooManyAttachments {
        /// The configured maximum.
        limit: usize,
    },
    /// The namespace is not valid UTF-8.
    #[error("invalid socket.io namespace")]
    InvalidNamespace,
    /// The ack id does not fit in a `u64`.
    #[error("invalid socket.io ack id")]
    InvalidAckId,
    /// An ACK / BINARY_ACK without an ack id.
    #[error("socket.io ack packet without an ack id")]
    MissingAckId,
    /// The data is not valid JSON.
    #[error("invalid JSON in socket.io packet")]
    InvalidJson,
    /// The data nests arrays and objects deeper than the configured limit.
    #[error("socket.io packet JSON nested deeper than {limit} levels (max_json_depth)")]
    JsonTooDeep {
        /// The configured maximum (`max_json_depth`).
        limit: usize,
    },
    /// Bytes follow the JSON data.
    #[error("trailing data after socket.io packet JSON")]
    TrailingData,
    /// The data has the wrong shape for the packet type (or names a reserved event).
    #[error("invalid payload for socket.io packet type")]
    InvalidPayload,
    /// A `{"_placeholder":true}` object whose `num` is not an attachment index.
    #[error("invalid socket.io binary placeholder")]
    InvalidPlaceholder,
    /// A MessagePack packet (`Parser::MsgPack`) that is not MessagePack.
    #[error("invalid MessagePack in socket.io packet: {0}")]
    Msgpack(#[from] super::msgpack::MsgpackError),
    /// A MessagePack packet that is not a map with a `type` from 0 to 4.
    #[error("invalid socket.io packet type")]
    InvalidPacketType,
    /// A binary packet got a different number of attachments than announced.
    #[error("expected {expected} socket.io attachments, got {received}")]
    AttachmentCount {
        /// Attachments announced by the header.
        expected: usize,
        /// Attachments actually received.
        received: usize,
    },
}

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Packet type.
    pub kind: PacketType,
    /// Namespace; `"/"` when absent on the wire. Must not contain `','`.
    pub nsp: String,
    /// Ack id.
    pub id: Option<u64>,
    /// JSON data.
    pub data: Option<Value>,
    /// Number of binary attachments; only for binary types. The data keeps
    /// its `{"_placeholder":true,"num":N}` objects in place.
    pub attachments: usize,
    /// When the data is an array: the elements that held a lone surrogate, as the client
    /// wrote them (see [`json`]). Empty otherwise, and for packets built here.
    pub verbatim: Verbatim,
}

/// Limits the decoder enforces on what a peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most binary attachments one packet may announce (socket.io-parser's
    /// `maxAttachments`).
    pub max_attachments: usize,
    /// Deepest nesting of arrays and objects in the data (the data array itself is 1).
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_attachments: 10, max_json_depth: 1000 }
    }
}

impl Packet {
    /// A packet with no verbatim elements (everything this server builds).
    pub fn new(
        kind: PacketType,
        nsp: impl Into<String>,
        id: Option<u64>,
        data: Option<Value>,
    ) -> Packet {
        Packet { kind, nsp: nsp.into(), id, data, attachments: 0, verbatim: Verbatim::default() }
    }

    /// Decodes a Socket.IO packet (the Engine.IO message data, without the
    /// `'4'`). Binary types with more than `limits.max_attachments` attachments fail, and so
    /// does data nested deeper than `limits.max_json_depth`.
    pub fn decode(text: &[u8], limits: Limits) -> Result<Packet, DecodeError> {
        let max_attachments = limits.max_attachments;
        let (&first, mut rest) = text.split_first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_byte(first).ok_or(DecodeError::UnknownType(first))?;

        let mut attachments = 0;
        if kind.is_binary() {
            let (digits, tail) = split_digits(rest);
            rest = match tail.split_first() {
                Some((b'-', tail)) if !digits.is_empty() => tail,
                _ => return Err(DecodeError::InvalidAttachments),
            };
            attachments = match parse_u64(digits).map(usize::try_from) {
                Some(Ok(0)) => return Err(DecodeError::InvalidAttachments),
                Some(Ok(n)) if n <= max_attachments => n,
                _ => return Err(DecodeError::TooManyAttachments { limit: max_attachments }),
            };
        }

        let nsp = if rest.first() == Some(&b'/') {
            let (nsp, tail) = match rest.iter().position(|&b| b == b',') {
                Some(comma) => {
                    let (nsp, tail) = rest.split_at(comma);
                    (nsp, tail.get(1..).unwrap_or_default())
                }
                None => (rest, &[][..]),
            };
            rest = tail;
            std::str::from_utf8(nsp).map_err(|_| DecodeError::InvalidNamespace)?.to_owned()
        } else {
            String::from("/")
        };

        let (digits, tail) = split_digits(rest);
        let id = if digits.is_empty() {
            None
        } else {
            Some(parse_u64(digits).ok_or(DecodeError::InvalidAckId)?)
        };
        rest = tail;

        let (data, verbatim) = if rest.is_empty() {
            (None, Verbatim::default())
        } else {
            let text = std::str::from_utf8(rest).map_err(|_| DecodeError::InvalidJson)?;
            let parsed = json::parse(text, limits.max_json_depth).map_err(|e| match e {
                JsonError::Syntax => DecodeError::InvalidJson,
                JsonError::TooDeep { limit } => DecodeError::JsonTooDeep { limit },
                JsonError::Trailing => DecodeError::TrailingData,
            })?;
            (Some(parsed.value), parsed.verbatim)
        };

        if !is_payload_valid(kind, data.as_ref()) {
            return Err(DecodeError::InvalidPayload);
        }
        if id.is_none() && matches!(kind, PacketType::Ack | PacketType::BinaryAck) {
            return Err(DecodeError::MissingAckId);
        }
        Ok(Packet { kind, nsp, id, data, attachments, verbatim })
    }

    /// Appends the wire form: namespace `"/"` omitted, attachments as `N-`.
    pub fn encode(&self, out: &mut BytesMut) {
        put_header(out, self.kind, &self.nsp, self.id, self.attachments);
        match &self.data {
            Some(Value::Array(items)) if !self.verbatim.is_empty() => {
                out.put_u8(b'[');
                json::write_elements(out, items, &self.verbatim);
                out.put_u8(b']');
            }
            Some(data) => match self.verbatim.get(0) {
                Some(text) if !data.is_array() => out.extend_from_slice(text.as_bytes()),
                _ => json::write_value(out, data),
            },
            None => {}
        }
    }

    /// The event name of an EVENT / BINARY_EVENT whose first element is a
    /// string. (The reference also accepts a number there; this gives `None`.)
    pub fn event_name(&self) -> Option<&str> {
        match (&self.kind, &self.data) {
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(a))) => {
                a.first().and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

/// Splits off the leading ASCII digits.
fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

/// Parses ASCII digits; `None` on overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    digits
        .iter()
        .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d.wrapping_sub(b'0'))))
}

/// socket.io-parser's `isPayloadValid`, with data required where the
/// packet is meaningless without it.
pub(crate) fn is_payload_valid(kind: PacketType, data: Option<&Value>) -> bool {
    match kind {
        PacketType::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketType::Disconnect => data.is_none(),
        PacketType::ConnectError => matches!(data, Some(Value::String(_) | Value::Object(_))),
        PacketType::Event | PacketType::BinaryEvent => match data {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(name)) => !is_reserved_event(name),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => matches!(data, Some(Value::Array(_))),
    }
}

/// Writes everything before the JSON data.
fn put_header(
    out: &mut BytesMut,
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
) {
    out.reserve(24 + nsp.len());
    out.put_u8(kind.as_byte());
    if kind.is_binary() {
        put_u64(out, attachments as u64);
        out.put_u8(b'-');
    }
    if !nsp.is_empty() && nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.put_u8(b',');
    }
    if let Some(id) = id {
        put_u64(out, id);
    }
}

/// Writes `[first, args...]` (without `first` when it is `None`), argument `i` from
/// `verbatim` when it has text there.
fn put_array(out: &mut BytesMut, first: Option<&str>, args: &[Value], verbatim: &Verbatim) {
    out.put_u8(b'[');
    if let Some(first) = first {
        put_json_str(out, first);
        if !args.is_empty() {
            out.put_u8(b',');
        }
    }
    json::write_elements(out, args, verbatim);
    out.put_u8(b']');
}

/// Fast path used for broadcasts: writes an EVENT (or BINARY_EVENT when
/// `attachments > 0`) for `event` and `args`, without building a `Value`
/// tree. Same bytes as [`Packet::encode`] of the equivalent packet.
pub fn encode_event(
    out: &mut BytesMut,
    nsp: &str,
    event: &str,
    args: &[Value],
    verbatim: &Verbatim,
    id: Option<u64>,
    attachments: usize,
) {
    encode_event_with_offset(out, nsp, event, args, verbatim, id, attachments, None)
}

/// [`encode_event`] with, when `offset` is set, one more argument after `args`: that string
/// (connection state recovery's offset, which socket.io appends as the last argument).
#[allow(clippy::too_many_arguments)]
pub fn encode_event_with_offset(
    out: &mut BytesMut,
    nsp: &str,
    event: &str,
    args: &[Value],
    verbatim: &Verbatim,
    id: Option<u64>,
    attachments: usize,
    offset: Option<&str>,
) {
    let kind = if attachments > 0 { PacketType::BinaryEvent } else { PacketType::Event };
    put_header(out, kind, nsp, id, attachments);
    put_array(out, Some(event), args, verbatim);
    if let Some(offset) = offset {
        // Before the closing bracket: `["ev",1]` becomes `["ev",1,"<offset>"]`.
        out.truncate(out.len() - 1);
        out.put_u8(b',');
        put_json_str(out, offset);
        out.put_u8(b']');
    }
}

/// Writes an ACK (or BINARY_ACK when `attachments > 0`) for ack `id` with
/// `args`. Same bytes as [`Packet::encode`] of the equivalent packet.
pub fn encode_ack(
    out: &mut BytesMut,
    nsp: &str,
    id: u64,
    args: &[Value],
    verbatim: &Verbatim,
    attachments: usize,
) {
    let kind = if attachments > 0 { PacketType::BinaryAck } else { PacketType::Ack };
    put_header(out, kind, nsp, Some(id), attachments);
    put_array(out, None, args, verbatim);
}

/// True for the names socket.io refuses as event names: `connect`,
/// `connect_error`, `disconnect`, `disconnecting`, `newListener`,
/// `removeListener`. Incoming events with these names are invalid packets.
pub fn is_reserved_event(name: &str) -> bool {
    matches!(
        name,
        "connect"
            | "connect_error"
            | "disconnect"
            | "disconnecting"
            | "newListener"
            | "removeListener"
    )
}

/// The placeholder that stands for attachment `num`: `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::new();
    m.insert("_placeholder".to_owned(), Value::Bool(true));
    m.insert("num".to_owned(), Value::from(num));
    Value::Object(m)
}

/// Whether `m` is a placeholder object (`"_placeholder": true`, as the reference checks).
fn is_placeholder(m: &Map<String, Value>) -> bool {
    matches!(m.get("_placeholder"), Some(Value::Bool(true)))
}

/// Counts the placeholder objects in `v` (not looking inside them).
pub fn count_placeholders(v: &Value) -> usize {
    match v {
        Value::Object(m) if is_placeholder(m) => 1,
        Value::Object(m) => m.values().map(count_placeholders).sum(),
        Value::Array(a) => a.iter().map(count_placeholders).sum(),
        _ => 0,
    }
}

/// Checks that every placeholder in `v` names an attachment below `n`.
fn check_placeholders(v: &Value, n: usize) -> Result<(), DecodeError> {
    match v {
        Value::Object(m) if is_placeholder(m) => match m.get("num").and_then(Value::as_u64) {
            Some(num) if num < n as u64 => Ok(()),
            _ => Err(DecodeError::InvalidPlaceholder),
        },
        Value::Object(m) => m.values().try_for_each(|x| check_placeholders(x, n)),
        Value::Array(a) => a.iter().try_for_each(|x| check_placeholders(x, n)),
        _ => Ok(()),
    }
}

/// Collects the binary attachments that follow a BINARY_EVENT / BINARY_ACK header.
#[derive(Debug)]
pub struct Reassembler {
    packet: Packet,
    buffers: Vec<Bytes>,
}

impl Reassembler {
    /// Starts collecting for `packet` (whose `attachments` should be > 0).
    pub fn new(packet: Packet) -> Self {
        // `attachments` was capped by `decode`; the cap here guards hand-built packets.
        let buffers = Vec::with_capacity(packet.attachments.min(16));
        Reassembler { packet, buffers }
    }

    #[cfg(test)]
    fn push_all(mut self, bins: impl IntoIterator<Item = Bytes>) -> Self {
        for b in bins {
            self.push(b);
        }
        self
    }

    /// Adds the next attachment; true once all announced attachments arrived.
    pub fn push(&mut self, bin: Bytes) -> bool {
        self.buffers.push(bin);
        self.buffers.len() >= self.packet.attachments
    }

    /// Attachments announced by the header.
    pub fn expected(&self) -> usize {
        self.packet.attachments
    }

    /// Attachments received so far.
    pub fn received(&self) -> usize {
        self.buffers.len()
    }

    /// The packet (placeholders left in place) and its attachments, in order.
    /// Fails unless exactly the announced number arrived and every
    /// placeholder's `num` is an integer below that number.
    pub fn finish(self) -> Result<(Packet, Vec<Bytes>), DecodeError> {
        let expected = self.packet.attachments;
        if self.buffers.len() != expected {
            return Err(DecodeError::AttachmentCount { expected, received: self.buffers.len() });
        }
        if let Some(data) = &self.packet.data {
            check_placeholders(data, expected)?;
        }
        Ok((self.packet, self.buffers))
    }
}

#[cfg(test)]
#[path = "sio_tests.rs"]
mod tests;

/// Keeps the attachments that placeholders in `values` name, renumbered in the order they
/// are met (one copy of an attachment named twice): binary elsewhere in the message (a
/// dropped field) is not carried along. A placeholder naming no attachment stays as it is.
/// Iterative: values may be nested as deep as the decoder's limit.
pub(crate) fn keep_referenced(values: Vec<&mut Value>, binary: &[Bytes]) -> Vec<Bytes> {
    if binary.is_empty() {
        return Vec::new();
    }
    let mut renamed: Vec<Option<usize>> = vec![None; binary.len()];
    let mut kept = Vec::new();
    let mut stack = values;
    stack.reverse();
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) if m.get("_placeholder") == Some(&Value::Bool(true)) => {
                let old =
                    m.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
                let Some((old, bin)) = old.and_then(|n| Some((n, binary.get(n)?))) else {
                    continue;
                };
                let new = match renamed.get(old).copied().flatten() {
                    Some(new) => new,
                    None => {
                        kept.push(bin.clone());
                        if let Some(slot) = renamed.get_mut(old) {
                            *slot = Some(kept.len() - 1);
                        }
                        kept.len() - 1
                    }
                };
                *v = placeholder(new);
            }
            Value::Object(m) => stack.extend(m.values_mut().rev()),
            Value::Array(a) => stack.extend(a.iter_mut().rev()),
            _ => {}
        }
    }
    kept
}

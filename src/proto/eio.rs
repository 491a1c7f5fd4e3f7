//! Engine.IO v4 codec: single packets, HTTP long-polling payloads and the open handshake.
//!
//! Wire facts (engine.io-parser v5, protocol 4):
//! - a packet is one type digit `'0'..='6'` followed by optional text data;
//! - binary data travels as a raw WebSocket binary frame, or, in a polling
//!   payload, as `'b'` + standard base64 (the reference decodes with Node's
//!   lenient `Buffer.from(.., "base64")`; we accept standard base64 with or
//!   without padding and nothing else);
//! - a polling payload joins packets with `\x1e` (ASCII record separator).
//!   The reference splits on every separator and stops at the first bad
//!   packet; we reject the whole body instead.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::json::put_json_str;

/// Separator between packets in a long-polling payload (ASCII "record separator").
pub const SEPARATOR: u8 = 0x1e;

/// Standard alphabet; always pads on encode, accepts both forms on decode.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an Engine.IO packet or payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A packet (frame or payload segment) had no bytes at all.
    #[error("empty engine.io packet")]
    Empty,
    /// A polling POST body had no bytes at all.
    #[error("empty engine.io payload")]
    EmptyPayload,
    /// The first byte is not a known packet type.
    #[error("unknown engine.io packet type {0:#04x}")]
    UnknownType(u8),
    /// A text packet is not valid UTF-8.
    #[error("engine.io text packet is not valid UTF-8")]
    InvalidUtf8,
    /// A `'b'` segment of a polling payload is not valid base64.
    #[error("engine.io binary packet is not valid base64")]
    InvalidBase64,
    /// A packet type that carries no data (close, upgrade, noop) had some.
    #[error("engine.io packet type '{}' must not carry data", char::from(*.0))]
    TrailingData(u8),
    /// A v3 payload's length prefix is not a number, or runs past the body or into the
    /// middle of a character.
    #[error("engine.io v3 payload has a bad length prefix")]
    BadLength,
    /// A v3 binary packet of a type other than message (the type byte is shown).
    #[error("engine.io v3 binary packet of type {0} (only messages carry binary)")]
    BinaryNotMessage(u8),
    /// The payload grew beyond the configured maximum.
    #[error("engine.io payload exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The configured maximum, in bytes.
        limit: usize,
    },
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `'0'` + JSON handshake (server to client).
    Open(Bytes),
    /// `'1'`: close the session.
    Close,
    /// `'2'` + optional payload (`"probe"` during upgrade, else empty).
    Ping(Bytes),
    /// `'3'` + optional payload (`"probe"` during upgrade, else empty).
    Pong(Bytes),
    /// `'4'` + text data; holds the data without the `'4'`.
    Message(Bytes),
    /// A binary message: a WebSocket binary frame, or `'b'` + base64 in polling.
    Binary(Bytes),
    /// `'5'`: the transport upgrade is complete.
    Upgrade,
    /// `'6'`: no-op, used to release a pending poll during upgrade.
    Noop,
}

impl Packet {
    /// Decodes one WebSocket text frame, or one polling segment that is not a
    /// `'b'` (base64 binary) segment; use [`Packet::decode_segment`] for those.
    ///
    /// The data must be valid UTF-8; close, upgrade and noop must be bare.
    pub fn decode_text(mut frame: Bytes) -> Result<Packet, DecodeError> {
        let Some(&kind) = frame.first() else {
            return Err(DecodeError::Empty);
        };
        let bare = frame.len() == 1;
        let with_data: fn(Bytes) -> Packet = match kind {
            b'0' => Packet::Open,
            b'2' => Packet::Ping,
            b'3' => Packet::Pong,
            b'4' => Packet::Message,
            b'1' if bare => return Ok(Packet::Close),
            b'5' if bare => return Ok(Packet::Upgrade),
            b'6' if bare => return Ok(Packet::Noop),
            b'1' | b'5' | b'6' => return Err(DecodeError::TrailingData(kind)),
            _ => return Err(DecodeError::UnknownType(kind)),
        };
        // Cannot panic: the type byte is there.
        frame.advance(1);
        if std::str::from_utf8(&frame).is_err() {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(with_data(frame))
    }

    /// Decodes one polling payload segment: `'b'` + base64 becomes
    /// [`Packet::Binary`], anything else goes through [`Packet::decode_text`].
    pub fn decode_segment(segment: Bytes) -> Result<Packet, DecodeError> {
        match segment.split_first() {
            Some((b'b', b64)) => BASE64
                .decode(b64)
                .map(|v| Packet::Binary(Bytes::from(v)))
                .map_err(|_| DecodeError::InvalidBase64),
            _ => Packet::decode_text(segment),
        }
    }

    /// Wraps one WebSocket binary frame; every binary frame is a message.
    pub fn decode_binary(frame: Bytes) -> Packet {
        Packet::Binary(frame)
    }

    /// Appends the text form (`"4hello"`, `"2probe"`, `"1"`, ...). A
    /// [`Packet::Binary`] is written in polling form: `'b'` + standard base64.
    pub fn encode_text(&self, out: &mut BytesMut) {
        let (kind, data) = match self {
            Packet::Open(d) => (b'0', d.as_ref()),
            Packet::Close => (b'1', &[][..]),
            Packet::Ping(d) => (b'2', d.as_ref()),
            Packet::Pong(d) => (b'3', d.as_ref()),
            Packet::Message(d) => (b'4', d.as_ref()),
            Packet::Upgrade => (b'5', &[][..]),
            Packet::Noop => (b'6', &[][..]),
            Packet::Binary(d) => {
                out.put_u8(b'b');
                put_base64(out, d);
                return;
            }
        };
        out.reserve(1 + data.len());
        out.put_u8(kind);
        out.extend_from_slice(data);
    }
}

/// Appends `data` as padded standard base64.
pub(crate) fn put_base64(out: &mut BytesMut, data: &[u8]) {
    let start = out.len();
    let Some(len) = base64::encoded_len(data.len(), true) else {
        return; // more than usize::MAX output bytes: cannot be allocated anyway
    };
    out.resize(start + len, 0);
    let written =
        out.get_mut(start..).and_then(|dst| BASE64.encode_slice(data, dst).ok()).unwrap_or(0);
    out.truncate(start + written);
}

/// The handshake sent as the first packet of every session.
#[derive(Debug, Clone, Copy)]
pub struct OpenPacket<'a> {
    /// Session id.
    pub sid: &'a str,
    /// Transports the client may upgrade to (e.g. `["websocket"]`).
    pub upgrades: &'a [&'a str],
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest payload, in bytes, the server accepts.
    pub max_payload: u64,
}

impl OpenPacket<'_> {
    /// Appends `0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(96 + self.sid.len());
        out.extend_from_slice(b"0{\"sid\":");
        put_json_str(out, self.sid);
        out.extend_from_slice(b",\"upgrades\":[");
        for (i, u) in self.upgrades.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            put_json_str(out, u);
        }
        out.extend_from_slice(b"],\"pingInterval\":");
        put_u64(out, self.ping_interval);
        out.extend_from_slice(b",\"pingTimeout\":");
        put_u64(out, self.ping_timeout);
        out.extend_from_slice(b",\"maxPayload\":");
        put_u64(out, self.max_payload);
        out.put_u8(b'}');
    }
}

/// Appends the decimal form of `n` (shared with the Socket.IO codec).
pub(crate) fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Streaming decoder for an HTTP long-polling POST body ("payload"): packets
/// separated by `\x1e`; a segment starting with `'b'` is base64 binary.
///
/// Segments are decoded as soon as their separator arrives. After an error
/// the decoder keeps returning that error.
#[derive(Debug)]
pub struct PayloadDecoder {
    /// Bytes of the current, not yet terminated segment.
    current: BytesMut,
    total: usize,
    max_payload: usize,
    packets: Vec<Packet>,
    error: Option<DecodeError>,
}

impl PayloadDecoder {
    /// A decoder that fails once the body exceeds `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        PayloadDecoder {
            current: BytesMut::new(),
            total: 0,
            max_payload,
            packets: Vec::new(),
            error: None,
        }
    }

    /// Feeds the next chunk of the body, in whatever pieces it arrives.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.total = self.total.saturating_add(chunk.len());
        if self.total > self.max_payload {
            return self.fail(DecodeError::PayloadTooLarge { limit: self.max_payload });
        }
        self.current.reserve(chunk.len());
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == SEPARATOR) {
            let (segment, tail) = rest.split_at(pos);
            self.current.extend_from_slice(segment);
            let segment = self.current.split().freeze();
            self.push_segment(segment)?;
            rest = tail.get(1..).unwrap_or_default();
        }
        self.current.extend_from_slice(rest);
        Ok(())
    }

    /// Ends the body and returns its packets, in order.
    pub fn finish(mut self) -> Result<Vec<Packet>, DecodeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.total == 0 {
            return Err(DecodeError::EmptyPayload);
        }
        let last = self.current.split().freeze();
        self.push_segment(last)?;
        Ok(self.packets)
    }

    fn push_segment(&mut self, segment: Bytes) -> Result<(), DecodeError> {
        match Packet::decode_segment(segment) {
            Ok(p) => {
                self.packets.push(p);
                Ok(())
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: DecodeError) -> Result<(), DecodeError> {
        self.error = Some(e.clone());
        self.current = BytesMut::new();
        self.packets = Vec::new();
        Err(e)
    }
}

/// Builds a polling GET response body from already-encoded packets.
#[derive(Debug, Default)]
pub struct PayloadEncoder {
    buf: BytesMut,
    any: bool,
}

impl PayloadEncoder {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty payload with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        PayloadEncoder { buf: BytesMut::with_capacity(capacity), any: false }
    }

    fn separate(&mut self) {
        if self.any {
            self.buf.put_u8(SEPARATOR);
        }
        self.any = true;
    }

    /// Appends an engine packet already in text form, e.g. `b"42[\"a\"]"` or `b"2"`.
    pub fn push_encoded_text(&mut self, packet: &[u8]) {
        self.separate();
        self.buf.extend_from_slice(packet);
    }

    /// Appends a binary message as `'b'` + standard base64.
    pub fn push_binary(&mut self, data: &[u8]) {
        self.separate();
        self.buf.put_u8(b'b');
        put_base64(&mut self.buf, data);
    }

    /// True when no packet has been pushed.
    pub fn is_empty(&self) -> bool {
        !self.any
    }

    /// Bytes written so far, separators included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The finished body.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Packet, DecodeError> {
        Packet::decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn enc(p: &Packet) -> String {
        let mut out = BytesMut::new();
        p.encode_text(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn decode_each_type() {
        assert_eq!(text("0{\"sid\":\"x\"}"), Ok(Packet::Open(b("{\"sid\":\"x\"}"))));
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping(Bytes::new())));
        assert_eq!(text("2probe"), Ok(Packet::Ping(b("probe"))));
        assert_eq!(text("3probe"), Ok(Packet::Pong(b("probe"))));
        assert_eq!(text("3"), Ok(Packet::Pong(Bytes::new())));
        assert_eq!(text("4hello"), Ok(Packet::Message(b("hello"))));
        assert_eq!(text("4"), Ok(Packet::Message(Bytes::new())));
        assert_eq!(text("4héllo €"), Ok(Packet::Message(b("héllo €"))));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn decode_rejects() {
        assert_eq!(text(""), Err(DecodeError::Empty));
        assert_eq!(text("7"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(text("x4"), Err(DecodeError::UnknownType(b'x')));
        assert_eq!(text("bAAE="), Err(DecodeError::UnknownType(b'b')));
        assert_eq!(text("1x"), Err(DecodeError::TrailingData(b'1')));
        assert_eq!(text("5probe"), Err(DecodeError::TrailingData(b'5')));
        assert_eq!(text("6 "), Err(DecodeError::TrailingData(b'6')));
        let bad = Bytes::from_static(b"4\xff\xfe");
        assert_eq!(Packet::decode_text(bad), Err(DecodeError::InvalidUtf8));
        let bad = Bytes::from_static(b"4\xe2\x82");
        assert_eq!(Packet::decode_text(bad), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn decode_binary_frame() {
        let p = Packet::decode_binary(Bytes::from_static(b"\x00\x01\x02"));
        assert_eq!(p, Packet::Binary(Bytes::from_static(b"\x00\x01\x02")));
    }

    #[test]
    fn decode_segments() {
        let seg = |s: &str| Packet::decode_segment(b(s));
        assert_eq!(seg("bAQID"), Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3]))));
        assert_eq!(seg("bAQI="), Ok(Packet::Binary(Bytes::from_static(&[1, 2]))));
        assert_eq!(seg("bAQI"), Ok(Packet::Binary(Bytes::from_static(&[1, 2]))));
        assert_eq!(seg("b"), Ok(Packet::Binary(Bytes::new())));
        assert_eq!(seg("bAQ-_"), Err(DecodeError::InvalidBase64));
        assert_eq!(seg("bAQID!"), Err(DecodeError::InvalidBase64));
        assert_eq!(seg("4hi"), Ok(Packet::Message(b("hi"))));
        assert_eq!(seg(""), Err(DecodeError::Empty));
    }

    #[test]
    fn encode_each_type() {
        assert_eq!(enc(&Packet::Open(b("{}"))), "0{}");
        assert_eq!(enc(&Packet::Close), "1");
        assert_eq!(enc(&Packet::Ping(Bytes::new())), "2");
        assert_eq!(enc(&Packet::Ping(b("probe"))), "2probe");
        assert_eq!(enc(&Packet::Pong(b("probe"))), "3probe");
        assert_eq!(enc(&Packet::Message(b("hello"))), "4hello");
        assert_eq!(enc(&Packet::Upgrade), "5");
        assert_eq!(enc(&Packet::Noop), "6");
        assert_eq!(enc(&Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))), "bAQIDBA==");
        assert_eq!(enc(&Packet::Binary(Bytes::new())), "b");
    }

    #[test]
    fn text_round_trip() {
        for wire in ["0{}", "1", "2", "2probe", "3probe", "4", "42[\"a\",1]", "5", "6"] {
            let p = text(wire).unwrap();
            assert_eq!(enc(&p), wire);
        }
    }

    #[test]
    fn open_packet() {
        let mut out = BytesMut::new();
        OpenPacket {
            sid: "lv_VI97HAXpY6yYWAAAC",
            upgrades: &["websocket"],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1000000,
        }
        .encode(&mut out);
        assert_eq!(
            &out[..],
            &b"0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}"[..]
        );

        let mut out = BytesMut::new();
        OpenPacket {
            sid: "a\"b",
            upgrades: &[],
            ping_interval: 0,
            ping_timeout: u64::MAX,
            max_payload: 1,
        }
        .encode(&mut out);
        assert_eq!(
            &out[..],
            &b"0{\"sid\":\"a\\\"b\",\"upgrades\":[],\"pingInterval\":0,\"pingTimeout\":18446744073709551615,\"maxPayload\":1}"[..]
        );
    }

    /// Decodes `body` whole, split in two at every offset, and byte by byte;
    /// every way must give the same result, which is returned.
    fn payload(body: &[u8], max: usize) -> Result<Vec<Packet>, DecodeError> {
        let run = |chunks: &[&[u8]]| {
            let mut d = PayloadDecoder::new(max);
            for c in chunks {
                d.feed(c)?;
            }
            d.finish()
        };
        let whole = run(&[body]);
        for i in 0..=body.len() {
            let (a, c) = body.split_at(i);
            assert_eq!(run(&[a, c]), whole, "split at {i}");
            assert_eq!(run(&[a, &[], c]), whole, "split at {i} with empty chunk");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn payload_decode() {
        assert_eq!(
            payload(b"4hello\x1e2\x1ebAQID\x1e4\xc3\xa9", 100),
            Ok(vec![
                Packet::Message(b("hello")),
                Packet::Ping(Bytes::new()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3])),
                Packet::Message(b("é")),
            ])
        );
        assert_eq!(payload(b"1", 100), Ok(vec![Packet::Close]));
        assert_eq!(
            payload(b"42[\"chat\",\"hi\"]\x1e6", 100),
            Ok(vec![Packet::Message(b("2[\"chat\",\"hi\"]")), Packet::Noop])
        );
    }

    #[test]
    fn payload_rejects() {
        assert_eq!(payload(b"", 100), Err(DecodeError::EmptyPayload));
        assert_eq!(payload(b"\x1e", 100), Err(DecodeError::Empty));
        assert_eq!(payload(b"4a\x1e", 100), Err(DecodeError::Empty));
        assert_eq!(payload(b"4a\x1e\x1e4b", 100), Err(DecodeError::Empty));
        assert_eq!(payload(b"4a\x1e9", 100), Err(DecodeError::UnknownType(b'9')));
        assert_eq!(payload(b"4a\x1e1x\x1e4b", 100), Err(DecodeError::TrailingData(b'1')));
        assert_eq!(payload(b"b!!\x1e4a", 100), Err(DecodeError::InvalidBase64));
        assert_eq!(payload(b"4\xc3\x1e4a", 100), Err(DecodeError::InvalidUtf8));
        // a multi-byte character split across chunks is still fine
        assert_eq!(payload(b"4\xe2\x82\xac", 100), Ok(vec![Packet::Message(b("€"))]));
    }

    #[test]
    fn payload_size_limit() {
        assert_eq!(payload(b"4hello", 6), Ok(vec![Packet::Message(b("hello"))]));
        let too_large = Err(DecodeError::PayloadTooLarge { limit: 5 });
        assert_eq!(payload(b"4hello", 5), too_large);
        // reported as soon as the total passes the limit, and sticks
        let mut d = PayloadDecoder::new(5);
        assert_eq!(d.feed(b"4hel"), Ok(()));
        assert_eq!(d.feed(b"lo"), too_large.clone().map(|_| ()));
        assert_eq!(d.feed(b""), too_large.clone().map(|_| ()));
        assert_eq!(d.finish(), too_large);
    }

    #[test]
    fn payload_error_sticks() {
        let mut d = PayloadDecoder::new(100);
        assert_eq!(d.feed(b"7\x1e4a"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(d.feed(b"\x1e4b"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(d.finish(), Err(DecodeError::UnknownType(b'7')));
    }

    #[test]
    fn payload_encode() {
        let mut e = PayloadEncoder::new();
        assert!(e.is_empty());
        assert_eq!(e.len(), 0);
        e.push_encoded_text(b"42[\"a\"]");
        assert!(!e.is_empty());
        e.push_encoded_text(b"2");
        e.push_binary(&[1, 2, 3, 4]);
        e.push_binary(&[]);
        e.push_encoded_text(b"6");
        assert_eq!(e.len(), 23);
        assert_eq!(&e.finish()[..], &b"42[\"a\"]\x1e2\x1ebAQIDBA==\x1eb\x1e6"[..]);

        let mut e = PayloadEncoder::with_capacity(8);
        e.push_encoded_text(b"1");
        assert_eq!(&e.finish()[..], b"1");
        assert_eq!(&PayloadEncoder::new().finish()[..], b"");
    }

    #[test]
    fn payload_round_trip() {
        let packets = vec![
            Packet::Message(b("2[\"x\"]")),
            Packet::Binary(Bytes::from_static(&[0, 255, 16, 30])),
            Packet::Pong(b("probe")),
        ];
        let mut e = PayloadEncoder::new();
        for p in &packets {
            match p {
                Packet::Binary(d) => e.push_binary(d),
                p => {
                    let mut t = BytesMut::new();
                    p.encode_text(&mut t);
                    e.push_encoded_text(&t);
                }
            }
        }
        let body = e.finish();
        assert_eq!(payload(&body, 1000), Ok(packets));
    }

    #[test]
    fn put_u64_edges() {
        for n in [0u64, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn json_str_escapes() {
        for s in ["", "plain", "q\"uote", "back\\slash", "nl\n", "\u{1}", "é€😀"] {
            let mut out = BytesMut::new();
            put_json_str(&mut out, s);
            assert_eq!(out.to_vec(), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}

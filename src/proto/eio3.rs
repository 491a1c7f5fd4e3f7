//! Engine.IO protocol 3 codec (socket.io-client 2.x; served when `allow_eio3` is on): the
//! packets are those of v4 ([`Packet`]); what differs is how they are framed.
//!
//! Wire facts (the reference's engine.io-parser 2.x copy, `parser-v3`):
//! - a polling text payload is `<length>:<packet>` repeated, with no separator, where the
//!   length counts the packet's **UTF-16 code units** (a JavaScript string's `length`), not
//!   its bytes; a binary packet in it is `b4` + standard base64 (and the length counts that
//!   whole string). An empty entry (`0:`) is skipped;
//! - a polling binary payload (XHR2 clients, no `b64` in the query) is, per packet, a marker
//!   byte (`0` string, `1` binary), the length as one byte per decimal digit (values 0 to 9),
//!   `0xFF`, then the bytes: a string packet's UTF-8 (length in bytes), or a binary packet's
//!   type byte 4 and its data (the length counts the type byte);
//! - over WebSocket a binary frame carries the type byte 4 before the data (in v4 the frame
//!   is the data alone), and a text frame may be `b4` + base64 (clients that force base64).
//!
//! Where the reference's decoder would turn `b<type>` into some other packet type with binary
//! data (a binary PING, say), we refuse it: only messages carry binary.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::eio::{put_base64, put_u64, DecodeError, Packet, BASE64};

/// The Engine.IO packet type byte of a message, in front of binary data in v3.
const MESSAGE: u8 = 4;

/// The number of UTF-16 code units of valid UTF-8 `s` (what JavaScript's `length` says):
/// one per character, two for a character outside the Basic Multilingual Plane (a 4-byte
/// sequence).
pub fn utf16_len(s: &[u8]) -> usize {
    s.iter().map(|&b| usize::from(b & 0xc0 != 0x80) + usize::from(b >= 0xf0)).sum()
}

/// The byte offset in valid UTF-8 `s` after `units` UTF-16 code units, when that falls on a
/// character boundary within `s`.
fn utf16_offset(s: &[u8], units: usize) -> Option<usize> {
    let mut seen = 0usize;
    let mut i = 0usize;
    while seen < units {
        let b = *s.get(i)?;
        let (width, w16) = match b {
            0x00..=0x7f => (1, 1),
            0xc0..=0xdf => (2, 1),
            0xe0..=0xef => (3, 1),
            _ => (4, 2),
        };
        seen += w16;
        i += width;
    }
    (seen == units && i <= s.len()).then_some(i)
}

/// Decodes one v3 text packet: `b4` + base64 is a binary message, anything else is decoded
/// as in v4 ([`Packet::decode_text`]).
pub fn decode_text(frame: Bytes) -> Result<Packet, DecodeError> {
    match frame.split_first() {
        Some((b'b', rest)) => match rest.split_first() {
            Some((b'4', b64)) => BASE64
                .decode(b64)
                .map(|v| Packet::Binary(Bytes::from(v)))
                .map_err(|_| DecodeError::InvalidBase64),
            Some((&t, _)) => Err(DecodeError::BinaryNotMessage(t)),
            None => Err(DecodeError::BinaryNotMessage(0)),
        },
        _ => Packet::decode_text(frame),
    }
}

/// Decodes one v3 WebSocket binary frame: the type byte 4, then the data.
pub fn decode_binary(mut frame: Bytes) -> Result<Packet, DecodeError> {
    match frame.first() {
        Some(&MESSAGE) => {
            let _ = frame.split_to(1);
            Ok(Packet::Binary(frame))
        }
        Some(&t) => Err(DecodeError::BinaryNotMessage(t)),
        None => Err(DecodeError::Empty),
    }
}

/// Decodes a polling POST body sent as text (any content type but
/// `application/octet-stream`): `<length>:<packet>` entries. Any fault refuses the whole
/// body, as the reference closes the session on it.
pub fn decode_payload(body: &Bytes, max_payload: usize) -> Result<Vec<Packet>, DecodeError> {
    if body.len() > max_payload {
        return Err(DecodeError::PayloadTooLarge { limit: max_payload });
    }
    if body.is_empty() {
        return Err(DecodeError::EmptyPayload);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    let mut packets = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let rest = body.get(at..).unwrap_or_default();
        let colon = rest.iter().position(|&b| b == b':').ok_or(DecodeError::BadLength)?;
        let units = parse_decimal(rest.get(..colon).unwrap_or_default())?;
        let start = at + colon + 1;
        let text = body.get(start..).unwrap_or_default();
        let len = utf16_offset(text, units).ok_or(DecodeError::BadLength)?;
        at = start + len;
        if len > 0 {
            packets.push(decode_text(body.slice(start..at))?);
        }
    }
    Ok(packets)
}

/// A length prefix: 1 to 20 ASCII digits that fit a `usize`.
fn parse_decimal(digits: &[u8]) -> Result<usize, DecodeError> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::BadLength);
    }
    digits.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(DecodeError::BadLength)
    })
}

/// Decodes a polling POST body sent as `application/octet-stream` (an XHR2 client's binary
/// payload).
pub fn decode_binary_payload(body: &Bytes, max_payload: usize) -> Result<Vec<Packet>, DecodeError> {
    if body.len() > max_payload {
        return Err(DecodeError::PayloadTooLarge { limit: max_payload });
    }
    if body.is_empty() {
        return Err(DecodeError::EmptyPayload);
    }
    let mut packets = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let marker = body.get(at).copied().ok_or(DecodeError::BadLength)?;
        let mut len = 0usize;
        let mut digits = 0usize;
        at += 1;
        loop {
            let d = *body.get(at).ok_or(DecodeError::BadLength)?;
            at += 1;
            if d == 0xff {
                break;
            }
            digits += 1;
            if d > 9 || digits > 20 {
                return Err(DecodeError::BadLength);
            }
            len = len
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d)))
                .ok_or(DecodeError::BadLength)?;
        }
        if digits == 0 {
            return Err(DecodeError::BadLength);
        }
        let end = at.checked_add(len).filter(|&e| e <= body.len()).ok_or(DecodeError::BadLength)?;
        let bytes = body.slice(at..end);
        at = end;
        let packet = match marker {
            0 => decode_text(bytes)?,
            1 => decode_binary(bytes)?,
            m => return Err(DecodeError::UnknownType(m)),
        };
        packets.push(packet);
    }
    Ok(packets)
}

/// Builds a v3 polling GET response body. Text (`<length>:<packet>`, binary as `b4` +
/// base64) unless made with [`PayloadEncoder::binary`], which writes the XHR2 binary form
/// (only for a client that did not ask for base64, and only when the batch holds binary, as
/// the reference does).
#[derive(Debug, Default)]
pub struct PayloadEncoder {
    buf: BytesMut,
    binary: bool,
}

impl PayloadEncoder {
    /// An empty text payload.
    pub fn text() -> Self {
        Self::default()
    }

    /// An empty binary payload (`Content-Type: application/octet-stream`).
    pub fn binary() -> Self {
        PayloadEncoder { buf: BytesMut::new(), binary: true }
    }

    /// Whether this is the binary form.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Appends an engine packet already in text form, e.g. `b"42[\"a\"]"` or `b"3"`.
    pub fn push_encoded_text(&mut self, packet: &[u8]) {
        if self.binary {
            self.buf.put_u8(0);
            put_digits(&mut self.buf, packet.len());
            self.buf.put_u8(0xff);
        } else {
            put_u64(&mut self.buf, utf16_len(packet) as u64);
            self.buf.put_u8(b':');
        }
        self.buf.extend_from_slice(packet);
    }

    /// Appends a binary message.
    pub fn push_binary(&mut self, data: &[u8]) {
        if self.binary {
            self.buf.put_u8(1);
            put_digits(&mut self.buf, data.len() + 1);
            self.buf.put_u8(0xff);
            self.buf.put_u8(MESSAGE);
            self.buf.extend_from_slice(data);
        } else {
            let b64 = base64::encoded_len(data.len(), true).unwrap_or(0);
            put_u64(&mut self.buf, (2 + b64) as u64);
            self.buf.extend_from_slice(b":b4");
            put_base64(&mut self.buf, data);
        }
    }

    /// True when nothing has been pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The finished body.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Appends `n` as one byte (0 to 9) per decimal digit.
fn put_digits(out: &mut BytesMut, n: usize) {
    let start = out.len();
    put_u64(out, n as u64);
    for b in out.get_mut(start..).into_iter().flatten() {
        *b -= b'0';
    }
}

/// A binary message as a v3 WebSocket frame's payload: the type byte 4, then the data.
pub fn binary_frame_payload(data: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(1 + data.len());
    out.put_u8(MESSAGE);
    out.extend_from_slice(data);
    out
}

/// A binary message as a v3 text packet: `b4` + base64 (WebSocket clients that asked for
/// base64 with `b64=1`).
pub fn binary_as_text(data: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(2 + data.len() * 4 / 3 + 4);
    out.extend_from_slice(b"b4");
    put_base64(&mut out, data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn utf16_lengths_are_javascript_lengths() {
        assert_eq!(utf16_len(b""), 0);
        assert_eq!(utf16_len(b"abc"), 3);
        // é (2 bytes), € (3 bytes), 😀 (4 bytes, a surrogate pair in UTF-16)
        assert_eq!(utf16_len("é€😀".as_bytes()), 4);
        assert_eq!(utf16_len("421[\"echo\",\"é€😀\"]".as_bytes()), 18);
        assert_eq!(utf16_offset("é€😀x".as_bytes(), 4), Some(9));
        assert_eq!(utf16_offset("😀".as_bytes(), 1), None, "inside a surrogate pair");
        assert_eq!(utf16_offset("ab".as_bytes(), 3), None);
    }

    #[test]
    fn text_payloads_decode_as_the_reference_frames_them() {
        let got = decode_payload(&b("18:421[\"echo\",\"é€😀\"]"), 1000).unwrap();
        assert_eq!(got, vec![Packet::Message(b("21[\"echo\",\"é€😀\"]"))]);
        let got = decode_payload(
            &b("1:248:451-/admin,[\"bin\",{\"_placeholder\":true,\"num\":0}]6:b4CQgH"),
            1000,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Packet::Ping(Bytes::new()),
                Packet::Message(b("51-/admin,[\"bin\",{\"_placeholder\":true,\"num\":0}]")),
                Packet::Binary(Bytes::from_static(&[9, 8, 7])),
            ]
        );
        assert_eq!(decode_payload(&b("1:10:1:6"), 100).unwrap(), vec![Packet::Close, Packet::Noop]);
    }

    #[test]
    fn text_payload_faults_refuse_the_body() {
        for (body, err) in [
            ("", DecodeError::EmptyPayload),
            ("abc", DecodeError::BadLength),
            ("23:421[\"echo\",\"é€😀\"]", DecodeError::BadLength), // the UTF-8 byte length
            ("5:42", DecodeError::BadLength),
            ("2:42x", DecodeError::BadLength),
            (":42", DecodeError::BadLength),
            ("1:9", DecodeError::UnknownType(b'9')),
            ("2:1x", DecodeError::TrailingData(b'1')),
            ("3:b2A", DecodeError::BinaryNotMessage(b'2')),
            ("4:b4!!", DecodeError::InvalidBase64),
            ("99999999999999999999999:4", DecodeError::BadLength),
        ] {
            assert_eq!(decode_payload(&b(body), 1000), Err(err), "{body:?}");
        }
        assert_eq!(
            decode_payload(&b("6:4hello"), 5),
            Err(DecodeError::PayloadTooLarge { limit: 5 })
        );
        assert_eq!(
            decode_payload(&Bytes::from_static(b"2:4\xff"), 100),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn text_payloads_encode_with_utf16_lengths_and_base64_binary() {
        let mut e = PayloadEncoder::text();
        assert!(e.is_empty() && !e.is_binary());
        e.push_encoded_text(b"40");
        e.push_encoded_text("431[\"é€😀\"]".as_bytes());
        e.push_binary(&[1, 2, 3]);
        let body = e.finish();
        assert_eq!(&body[..], "2:4011:431[\"é€😀\"]6:b4AQID".as_bytes());
        assert_eq!(
            decode_payload(&body, 1000).unwrap(),
            vec![
                Packet::Message(b("0")),
                Packet::Message(b("31[\"é€😀\"]")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3]))
            ]
        );
    }

    #[test]
    fn binary_payloads_match_the_reference() {
        // docs/engine.io-protocol/v3-test-suite: "4hello" and binary 01 02 03 04 echoed to a
        // binary client.
        let mut e = PayloadEncoder::binary();
        e.push_encoded_text(b"4hello");
        e.push_binary(&[1, 2, 3, 4]);
        let body = e.finish();
        assert_eq!(&body[..], &[0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4]);
        assert_eq!(
            decode_binary_payload(&body, 100).unwrap(),
            vec![Packet::Message(b("hello")), Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))]
        );
        // lengths of ten and more bytes: one byte per digit, UTF-8 bytes for strings
        let text = "4é".repeat(10);
        let mut e = PayloadEncoder::binary();
        e.push_encoded_text(text.as_bytes());
        let body = e.finish();
        assert_eq!(&body[..4], &[0, 3, 0, 255]);
        assert_eq!(
            decode_binary_payload(&body, 100).unwrap(),
            vec![Packet::Message(b(&text[1..]))]
        );
    }

    #[test]
    fn binary_payload_faults_refuse_the_body() {
        for (body, err) in [
            (&[][..], DecodeError::EmptyPayload),
            (&[0][..], DecodeError::BadLength),
            (&[0, 255][..], DecodeError::BadLength),
            (&[0, 10, 255][..], DecodeError::BadLength),
            (&[0, 3, 255, b'4'][..], DecodeError::BadLength),
            (&[2, 1, 255, b'6'][..], DecodeError::UnknownType(2)),
            (&[1, 2, 255, 2, 0][..], DecodeError::BinaryNotMessage(2)),
        ] {
            let got = decode_binary_payload(&Bytes::copy_from_slice(body), 100);
            assert_eq!(got, Err(err), "{body:?}");
        }
        // the type byte alone: an empty binary message
        assert_eq!(
            decode_binary_payload(&Bytes::from_static(&[1, 1, 255, 4]), 100),
            Ok(vec![Packet::Binary(Bytes::new())])
        );
        let long = [&[0u8][..], &[1; 21], &[255]].concat();
        assert_eq!(decode_binary_payload(&Bytes::from(long), 100), Err(DecodeError::BadLength));
    }

    #[test]
    fn websocket_frames() {
        assert_eq!(
            decode_binary(Bytes::from_static(&[4, 9, 8, 7])),
            Ok(Packet::Binary(Bytes::from_static(&[9, 8, 7])))
        );
        assert_eq!(
            decode_binary(Bytes::from_static(&[7, 7])),
            Err(DecodeError::BinaryNotMessage(7))
        );
        assert_eq!(decode_binary(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(decode_text(b("b4Bwc=")), Ok(Packet::Binary(Bytes::from_static(&[7, 7]))));
        assert_eq!(decode_text(b("2")), Ok(Packet::Ping(Bytes::new())));
        assert_eq!(&binary_frame_payload(&[1, 2])[..], &[4, 1, 2]);
        assert_eq!(&binary_as_text(&[1, 2, 3])[..], b"b4AQID");
    }
}

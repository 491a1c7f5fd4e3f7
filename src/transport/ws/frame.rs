//! The WebSocket frame codec (RFC 6455), sans-IO: it does no I/O. Server frames are
//! encoded whole into shareable buffers (unmasked, so one encoding serves every recipient),
//! and client frames are decoded by [`FrameParser`] off the front of a buffer the
//! connection's read half fills, with fragmented messages reassembled. Part of the
//! transport layer's WebSocket module; compressed messages are inflated by [`super::deflate`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::deflate::inflate;
use super::{WsConfig, WsError, WsMessage};

/// FIN bit of the first header byte: the last frame of a message.
pub(super) const FIN: u8 = 0x80;
/// RSV1: set on the first frame of a compressed message (RFC 7692 §6).
pub(super) const RSV1: u8 = 0x40;
/// RSV2 and RSV3: no extension we negotiate defines them.
const RSV23: u8 = 0x30;
/// MASK bit of the second header byte.
pub(super) const MASK: u8 = 0x80;
/// The largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest header of a server frame: 2 bytes and a 64-bit length, no masking key.
pub(super) const MAX_SERVER_HEADER: usize = 10;

// ---------------------------------------------------------------------------------------
// Encoding (server → client)
// ---------------------------------------------------------------------------------------

/// A complete server→client text frame (header + payload, unmasked, FIN set), encoded once
/// and shareable.
pub(crate) fn encode_text_frame(payload: &[u8]) -> Bytes {
    encode_frame(FIN | Opcode::Text.bits(), payload)
}

/// A complete server→client binary frame (header + payload, unmasked, FIN set), encoded once
/// and shareable.
pub(crate) fn encode_binary_frame(payload: &[u8]) -> Bytes {
    encode_frame(FIN | Opcode::Binary.bits(), payload)
}

/// A pong frame answering a ping. A payload over 125 bytes is cut to 125, the most a control
/// frame may carry (a ping's never is: the parser rejects longer ones).
pub(crate) fn encode_pong_frame(payload: &[u8]) -> Bytes {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    encode_frame(FIN | Opcode::Pong.bits(), payload)
}

/// A close frame with a status code and no reason.
pub(crate) fn encode_close_frame(code: u16) -> Bytes {
    encode_frame(FIN | Opcode::Close.bits(), &code.to_be_bytes())
}

/// Header and payload in one exactly-sized allocation.
fn encode_frame(first: u8, payload: &[u8]) -> Bytes {
    let (header, header_len) = frame_header(first, payload.len());
    let mut buf = BytesMut::with_capacity(header_len + payload.len());
    buf.put_slice(header.get(..header_len).unwrap_or_default());
    buf.put_slice(payload);
    buf.freeze()
}

/// An unmasked frame header, in the shortest length form: the bytes and how many are used.
pub(super) fn frame_header(first: u8, len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = first;
    if let Ok(short @ 0..=125) = u8::try_from(len) {
        header[1] = short;
        (header, 2)
    } else if let Ok(medium) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&medium.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

// ---------------------------------------------------------------------------------------
// Decoding (client → server), sans-IO
// ---------------------------------------------------------------------------------------

/// A frame opcode (RFC 6455 §5.2); the reserved ones are a decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8.
    Close,
    /// 0x9.
    Ping,
    /// 0xA.
    Pong,
}

impl Opcode {
    /// The opcode of the low nibble of a frame's first byte.
    fn from_bits(bits: u8) -> Result<Opcode, WsError> {
        match bits {
            0x0 => Ok(Opcode::Continuation),
            0x1 => Ok(Opcode::Text),
            0x2 => Ok(Opcode::Binary),
            0x8 => Ok(Opcode::Close),
            0x9 => Ok(Opcode::Ping),
            0xA => Ok(Opcode::Pong),
            other => Err(WsError::UnknownOpcode(other)),
        }
    }

    /// The opcode's 4 bits.
    pub(super) fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes, allowed between fragments.
    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One decoded client frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The last frame of its message.
    pub(crate) fin: bool,
    /// RSV1: the message this frame starts is compressed.
    pub(crate) compressed: bool,
    /// What the frame is.
    pub(crate) opcode: Opcode,
    /// The payload, unmasked, still compressed if the message is.
    pub(crate) payload: Bytes,
}

/// The sans-IO decoder of client frames into messages: fed a buffer of received bytes, it
/// takes complete frames off its front. All the state of a message being reassembled lives
/// here, so the I/O around it can be cancelled between any two calls.
#[derive(Debug)]
pub(crate) struct FrameParser {
    /// See [`WsConfig::max_message_size`].
    max_message_size: usize,
    /// permessage-deflate was negotiated: RSV1 is allowed on a message's first frame.
    deflate: bool,
    /// The fragmented message being reassembled, if any.
    partial: Option<Partial>,
    /// Total bytes (header and payload) of the frame at the front of the buffer when its
    /// header is complete and its payload is not; 0 otherwise.
    needed: usize,
}

/// A fragmented message received so far.
#[derive(Debug)]
struct Partial {
    /// Text (else binary).
    text: bool,
    /// Its first frame had RSV1: `data` is deflate data.
    compressed: bool,
    /// The payloads received so far, unmasked.
    data: BytesMut,
}

impl FrameParser {
    /// A parser for a connection configured with `cfg`.
    pub(crate) fn new(cfg: &WsConfig) -> FrameParser {
        FrameParser {
            max_message_size: cfg.max_message_size,
            deflate: cfg.deflate.is_some(),
            partial: None,
            needed: 0,
        }
    }

    /// Total bytes the frame at the front of the buffer needs, when its header is complete
    /// and its payload is not (a hint for sizing reads); 0 when unknown.
    pub(crate) fn needed(&self) -> usize {
        self.needed
    }

    /// The next complete message (or control frame) off the front of `buf`, or `None` when
    /// more bytes are needed. Frames of a fragmented message are consumed as they complete
    /// and kept here. After an error the connection must be closed: the parser's state is
    /// not meaningful any more.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsMessage>, WsError> {
        while let Some(frame) = self.decode_frame(buf)? {
            if let Some(message) = self.on_frame(frame)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// The next complete frame off the front of `buf`, unmasked, or `None` when more bytes
    /// are needed. Every check that the header allows (including the message size limit)
    /// is made as soon as the header is in, before any of the payload is buffered.
    pub(crate) fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WsError> {
        self.needed = 0;
        let bytes: &[u8] = buf;
        let &[b0, b1, ..] = bytes else { return Ok(None) };
        if b0 & RSV23 != 0 {
            return Err(WsError::ReservedBits);
        }
        let fin = b0 & FIN != 0;
        let compressed = b0 & RSV1 != 0;
        let opcode = Opcode::from_bits(b0 & 0x0f)?;
        if b1 & MASK == 0 {
            return Err(WsError::UnmaskedFrame);
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(WsError::ControlTooLong);
            }
            // RFC 7692 §6.1: RSV1 marks data messages only.
            if compressed {
                return Err(WsError::ReservedBits);
            }
        } else {
            match (opcode, &self.partial) {
                (Opcode::Continuation, None) => return Err(WsError::BadContinuation),
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(WsError::InterruptedMessage)
                }
                _ => {}
            }
            // RSV1 only with permessage-deflate, and only on a message's first frame.
            if compressed && (!self.deflate || opcode == Opcode::Continuation) {
                return Err(WsError::ReservedBits);
            }
        }

        let (len, key_at) = match len7 {
            126 => match bytes.get(2..4) {
                Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
                _ => return Ok(None),
            },
            127 => match bytes.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(len) => (u64::from_be_bytes(len), 10),
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        if len >> 63 != 0 {
            return Err(WsError::BadLength);
        }
        // Non-minimal length forms are accepted: rejecting them protects nothing.
        if !opcode.is_control() {
            self.check_size(compressed, len)?;
        }
        let Some(key) = bytes.get(key_at..key_at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok())
        else {
            return Ok(None);
        };
        let header_len = key_at + 4;
        // Bounded by max_message_size (or 125) above, so it fits.
        let total = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(header_len))
            .ok_or(WsError::MessageTooBig { limit: self.max_message_size })?;
        if bytes.len() < total {
            self.needed = total;
            return Ok(None);
        }
        // In range: `total <= buf.len()` and `header_len <= total` were just checked.
        let mut payload = buf.split_to(total);
        payload.advance(header_len);
        unmask(&mut payload, key);
        Ok(Some(Frame { fin, compressed, opcode, payload: payload.freeze() }))
    }

    /// Errs when a data frame of `len` bytes would take its message over the limit. A
    /// compressed message's deflate data is held to the limit plus deflate's worst-case
    /// growth (stored blocks), so a client compressing incompressible data is not refused.
    fn check_size(&self, first_compressed: bool, len: u64) -> Result<(), WsError> {
        let (so_far, compressed) = match &self.partial {
            Some(partial) => (partial.data.len(), partial.compressed),
            None => (0, first_compressed),
        };
        let mut limit = self.max_message_size;
        if compressed {
            limit = limit.saturating_add(limit / 1024).saturating_add(64);
        }
        if (so_far as u64).saturating_add(len) > limit as u64 {
            return Err(WsError::MessageTooBig { limit: self.max_message_size });
        }
        Ok(())
    }

    /// Takes one frame into the message being assembled; the message, when complete.
    fn on_frame(&mut self, frame: Frame) -> Result<Option<WsMessage>, WsError> {
        let Frame { fin, compressed, opcode, payload } = frame;
        match opcode {
            Opcode::Ping => Ok(Some(WsMessage::Ping(payload))),
            Opcode::Pong => Ok(Some(WsMessage::Pong(payload))),
            Opcode::Close => parse_close(&payload).map(|code| Some(WsMessage::Close(code))),
            Opcode::Text | Opcode::Binary => {
                let text = opcode == Opcode::Text;
                if fin {
                    // The common case: one frame, the payload is handed on without a copy.
                    return self.finish(text, compressed, payload).map(Some);
                }
                let mut data = BytesMut::with_capacity(payload.len().saturating_mul(2));
                data.put_slice(&payload);
                self.partial = Some(Partial { text, compressed, data });
                Ok(None)
            }
            Opcode::Continuation => {
                let partial = self.partial.as_mut().ok_or(WsError::BadContinuation)?;
                partial.data.put_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let Some(Partial { text, compressed, data }) = self.partial.take() else {
                    return Err(WsError::BadContinuation);
                };
                self.finish(text, compressed, data.freeze()).map(Some)
            }
        }
    }

    /// A complete data message: inflated if compressed, UTF-8 checked if text.
    fn finish(&self, text: bool, compressed: bool, payload: Bytes) -> Result<WsMessage, WsError> {
        let payload = if compressed { inflate(&payload, self.max_message_size)? } else { payload };
        if !text {
            return Ok(WsMessage::Binary(payload));
        }
        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
        Ok(WsMessage::Text(payload))
    }
}

/// A close frame's status code, checked (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadCloseFrame),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // Allowed on the wire: the RFC 6455 codes (1004-1006 and 1015 are reserved, never
            // sent), the IANA-registered 1012-1014, and 3000-4999 for libraries and apps.
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(WsError::BadCloseFrame);
            }
            std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// XORs a client payload with its masking key (RFC 6455 §5.3), 8 bytes at a time.
fn unmask(data: &mut [u8], key: [u8; 4]) {
    let [k0, k1, k2, k3] = key;
    let wide = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The chunks covered a multiple of 4 bytes, so the key restarts at its first byte.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::Deflate;
    use super::*;

    /// A masked client frame with the given first byte.
    pub(in crate::transport::ws) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        client_frame_with_key(first, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    fn client_frame_with_key(first: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let (header, n) = frame_header(first, payload.len());
        let mut out = header[..n].to_vec();
        out[1] |= MASK;
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// Masks an unmasked (server-form) frame as a client would send it.
    pub(in crate::transport::ws) fn mask_frame(frame: &[u8]) -> Vec<u8> {
        let len7 = frame[1] & 0x7f;
        let header_len = match len7 {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let (header, n) = frame_header(frame[0], frame.len() - header_len);
        assert_eq!(&header[..n], &frame[..header_len], "test frames use minimal lengths");
        client_frame(frame[0], &frame[header_len..])
    }

    pub(in crate::transport::ws) fn cfg(deflate: bool) -> WsConfig {
        WsConfig { max_message_size: 1 << 20, deflate: deflate.then_some(Deflate) }
    }

    /// Every message decodable from `bytes`, fed in one piece.
    pub(in crate::transport::ws) fn decode_all(
        cfg: &WsConfig,
        bytes: &[u8],
    ) -> Result<Vec<WsMessage>, WsError> {
        let mut parser = FrameParser::new(cfg);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = parser.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        Ok(out)
    }

    /// Every message decodable from `bytes`, fed in the given pieces.
    pub(in crate::transport::ws) fn decode_pieces(
        cfg: &WsConfig,
        pieces: &[&[u8]],
    ) -> Result<Vec<WsMessage>, WsError> {
        let mut parser = FrameParser::new(cfg);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while let Some(m) = parser.decode(&mut buf)? {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        Ok(out)
    }

    pub(in crate::transport::ws) fn decode_one(
        cfg: &WsConfig,
        bytes: &[u8],
    ) -> Result<WsMessage, WsError> {
        let mut all = decode_all(cfg, bytes)?;
        assert_eq!(all.len(), 1, "{all:?}");
        Ok(all.remove(0))
    }

    pub(in crate::transport::ws) fn err(bytes: &[u8]) -> WsError {
        decode_all(&cfg(false), bytes).expect_err("must fail")
    }

    pub(in crate::transport::ws) fn text(s: &str) -> WsMessage {
        WsMessage::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn rfc6455_masked_hello() {
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decode_one(&cfg(false), &frame).unwrap(), text("Hello"));
        assert_eq!(client_frame(0x81, b"Hello"), frame);
    }

    #[test]
    fn rfc6455_fragmented_hello() {
        let mut bytes = mask_frame(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        bytes.extend(mask_frame(&[0x80, 0x02, 0x6c, 0x6f]));
        assert_eq!(decode_one(&cfg(false), &bytes).unwrap(), text("Hello"));
    }

    #[test]
    fn rfc6455_ping_and_masked_pong() {
        let ping = mask_frame(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            decode_one(&cfg(false), &ping).unwrap(),
            WsMessage::Ping(Bytes::from_static(b"Hello"))
        );
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(
            decode_one(&cfg(false), &pong).unwrap(),
            WsMessage::Pong(Bytes::from_static(b"Hello"))
        );
    }

    #[test]
    fn rfc6455_16_and_64_bit_lengths() {
        let payload: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
        // 256 bytes: 0x82 0x7E 0x0100.
        let frame = client_frame(0x82, &payload[..256]);
        assert_eq!(&frame[..4], &[0x82, 0xfe, 0x01, 0x00]);
        let got = decode_one(&cfg(false), &frame).unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::copy_from_slice(&payload[..256])));
        // 64 KiB: 0x82 0x7F 0x0000000000010000.
        let frame = client_frame(0x82, &payload);
        assert_eq!(&frame[..10], &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]);
        let got = decode_one(&cfg(false), &frame).unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::from(payload)));
    }

    #[test]
    fn non_minimal_length_is_accepted() {
        // "Hi" announced with the 16-bit form.
        let bytes = [0x81, 0xfe, 0x00, 0x02, 0, 0, 0, 0, b'H', b'i'];
        assert_eq!(decode_one(&cfg(false), &bytes).unwrap(), text("Hi"));
    }

    /// A stream with every kind of frame, and what it decodes to.
    fn mixed_stream() -> (Vec<u8>, Vec<WsMessage>) {
        let long: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = client_frame(0x81, b"Hello");
        bytes.extend(client_frame(0x01, "h\u{e9}".as_bytes()));
        bytes.extend(client_frame(0x89, b"ping"));
        // The 2-byte é split across fragments: only the whole message is UTF-8.
        bytes.extend(client_frame(0x00, &"\u{e9}llo".as_bytes()[..1]));
        bytes.extend(client_frame(0x00, &"\u{e9}llo".as_bytes()[1..]));
        bytes.extend(client_frame(0x8a, b""));
        bytes.extend(client_frame(0x80, b"!"));
        bytes.extend(client_frame(0x82, &long));
        bytes.extend(client_frame(0x81, b""));
        bytes.extend(client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        let expected = vec![
            text("Hello"),
            WsMessage::Ping(Bytes::from_static(b"ping")),
            WsMessage::Pong(Bytes::new()),
            text("h\u{e9}\u{e9}llo!"),
            WsMessage::Binary(Bytes::from(long)),
            text(""),
            WsMessage::Close(Some(1000)),
        ];
        (bytes, expected)
    }

    #[test]
    fn every_split_offset_gives_the_same_messages() {
        let (bytes, expected) = mixed_stream();
        assert_eq!(decode_all(&cfg(false), &bytes).unwrap(), expected);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(decode_pieces(&cfg(false), &[a, b]).unwrap(), expected, "split at {at}");
        }
        for (a, b) in [(1, 7), (3, 40), (17, 18), (100, 101)] {
            let pieces = [&bytes[..a], &bytes[a..b], &bytes[b..]];
            assert_eq!(decode_pieces(&cfg(false), &pieces).unwrap(), expected);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_pieces(&cfg(false), &singles).unwrap(), expected);
    }

    #[test]
    fn needed_reports_the_frame_size_once_the_header_is_in() {
        let frame = client_frame(0x82, &[7u8; 1000]);
        let mut parser = FrameParser::new(&cfg(false));
        let mut buf = BytesMut::from(&frame[..3]);
        assert_eq!(parser.decode(&mut buf).unwrap(), None);
        assert_eq!(parser.needed(), 0);
        buf.extend_from_slice(&frame[3..20]);
        assert_eq!(parser.decode(&mut buf).unwrap(), None);
        assert_eq!(parser.needed(), frame.len());
        buf.extend_from_slice(&frame[20..]);
        assert!(parser.decode(&mut buf).unwrap().is_some());
        assert_eq!(parser.needed(), 0);
    }

    #[test]
    fn decode_frame_returns_raw_frames() {
        let mut parser = FrameParser::new(&cfg(true));
        let mut buf = BytesMut::from(&mask_frame(&[0x41, 0x03, 0xf2, 0x48, 0xcd])[..]);
        let frame = parser.decode_frame(&mut buf).unwrap().unwrap();
        let expected = Frame {
            fin: false,
            compressed: true,
            opcode: Opcode::Text,
            payload: Bytes::from_static(&[0xf2, 0x48, 0xcd]),
        };
        assert_eq!(frame, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn unfragmented_payload_is_not_copied() {
        let frame = client_frame(0x81, b"zero copy");
        let mut buf = BytesMut::from(&frame[..]);
        let start = buf.as_ptr() as usize;
        let msg = FrameParser::new(&cfg(false)).decode(&mut buf).unwrap().unwrap();
        let WsMessage::Text(payload) = msg else { panic!("{msg:?}") };
        assert_eq!(payload.as_ptr() as usize, start + 6);
    }

    #[test]
    fn protocol_errors() {
        assert!(matches!(err(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']), WsError::UnmaskedFrame));
        assert!(matches!(err(&client_frame(0xa1, b"x")), WsError::ReservedBits));
        assert!(matches!(err(&client_frame(0x91, b"x")), WsError::ReservedBits));
        assert!(matches!(err(&client_frame(0xc1, b"x")), WsError::ReservedBits));
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert!(
                matches!(err(&client_frame(0x80 | op, b"")), WsError::UnknownOpcode(o) if o == op)
            );
        }
        assert!(matches!(err(&client_frame(0x09, b"")), WsError::FragmentedControl));
        assert!(matches!(err(&client_frame(0x89, &[0; 126])), WsError::ControlTooLong));
        assert!(decode_all(&cfg(false), &client_frame(0x89, &[0; 125])).is_ok());
        assert!(matches!(err(&client_frame(0x80, b"x")), WsError::BadContinuation));
        assert!(matches!(err(&client_frame(0x00, b"x")), WsError::BadContinuation));
        let mut interrupted = client_frame(0x01, b"a");
        interrupted.extend(client_frame(0x82, b"b"));
        assert!(matches!(err(&interrupted), WsError::InterruptedMessage));
        // RSV1 on a continuation frame, and on a control frame, even when negotiated.
        let mut rsv1_cont = client_frame(0x41, &[0xf2, 0x48]);
        rsv1_cont.extend(client_frame(0xc0, &[0xcd]));
        assert!(matches!(decode_all(&cfg(true), &rsv1_cont), Err(WsError::ReservedBits)));
        let rsv1_ping = client_frame(0xc9, b"");
        assert!(matches!(decode_all(&cfg(true), &rsv1_ping), Err(WsError::ReservedBits)));
    }

    #[test]
    fn errors_come_from_the_header_alone() {
        // Only the first two bytes are needed to see these.
        assert!(matches!(err(&[0x81, 0x05]), WsError::UnmaskedFrame));
        assert!(matches!(err(&[0x83, 0x80]), WsError::UnknownOpcode(3)));
        assert!(matches!(err(&[0x89, 0xfe]), WsError::ControlTooLong));
    }

    #[test]
    fn size_limit_is_checked_before_the_payload_arrives() {
        // A header announcing 2^62 bytes, no mask key and no payload yet.
        let huge = [0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(err(&huge), WsError::MessageTooBig { limit } if limit == 1 << 20));
        let small = WsConfig { max_message_size: 100, deflate: None };
        // 101 bytes announced; only the header is there.
        let frame = client_frame(0x82, &[0; 101]);
        let e = decode_all(&small, &frame[..8]).unwrap_err();
        assert!(matches!(e, WsError::MessageTooBig { limit: 100 }));
        assert!(decode_all(&small, &client_frame(0x82, &[0; 100])).is_ok());
        // Over the limit in total across fragments, each small.
        let mut frags = client_frame(0x02, &[0; 60]);
        frags.extend(client_frame(0x80, &[0; 41]));
        assert!(matches!(decode_all(&small, &frags), Err(WsError::MessageTooBig { .. })));
    }

    #[test]
    fn length_with_top_bit_is_rejected() {
        let bytes = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0];
        assert!(matches!(err(&bytes), WsError::BadLength));
    }

    #[test]
    fn invalid_utf8() {
        assert!(matches!(err(&client_frame(0x81, &[0xff, 0xfe])), WsError::InvalidUtf8));
        let mut frags = client_frame(0x01, b"ok");
        frags.extend(client_frame(0x80, &[0xc3]));
        assert!(matches!(err(&frags), WsError::InvalidUtf8));
        // Binary is not checked.
        assert!(decode_all(&cfg(false), &client_frame(0x82, &[0xff])).is_ok());
    }

    #[test]
    fn close_frames() {
        let close = |payload: &[u8]| decode_all(&cfg(false), &client_frame(0x88, payload));
        assert_eq!(close(b"").unwrap(), vec![WsMessage::Close(None)]);
        assert!(matches!(close(&[0x03]), Err(WsError::BadCloseFrame)));
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(close(&code.to_be_bytes()).unwrap(), vec![WsMessage::Close(Some(code))]);
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert!(matches!(close(&code.to_be_bytes()), Err(WsError::BadCloseFrame)), "{code}");
        }
        assert!(matches!(close(&[0x03, 0xe8, 0xff]), Err(WsError::InvalidUtf8)));
    }

    #[test]
    fn encoded_frames() {
        assert_eq!(&encode_text_frame(b"Hello")[..], &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(&encode_binary_frame(b"")[..], &[0x82, 0x00]);
        assert_eq!(&encode_close_frame(1000)[..], &[0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(&encode_pong_frame(b"hi")[..], &[0x8a, 0x02, b'h', b'i']);
        assert_eq!(encode_pong_frame(&[1; 200]).len(), 2 + 125);
        for (len, header) in [
            (125usize, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65535, vec![0x82, 126, 0xff, 0xff]),
            (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let payload = vec![9u8; len];
            let frame = encode_binary_frame(&payload);
            assert_eq!(&frame[..header.len()], &header[..]);
            assert_eq!(frame.len(), header.len() + len);
            // A client sending the same bytes, masked, decodes to the payload.
            let got = decode_one(&cfg(false), &mask_frame(&frame)).unwrap();
            assert_eq!(got, WsMessage::Binary(Bytes::from(payload)));
        }
    }

    #[test]
    fn unmask_matches_the_definition() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut data = plain.clone();
            unmask(&mut data, key);
            let expected: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(data, expected, "len {len}");
        }
    }
}

//! The server side of the WebSocket protocol (RFC 6455) with permessage-deflate (RFC 7692):
//! extension negotiation, frame encoding, a sans-IO frame parser, and the read and write
//! halves of an upgraded connection.
//!
//! ## Why hand-written
//!
//! The server used tokio-tungstenite, which does not fit the broadcast path:
//!
//! - tungstenite 0.30 has no permessage-deflate;
//! - a broadcast encodes its frame once: server frames are unmasked, so the same header and
//!   payload bytes go to every recipient and are shared by refcount ([`Bytes`]) across
//!   thousands of connections, and each connection writes the frames queued for it with
//!   vectored writes, many frames per syscall. tungstenite encodes every message again per
//!   connection into its own write buffer.
//!
//! Clients (the tests, the load tester) keep using tokio-tungstenite.
//!
//! ## Compression
//!
//! Every permessage-deflate offer we accept is answered with `server_no_context_takeover`
//! and `client_no_context_takeover`, so each message is a deflate stream of its own. A
//! broadcast is then compressed once and the same bytes go to everyone, and no connection
//! keeps a compression or decompression window between messages: the one compressor and the
//! one inflater are per thread (a shard is one thread), reset before each message.
//!
//! ## Memory
//!
//! An idle [`WsReader`] holds no read buffer (it is released before waiting for the socket
//! and a small one is taken once bytes are readable) and an idle [`WsWriter`] holds at most a
//! small queue: an idle connection costs the two structs and the socket.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// FIN bit of the first header byte: the last frame of a message.
const FIN: u8 = 0x80;
/// RSV1: set on the first frame of a compressed message (RFC 7692 §6).
const RSV1: u8 = 0x40;
/// RSV2 and RSV3: no extension we negotiate defines them.
const RSV23: u8 = 0x30;
/// MASK bit of the second header byte.
const MASK: u8 = 0x80;
/// The largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest header of a server frame: 2 bytes and a 64-bit length, no masking key.
const MAX_SERVER_HEADER: usize = 10;
/// What a sync flush ends with; stripped from a compressed message and added back before
/// inflating it (RFC 7692 §7.2.1 and §7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Compression level of outgoing messages. A broadcast is compressed once and sent to many,
/// so bandwidth saved is multiplied and CPU spent is not: the default level, not the fastest.
const COMPRESSION_LEVEL: u32 = 6;
/// The smallest read: a read buffer starts (and starts again after being released) this
/// large, enough for a few small frames per syscall.
const READ_MIN: usize = 512;
/// How much a read buffer may grow by in one step before holding that much data itself.
const READ_GROW_MIN: usize = 16 * 1024;
/// Up to this many frames, the I/O vectors of a write are built in a plain array.
const SMALL_IOV: usize = 8;
/// At most this many frames go to one vectored send.
const MAX_IOV: usize = 64;

thread_local! {
    /// The thread's raw-deflate compressor, reset before each message.
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
    /// The thread's raw-deflate inflater, reset (window zeroed) before each message.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// How the connection's WebSocket layer behaves, fixed at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsConfig {
    /// The largest message accepted from the client, after reassembly and after inflating.
    pub(crate) max_message_size: usize,
    /// permessage-deflate, when it was negotiated.
    pub(crate) deflate: Option<Deflate>,
}

/// Negotiated permessage-deflate parameters. We always answer with
/// `server_no_context_takeover` and `client_no_context_takeover` (RFC 7692 §7.1.1 lets the
/// server include both in any response), so every message is compressed independently: a
/// broadcast can be compressed ONCE and the same bytes sent to every recipient, and no
/// per-connection inflate window is kept between messages.
///
/// As that is the only configuration we agree to, there is nothing to record: `Some(Deflate)`
/// in [`WsConfig`] means "negotiated".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Deflate;

/// What reading or writing a WebSocket connection failed with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The socket failed.
    #[error("websocket i/o: {0}")]
    Io(#[from] io::Error),
    /// A client frame without a masking key (RFC 6455 §5.1).
    #[error("unmasked client frame")]
    UnmaskedFrame,
    /// RSV2 or RSV3 set, or RSV1 where permessage-deflate does not allow it.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 payload bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    BadContinuation,
    /// A new text or binary frame before the fragmented message in progress ended.
    #[error("new data frame inside a fragmented message")]
    InterruptedMessage,
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2).
    #[error("invalid frame length")]
    BadLength,
    /// A message (or, compressed, its deflate data) larger than the configured limit.
    #[error("message over the {limit} byte limit")]
    MessageTooBig {
        /// The configured `max_message_size`.
        limit: usize,
    },
    /// A text message or a close reason that is not UTF-8.
    #[error("invalid utf-8 in text")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload or a status code not allowed on the wire.
    #[error("invalid close frame")]
    BadCloseFrame,
    /// A compressed message whose deflate data is corrupt.
    #[error("invalid deflate data")]
    Inflate,
    /// The peer closed the connection, or sent its close frame already.
    #[error("websocket closed")]
    Closed,
}

impl WsError {
    /// The status code to close the connection with (RFC 6455 §7.4.1), or `None` when no
    /// close frame can or needs to be sent (socket error, connection already closed).
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Io(_) | WsError::Closed => None,
            WsError::MessageTooBig { .. } => Some(1009),
            // 1007 is "data inconsistent with the message type": bad text, bad deflate data.
            WsError::InvalidUtf8 | WsError::Inflate => Some(1007),
            WsError::UnmaskedFrame
            | WsError::ReservedBits
            | WsError::UnknownOpcode(_)
            | WsError::FragmentedControl
            | WsError::ControlTooLong
            | WsError::BadContinuation
            | WsError::InterruptedMessage
            | WsError::BadLength
            | WsError::BadCloseFrame => Some(1002),
        }
    }
}

/// One complete message from the client, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WsMessage {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with its payload (at most 125 bytes) to answer with a pong.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame with its status code, if it had one (its reason text is dropped).
    Close(Option<u16>),
}

// ---------------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------------

/// Parses the request's `Sec-WebSocket-Extensions` header values; returns the parameters and
/// the response header value to send, or `None` when no acceptable permessage-deflate offer
/// exists. Offers are tried in the client's order of preference; one is declined (and the
/// next one tried) when it has an unknown, repeated or invalid parameter (RFC 7692 §7.1), or
/// asks `server_max_window_bits` below 15, which the miniz_oxide backend of flate2 cannot
/// compress with.
pub(crate) fn negotiate_deflate<'a>(
    offers: impl Iterator<Item = &'a str>,
) -> Option<(Deflate, String)> {
    offers.flat_map(|value| value.split(',')).find_map(accept_offer)
}

/// One offer (`name; param; param=value`), accepted or not.
fn accept_offer(offer: &str) -> Option<(Deflate, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    // Each parameter may appear once: server_no_context_takeover, client_no_context_takeover,
    // server_max_window_bits, client_max_window_bits.
    let mut seen = [false; 4];
    for part in parts.filter(|p| !p.is_empty()) {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim_end(), Some(unquote(value.trim_start())?)),
            None => (part, None),
        };
        let slot = if name.eq_ignore_ascii_case("server_no_context_takeover") {
            value.is_none().then_some(0)?
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            value.is_none().then_some(1)?
        } else if name.eq_ignore_ascii_case("server_max_window_bits") {
            // We compress with a 32 KiB window only: a smaller one is a configuration we
            // cannot honour, so the offer is declined.
            (window_bits(value?)? == 15).then_some(2)?
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            // The client may use any window up to 15 bits: we inflate with the full one.
            match value {
                Some(v) => window_bits(v).map(|_| 3)?,
                None => 3,
            }
        } else {
            return None;
        };
        let seen = seen.get_mut(slot)?;
        if *seen {
            return None;
        }
        *seen = true;
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    // A server accepts a server_max_window_bits offer by echoing it with a value no larger
    // (RFC 7692 §7.1.2.1).
    if seen.get(2).copied().unwrap_or(false) {
        response.push_str("; server_max_window_bits=15");
    }
    Some((Deflate, response))
}

/// A parameter value, token or quoted-string (RFC 6455 §9.1), without its quotes.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains('"') && !inner.contains('\\')).then_some(inner)
        }
        None => (!value.contains('"')).then_some(value),
    }
}

/// A window-bits value: a decimal 8..=15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))
}

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

/// A complete server→client frame, compressed (RSV1 set): raw deflate with a fresh context,
/// sync-flushed, trailing `00 00 ff ff` removed (RFC 7692 §7.2.1). Returns `None` when
/// compression does not make it smaller (the caller then sends the plain frame).
///
/// Each call resets a compressor of about 300 KiB kept per thread, so compressing pays off
/// only above some size: socket.io's default threshold is 1024 bytes.
pub(crate) fn encode_compressed_frame(opcode_text: bool, payload: &[u8]) -> Option<Bytes> {
    let opcode = if opcode_text { Opcode::Text } else { Opcode::Binary };
    let first = FIN | RSV1 | opcode.bits();
    let fresh = || Compress::new(Compression::new(COMPRESSION_LEVEL), false);
    COMPRESSOR
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let compress = slot.get_or_insert_with(fresh);
                // Reset before, not after: a previous call may have stopped half-way.
                compress.reset();
                compress_frame(compress, first, payload)
            }
            // Re-entered (cannot happen: nothing here calls back) - use a private one.
            Err(_) => compress_frame(&mut fresh(), first, payload),
        })
        // The thread is being torn down: its compressor is gone.
        .unwrap_or_else(|_| compress_frame(&mut fresh(), first, payload))
}

/// Compresses `payload` into one allocation holding the header and the deflate data.
fn compress_frame(compress: &mut Compress, first: u8, payload: &[u8]) -> Option<Bytes> {
    // Room for the longest header, then the deflate data: the result is only useful when
    // smaller than the payload, and a sync flush ends with DEFLATE_TAIL, so anything that
    // does not fit in payload + tail is not worth finishing.
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER + payload.len() + DEFLATE_TAIL.len());
    out.resize(MAX_SERVER_HEADER, 0);
    compress.compress_vec(payload, &mut out, FlushCompress::Sync).ok()?;
    // All input taken and room left over: the flush is complete.
    if compress.total_in() != payload.len() as u64 || out.len() == out.capacity() {
        return None;
    }
    let data_len = out.len().checked_sub(MAX_SERVER_HEADER + DEFLATE_TAIL.len())?;
    if data_len >= payload.len() || !out.ends_with(&DEFLATE_TAIL) {
        return None;
    }
    out.truncate(MAX_SERVER_HEADER + data_len);
    let (header, header_len) = frame_header(first, data_len);
    let start = MAX_SERVER_HEADER - header_len;
    out.get_mut(start..MAX_SERVER_HEADER)?.copy_from_slice(header.get(..header_len)?);
    // No copy: the vector becomes the shared buffer and the slice skips the unused room.
    Some(Bytes::from(out).slice(start..))
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
fn frame_header(first: u8, len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
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
    fn bits(self) -> u8 {
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

/// Inflates one compressed message (the tail added back), its output bounded by `limit`.
fn inflate(data: &[u8], limit: usize) -> Result<Bytes, WsError> {
    INFLATER
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let inflater = slot.get_or_insert_with(|| Decompress::new(false));
                // A full reset zeroes the window: the inflater is shared by every connection
                // of the thread, and a client that back-references past the start of its
                // message must read zeros, never another connection's data.
                inflater.reset(false);
                inflate_with(inflater, data, limit)
            }
            // Re-entered (cannot happen: nothing here calls back) - use a private one.
            Err(_) => inflate_with(&mut Decompress::new(false), data, limit),
        })
        // The thread is being torn down: its inflater is gone.
        .unwrap_or_else(|_| inflate_with(&mut Decompress::new(false), data, limit))
}

/// Inflates `data` then [`DEFLATE_TAIL`] with a freshly reset `inflater`.
fn inflate_with(inflater: &mut Decompress, data: &[u8], limit: usize) -> Result<Bytes, WsError> {
    let too_big = WsError::MessageTooBig { limit };
    // Never more than limit + 1 bytes of room: one byte over is enough to know.
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).clamp(64, 64 * 1024).min(cap));
    for (mut input, flush) in
        [(data, FlushDecompress::None), (&DEFLATE_TAIL[..], FlushDecompress::Sync)]
    {
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(too_big);
                }
                out.reserve(out.len().max(4096).min(cap - out.len()));
            }
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let status =
                inflater.decompress_vec(input, &mut out, flush).map_err(|_| WsError::Inflate)?;
            let consumed = usize::try_from(inflater.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = inflater.total_out() - out_before;
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > limit {
                return Err(too_big);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL, RFC 7692 §7.2.3.4) ended the message.
                return Ok(Bytes::from(out));
            }
            if out.len() < out.capacity() {
                // Room was left: everything the input gives is out.
                if input.is_empty() {
                    break;
                }
                if consumed == 0 && produced == 0 {
                    // Input left, room left, and no progress: the data is not deflate.
                    return Err(WsError::Inflate);
                }
            }
        }
    }
    Ok(Bytes::from(out))
}

// ---------------------------------------------------------------------------------------
// The connection halves
// ---------------------------------------------------------------------------------------

/// Read half: the socket's read half, a read buffer and the frame parser.
///
/// The read buffer is taken (small) only once the socket is readable, grows with the frame
/// being received, at most doubling what it holds at each step (so a header announcing a
/// large frame commits memory only as the frame's bytes arrive), and is released whenever
/// it is empty before waiting again: an idle reader holds no buffer.
#[derive(Debug)]
pub(crate) struct WsReader {
    /// The socket.
    read: OwnedReadHalf,
    /// Received bytes not yet decoded; unallocated when empty while waiting.
    buf: BytesMut,
    /// Frame decoding and message reassembly.
    parser: FrameParser,
    /// A close frame was returned: nothing more is read.
    closed: bool,
}

impl WsReader {
    /// The reader of an upgraded connection; `already_read` is what the HTTP layer read past
    /// the upgrade request (the start of the first frames, if the client did not wait).
    pub(crate) fn new(read: OwnedReadHalf, already_read: Vec<u8>, cfg: &WsConfig) -> WsReader {
        let buf = if already_read.is_empty() {
            BytesMut::new()
        } else {
            // Takes over the vector's allocation, no copy.
            BytesMut::from(Bytes::from(already_read))
        };
        WsReader { read, buf, parser: FrameParser::new(cfg), closed: false }
    }

    /// The next complete message: fragmented messages reassembled, unmasked, inflated,
    /// UTF-8 checked (text), within `max_message_size`; control frames as they come, even
    /// between fragments. After a close frame (returned once) or end of stream:
    /// `Err(Closed)`.
    ///
    /// Cancel-safe: the only await is for the socket to become readable, and every byte
    /// read is kept in `self` (partial frames in the buffer, fragments in the parser), so a
    /// call dropped inside `select!` loses nothing and the next call goes on.
    #[cfg(test)]
    pub(crate) async fn read(&mut self) -> Result<WsMessage, WsError> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// [`WsReader::read`] as a poll. The waiting state lives in the socket's registration,
    /// not in a future: a session waiting for its client's next message costs nothing
    /// beyond the reader itself.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<WsMessage, WsError>> {
        use std::task::Poll;
        if self.closed {
            return Poll::Ready(Err(WsError::Closed));
        }
        loop {
            if let Some(message) = self.parser.decode(&mut self.buf)? {
                self.closed = matches!(message, WsMessage::Close(_));
                return Poll::Ready(Ok(message));
            }
            if self.buf.is_empty() {
                // Nothing half-received: release the buffer (messages already returned keep
                // the part they were split from) so waiting, however long, holds none.
                self.buf = BytesMut::new();
            }
            match self.read.as_ref().poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
            self.reserve();
            match self.read.try_read_buf(&mut self.buf) {
                Ok(0) => return Poll::Ready(Err(WsError::Closed)),
                Ok(_) => {}
                // Readiness was stale (now cleared): poll again, which registers the task.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(WsError::Io(e))),
            }
        }
    }

    /// Makes room for the next read: at least [`READ_MIN`] (a few small frames per
    /// syscall), at most what the frame in progress still lacks, and never more than the
    /// buffer already holds (or [`READ_GROW_MIN`]) at once.
    fn reserve(&mut self) {
        let len = self.buf.len();
        let missing = self.parser.needed().saturating_sub(len);
        let want = missing.min(len.max(READ_GROW_MIN)).max(READ_MIN);
        if self.buf.capacity() - len < want {
            self.buf.reserve(want);
        }
    }
}

/// Write half: a queue of shared frames written with vectored sends (`sendmsg`), many frames
/// per syscall.
#[derive(Debug)]
pub(crate) struct WsWriter {
    /// The socket.
    write: OwnedWriteHalf,
    /// Its descriptor, for the direct send path ([`send_now`]).
    fd: RawFd,
    /// Complete frames, the front one possibly partly written (advanced past what was).
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    pending: usize,
    /// A close frame was queued: nothing more may be sent (RFC 6455 §5.5.1).
    closing: bool,
}

impl WsWriter {
    /// The writer of an upgraded connection.
    pub(crate) fn new(write: OwnedWriteHalf) -> WsWriter {
        let fd = write.as_ref().as_raw_fd();
        WsWriter { write, fd, queue: VecDeque::new(), pending: 0, closing: false }
    }

    /// Queues a complete pre-encoded frame (no copy: the `Bytes` is kept). Ignored once a
    /// close frame was queued.
    pub(crate) fn queue(&mut self, frame: Bytes) {
        if self.closing || frame.is_empty() {
            return;
        }
        self.pending += frame.len();
        self.queue.push_back(frame);
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Frames queued (the front one possibly partly written).
    pub(crate) fn queued_frames(&self) -> usize {
        self.queue.len()
    }

    /// [`WsWriter::flush`] as a poll: writes what the socket takes and, when it takes no
    /// more, registers the task for writability.
    pub(crate) fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), WsError>> {
        use std::task::Poll;
        loop {
            match self.try_flush() {
                Ok(true) => return Poll::Ready(Ok(())),
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.write.as_ref().poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes everything queued, in as few syscalls as possible (up to [`MAX_IOV`] frames per
    /// vectored send, going on from where a partial write stopped).
    ///
    /// Cancel-safe: the only await is for the socket to become writable, and what each
    /// write took is removed from the queue before anything else, so a cancelled flush has
    /// written a prefix of the queue and the next one resumes after it, without loss or
    /// duplication.
    pub(crate) async fn flush(&mut self) -> Result<(), WsError> {
        while !self.try_flush()? {
            self.write.writable().await?;
        }
        Ok(())
    }

    /// Writes what it can of the queue now, without waiting: the common case of a socket
    /// with room in its send buffer costs one `send` or `sendmsg` and no extra wake-up. What
    /// the kernel does not take stays queued for [`WsWriter::flush`]. True once the queue is
    /// empty.
    pub(crate) fn try_flush(&mut self) -> Result<bool, WsError> {
        while !self.queue.is_empty() {
            // The I/O vectors are built in place, in an array just big enough for the common
            // case (a collected `SmallVec` of 64 would be copied around: a kilobyte per write).
            let result = if self.queue.len() <= SMALL_IOV {
                let mut iov = [IoSlice::new(&[]); SMALL_IOV];
                for (slot, frame) in iov.iter_mut().zip(self.queue.iter()) {
                    *slot = IoSlice::new(frame);
                }
                write_vectored(self.fd, &self.write, &iov[..self.queue.len()])
            } else {
                let mut iov: SmallVec<[IoSlice<'_>; MAX_IOV]> = SmallVec::new();
                iov.extend(self.queue.iter().take(MAX_IOV).map(|frame| IoSlice::new(frame)));
                write_vectored(self.fd, &self.write, &iov)
            };
            match result {
                Ok(0) => return Err(WsError::Io(io::ErrorKind::WriteZero.into())),
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(WsError::Io(e)),
            }
        }
        // The queue's allocation is kept for the next write (a busy connection would
        // otherwise allocate and free it per write); the shard's idle sweep releases it
        // ([`WsWriter::release_idle`]).
        Ok(true)
    }

    /// Releases the queue's memory if nothing is queued: an idle connection holds none.
    pub(crate) fn release_idle(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Whether the queue holds memory.
    pub(crate) fn holds_queue(&self) -> bool {
        self.queue.capacity() > 0
    }

    /// Drops every queued frame but the front one (which may be partly written already), so
    /// a close frame queued next still follows whole frames.
    pub(crate) fn truncate_unsent(&mut self) {
        self.queue.truncate(1);
        self.pending = self.queue.front().map_or(0, Bytes::len);
    }

    /// Drops `written` bytes off the front of the queue.
    fn consume(&mut self, mut written: usize) {
        self.pending = self.pending.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if front.len() > written {
                // Only this connection's view of the shared frame moves.
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }

    /// Queues a close frame with `code` (once, however often this is called) and flushes,
    /// then shuts down the write side. Bound it with a timeout: a client that does not read
    /// would keep it waiting. Cancel-safe like [`WsWriter::flush`].
    pub(crate) async fn close(&mut self, code: u16) -> Result<(), WsError> {
        if !self.closing {
            self.queue(encode_close_frame(code));
            self.closing = true;
        }
        self.flush().await?;
        self.write.shutdown().await?;
        Ok(())
    }
}

/// Writes `iov` to the socket: straight through [`send_now`], and through tokio only when
/// the kernel refuses (so tokio's readiness, which the writer waits on, learns the socket is
/// full).
fn write_vectored(fd: RawFd, write: &OwnedWriteHalf, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    match send_now(fd, iov) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => write.try_write_vectored(iov),
        r => r,
    }
}

/// One non-blocking `send` (one frame) or `sendmsg` (several) on a connected socket.
///
/// Hand-written on purpose: this is the one system call per delivery at low rates (every
/// frame of a 1,000-member broadcast is a write to a different socket), and tokio's path to
/// it (`try_write_vectored`: its readiness check and bookkeeping, then `writev` through the
/// VFS layer) cost about a tenth of the shard's time in a profile of that load. The socket
/// stays registered with tokio; a refused write goes through tokio again
/// ([`write_vectored`]), so waiting for writability works as before.
fn send_now(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    loop {
        let n = match iov {
            // SAFETY: the pointer and length describe a slice borrowed for the whole call.
            [one] => unsafe { libc::send(fd, one.as_ptr().cast(), one.len(), flags) },
            _ => {
                // SAFETY: an all-zero msghdr is valid (no address, no control data); IoSlice
                // is ABI-compatible with iovec on Unix (std's guarantee), and the slices are
                // borrowed for the whole call; the kernel only reads them.
                unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                    msg.msg_iovlen = iov.len() as _;
                    libc::sendmsg(fd, &msg, flags)
                }
            }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with the given first byte.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
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
    fn mask_frame(frame: &[u8]) -> Vec<u8> {
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

    fn cfg(deflate: bool) -> WsConfig {
        WsConfig { max_message_size: 1 << 20, deflate: deflate.then_some(Deflate) }
    }

    /// Every message decodable from `bytes`, fed in one piece.
    fn decode_all(cfg: &WsConfig, bytes: &[u8]) -> Result<Vec<WsMessage>, WsError> {
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
    fn decode_pieces(cfg: &WsConfig, pieces: &[&[u8]]) -> Result<Vec<WsMessage>, WsError> {
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

    fn decode_one(cfg: &WsConfig, bytes: &[u8]) -> Result<WsMessage, WsError> {
        let mut all = decode_all(cfg, bytes)?;
        assert_eq!(all.len(), 1, "{all:?}");
        Ok(all.remove(0))
    }

    fn err(bytes: &[u8]) -> WsError {
        decode_all(&cfg(false), bytes).expect_err("must fail")
    }

    fn text(s: &str) -> WsMessage {
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
    fn rfc7692_compressed_hello() {
        let frame = mask_frame(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(decode_one(&cfg(true), &frame).unwrap(), text("Hello"));
        // Not negotiated: RSV1 is a reserved bit.
        assert!(matches!(err(&frame), WsError::ReservedBits));
    }

    #[test]
    fn rfc7692_compressed_fragments() {
        let mut bytes = mask_frame(&[0x41, 0x03, 0xf2, 0x48, 0xcd]);
        bytes.extend(client_frame(0x89, b"between"));
        bytes.extend(mask_frame(&[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]));
        let expected = vec![WsMessage::Ping(Bytes::from_static(b"between")), text("Hello")];
        assert_eq!(decode_all(&cfg(true), &bytes).unwrap(), expected);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(decode_pieces(&cfg(true), &[a, b]).unwrap(), expected, "split at {at}");
        }
    }

    #[test]
    fn rfc7692_stored_block_and_final_block() {
        let stored = [0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(decode_one(&cfg(true), &mask_frame(&stored)).unwrap(), text("Hello"));
        let bfinal = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(decode_one(&cfg(true), &mask_frame(&bfinal)).unwrap(), text("Hello"));
    }

    #[test]
    fn no_window_is_kept_between_messages() {
        // RFC 7692 §7.2.3.2: the second "Hello" back-references the first message. Without
        // context takeover it must not decode to "Hello" (the window was reset).
        let mut bytes = mask_frame(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        bytes.extend(mask_frame(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]));
        match decode_all(&cfg(true), &bytes) {
            Ok(messages) => {
                assert_eq!(messages[0], text("Hello"));
                assert_ne!(messages[1], text("Hello"));
            }
            Err(e) => assert!(matches!(e, WsError::Inflate), "{e:?}"),
        }
    }

    #[test]
    fn compressed_round_trip() {
        let payload: String = (0..2000)
            .map(|i| format!("{{\"event\":\"tick\",\"n\":{i}}}"))
            .collect::<Vec<_>>()
            .concat();
        let frame = encode_compressed_frame(true, payload.as_bytes()).expect("compressible");
        assert!(frame.len() < payload.len() / 4, "{} vs {}", frame.len(), payload.len());
        assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
        assert_eq!(frame[1] & MASK, 0, "server frames are unmasked");
        assert!(!frame.ends_with(&DEFLATE_TAIL));
        let got = decode_one(&cfg(true), &mask_frame(&frame)).unwrap();
        assert_eq!(got, text(&payload));

        // The same deflate data over several fragments, the first with RSV1.
        assert_eq!(frame[1], 126, "16-bit length form");
        let data = &frame[4..];
        let thirds = data.len() / 3;
        let mut bytes = client_frame(0x41, &data[..thirds]);
        bytes.extend(client_frame(0x00, &data[thirds..2 * thirds]));
        bytes.extend(client_frame(0x80, &data[2 * thirds..]));
        assert_eq!(decode_one(&cfg(true), &bytes).unwrap(), text(&payload));

        let binary = encode_compressed_frame(false, &[0u8; 10_000]).unwrap();
        assert_eq!(binary[0], 0xc2);
        let got = decode_one(&cfg(true), &mask_frame(&binary)).unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::from(vec![0u8; 10_000])));

        // Compressing again gives the same bytes: nothing is carried over between calls.
        assert_eq!(encode_compressed_frame(true, payload.as_bytes()).unwrap(), frame);
    }

    #[test]
    fn compression_that_does_not_shrink_is_refused() {
        assert_eq!(encode_compressed_frame(true, b""), None);
        assert_eq!(encode_compressed_frame(true, b"a"), None);
        // xorshift noise does not compress.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(encode_compressed_frame(false, &noise), None);
    }

    #[test]
    fn inflated_size_is_bounded() {
        let bomb = encode_compressed_frame(false, &vec![0u8; 1 << 20]).unwrap();
        assert!(bomb.len() < 2000);
        let small = WsConfig { max_message_size: 10_000, deflate: Some(Deflate) };
        let e = decode_all(&small, &mask_frame(&bomb)).unwrap_err();
        assert!(matches!(e, WsError::MessageTooBig { limit: 10_000 }), "{e:?}");
        // Exactly at the limit is fine.
        let exact = encode_compressed_frame(false, &vec![0u8; 10_000]).unwrap();
        assert!(decode_all(&small, &mask_frame(&exact)).is_ok());
        let over = encode_compressed_frame(false, &vec![0u8; 10_001]).unwrap();
        assert!(decode_all(&small, &mask_frame(&over)).is_err());
    }

    #[test]
    fn corrupt_deflate_data_is_an_error() {
        // Block type 3 is invalid.
        let frame = client_frame(0xc1, &[0xff, 0xff, 0xff]);
        assert!(matches!(decode_all(&cfg(true), &frame), Err(WsError::Inflate)));
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
    fn errors_map_to_close_codes() {
        assert_eq!(WsError::MessageTooBig { limit: 1 }.close_code(), Some(1009));
        assert_eq!(WsError::InvalidUtf8.close_code(), Some(1007));
        assert_eq!(WsError::UnmaskedFrame.close_code(), Some(1002));
        assert_eq!(WsError::Closed.close_code(), None);
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

    const RESPONSE: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn negotiate(values: &[&str]) -> Option<String> {
        negotiate_deflate(values.iter().copied()).map(|(Deflate, response)| response)
    }

    #[test]
    fn negotiation_accepts_common_offers() {
        let accepted = [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=15; server_no_context_takeover",
            "permessage-deflate;client_no_context_takeover;client_max_window_bits=\"10\"",
            "Permessage-Deflate ; Server_No_Context_Takeover",
        ];
        for offer in accepted {
            assert_eq!(negotiate(&[offer]).as_deref(), Some(RESPONSE), "{offer}");
        }
        let with_bits = negotiate(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert_eq!(with_bits, format!("{RESPONSE}; server_max_window_bits=15"));
    }

    #[test]
    fn negotiation_declines_bad_offers_and_tries_the_next() {
        let declined = [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=\"15",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=15",
            "permessage-deflate; unknown_param",
        ];
        for offer in declined {
            assert_eq!(negotiate(&[offer]), None, "{offer}");
        }
        // Several offers in one value, and over several header lines: the first acceptable.
        let list = concat!(
            "permessage-deflate; server_max_window_bits=10, ",
            "permessage-deflate; server_max_window_bits=15"
        );
        assert_eq!(negotiate(&[list]), Some(format!("{RESPONSE}; server_max_window_bits=15")));
        let lines =
            ["foo, permessage-deflate; bogus", "permessage-deflate; client_max_window_bits"];
        assert_eq!(negotiate(&lines).as_deref(), Some(RESPONSE));
        assert_eq!(negotiate(&[]), None);
    }

    /// A connected pair: our reader on one end, the raw client socket on the other.
    async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn idle_reader_holds_no_buffer() {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, server) = socket_pair().await;
        let (read, _write) = server.into_split();
        let first = client_frame(0x81, b"first");
        // The upgrade left part of the first frame read already.
        let mut reader = WsReader::new(read, first[..3].to_vec(), &cfg(false));
        client.write_all(&first[3..]).await.unwrap();
        assert_eq!(reader.read().await.unwrap(), text("first"));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read());
        assert!(waiting.await.is_err(), "nothing was sent");
        assert_eq!(reader.buf.capacity(), 0);
        // A large message grows the buffer; idle again, it is released.
        let big = client_frame(0x82, &vec![5u8; 300_000]);
        client.write_all(&big).await.unwrap();
        let got = reader.read().await.unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::from(vec![5u8; 300_000])));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read());
        assert!(waiting.await.is_err());
        assert_eq!(reader.buf.capacity(), 0);
        drop(client);
        assert!(matches!(reader.read().await, Err(WsError::Closed)));
    }
    /// Frames `0..n`, each 1 KiB of its own index byte.
    fn frames(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i as u8; 1024])).collect()
    }

    /// A peer that stops reading fills the socket: the direct send path reports a refused
    /// write (`try_flush` false), the writer then waits on tokio's readiness, and once the
    /// peer drains, everything arrives whole and in order (nothing lost, sent twice or
    /// stuck waiting for a readiness event tokio never saw).
    #[tokio::test]
    async fn refused_write_waits_for_the_peer_and_resumes_in_order() {
        use tokio::io::AsyncReadExt as _;
        let (mut client, server) = socket_pair().await;
        let (_read, write) = server.into_split();
        let mut w = WsWriter::new(write);
        // Far more than loopback socket buffers hold (a few MiB at most).
        let sent = frames(16 * 1024);
        for f in &sent {
            w.queue(f.clone());
        }
        assert!(!w.try_flush().unwrap(), "16 MiB cannot fit in the socket buffers");
        assert!(w.pending_bytes() > 0);
        let expected: Vec<u8> = sent.iter().flat_map(|f| f.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            got == expected
        });
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(20), w.flush());
        flushed.await.expect("flush finished once the peer read").unwrap();
        assert_eq!(w.pending_bytes(), 0);
        assert_eq!(w.queued_frames(), 0);
        assert!(reader.await.unwrap(), "the peer got every byte, in order");
    }

    /// Several frames go out in one vectored send; one frame in a plain send.
    #[test]
    fn send_now_writes_one_or_several_slices() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        assert_eq!(send_now(fd, &[IoSlice::new(b"one")]).unwrap(), 3);
        let n = send_now(fd, &[IoSlice::new(b"tw"), IoSlice::new(b"o"), IoSlice::new(b"3")]);
        assert_eq!(n.unwrap(), 4);
        let mut got = [0u8; 7];
        std::io::Read::read_exact(&mut b, &mut got).unwrap();
        assert_eq!(&got, b"onetwo3");
        drop(b);
        let e = send_now(fd, &[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "no SIGPIPE, an error");
    }
}

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
//!
//! ## Layout
//!
//! - `frame`: the sans-IO frame codec (encoding server frames, `FrameParser`);
//! - `deflate`: permessage-deflate negotiation, compression and inflation;
//! - `reader`: [`WsReader`], the read half;
//! - `writer`: [`WsWriter`], the write half.

mod deflate;
mod frame;
mod reader;
mod writer;

use std::io;

use bytes::Bytes;

pub(crate) use deflate::{encode_compressed_frame, negotiate_deflate, Deflate};
pub(crate) use frame::{encode_binary_frame, encode_pong_frame, encode_text_frame, FrameParser};
pub(crate) use reader::WsReader;
pub(crate) use writer::WsWriter;

/// How the connection's WebSocket layer behaves, fixed at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsConfig {
    /// The largest message accepted from the client, after reassembly and after inflating.
    pub(crate) max_message_size: usize,
    /// permessage-deflate, when it was negotiated.
    pub(crate) deflate: Option<Deflate>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_close_codes() {
        assert_eq!(WsError::MessageTooBig { limit: 1 }.close_code(), Some(1009));
        assert_eq!(WsError::InvalidUtf8.close_code(), Some(1007));
        assert_eq!(WsError::UnmaskedFrame.close_code(), Some(1002));
        assert_eq!(WsError::Closed.close_code(), None);
    }
}

//! Drivers over the internal parsers for the fuzz targets in fuzz/ (not a public API: hidden
//! from the docs and free to change): the WebSocket frame parser with its inflater, the
//! permessage-deflate negotiation and the handshake's query parsing, which live in the
//! transport layer and are not public.
//!
//! Layer: the top (it may drive any layer below).

use bytes::BytesMut;

use crate::proto::sid::Sid;
use crate::transport::http::parse_query;
use crate::transport::ws::{negotiate_deflate, Deflate, FrameParser, WsConfig, WsMessage};

/// What a client's WebSocket byte stream decodes to: its messages, each as its kind (`t`ext,
/// `b`inary, p`i`ng, p`o`ng, `c`lose) and payload (a close: its code), then the error that
/// ended it, if one did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WsOutcome {
    /// The messages, in order.
    pub messages: Vec<(char, Vec<u8>)>,
    /// The error's text, when the stream was refused.
    pub error: Option<String>,
}

/// Feeds `chunks`, one after the other, to a frame parser for a connection with
/// `max_message_size` (and permessage-deflate when `deflate`), as the reader does with what
/// each read returns.
pub fn ws_decode(chunks: &[&[u8]], deflate: bool, max_message_size: usize) -> WsOutcome {
    let cfg = WsConfig { max_message_size, deflate: deflate.then_some(Deflate) };
    let mut parser = FrameParser::new(&cfg);
    let mut buf = BytesMut::new();
    let mut out = WsOutcome::default();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.decode(&mut buf) {
                Ok(Some(m)) => out.messages.push(match m {
                    WsMessage::Text(b) => ('t', b.to_vec()),
                    WsMessage::Binary(b) => ('b', b.to_vec()),
                    WsMessage::Ping(b) => ('i', b.to_vec()),
                    WsMessage::Pong(b) => ('o', b.to_vec()),
                    WsMessage::Close(c) => {
                        ('c', c.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default())
                    }
                }),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
    }
    out
}

/// The permessage-deflate answer to `Sec-WebSocket-Extensions` values, if one is accepted.
pub fn ws_negotiate(values: &[&str]) -> Option<String> {
    negotiate_deflate(values.iter().copied()).map(|(_, answer)| answer)
}

/// What the handshake reads of a query string.
#[derive(Debug)]
pub struct HandshakeQuery {
    /// `EIO`.
    pub eio: Option<String>,
    /// `transport`.
    pub transport: Option<String>,
    /// `sid`, and the shard it names when it parses as a session id.
    pub sid: Option<(String, Option<u8>)>,
    /// How many pairs the query has.
    pub pairs: usize,
}

/// Parses a query string as the handshake does.
pub fn handshake_query(query: &str) -> HandshakeQuery {
    let q = parse_query(Some(query));
    let sid = q.sid.map(|s| {
        let shard = Sid::parse(&s).map(|sid| sid.shard());
        (s, shard)
    });
    HandshakeQuery { eio: q.eio, transport: q.transport, sid, pairs: q.all.len() }
}

//! The per-connection outbox: encoded packets waiting to be written, bounded, drained in
//! batches by the connection's writer.
//!
//! A packet is encoded once (text packet with its Engine.IO type prefix, plus binary
//! attachments) and shared by refcount between every connection it goes to: queuing it for
//! one more recipient costs one atomic increment.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::proto::sio;

/// One outgoing Socket.IO packet in its wire form.
#[derive(Debug)]
pub(crate) struct Packet {
    /// The Engine.IO text packet, type prefix included (`42["ev"]`).
    pub text: Bytes,
    /// Binary attachments, sent as binary messages after the text.
    pub binary: Vec<Bytes>,
    /// May be compressed (WebSocket per-message deflate, when negotiated).
    pub compress: bool,
}

/// A shared handle on an encoded packet.
#[derive(Debug, Clone)]
pub(crate) struct Out(Arc<Packet>);

impl Out {
    fn new(text: Bytes, binary: Vec<Bytes>, compress: bool) -> Out {
        Out(Arc::new(Packet { text, binary, compress }))
    }

    /// Encodes an EVENT (BINARY_EVENT when there are attachments).
    pub(crate) fn event(
        nsp: &str,
        event: &str,
        values: &[Value],
        binary: Vec<Bytes>,
        ack: Option<u64>,
        compress: bool,
    ) -> Out {
        let mut buf = BytesMut::with_capacity(32 + event.len());
        buf.put_u8(b'4');
        sio::encode_event(&mut buf, nsp, event, values, ack, binary.len());
        Out::new(buf.freeze(), binary, compress)
    }

    /// Encodes an ACK (BINARY_ACK when there are attachments).
    pub(crate) fn ack(nsp: &str, id: u64, values: &[Value], binary: Vec<Bytes>) -> Out {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_u8(b'4');
        sio::encode_ack(&mut buf, nsp, id, values, binary.len());
        Out::new(buf.freeze(), binary, true)
    }

    /// Encodes any other Socket.IO packet (CONNECT, DISCONNECT, CONNECT_ERROR).
    pub(crate) fn packet(p: &sio::Packet) -> Out {
        let mut buf = BytesMut::with_capacity(32);
        buf.put_u8(b'4');
        p.encode(&mut buf);
        Out::new(buf.freeze(), Vec::new(), true)
    }

    /// The text part.
    pub(crate) fn text(&self) -> &Bytes {
        &self.0.text
    }

    /// The binary attachments.
    pub(crate) fn binary(&self) -> &[Bytes] {
        &self.0.binary
    }

    /// Whether the packet may be compressed.
    #[allow(dead_code)] // read by the WebSocket writer once per-message deflate is negotiated
    pub(crate) fn compress(&self) -> bool {
        self.0.compress
    }
}

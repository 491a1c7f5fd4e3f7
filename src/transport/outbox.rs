//! The per-connection outbox: encoded frames waiting to be written, bounded, drained in
//! batches by the connection's writer.
//!
//! A frame is encoded once (text packet with its Engine.IO type prefix, plus binary
//! attachments) and shared by refcount between every connection it goes to.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::proto::sio;

/// One outgoing Socket.IO packet in its wire form.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// An Engine.IO text packet, type prefix included (`42["ev"]`).
    Text(Bytes),
    /// A text packet followed by its binary attachments.
    WithBinary(Arc<(Bytes, Vec<Bytes>)>),
}

impl Out {
    fn new(text: Bytes, binary: Vec<Bytes>) -> Out {
        if binary.is_empty() {
            Out::Text(text)
        } else {
            Out::WithBinary(Arc::new((text, binary)))
        }
    }

    /// Encodes an EVENT (BINARY_EVENT when there are attachments).
    pub(crate) fn event(
        nsp: &str,
        event: &str,
        values: &[Value],
        binary: Vec<Bytes>,
        ack: Option<u64>,
    ) -> Out {
        let mut buf = BytesMut::with_capacity(32 + event.len());
        buf.put_u8(b'4');
        sio::encode_event(&mut buf, nsp, event, values, ack, binary.len());
        Out::new(buf.freeze(), binary)
    }

    /// Encodes an ACK (BINARY_ACK when there are attachments).
    pub(crate) fn ack(nsp: &str, id: u64, values: &[Value], binary: Vec<Bytes>) -> Out {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_u8(b'4');
        sio::encode_ack(&mut buf, nsp, id, values, binary.len());
        Out::new(buf.freeze(), binary)
    }

    /// Encodes any other Socket.IO packet (CONNECT, DISCONNECT, CONNECT_ERROR).
    pub(crate) fn packet(p: &sio::Packet) -> Out {
        let mut buf = BytesMut::with_capacity(32);
        buf.put_u8(b'4');
        p.encode(&mut buf);
        Out::Text(buf.freeze())
    }

    /// The text part.
    pub(crate) fn text(&self) -> &Bytes {
        match self {
            Out::Text(t) => t,
            Out::WithBinary(a) => &a.0,
        }
    }

    /// The binary attachments.
    pub(crate) fn binary(&self) -> &[Bytes] {
        match self {
            Out::Text(_) => &[],
            Out::WithBinary(a) => &a.1,
        }
    }
}

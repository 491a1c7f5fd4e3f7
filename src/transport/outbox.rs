//! The per-connection outbox: encoded packets waiting to be written, bounded, drained in
//! batches by the connection's writer.
//!
//! A packet is encoded once, on the thread that emits it: the Engine.IO text packet, built
//! directly inside its WebSocket frame (server frames are unmasked, so one frame serves every
//! recipient), the binary attachments' frames, and, when per-message deflate is on, the
//! compressed frame. Every recipient shares these bytes by refcount: queuing the packet for one
//! more connection costs one atomic increment, and the long-polling path reads the text out of
//! the same buffer.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use smallvec::SmallVec;

use crate::proto::json::Verbatim;
use crate::proto::{eio3, sio, sio_msgpack};
use crate::transport::ws;

/// Room left in front of the text for the largest WebSocket header (2 + 8 bytes).
const HEADER_ROOM: usize = 10;

/// One outgoing Socket.IO packet in its wire forms.
#[derive(Debug)]
pub(crate) struct Packet {
    /// The Engine.IO text packet, type prefix included (`42["ev"]`): a slice of `frames[0]`.
    /// Empty with the MessagePack parser, whose packet is one binary message.
    pub text: Bytes,
    /// Binary messages, sent after the text (long-polling form): the attachments, or the
    /// MessagePack packet.
    pub binary: Vec<Bytes>,
    /// WebSocket frames: the text frame, then one binary frame per attachment (or the one
    /// binary frame of a MessagePack packet).
    pub frames: SmallVec<[Bytes; 1]>,
    /// The first frame compressed (RSV1), when deflate was asked for and it is smaller.
    pub deflated: Option<Bytes>,
    /// The emit allows compression (`compress(false)` was not asked): a polling response
    /// holding it may be compressed (`http_compression`).
    pub compress: bool,
    /// Engine.IO v3 WebSocket frames of the binary messages (the type byte 4 in front of
    /// each), made the first time the packet goes to a v3 connection: still once per
    /// packet, however many such connections it reaches.
    pub v3_binary: OnceLock<Box<[Bytes]>>,
}

/// How a WebSocket connection frames its binary messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Framing {
    /// Engine.IO v4: a binary frame is the data.
    #[default]
    V4,
    /// Engine.IO v3: a binary frame is the type byte 4, then the data.
    V3,
    /// Engine.IO v3 with `b64=1` on the WebSocket URL: binary as `b4` + base64 text frames.
    V3Base64,
}

/// How to encode a packet beyond its text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Encoding {
    /// Also build the compressed text frame (per-message deflate is on, the emit allows
    /// compression, and the text is at least the threshold).
    pub deflate: bool,
    /// The size from which a text frame is compressed.
    pub threshold: usize,
    /// Encode with the MessagePack parser (`Parser::MsgPack`) instead of the default one.
    pub msgpack: bool,
    /// The emit allows compression (socket.io's `compress` flag, on unless
    /// `compress(false)`), whether or not any is configured.
    pub compress: bool,
}

/// A shared handle on an encoded packet.
#[derive(Debug, Clone)]
pub(crate) struct Out(Arc<Packet>);

/// Starts a buffer with room for a frame header in front.
fn frame_buffer(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADER_ROOM + capacity);
    buf.put_bytes(0, HEADER_ROOM);
    buf
}

/// Writes the header of an unfragmented, unmasked frame (`first`: FIN and the opcode) just
/// before the payload that starts at `HEADER_ROOM`, and returns (whole frame, payload).
fn finish_frame(mut buf: BytesMut, first: u8) -> (Bytes, Bytes) {
    let len = buf.len() - HEADER_ROOM;
    let mut header = [0u8; HEADER_ROOM];
    header[0] = first;
    let hlen = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = HEADER_ROOM - hlen;
    buf[start..HEADER_ROOM].copy_from_slice(&header[..hlen]);
    let all = buf.freeze();
    (all.slice(start..), all.slice(HEADER_ROOM..))
}

/// The buffer grew by doubling while the arguments were written: up to twice the packet is
/// allocated, and the packet lives as long as the last outbox (and, with connection state
/// recovery, the replay log) holding it. Past a quarter wasted it is copied once, per
/// packet, not per recipient, into an allocation of its size.
fn trimmed(buf: BytesMut) -> BytesMut {
    if buf.capacity() - buf.len() > buf.len() / 4 + 64 {
        BytesMut::from(&buf[..])
    } else {
        buf
    }
}

impl Out {
    fn new(buf: BytesMut, binary: Vec<Bytes>, enc: Encoding) -> Out {
        let (frame, text) = finish_frame(trimmed(buf), 0x81);
        let deflated = (enc.deflate && text.len() >= enc.threshold)
            .then(|| ws::encode_compressed_frame(true, &text))
            .flatten();
        let mut frames = SmallVec::with_capacity(1 + binary.len());
        frames.push(frame);
        frames.extend(binary.iter().map(|b| ws::encode_binary_frame(b)));
        Out(Arc::new(Packet {
            text,
            binary,
            frames,
            deflated,
            compress: enc.compress,
            v3_binary: OnceLock::new(),
        }))
    }

    /// A MessagePack packet written after `HEADER_ROOM` in `buf`: one binary message.
    fn msgpack(buf: BytesMut, enc: Encoding) -> Out {
        let (frame, payload) = finish_frame(trimmed(buf), 0x82);
        let deflated = (enc.deflate && payload.len() >= enc.threshold)
            .then(|| ws::encode_compressed_frame(false, &payload))
            .flatten();
        let mut frames = SmallVec::new();
        frames.push(frame);
        Out(Arc::new(Packet {
            text: Bytes::new(),
            binary: vec![payload],
            frames,
            deflated,
            compress: enc.compress,
            v3_binary: OnceLock::new(),
        }))
    }

    /// Encodes an EVENT (BINARY_EVENT when there are attachments).
    pub(crate) fn event(
        nsp: &str,
        event: &str,
        values: &[Value],
        verbatim: &Verbatim,
        binary: Vec<Bytes>,
        ack: Option<u64>,
        enc: Encoding,
    ) -> Out {
        Out::event_with_offset(nsp, event, values, verbatim, binary, ack, enc, None)
    }

    /// [`Out::event`] whose last argument is a recovery offset, when `offset` is set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn event_with_offset(
        nsp: &str,
        event: &str,
        values: &[Value],
        verbatim: &Verbatim,
        binary: Vec<Bytes>,
        ack: Option<u64>,
        enc: Encoding,
        offset: Option<&str>,
    ) -> Out {
        let extra = offset.map_or(0, |o| o.len() + 3);
        let mut buf = frame_buffer(32 + event.len() + extra);
        if enc.msgpack {
            sio_msgpack::encode_event(&mut buf, nsp, event, values, &binary, ack, offset);
            return Out::msgpack(buf, enc);
        }
        buf.put_u8(b'4');
        sio::encode_event_with_offset(
            &mut buf,
            nsp,
            event,
            values,
            verbatim,
            ack,
            binary.len(),
            offset,
        );
        Out::new(buf, binary, enc)
    }

    /// Encodes an ACK (BINARY_ACK when there are attachments).
    pub(crate) fn ack(
        nsp: &str,
        id: u64,
        values: &[Value],
        verbatim: &Verbatim,
        binary: Vec<Bytes>,
        enc: Encoding,
    ) -> Out {
        let mut buf = frame_buffer(16);
        if enc.msgpack {
            sio_msgpack::encode_ack(&mut buf, nsp, id, values, &binary);
            return Out::msgpack(buf, enc);
        }
        buf.put_u8(b'4');
        sio::encode_ack(&mut buf, nsp, id, values, verbatim, binary.len());
        Out::new(buf, binary, enc)
    }

    /// Encodes any other Socket.IO packet (CONNECT, DISCONNECT, CONNECT_ERROR), never
    /// compressed.
    pub(crate) fn packet(p: &sio::Packet, enc: Encoding) -> Out {
        let enc = Encoding { deflate: false, ..enc };
        let mut buf = frame_buffer(32);
        if enc.msgpack {
            sio_msgpack::encode(&mut buf, p, &[]);
            return Out::msgpack(buf, enc);
        }
        buf.put_u8(b'4');
        p.encode(&mut buf);
        Out::new(buf, Vec::new(), enc)
    }

    /// Bytes this packet puts on the wire (uncompressed), for the outbox byte limit.
    #[inline]
    pub(crate) fn wire_len(&self) -> usize {
        self.0.text.len() + self.0.binary.iter().map(Bytes::len).sum::<usize>()
    }

    /// The text part (long-polling); empty for a MessagePack packet.
    pub(crate) fn text(&self) -> &Bytes {
        &self.0.text
    }

    /// Whether a polling response holding this packet may be compressed.
    pub(crate) fn compressible(&self) -> bool {
        self.0.compress
    }

    /// How many WebSocket messages the packet is.
    pub(crate) fn messages(&self) -> usize {
        self.0.frames.len()
    }

    /// The binary messages after the text (long-polling): attachments, or the MessagePack
    /// packet.
    pub(crate) fn binary(&self) -> &[Bytes] {
        &self.0.binary
    }

    /// The WebSocket frames to write to a connection framed as `framing`, compressed when
    /// `deflate` was negotiated and a compressed form exists. Only the rare v3 base64 form
    /// is built for the recipient (an allocation per frame); the others are shared.
    #[inline]
    pub(crate) fn frames_for(&self, framing: Framing, deflate: bool, mut f: impl FnMut(Bytes)) {
        match framing {
            Framing::V4 => self.frames(deflate).for_each(|b| f(b.clone())),
            Framing::V3 => {
                let p = &*self.0;
                if !p.text.is_empty() {
                    if let Some(first) = self.frames(deflate).next() {
                        f(first.clone());
                    }
                }
                let bins = p.v3_binary.get_or_init(|| {
                    p.binary
                        .iter()
                        .map(|b| ws::encode_binary_frame(&eio3::binary_frame_payload(b)))
                        .collect()
                });
                bins.iter().for_each(|b| f(b.clone()));
            }
            Framing::V3Base64 => {
                let p = &*self.0;
                if !p.text.is_empty() {
                    if let Some(first) = self.frames(deflate).next() {
                        f(first.clone());
                    }
                }
                for b in &p.binary {
                    f(ws::encode_text_frame(&eio3::binary_as_text(b)));
                }
            }
        }
    }

    /// The WebSocket frames to write, compressed when `deflate` was negotiated and a
    /// compressed form exists.
    #[inline]
    pub(crate) fn frames(&self, deflate: bool) -> impl Iterator<Item = &Bytes> {
        let p = &*self.0;
        // `split_first`, not `frames[0]` and `frames[1..]`: no bounds checks (and no panic
        // path) on the delivery path, whatever the inliner makes of the caller.
        let (plain, rest) = match p.frames.split_first() {
            Some((f, rest)) => (Some(f), rest),
            None => (None, &[][..]),
        };
        let first = match (&p.deflated, deflate) {
            (Some(d), true) => Some(d),
            _ => plain,
        };
        first.into_iter().chain(rest.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_large_packet_copied_to_its_size_is_still_one_frame() {
        let big = "x".repeat(5000);
        let out = Out::event(
            "/",
            "big",
            &[json!(big)],
            &Verbatim::default(),
            Vec::new(),
            None,
            Encoding::default(),
        );
        let want = format!("42[\"big\",\"{big}\"]");
        assert_eq!(&out.text()[..], want.as_bytes());
        let frame = out.frames(false).next().unwrap().clone();
        assert_eq!((frame[0], frame[1]), (0x81, 126));
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]) as usize, want.len());
        assert_eq!(&frame[4..], want.as_bytes());
    }

    #[test]
    fn text_is_built_inside_its_frame() {
        let out = Out::event(
            "/",
            "hi",
            &[json!(1)],
            &Verbatim::default(),
            Vec::new(),
            None,
            Encoding::default(),
        );
        assert_eq!(&out.text()[..], br#"42["hi",1]"#);
        let frames: Vec<_> = out.frames(false).cloned().collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0][0], 0x81);
        assert_eq!(frames[0][1] as usize, out.text().len());
        assert_eq!(&frames[0][2..], &out.text()[..]);
    }

    #[test]
    fn long_texts_use_the_extended_lengths() {
        for n in [125usize, 126, 65_535, 65_536, 200_000] {
            let s = "x".repeat(n);
            let out = Out::event(
                "/",
                "e",
                &[json!(s)],
                &Verbatim::default(),
                Vec::new(),
                None,
                Encoding::default(),
            );
            let f = out.frames(false).next().unwrap().clone();
            let len = out.text().len();
            let hlen = f.len() - len;
            match len {
                0..=125 => assert_eq!((hlen, f[1] as usize), (2, len)),
                126..=65_535 => {
                    assert_eq!(hlen, 4);
                    assert_eq!(u16::from_be_bytes([f[2], f[3]]) as usize, len);
                }
                _ => {
                    assert_eq!(hlen, 10);
                    assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize, len);
                }
            }
            assert_eq!(&f[hlen..], &out.text()[..]);
        }
    }

    #[test]
    fn binary_attachments_get_their_own_frames_and_deflate_only_the_text() {
        let text = "y".repeat(4000);
        let enc = Encoding { deflate: true, threshold: 1024, msgpack: false, compress: true };
        let out = Out::event(
            "/",
            "e",
            &[json!(text), sio::placeholder(0)],
            &Verbatim::default(),
            vec![Bytes::from_static(b"\x01\x02")],
            None,
            enc,
        );
        let plain: Vec<_> = out.frames(false).cloned().collect();
        let packed: Vec<_> = out.frames(true).cloned().collect();
        assert_eq!(plain.len(), 2);
        assert_eq!(&plain[1][..], b"\x82\x02\x01\x02");
        assert_eq!(packed[0][0], 0xc1, "RSV1 + FIN + text");
        assert!(packed[0].len() < plain[0].len());
        assert_eq!(packed[1], plain[1]);
    }
}

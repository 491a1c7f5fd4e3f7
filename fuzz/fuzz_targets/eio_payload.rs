//! The Engine.IO decoders on arbitrary bytes: a WebSocket text frame (`decode_text`), and a
//! polling body fed to `PayloadDecoder` whole and in the input's chunks (the same packets
//! or a refusal both ways, never a panic, never more than `max_payload`). A packet that decodes
//! re-encodes to a frame that decodes to it.
//!
//! Input: byte 0 the chunk length (1 to 64), byte 1 the max payload (in 16-byte units); the
//! rest is the frame and the body.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::eio::{Packet, PayloadDecoder};

fn payload(chunks: &[&[u8]], max: usize) -> Result<Vec<Packet>, shardcast::proto::eio::DecodeError> {
    let mut d = PayloadDecoder::new(max);
    for c in chunks {
        d.feed(c)?;
    }
    d.finish()
}

fuzz_target!(|data: &[u8]| {
    let [chunk, max, body @ ..] = data else { return };
    let max = (usize::from(*max) + 1) * 16;
    if let Ok(p) = Packet::decode_text(Bytes::copy_from_slice(body)) {
        if !matches!(p, Packet::Binary(_)) {
            let mut out = BytesMut::new();
            p.encode_text(&mut out);
            assert_eq!(Packet::decode_text(out.freeze()).as_ref(), Ok(&p), "re-encoded frame");
        }
    }
    let whole = payload(&[body], max);
    let chunks: Vec<&[u8]> = body.chunks(usize::from(chunk % 64) + 1).collect();
    // The same packets; a refusal either way (which fault is named first may differ: a body
    // both too large and malformed is refused for whichever the decoder meets first).
    match (payload(&chunks, max), &whole) {
        (Ok(a), Ok(b)) => assert_eq!(&a, b, "split into chunks of {}", chunk % 64 + 1),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("split into chunks of {}: {a:?} vs whole {b:?}", chunk % 64 + 1),
    }
    if whole.is_ok() {
        assert!(body.len() <= max, "a body past max_payload accepted");
    }
});

//! The Engine.IO v3 decoders (`allow_eio3`) on arbitrary bytes: a polling body as text
//! (`<utf16 length>:<packet>`) and as the XHR2 binary form, a WebSocket text and binary
//! frame. Never a panic, never more than `max_payload`; what decodes re-encodes, in both
//! payload forms, to a body that decodes to the same packets.
//!
//! Input: byte 0 the max payload (in 64-byte units); the rest is the body.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::eio::Packet;
use shardcast::proto::eio3::{self, PayloadEncoder};

fn encode(packets: &[Packet], mut e: PayloadEncoder) -> Bytes {
    for p in packets {
        match p {
            Packet::Binary(d) => e.push_binary(d),
            p => {
                let mut t = BytesMut::new();
                p.encode_text(&mut t);
                e.push_encoded_text(&t);
            }
        }
    }
    e.finish()
}

fuzz_target!(|data: &[u8]| {
    let [max, body @ ..] = data else { return };
    let max = (usize::from(*max) + 1) * 64;
    let body = Bytes::copy_from_slice(body);
    let _ = eio3::decode_text(body.clone());
    let _ = eio3::decode_binary(body.clone());
    for (packets, binary) in [
        (eio3::decode_payload(&body, max), false),
        (eio3::decode_binary_payload(&body, max), true),
    ] {
        let Ok(packets) = packets else { continue };
        assert!(body.len() <= max, "a body past max_payload accepted (binary form: {binary})");
        let big = usize::MAX / 2;
        let text = encode(&packets, PayloadEncoder::text());
        let bin = encode(&packets, PayloadEncoder::binary());
        if !packets.is_empty() {
            assert_eq!(eio3::decode_payload(&text, big).as_ref(), Ok(&packets), "text re-encoding");
            assert_eq!(eio3::decode_binary_payload(&bin, big).as_ref(), Ok(&packets), "binary re-encoding");
        }
    }
});

//! The Socket.IO packet decoder on arbitrary bytes, then binary reassembly with a few
//! attachments: never panics; a packet that decodes re-encodes to bytes that decode to it.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::sio::{Limits, Packet, Reassembler};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_attachments: 4, max_json_depth: 200 };
    let Ok(packet) = Packet::decode(data, limits) else { return };
    let mut out = BytesMut::new();
    packet.encode(&mut out);
    let again = Packet::decode(&out, limits).expect("an encoded packet decodes");
    assert_eq!(again.kind, packet.kind);
    assert_eq!(again.nsp, packet.nsp);
    assert_eq!(again.id, packet.id);
    assert_eq!(again.data, packet.data);
    if packet.attachments > 0 {
        let mut r = Reassembler::new(packet);
        for i in 0..r.expected() {
            r.push(Bytes::from(vec![i as u8]));
        }
        let _ = r.finish();
    }
});

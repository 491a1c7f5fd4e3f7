//! The MessagePack parser's packet decoder (`Parser::MsgPack`) on arbitrary bytes: never
//! panics; a packet that decodes re-encodes to bytes that decode to the same packet and
//! binary parts.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::sio::Limits;
use shardcast::proto::sio_msgpack;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_attachments: 4, max_json_depth: 200 };
    let Ok((packet, binary)) = sio_msgpack::decode(&Bytes::copy_from_slice(data), limits) else {
        return;
    };
    let mut out = BytesMut::new();
    sio_msgpack::encode(&mut out, &packet, &binary);
    let again = sio_msgpack::decode(&out.freeze(), limits).expect("an encoded packet decodes");
    assert_eq!(again, (packet, binary));
});

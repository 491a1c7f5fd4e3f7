//! The MessagePack decoder (what other servers and the emitter publish on Redis) on
//! arbitrary bytes: never panics, never reserves what the input does not hold, and what it
//! encodes back decodes to the same value and binary.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::msgpack;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(first) = msgpack::decode(&input, 200) else { return };
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, &first.value, &first.binary);
    let again = msgpack::decode(&out.freeze(), 200).expect("what we encode decodes");
    assert_eq!(again.value, first.value);
    assert_eq!(again.binary, first.binary);
});

//! The classic Redis adapter's decoders (what other servers and the emitter publish:
//! broadcasts as MessagePack, requests and responses as JSON or MessagePack) on arbitrary
//! bytes: never panic or overflow their stack, and a request we decoded, encoded again,
//! decodes to the same request.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardcast::__wire::{request, wire};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(b) = wire::decode_broadcast(&input, 200) {
        let again = wire::decode_broadcast(&wire::encode_broadcast(&b), 200);
        assert_eq!(again.as_ref(), Ok(&b), "a broadcast survives encoding");
    }
    if let Ok(r) = request::decode_request(&input, 200) {
        let again = request::decode_request(&request::encode_request(&r), 200);
        assert_eq!(again.as_ref(), Ok(&r), "a request survives encoding");
    }
    if let Ok(r) = request::decode_response(&input, 200) {
        let _ = (r.sockets(), r.rooms(), r.client_count(), r.reply());
    }
});

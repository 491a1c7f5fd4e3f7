//! The cluster message decoder (what other servers publish through the sharded Redis
//! adapter, JSON or MessagePack) on arbitrary bytes: never panics or overflows its stack,
//! what it decodes we encode (JSON, or MessagePack only when the type carries binary and
//! does) and decode again to the same message, and its channel is computed without panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardcast::__wire::cluster_wire::{self as wire, SubscriptionMode};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(first) = wire::decode(&input, 200) else { return };
    let out = wire::encode(&first);
    let binary = first.kind().may_contain_binary() && !first.body.binary().is_empty();
    assert_eq!(out.first() != Some(&b'{'), binary, "MessagePack exactly when binary");
    let again = wire::decode(&out, 200).expect("what we encode decodes");
    assert_eq!(again, first);
    for mode in
        [SubscriptionMode::Static, SubscriptionMode::Dynamic, SubscriptionMode::DynamicPrivate]
    {
        let _ = wire::publish_channel("socket.io", &first, mode);
    }
});

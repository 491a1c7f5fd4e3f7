//! The WebSocket frame parser and its inflater on arbitrary client byte streams, split
//! arbitrarily: never panics, stays within its message limit, and the split never matters:
//! the stream fed in the input's chunks decodes to the same messages and the same error as
//! the stream fed whole, and as the stream fed one byte at a time.
//!
//! Input: byte 0 picks permessage-deflate (bit 0) and the message limit (bits 1..3: 16 B to
//! 2 KiB, or 1 MiB); byte 1 the chunk length (1 to 64); the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::__fuzz::ws_decode;

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, stream @ ..] = data else { return };
    let deflate = mode & 1 == 1;
    let limit = match (mode >> 1) & 7 {
        7 => 1 << 20,
        n => 16 << n,
    };
    let whole = ws_decode(&[stream], deflate, limit);
    let chunked: Vec<&[u8]> = stream.chunks(usize::from(chunk % 64) + 1).collect();
    assert_eq!(ws_decode(&chunked, deflate, limit), whole, "split into chunks of {}", chunk % 64 + 1);
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(ws_decode(&bytes, deflate, limit), whole, "one byte at a time");
    }
    for (kind, payload) in &whole.messages {
        if matches!(kind, 't' | 'b') {
            assert!(payload.len() <= limit, "a message past the limit");
        }
        if *kind == 't' {
            assert!(std::str::from_utf8(payload).is_ok(), "a text message that is not UTF-8");
        }
    }
});

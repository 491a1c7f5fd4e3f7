//! The JSON decoder on arbitrary text: never panics or overflows its stack (nesting far past
//! the limit included), and what it writes back reads back as the same value and is written
//! the same way again.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardcast::proto::json::{self, Parsed};

fn write(p: &Parsed) -> BytesMut {
    let mut out = BytesMut::new();
    match &p.value {
        serde_json::Value::Array(items) => {
            out.put_u8(b'[');
            json::write_elements(&mut out, items, &p.verbatim);
            out.put_u8(b']');
        }
        v => match p.verbatim.get(0) {
            Some(text) => out.extend_from_slice(text.as_bytes()),
            None => json::write_value(&mut out, v),
        },
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Deep nesting in front of the input: up to 100,000 levels opened by its first two bytes.
    if let [a, b, rest @ ..] = data {
        let levels = usize::from(u16::from_le_bytes([*a, *b])) * 100_000 / 65_535;
        if let Ok(tail) = std::str::from_utf8(rest) {
            let open = if a & 1 == 0 { "[" } else { "{\"k\":" };
            let deep = format!("{}{tail}", open.repeat(levels));
            let result = json::parse(&deep, 1000);
            if levels > 1000 {
                assert_eq!(result.err(), Some(json::JsonError::TooDeep { limit: 1000 }));
            }
        }
    }
    for depth in [2, 64, 1000] {
        let Ok(first) = json::parse(text, depth) else { continue };
        let once = write(&first);
        let once_text = std::str::from_utf8(&once).expect("the writer writes UTF-8");
        let again = json::parse(once_text, depth).expect("what we write reads back");
        assert_eq!(again.value, first.value, "{text:?} -> {once_text:?}");
        assert_eq!(write(&again), once, "writing is idempotent for {text:?}");
    }
});

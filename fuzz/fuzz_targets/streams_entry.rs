//! The Redis Streams adapter's decoders on arbitrary bytes: a stream entry (the input split
//! at NUL bytes into field, value, field, value, ...) and a stored session. Never panics or
//! overflows its stack; an entry it decodes we write again and decode to the same message; a
//! session it reads we store and read back equal; an entry id (an offset) it parses formats
//! back to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardcast::__wire::streams_wire::{self as sw, Session};
use shardcast::proto::offset::EntryId;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<Bytes> = data.split(|&b| b == 0).map(Bytes::copy_from_slice).collect();
    let fields: Vec<(Bytes, Bytes)> =
        parts.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    if let Ok(first) = sw::decode_entry(&fields, 200) {
        let f = sw::entry_fields(&first);
        let mut again = vec![
            (Bytes::from_static(b"uid"), Bytes::from(f.uid)),
            (Bytes::from_static(b"nsp"), Bytes::from(f.nsp)),
            (Bytes::from_static(b"type"), Bytes::from(f.kind)),
        ];
        if let Some(d) = f.data {
            again.push((Bytes::from_static(b"data"), d));
        }
        let second = sw::decode_entry(&again, 200).expect("what we write decodes");
        assert_eq!(second, first);
    }
    if let Ok(s) = Session::decode(data, 200) {
        let back = Session::decode(s.encode().as_bytes(), 200).expect("what we store reads");
        assert_eq!(back, s);
    }
    // An offset a client sends across servers: what parses formats back to itself.
    if let Some(id) = EntryId::parse(&String::from_utf8_lossy(data)) {
        assert_eq!(EntryId::parse(&id.to_string()), Some(id));
        assert!(id.next().is_none_or(|n| n > id));
    }
});

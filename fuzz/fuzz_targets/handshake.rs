//! What the handshake parses from a stranger before any session exists, on arbitrary text:
//! the query string (`EIO`, `transport`, `sid`, every pair), the session id (a parsed sid
//! names its shard and prints back as itself), the permessage-deflate offer, and a
//! recovery offset or stream entry id a client sends back (each parses only in the exact
//! form it is written in, so it prints back as itself). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::__fuzz::{handshake_query, ws_negotiate};
use shardcast::proto::offset::{EntryId, OffsetTag};
use shardcast::proto::sid::Sid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let q = handshake_query(text);
    assert!(q.pairs <= text.len() + 1);
    if let Some((s, Some(_shard))) = q.sid {
        let parsed = Sid::parse(&s).expect("it parsed once");
        assert_eq!(parsed.as_str(), s.as_str(), "a sid prints back as itself");
    }
    if let Some(answer) = ws_negotiate(&[text]) {
        assert!(answer.starts_with("permessage-deflate"), "{answer}");
    }
    let tag = OffsetTag::from_chars("abcd").expect("a tag");
    if let Some(o) = tag.parse(text) {
        assert_eq!(tag.format(o), text, "an offset prints back as itself");
    }
    if let Some(id) = EntryId::parse(text) {
        let printed = format!("{}-{}", id.ms, id.seq);
        assert_eq!(EntryId::parse(&printed), Some(id));
    }
});

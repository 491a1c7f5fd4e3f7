//! Offsets of connection state recovery: the id a replayable packet carries as its last
//! argument (`42["ev","a","Qx3_.2.1a4f"]`), which a client sends back to say where it
//! stopped.
//!
//! The string is `<tag>.<issuer>.<seq>`: a tag of 4 base64url characters drawn once per
//! server, so that a trailing string argument of some other event (the JavaScript client
//! takes any trailing string as its offset) or another server's offset is never mistaken
//! for one; the issuer (the shard that numbered the packet, or [`Offset::DIRECT`]) and its
//! sequence number, both in lowercase hexadecimal. Clients treat it as opaque, as
//! socket.io's own offsets.

use std::fmt::Write as _;

use rand::RngCore;

/// A replayable packet's id: who numbered it and its number in that issuer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Offset {
    /// The shard that numbered the packet (broadcasts), or [`Offset::DIRECT`].
    pub issuer: u8,
    /// Its number in the issuer's sequence.
    pub seq: u64,
}

impl Offset {
    /// The issuer of packets sent to one socket (`socket.emit`), numbered by one
    /// server-wide counter.
    pub const DIRECT: u8 = 255;
}

/// The per-server tag in front of every offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetTag([u8; 4]);

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl OffsetTag {
    /// A fresh random tag.
    pub fn generate() -> OffsetTag {
        let mut raw = [0u8; 4];
        rand::rng().fill_bytes(&mut raw);
        OffsetTag(raw.map(|b| ALPHABET[usize::from(b & 63)]))
    }

    /// A tag from its 4 characters (tests); `None` when they are not base64url.
    pub fn from_chars(s: &str) -> Option<OffsetTag> {
        let raw: [u8; 4] = s.as_bytes().try_into().ok()?;
        raw.iter().all(|b| ALPHABET.contains(b)).then_some(OffsetTag(raw))
    }

    fn as_str(&self) -> &str {
        // Base64url characters only, by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The string form of `o`.
    pub fn format(&self, o: Offset) -> String {
        let mut s = String::with_capacity(24);
        let _ = write!(s, "{}.{:x}.{:x}", self.as_str(), o.issuer, o.seq);
        s
    }

    /// Parses an offset a client sent. Only the exact form this tag formats is accepted
    /// (another tag, upper case, leading zeros, signs, anything else: `None`), so a string
    /// maps to one offset and back.
    pub fn parse(&self, s: &str) -> Option<Offset> {
        let rest = s.strip_prefix(self.as_str())?.strip_prefix('.')?;
        let (issuer, seq) = rest.split_once('.')?;
        let hex = |t: &str, max: usize| {
            !t.is_empty()
                && t.len() <= max
                && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && (t == "0" || !t.starts_with('0'))
        };
        if !hex(issuer, 2) || !hex(seq, 16) {
            return None;
        }
        let issuer = u8::from_str_radix(issuer, 16).ok()?;
        let seq = u64::from_str_radix(seq, 16).ok()?;
        Some(Offset { issuer, seq })
    }
}

/// A Redis stream entry id (`<ms>-<seq>`, both decimal): the offset of a packet across
/// servers with the Redis Streams adapter, where the stream numbers every broadcast.
/// Ordered as Redis orders them (by `ms`, then `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// Parses `<ms>-<seq>` (decimal digits only, each within `u64`); anything else is
    /// `None`.
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(EntryId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// The smallest id after this one (where an exclusive range starts): `ms-(seq+1)`, or
    /// `(ms+1)-0` at the top of the sequence; `None` after the last id there is.
    pub fn next(self) -> Option<EntryId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(EntryId { ms: self.ms, seq }),
            None => Some(EntryId { ms: self.ms.checked_add(1)?, seq: 0 }),
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_format_order_and_follow() {
        let id = EntryId::parse("1796134884082-4").unwrap();
        assert_eq!(id, EntryId { ms: 1796134884082, seq: 4 });
        assert_eq!(id.to_string(), "1796134884082-4");
        for bad in ["", "-", "1-", "-1", "a-1", "1-b", "1-2-3", "Q8n-ngM.0", " 1-2", "1-2 ", "+1-2"]
        {
            assert_eq!(EntryId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EntryId::parse("99999999999999999999999-1"), None, "past u64");
        assert!(EntryId::parse("5-10").unwrap() > EntryId::parse("5-9").unwrap());
        assert!(EntryId::parse("6-0").unwrap() > EntryId::parse("5-99").unwrap());
        assert_eq!(id.next().unwrap().to_string(), "1796134884082-5");
        assert_eq!(EntryId { ms: 5, seq: u64::MAX }.next(), Some(EntryId { ms: 6, seq: 0 }));
        assert_eq!(EntryId { ms: u64::MAX, seq: u64::MAX }.next(), None);
    }

    fn tag() -> OffsetTag {
        OffsetTag::from_chars("Qx3_").unwrap()
    }

    #[test]
    fn formats_and_parses_literals() {
        let t = tag();
        assert_eq!(t.format(Offset { issuer: 2, seq: 0x1a4f }), "Qx3_.2.1a4f");
        assert_eq!(t.format(Offset { issuer: Offset::DIRECT, seq: 0 }), "Qx3_.ff.0");
        assert_eq!(t.parse("Qx3_.2.1a4f"), Some(Offset { issuer: 2, seq: 0x1a4f }));
        assert_eq!(
            t.parse("Qx3_.ff.ffffffffffffffff"),
            Some(Offset { issuer: 255, seq: u64::MAX })
        );
        for o in [(0, 0), (1, 1), (254, 12345678), (255, u64::MAX)] {
            let o = Offset { issuer: o.0, seq: o.1 };
            assert_eq!(t.parse(&t.format(o)), Some(o));
        }
    }

    #[test]
    fn rejects_anything_else() {
        let t = tag();
        for bad in [
            "",
            "Qx3_",
            "Qx3_.",
            "Qx3_..",
            "Qx3_.2.",
            "Qx3_..1",
            "Qx3_.2.1.",
            "Qx3_.2.1.3",
            "Qx3-.2.1",
            "qx3_.2.1",
            "Qx3_.2.1A",
            "Qx3_.02.1",
            "Qx3_.2.01",
            "Qx3_.+2.1",
            "Qx3_.2.-1",
            "Qx3_.100.1",
            "Qx3_.2.10000000000000000",
            "Qx3_.2. 1",
            "Qx3_.2.1 ",
            "Qx3_.é.1",
            "connected",
            "Q8n-ngM.0",
        ] {
            assert_eq!(t.parse(bad), None, "{bad:?}");
        }
        // Split at every byte: no prefix of an offset reads as that offset (a prefix that
        // ends in the sequence is another offset).
        let full = Offset { issuer: 3, seq: 0xabc };
        let s = t.format(full);
        for i in 0..s.len() {
            let got = t.parse(&s[..i]);
            assert_ne!(got, Some(full), "{:?}", &s[..i]);
            assert_eq!(got.is_some(), i > "Qx3_.3.".len(), "{:?}", &s[..i]);
        }
    }

    #[test]
    fn tags_are_base64url() {
        for _ in 0..100 {
            let t = OffsetTag::generate();
            assert!(OffsetTag::from_chars(t.as_str()).is_some());
        }
        assert_eq!(OffsetTag::from_chars("ab+d"), None);
        assert_eq!(OffsetTag::from_chars("abc"), None);
    }
}

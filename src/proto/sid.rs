//! Session / socket ids: 20 URL-safe characters that also name the owning shard.

use std::fmt;

use rand::RngCore;

/// base64url alphabet (RFC 4648 §5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Reverse of [`ALPHABET`]; `INVALID` for bytes outside it.
const INVALID: u8 = 0xff;
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 20-char URL-safe id: base64url (no padding) of 15 bytes, where byte 0 is
/// the owning shard index and the other 14 come from a CSPRNG. `Copy`, no
/// allocation; ordering and equality are those of the string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// Length of the string form.
    pub const LEN: usize = 20;

    /// A fresh id owned by `shard`, with 112 random bits from the thread-local
    /// CSPRNG (ChaCha, seeded from the OS).
    pub fn generate(shard: u8) -> Sid {
        let mut raw = [0u8; 15];
        raw[0] = shard;
        rand::rng().fill_bytes(&mut raw[1..]);
        let mut out = [0u8; 20];
        for (src, dst) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
            let n = (u32::from(src[0]) << 16) | (u32::from(src[1]) << 8) | u32::from(src[2]);
            dst[0] = ALPHABET[(n >> 18) as usize & 63];
            dst[1] = ALPHABET[(n >> 12) as usize & 63];
            dst[2] = ALPHABET[(n >> 6) as usize & 63];
            dst[3] = ALPHABET[n as usize & 63];
        }
        Sid(out)
    }

    /// Parses exactly 20 base64url characters; anything else is `None`.
    /// (15 bytes are exactly 20 sextets, so every such string decodes.)
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        if bytes.iter().all(|&b| DECODE[usize::from(b)] != INVALID) {
            Some(Sid(bytes))
        } else {
            None
        }
    }

    /// The index of the shard that created (and owns) this id.
    pub fn shard(&self) -> u8 {
        // The top 6 bits come from char 0, the low 2 from the top of char 1.
        let hi = DECODE[usize::from(self.0[0])];
        let lo = DECODE[usize::from(self.0[1])];
        (hi << 2) | (lo >> 4)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl AsRef<str> for Sid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_distinct() {
        let mut seen = HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(Sid::generate(i as u8)));
        }
    }

    #[test]
    fn generated_ids_parse_and_keep_shard() {
        for shard in 0..=255u8 {
            let sid = Sid::generate(shard);
            assert_eq!(sid.as_str().len(), 20);
            assert_eq!(sid.shard(), shard);
            let parsed = Sid::parse(sid.as_str()).unwrap();
            assert_eq!(parsed, sid);
            assert_eq!(parsed.shard(), shard);
            // matches a reference base64url decoder
            let raw = URL_SAFE_NO_PAD.decode(sid.as_str()).unwrap();
            assert_eq!(raw.len(), 15);
            assert_eq!(raw[0], shard);
        }
    }

    #[test]
    fn shard_from_literal() {
        // base64url of [0x07, 0, 0, ...] / [0xff, 0, ...] / [0x00, ...]
        assert_eq!(Sid::parse("BwAAAAAAAAAAAAAAAAAA").unwrap().shard(), 7);
        assert_eq!(Sid::parse("_wAAAAAAAAAAAAAAAAAA").unwrap().shard(), 255);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAAA").unwrap().shard(), 0);
        assert_eq!(Sid::parse("A_-_-_-_-_-_-_-_-_-_").unwrap().shard(), 3);
    }

    #[test]
    fn parse_rejects() {
        assert_eq!(Sid::parse(""), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA"), None); // 19
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAAAA"), None); // 21
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAA=="), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA+"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA/"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA "), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAé"), None); // 20 bytes, 19 chars
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAA\0A"), None);
    }

    #[test]
    fn formatting() {
        let sid = Sid::parse("lv_VI97HAXpY6yYWAAAC").unwrap();
        assert_eq!(sid.to_string(), "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(format!("{sid:?}"), "Sid(lv_VI97HAXpY6yYWAAAC)");
        assert_eq!(sid.as_ref(), "lv_VI97HAXpY6yYWAAAC");
    }
}

//! Long-polling response compression, as engine.io's `httpCompression` (on by default,
//! threshold 1 KiB): a GET's payload of at least `http_compression_threshold` bytes, holding
//! a packet that allows compression, is sent gzip- or deflate-encoded, as the client's
//! `Accept-Encoding` prefers (the `accepts` / `negotiator` packages' choice between
//! `["gzip", "deflate"]`). The compressors are flate2's, at zlib's default level, as Node's.
//!
//! Layer: transport (used by the HTTP front).

use std::io::Write;

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

/// A content coding a response can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    /// The `Content-Encoding` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// One `Accept-Encoding` entry: its coding, quality and position.
struct Spec<'a> {
    coding: &'a str,
    q: f64,
    order: usize,
}

/// JavaScript's `parseFloat` of a q value: the longest number at the start, NaN (here: not
/// acceptable) when there is none.
fn parse_q(s: &str) -> f64 {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    (1..=end).rev().find_map(|n| s[..n].parse::<f64>().ok()).unwrap_or(f64::NAN)
}

/// The entries negotiator reads: `coding[;params]`, the coding up to whitespace or `;`, and
/// nothing else but whitespace before the parameters (an entry that does not fit is
/// skipped).
fn parse(accept: &str) -> Vec<Spec<'_>> {
    let mut specs = Vec::new();
    for (order, entry) in accept.split(',').enumerate() {
        let entry = entry.trim();
        let end = entry.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(entry.len());
        let (coding, rest) = entry.split_at(end);
        let rest = rest.trim_start();
        if coding.is_empty() || !(rest.is_empty() || rest.starts_with(';')) {
            continue;
        }
        let q = rest
            .split(';')
            .skip(1)
            .map(|p| p.trim().split('=').collect::<Vec<_>>())
            .find(|kv| kv.first() == Some(&"q"))
            .map_or(1.0, |kv| kv.get(1).map_or(f64::NAN, |v| parse_q(v)));
        specs.push(Spec { coding, q, order });
    }
    specs
}

/// The coding to answer with, by the client's preference (quality, then an exact name over
/// `*`, then the header's order, then gzip before deflate); `None`: send it as it is.
pub(crate) fn negotiate(accept: Option<&str>) -> Option<Coding> {
    let specs = parse(accept?);
    // negotiator's getEncodingPriority: each coding's best entry, replacing the one so far
    // when `(s - s' || q - q' || o - o') < 0` in JavaScript (`||` skips 0 and NaN), from
    // `{q: 0, s: 0, o: -1}`.
    let js_or = |a: f64, b: f64| if a != 0.0 && !a.is_nan() { a } else { b };
    let priority = |coding: Coding, ours: usize| {
        let (mut q, mut specific, mut order) = (0.0f64, 0.0f64, -1.0f64);
        for s in &specs {
            let sp = if s.coding.eq_ignore_ascii_case(coding.name()) {
                1.0
            } else if s.coding == "*" {
                0.0
            } else {
                continue;
            };
            let o = s.order as f64;
            if js_or(js_or(specific - sp, q - s.q), order - o) < 0.0 {
                (q, specific, order) = (s.q, sp, o);
            }
        }
        (q, specific, order, ours, coding)
    };
    let mut candidates: Vec<_> = [Coding::Gzip, Coding::Deflate]
        .into_iter()
        .enumerate()
        .map(|(i, c)| priority(c, i))
        .filter(|&(q, ..)| q > 0.0)
        .collect();
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.total_cmp(&b.2)).then(a.3.cmp(&b.3))
    });
    candidates.first().map(|c| c.4)
}

/// `body` in `coding`; `None` if the compressor failed (then it is sent as it is).
pub(crate) fn compress(body: &[u8], coding: Coding) -> Option<Bytes> {
    let out = Vec::with_capacity(body.len() / 3 + 64);
    let out = match coding {
        Coding::Gzip => {
            let mut e = GzEncoder::new(out, Compression::default());
            e.write_all(body).ok()?;
            e.finish().ok()?
        }
        Coding::Deflate => {
            let mut e = ZlibEncoder::new(out, Compression::default());
            e.write_all(body).ok()?;
            e.finish().ok()?
        }
    };
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_client_preference_decides() {
        let n = |h: &str| negotiate(Some(h));
        assert_eq!(negotiate(None), None, "no header: identity");
        assert_eq!(n(""), None);
        assert_eq!(n("gzip, deflate, br"), Some(Coding::Gzip), "what browsers send");
        assert_eq!(n("deflate, gzip"), Some(Coding::Deflate), "the header's order");
        assert_eq!(n("br"), None);
        assert_eq!(n("identity"), None);
        assert_eq!(n("*"), Some(Coding::Gzip), "any: ours first");
        assert_eq!(n("gzip;q=0.5, deflate;q=0.8"), Some(Coding::Deflate));
        assert_eq!(n("gzip;q=0, *"), Some(Coding::Deflate), "an exact q=0 beats the wildcard");
        assert_eq!(n("GZIP"), Some(Coding::Gzip), "case does not matter");
        assert_eq!(n("gzip;q=0, deflate;q=0"), None);
        assert_eq!(n("gzip;q=abc"), None, "NaN is not acceptable");
        assert_eq!(n("gzip;q=0.5x, deflate;q=0.4"), Some(Coding::Gzip), "parseFloat's prefix");
        assert_eq!(n("gzip x, deflate"), Some(Coding::Deflate), "an entry that does not parse");
        assert_eq!(n(" gzip ; q=1 "), Some(Coding::Gzip));
    }

    #[test]
    fn compressed_bodies_decompress() {
        let body = "42[\"news\",\"a fairly repetitive payload\"]\u{1e}".repeat(100);
        let gz = compress(body.as_bytes(), Coding::Gzip).unwrap();
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
        assert!(gz.len() < body.len() / 10);
        let z = compress(body.as_bytes(), Coding::Deflate).unwrap();
        let mut back = String::new();
        flate2::read::ZlibDecoder::new(&z[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
    }
}

//! Client side of Engine.IO v4 and Socket.IO v5, sans-IO: packet classification, the hand-written
//! scanners of the hot path (no `serde_json::Value` per delivery), and packet encoders that write
//! into a reused `BytesMut`.
//!
//! Every function here takes bytes from the server and returns `Result`/`Option`: bad input is a
//! [`Malformed`] reason that the caller counts, never a panic.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

/// Why a packet from the server could not be understood. Counted per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Engine.IO v4 record separator between packets of one long-polling payload.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet, borrowed from the frame or payload it came in.
#[derive(Debug, PartialEq, Eq)]
pub enum Eio<'a> {
    /// `0{json}`: the handshake.
    Open(&'a [u8]),
    /// `1`: the server closes the session.
    Close,
    /// `2[probe]`: answer with `3` and the same data.
    Ping(&'a [u8]),
    /// `3`: a pong (clients do not normally get one).
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(&'a [u8]),
    /// `5`: upgrade (meaningless for a client).
    Upgrade,
    /// `6`: no-op.
    Noop,
    /// `b<base64>`: a binary message on long-polling.
    Binary,
}

/// Classifies one Engine.IO text packet.
pub fn eio(p: &[u8]) -> Result<Eio<'_>, Malformed> {
    let (&first, rest) = p.split_first().ok_or(Malformed("empty engine.io packet"))?;
    Ok(match first {
        b'0' => Eio::Open(rest),
        b'1' => Eio::Close,
        b'2' => Eio::Ping(rest),
        b'3' => Eio::Pong,
        b'4' => Eio::Message(rest),
        b'5' => Eio::Upgrade,
        b'6' => Eio::Noop,
        b'b' => Eio::Binary,
        _ => return Err(Malformed("unknown engine.io packet type")),
    })
}

/// The PONG (`3` and the same data) that answers a PING with `data`.
pub fn pong(data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + data.len());
    p.push(b'3');
    p.extend_from_slice(data);
    p
}

/// The fields of the Engine.IO handshake a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Session id.
    pub sid: String,
    /// Server's ping interval, in milliseconds.
    pub ping_interval: u64,
    /// Server's ping timeout, in milliseconds.
    pub ping_timeout: u64,
}

/// Parses the JSON of an OPEN packet (once per connection, so serde is fine here).
pub fn parse_open(json: &[u8]) -> Result<Open, Malformed> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|_| Malformed("open packet is not JSON"))?;
    let sid = v.get("sid").and_then(|s| s.as_str()).ok_or(Malformed("open packet has no sid"))?;
    if sid.is_empty() || sid.len() > 256 {
        return Err(Malformed("open packet has a bad sid"));
    }
    Ok(Open {
        sid: sid.to_owned(),
        ping_interval: v.get("pingInterval").and_then(|x| x.as_u64()).unwrap_or(25_000),
        ping_timeout: v.get("pingTimeout").and_then(|x| x.as_u64()).unwrap_or(20_000),
    })
}

/// Socket.IO v5 packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`
    Connect,
    /// `1`
    Disconnect,
    /// `2`
    Event,
    /// `3`
    Ack,
    /// `4`
    ConnectError,
    /// `5`
    BinaryEvent,
    /// `6`
    BinaryAck,
}

/// One Socket.IO packet: its type, ack id and the JSON data, still unparsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Sio<'a> {
    /// Packet type.
    pub kind: Kind,
    /// Acknowledgement id, if any.
    pub ack: Option<u64>,
    /// Everything after the header: a JSON array, object, or nothing.
    pub data: &'a [u8],
}

/// Parses the header of a Socket.IO packet (the bytes after the Engine.IO `4`). Returns
/// `Ok(None)` for a packet of another namespace than `nsp`.
pub fn sio<'a>(p: &'a [u8], nsp: &str) -> Result<Option<Sio<'a>>, Malformed> {
    let (&t, mut rest) = p.split_first().ok_or(Malformed("empty socket.io packet"))?;
    let kind = match t {
        b'0' => Kind::Connect,
        b'1' => Kind::Disconnect,
        b'2' => Kind::Event,
        b'3' => Kind::Ack,
        b'4' => Kind::ConnectError,
        b'5' => Kind::BinaryEvent,
        b'6' => Kind::BinaryAck,
        _ => return Err(Malformed("unknown socket.io packet type")),
    };
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let dash =
            rest.iter().position(|&b| b == b'-').ok_or(Malformed("binary packet without '-'"))?;
        if dash == 0 || dash > 4 || !rest[..dash].iter().all(u8::is_ascii_digit) {
            return Err(Malformed("bad attachment count"));
        }
        rest = &rest[dash + 1..];
    }
    let mut packet_nsp: &[u8] = b"/";
    if rest.first() == Some(&b'/') {
        let comma = rest.iter().position(|&b| b == b',');
        match comma {
            Some(c) => {
                packet_nsp = &rest[..c];
                rest = &rest[c + 1..];
            }
            // `1/admin` (a DISCONNECT) may end right after the namespace.
            None => {
                packet_nsp = rest;
                rest = &[];
            }
        }
    }
    if packet_nsp != nsp.as_bytes() {
        return Ok(None);
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let ack = if digits > 0 {
        if digits > 18 {
            return Err(Malformed("ack id too long"));
        }
        Some(parse_digits(&rest[..digits]))
    } else {
        None
    };
    Ok(Some(Sio { kind, ack, data: &rest[digits..] }))
}

fn parse_digits(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'))
}

/// Reads an unsigned integer at the start of `s` terminated by `,` or `]`; returns it and the
/// bytes after the terminator.
fn scan_u64(s: &[u8]) -> Option<(u64, &[u8], u8)> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && s[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &s[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    let term = *s.get(digits)?;
    if term != b',' && term != b']' {
        return None;
    }
    Some((n, &s[digits + 1..], term))
}

/// Result of scanning a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan<const N: usize> {
    /// The event (or ack) carried these N leading integers (read by the fast scanner).
    Hit([u64; N]),
    /// The same, read by the JSON fallback (counted: another server's formatting).
    SlowHit([u64; N]),
    /// Another event name: not ours.
    Other,
}

/// Scans an EVENT's data `["<event>",a,b,c,...` for its first N integer arguments without
/// building JSON values. `prefix` is `["<event>",` as built by [`event_prefix`].
///
/// Falls back to a full JSON parse when the fast scan does not fit (e.g. whitespace from another
/// server's encoder) so correctness never depends on formatting; counts nothing itself.
pub fn scan_event<const N: usize>(data: &[u8], prefix: &[u8]) -> Result<Scan<N>, Malformed> {
    if let Some(rest) = data.strip_prefix(prefix) {
        if let Some(v) = scan_ints::<N>(rest) {
            return Ok(Scan::Hit(v));
        }
    } else if let Some(rest) = data.strip_prefix(b"[\"") {
        // A name with no escape in it is compared as is: another name is another event. Names
        // with escapes (and our own name without its arguments) take the slow path.
        let ours = &prefix[2..prefix.len() - 2];
        if let Some(q) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
            if rest[q] == b'"' && &rest[..q] != ours {
                return Ok(Scan::Other);
            }
        }
    }
    slow_scan::<N>(data, Some(prefix))
}

/// Scans an ACK's data `[a,b,...` for its first N integers.
pub fn scan_ack<const N: usize>(data: &[u8]) -> Result<Scan<N>, Malformed> {
    if let Some(rest) = data.strip_prefix(b"[") {
        if let Some(v) = scan_ints::<N>(rest) {
            return Ok(Scan::Hit(v));
        }
    }
    slow_scan::<N>(data, None)
}

fn scan_ints<const N: usize>(mut rest: &[u8]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let (n, after, term) = scan_u64(rest)?;
        if term == b']' && i + 1 < N {
            return None;
        }
        *slot = n;
        rest = after;
    }
    Some(out)
}

/// The slow path: a real JSON parse, for packets the scanner cannot read.
fn slow_scan<const N: usize>(data: &[u8], prefix: Option<&[u8]>) -> Result<Scan<N>, Malformed> {
    let v: Vec<serde_json::Value> =
        serde_json::from_slice(data).map_err(|_| Malformed("packet data is not a JSON array"))?;
    let mut args = v.iter();
    if let Some(prefix) = prefix {
        let name = args.next().and_then(|n| n.as_str()).ok_or(Malformed("event without a name"))?;
        let mut want = BytesMut::new();
        write_json_str(&mut want, name);
        want.put_u8(b',');
        if want[..] != prefix[1..] {
            return Ok(Scan::Other);
        }
    }
    let mut out = [0u64; N];
    for slot in out.iter_mut() {
        *slot = args.next().and_then(|x| x.as_u64()).ok_or(Malformed("delivery without ids"))?;
    }
    Ok(Scan::SlowHit(out))
}

/// The last element of a JSON array when it is a string with no escape in it (an offset of
/// connection state recovery: `[...,"<offset>"]`); `None` otherwise.
pub fn trailing_string(data: &[u8]) -> Option<&str> {
    let body = data.strip_suffix(b"\"]")?;
    let start = body.iter().rposition(|&b| b == b'"')?;
    let s = &body[start + 1..];
    if s.contains(&b'\\') || !matches!(body[..start].last(), Some(b',' | b'[')) {
        return None;
    }
    std::str::from_utf8(s).ok()
}

/// `["<event>",` with the name JSON-escaped: what an EVENT's data starts with.
pub fn event_prefix(event: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'[');
    write_json_str(&mut b, event);
    b.put_u8(b',');
    b.to_vec()
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(buf: &mut BytesMut, s: &str) {
    buf.put_u8(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.put_slice(b"\\\""),
            '\\' => buf.put_slice(b"\\\\"),
            '\n' => buf.put_slice(b"\\n"),
            '\r' => buf.put_slice(b"\\r"),
            '\t' => buf.put_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.put_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.put_u8(b'"');
}

/// Appends the header of an Engine.IO MESSAGE carrying a Socket.IO packet of type `kind`
/// (`4` `2` `/nsp,` `ack`).
pub fn write_header(buf: &mut BytesMut, kind: u8, nsp: &str, ack: Option<u64>) {
    buf.put_u8(b'4');
    buf.put_u8(kind);
    if nsp != "/" {
        buf.put_slice(nsp.as_bytes());
        buf.put_u8(b',');
    }
    if let Some(id) = ack {
        let _ = write!(buf, "{id}");
    }
}

/// `40[/nsp,][auth]`: the namespace CONNECT. `auth` is raw JSON (an object), already validated.
pub fn connect_packet(nsp: &str, auth: Option<&str>) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + auth.map_or(0, str::len));
    write_header(&mut b, b'0', nsp, None);
    if let Some(a) = auth {
        b.put_slice(a.as_bytes());
    }
    b
}

/// An EVENT `42[/nsp,][ack]["<event>",<args>]` where `args` is raw JSON already joined by commas.
pub fn event_packet(nsp: &str, ack: Option<u64>, event: &str, args: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 + event.len() + args.len());
    write_header(&mut b, b'2', nsp, ack);
    b.put_u8(b'[');
    write_json_str(&mut b, event);
    if !args.is_empty() {
        b.put_u8(b',');
        b.put_slice(args);
    }
    b.put_u8(b']');
    b
}

/// Splits a long-polling payload into its packets.
pub fn split_payload(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload.split(|&b| b == RECORD_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_string_is_an_offset() {
        assert_eq!(
            trailing_string(br#"["news",1,2,3,4,"pad","Qx3_.2.1a4f"]"#),
            Some("Qx3_.2.1a4f")
        );
        assert_eq!(trailing_string(br#"["only"]"#), Some("only"));
        assert_eq!(trailing_string(br#"["news",1]"#), None);
        assert_eq!(trailing_string(br#"["news","a\"b"]"#), None, "an escaped quote");
        assert_eq!(trailing_string(br#"["news","a\\"]"#), None, "an escape");
        assert_eq!(trailing_string(br#"{"a":"b"}"#), None);
        assert_eq!(trailing_string(b""), None);
        assert_eq!(trailing_string(b"\"]"), None);
    }

    #[test]
    fn engine_io_types() {
        assert_eq!(eio(b"0{}").unwrap(), Eio::Open(b"{}"));
        assert_eq!(eio(b"2").unwrap(), Eio::Ping(b""));
        assert_eq!(eio(b"2probe").unwrap(), Eio::Ping(b"probe"));
        assert_eq!(eio(b"42[\"a\"]").unwrap(), Eio::Message(b"2[\"a\"]"));
        assert_eq!(eio(b"6").unwrap(), Eio::Noop);
        assert_eq!(eio(b""), Err(Malformed("empty engine.io packet")));
        assert_eq!(eio(b"9"), Err(Malformed("unknown engine.io packet type")));
    }

    #[test]
    fn open_packet() {
        let o = parse_open(br#"{"sid":"abc","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#).unwrap();
        assert_eq!(o, Open { sid: "abc".into(), ping_interval: 300, ping_timeout: 200 });
        assert!(parse_open(b"{").is_err());
        assert!(parse_open(br#"{"sid":5}"#).is_err());
        assert!(parse_open(br#"[]"#).is_err());
    }

    #[test]
    fn socket_io_headers() {
        let p = sio(b"0{\"sid\":\"x\"}", "/").unwrap().unwrap();
        assert_eq!((p.kind, p.ack, p.data), (Kind::Connect, None, &b"{\"sid\":\"x\"}"[..]));
        let p = sio(b"0/custom,{\"sid\":\"x\"}", "/custom").unwrap().unwrap();
        assert_eq!(p.kind, Kind::Connect);
        assert_eq!(sio(b"0/custom,{}", "/").unwrap(), None);
        assert_eq!(sio(b"2[\"a\"]", "/custom").unwrap(), None);
        let p = sio(b"312[true]", "/").unwrap().unwrap();
        assert_eq!((p.kind, p.ack, p.data), (Kind::Ack, Some(12), &b"[true]"[..]));
        let p = sio(b"3/a,7[1]", "/a").unwrap().unwrap();
        assert_eq!((p.kind, p.ack, p.data), (Kind::Ack, Some(7), &b"[1]"[..]));
        let p = sio(b"1/a", "/a").unwrap().unwrap();
        assert_eq!((p.kind, p.data), (Kind::Disconnect, &b""[..]));
        let p = sio(b"51-[\"b\",{\"_placeholder\":true,\"num\":0}]", "/").unwrap().unwrap();
        assert_eq!(p.kind, Kind::BinaryEvent);
        assert!(sio(b"5x-[]", "/").is_err());
        assert!(sio(b"5[]", "/").is_err());
        assert!(sio(b"", "/").is_err());
        assert!(sio(b"9", "/").is_err());
        assert!(sio(b"31234567890123456789[1]", "/").is_err());
    }

    #[test]
    fn scanning_deliveries() {
        let prefix = event_prefix("news");
        let d = br#"["news",3,17,123456789,"xxxx"]"#;
        assert_eq!(scan_event::<3>(d, &prefix).unwrap(), Scan::Hit([3, 17, 123456789]));
        let d = br#"["news",3,17,9]"#;
        assert_eq!(scan_event::<3>(d, &prefix).unwrap(), Scan::Hit([3, 17, 9]));
        assert_eq!(scan_event::<3>(br#"["auth",{}]"#, &prefix).unwrap(), Scan::Other);
        assert_eq!(scan_event::<3>(br#"["newsy",1,2,3]"#, &prefix).unwrap(), Scan::Other);
        // Another encoder's whitespace goes through the slow path, same answer.
        let d = br#"[ "news", 3, 17, 9, "x" ]"#;
        assert_eq!(scan_event::<3>(d, &prefix).unwrap(), Scan::SlowHit([3, 17, 9]));
        // Bad input is an error, never a panic.
        for bad in [
            &b"[\"news\",3,17]"[..],
            b"[\"news\",-1,2,3]",
            b"[\"news\",1,2,99999999999999999999999]",
            b"[\"news\",",
            b"[\"news\"",
            b"[",
            b"",
            b"{}",
            b"[\"news\",01,2,3]",
        ] {
            assert!(scan_event::<3>(bad, &prefix).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(scan_ack::<2>(b"[5,77,\"pad\"]").unwrap(), Scan::Hit([5, 77]));
        assert!(scan_ack::<2>(b"[true]").is_err());
        assert!(scan_ack::<2>(b"[5]").is_err());
    }

    #[test]
    fn scanning_every_truncation_never_panics() {
        let prefix = event_prefix("news");
        let full = br#"["news",3,17,123456789,"xxxx"]"#;
        for i in 0..full.len() {
            let _ = scan_event::<3>(&full[..i], &prefix);
            let _ = scan_ack::<2>(&full[i..]);
            let _ = sio(&full[i..], "/");
            let _ = eio(&full[i..]);
        }
    }

    #[test]
    fn encoders() {
        assert_eq!(&connect_packet("/", None)[..], b"40");
        assert_eq!(&connect_packet("/custom", Some("{\"t\":1}"))[..], b"40/custom,{\"t\":1}");
        assert_eq!(&event_packet("/", Some(3), "join", b"\"r1\"")[..], b"423[\"join\",\"r1\"]");
        assert_eq!(&event_packet("/a", None, "x", b"")[..], b"42/a,[\"x\"]");
        let mut b = BytesMut::new();
        write_json_str(&mut b, "a\"b\\c\n\u{1}é");
        assert_eq!(&b[..], "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
        let parts: Vec<&[u8]> = split_payload(b"2\x1e42[\"a\"]").collect();
        assert_eq!(parts, vec![&b"2"[..], &b"42[\"a\"]"[..]]);
    }
}

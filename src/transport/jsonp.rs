//! The JSONP polling transport (engine.io's `polling-jsonp`, for browsers whose XHR cannot
//! make cross-origin requests): a request with a `j` query parameter gets its payload as a
//! script, `___eio[<j's digits>]("<payload as a JSON string>");`, and POSTs it as a form
//! field `d=<payload>` with its newlines escaped by the client. Used by old browsers
//! (engine.io-client's fallback, or `forceJSONP`), for Engine.IO v3 and v4 alike.

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::json::put_json_str;

/// The callback index of a JSONP request: the digits of its `j` parameter (the reference
/// drops every other character); `None` when it has no `j` (not JSONP).
pub(crate) fn index<'a>(mut pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Option<String> {
    pairs.find(|(k, _)| *k == "j").map(|(_, v)| v.chars().filter(char::is_ascii_digit).collect())
}

/// A polling payload as the JSONP script: `___eio[J]("...");`, the payload written as a
/// JSON string with U+2028 and U+2029 escaped too (JSON allows them raw, JavaScript
/// source did not).
pub(crate) fn wrap(index: &str, payload: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(payload);
    let mut out = BytesMut::with_capacity(payload.len() + index.len() + 16);
    out.extend_from_slice(b"___eio[");
    out.extend_from_slice(index.as_bytes());
    out.extend_from_slice(b"](");
    let mut js = BytesMut::with_capacity(payload.len() + 8);
    put_json_str(&mut js, &text);
    // U+2028 is E2 80 A8, U+2029 E2 80 A9 in UTF-8; nothing else in valid UTF-8 has them.
    let mut rest = &js[..];
    while let Some(at) = rest.windows(3).position(|w| w == b"\xe2\x80\xa8" || w == b"\xe2\x80\xa9")
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(if rest[at + 2] == 0xa8 { b"\\u2028" } else { b"\\u2029" });
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    out.put_slice(b");");
    out.freeze()
}

/// The payload of a JSONP POST body (`application/x-www-form-urlencoded`): its one `d`
/// field, with the client's newline escaping undone (`\n` is a newline, `\\n` a
/// backslash and `n`). `None` when there is not exactly one `d` (the reference then ignores
/// the request, and answers `ok`).
pub(crate) fn unwrap(body: &[u8]) -> Option<String> {
    let mut d = form_urlencoded::parse(body).filter(|(k, _)| k == "d").map(|(_, v)| v);
    let (data, None) = (d.next()?, d.next()) else { return None };
    // The reference's two regular expressions, in turn: `(\\)?\\n` (a `\n` not after a
    // backslash becomes a newline; a `\\n` is kept), then `\\\\n` (`\\n`) becomes `\n`.
    let mut once = String::with_capacity(data.len());
    let mut rest = &*data;
    while let Some(at) = rest.find('\\') {
        once.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("\\\\n") {
            once.push_str("\\\\n");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("\\n") {
            once.push('\n');
            rest = after;
        } else {
            once.push('\\');
            rest = &tail[1..];
        }
    }
    once.push_str(rest);
    let out = once.replace("\\\\n", "\\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_the_digits_of_j() {
        let q = |s: &'static str| form_urlencoded::parse(s.as_bytes()).collect::<Vec<_>>();
        let idx = |s| index(q(s).iter().map(|(k, v)| (&**k, &**v)));
        assert_eq!(idx("j=0&EIO=3"), Some("0".into()));
        assert_eq!(idx("j=1a2<script>3"), Some("123".into()));
        assert_eq!(idx("j="), Some(String::new()));
        assert_eq!(idx("EIO=4"), None);
    }

    #[test]
    fn payloads_become_scripts() {
        // The reference's answer to a v3 JSONP handshake, with its escaping.
        let open = br#"118:0{"sid":"eusu948CzldJHnEUAAAO","upgrades":["websocket"]}"#;
        assert_eq!(
            &wrap("0", open)[..],
            br#"___eio[0]("118:0{\"sid\":\"eusu948CzldJHnEUAAAO\",\"upgrades\":[\"websocket\"]}");"#
        );
        assert_eq!(
            &wrap("3", "4a\u{2028}b\u{2029}\x1e".as_bytes())[..],
            br#"___eio[3]("4a\u2028b\u2029\u001e");"#
        );
        assert_eq!(&wrap("1", br#"11:431["a\nb"]"#)[..], br#"___eio[1]("11:431[\"a\\nb\"]");"#);
    }

    #[test]
    fn posts_are_unescaped_as_the_reference_does() {
        // What engine.io-client 3 sent for `["echo","a\\nb"]` (JSON text `a\nb`).
        assert_eq!(
            unwrap(b"d=18%3A421%5B%22echo%22%2C%22a%5C%5Cnb%22%5D").as_deref(),
            Some(r#"18:421["echo","a\nb"]"#)
        );
        assert_eq!(unwrap(br"d=1:2\n1:6").as_deref(), Some("1:2\n1:6"));
        assert_eq!(unwrap(b"d=4a+b%2B").as_deref(), Some("4a b+"));
        assert_eq!(unwrap(br"d=x\\y\z").as_deref(), Some(r"x\\y\z"));
        // `\\` then `\n`, as the regular expressions read it: the `\\n` is kept, then halved.
        assert_eq!(unwrap(br"d=a\\\nb").as_deref(), Some(r"a\\nb"));
        assert_eq!(unwrap(b"e=1"), None);
        assert_eq!(unwrap(b"d=1&d=2"), None);
    }
}

//! What a connection keeps from its first HTTP request ([`HandshakeInfo`]), with compact
//! name/value lists for its headers and query parameters: every name and value in one
//! allocation with a small index, not a map with an allocation per entry. A connection holds
//! these for its whole life, so they are a large share of what an idle connection costs.
//! Part of the transport layer; the namespace layer hands them to sockets' handshakes.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

/// What the first HTTP request of a connection said. One copy per connection, shared by
/// the handshakes of all its namespace sockets.
#[derive(Debug, Clone)]
pub struct HandshakeInfo {
    /// HTTP headers of the first request of the connection.
    pub headers: Headers,
    /// Query parameters of the first request, in order.
    pub query: Pairs,
    /// The peer's address.
    pub address: SocketAddr,
    /// The request URL (path and query) of the first request.
    pub url: String,
    /// When the Engine.IO connection was opened.
    pub issued: SystemTime,
    /// The connection came over TLS (`serve --tls-cert`).
    pub secure: bool,
}

/// What a connection's first request said, as the transport keeps it.
pub(crate) type ConnInfo = HandshakeInfo;

impl HandshakeInfo {
    /// The first query parameter named `key`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.get(key)
    }
}

/// Name/value string pairs in request order, stored in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    text: Box<str>,
    /// Per pair: where its name ends and where its value ends (the next name starts there).
    ends: Box<[(u32, u32)]>,
}

impl Pairs {
    /// Builds the list from pairs, in order.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (N, V)>) -> Pairs {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (n, v) in pairs {
            text.push_str(n.as_ref());
            let name_end = text.len() as u32;
            text.push_str(v.as_ref());
            ends.push((name_end, text.len() as u32));
        }
        Pairs { text: text.into_boxed_str(), ends: ends.into_boxed_slice() }
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&(n, v)| {
            let (n, v) = (n as usize, v as usize);
            let pair = (&self.text[start..n], &self.text[n..v]);
            start = v;
            pair
        })
    }

    /// The value of the first pair named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The values of every pair named exactly `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No pairs.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The headers of the handshake request: names in lowercase, looked up without regard to
/// case, values as text (bytes that are not UTF-8 replaced by U+FFFD), repeated headers kept
/// in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Pairs);

impl Headers {
    /// Copies an HTTP header map.
    pub fn from_header_map(map: &hyper::HeaderMap) -> Headers {
        Headers(Pairs::new(
            map.iter().map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes()))),
        ))
    }

    /// Builds headers from pairs (names are lowercased).
    pub fn new<N: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (N, V)>) -> Headers {
        Headers(Pairs::new(pairs.into_iter().map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v))))
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Every value of header `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Whether header `name` (any case) was sent.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// (name, value) pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_order_duplicates_and_empties() {
        let p = Pairs::new([("a", "1"), ("b", ""), ("a", "2"), ("", "x")]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some(""));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p.iter().last(), Some(("", "x")));
        assert!(Pairs::default().is_empty());
    }

    #[test]
    fn headers_are_case_insensitive_and_lossy() {
        let mut map = hyper::HeaderMap::new();
        map.append("X-Custom", "hello".parse().unwrap());
        map.append("cookie", "a=1".parse().unwrap());
        map.append("cookie", "b=2".parse().unwrap());
        map.append("x-bin", hyper::header::HeaderValue::from_bytes(b"ok\xff").unwrap());
        let h = Headers::from_header_map(&map);
        assert_eq!(h.get("x-custom"), Some("hello"));
        assert_eq!(h.get("X-CUSTOM"), Some("hello"));
        assert_eq!(h.get_all("Cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(h.get("x-bin"), Some("ok\u{fffd}"));
        assert!(!h.contains("host"));
        assert_eq!(Headers::new([("Host", "h")]).iter().next(), Some(("host", "h")));
    }
}

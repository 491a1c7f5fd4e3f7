//! The target: `--url` parsed by hand (scheme, host, port), and the safety rule that the host is
//! loopback unless `--allow-remote` names it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

/// Where the clients connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written in the URL (for the `Host` header).
    pub host: String,
    /// Port (default 80).
    pub port: u16,
    /// The address connected to.
    pub addr: SocketAddr,
}

impl Target {
    /// `Host` header value.
    pub fn host_header(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Whether `ip` is on this machine's loopback (127.0.0.0/8 or ::1).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Parses `http://HOST[:PORT][/...]` (also `ws://`). Only loopback hosts are accepted unless
/// `allow_remote` is exactly the URL's host. A path in the URL is ignored (see `--path`).
pub fn parse(url: &str, allow_remote: Option<&str>) -> anyhow::Result<Target> {
    let rest =
        ["http://", "ws://"].iter().find_map(|s| url.strip_prefix(s)).with_context(|| {
            format!("--url {url:?}: expected http://HOST:PORT (https/wss are not supported)")
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        bail!("--url {url:?}: credentials in the URL are not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) =
            v6.split_once(']').with_context(|| format!("--url {url:?}: unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => bail!("--url {url:?}: junk after ']'"),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        bail!("--url {url:?}: no host");
    }
    let port: u16 = match port {
        Some(p) => p.parse().with_context(|| format!("--url {url:?}: bad port {p:?}"))?,
        None => 80,
    };
    if port == 0 {
        bail!("--url {url:?}: port 0");
    }
    let remote_ok = allow_remote.is_some_and(|a| a.trim_matches(['[', ']']) == host);
    let addr = if let Ok(ip) = host.parse::<IpAddr>() {
        if !is_loopback(ip) && !remote_ok {
            bail!(refusal(&host));
        }
        SocketAddr::new(ip, port)
    } else if host.eq_ignore_ascii_case("localhost") {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if remote_ok {
        (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("cannot resolve {host}"))?
    } else {
        bail!(refusal(&host));
    };
    Ok(Target { host, port, addr })
}

fn refusal(host: &str) -> String {
    format!(
        "refusing to load {host}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed; \
         to load another host you own, name it explicitly with --allow-remote {host}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        let t = parse("http://127.0.0.1:3000", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.host_header(), "127.0.0.1:3000");
        let t = parse("http://localhost:3100/socket.io/", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:3100".parse().unwrap());
        let t = parse("ws://[::1]:80", None).unwrap();
        assert_eq!(t.addr, "[::1]:80".parse().unwrap());
        assert_eq!(t.host_header(), "[::1]");
        assert!(parse("http://127.9.8.7:1", None).is_ok());
    }

    #[test]
    fn remote_refused_unless_named() {
        for url in [
            "http://10.0.0.1:3000",
            "http://192.168.1.2",
            "http://example.com:80",
            "http://[2001:db8::1]:3000",
        ] {
            let e = parse(url, None).unwrap_err().to_string();
            assert!(e.contains("refusing"), "{e}");
        }
        assert!(parse("http://10.0.0.1:3000", Some("10.0.0.2")).is_err());
        assert_eq!(
            parse("http://10.0.0.1:3000", Some("10.0.0.1")).unwrap().addr,
            "10.0.0.1:3000".parse().unwrap()
        );
    }

    #[test]
    fn bad_urls() {
        for url in [
            "127.0.0.1:3000",
            "https://127.0.0.1",
            "http://",
            "http://127.0.0.1:x",
            "http://127.0.0.1:0",
            "http://u@127.0.0.1",
            "http://[::1",
        ] {
            assert!(parse(url, None).is_err(), "{url}");
        }
    }
}

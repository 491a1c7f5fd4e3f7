//! WebSocket per-message deflate (RFC 7692) on real sockets: negotiation, compressed frames
//! both ways, `compress(false)`, the threshold, and one compression per broadcast.

use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use shardcast::{Args, Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

struct Frame {
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Raw {
    /// Opens a WebSocket session offering `extensions`; returns it and the response head.
    async fn open(addr: SocketAddr, extensions: Option<&str>) -> (Raw, String) {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let ext =
            extensions.map_or(String::new(), |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n"
        );
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Raw { tcp, buf: Vec::new() };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.buf[..end]).to_string();
                raw.buf.drain(..end + 4);
                break head;
            }
            raw.fill().await;
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (raw, head)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
            .await
            .expect("timed out reading")
            .expect("read");
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (len, hlen) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes")) as usize,
                        10,
                    ),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= hlen + len {
                    assert!(b0 & 0x80 != 0, "unfragmented");
                    let payload = self.buf[hlen..hlen + len].to_vec();
                    self.buf.drain(..hlen + len);
                    return Frame { rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, payload };
                }
            }
            self.fill().await;
        }
    }

    /// The next text message, inflated when it came compressed, with whether it was.
    async fn text(&mut self) -> (String, bool) {
        loop {
            let f = self.frame().await;
            if f.opcode == 1 {
                let data = if f.rsv1 { inflate(&f.payload) } else { f.payload };
                return (String::from_utf8(data).expect("utf-8"), f.rsv1);
            }
        }
    }

    async fn send(&mut self, payload: &[u8], compressed: bool) {
        let data = if compressed { deflate(payload) } else { payload.to_vec() };
        let mut frame = vec![0x81 | if compressed { 0x40 } else { 0 }];
        match data.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.expect("send");
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4096);
    loop {
        let consumed = d.total_in() as usize;
        d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync).expect("inflate");
        // Done once all input is read and the output did not fill up.
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

fn server(deflate: bool) -> (shardcast::RunningServer, SocketAddr) {
    let io = Server::new(Config::builder().shards(2).per_message_deflate(deflate).build().unwrap());
    shardcast::app::install(&io);
    let root = io.of("/");
    io.of("/z").on_connection(move |socket| {
        socket.on("plain", |s, args, _| {
            let _ = s.compress(false).emit("big", args);
        });
        socket.on("small", |s, _, _| {
            let _ = s.emit("tiny", ("short",));
        });
        let root = root.clone();
        socket.on("broadcast", move |_, args, _| {
            let _ = root.emit("everyone", args);
        });
    });
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = running.local_addr();
    (running, addr)
}

async fn connect(raw: &mut Raw, nsp: &str) {
    let (open, _) = raw.text().await;
    assert!(open.starts_with("0{"), "{open}");
    let connect = if nsp == "/" { "40".to_owned() } else { format!("40{nsp},") };
    raw.send(connect.as_bytes(), false).await;
    let (ok, _) = raw.text().await;
    assert!(ok.starts_with(&connect), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_and_used_both_ways() {
    let (_server, addr) = server(true);
    let (mut raw, head) = Raw::open(addr, Some("permessage-deflate; client_max_window_bits")).await;
    let ext = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-extensions:"))
        .expect("extension accepted")
        .to_ascii_lowercase();
    assert!(ext.contains("permessage-deflate"), "{ext}");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");
    connect(&mut raw, "/").await;
    let (auth, _) = raw.text().await;
    assert_eq!(auth, r#"42["auth",{}]"#);

    // A compressed message from the client is inflated; the large echo comes back compressed.
    let big = "abc".repeat(2000);
    let msg = format!(r#"42["message","{big}"]"#);
    raw.send(msg.as_bytes(), true).await;
    let (echo, compressed) = raw.text().await;
    assert_eq!(echo, format!(r#"42["message-back","{big}"]"#));
    assert!(compressed, "a 6 kB text frame is compressed");

    // Twice in a row: no context is carried over between messages.
    raw.send(msg.as_bytes(), true).await;
    let (echo, compressed) = raw.text().await;
    assert!(compressed);
    assert_eq!(echo, format!(r#"42["message-back","{big}"]"#));

    // Below the threshold nothing is compressed.
    raw.send(br#"42["message","hi"]"#, true).await;
    let (echo, compressed) = raw.text().await;
    assert_eq!(echo, r#"42["message-back","hi"]"#);
    assert!(!compressed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_false_and_threshold() {
    let (_server, addr) = server(true);
    let (mut raw, _) = Raw::open(addr, Some("permessage-deflate")).await;
    connect(&mut raw, "/z").await;
    let big = "q".repeat(5000);
    raw.send(format!(r#"42/z,["plain","{big}"]"#).as_bytes(), false).await;
    let (text, compressed) = raw.text().await;
    assert_eq!(text, format!(r#"42/z,["big","{big}"]"#));
    assert!(!compressed, "compress(false) is honoured");
    raw.send(br#"42/z,["small"]"#, false).await;
    let (text, compressed) = raw.text().await;
    assert_eq!(text, r#"42/z,["tiny","short"]"#);
    assert!(!compressed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_and_not_offered_means_plain() {
    let (_server, addr) = server(false);
    let (mut raw, head) = Raw::open(addr, Some("permessage-deflate")).await;
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
    connect(&mut raw, "/").await;
    let _auth = raw.text().await;
    let big = "z".repeat(3000);
    raw.send(format!(r#"42["message","{big}"]"#).as_bytes(), false).await;
    let (_, compressed) = raw.text().await;
    assert!(!compressed);
    // A compressed frame when nothing was negotiated is a protocol error: the connection
    // is closed (reserved bit set).
    raw.send(br#"42["message","x"]"#, true).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let f = raw.frame().await;
            if f.opcode == 8 {
                return u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
        }
    })
    .await
    .expect("close frame");
    assert_eq!(closed, 1002, "protocol error close code");

    // Enabled on the server but not offered by the client: plain frames.
    let (_server2, addr2) = server(true);
    let (mut raw, head) = Raw::open(addr2, None).await;
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"));
    connect(&mut raw, "/").await;
    let _auth = raw.text().await;
    raw.send(format!(r#"42["message","{big}"]"#).as_bytes(), false).await;
    let (_, compressed) = raw.text().await;
    assert!(!compressed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_compressing_and_plain_clients() {
    let (_server, addr) = server(true);
    let (mut zipped, _) = Raw::open(addr, Some("permessage-deflate")).await;
    connect(&mut zipped, "/").await;
    let _ = zipped.text().await;
    let (mut plain, _) = Raw::open(addr, None).await;
    connect(&mut plain, "/").await;
    let _ = plain.text().await;
    let (mut trigger, _) = Raw::open(addr, None).await;
    connect(&mut trigger, "/z").await;
    let big = Args::new().arg("w".repeat(4000));
    let arg = serde_json::to_string(&big.values()[0]).unwrap();
    trigger.send(format!(r#"42/z,["broadcast",{arg}]"#).as_bytes(), false).await;
    let expected = format!(r#"42["everyone",{arg}]"#);
    assert_eq!(zipped.text().await, (expected.clone(), true));
    assert_eq!(plain.text().await, (expected, false));
}

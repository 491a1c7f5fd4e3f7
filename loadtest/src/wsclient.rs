//! The harness's own WebSocket client (RFC 6455, client side, no extensions).
//!
//! The harness must never be what a benchmark measures, and per delivery a general-purpose
//! client cost more than the kernel read itself: tokio-tungstenite registers wakers on every
//! poll, builds a `Message` per frame and validates UTF-8, and its read buffer is separate
//! from the frames handed out. This client reads into one buffer, parses every complete
//! frame in place and hands out the payload as a `Bytes` slice of that buffer (no copy, no
//! allocation once the buffer has grown), skips UTF-8 validation (the harness scans bytes),
//! and writes masked frames for what it sends. Only the upgrade handshake's accept key comes
//! from tungstenite.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::b64;
use crate::conn::ConnError;

/// Largest message accepted from the server.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest upgrade response head.
const MAX_HEAD: usize = 16 * 1024;

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum WsIn {
    /// A text message (not checked for UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// A client WebSocket over one TCP stream.
pub struct WsClient {
    stream: TcpStream,
    /// Received bytes not yet parsed.
    rbuf: BytesMut,
    /// The smallest free space offered to each read.
    read_chunk: usize,
    /// Encoded frames waiting for [`WsClient::flush`].
    wbuf: Vec<u8>,
    /// Fragments being put together.
    reassembly: Reassembly,
    /// xorshift state for masking keys.
    rng: u64,
    closed: bool,
}

fn err(what: impl Into<String>) -> ConnError {
    ConnError(what.into())
}

fn io_err(stage: &str, e: &std::io::Error) -> ConnError {
    ConnError(format!("{stage}: {}", crate::conn::io_kind(e)))
}

impl WsClient {
    /// Upgrades `stream` with a GET of `target` (path and query) for `host`.
    pub async fn connect(
        mut stream: TcpStream,
        host: &str,
        target: &str,
        read_chunk: usize,
    ) -> Result<WsClient, ConnError> {
        let mut rng = seed(&stream);
        let key_bytes: [u8; 16] = std::array::from_fn(|_| next(&mut rng) as u8);
        let key = b64::encode(&key_bytes);
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.map_err(|e| io_err("websocket handshake", &e))?;
        let mut buf = BytesMut::with_capacity(1024);
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(err("websocket handshake: response head too large"));
            }
            buf.reserve(1024);
            let n =
                stream.read_buf(&mut buf).await.map_err(|e| io_err("websocket handshake", &e))?;
            if n == 0 {
                return Err(err("websocket handshake: closed"));
            }
        };
        let head = buf.split_to(head_len);
        check_upgrade(&head, &derive_accept_key(key.as_bytes()))?;
        Ok(WsClient {
            stream,
            rbuf: buf,
            read_chunk: read_chunk.max(512),
            wbuf: Vec::new(),
            reassembly: Reassembly::default(),
            rng,
            closed: false,
        })
    }

    /// The next message. Cancel-safe: the only await is a read into the buffer, and
    /// everything read stays in `self`.
    pub async fn recv(&mut self) -> Result<WsIn, ConnError> {
        loop {
            if let Some(m) = self.parse()? {
                return Ok(m);
            }
            if self.closed {
                return Err(err("closed by server"));
            }
            self.rbuf.reserve(self.read_chunk);
            let n =
                self.stream.read_buf(&mut self.rbuf).await.map_err(|e| io_err("websocket", &e))?;
            if n == 0 {
                return Err(err("closed by server"));
            }
        }
    }

    /// The next message already received, without reading the socket: `None` when the
    /// buffer holds no complete one (the frames of one read are handled in one go).
    pub fn try_recv(&mut self) -> Result<Option<WsIn>, ConnError> {
        self.parse()
    }

    /// Parses one message off the buffer, answering pings; `None` when more bytes are needed.
    fn parse(&mut self) -> Result<Option<WsIn>, ConnError> {
        loop {
            let Some((fin, opcode, hlen, len)) = parse_header(&self.rbuf)? else { return Ok(None) };
            if self.rbuf.len() < hlen + len {
                self.rbuf.reserve(hlen + len - self.rbuf.len());
                return Ok(None);
            }
            self.rbuf.advance(hlen);
            let payload = self.rbuf.split_to(len).freeze();
            let step = self.reassembly.frame(fin, opcode, &payload);
            let (text, message) = match step {
                Ok(Step::Whole(text)) => (text, payload),
                Ok(Step::Joined(text, m)) => (text, Bytes::from(m)),
                Ok(Step::Ping) => {
                    self.queue_frame(0xA, &payload);
                    continue;
                }
                Ok(Step::Nothing) => continue,
                Err(e) => {
                    self.closed = opcode == 0x8;
                    return Err(e);
                }
            };
            return Ok(Some(if text { WsIn::Text(message) } else { WsIn::Binary(message) }));
        }
    }

    /// Queues a text message (masked, as a client must).
    pub fn queue_text(&mut self, payload: &[u8]) {
        self.queue_frame(0x1, payload);
    }

    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        encode_masked(&mut self.wbuf, opcode, payload, &mut self.rng);
    }

    /// Whether [`WsClient::into_parts`] would succeed.
    pub fn can_hand_over(&self) -> bool {
        !self.reassembly.pending() && self.wbuf.is_empty() && !self.closed
    }

    /// Gives the socket up to the thread's event loop ([`crate::engine`]'s `hot` module)
    /// once the handshake and the join are done: the std stream (non-blocking, out of
    /// tokio's reactor), the bytes received and not parsed yet, and the masking state.
    /// `None` (the client is dropped) when it cannot be handed over as it stands: a
    /// fragmented message half-read, frames not written, or the server's close seen.
    pub fn into_parts(self) -> Option<(std::net::TcpStream, BytesMut, u64)> {
        if !self.can_hand_over() {
            return None;
        }
        let stream = self.stream.into_std().ok()?;
        Some((stream, self.rbuf, self.rng))
    }

    /// Whether frames are waiting to be written.
    pub fn has_pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes every queued frame.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        r.map_err(|e| io_err("websocket write", &e))
    }

    /// Sends a close frame (best effort; bound it with a timeout).
    pub async fn close(&mut self) {
        self.queue_frame(0x8, &1000u16.to_be_bytes());
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// What one server frame means once fragments are put together ([`Reassembly::frame`]).
pub(crate) enum Step {
    /// A whole message in one frame: the frame's payload is the message.
    Whole(bool),
    /// The last fragment of a message: the message put together (text or binary).
    Joined(bool, Vec<u8>),
    /// A WebSocket ping: answer with a pong of the same payload.
    Ping,
    /// Nothing to hand out (a fragment kept, a pong).
    Nothing,
}

/// The server-to-client frame rules shared by [`WsClient`] and the engine's event loop:
/// fragments put together (bounded by [`MAX_MESSAGE`]), close and unknown opcodes as errors.
#[derive(Default)]
pub(crate) struct Reassembly {
    /// A fragmented message being put together: (text, payload so far).
    partial: Option<(bool, Vec<u8>)>,
}

impl Reassembly {
    /// Whether a fragmented message is half-read.
    pub(crate) fn pending(&self) -> bool {
        self.partial.is_some()
    }

    /// One complete frame (`fin`, `opcode`, its `payload`).
    pub(crate) fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> Result<Step, ConnError> {
        match opcode {
            0x1 | 0x2 => {
                let text = opcode == 0x1;
                if self.partial.is_some() {
                    return Err(err("websocket: new message inside a fragmented one"));
                }
                if fin {
                    return Ok(Step::Whole(text));
                }
                self.partial = Some((text, payload.to_vec()));
                Ok(Step::Nothing)
            }
            0x0 => {
                let Some((text, mut acc)) = self.partial.take() else {
                    return Err(err("websocket: continuation without a message"));
                };
                if acc.len() + payload.len() > MAX_MESSAGE {
                    return Err(err("websocket: message too large"));
                }
                acc.extend_from_slice(payload);
                if fin {
                    return Ok(Step::Joined(text, acc));
                }
                self.partial = Some((text, acc));
                Ok(Step::Nothing)
            }
            0x8 => Err(err("closed by server")),
            0x9 => Ok(Step::Ping),
            0xA => Ok(Step::Nothing),
            op => Err(err(format!("websocket: unknown opcode {op}"))),
        }
    }
}

/// Appends one masked client frame (FIN set) of `opcode` carrying `payload` to `out`.
pub(crate) fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], rng: &mut u64) {
    let len = payload.len();
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(0x80 | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0x80 | 127);
        out.put_u64(len as u64);
    }
    let key = (next(rng) as u32).to_be_bytes();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// (fin, opcode, header length, payload length) of the frame at the front, once its header
/// is complete.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<(bool, u8, usize, usize)>, ConnError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(err("websocket: reserved bits set (no extension was negotiated)"));
    }
    if b1 & 0x80 != 0 {
        return Err(err("websocket: masked frame from the server"));
    }
    let (hlen, len) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as u64)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(b))
        }
        n => (2, n as u64),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(err("websocket: frame too large"));
    }
    Ok(Some((b0 & 0x80 != 0, b0 & 0x0f, hlen, len as usize)))
}

/// Checks a `101 Switching Protocols` answer with the expected accept key.
fn check_upgrade(head: &[u8], accept: &str) -> Result<(), ConnError> {
    let text = std::str::from_utf8(head).map_err(|_| err("websocket handshake: bad head"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    if code != "101" {
        return Err(err(format!("websocket handshake: HTTP {code}")));
    }
    let ok = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(n, v)| n.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept);
    if !ok {
        return Err(err("websocket handshake: wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

fn seed(stream: &TcpStream) -> u64 {
    let port = stream.local_addr().map_or(0, |a| a.port() as u64);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (port << 32) ^ 0x9e37_79b9_7f4a_7c15) | 1
}

/// xorshift64: masking keys need only be unpredictable to intermediaries, and there are
/// none on loopback; the RFC's requirement is met in spirit without a CSPRNG per frame.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_length_form() {
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
        assert_eq!(parse_header(&[0x81, 5]).unwrap(), Some((true, 1, 2, 5)));
        assert_eq!(parse_header(&[0x01, 126, 1]).unwrap(), None);
        assert_eq!(parse_header(&[0x01, 126, 1, 0]).unwrap(), Some((false, 1, 4, 256)));
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(parse_header(&long).unwrap(), Some((true, 2, 10, 70_000)));
        assert!(parse_header(&[0xc1, 1]).is_err(), "RSV1 without deflate");
        assert!(parse_header(&[0x81, 0x81]).is_err(), "masked server frame");
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn upgrade_answer_is_checked() {
        let accept = derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        let ok =
            format!("HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {accept}\r\n\r\n");
        assert!(check_upgrade(ok.as_bytes(), &accept).is_ok());
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(check_upgrade(wrong.as_bytes(), &accept).is_err());
        let refused = "HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(
            check_upgrade(refused.as_bytes(), &accept).unwrap_err().0,
            "websocket handshake: HTTP 400"
        );
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.unwrap(), s.unwrap().0)
    }

    /// Against a scripted server on a real socket: the handshake, frames split across reads,
    /// a fragmented message, a ping answered with a masked pong, the close, and what
    /// `try_recv` takes from the buffer without reading.
    #[tokio::test]
    async fn talks_to_a_server() {
        let (client, mut server) = pair().await;
        let srv = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                server.read_exact(&mut b).await.unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .trim()
                .to_owned();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            // The first frame arrives with the response head.
            let mut out = resp.into_bytes();
            out.extend_from_slice(b"\x81\x020x");
            server.write_all(&out).await.unwrap();
            server.write_all(b"\x81\x05hel").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            server.write_all(b"lo\x01\x02ab\x89\x01p\x80\x02cd\x82\x01\x07\x88\x00").await.unwrap();
            let mut pong = [0u8; 7];
            server.read_exact(&mut pong).await.unwrap();
            pong
        });
        let mut ws = WsClient::connect(client, "h", "/socket.io/?EIO=4", 512).await.unwrap();
        // The frame that came with the head is there without a read; the next is not whole.
        assert_eq!(ws.try_recv().unwrap(), Some(WsIn::Text(Bytes::from_static(b"0x"))));
        assert_eq!(ws.try_recv().unwrap(), None);
        assert_eq!(ws.recv().await.unwrap(), WsIn::Text(Bytes::from_static(b"hello")));
        // The fragmented message came in the same read as the end of "hello".
        assert_eq!(ws.try_recv().unwrap(), Some(WsIn::Text(Bytes::from_static(b"abcd"))));
        assert!(ws.has_pending(), "the ping's pong is queued");
        ws.flush().await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), WsIn::Binary(Bytes::from_static(b"\x07")));
        assert_eq!(ws.recv().await.unwrap_err().0, "closed by server");
        let pong = srv.await.unwrap();
        assert_eq!(pong[0], 0x8a);
        assert_eq!(pong[1], 0x81, "masked, 1 byte");
        assert_eq!(pong[6] ^ pong[2], b'p');
    }
}

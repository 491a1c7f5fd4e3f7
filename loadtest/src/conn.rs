//! One client connection: the transports (WebSocket through our lean client, see
//! [`crate::wsclient`]; HTTP/1.1
//! long-polling over raw `TcpStream`s, one for the held GET and one for POSTs), the Engine.IO
//! handshake and the namespace CONNECT. Errors carry a short reason that is counted as is.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::plan::Plan;
use crate::proto::{self, Eio, Kind};
use crate::sys::mono_ns;
use crate::wsclient::{WsClient, WsIn};

/// Why a connection failed or ended; the text is the reason counted in `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnError(pub String);

impl ConnError {
    fn new(s: impl Into<String>) -> ConnError {
        ConnError(s.into())
    }
}

fn io_reason(stage: &str, e: &std::io::Error) -> ConnError {
    ConnError(format!("{stage}: {}", io_kind(e)))
}

pub(crate) fn io_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        AddrInUse => "address in use".into(),
        AddrNotAvailable => "address not available (ephemeral ports exhausted?)".into(),
        TimedOut => "timed out".into(),
        BrokenPipe => "broken pipe".into(),
        UnexpectedEof => "unexpected eof".into(),
        _ => match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files".into(),
            _ => format!("{:?}", e.kind()).to_lowercase(),
        },
    }
}

/// How to reach the server, shared by every connection of a process.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Engine.IO path (`/socket.io/`).
    pub path: String,
    /// Namespace.
    pub nsp: String,
    /// Auth JSON for CONNECT.
    pub auth: Option<String>,
    /// WebSocket read buffer size.
    pub read_buffer: usize,
}

impl Endpoint {
    /// Server `server` (index into `plan.servers`) of a plan.
    pub fn of(plan: &Plan, server: usize) -> Endpoint {
        let s = &plan.servers[server];
        Endpoint {
            addr: s.addr,
            host: s.host_header.clone(),
            path: plan.path.clone(),
            nsp: plan.namespace.clone(),
            auth: plan.auth.clone(),
            read_buffer: (plan.payload + 512).clamp(4096, 64 * 1024),
        }
    }
}

/// Handshake timings of a new connection, in nanoseconds since the attempt started, and
/// what the CONNECT reply said.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// Until the Engine.IO OPEN packet arrived.
    pub eio_open_ns: u64,
    /// Until the namespace CONNECT was acknowledged.
    pub ns_connect_ns: u64,
    /// The socket id.
    pub sid: Option<String>,
    /// The private session id (connection state recovery on).
    pub pid: Option<String>,
    /// Socket.IO packets (after the Engine.IO `4`) that came before the CONNECT reply: what
    /// a recovered socket missed.
    pub early: Vec<Vec<u8>>,
}

/// What a client that lost its connection sends back to recover its socket (socket.io's
/// `pid` and the last offset it received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The private session id of the CONNECT reply.
    pub pid: String,
    /// The last offset received, if any.
    pub offset: Option<String>,
}

/// The CONNECT auth of a resuming client: `{"pid":…,"offset":…}` then the fields of `auth`
/// (a JSON object), as socket.io-client merges them.
fn resume_auth(r: &Resume, auth: Option<&str>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("pid".into(), serde_json::Value::String(r.pid.clone()));
    if let Some(o) = &r.offset {
        m.insert("offset".into(), serde_json::Value::String(o.clone()));
    }
    if let Some(serde_json::Value::Object(a)) = auth.and_then(|a| serde_json::from_str(a).ok()) {
        m.extend(a);
    }
    serde_json::Value::Object(m).to_string()
}

async fn tcp_connect(addr: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream, ConnError> {
    let stream = match bind {
        None => TcpStream::connect(addr).await.map_err(|e| io_reason("connect", &e))?,
        Some(ip) => {
            let sock = if ip.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
                .map_err(|e| io_reason("socket", &e))?;
            sock.bind(SocketAddr::new(ip, 0)).map_err(|e| io_reason("bind", &e))?;
            sock.connect(addr).await.map_err(|e| io_reason("connect", &e))?
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One payload from the server: a WebSocket text frame (one packet) or a polling response body
/// (packets separated by 0x1e).
pub struct Payload {
    /// The bytes.
    pub bytes: Bytes,
    /// Whether it may hold several packets.
    pub multi: bool,
}

impl Payload {
    /// The Engine.IO packets in it.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many) = if self.multi {
            (None, Some(proto::split_payload(&self.bytes)))
        } else {
            (Some(&self.bytes[..]), None)
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// What [`Conn::recv`] got.
pub enum Incoming {
    /// Text.
    Text(Payload),
    /// A binary frame (attachments; ignored by the harness).
    Binary,
}

/// An established connection.
pub enum Conn {
    /// WebSocket.
    Ws(WsConn),
    /// HTTP long-polling.
    Poll(PollConn),
}

/// WebSocket transport.
pub struct WsConn {
    ws: WsClient,
}

/// Long-polling transport: the GET loop runs in its own task and hands bodies over a channel.
pub struct PollConn {
    post: Http,
    target: String,
    rx: mpsc::Receiver<Result<Bytes, ConnError>>,
    get_task: tokio::task::JoinHandle<()>,
    pending: BytesMut,
}

impl Drop for PollConn {
    fn drop(&mut self) {
        self.get_task.abort();
    }
}

/// A WebSocket message as the engine sees it.
fn ws_incoming(m: WsIn) -> Incoming {
    match m {
        WsIn::Text(bytes) => Incoming::Text(Payload { bytes, multi: false }),
        WsIn::Binary(_) => Incoming::Binary,
    }
}

/// A polling response body (several packets) as the engine sees it.
fn poll_incoming(bytes: Bytes) -> Incoming {
    Incoming::Text(Payload { bytes, multi: true })
}

impl Conn {
    /// Connects: TCP, transport, Engine.IO OPEN, namespace CONNECT (with auth). Time-bounded by
    /// the caller.
    pub async fn open(
        ep: &Endpoint,
        polling: bool,
        bind: Option<IpAddr>,
    ) -> Result<(Conn, Handshake), ConnError> {
        Conn::open_resuming(ep, polling, bind, None).await
    }

    /// [`Conn::open`], sending `resume` in the CONNECT (connection state recovery).
    pub async fn open_resuming(
        ep: &Endpoint,
        polling: bool,
        bind: Option<IpAddr>,
        resume: Option<&Resume>,
    ) -> Result<(Conn, Handshake), ConnError> {
        let t0 = mono_ns();
        let mut conn = if polling {
            Conn::open_polling(ep, bind).await?
        } else {
            Conn::open_ws(ep, bind).await?
        };
        let eio_open_ns = mono_ns() - t0;
        let auth = resume.map(|r| resume_auth(r, ep.auth.as_deref()));
        conn.queue(proto::connect_packet(&ep.nsp, auth.as_deref().or(ep.auth.as_deref())).freeze());
        conn.flush().await?;
        let mut early = Vec::new();
        loop {
            let Incoming::Text(payload) = conn.recv().await? else { continue };
            for p in payload.packets() {
                match proto::eio(p).map_err(|m| ConnError::new(format!("malformed: {}", m.0)))? {
                    Eio::Ping(data) => conn.queue_pong(data),
                    Eio::Close => return Err(ConnError::new("closed by server during connect")),
                    Eio::Message(m) => {
                        let sio = proto::sio(m, &ep.nsp)
                            .map_err(|e| ConnError::new(format!("malformed: {}", e.0)))?;
                        match sio.map(|s| (s.kind, s.data)) {
                            Some((Kind::Connect, data)) => {
                                conn.flush().await?;
                                let reply: serde_json::Value =
                                    serde_json::from_slice(data).unwrap_or_default();
                                let field = |k: &str| reply[k].as_str().map(str::to_owned);
                                let hs = Handshake {
                                    eio_open_ns,
                                    ns_connect_ns: mono_ns() - t0,
                                    sid: field("sid"),
                                    pid: field("pid"),
                                    early,
                                };
                                return Ok((conn, hs));
                            }
                            Some((Kind::ConnectError, data)) => return Err(connect_error(data)),
                            Some((Kind::Event | Kind::BinaryEvent, _)) => early.push(m.to_vec()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            conn.flush().await?;
        }
    }

    async fn open_ws(ep: &Endpoint, bind: Option<IpAddr>) -> Result<Conn, ConnError> {
        let stream = tcp_connect(ep.addr, bind).await?;
        let target = format!("{}?EIO=4&transport=websocket", ep.path);
        let ws = WsClient::connect(stream, &ep.host, &target, ep.read_buffer).await?;
        let mut conn = Conn::Ws(WsConn { ws });
        loop {
            if let Incoming::Text(p) = conn.recv().await? {
                return match proto::eio(&p.bytes) {
                    Ok(Eio::Open(json)) => {
                        proto::parse_open(json)
                            .map_err(|m| ConnError::new(format!("malformed: {}", m.0)))?;
                        Ok(conn)
                    }
                    _ => Err(ConnError::new("malformed: first packet is not OPEN")),
                };
            }
        }
    }

    async fn open_polling(ep: &Endpoint, bind: Option<IpAddr>) -> Result<Conn, ConnError> {
        let base = format!("{}?EIO=4&transport=polling", ep.path);
        let mut get = Http::new(ep.addr, bind, ep.host.clone());
        let body = get.expect_ok("GET", &base, b"").await?;
        let first = proto::split_payload(&body).next().unwrap_or(b"");
        let open = match proto::eio(first) {
            Ok(Eio::Open(json)) => proto::parse_open(json)
                .map_err(|m| ConnError::new(format!("malformed: {}", m.0)))?,
            _ => return Err(ConnError::new("malformed: first packet is not OPEN")),
        };
        if open.sid.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
            return Err(ConnError::new("malformed: sid needs URL escaping"));
        }
        let target = format!("{base}&sid={}", open.sid);
        let (tx, rx) = mpsc::channel(16);
        let get_target = target.clone();
        let get_task = tokio::spawn(async move {
            loop {
                let r = get.expect_ok("GET", &get_target, b"").await;
                let stop = r.is_err();
                if tx.send(r).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Conn::Poll(PollConn {
            post: Http::new(ep.addr, bind, ep.host.clone()),
            target,
            rx,
            get_task,
            pending: BytesMut::new(),
        }))
    }

    /// Whether [`Conn::into_parts`] would succeed: a WebSocket with nothing half-read or
    /// unwritten.
    pub fn can_hand_over(&self) -> bool {
        matches!(self, Conn::Ws(c) if c.ws.can_hand_over())
    }

    /// The socket, the bytes received and not parsed yet and the masking state of a
    /// WebSocket connection, for the thread's event loop (see [`WsClient::into_parts`]).
    pub fn into_parts(self) -> Option<(std::net::TcpStream, BytesMut, u64)> {
        match self {
            Conn::Ws(c) => c.ws.into_parts(),
            Conn::Poll(_) => None,
        }
    }

    /// Whether this is a long-polling connection.
    pub fn is_polling(&self) -> bool {
        matches!(self, Conn::Poll(_))
    }

    /// Next payload. Cancel-safe (used in `select!`).
    pub async fn recv(&mut self) -> Result<Incoming, ConnError> {
        match self {
            Conn::Ws(c) => Ok(ws_incoming(c.ws.recv().await?)),
            Conn::Poll(c) => match c.rx.recv().await {
                Some(r) => r.map(poll_incoming),
                None => Err(ConnError::new("polling: GET loop ended")),
            },
        }
    }

    /// The next message already received, without waiting: `None` when there is none.
    pub fn try_recv(&mut self) -> Result<Option<Incoming>, ConnError> {
        match self {
            Conn::Ws(c) => Ok(c.ws.try_recv()?.map(ws_incoming)),
            Conn::Poll(c) => match c.rx.try_recv() {
                Ok(r) => r.map(|bytes| Some(poll_incoming(bytes))),
                Err(_) => Ok(None),
            },
        }
    }

    /// Queues one Engine.IO packet (already encoded); nothing is written before [`Conn::flush`].
    pub fn queue(&mut self, packet: Bytes) {
        match self {
            Conn::Ws(c) => c.ws.queue_text(&packet),
            Conn::Poll(c) => {
                if !c.pending.is_empty() {
                    c.pending.extend_from_slice(&[proto::RECORD_SEPARATOR]);
                }
                c.pending.extend_from_slice(&packet);
            }
        }
    }

    /// Queues the PONG for a PING with `data`.
    pub fn queue_pong(&mut self, data: &[u8]) {
        self.queue(Bytes::from(proto::pong(data)));
    }

    /// Whether packets are waiting for [`Conn::flush`].
    pub fn has_pending(&self) -> bool {
        match self {
            Conn::Ws(c) => c.ws.has_pending(),
            Conn::Poll(c) => !c.pending.is_empty(),
        }
    }

    /// Writes everything queued: WebSocket frames then one flush, or one POST.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        match self {
            Conn::Ws(c) => c.ws.flush().await,
            Conn::Poll(c) => {
                if c.pending.is_empty() {
                    return Ok(());
                }
                let body = c.pending.split();
                c.post.expect_ok("POST", &c.target, &body).await.map(|_| ())
            }
        }
    }

    /// Leaves the namespace and closes the transport, politely and briefly.
    pub async fn close(mut self, nsp: &str) {
        let mut b = BytesMut::new();
        proto::write_header(&mut b, b'1', nsp, None);
        self.queue(b.freeze());
        if let Conn::Poll(_) = self {
            self.queue(Bytes::from_static(b"1"));
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            if let Conn::Ws(c) = &mut self {
                c.ws.close().await;
            }
        })
        .await;
    }
}

fn connect_error(data: &[u8]) -> ConnError {
    let msg = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    ConnError::new(format!("namespace refused: {}", msg.chars().take(80).collect::<String>()))
}

/// A minimal HTTP/1.1 client on one keep-alive connection, reopened when the server closes it.
pub struct Http {
    addr: SocketAddr,
    bind: Option<IpAddr>,
    host: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    out: BytesMut,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

impl Http {
    /// A client for `addr`; connects on first use.
    pub fn new(addr: SocketAddr, bind: Option<IpAddr>, host: String) -> Http {
        Http {
            addr,
            bind,
            host,
            stream: None,
            buf: BytesMut::with_capacity(4096),
            out: BytesMut::new(),
        }
    }

    /// A request that must answer 200; returns the body.
    pub async fn expect_ok(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Bytes, ConnError> {
        let (status, body) = self.request(method, target, body).await?;
        if status != 200 {
            return Err(ConnError(format!("polling: HTTP {status} on {method}")));
        }
        Ok(body)
    }

    /// One request and its response.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, Bytes), ConnError> {
        use std::fmt::Write as _;
        if self.stream.is_none() {
            self.stream = Some(tcp_connect(self.addr, self.bind).await?);
            self.buf.clear();
        }
        self.out.clear();
        let _ = write!(
            self.out,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\nAccept: */*\r\n",
            self.host
        );
        if method == "POST" {
            let _ = write!(
                self.out,
                "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        let r = self.exchange().await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn exchange(&mut self) -> Result<(u16, Bytes), ConnError> {
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.out).await.map_err(|e| io_reason("polling write", &e))?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ConnError::new("polling: response head too large"));
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| ConnError::new("malformed: non-UTF-8 HTTP head"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(ConnError::new("malformed: bad HTTP status line"));
        }
        let status: u16 = code.parse().map_err(|_| ConnError::new("malformed: bad HTTP status"))?;
        let (mut length, mut chunked, mut close) = (None, false, version == "HTTP/1.0");
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| ConnError::new("malformed: bad Content-Length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        self.buf.advance(head_end);
        let body = if chunked {
            let mut body = BytesMut::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if self.buf.len() > 1024 {
                        return Err(ConnError::new("malformed: bad chunk header"));
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap_or("");
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| ConnError::new("malformed: bad chunk size"))?;
                self.buf.advance(line_end + 2);
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let i = loop {
                            if let Some(i) = find(&self.buf, b"\r\n") {
                                break i;
                            }
                            if self.buf.len() > MAX_HEAD {
                                return Err(ConnError::new("malformed: bad trailers"));
                            }
                            read_more(stream, &mut self.buf).await?;
                        };
                        self.buf.advance(i + 2);
                        if i == 0 {
                            break;
                        }
                    }
                    break;
                }
                if body.len() + size > MAX_BODY {
                    return Err(ConnError::new("polling: body too large"));
                }
                while self.buf.len() < size + 2 {
                    read_more(stream, &mut self.buf).await?;
                }
                body.extend_from_slice(&self.buf[..size]);
                self.buf.advance(size + 2);
            }
            body.freeze()
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(ConnError::new("polling: body too large"));
            }
            while self.buf.len() < n {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf.split_to(n).freeze()
        } else {
            // Until the server closes.
            close = true;
            loop {
                if self.buf.len() > MAX_BODY {
                    return Err(ConnError::new("polling: body too large"));
                }
                match stream.read_buf(&mut self.buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(io_reason("polling read", &e)),
                }
            }
            self.buf.split().freeze()
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ConnError> {
    buf.reserve(4096);
    match stream.read_buf(buf).await {
        Ok(0) => Err(ConnError::new("polling: connection closed by server")),
        Ok(_) => Ok(()),
        Err(e) => Err(io_reason("polling read", &e)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

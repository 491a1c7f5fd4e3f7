//! Shared helpers of the integration tests: an in-process server, a raw HTTP/1.1 client
//! over `TcpStream`, an Engine.IO long-polling client built on it, a WebSocket client on
//! `tokio-tungstenite`, and a probe application that reports what happens on the server.
//!
//! Every wait is bounded by [`WAIT`]: a test that would hang fails instead.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast::{Config, ConfigBuilder, DisconnectReason, RunningServer, Server, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// Engine.IO packet separator in polling payloads.
pub const SEP: char = '\x1e';

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// The default test configuration: 2 shards, the rest as socket.io's defaults.
pub fn config() -> ConfigBuilder {
    Config::builder().shards(2)
}

/// A server running in-process on 127.0.0.1 with an ephemeral port. Dropping it shuts the
/// server down.
pub struct TestServer {
    pub io: Server,
    pub addr: SocketAddr,
    running: Option<RunningServer>,
}

impl TestServer {
    /// Starts a server with `config`, after `setup` registered its namespaces.
    pub fn start(config: Config, setup: impl FnOnce(&Server)) -> TestServer {
        let io = Server::new(config);
        setup(&io);
        let running = io.listen("127.0.0.1:0".parse().unwrap()).expect("listen");
        TestServer { addr: running.local_addr(), io, running: Some(running) }
    }

    /// Starts a server running the demo application.
    pub fn demo(config: Config) -> TestServer {
        TestServer::start(config, shardcast::app::install)
    }

    /// Starts a server running the [`Probe`] application on `/`, `/custom` and `/other`.
    pub fn probe(config: Config) -> (TestServer, Probe) {
        let mut probe = None;
        let server = TestServer::start(config, |io| {
            probe = Some(Probe::install(io, &["/", "/custom", "/other"]))
        });
        (server, probe.unwrap())
    }

    /// The metrics listener's address, when the configuration asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(RunningServer::metrics_addr)
    }

    /// Shuts the server down (also done on drop).
    pub fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }

    /// `ws://ADDR/socket.io/?EIO=4&transport=websocket` plus `extra` query parameters.
    pub fn ws_url(&self, extra: &str) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket{extra}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Probe application
// ---------------------------------------------------------------------------------------

/// A server-side disconnection seen by the probe app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub nsp: String,
    pub id: String,
    pub reason: DisconnectReason,
}

/// What the probe application reports: every connected socket (so that the test can use the
/// Rust API on it) and every disconnection with its reason.
///
/// On each of its namespaces it behaves like the demo app's `/custom` namespace (`auth` on
/// connection, `message` echoed as `message-back`) plus:
/// - `message-with-ack` acks with the same args;
/// - `join` / `leave` (room) [+ ack `true`];
/// - `kick-me`: `socket.disconnect(false)`;
/// - `disconnect-me`: `socket.disconnect(true)`;
/// - `rooms` + ack: acks with the socket's rooms;
/// - `relay` (room, event, ...args): `socket.to(room).emit(event, ...args)` (sender excluded).
pub struct Probe {
    pub sockets: UnboundedReceiver<Socket>,
    gone: UnboundedReceiver<Gone>,
    /// Disconnections received while waiting for another one.
    pending: Vec<Gone>,
}

impl Probe {
    pub fn install(io: &Server, namespaces: &[&str]) -> Probe {
        let (stx, srx) = unbounded_channel::<Socket>();
        let (gtx, grx) = unbounded_channel::<Gone>();
        for name in namespaces {
            let (stx, gtx) = (stx.clone(), gtx.clone());
            io.of(name).on_connection(move |socket| {
                let gtx = gtx.clone();
                socket.on_disconnect(move |s, reason| {
                    let _ =
                        gtx.send(Gone { nsp: s.ns().to_owned(), id: s.id().to_owned(), reason });
                });
                let _ = socket.emit("auth", socket.handshake().auth.clone());
                socket.on("message", |s, args, _ack| {
                    let _ = s.emit("message-back", args);
                });
                socket.on("message-with-ack", |_s, args, ack| {
                    if let Some(ack) = ack {
                        let _ = ack.send(args);
                    }
                });
                socket.on("join", |s, args, ack| {
                    if let Some(room) = args.str(0) {
                        s.join(room);
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send((true,));
                    }
                });
                socket.on("leave", |s, args, ack| {
                    if let Some(room) = args.str(0) {
                        s.leave(room);
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send((true,));
                    }
                });
                socket.on("rooms", |s, _args, ack| {
                    let mut rooms: Vec<String> = s.rooms().iter().map(|r| r.to_string()).collect();
                    rooms.sort();
                    if let Some(ack) = ack {
                        let _ = ack.send((rooms,));
                    }
                });
                socket.on("relay", |s, args, _ack| {
                    let (Some(room), Some(event)) = (args.str(0), args.str(1)) else { return };
                    let (room, event) = (room.to_owned(), event.to_owned());
                    let _ = s.to(room).emit(&event, args.skip(2));
                });
                socket.on("kick-me", |s, _args, _ack| s.disconnect(false));
                socket.on("disconnect-me", |s, _args, _ack| s.disconnect(true));
                let _ = stx.send(socket);
            });
        }
        Probe { sockets: srx, gone: grx, pending: Vec::new() }
    }

    /// The next socket that connected.
    pub async fn socket(&mut self) -> Socket {
        recv(&mut self.sockets).await
    }

    /// Waits for the disconnection of socket `id` and returns its reason. Other
    /// disconnections seen meanwhile are kept for later calls.
    pub async fn reason_of(&mut self, id: &str) -> DisconnectReason {
        if let Some(pos) = self.pending.iter().position(|g| g.id == id) {
            return self.pending.remove(pos).reason;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let gone = tokio::time::timeout_at(deadline, self.gone.recv())
                .await
                .unwrap_or_else(|_| panic!("socket {id} was not disconnected in time"))
                .expect("probe channel closed");
            if gone.id == id {
                return gone.reason;
            }
            self.pending.push(gone);
        }
    }

    /// A disconnection already reported and not yet consumed, if any.
    pub fn try_gone(&mut self) -> Option<Gone> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        self.gone.try_recv().ok()
    }
}

/// Receives from `rx` within [`WAIT`].
pub async fn recv<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting on a channel")
        .expect("channel closed")
}

/// A channel, for tests' own handlers.
pub fn channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    unbounded_channel()
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of the headers named `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Sends one request (`Connection: close`, `Content-Length` when there is a body) and reads
/// the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let raw = raw_exchange(addr, &bytes).await;
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "no complete HTTP response to {method} {target}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Writes `bytes` on a new connection and reads until the server closes it (or resets it:
/// whatever arrived before is returned).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    tokio::time::timeout(WAIT, async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before reading all of a large body.
        let _ = tcp.write_all(bytes).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    })
    .await
    .expect("HTTP exchange timed out")
}

/// Parses a complete response (body by `Content-Length`, chunked, or up to the end).
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let get =
        |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Resp { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// `GET target`.
pub async fn get(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "GET", target, &[], b"").await
}

/// Asserts an Engine.IO error answer: HTTP 400 and exactly `{"code":code,"message":message}`.
#[track_caller]
pub fn assert_eio_error(resp: &Resp, code: u8, message: &str) {
    assert_eq!(resp.status, 400, "status of {resp:?}");
    assert_eq!(resp.json(), json!({"code": code, "message": message}), "body of {resp:?}");
}

// ---------------------------------------------------------------------------------------
// Engine.IO long-polling client
// ---------------------------------------------------------------------------------------

/// The polling URL of session `sid`.
pub fn poll_target(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// A polling handshake: returns the sid and the open packet's JSON.
pub async fn handshake(addr: SocketAddr) -> (String, Value) {
    handshake_with(addr, "").await
}

/// A polling handshake with extra query parameters (`&k=v...`).
pub async fn handshake_with(addr: SocketAddr, extra: &str) -> (String, Value) {
    let resp = get(addr, &format!("/socket.io/?EIO=4&transport=polling{extra}")).await;
    assert_eq!(resp.status, 200, "handshake: {resp:?}");
    let body = resp.text();
    let open = body.strip_prefix('0').unwrap_or_else(|| panic!("not an open packet: {body:?}"));
    let open: Value = serde_json::from_str(open).expect("open packet JSON");
    (open["sid"].as_str().expect("sid").to_owned(), open)
}

/// One polling GET.
pub async fn poll(addr: SocketAddr, sid: &str) -> Resp {
    get(addr, &poll_target(sid)).await
}

/// One polling GET that must succeed; returns its packets.
pub async fn poll_packets(addr: SocketAddr, sid: &str) -> Vec<String> {
    let resp = poll(addr, sid).await;
    assert_eq!(resp.status, 200, "poll: {resp:?}");
    split_payload(&resp.text())
}

/// One polling POST of `body`.
pub async fn post(addr: SocketAddr, sid: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        &poll_target(sid),
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body.as_bytes(),
    )
    .await
}

/// A polling POST that must be answered `ok`.
pub async fn post_ok(addr: SocketAddr, sid: &str, body: &str) {
    let resp = post(addr, sid, body).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "POST {body:?}: {resp:?}");
}

/// Packets joined into one polling payload.
pub fn payload(packets: &[&str]) -> String {
    packets.join(&SEP.to_string())
}

/// A polling payload split into its packets.
pub fn split_payload(body: &str) -> Vec<String> {
    body.split(SEP).map(str::to_owned).collect()
}

/// Polls until the session is gone: the GET answers 400 `Session ID unknown`. Answers in
/// between may only carry what was still queued, ending with the CLOSE packet `1`.
pub async fn assert_session_gone(addr: SocketAddr, sid: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "session {sid} still alive");
        let resp = poll(addr, sid).await;
        if resp.status == 400 {
            assert_eio_error(&resp, 1, "Session ID unknown");
            return;
        }
        // What was still queued, then the CLOSE packet, may come first.
        assert_eq!(resp.status, 200, "{resp:?}");
    }
}

/// A polling session connected to namespace `/` (open, `40`, then the `40{sid}` + `auth`
/// answers read). Returns (engine sid, socket id).
pub async fn polling_session(addr: SocketAddr) -> (String, String) {
    let (sid, _) = handshake(addr).await;
    post_ok(addr, &sid, "40").await;
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(packets.len(), 2, "{packets:?}");
    let id = connect_ok_sid(&packets[0], "/");
    assert_eq!(packets[1], r#"42["auth",{}]"#);
    (sid, id)
}

/// The socket id in a CONNECT answer `40[nsp,]{"sid":...}`.
#[track_caller]
pub fn connect_ok_sid(packet: &str, nsp: &str) -> String {
    let prefix = if nsp == "/" { "40".to_owned() } else { format!("40{nsp},") };
    let json = packet
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not a CONNECT for {nsp}: {packet:?}"));
    let v: Value =
        serde_json::from_str(json).unwrap_or_else(|_| panic!("bad CONNECT JSON: {packet:?}"));
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 1, "CONNECT data must be exactly {{sid}}: {packet:?}");
    let id = obj["sid"].as_str().expect("sid string").to_owned();
    assert_eq!(id.len(), 20, "socket id length: {id}");
    id
}

// ---------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------

/// One frame received over WebSocket, or the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Closed,
}

/// An Engine.IO client over WebSocket.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Answer server PINGs (`2` → `3`) and skip them. On by default.
    pub auto_pong: bool,
}

impl Ws {
    /// Connects to `url` (the WebSocket handshake only).
    pub async fn connect_url(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            let name =
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
            req.headers_mut().insert(name, HeaderValue::from_str(v).expect("header value"));
        }
        let (inner, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("websocket connect timed out")?;
        Ok(Ws { inner, auto_pong: true })
    }

    /// Opens a new session directly over WebSocket; returns the client and the open
    /// packet's JSON.
    pub async fn open(addr: SocketAddr) -> (Ws, Value) {
        Ws::open_url(&format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"), &[]).await
    }

    /// Opens a new session over WebSocket at `url` with extra request headers.
    pub async fn open_url(url: &str, headers: &[(&str, &str)]) -> (Ws, Value) {
        let mut ws = Ws::connect_url(url, headers).await.expect("websocket handshake");
        let open = ws.text().await;
        let json = open.strip_prefix('0').unwrap_or_else(|| panic!("not an open packet: {open:?}"));
        (ws, serde_json::from_str(json).expect("open JSON"))
    }

    /// Opens a session over WebSocket and connects it to namespace `/`, consuming the
    /// `auth` event. Returns the client and its socket id.
    pub async fn connected(addr: SocketAddr) -> (Ws, String) {
        let (mut ws, _) = Ws::open(addr).await;
        let id = ws.sio_connect("/", None).await;
        ws.expect(r#"42["auth",{}]"#).await;
        (ws, id)
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.inner.send(Message::text(text.to_owned())))
            .await
            .expect("send timed out")
            .expect("send text");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: &[u8]) {
        tokio::time::timeout(WAIT, self.inner.send(Message::binary(data.to_vec())))
            .await
            .expect("send timed out")
            .expect("send binary");
    }

    /// The next frame within `limit`, answering and skipping server PINGs when `auto_pong`.
    /// `None` when nothing arrived in time.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next()).await.ok()?;
            let frame = match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Frame::Closed,
                Some(Ok(Message::Text(t))) => Frame::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(_)) => continue,
            };
            if self.auto_pong && frame == Frame::Text("2".into()) {
                let _ = self.inner.send(Message::text("3")).await;
                continue;
            }
            return Some(frame);
        }
    }

    /// The next frame; panics after [`WAIT`].
    pub async fn next(&mut self) -> Frame {
        self.next_within(WAIT).await.expect("timed out waiting for a websocket frame")
    }

    /// The next frame, which must be text.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Frame::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub async fn binary(&mut self) -> Vec<u8> {
        match self.next().await {
            Frame::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The next frame must be the text `expected`.
    pub async fn expect(&mut self, expected: &str) {
        let got = self.text().await;
        assert_eq!(got, expected);
    }

    /// Sends a namespace CONNECT (with `auth` when given) and reads the `40..{"sid"}`
    /// answer; returns the socket id.
    pub async fn sio_connect(&mut self, nsp: &str, auth: Option<Value>) -> String {
        let prefix = if nsp == "/" { "40".to_owned() } else { format!("40{nsp},") };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("{prefix}{auth}")).await;
        let answer = self.text().await;
        connect_ok_sid(&answer, nsp)
    }

    /// The connection must end (close frame, EOF or reset) within [`WAIT`]; text frames
    /// before it are returned.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Frame::Closed => return before,
                Frame::Text(t) => before.push(t),
                Frame::Binary(_) => before.push("<binary>".into()),
            }
        }
    }

    /// Nothing (but PINGs) arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.next_within(d).await {
            panic!("expected silence, got {f:?}");
        }
    }

    /// A `message` → `message-back` round trip on namespace `nsp` with a unique token.
    pub async fn roundtrip(&mut self, nsp: &str) {
        let token = format!("t{}", rand_token());
        let prefix = if nsp == "/" { "42".to_owned() } else { format!("42{nsp},") };
        self.send(&format!(r#"{prefix}["message","{token}"]"#)).await;
        self.expect(&format!(r#"{prefix}["message-back","{token}"]"#)).await;
    }
}

/// A small pseudo-random number for unique tokens.
pub fn rand_token() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
            as u64;
    t.wrapping_mul(31).wrapping_add(N.fetch_add(1, Ordering::Relaxed))
}

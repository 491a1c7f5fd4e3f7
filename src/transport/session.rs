//! One Engine.IO session: a task on its shard that owns the transport (long-polling or
//! WebSocket), the heartbeat, the polling → WebSocket upgrade, and the Socket.IO client of
//! the connection.
//!
//! Everything that reaches a session comes through its command channel (HTTP requests,
//! upgrades, server-side disconnects) or its outbox (frames to write). The writer drains all
//! that is queued and flushes once per wake-up.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::{sleep_until, Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::error::DisconnectReason;
use crate::ns::client::{Client, ConnInfo, Flow};
use crate::ns::socket::ConnHandle;
use crate::proto::eio::{self, PayloadEncoder};
use crate::proto::sid::Sid;
use crate::shard::{ConnGuard, SessionHandle, ShardCtx};
use crate::transport::outbox::Out;
use crate::transport::EioError;

/// A server-side WebSocket on a raw TCP stream.
pub(crate) type WsStream = WebSocketStream<TcpStream>;

/// Reply to a polling GET: the payload to send, or the error to answer with.
pub(crate) type PollReply = Result<Bytes, EioError>;

/// What the rest of the server asks of a session.
pub(crate) enum Cmd {
    /// A polling GET: answered when there is something to send.
    PollGet(oneshot::Sender<PollReply>),
    /// A polling POST, already decoded.
    PollPost(Vec<eio::Packet>, oneshot::Sender<Result<(), EioError>>),
    /// May a WebSocket upgrade start? Reserves it when yes.
    CanUpgrade(oneshot::Sender<Result<(), EioError>>),
    /// The upgraded WebSocket, to probe.
    Adopt(Box<WsStream>, ConnGuard),
    /// Server-side `socket.disconnect(close)` of socket `sid`.
    DisconnectSocket { sid: Sid, close: bool },
    /// A polling POST is starting: refused (and the session closed) when another is in
    /// progress, as the reference does ("data request overlap from client").
    PollPostBegin(oneshot::Sender<Result<(), EioError>>),
    /// Close the whole connection.
    Close(DisconnectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    /// A WebSocket upgrade was accepted over HTTP; its socket has not arrived or not probed.
    Reserved,
    /// The probe ping/pong succeeded; waiting for the UPGRADE packet.
    Probed,
    /// The session now runs over WebSocket.
    Done,
}

struct Session {
    ctx: Rc<ShardCtx>,
    sid: Sid,
    client: Client,
    conn: Arc<ConnHandle>,
    pending_get: Option<oneshot::Sender<PollReply>>,
    /// Engine packets (PING, NOOP) waiting for the next polling GET.
    ctrl: Vec<&'static [u8]>,
    /// Set when closing a polling session: the CLOSE packet goes after everything queued.
    close_packet: bool,
    /// A polling POST's body is being read.
    post_in_progress: bool,
    upgrade: Upgrade,
    upgrade_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    closing: Option<DisconnectReason>,
    /// Connection slots of the WebSocket(s) this session owns.
    guards: Vec<ConnGuard>,
}

/// Starts a session on this shard and returns its id. `ws` is the WebSocket for a session
/// opened directly over WebSocket; `None` opens a long-polling session.
pub(crate) fn spawn(ctx: &Rc<ShardCtx>, info: ConnInfo, ws: Option<(WsStream, ConnGuard)>) -> Sid {
    let cfg = &ctx.server.config;
    let sid = Sid::generate(ctx.id as u8);
    let (out_tx, out_rx) = mpsc::channel(cfg.max_outbox);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(ConnHandle {
        sid,
        shard: ctx.id,
        outbox: out_tx,
        cmd: cmd_tx.clone(),
        condemned: AtomicBool::new(false),
        kill: Notify::new(),
        writable: AtomicBool::new(ws.is_some()),
    });
    let now = Instant::now();
    let (ws, guards) = match ws {
        Some((ws, g)) => (Some(ws), vec![g]),
        None => (None, Vec::new()),
    };
    let session = Session {
        ctx: ctx.clone(),
        sid,
        client: Client::new(ctx.server.clone(), conn.clone(), Arc::new(info)),
        conn,
        pending_get: None,
        ctrl: Vec::new(),
        close_packet: false,
        post_in_progress: false,
        upgrade: if ws.is_some() { Upgrade::Done } else { Upgrade::None },
        upgrade_deadline: None,
        next_ping: Some(now + cfg.ping_interval),
        pong_deadline: None,
        connect_deadline: Some(now + cfg.connect_timeout),
        closing: None,
        guards,
    };
    ctx.sessions.borrow_mut().insert(sid, SessionHandle { cmd: cmd_tx });
    tokio::task::spawn_local(run(session, cmd_rx, out_rx, ws));
    sid
}

/// The Engine.IO OPEN packet for `sid`.
pub(crate) fn open_packet(ctx: &ShardCtx, sid: Sid, upgrades: bool) -> Bytes {
    let cfg = &ctx.server.config;
    let ups: &[&str] =
        if upgrades && cfg.websocket && cfg.allow_upgrades { &["websocket"] } else { &[] };
    let mut buf = bytes::BytesMut::with_capacity(128);
    eio::OpenPacket {
        sid: sid.as_str(),
        upgrades: ups,
        ping_interval: cfg.ping_interval.as_millis() as u64,
        ping_timeout: cfg.ping_timeout.as_millis() as u64,
        max_payload: cfg.max_payload as u64,
    }
    .encode(&mut buf);
    buf.freeze()
}

async fn next_msg(ws: &mut Option<WsStream>) -> Option<Result<Message, tungstenite::Error>> {
    match ws.as_mut() {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the client dropped its pending poll.
async fn poll_abandoned(get: &mut Option<oneshot::Sender<PollReply>>) {
    match get.as_mut() {
        Some(tx) => tx.closed().await,
        None => std::future::pending().await,
    }
}

fn text_msg(b: Bytes) -> Message {
    // SAFETY: every text frame we send is built by our own encoders from `&str` and
    // serde_json output (or is an ASCII engine packet), so it is valid UTF-8.
    Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(b) })
}

async fn run(
    mut s: Session,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    mut outbox: mpsc::Receiver<Out>,
    mut ws: Option<WsStream>,
) {
    let mut probe: Option<WsStream> = None;
    let mut batch: Vec<Out> = Vec::with_capacity(64);
    if let Some(w) = ws.as_mut() {
        let open = open_packet(&s.ctx, s.sid, false);
        if w.send(text_msg(open)).await.is_err() {
            s.closing = Some(DisconnectReason::TransportError);
        }
    }
    while s.closing.is_none() {
        let writable = ws.is_some() || s.pending_get.is_some();
        s.conn.writable.store(writable, Ordering::Release);
        let deadline = s.deadline();
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(cmd) => s.on_cmd(cmd, &mut ws, &mut probe, &mut outbox).await,
                None => s.closing = Some(DisconnectReason::TransportClose),
            },
            msg = next_msg(&mut ws), if ws.is_some() => s.on_ws(msg),
            msg = next_msg(&mut probe), if probe.is_some() => {
                s.on_probe(msg, &mut ws, &mut probe).await;
                // After a completed upgrade, everything queued goes out over the WebSocket.
            }
            _ = outbox.recv_many(&mut batch, 256), if writable => {
                // A peer that stops reading blocks the write; the slow-consumer policy
                // must still be able to end it.
                let conn = s.conn.clone();
                // Busy until this write completes: volatile packets are dropped meanwhile.
                conn.writable.store(false, Ordering::Release);
                let killed = tokio::select! {
                    _ = s.write(&mut batch, &mut ws) => false,
                    _ = conn.kill.notified() => true,
                };
                if killed {
                    batch.clear();
                    s.close(DisconnectReason::SlowConsumer);
                }
            }
            _ = sleep_until(deadline) => s.on_timer(&mut ws, &mut probe).await,
            _ = poll_abandoned(&mut s.pending_get), if s.pending_get.is_some() => {
                // As the reference: "poll connection closed prematurely".
                s.pending_get = None;
                s.close(DisconnectReason::TransportError);
            }
        }
    }
    let reason = s.closing.unwrap_or(DisconnectReason::TransportClose);
    s.finish(reason, ws, cmd_rx, outbox).await;
}

impl Session {
    fn deadline(&self) -> Instant {
        [self.next_ping, self.pong_deadline, self.connect_deadline, self.upgrade_deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn close(&mut self, reason: DisconnectReason) {
        if self.closing.is_none() {
            tracing::debug!(sid = %self.sid, %reason, "closing session");
            self.closing = Some(reason);
        }
    }

    async fn on_cmd(
        &mut self,
        cmd: Cmd,
        ws: &mut Option<WsStream>,
        probe: &mut Option<WsStream>,
        outbox: &mut mpsc::Receiver<Out>,
    ) {
        match cmd {
            Cmd::PollGet(reply) => {
                if self.upgrade == Upgrade::Done {
                    let _ = reply.send(Err(EioError::BadRequest));
                } else if self.pending_get.is_some() {
                    // Two GETs at once: socket.io answers 400 and closes ("overlap from client").
                    let _ = reply.send(Err(EioError::BadRequest));
                    self.close(DisconnectReason::TransportError);
                } else if self.upgrade == Upgrade::Probed {
                    // The client is pausing polling to upgrade: release it at once.
                    let _ = reply.send(Ok(Bytes::from_static(b"6")));
                } else {
                    self.pending_get = Some(reply);
                    let mut batch = Vec::new();
                    while let Ok(out) = outbox.try_recv() {
                        batch.push(out);
                        if batch.len() >= 256 {
                            break;
                        }
                    }
                    if !batch.is_empty() || !self.ctrl.is_empty() {
                        self.write(&mut batch, ws).await;
                    }
                }
            }
            Cmd::PollPost(packets, reply) => {
                self.post_in_progress = false;
                if self.upgrade == Upgrade::Done {
                    let _ = reply.send(Err(EioError::BadRequest));
                    return;
                }
                let _ = reply.send(Ok(()));
                for p in packets {
                    self.on_packet(p);
                    if self.closing.is_some() {
                        break;
                    }
                }
            }
            Cmd::CanUpgrade(reply) => {
                let cfg = &self.ctx.server.config;
                if self.upgrade != Upgrade::None || !cfg.allow_upgrades || !cfg.websocket {
                    let _ = reply.send(Err(EioError::BadRequest));
                } else {
                    self.upgrade = Upgrade::Reserved;
                    self.upgrade_deadline = Some(Instant::now() + cfg.upgrade_timeout);
                    let _ = reply.send(Ok(()));
                }
            }
            Cmd::Adopt(sock, guard) => {
                if self.upgrade == Upgrade::Reserved && probe.is_none() {
                    *probe = Some(*sock);
                    self.guards.push(guard);
                }
            }
            Cmd::DisconnectSocket { sid, close } => {
                if self.client.disconnect(&self.ctx, sid, close) && close {
                    self.close(DisconnectReason::ForcedServerClose);
                }
            }
            Cmd::PollPostBegin(reply) => {
                if self.upgrade == Upgrade::Done {
                    let _ = reply.send(Err(EioError::BadRequest));
                } else if self.post_in_progress {
                    let _ = reply.send(Err(EioError::BadRequest));
                    self.close(DisconnectReason::TransportError);
                } else {
                    self.post_in_progress = true;
                    let _ = reply.send(Ok(()));
                }
            }
            Cmd::Close(reason) => self.close(reason),
        }
    }

    /// One Engine.IO packet from the client, over either transport.
    fn on_packet(&mut self, p: eio::Packet) {
        let flow = match p {
            eio::Packet::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    self.next_ping = Some(Instant::now() + self.ctx.server.config.ping_interval);
                }
                Flow::Continue
            }
            eio::Packet::Message(text) => self.client.on_text(&self.ctx, &text),
            eio::Packet::Binary(bin) => self.client.on_binary(&self.ctx, bin),
            eio::Packet::Close => Flow::Close(DisconnectReason::TransportClose),
            // In Engine.IO v4 only the server pings: the reference closes on a client PING
            // ("invalid heartbeat direction").
            eio::Packet::Ping(_) => Flow::Close(DisconnectReason::TransportError),
            // OPEN, UPGRADE and NOOP from the client mean nothing here; the reference ignores
            // them.
            eio::Packet::Upgrade | eio::Packet::Noop | eio::Packet::Open(_) => Flow::Continue,
        };
        if self.client.has_sockets() {
            self.connect_deadline = None;
        }
        if let Flow::Close(r) = flow {
            self.close(r);
        }
    }

    fn on_ws(&mut self, msg: Option<Result<Message, tungstenite::Error>>) {
        match msg {
            None | Some(Ok(Message::Close(_))) => self.close(DisconnectReason::TransportClose),
            Some(Err(e)) => {
                tracing::debug!(sid = %self.sid, error = %e, "websocket error");
                self.close(ws_error_reason(&e));
            }
            Some(Ok(Message::Text(t))) => match eio::Packet::decode_text(Bytes::from(t)) {
                Ok(p) => self.on_packet(p),
                Err(e) => {
                    tracing::debug!(sid = %self.sid, error = %e, "undecodable engine packet");
                    self.close(DisconnectReason::ParseError);
                }
            },
            Some(Ok(Message::Binary(b))) => self.on_packet(eio::Packet::decode_binary(b)),
            Some(Ok(_)) => {}
        }
    }

    async fn on_probe(
        &mut self,
        msg: Option<Result<Message, tungstenite::Error>>,
        ws: &mut Option<WsStream>,
        probe: &mut Option<WsStream>,
    ) {
        let packet = match msg {
            Some(Ok(Message::Text(t))) => eio::Packet::decode_text(Bytes::from(t)).ok(),
            _ => None,
        };
        match (packet, self.upgrade) {
            (Some(eio::Packet::Ping(p)), Upgrade::Reserved) if &p[..] == b"probe" => {
                let ok = match probe.as_mut() {
                    Some(w) => w.send(text_msg(Bytes::from_static(b"3probe"))).await.is_ok(),
                    None => false,
                };
                if !ok {
                    return self.abort_upgrade(probe);
                }
                self.upgrade = Upgrade::Probed;
                // Release the pending poll so the client can finish pausing.
                if let Some(get) = self.pending_get.take() {
                    let _ = get.send(Ok(Bytes::from_static(b"6")));
                }
            }
            (Some(eio::Packet::Upgrade), Upgrade::Probed) => {
                *ws = probe.take();
                self.upgrade = Upgrade::Done;
                self.upgrade_deadline = None;
                if let Some(get) = self.pending_get.take() {
                    let _ = get.send(Ok(Bytes::from_static(b"6")));
                }
                // A PING queued for polling goes over the WebSocket now.
                if !self.ctrl.is_empty() {
                    let ctrl = std::mem::take(&mut self.ctrl);
                    if let Some(w) = ws.as_mut() {
                        for c in ctrl {
                            if w.feed(text_msg(Bytes::from_static(c))).await.is_err() {
                                self.close(DisconnectReason::TransportError);
                            }
                        }
                        if w.flush().await.is_err() {
                            self.close(DisconnectReason::TransportError);
                        }
                    }
                }
            }
            _ => self.abort_upgrade(probe),
        }
    }

    fn abort_upgrade(&mut self, probe: &mut Option<WsStream>) {
        tracing::debug!(sid = %self.sid, "upgrade aborted");
        *probe = None;
        self.upgrade = Upgrade::None;
        self.upgrade_deadline = None;
    }

    async fn on_timer(&mut self, ws: &mut Option<WsStream>, probe: &mut Option<WsStream>) {
        let now = Instant::now();
        if self.pong_deadline.is_some_and(|d| d <= now) {
            return self.close(DisconnectReason::PingTimeout);
        }
        if self.connect_deadline.is_some_and(|d| d <= now) {
            return self.close(DisconnectReason::ConnectTimeout);
        }
        if self.upgrade_deadline.is_some_and(|d| d <= now) {
            self.abort_upgrade(probe);
        }
        if self.next_ping.is_some_and(|d| d <= now) {
            self.next_ping = None;
            self.pong_deadline = Some(now + self.ctx.server.config.ping_timeout);
            self.ctrl.push(b"2");
            if ws.is_some() || self.pending_get.is_some() {
                self.write(&mut Vec::new(), ws).await;
            }
        }
    }

    /// Writes queued control packets and `batch` to the client: as frames and one flush over
    /// WebSocket, as one payload over polling (only called with a GET pending).
    async fn write(&mut self, batch: &mut Vec<Out>, ws: &mut Option<WsStream>) {
        if let Some(w) = ws.as_mut() {
            let ctrl = std::mem::take(&mut self.ctrl);
            let r = async {
                for c in ctrl {
                    w.feed(text_msg(Bytes::from_static(c))).await?;
                }
                for out in batch.drain(..) {
                    w.feed(text_msg(out.text().clone())).await?;
                    for b in out.binary() {
                        w.feed(Message::Binary(b.clone())).await?;
                    }
                }
                w.flush().await
            }
            .await;
            if let Err(e) = r {
                tracing::debug!(sid = %self.sid, error = %e, "websocket write failed");
                self.close(ws_error_reason(&e));
            }
        } else if let Some(get) = self.pending_get.take() {
            let mut payload = PayloadEncoder::new();
            for c in self.ctrl.drain(..) {
                payload.push_encoded_text(c);
            }
            for out in batch.drain(..) {
                payload.push_encoded_text(out.text());
                for b in out.binary() {
                    payload.push_binary(b);
                }
            }
            if self.close_packet {
                payload.push_encoded_text(b"1");
            }
            if get.send(Ok(payload.finish())).is_err() {
                // The client dropped the poll while it waited: what it carried is lost, so
                // the session ends, as the reference's "poll connection closed prematurely".
                self.close(DisconnectReason::TransportError);
            }
        }
    }

    /// Ends the session: sockets leave with `reason`; what is still queued is written when
    /// the transport is alive (so a server-side disconnect reaches the client); the session
    /// is forgotten by its shard.
    async fn finish(
        mut self,
        reason: DisconnectReason,
        mut ws: Option<WsStream>,
        mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
        mut outbox: mpsc::Receiver<Out>,
    ) {
        self.client.close(&self.ctx, reason);
        let transport_alive = !matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::SlowConsumer
        );
        let mut rest = Vec::new();
        if transport_alive {
            while let Ok(out) = outbox.try_recv() {
                rest.push(out);
            }
        }
        self.ctrl.clear();
        if ws.is_some() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                if transport_alive {
                    self.write(&mut rest, &mut ws).await;
                }
                if let Some(w) = ws.as_mut() {
                    let _ = w.close(None).await;
                }
            })
            .await;
        } else {
            // Polling: what is queued goes in one response and CLOSE in the next, as the
            // reference does after "drain": socket.io-client handles decoded packets on the
            // next tick, so a CLOSE in the same payload would overtake a DISCONNECT. Wait a
            // little for the client's next poll, but not when shutting down.
            let now = Instant::now();
            let linger = match reason {
                DisconnectReason::ServerShuttingDown => now,
                _ if transport_alive => now + Duration::from_secs(2),
                _ => now,
            };
            if !rest.is_empty() && self.next_get(&mut cmd_rx, linger).await {
                self.write(&mut rest, &mut None).await;
            }
            self.close_packet = true;
            if self.next_get(&mut cmd_rx, linger).await {
                self.write(&mut Vec::new(), &mut None).await;
            }
        }
        self.ctx.sessions.borrow_mut().remove(&self.sid);
        tracing::debug!(sid = %self.sid, %reason, "session closed");
    }
}

impl Session {
    /// While closing: waits until a polling GET is pending (true), answering other
    /// requests, or until `deadline` (false).
    async fn next_get(
        &mut self,
        cmd_rx: &mut mpsc::UnboundedReceiver<Cmd>,
        deadline: Instant,
    ) -> bool {
        while self.pending_get.is_none() {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(Cmd::PollGet(reply)) => self.pending_get = Some(reply),
                    Some(Cmd::PollPost(_, reply)) => { let _ = reply.send(Ok(())); }
                    Some(Cmd::CanUpgrade(reply)) => { let _ = reply.send(Err(EioError::BadRequest)); }
                    Some(_) => {}
                    None => return false,
                },
                _ = sleep_until(deadline) => return false,
            }
        }
        true
    }
}

fn ws_error_reason(e: &tungstenite::Error) -> DisconnectReason {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            DisconnectReason::TransportClose
        }
        tungstenite::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            DisconnectReason::TransportClose
        }
        _ => DisconnectReason::TransportError,
    }
}

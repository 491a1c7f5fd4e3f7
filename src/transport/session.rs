//! One Engine.IO session: a task on its shard that owns the transport (long-polling or
//! WebSocket), the heartbeat, the polling → WebSocket upgrade, and the Socket.IO client of
//! the connection.
//!
//! Commands reach a session through its command channel (HTTP requests, upgrades,
//! server-side disconnects). Packets for the client do not pass through the session: they
//! are queued on its [`Link`](crate::transport::link) in the shard, and the shard's flush
//! pass writes WebSocket frames. The session hears from its link only when it must act: a
//! fault (slow consumer, write error), packets for the GET it holds open, or a blocked
//! writer to drain as the socket becomes writable. A peer that stops reading never stops the
//! session from handling commands (and being closed as a slow consumer).

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Duration, Instant};

use crate::error::DisconnectReason;
use crate::proto::eio::{self, PayloadEncoder};
use crate::proto::eio3;
use crate::proto::sid::Sid;
use crate::shard::ShardCtx;
use crate::transport::counters;
use crate::transport::link::{Link, LinkEvent};
use crate::transport::local::{ConnGuard, ConnHandle, SessionHandle};
use crate::transport::outbox::{Framing, Out};
use crate::transport::request::ConnInfo;
use crate::transport::ws::{self, WsError, WsMessage, WsReader, WsWriter};
use crate::transport::EioError;

/// What the session must do after the layer above handled a packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close(DisconnectReason),
}

/// The protocol layer above an Engine.IO session: the Socket.IO client of the connection.
/// The session hands it each message, passes on server-side socket disconnects, and tells it
/// when the connection ends. Called only on the session's shard.
pub(crate) trait SessionUpper {
    /// An Engine.IO text message.
    fn on_text(&mut self, ctx: &ShardCtx, text: &[u8]) -> Flow;
    /// An Engine.IO binary message.
    fn on_binary(&mut self, ctx: &ShardCtx, bin: Bytes) -> Flow;
    /// True once the client has joined a namespace (the connect timeout stops).
    fn has_sockets(&self) -> bool;
    /// Server-side `socket.disconnect(close)` of socket `sid`; false when it is not here.
    fn disconnect(&mut self, ctx: &ShardCtx, sid: Sid, nsp: &str, close: bool) -> bool;
    /// The session is open (its OPEN packet is queued): an Engine.IO v3 client is
    /// connected to `/` now, without asking.
    fn opened(&mut self, _ctx: &ShardCtx) -> Flow {
        Flow::Continue
    }
    /// The connection is gone.
    fn close(&mut self, ctx: &ShardCtx, reason: DisconnectReason);
    /// A message for the layer above itself ([`Cmd::Upper`]: the answer to a request it
    /// made to another shard).
    fn on_upper(&mut self, ctx: &ShardCtx, msg: Box<dyn std::any::Any + Send>) -> Flow;
    /// The connection went from polling to WebSocket.
    fn upgraded(&mut self, _ctx: &ShardCtx) {}
}

/// Makes the layer above of each new session, from its write handle and its first request.
pub(crate) type UpperFactory =
    Arc<dyn Fn(Arc<ConnHandle>, Arc<ConnInfo>) -> Box<dyn SessionUpper> + Send + Sync>;

/// Reply to a polling GET: the payload to send, or the error to answer with.
pub(crate) type PollReply = Result<Polled, EioError>;

/// A polling GET's payload.
#[derive(Debug)]
pub(crate) struct Polled {
    pub(crate) body: Bytes,
    /// A packet in it allows compression (as the reference: any packet's `compress`).
    pub(crate) compress: bool,
    /// An Engine.IO v3 binary payload (`Content-Type: application/octet-stream`).
    pub(crate) binary: bool,
}

impl Polled {
    fn noop(eio3: bool) -> Polled {
        let body = Bytes::from_static(if eio3 { b"1:6" } else { b"6" });
        Polled { body, compress: false, binary: false }
    }
}

/// A polling GET's body being built, in the session's Engine.IO framing.
enum Payload {
    V4(PayloadEncoder),
    V3(eio3::PayloadEncoder),
}

impl Payload {
    fn text(&mut self, packet: &[u8]) {
        match self {
            Payload::V4(p) => p.push_encoded_text(packet),
            Payload::V3(p) => p.push_encoded_text(packet),
        }
    }

    fn binary(&mut self, data: &[u8]) {
        match self {
            Payload::V4(p) => p.push_binary(data),
            Payload::V3(p) => p.push_binary(data),
        }
    }

    fn finish(self, compress: bool) -> Polled {
        match self {
            Payload::V4(p) => Polled { body: p.finish(), compress, binary: false },
            Payload::V3(p) => {
                let binary = p.is_binary();
                Polled { body: p.finish(), compress, binary }
            }
        }
    }
}

/// Most packets in one long-polling response.
const POLL_BATCH: usize = 256;

/// A session's WebSocket: both halves, and whether per-message deflate was negotiated.
pub(crate) struct Ws {
    pub reader: WsReader,
    pub writer: WsWriter,
    pub deflate: bool,
    /// The WebSocket request asked for base64 binary (`b64` in its query; Engine.IO v3).
    pub b64: bool,
}

/// What the rest of the server asks of a session.
pub(crate) enum Cmd {
    /// A polling GET: answered when there is something to send.
    PollGet(oneshot::Sender<PollReply>),
    /// A polling POST is starting: refused (and the session closed) when another is in
    /// progress, as the reference does ("data request overlap from client"). The answer
    /// says whether the session speaks Engine.IO v3 (how to decode the body).
    PollPostBegin(oneshot::Sender<Result<bool, EioError>>),
    /// A polling POST, already decoded.
    PollPost(Vec<eio::Packet>, oneshot::Sender<Result<(), EioError>>),
    /// May a WebSocket upgrade start? Reserves it when yes.
    CanUpgrade(oneshot::Sender<Result<(), EioError>>),
    /// The upgraded WebSocket, to probe.
    Adopt(Box<Ws>, ConnGuard),
    /// Server-side `socket.disconnect(close)` of socket `sid` in namespace `nsp` (an
    /// Engine.IO v3 client's sockets share one id, the session's).
    DisconnectSocket { sid: Sid, nsp: Arc<str>, close: bool },
    /// Close the whole connection.
    Close(DisconnectReason),
    /// For the session's layer above (what it is, only that layer knows).
    Upper(Box<dyn std::any::Any + Send>),
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

/// Engine.IO control packets the server sends, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctrl {
    Ping,
    /// Engine.IO v3: the answer to a client's ping.
    Pong,
}

impl Ctrl {
    fn text(self) -> &'static [u8] {
        match self {
            Ctrl::Ping => b"2",
            Ctrl::Pong => b"3",
        }
    }

    fn frame(self) -> Bytes {
        match self {
            Ctrl::Ping => Bytes::from_static(b"\x81\x012"),
            Ctrl::Pong => Bytes::from_static(b"\x81\x013"),
        }
    }
}

/// The read side of a session's WebSocket (its writer is in the link), split so that
/// reading and probing can each be a `select!` branch.
#[derive(Default)]
struct Wire {
    reader: Option<WsReader>,
    /// The WebSocket of an upgrade in progress.
    probe: Option<Box<Ws>>,
}

struct Session {
    ctx: Rc<ShardCtx>,
    sid: Sid,
    /// The session's link in the shard's slab.
    slot: usize,
    /// The session runs over WebSocket (its writer is in the link).
    over_ws: bool,
    client: Box<dyn SessionUpper>,
    /// The handle the layer above has (its transport flags are kept up to date).
    conn: Arc<ConnHandle>,
    pending_get: Option<oneshot::Sender<PollReply>>,
    /// Engine packets waiting for the next write.
    ctrl: Vec<Ctrl>,
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
    /// Close code to send on a WebSocket protocol error.
    close_code: u16,
    /// Engine.IO protocol 3: the client pings (the server answers, and `pong_deadline` is
    /// the ping interval plus timeout from its last ping), v3 payload framing.
    eio3: bool,
    /// Engine.IO v3 polling: the client asked for base64 binary (`b64`), so a GET never gets
    /// the binary payload form.
    b64: bool,
    /// Connection slots of the WebSocket(s) this session owns.
    guards: Vec<ConnGuard>,
}

/// Starts a session on this shard and returns its id. `ws` is the WebSocket of a session
/// opened directly over WebSocket; `None` opens a long-polling session.
///
/// `eio3`: the client speaks Engine.IO protocol 3 (`allow_eio3`; checked by the caller).
pub(crate) fn spawn(
    ctx: &Rc<ShardCtx>,
    info: ConnInfo,
    ws: Option<(Ws, ConnGuard)>,
    eio3: bool,
) -> Sid {
    let cfg = ctx.config();
    let sid = Sid::generate(ctx.id as u8);
    let now = Instant::now();
    let mut wire = Wire::default();
    let mut guards = Vec::new();
    let over_ws = ws.is_some();
    // As the reference: any non-empty `b64` asks for base64 (and a JSONP client, `j`, can
    // only read text).
    let b64 = info.query.get("b64").is_some_and(|v| !v.is_empty()) || info.query.get("j").is_some();
    let framing = match (eio3, b64) {
        (false, _) => Framing::V4,
        (true, false) => Framing::V3,
        (true, true) => Framing::V3Base64,
    };
    let writer = ws.map(|(w, g)| {
        wire.reader = Some(w.reader);
        guards.push(g);
        (w.writer, w.deflate)
    });
    let slot = ctx.transport().add_link(Link::new(sid, writer, framing));
    let conn = Arc::new(ConnHandle {
        sid,
        shard: ctx.id,
        slot,
        mesh: ctx.mesh.clone(),
        websocket: over_ws.into(),
        upgraded: false.into(),
        eio3,
    });
    let session = Session {
        ctx: ctx.clone(),
        sid,
        slot,
        over_ws,
        conn: conn.clone(),
        client: (ctx.transport().upper)(conn, Arc::new(info)),
        pending_get: None,
        ctrl: Vec::new(),
        close_packet: false,
        post_in_progress: false,
        upgrade: if over_ws { Upgrade::Done } else { Upgrade::None },
        upgrade_deadline: None,
        // v3: the client pings; the session ends when none came for interval + timeout.
        next_ping: (!eio3).then(|| now + cfg.ping_interval),
        pong_deadline: eio3.then(|| now + cfg.ping_interval + cfg.ping_timeout),
        connect_deadline: Some(now + cfg.connect_timeout),
        closing: None,
        close_code: 1000,
        eio3,
        b64,
        guards,
    };
    ctx.add_session(sid, SessionHandle { slot });
    tokio::task::spawn_local(run(session, wire));
    sid
}

/// The Engine.IO OPEN packet for `sid`.
pub(crate) fn open_packet(ctx: &ShardCtx, sid: Sid, upgrades: bool) -> Bytes {
    let cfg = ctx.config();
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

/// What woke a session.
enum Wake {
    Link(LinkEvent),
    Timer,
    /// The client dropped the GET the session held.
    Abandoned,
    Probe(Result<WsMessage, WsError>),
    Read(Result<WsMessage, WsError>),
}

/// The session's life. Not an `async fn`: its parameters would be kept twice in the
/// future (rust-lang/rust#62958); the block below works on its captures in place.
fn run(s: Session, wire: Wire) -> impl Future<Output = ()> {
    let (mut s, mut wire) = (s, wire);
    async move {
        counters::opened();
        if s.over_ws {
            let open = ws::encode_text_frame(&open_packet(&s.ctx, s.sid, false));
            s.ctx.transport().with_link(s.slot, |l| l.ws().map(|w| w.queue(open)));
        }
        if let Flow::Close(r) = s.client.opened(&s.ctx) {
            s.close(r);
        }
        if s.client.has_sockets() {
            s.connect_deadline = None;
        }
        // One timer for the session's life, moved when the next deadline changes: creating a
        // new one per loop turn would insert into and cancel from the timer wheel per packet.
        let sleep = tokio::time::sleep_until(s.deadline());
        tokio::pin!(sleep);
        let ctx = s.ctx.clone();
        let slot = s.slot;
        while s.closing.is_none() {
            let deadline = s.deadline();
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            // One poll over every source, in a fixed order, instead of `select!`: the waiting
            // state is the sources' own (the link's waker, the socket registration, the timer),
            // so an idle session's future is hardly bigger than the session. Commands and
            // write-side faults come first, then the timer (a client flooding us cannot starve
            // the heartbeat or the connect timeout), then the client's messages.
            let wake = poll_fn(|cx| {
                if let Poll::Ready(ev) = ctx.transport().poll_link(slot, cx) {
                    return Poll::Ready(Wake::Link(ev));
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                if let Some(get) = s.pending_get.as_mut() {
                    if get.poll_closed(cx).is_ready() {
                        return Poll::Ready(Wake::Abandoned);
                    }
                }
                if let Some(p) = wire.probe.as_mut() {
                    if let Poll::Ready(m) = p.reader.poll_read(cx) {
                        return Poll::Ready(Wake::Probe(m));
                    }
                }
                if let Some(r) = wire.reader.as_mut() {
                    if let Poll::Ready(m) = r.poll_read(cx) {
                        return Poll::Ready(Wake::Read(m));
                    }
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Link(ev) => s.on_link(ev, &mut wire),
                Wake::Timer => s.on_timer(&mut wire),
                Wake::Abandoned => {
                    // As the reference: "poll connection closed prematurely".
                    s.take_get();
                    s.close(DisconnectReason::TransportError);
                }
                Wake::Probe(m) => s.on_probe(m, &mut wire),
                Wake::Read(m) => s.on_ws(m),
            }
        }
        let reason = s.closing.unwrap_or(DisconnectReason::TransportClose);
        // Boxed: the closing phase's futures would otherwise be part of every idle session.
        Box::pin(s.finish(reason, wire)).await;
    }
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

    /// The pending GET, handed out (the link no longer counts polling as writable).
    fn take_get(&mut self) -> Option<oneshot::Sender<PollReply>> {
        let get = self.pending_get.take();
        if get.is_some() {
            self.ctx.transport().with_link(self.slot, |l| l.set_get_waiting(false));
        }
        get
    }

    fn on_link(&mut self, ev: LinkEvent, wire: &mut Wire) {
        match ev {
            LinkEvent::Cmd(cmd) => self.on_cmd(cmd, wire),
            LinkEvent::Fault(_, Some(e)) => self.on_ws_error(&e),
            LinkEvent::Fault(reason, None) => self.close(reason),
            LinkEvent::Polled => self.write(),
            LinkEvent::Drained => {}
        }
    }

    fn on_cmd(&mut self, cmd: Cmd, wire: &mut Wire) {
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
                    let _ = reply.send(Ok(Polled::noop(self.eio3)));
                } else {
                    self.pending_get = Some(reply);
                    let backlog = self.ctx.transport().with_link(self.slot, |l| {
                        l.set_get_waiting(true);
                        l.has_backlog()
                    });
                    if backlog || !self.ctrl.is_empty() {
                        self.write();
                    }
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
                    let _ = reply.send(Ok(self.eio3));
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
                let cfg = self.ctx.config();
                if self.upgrade != Upgrade::None || !cfg.allow_upgrades || !cfg.websocket {
                    let _ = reply.send(Err(EioError::BadRequest));
                } else {
                    self.upgrade = Upgrade::Reserved;
                    self.upgrade_deadline = Some(Instant::now() + cfg.upgrade_timeout);
                    let _ = reply.send(Ok(()));
                }
            }
            Cmd::Adopt(sock, guard) => {
                if self.upgrade == Upgrade::Reserved && wire.probe.is_none() {
                    wire.probe = Some(sock);
                    self.guards.push(guard);
                }
            }
            Cmd::DisconnectSocket { sid, nsp, close } => {
                if self.client.disconnect(&self.ctx, sid, &nsp, close) && close {
                    self.close(DisconnectReason::ForcedServerClose);
                }
            }
            Cmd::Close(reason) => self.close(reason),
            Cmd::Upper(msg) => {
                if let Flow::Close(r) = self.client.on_upper(&self.ctx, msg) {
                    self.close(r);
                }
                if self.client.has_sockets() {
                    self.connect_deadline = None;
                }
            }
        }
    }

    /// One Engine.IO packet from the client, over either transport.
    fn on_packet(&mut self, p: eio::Packet) {
        let flow = match p {
            // Engine.IO v3: the client pings; the answer is a bare PONG (the reference does
            // not echo a ping's data, but for the upgrade's probe, answered on the probe).
            eio::Packet::Ping(_) if self.eio3 => {
                let cfg = self.ctx.config();
                self.pong_deadline = Some(Instant::now() + cfg.ping_interval + cfg.ping_timeout);
                self.ctrl.push(Ctrl::Pong);
                if self.over_ws || self.pending_get.is_some() {
                    self.write();
                }
                Flow::Continue
            }
            // ... and a PONG from it is "invalid heartbeat direction" there.
            eio::Packet::Pong(_) if self.eio3 => Flow::Close(DisconnectReason::TransportError),
            eio::Packet::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    self.next_ping = Some(Instant::now() + self.ctx.config().ping_interval);
                }
                Flow::Continue
            }
            eio::Packet::Message(text) => {
                counters::read(text.len());
                self.ctx.transport().note_inbound(self.slot);
                self.client.on_text(&self.ctx, &text)
            }
            eio::Packet::Binary(bin) => {
                counters::read(bin.len());
                self.ctx.transport().note_inbound(self.slot);
                self.client.on_binary(&self.ctx, bin)
            }
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

    fn on_ws(&mut self, msg: Result<WsMessage, WsError>) {
        let decoded = match msg {
            Ok(WsMessage::Text(t)) if self.eio3 => eio3::decode_text(t),
            Ok(WsMessage::Text(t)) => eio::Packet::decode_text(t),
            Ok(WsMessage::Binary(b)) if self.eio3 => eio3::decode_binary(b),
            Ok(WsMessage::Binary(b)) => Ok(eio::Packet::decode_binary(b)),
            other => return self.on_ws_control(other),
        };
        match decoded {
            Ok(p) => self.on_packet(p),
            Err(e) => {
                tracing::debug!(sid = %self.sid, error = %e, "undecodable engine packet");
                self.close(DisconnectReason::ParseError);
            }
        }
    }

    fn on_ws_control(&mut self, msg: Result<WsMessage, WsError>) {
        match msg {
            Ok(WsMessage::Text(_) | WsMessage::Binary(_)) => {}
            Ok(WsMessage::Ping(p)) => {
                let pong = ws::encode_pong_frame(&p);
                self.ctx.transport().with_link(self.slot, |l| l.ws().map(|w| w.queue(pong)));
            }
            Ok(WsMessage::Pong(_)) => {}
            Ok(WsMessage::Close(_)) => self.close(DisconnectReason::TransportClose),
            Err(e) => self.on_ws_error(&e),
        }
    }

    fn on_ws_error(&mut self, e: &WsError) {
        tracing::debug!(sid = %self.sid, error = %e, "websocket error");
        if let Some(code) = e.close_code() {
            self.close_code = code;
        }
        self.close(ws_error_reason(e));
    }

    fn on_probe(&mut self, msg: Result<WsMessage, WsError>, wire: &mut Wire) {
        let packet = match msg {
            Ok(WsMessage::Text(t)) => eio::Packet::decode_text(t).ok(),
            _ => None,
        };
        match (packet, self.upgrade) {
            (Some(eio::Packet::Ping(p)), Upgrade::Reserved) if &p[..] == b"probe" => {
                let ok = match wire.probe.as_mut() {
                    Some(probe) => {
                        probe.writer.queue(Bytes::from_static(b"\x81\x063probe"));
                        // A fresh socket takes 8 bytes at once; one that does not is
                        // not worth upgrading to.
                        matches!(probe.writer.try_flush(), Ok(true))
                    }
                    None => false,
                };
                if !ok {
                    return self.abort_upgrade(wire);
                }
                self.upgrade = Upgrade::Probed;
                // Release the pending poll so the client can finish pausing.
                if let Some(get) = self.take_get() {
                    let _ = get.send(Ok(Polled::noop(self.eio3)));
                }
            }
            (Some(eio::Packet::Upgrade), Upgrade::Probed) => {
                let Some(probe) = wire.probe.take() else { return };
                wire.reader = Some(probe.reader);
                let (writer, deflate) = (probe.writer, probe.deflate);
                let framing = match (self.eio3, probe.b64) {
                    (false, _) => Framing::V4,
                    (true, false) => Framing::V3,
                    (true, true) => Framing::V3Base64,
                };
                if let Some(get) = self.take_get() {
                    let _ = get.send(Ok(Polled::noop(self.eio3)));
                }
                // What was held for polling goes first on the WebSocket.
                self.ctx.transport().with_link(self.slot, |l| l.set_ws(writer, deflate, framing));
                self.over_ws = true;
                self.conn.websocket.store(true, std::sync::atomic::Ordering::Release);
                self.conn.upgraded.store(true, std::sync::atomic::Ordering::Release);
                self.upgrade = Upgrade::Done;
                self.upgrade_deadline = None;
                // A PING queued for polling goes over the WebSocket now.
                self.write();
                self.client.upgraded(&self.ctx);
            }
            _ => self.abort_upgrade(wire),
        }
    }

    fn abort_upgrade(&mut self, wire: &mut Wire) {
        tracing::debug!(sid = %self.sid, "upgrade aborted");
        wire.probe = None;
        self.upgrade = Upgrade::None;
        self.upgrade_deadline = None;
    }

    fn on_timer(&mut self, wire: &mut Wire) {
        let now = Instant::now();
        if self.pong_deadline.is_some_and(|d| d <= now) {
            return self.close(DisconnectReason::PingTimeout);
        }
        if self.connect_deadline.is_some_and(|d| d <= now) {
            return self.close(DisconnectReason::ConnectTimeout);
        }
        if self.upgrade_deadline.is_some_and(|d| d <= now) {
            self.abort_upgrade(wire);
        }
        if self.next_ping.is_some_and(|d| d <= now) {
            self.next_ping = None;
            self.pong_deadline = Some(now + self.ctx.config().ping_timeout);
            self.ctrl.push(Ctrl::Ping);
            if self.over_ws || self.pending_get.is_some() {
                self.write();
            }
        }
    }

    /// Hands queued control packets to the WebSocket writer (flushed by the shard's next
    /// pass), or answers the pending polling GET with them and what the link holds.
    fn write(&mut self) {
        if self.over_ws {
            let ctrl = &mut self.ctrl;
            self.ctx.transport().with_link(self.slot, |l| {
                if let Some(w) = l.ws() {
                    for c in ctrl.drain(..) {
                        w.queue(c.frame());
                    }
                }
            });
            return;
        }
        let Some(get) = self.take_get() else { return };
        let batch = self.ctx.transport().with_link(self.slot, |l| l.take_polled(POLL_BATCH));
        self.answer(get, batch);
    }

    /// Answers a polling GET with the control packets and `batch` (and CLOSE when closing),
    /// in the session's payload framing: v4's, or v3's (`<length>:<packet>` text, or the
    /// binary payload form when the batch holds binary and the client did not ask for
    /// base64).
    fn answer(&mut self, get: oneshot::Sender<PollReply>, batch: Vec<Out>) {
        let mut payload = if !self.eio3 {
            Payload::V4(PayloadEncoder::new())
        } else if !self.b64 && batch.iter().any(|o| !o.binary().is_empty()) {
            Payload::V3(eio3::PayloadEncoder::binary())
        } else {
            Payload::V3(eio3::PayloadEncoder::text())
        };
        let compress = !self.ctrl.is_empty() || batch.iter().any(Out::compressible);
        for c in self.ctrl.drain(..) {
            payload.text(c.text());
        }
        for out in &batch {
            if !out.text().is_empty() {
                payload.text(out.text());
            }
            for b in out.binary() {
                payload.binary(b);
            }
        }
        if self.close_packet {
            payload.text(b"1");
        }
        let polled = payload.finish(compress);
        if get.send(Ok(polled)).is_err() {
            // The client dropped the poll while it waited: what it carried is lost, so
            // the session ends, as the reference's "poll connection closed prematurely".
            self.close(DisconnectReason::TransportError);
        }
    }

    /// Ends the session: sockets leave with `reason`; what is still queued is written when
    /// the transport is alive (so a server-side disconnect reaches the client); the session
    /// is forgotten by its shard.
    async fn finish(mut self, reason: DisconnectReason, mut wire: Wire) {
        counters::closed(reason.as_str());
        self.client.close(&self.ctx, reason);
        let transport_alive = !matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::SlowConsumer
        );
        self.ctrl.clear();
        wire.probe = None;
        let rest = if transport_alive && !self.over_ws {
            self.ctx.transport().with_link(self.slot, |l| l.take_polled(usize::MAX))
        } else {
            Vec::new()
        };
        let writer = if self.over_ws { self.ctx.transport().remove_link(self.slot) } else { None };
        if let Some(mut w) = writer {
            if !transport_alive {
                // Nobody will read the backlog (a slow consumer's may be megabytes): only
                // a frame already partly written is finished, so the close frame parses.
                w.truncate_unsent();
            }
            let code = self.close_code;
            let _ = tokio::time::timeout(Duration::from_secs(1), w.close(code)).await;
        } else if !self.over_ws {
            // Polling: what is queued goes in one response and CLOSE in the next, as the
            // reference does after "drain": socket.io-client handles decoded packets on the
            // next tick, so a CLOSE in the same payload would overtake a DISCONNECT. Wait a
            // little for the client's next poll (less when shutting down: the drain is
            // bounded).
            let now = Instant::now();
            let linger = match reason {
                DisconnectReason::ServerShuttingDown => now + Duration::from_millis(500),
                _ if transport_alive => now + Duration::from_secs(2),
                _ => now,
            };
            if !rest.is_empty() && self.next_get(linger).await {
                if let Some(get) = self.pending_get.take() {
                    self.answer(get, rest);
                }
            }
            self.close_packet = true;
            if self.next_get(linger).await {
                if let Some(get) = self.pending_get.take() {
                    self.answer(get, Vec::new());
                }
            }
        }
        // From here on nothing more is queued for this connection.
        self.ctx.transport().remove_link(self.slot);
        self.ctx.remove_session(&self.sid);
        tracing::debug!(sid = %self.sid, %reason, "session closed");
    }

    /// While closing: waits until a polling GET is pending (true), answering other
    /// requests, or until `deadline` (false).
    async fn next_get(&mut self, deadline: Instant) -> bool {
        let (ctx, slot) = (self.ctx.clone(), self.slot);
        while self.pending_get.is_none() {
            tokio::select! {
                cmd = poll_fn(|cx| ctx.transport().poll_cmd(slot, cx)) => match cmd {
                    Cmd::PollGet(reply) => self.pending_get = Some(reply),
                    Cmd::PollPost(_, reply) => { let _ = reply.send(Ok(())); }
                    Cmd::PollPostBegin(reply) => { let _ = reply.send(Err(EioError::BadRequest)); }
                    Cmd::CanUpgrade(reply) => { let _ = reply.send(Err(EioError::BadRequest)); }
                    _ => {}
                },
                _ = sleep_until(deadline) => return false,
            }
        }
        true
    }
}

fn ws_error_reason(e: &WsError) -> DisconnectReason {
    match e {
        WsError::Closed => DisconnectReason::TransportClose,
        WsError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            DisconnectReason::TransportClose
        }
        _ => DisconnectReason::TransportError,
    }
}
#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// What every idle connection carries inline stays small: rare state (a binary packet
    /// being reassembled, an upgrade's probe socket, the closing phase) is boxed. The
    /// budgets leave some room; growing past them should be a decision, not an accident.
    #[test]
    fn per_connection_state_stays_small() {
        for (what, size, budget) in [
            ("Session", size_of::<super::Session>(), 256),
            ("Wire", size_of::<super::Wire>(), 128),
            ("Link", size_of::<crate::transport::link::Link>(), 224),
            ("WsReader", size_of::<crate::transport::ws::WsReader>(), 120),
            ("WsWriter", size_of::<crate::transport::ws::WsWriter>(), 64),
        ] {
            assert!(size <= budget, "{what} is {size} bytes, budget {budget}");
        }
    }
}

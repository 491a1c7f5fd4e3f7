//! A Socket.IO socket: one client's membership of one namespace, with its event handlers,
//! pending acknowledgements and rooms.
//!
//! A `Socket` is a cheap, `Send` handle. Its room membership lives in the owning shard's
//! rooms map; calls made on the owning shard touch that map directly, calls made elsewhere
//! are submitted to the owning shard.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ahash::AHashMap;
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use crate::error::{AckError, DisconnectReason, EmitError};
use crate::ns::args::{Args, IntoArgs};
use crate::ns::cluster_recovery::DirectEmit;
use crate::ns::recovery::{Audience, Replayable};
use crate::ns::shared::ServerShared;
use crate::ns::{NamespaceInner, Room};
use crate::proto::json::Verbatim;
use crate::proto::{sid::Sid, sio};
use crate::shard;
use crate::transport::local::ConnHandle;
use crate::transport::outbox::Out;
use crate::transport::request::HandshakeInfo;
use crate::transport::session::Cmd;

/// What the client sent when it connected: the namespace's `auth` payload, and (through
/// `Deref`) the connection's [`HandshakeInfo`]: `handshake.headers`, `handshake.address`, ...
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The `auth` payload of the namespace CONNECT packet (`{}` when none was sent). A
    /// string in it holding a lone surrogate reads U+FFFD here; [`Handshake::auth_arg`]
    /// keeps what the client sent.
    pub auth: Value,
    /// The auth payload's text as the client wrote it, when it held a lone surrogate.
    pub(crate) auth_verbatim: Option<Box<str>>,
    pub(crate) info: Arc<HandshakeInfo>,
}

impl Handshake {
    /// The auth payload as one event argument that is written back exactly as the client
    /// sent it (lone surrogates included; see [`Args`]).
    pub fn auth_arg(&self) -> Args {
        let verbatim = self.auth_verbatim.clone().map(|t| Verbatim::entry(0, t));
        Args::from_parts(vec![self.auth.clone()], Vec::new(), verbatim.unwrap_or_default())
    }
}

impl Handshake {
    /// The handshake as socket.io shapes `socket.handshake` (what a cluster's fetch
    /// answers carry): `headers` (names lowercase, repeated ones joined by `, `), `time`
    /// (as JavaScript's `Date.toString()` writes it, in UTC), `address`, `xdomain` (an
    /// `Origin` header was sent), `secure`, `issued` (ms since the epoch), `url`, `query` and
    /// `auth`.
    pub fn to_json(&self) -> Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in self.info.headers.iter() {
            let name = name.to_ascii_lowercase();
            match headers.get_mut(&name) {
                Some(Value::String(v)) => {
                    v.push_str(", ");
                    v.push_str(value);
                }
                _ => {
                    headers.insert(name, Value::String(value.to_owned()));
                }
            }
        }
        let mut query = serde_json::Map::new();
        for (k, v) in self.info.query.iter() {
            query.entry(k.to_owned()).or_insert_with(|| Value::String(v.to_owned()));
        }
        let issued = self
            .info
            .issued
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        serde_json::json!({
            "headers": headers,
            "time": js_date_string(self.info.issued),
            "address": self.info.address.ip().to_string(),
            "xdomain": self.info.headers.contains("origin"),
            "secure": self.info.secure,
            "issued": issued,
            "url": self.info.url,
            "query": query,
            "auth": self.auth,
        })
    }
}

/// `new Date(t).toString()` in the UTC time zone.
fn js_date_string(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day] [year] [hour]:[minute]:[second]"
    );
    let date = t.format(&format).unwrap_or_default();
    format!("{date} GMT+0000 (Coordinated Universal Time)")
}

impl std::ops::Deref for Handshake {
    type Target = HandshakeInfo;

    fn deref(&self) -> &HandshakeInfo {
        &self.info
    }
}

/// An acknowledgement-collecting broadcast: every recipient registers the namespace-wide ack
/// id with this channel.
pub(crate) type AckSink = mpsc::UnboundedSender<AckEvent>;

/// What the shards and recipients report to the issuer of a broadcast with acks.
#[derive(Debug)]
pub(crate) enum AckEvent {
    /// A shard delivered the packet to these sockets.
    Delivered(Vec<Sid>),
    /// A recipient acknowledged.
    Reply(Sid, Args),
    /// A recipient disconnected before acknowledging.
    Gone(Sid),
    /// A cluster adapter: this many other servers were asked (each reports its count).
    Servers(usize),
    /// Another server delivered the packet to this many of its clients.
    RemoteDelivered(usize),
    /// One of those clients acknowledged (its first argument; no id crosses servers).
    RemoteReply(Args),
    /// The adapter stopped listening for the other servers' replies.
    RemoteExpired,
}

/// A handler for one event: the socket, the arguments, and the acknowledgement callback when
/// the client asked for one.
pub(crate) type EventHandler = Arc<dyn Fn(Socket, Args, Option<AckSender>) + Send + Sync>;

/// The handler `f` as an [`EventHandler`]. A closure that captures nothing is zero-sized and
/// every value of its type does the same, so one allocation per closure type serves every
/// socket that registers it (a connection handler registers the same closures on each
/// socket: without this, each of them costs an allocation per idle connection).
fn shared_if_stateless<F>(f: F) -> EventHandler
where
    F: Fn(Socket, Args, Option<AckSender>) + Send + Sync + 'static,
{
    use std::any::TypeId;
    use std::sync::OnceLock;
    if std::mem::size_of::<F>() != 0 || std::mem::needs_drop::<F>() {
        return Arc::new(f);
    }
    static SHARED: OnceLock<Mutex<AHashMap<TypeId, EventHandler>>> = OnceLock::new();
    let mut shared = lock(SHARED.get_or_init(Default::default));
    shared.entry(TypeId::of::<F>()).or_insert_with(|| Arc::new(f)).clone()
}
/// A handler for the socket's disconnection.
/// The Engine.IO connection under a socket ([`Socket::conn`]), as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The Engine.IO session id (`socket.conn.id`).
    pub id: String,
    /// `"polling"` or `"websocket"` (`socket.conn.transport.name`).
    pub transport: &'static str,
    /// It started on polling and was upgraded to WebSocket.
    pub upgraded: bool,
    /// The client's address (`socket.conn.remoteAddress`).
    pub remote_address: std::net::SocketAddr,
    /// It came over TLS.
    pub secure: bool,
    /// The Engine.IO protocol revision: 4, or 3 for a socket.io-client 2.x connection
    /// (`allow_eio3`) (`socket.conn.protocol`).
    pub protocol: u8,
}

pub(crate) type DisconnectHandler = Arc<dyn Fn(Socket, DisconnectReason) + Send + Sync>;
/// A catch-all listener: the socket, the event name and its arguments.
pub(crate) type AnyHandler = Arc<dyn Fn(&Socket, &str, &Args) + Send + Sync>;
/// A per-socket middleware on incoming events; an error refuses the event.
pub(crate) type SyncEventMiddleware =
    dyn Fn(&Socket, &str, &Args) -> Result<(), String> + Send + Sync;

#[derive(Clone)]
pub(crate) enum EventMiddleware {
    Sync(Arc<SyncEventMiddleware>),
    /// One that awaits: the socket, the event and a copy of its arguments.
    Async(Arc<dyn Fn(Socket, String, Args) -> EventMiddlewareFuture + Send + Sync>),
}

/// What an async per-socket middleware returns.
pub(crate) type EventMiddlewareFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>;
/// Receives the errors of per-socket middlewares.
pub(crate) type ErrorHandler = Arc<dyn Fn(&Socket, &str) + Send + Sync>;

/// Where an acknowledgement from the client goes.
enum AckSlot {
    /// `emit_with_ack` on this socket.
    Single(oneshot::Sender<Args>),
    /// A broadcast with acks this socket received.
    Broadcast(AckSink),
}

pub(crate) struct SocketInner {
    pub id: Sid,
    pub nsp: Arc<NamespaceInner>,
    pub server: Arc<ServerShared>,
    pub conn: Arc<ConnHandle>,
    pub handshake: Handshake,
    pub connected: AtomicBool,
    /// Event handlers by name: a short list searched linearly (a handful per socket, and
    /// far smaller than a map, which an idle connection would carry for its whole life).
    /// The names are the namespace's shared copies ([`NamespaceInner::event_name`]).
    handlers: Mutex<Vec<(Arc<str>, EventHandler)>>,
    on_disconnect: Mutex<Vec<DisconnectHandler>>,
    any: Mutex<Vec<AnyHandler>>,
    any_outgoing: Mutex<Vec<AnyHandler>>,
    has_any_outgoing: AtomicBool,
    middlewares: Mutex<Vec<EventMiddleware>>,
    on_error: Mutex<Vec<ErrorHandler>>,
    acks: Mutex<AHashMap<u64, AckSlot>>,
    /// Boxed once set: a `Value` is large and most sockets never get data.
    data: Mutex<Option<Box<Value>>>,
    /// The rooms this socket is in, in join order. Written only by the owning shard.
    pub(crate) rooms: Mutex<SmallVec<[Room; 4]>>,
    /// Its private session id or its v3 name (see [`Ident`]).
    ident: Ident,
    /// It was restored from an earlier connection's session.
    recovered: bool,
}

/// What a socket may have beside its id; the two never go together, so they share the
/// room (every connection carries this).
enum Ident {
    Plain,
    /// Its private session id, when connection state recovery is on (never shown to
    /// others: it is what lets a client take this socket back).
    Pid(Sid),
    /// The id socket.io gives an Engine.IO v3 client's socket outside `/`:
    /// `<namespace>#<engine sid>` (its `id` is then the engine sid, which it is for `/`).
    /// Such a client cannot recover, so it has no pid.
    Alias(Box<str>),
}

/// A client's socket in one namespace. Clone it freely; all clones are the same socket.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketInner>);

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.0.id).field("nsp", &self.0.nsp.name).finish()
    }
}

/// Replies to an event the client emitted with an acknowledgement callback.
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    /// Sends the acknowledgement. It can be sent once.
    pub fn send(self, args: impl IntoArgs) -> Result<(), EmitError> {
        if !self.socket.connected() {
            return Err(EmitError::Disconnected);
        }
        let (values, binary, verbatim) = args.into_args().into_parts();
        let enc = self.socket.0.server.encoding(true);
        let out = Out::ack(&self.socket.0.nsp.name, self.id, &values, &verbatim, binary, enc);
        self.socket.0.conn.send(out);
        Ok(())
    }
}

impl Socket {
    /// Acknowledgements this socket awaits from its client.
    pub(crate) fn pending_acks(&self) -> usize {
        lock(&self.0.acks).len()
    }

    pub(crate) fn new(
        id: Sid,
        nsp: Arc<NamespaceInner>,
        server: Arc<ServerShared>,
        conn: Arc<ConnHandle>,
        handshake: Handshake,
        pid: Option<Sid>,
        recovered: bool,
    ) -> Socket {
        // An Engine.IO v3 client's sockets are named after its connection, as socket.io
        // names them (and the 2.x client computes the same id itself).
        let ident = match pid {
            _ if conn.eio3 && *nsp.name != *"/" => {
                Ident::Alias(format!("{}#{}", nsp.name, id).into())
            }
            Some(pid) => Ident::Pid(pid),
            None => Ident::Plain,
        };
        Socket(Arc::new(SocketInner {
            ident,
            recovered,
            id,
            nsp,
            server,
            conn,
            handshake,
            connected: AtomicBool::new(false),
            handlers: Mutex::new(Vec::new()),
            on_disconnect: Mutex::new(Vec::new()),
            any: Mutex::new(Vec::new()),
            any_outgoing: Mutex::new(Vec::new()),
            has_any_outgoing: AtomicBool::new(false),
            middlewares: Mutex::new(Vec::new()),
            on_error: Mutex::new(Vec::new()),
            acks: Mutex::new(AHashMap::new()),
            data: Mutex::new(None),
            rooms: Mutex::new(SmallVec::new()),
        }))
    }

    /// The socket id (unique per namespace connection, not the Engine.IO session id; for
    /// an Engine.IO v3 client, as socket.io makes it: the session id in `/`,
    /// `<namespace>#<session id>` elsewhere).
    pub fn id(&self) -> &str {
        match &self.0.ident {
            Ident::Alias(a) => a,
            _ => self.0.id.as_str(),
        }
    }

    pub(crate) fn sid(&self) -> Sid {
        self.0.id
    }

    /// True when this socket was restored by connection state recovery: the client came
    /// back after its connection dropped, and got its id, rooms, data and missed packets
    /// (socket.io's `socket.recovered`).
    pub fn recovered(&self) -> bool {
        self.0.recovered
    }

    /// The private session id (recovery on).
    pub(crate) fn pid(&self) -> Option<Sid> {
        match self.0.ident {
            Ident::Pid(p) => Some(p),
            _ => None,
        }
    }

    /// The underlying Engine.IO connection (socket.io's `socket.conn`): its id, transport,
    /// whether it was upgraded, the client's address.
    pub fn conn(&self) -> Conn {
        let c = &self.0.conn;
        Conn {
            id: c.sid.as_str().to_owned(),
            transport: if c.websocket.load(Ordering::Acquire) { "websocket" } else { "polling" },
            upgraded: c.upgraded.load(Ordering::Acquire),
            remote_address: self.0.handshake.info.address,
            secure: self.0.handshake.info.secure,
            protocol: if c.eio3 { 3 } else { 4 },
        }
    }

    /// Removes the handler of `event` (socket.io's `socket.off(event)` /
    /// `removeAllListeners(event)`); true when there was one.
    pub fn off(&self, event: &str) -> bool {
        let mut handlers = lock(&self.0.handlers);
        let before = handlers.len();
        handlers.retain(|(name, _)| &**name != event);
        handlers.len() != before
    }

    /// Removes every catch-all listener of incoming events (`socket.offAny()`).
    pub fn off_any(&self) {
        lock(&self.0.any).clear();
    }

    /// Removes every catch-all listener of outgoing events (`socket.offAnyOutgoing()`).
    pub fn off_any_outgoing(&self) {
        lock(&self.0.any_outgoing).clear();
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.0.nsp.name
    }

    /// The namespace this socket belongs to (socket.io's `socket.nsp`): for a namespace
    /// created by a dynamic pattern, that namespace, not the pattern's.
    pub fn namespace(&self) -> crate::ns::Namespace {
        crate::ns::Namespace { inner: self.0.nsp.clone(), server: self.0.server.clone() }
    }

    /// What the client sent when connecting.
    pub fn handshake(&self) -> &Handshake {
        &self.0.handshake
    }

    /// True until the socket leaves the namespace.
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Registers the handler of `event`, replacing any previous one.
    pub fn on<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(Socket, Args, Option<AckSender>) + Send + Sync + 'static,
    {
        let event: String = event.into();
        let handler = shared_if_stateless(handler);
        let mut handlers = lock(&self.0.handlers);
        match handlers.iter_mut().find(|(name, _)| **name == *event) {
            Some((_, h)) => *h = handler,
            None => handlers.push((self.0.nsp.event_name(event), handler)),
        }
    }

    /// Gives back the slack of the handler lists once the connection handler has
    /// registered them (an idle connection keeps them for its whole life).
    pub(crate) fn compact(&self) {
        lock(&self.0.handlers).shrink_to_fit();
        lock(&self.0.on_disconnect).shrink_to_fit();
    }

    /// Registers a handler called once when the socket leaves the namespace.
    pub fn on_disconnect<F>(&self, handler: F)
    where
        F: Fn(Socket, DisconnectReason) + Send + Sync + 'static,
    {
        lock(&self.0.on_disconnect).push(Arc::new(handler));
    }

    /// Emits `event` to this client.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.emit_inner(event, args.into_args(), None, EmitFlags::default())
    }

    fn emit_inner(
        &self,
        event: &str,
        args: Args,
        ack: Option<u64>,
        flags: EmitFlags,
    ) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        // Recovery across servers: appended to the cluster's stream, then queued here with
        // its offset, in order with this server's broadcasts (socket.io routes it as a
        // broadcast to the socket's own room).
        let cluster = self.0.server.recovery().and_then(|r| r.cluster());
        let mut args = args;
        if let Some(cluster) = cluster {
            let listeners = self.has_outgoing_listeners().then(|| args.clone());
            let e = Box::new(DirectEmit {
                nsp: self.0.nsp.name.clone(),
                sid: self.sid(),
                event: event.to_owned(),
                args,
                ack,
                volatile: flags.volatile,
                compress: flags.compress,
                conn: self.0.conn.clone(),
            });
            match cluster.emit(e) {
                Ok(()) => {
                    if let Some(args) = listeners {
                        self.notify_outgoing(event, &args);
                    }
                    return Ok(());
                }
                // Not queued: sent at once, without an offset.
                Err(e) => args = e.args,
            }
        }
        // With recovery on, a plain event carries its offset and goes to the log of the
        // socket's shard as it is queued (socket.io routes it as a broadcast to the socket's
        // own room).
        let recovery = self
            .0
            .server
            .recovery()
            .filter(|r| ack.is_none() && !flags.volatile && r.cluster().is_none());
        let offset = recovery.map(|r| (r.next_direct(), r));
        let text = offset.map(|(o, r)| r.tag.format(o));
        let out = Out::event_with_offset(
            &self.0.nsp.name,
            event,
            args.values(),
            args.verbatim(),
            args.binary().to_vec(),
            ack,
            self.0.server.encoding(flags.compress),
            text.as_deref(),
        );
        if let Some((id, _)) = offset {
            let entry = Arc::new(Replayable {
                id,
                nsp: self.0.nsp.name.clone(),
                to: Audience::Socket(self.sid()),
                packet: out.clone(),
                at: std::time::Instant::now(),
            });
            self.send_logged(out, entry);
        } else if flags.volatile {
            self.0.conn.send_volatile(out);
        } else {
            self.0.conn.send(out);
        }
        if self.has_outgoing_listeners() {
            self.notify_outgoing(event, &args);
        }
        Ok(())
    }

    /// Emits `event` and waits for the client's acknowledgement, without a time limit (it
    /// fails if the socket disconnects first). See [`Socket::timeout`] for a bounded wait.
    pub async fn emit_with_ack(&self, event: &str, args: impl IntoArgs) -> Result<Args, AckError> {
        self.emitter().emit_with_ack(event, args).await
    }

    /// Logs `entry` and queues `out` on the socket's shard, in one step. From a thread that
    /// is not a shard, through shard 0 first: broadcasts from such a thread are numbered
    /// there (see the operators), and this keeps the emits of one thread in order.
    fn send_logged(&self, out: Out, entry: Arc<Replayable>) {
        let conn = self.0.conn.clone();
        let mesh = conn.mesh.clone();
        let deliver = move || {
            if let Some(ctx) = shard::current(&conn.mesh) {
                ctx.log_replayable(&entry);
                ctx.transport().push(conn.slot, conn.sid, &out, false);
            }
        };
        let shard = self.0.conn.shard;
        if shard::current(&mesh).is_some() {
            shard::submit_to(&mesh, shard, deliver);
        } else {
            let m = mesh.clone();
            shard::submit_to(&mesh, 0, move || shard::submit_to(&m, shard, deliver));
        }
    }

    fn emitter(&self) -> SocketEmit<'_> {
        SocketEmit { socket: self, flags: EmitFlags::default(), timeout: None }
    }

    /// An emit whose acknowledgement is awaited at most `timeout` (then
    /// [`AckError::Timeout`]), like socket.io's `socket.timeout(ms).emitWithAck(...)`.
    pub fn timeout(&self, timeout: Duration) -> SocketEmit<'_> {
        self.emitter().timeout(timeout)
    }

    /// An emit that may be dropped when the client is not ready to receive it.
    pub fn volatile(&self) -> SocketEmit<'_> {
        self.emitter().volatile()
    }

    /// An emit with per-message compression allowed or not (default allowed).
    pub fn compress(&self, compress: bool) -> SocketEmit<'_> {
        self.emitter().compress(compress)
    }

    fn start_ack(
        &self,
        event: &str,
        args: Args,
        flags: EmitFlags,
    ) -> Result<(u64, oneshot::Receiver<Args>), EmitError> {
        let id = self.0.nsp.next_ack_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.0.acks).insert(id, AckSlot::Single(tx));
        if let Err(e) = self.emit_inner(event, args, Some(id), flags) {
            lock(&self.0.acks).remove(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Registers the handler of `event` with its arguments read as `T` (a tuple of the
    /// arguments, a `Vec`, a struct of them in order; see [`Args::parse`]), binary as
    /// `bytes::Bytes`. A client sending another shape does not reach a panic: the handler
    /// gets the [`ArgsError`](crate::ArgsError) and chooses (ack the error, ignore it,
    /// disconnect).
    ///
    /// ```no_run
    /// # fn f(socket: shardcast::Socket) {
    /// #[derive(serde::Deserialize)]
    /// struct Move { x: i32, y: i32 }
    /// socket.on_typed("move", |socket, data: Result<(Move, bytes::Bytes), _>, ack| {
    ///     match (data, ack) {
    ///         (Ok((m, blob)), Some(ack)) => { let _ = ack.send((m.x + m.y, blob.len())); }
    ///         (Err(e), Some(ack)) => { let _ = ack.send((serde_json::json!({"error": e.to_string()}),)); }
    ///         _ => {}
    ///     }
    /// });
    /// # }
    /// ```
    pub fn on_typed<T, F>(&self, event: impl Into<String>, handler: F)
    where
        T: serde::de::DeserializeOwned + 'static,
        F: Fn(Socket, Result<T, crate::ns::args::ArgsError>, Option<AckSender>)
            + Send
            + Sync
            + 'static,
    {
        self.on(event, move |socket, args, ack| handler(socket, args.parse::<T>(), ack));
    }

    /// Registers a catch-all listener for incoming events. It runs before the socket's
    /// middlewares (so it also sees the events they refuse) and before the event's handler.
    pub fn on_any<F>(&self, listener: F)
    where
        F: Fn(&Socket, &str, &Args) + Send + Sync + 'static,
    {
        lock(&self.0.any).push(Arc::new(listener));
    }

    /// Registers a catch-all listener for outgoing events: this socket's emits and the
    /// broadcasts it receives.
    pub fn on_any_outgoing<F>(&self, listener: F)
    where
        F: Fn(&Socket, &str, &Args) + Send + Sync + 'static,
    {
        lock(&self.0.any_outgoing).push(Arc::new(listener));
        self.0.has_any_outgoing.store(true, Ordering::Release);
        self.0.nsp.note_outgoing_listener();
    }

    /// Adds a middleware run on each incoming event before any listener, like socket.io's
    /// `socket.use`. An error refuses the event: no listener runs, and the error goes to the
    /// [`Socket::on_error`] handlers.
    pub fn use_middleware<F>(&self, mw: F)
    where
        F: Fn(&Socket, &str, &Args) -> Result<(), String> + Send + Sync + 'static,
    {
        lock(&self.0.middlewares).push(EventMiddleware::Sync(Arc::new(mw)));
    }

    /// [`Socket::use_middleware`] with a middleware that awaits (it gets the socket, the
    /// event name and a copy of the arguments). While one is registered, each event's
    /// middlewares run in order in a task on the socket's shard, which serves its other
    /// connections meanwhile; the event's handler runs once they all accepted, if the
    /// socket is still connected. As in socket.io, events whose middlewares wait different
    /// times may reach their handlers in another order than they came.
    pub fn use_async_middleware<F, Fut>(&self, mw: F)
    where
        F: Fn(Socket, String, Args) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + 'static,
    {
        let f = move |s, e, a| Box::pin(mw(s, e, a)) as EventMiddlewareFuture;
        lock(&self.0.middlewares).push(EventMiddleware::Async(Arc::new(f)));
    }

    /// Receives the errors of this socket's middlewares (socket.io's `error` event).
    pub fn on_error<F>(&self, handler: F)
    where
        F: Fn(&Socket, &str) + Send + Sync + 'static,
    {
        lock(&self.0.on_error).push(Arc::new(handler));
    }

    /// Arbitrary data attached to the socket (socket.io's `socket.data`), visible on the
    /// handles returned by `fetch_sockets`.
    pub fn data(&self) -> Value {
        lock(&self.0.data).as_deref().cloned().unwrap_or(Value::Null)
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        *lock(&self.0.data) = (!data.is_null()).then(|| Box::new(data));
        if self.0.server.config().connection_state_recovery.is_some_and(|r| r.live_sessions) {
            self.on_shard(|ctx, s| ctx.note_live_change(&s.0.nsp.name, s.sid()));
        }
    }

    /// The data as it is kept (a restored session's comes back as it left).
    pub(crate) fn data_box(&self) -> Option<Box<Value>> {
        lock(&self.0.data).clone()
    }

    pub(crate) fn set_data_box(&self, data: Option<Box<Value>>) {
        *lock(&self.0.data) = data;
    }

    /// Joins `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        self.on_shard(move |ctx, s| ctx.join(&s.0.nsp.name, s.sid(), room));
    }

    /// Leaves `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        let room = room.into();
        self.on_shard(move |ctx, s| ctx.leave(&s.0.nsp.name, s.sid(), &room));
    }

    /// Leaves every room but its own (its id, which `to(socket_id)` reaches), as socket.io's
    /// `leaveAll` does when a socket goes; on the socket's shard, in one pass.
    pub fn leave_all(&self) {
        self.on_shard(move |ctx, s| {
            let own = s.room();
            for room in s.rooms().into_iter().filter(|r| *r != own) {
                ctx.leave(&s.0.nsp.name, s.sid(), &room);
            }
        });
    }

    /// The rooms this socket is in, in join order (its own id first, as in socket.io), from
    /// any thread. A `join`/`leave` called off the socket's shard shows here once that shard
    /// has applied it.
    pub fn rooms(&self) -> Vec<Room> {
        lock(&self.0.rooms).to_vec()
    }

    /// The socket's own room (its id).
    pub(crate) fn room(&self) -> Room {
        Room::from(self.id())
    }

    /// Removes the socket from its namespace (the client sees `io server disconnect`). With
    /// `close`, the whole underlying connection is closed too, after every namespace socket
    /// of it has been disconnected the same way.
    pub fn disconnect(&self, close: bool) {
        if self.connected() {
            let (conn, sid) = (self.0.conn.sid, self.sid());
            let nsp = self.0.nsp.name.clone();
            let mesh = self.0.conn.mesh.clone();
            shard::submit_to(&self.0.conn.mesh, self.0.conn.shard, move || {
                if let Some(ctx) = shard::current(&mesh) {
                    ctx.transport().send_cmd(&conn, Cmd::DisconnectSocket { sid, nsp, close });
                }
            });
        }
    }

    /// Runs `f` on the socket's shard: now when already there, by message otherwise.
    fn on_shard(&self, f: impl FnOnce(&shard::ShardCtx, &Socket) + Send + 'static) {
        let s = self.clone();
        shard::submit_to(&self.0.conn.mesh, self.0.conn.shard, move || {
            if let Some(ctx) = shard::current(&s.0.conn.mesh) {
                f(&ctx, &s)
            }
        });
    }

    pub(crate) fn handler(&self, event: &str) -> Option<EventHandler> {
        lock(&self.0.handlers).iter().find(|(name, _)| **name == *event).map(|(_, h)| h.clone())
    }

    pub(crate) fn ack_sender(&self, id: u64) -> AckSender {
        AckSender { socket: self.clone(), id }
    }

    /// Delivers an acknowledgement from the client. Unknown ids are ignored, as socket.io does.
    pub(crate) fn on_ack(&self, id: u64, args: Args) {
        let slot = lock(&self.0.acks).remove(&id);
        match slot {
            Some(AckSlot::Single(tx)) => {
                let _ = tx.send(args);
            }
            Some(AckSlot::Broadcast(sink)) => {
                let _ = sink.send(AckEvent::Reply(self.sid(), args));
            }
            None => {
                tracing::debug!(socket = %self.0.id, id, "acknowledgement with unknown id ignored")
            }
        }
    }

    /// Registers this socket as a recipient of a broadcast with acks.
    pub(crate) fn expect_broadcast_ack(&self, id: u64, sink: AckSink) {
        lock(&self.0.acks).insert(id, AckSlot::Broadcast(sink));
    }

    /// The connection's transport, `websocket` or `polling`, when called on the socket's
    /// shard (`None` elsewhere).
    pub(crate) fn transport_name(&self) -> Option<&'static str> {
        let ctx = shard::current(&self.0.conn.mesh)?;
        Some(if ctx.transport().is_websocket(self.0.conn.slot) { "websocket" } else { "polling" })
    }

    pub(crate) fn has_outgoing_listeners(&self) -> bool {
        self.0.has_any_outgoing.load(Ordering::Acquire) || self.0.nsp.watched()
    }

    pub(crate) fn notify_outgoing(&self, event: &str, args: &Args) {
        if self.0.has_any_outgoing.load(Ordering::Acquire) {
            let listeners = lock(&self.0.any_outgoing).clone();
            for l in listeners {
                l(self, event, args);
            }
        }
        if let Some(w) = self.0.server.watch() {
            w.event_out(self, event, args);
        }
    }

    /// An incoming event: catch-all listeners, then middlewares, then the event's handler
    /// (socket.io's `onevent` calls the `onAny` listeners before `dispatch` runs `socket.use`).
    pub(crate) fn dispatch_event(&self, event: &str, args: Args, ack: Option<AckSender>) {
        if let Some(w) = self.0.server.watch() {
            w.event_in(self, event, &args);
        }
        let any = lock(&self.0.any).clone();
        for l in any {
            l(self, event, &args);
        }
        let mws = lock(&self.0.middlewares).clone();
        if mws.iter().any(|m| matches!(m, EventMiddleware::Async(_))) {
            let (socket, event) = (self.clone(), event.to_owned());
            tokio::task::spawn_local(async move {
                for mw in mws {
                    let verdict = match mw {
                        EventMiddleware::Sync(f) => f(&socket, &event, &args),
                        EventMiddleware::Async(f) => {
                            f(socket.clone(), event.clone(), args.clone()).await
                        }
                    };
                    if let Err(e) = verdict {
                        socket.refused(&event, &e);
                        return;
                    }
                }
                if socket.connected() {
                    if let Some(h) = socket.handler(&event) {
                        h(socket.clone(), args, ack);
                    }
                }
            });
            return;
        }
        for mw in mws {
            let verdict = match mw {
                EventMiddleware::Sync(f) => f(self, event, &args),
                EventMiddleware::Async(_) => Ok(()),
            };
            if let Err(e) = verdict {
                self.refused(event, &e);
                return;
            }
        }
        if let Some(h) = self.handler(event) {
            h(self.clone(), args, ack);
        }
    }

    /// An event a middleware refused: to the error handlers.
    fn refused(&self, event: &str, e: &str) {
        let handlers = lock(&self.0.on_error).clone();
        if handlers.is_empty() {
            tracing::warn!(socket = %self.0.id, event, error = %e, "event refused by middleware (no error handler)");
        }
        for h in handlers {
            h(self, e);
        }
    }

    /// Marks the socket disconnected, fails its pending acks and runs its disconnect
    /// handlers. Only called on the owning shard, once, by the connection's session.
    pub(crate) fn on_closed(&self, ctx: &shard::ShardCtx, reason: DisconnectReason) {
        if !self.0.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        *ctx.ns().counters.disconnects.borrow_mut().entry(reason.as_str()).or_insert(0) += 1;
        // The session is taken while the socket still has its rooms.
        ctx.recovery_on_closed(self, reason);
        ctx.remove_socket(&self.0.nsp, self.sid());
        self.0.server.socket_removed(&self.0.nsp);
        let pending: Vec<AckSlot> = lock(&self.0.acks).drain().map(|(_, v)| v).collect();
        for slot in pending {
            if let AckSlot::Broadcast(sink) = slot {
                let _ = sink.send(AckEvent::Gone(self.sid()));
            }
        }
        if let Some(w) = self.0.server.watch() {
            w.disconnected(self, reason);
        }
        let handlers: Vec<_> = lock(&self.0.on_disconnect).drain(..).collect();
        lock(&self.0.handlers).clear();
        lock(&self.0.any).clear();
        lock(&self.0.any_outgoing).clear();
        lock(&self.0.middlewares).clear();
        for h in handlers {
            h(self.clone(), reason);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct EmitFlags {
    volatile: bool,
    compress: bool,
}

impl Default for EmitFlags {
    fn default() -> Self {
        EmitFlags { volatile: false, compress: true }
    }
}

/// An emit to one socket with flags (`volatile`, `compress`, `timeout`), like socket.io's
/// `socket.volatile.timeout(ms).emit(...)`. From [`Socket::timeout`], [`Socket::volatile`]
/// and [`Socket::compress`].
pub struct SocketEmit<'a> {
    socket: &'a Socket,
    flags: EmitFlags,
    timeout: Option<Duration>,
}

impl<'a> SocketEmit<'a> {
    /// Bounds the wait for the acknowledgement.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The packet may be dropped when the client is not ready to receive it.
    pub fn volatile(mut self) -> Self {
        self.flags.volatile = true;
        self
    }

    /// Per-message compression allowed or not.
    pub fn compress(mut self, compress: bool) -> Self {
        self.flags.compress = compress;
        self
    }

    /// Emits `event`.
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.socket.emit_inner(event, args.into_args(), None, self.flags)
    }

    /// Emits `event` and waits for the acknowledgement (at most the timeout, when set).
    pub async fn emit_with_ack(self, event: &str, args: impl IntoArgs) -> Result<Args, AckError> {
        let (id, rx) = self.socket.start_ack(event, args.into_args(), self.flags)?;
        let Some(timeout) = self.timeout else {
            return rx.await.map_err(|_| AckError::Disconnected);
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                // Forget the pending ack so a late reply is ignored and nothing leaks.
                lock(&self.socket.0.acks).remove(&id);
                Err(AckError::Timeout)
            }
        }
    }
}

/// Locks a per-socket mutex. These are never contended across shards (a socket lives on one
/// shard) and no code panics while holding one, so a poisoned lock only means a user handler
/// panicked elsewhere: the data is still consistent and is used as is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

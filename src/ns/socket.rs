//! A Socket.IO socket: one client's membership of one namespace, with its event handlers,
//! pending acknowledgements and rooms.
//!
//! A `Socket` is a cheap, `Send` handle. Its room membership lives in the owning shard's
//! rooms map; calls made on the owning shard touch that map directly, calls made elsewhere
//! are submitted to the owning shard.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ahash::AHashMap;
use hyper::HeaderMap;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::broadcast::BroadcastOperator;
use crate::error::{AckError, DisconnectReason, EmitError};
use crate::ns::args::{Args, IntoArgs};
use crate::ns::{NamespaceInner, Room};
use crate::proto::{sid::Sid, sio};
use crate::server::ServerShared;
use crate::shard;
use crate::transport::outbox::Out;
use crate::transport::session::Cmd;

/// What the client sent when it connected.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The `auth` payload of the namespace CONNECT packet (`{}` when none was sent).
    pub auth: Value,
    /// HTTP headers of the first request of the connection.
    pub headers: HeaderMap,
    /// Query parameters of the first request, in order.
    pub query: Vec<(String, String)>,
    /// The peer's address.
    pub address: SocketAddr,
    /// The request URL (path and query) of the first request.
    pub url: String,
    /// When the Engine.IO connection was opened.
    pub issued: SystemTime,
}

impl Handshake {
    /// The first query parameter named `key`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A handler for one event: the socket, the arguments, and the acknowledgement callback when
/// the client asked for one.
pub(crate) type EventHandler = Arc<dyn Fn(Socket, Args, Option<AckSender>) + Send + Sync>;
/// A handler for the socket's disconnection.
pub(crate) type DisconnectHandler = Arc<dyn Fn(Socket, DisconnectReason) + Send + Sync>;

/// The connection a socket is multiplexed on.
pub(crate) struct ConnHandle {
    /// Engine.IO session id.
    pub sid: Sid,
    /// Owning shard.
    pub shard: usize,
    pub outbox: mpsc::Sender<Out>,
    pub cmd: mpsc::UnboundedSender<Cmd>,
    /// Set once the slow-consumer policy has condemned the connection.
    pub condemned: AtomicBool,
    /// Wakes the session's writer even while it is blocked on a socket that does not drain.
    pub kill: tokio::sync::Notify,
}

impl ConnHandle {
    /// Queues a frame. When the outbox is full the slow-consumer policy applies: the
    /// connection is closed with `slow consumer`. Returns false when the frame was not queued.
    pub(crate) fn send(&self, out: Out) -> bool {
        match self.outbox.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Once only: the command channel is unbounded and must not grow per drop.
                if !self.condemned.swap(true, Ordering::AcqRel) {
                    let _ = self.cmd.send(Cmd::Close(DisconnectReason::SlowConsumer));
                    self.kill.notify_one();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

pub(crate) struct SocketInner {
    pub id: Sid,
    pub nsp: Arc<NamespaceInner>,
    pub server: Arc<ServerShared>,
    pub conn: Arc<ConnHandle>,
    pub handshake: Handshake,
    pub connected: AtomicBool,
    handlers: Mutex<AHashMap<String, EventHandler>>,
    on_disconnect: Mutex<Vec<DisconnectHandler>>,
    acks: Mutex<AHashMap<u64, oneshot::Sender<Args>>>,
    next_ack: AtomicU64,
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
        let (values, binary) = args.into_args().into_parts();
        let out = Out::ack(&self.socket.0.nsp.name, self.id, &values, binary);
        self.socket.0.conn.send(out);
        Ok(())
    }
}

impl Socket {
    pub(crate) fn new(
        id: Sid,
        nsp: Arc<NamespaceInner>,
        server: Arc<ServerShared>,
        conn: Arc<ConnHandle>,
        handshake: Handshake,
    ) -> Socket {
        Socket(Arc::new(SocketInner {
            id,
            nsp,
            server,
            conn,
            handshake,
            connected: AtomicBool::new(false),
            handlers: Mutex::new(AHashMap::new()),
            on_disconnect: Mutex::new(Vec::new()),
            acks: Mutex::new(AHashMap::new()),
            next_ack: AtomicU64::new(0),
        }))
    }

    /// The socket id (unique per namespace connection, not the Engine.IO session id).
    pub fn id(&self) -> &str {
        self.0.id.as_str()
    }

    pub(crate) fn sid(&self) -> Sid {
        self.0.id
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.0.nsp.name
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
        lock(&self.0.handlers).insert(event.into(), Arc::new(handler));
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
        self.emit_inner(event, args.into_args(), None)
    }

    fn emit_inner(&self, event: &str, args: Args, ack: Option<u64>) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        let (values, binary) = args.into_parts();
        self.0.conn.send(Out::event(&self.0.nsp.name, event, &values, binary, ack));
        Ok(())
    }

    /// Emits `event` and waits for the client's acknowledgement, without a time limit (it
    /// fails if the socket disconnects first). See [`Socket::timeout`] for a bounded wait.
    pub async fn emit_with_ack(&self, event: &str, args: impl IntoArgs) -> Result<Args, AckError> {
        let (_, rx) = self.start_ack(event, args.into_args())?;
        rx.await.map_err(|_| AckError::Disconnected)
    }

    /// A view of this socket whose acknowledged emits fail with [`AckError::Timeout`] after
    /// `timeout`, like socket.io's `socket.timeout(ms).emitWithAck(...)`.
    pub fn timeout(&self, timeout: Duration) -> TimeoutSocket<'_> {
        TimeoutSocket { socket: self, timeout }
    }

    fn start_ack(
        &self,
        event: &str,
        args: Args,
    ) -> Result<(u64, oneshot::Receiver<Args>), EmitError> {
        let id = self.0.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.0.acks).insert(id, tx);
        if let Err(e) = self.emit_inner(event, args, Some(id)) {
            lock(&self.0.acks).remove(&id);
            return Err(e);
        }
        Ok((id, rx))
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

    /// The rooms this socket is in (its own id included, as in socket.io). Exact when called
    /// on the socket's shard (in its handlers); elsewhere it is empty, as the rooms map is
    /// owned by that shard.
    pub fn rooms(&self) -> Vec<Room> {
        match shard::current(&self.0.server) {
            Some(ctx) if ctx.id == self.0.conn.shard => ctx.rooms_of(&self.0.nsp.name, self.sid()),
            _ => Vec::new(),
        }
    }

    /// A broadcast to `room` from this socket: every member but this socket.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.0.server.clone(), self.0.nsp.name.clone())
            .to(room)
            .except(Room::from(self.id()))
    }

    /// Removes the socket from its namespace (the client sees `io server disconnect`). With
    /// `close`, the whole underlying connection is closed too, after every namespace socket
    /// of it has been disconnected the same way.
    pub fn disconnect(&self, close: bool) {
        let _ = self.0.conn.cmd.send(Cmd::DisconnectSocket { nsp: self.0.nsp.name.clone(), close });
    }

    /// Runs `f` on the socket's shard: now when already there, by message otherwise.
    fn on_shard(&self, f: impl FnOnce(&shard::ShardCtx, &Socket) + Send + 'static) {
        let s = self.clone();
        shard::submit_to(&self.0.server, self.0.conn.shard, move || {
            if let Some(ctx) = shard::current(&s.0.server) {
                f(&ctx, &s)
            }
        });
    }

    pub(crate) fn handler(&self, event: &str) -> Option<EventHandler> {
        lock(&self.0.handlers).get(event).cloned()
    }

    pub(crate) fn ack_sender(&self, id: u64) -> AckSender {
        AckSender { socket: self.clone(), id }
    }

    /// Delivers an acknowledgement from the client. Unknown ids are ignored, as socket.io does.
    pub(crate) fn on_ack(&self, id: u64, args: Args) {
        if let Some(tx) = lock(&self.0.acks).remove(&id) {
            let _ = tx.send(args);
        } else {
            tracing::debug!(socket = %self.0.id, id, "acknowledgement with unknown id ignored");
        }
    }

    /// Marks the socket disconnected, fails its pending acks and runs its disconnect
    /// handlers. Only called on the owning shard, once, by the connection's session.
    pub(crate) fn on_closed(&self, ctx: &shard::ShardCtx, reason: DisconnectReason) {
        if !self.0.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        ctx.remove_socket(&self.0.nsp.name, self.sid());
        lock(&self.0.acks).clear();
        let handlers: Vec<_> = lock(&self.0.on_disconnect).drain(..).collect();
        lock(&self.0.handlers).clear();
        for h in handlers {
            h(self.clone(), reason);
        }
    }
}

/// A socket whose acknowledged emits are bounded in time. See [`Socket::timeout`].
pub struct TimeoutSocket<'a> {
    socket: &'a Socket,
    timeout: Duration,
}

impl TimeoutSocket<'_> {
    /// Emits `event` and waits at most the timeout for the acknowledgement.
    pub async fn emit_with_ack(&self, event: &str, args: impl IntoArgs) -> Result<Args, AckError> {
        let (id, rx) = self.socket.start_ack(event, args.into_args())?;
        match tokio::time::timeout(self.timeout, rx).await {
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

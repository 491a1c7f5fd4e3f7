//! Namespaces: their connection handlers, middlewares, ack id counter, room-event listeners
//! and dynamic (pattern-created) children; sockets, arguments and the per-connection
//! Socket.IO client live in the submodules, with each shard's sockets and rooms maps
//! (`local`), the server's namespace registry (`shared`) and connection state recovery
//! (`recovery`).
//!
//! Layer: above the transport (whose sessions it serves through `SessionUpper`) and the
//! shard runtime; below the broadcast engine.

pub mod args;
pub(crate) mod client;
pub(crate) mod cluster_recovery;
pub(crate) mod local;
pub(crate) mod recovery;
pub(crate) mod shared;
pub mod socket;
pub(crate) mod typed;
pub(crate) mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::ConnectError;
use crate::ns::args::{Args, IntoArgs};
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;

/// A room name. Any `&str` or `String` converts into one.
pub type Room = Arc<str>;

pub(crate) type ConnectHandler = Arc<dyn Fn(Socket) + Send + Sync>;
/// A namespace middleware: one that answers at once, or one that awaits (a database, a
/// token service) on the connection's shard, which serves its other connections meanwhile.
pub(crate) type SyncMiddleware = dyn Fn(&Socket) -> Result<(), ConnectError> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Middleware {
    Sync(Arc<SyncMiddleware>),
    Async(Arc<dyn Fn(Socket) -> MiddlewareFuture + Send + Sync>),
}

/// What an async middleware returns.
pub(crate) type MiddlewareFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ConnectError>>>>;

/// The outcome of a namespace's middlewares for a connecting socket.
pub(crate) enum Admission {
    /// All were synchronous: their verdict.
    Now(Result<(), ConnectError>),
    /// One awaits: the chain, in order, to run on the shard.
    Later(MiddlewareFuture),
}
pub(crate) type RoomHandler = Arc<dyn Fn(&RoomEvent) + Send + Sync>;
/// A room-event listener of the layers above: the namespace's name and the event.
pub(crate) type RoomWatcher = Arc<dyn Fn(&Arc<str>, &RoomChange) + Send + Sync>;
/// A listener for events other servers send this one (`server_side_emit`), with the event
/// name (`None`: every event).
pub(crate) type ServerSideHandler = (Option<String>, ServerSideFn);
pub(crate) type ServerSideFn = Arc<dyn Fn(&str, Args, Option<ServerSideAck>) + Send + Sync>;
type ReplyFn = Box<dyn FnOnce(Args) + Send>;

/// Replies to a server-side event whose sender awaits one reply per server (socket.io's
/// `serverSideEmit(event, ..., callback)`). Only the first reply of this server counts.
pub struct ServerSideAck(Arc<std::sync::Mutex<Option<ReplyFn>>>);

impl ServerSideAck {
    /// Wraps what sends the reply.
    pub(crate) fn new(send: impl FnOnce(Args) + Send + 'static) -> ServerSideAck {
        ServerSideAck(Arc::new(std::sync::Mutex::new(Some(Box::new(send)))))
    }

    /// Sends the reply (its first argument is what the sender receives from this server).
    /// Only the first call of this server's listeners is sent.
    pub fn send(&self, args: impl IntoArgs) {
        let send = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(send) = send {
            send(args.into_args());
        }
    }
}

impl Clone for ServerSideAck {
    fn clone(&self) -> Self {
        ServerSideAck(self.0.clone())
    }
}

impl std::fmt::Debug for ServerSideAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSideAck")
    }
}

/// A room event of a namespace, as socket.io's adapter emits them: the namespace (a dynamic
/// pattern's listener hears those of every namespace it created) and the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    /// The namespace whose rooms changed (`/`, `/chat`, a dynamic pattern's child).
    pub nsp: Arc<str>,
    /// What changed.
    pub change: RoomChange,
}

/// A change of a namespace's rooms, as socket.io's adapter events name them. Each fires once
/// per change across all shards: `CreateRoom` when a room gets its first member anywhere,
/// `DeleteRoom` when it loses its last. A socket's own room (its id) counts, as in socket.io.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// `create-room (room)`.
    CreateRoom(Room),
    /// `delete-room (room)`.
    DeleteRoom(Room),
    /// `join-room (room, id)`.
    JoinRoom(Room, String),
    /// `leave-room (room, id)`.
    LeaveRoom(Room, String),
}

/// The registered state of a namespace: read on each connect and room change, never per
/// message.
pub(crate) struct NamespaceInner {
    pub name: Arc<str>,
    on_connection: RwLock<Option<ConnectHandler>>,
    middlewares: RwLock<Vec<Middleware>>,
    room_handlers: RwLock<Vec<RoomHandler>>,
    room_watchers: RwLock<Vec<(&'static str, RoomWatcher)>>,
    server_side_handlers: RwLock<Vec<ServerSideHandler>>,
    has_room_handlers: AtomicBool,
    /// Some socket of this namespace has (or had) an outgoing catch-all listener: plain
    /// broadcasts then take the path that looks each recipient up.
    has_outgoing_listeners: AtomicBool,
    /// The server's watcher is on (`ServerShared::watch`): every socket's outgoing events
    /// are wanted, so broadcasts take the path that looks each recipient up.
    watching: Arc<AtomicBool>,
    /// socket.io uses one ack id counter per namespace, for socket and broadcast acks alike,
    /// so a broadcast's id never collides with a socket's pending one.
    ack_ids: AtomicU64,
    /// For a namespace created by a dynamic pattern: the pattern's namespace, whose handlers
    /// and middlewares it uses.
    parent: Option<Arc<NamespaceInner>>,
    /// For a dynamic pattern's namespace: the namespaces it created.
    children: RwLock<Vec<Arc<NamespaceInner>>>,
    /// This is a dynamic pattern's namespace: it has no sockets of its own, and broadcasts
    /// and operations on it apply to each namespace it created (socket.io's
    /// `ParentNamespace`).
    pattern: bool,
    /// One copy of each event name its sockets registered handlers for, shared by them
    /// (at most [`EVENT_NAMES`]; past that a socket keeps its own copy).
    event_names: Mutex<Vec<Arc<str>>>,
    /// Its connected sockets on every shard (kept for a dynamic pattern's children, for
    /// `cleanup_empty_child_namespaces`).
    pub(crate) sockets: std::sync::atomic::AtomicUsize,
    /// Taken out of the registry once empty (`cleanup_empty_child_namespaces`).
    pub(crate) removed: AtomicBool,
}

impl NamespaceInner {
    /// Drops every handler, middleware and watcher (and those of the namespaces a pattern
    /// created): called once the server stopped. A handler commonly holds its namespace or
    /// the server (`ns.to(room).emit(...)` inside `on_connection`), which hold the handler:
    /// without this, that cycle kept the whole server (its mesh alone is 1.5 MB with two
    /// shards) alive after `shutdown`, found by LeakSanitizer (scripts/asan).
    pub(crate) fn release_handlers(&self) {
        fn take<T>(l: &RwLock<T>) -> T
        where
            T: Default,
        {
            std::mem::take(&mut *l.write().unwrap_or_else(|p| p.into_inner()))
        }
        drop(take(&self.on_connection));
        drop(take(&self.middlewares));
        drop(take(&self.room_handlers));
        drop(take(&self.room_watchers));
        drop(take(&self.server_side_handlers));
        for child in take(&self.children) {
            child.release_handlers();
        }
    }
}

/// Event names a namespace shares between its sockets' handler lists: what a connection
/// handler registers; an application registering names by the thousand (one per socket,
/// say) gets its own copies past this, so the shared list stays small.
const EVENT_NAMES: usize = 256;

impl NamespaceInner {
    pub(crate) fn new(
        name: Arc<str>,
        parent: Option<Arc<NamespaceInner>>,
        watching: Arc<AtomicBool>,
    ) -> Self {
        Self::build(name, parent, false, watching)
    }

    /// A dynamic pattern's namespace.
    pub(crate) fn pattern(name: Arc<str>, watching: Arc<AtomicBool>) -> Self {
        Self::build(name, None, true, watching)
    }

    fn build(
        name: Arc<str>,
        parent: Option<Arc<NamespaceInner>>,
        pattern: bool,
        watching: Arc<AtomicBool>,
    ) -> Self {
        NamespaceInner {
            name,
            on_connection: RwLock::new(None),
            middlewares: RwLock::new(Vec::new()),
            room_handlers: RwLock::new(Vec::new()),
            room_watchers: RwLock::new(Vec::new()),
            server_side_handlers: RwLock::new(Vec::new()),
            has_room_handlers: AtomicBool::new(false),
            has_outgoing_listeners: AtomicBool::new(false),
            watching,
            ack_ids: AtomicU64::new(0),
            parent,
            children: RwLock::new(Vec::new()),
            pattern,
            event_names: Mutex::new(Vec::new()),
            sockets: std::sync::atomic::AtomicUsize::new(0),
            removed: AtomicBool::new(false),
        }
    }

    /// The shared copy of event name `name` (see `event_names`).
    pub(crate) fn event_name(&self, name: String) -> Arc<str> {
        let mut names = self.root().event_names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.iter().find(|n| ***n == *name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        if names.len() < EVENT_NAMES {
            names.push(n.clone());
        }
        n
    }

    /// The namespaces a broadcast or an operation on this one reaches: itself, or for a
    /// dynamic pattern, every namespace it has created so far.
    pub(crate) fn targets(self: &Arc<Self>) -> Vec<Arc<NamespaceInner>> {
        if self.pattern {
            read(&self.children).clone()
        } else {
            vec![self.clone()]
        }
    }

    fn root(&self) -> &NamespaceInner {
        self.parent.as_deref().unwrap_or(self)
    }

    pub(crate) fn connect_handler(&self) -> Option<ConnectHandler> {
        read(&self.root().on_connection).clone()
    }

    /// Runs the middlewares in order; the first refusal wins.
    pub(crate) fn run_middlewares(&self, socket: &Socket) -> Admission {
        let mws = read(&self.root().middlewares).clone();
        if mws.iter().all(|m| matches!(m, Middleware::Sync(_))) {
            return Admission::Now(mws.iter().try_for_each(|m| match m {
                Middleware::Sync(f) => f(socket),
                Middleware::Async(_) => Ok(()),
            }));
        }
        let socket = socket.clone();
        Admission::Later(Box::pin(async move {
            for m in mws {
                match m {
                    Middleware::Sync(f) => f(&socket)?,
                    Middleware::Async(f) => f(socket.clone()).await?,
                }
            }
            Ok(())
        }))
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// True when someone listens to room events (checked on every join/leave, so cheap).
    pub(crate) fn note_outgoing_listener(&self) {
        self.has_outgoing_listeners.store(true, Ordering::Release);
    }

    pub(crate) fn has_outgoing_listeners(&self) -> bool {
        self.has_outgoing_listeners.load(Ordering::Acquire) || self.watched()
    }

    /// The server's watcher is on (see `watching`).
    #[inline]
    pub(crate) fn watched(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    pub(crate) fn wants_room_events(&self) -> bool {
        self.root().has_room_handlers.load(Ordering::Acquire)
    }

    /// Adds a room-event listener for the layers above (a cluster adapter's room channels),
    /// told the name of the namespace each event is about (for a dynamic pattern's, each
    /// namespace it created). Returns false, adding nothing, when `key` was added to this
    /// namespace's root already (one listener per pattern, not per child).
    pub(crate) fn add_room_watcher(&self, key: &'static str, h: RoomWatcher) -> bool {
        let root = self.root();
        let mut watchers = root.room_watchers.write().unwrap_or_else(|p| p.into_inner());
        if watchers.iter().any(|(k, _)| *k == key) {
            return false;
        }
        watchers.push((key, h));
        root.has_room_handlers.store(true, Ordering::Release);
        true
    }

    pub(crate) fn fire_room_event(&self, change: RoomChange) {
        let watchers = read(&self.root().room_watchers).clone();
        for (_, w) in watchers {
            w(&self.name, &change);
        }
        let handlers = read(&self.root().room_handlers).clone();
        if handlers.is_empty() {
            return;
        }
        let ev = RoomEvent { nsp: self.name.clone(), change };
        for h in handlers {
            h(&ev);
        }
    }

    /// Runs the server-side listeners of `event` (and the catch-all ones) in the order they
    /// were added; `ack` when the sender awaits a reply. True when one listened.
    pub(crate) fn fire_server_side(
        &self,
        event: &str,
        args: Args,
        ack: Option<ServerSideAck>,
    ) -> bool {
        let handlers = read(&self.root().server_side_handlers).clone();
        let mut heard = false;
        for (_, h) in handlers.iter().filter(|(n, _)| n.as_deref().is_none_or(|n| n == event)) {
            heard = true;
            h(event, args.clone(), ack.clone());
        }
        heard
    }

    pub(crate) fn add_child(&self, child: Arc<NamespaceInner>) {
        self.children.write().unwrap_or_else(|p| p.into_inner()).push(child);
    }

    pub(crate) fn remove_child(&self, child: &Arc<NamespaceInner>) {
        self.children.write().unwrap_or_else(|p| p.into_inner()).retain(|c| !Arc::ptr_eq(c, child));
    }

    /// A namespace a dynamic pattern created (one `cleanup_empty_child_namespaces` may
    /// remove).
    pub(crate) fn is_child(&self) -> bool {
        self.parent.is_some()
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// A handle on one namespace, from [`crate::Server::of`] (or, for a dynamic pattern,
/// [`crate::Server::of_dynamic`]).
#[derive(Clone)]
pub struct Namespace {
    pub(crate) inner: Arc<NamespaceInner>,
    pub(crate) server: Arc<ServerShared>,
}

impl Namespace {
    /// The namespace name (`/`, `/chat`, ...; a dynamic pattern's is its description).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sets the handler run for each socket that connects, after the middlewares accepted it.
    /// Register the socket's event handlers there.
    pub fn on_connection<F>(&self, handler: F) -> &Self
    where
        F: Fn(Socket) + Send + Sync + 'static,
    {
        *self.inner.on_connection.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(handler));
        self
    }

    /// Adds a middleware, run in order for each connecting socket before the connection
    /// handler; returning an error refuses the connection with a CONNECT_ERROR carrying its
    /// message and data.
    pub fn use_middleware<F>(&self, mw: F) -> &Self
    where
        F: Fn(&Socket) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        let mw = Middleware::Sync(Arc::new(mw));
        self.inner.middlewares.write().unwrap_or_else(|p| p.into_inner()).push(mw);
        self
    }

    /// Adds a middleware that awaits before it answers (socket.io's `async (socket, next)`
    /// middlewares: a token looked up in a database, a call to an auth service), run in
    /// order with the others. The future runs on the connection's shard, which serves its
    /// other connections meanwhile; it need not be `Send`. Its error refuses the connection
    /// with a CONNECT_ERROR carrying the message and data; a connection that closes while
    /// it waits is forgotten, and its answer dropped.
    ///
    /// ```no_run
    /// # let io = shardcast::Server::new(shardcast::Config::default());
    /// io.of("/").use_async_middleware(|socket| async move {
    ///     let token = socket.handshake().auth["token"].as_str().unwrap_or("").to_owned();
    ///     // e.g. a query to PostgreSQL or Redis
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ///     if token == "secret" {
    ///         Ok(())
    ///     } else {
    ///         Err(shardcast::ConnectError::new("unauthorized"))
    ///     }
    /// });
    /// ```
    pub fn use_async_middleware<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), ConnectError>> + 'static,
    {
        let mw = Middleware::Async(Arc::new(move |s| Box::pin(mw(s)) as MiddlewareFuture));
        self.inner.middlewares.write().unwrap_or_else(|p| p.into_inner()).push(mw);
        self
    }

    /// Listens to the adapter's room events (`create-room`, `delete-room`, `join-room`,
    /// `leave-room`). Each fires once per change across all shards, in order, on shard 0.
    pub fn on_room_event<F>(&self, handler: F) -> &Self
    where
        F: Fn(&RoomEvent) + Send + Sync + 'static,
    {
        self.inner.room_handlers.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(handler));
        self.inner.has_room_handlers.store(true, Ordering::Release);
        self
    }

    /// Listens to the events other servers of the cluster send with `server_side_emit` under
    /// this name (socket.io's `io.on(event, (...args) => ...)` for server-side events):
    /// `handler(args, ack)`, `ack` present when the sender awaits a reply. Run on shard 0.
    pub fn on_server_side<F>(&self, event: impl Into<String>, handler: F) -> &Self
    where
        F: Fn(Args, Option<ServerSideAck>) + Send + Sync + 'static,
    {
        let h: ServerSideFn = Arc::new(move |_event: &str, args, ack| handler(args, ack));
        self.inner
            .server_side_handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((Some(event.into()), h));
        self
    }

    /// Listens to every server-side event: `handler(event, args, ack)`.
    pub fn on_server_side_any<F>(&self, handler: F) -> &Self
    where
        F: Fn(&str, Args, Option<ServerSideAck>) + Send + Sync + 'static,
    {
        self.inner
            .server_side_handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((None, Arc::new(handler)));
        self
    }

    /// The namespaces a dynamic pattern has created so far (empty for a plain namespace).
    pub fn children(&self) -> Vec<Namespace> {
        read(&self.inner.children)
            .iter()
            .map(|c| Namespace { inner: c.clone(), server: self.server.clone() })
            .collect()
    }
}

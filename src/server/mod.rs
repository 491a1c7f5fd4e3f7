//! The `Server` handle users hold, and starting it: the listener, the acceptor thread and the
//! shard threads.
//!
//! Layer: the top of the engine: it composes every layer below (what each shard is given
//! at start, the adapter) behind the `Server` handle.

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::adapter::{self, InProcess, RequestError, ServerSideAckError};
use crate::config::Config;
use crate::error::EmitError;
use crate::mesh::Mesh;
use crate::ns::args::Args;
use crate::ns::args::IntoArgs;
use crate::ns::client::Client;
use crate::ns::local::NsLocal;
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::Namespace;
use crate::ns::Room;
use crate::operator::{BroadcastOperator, FetchedSocket, IntoRooms};
use crate::shard::{self, ShardCtx, ShardMesh, ShardMsg, ShardSetup};
use crate::transport;
use crate::transport::link;
use crate::transport::local::{ConnGuard, TransportLocal};
use crate::transport::session::UpperFactory;

/// A Socket.IO server: register namespaces and handlers, then [`Server::listen`].
///
/// ```no_run
/// use shardcast::{Config, Server};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = Server::new(Config::builder().build().expect("valid config"));
/// io.on_connection(|socket| {
///     socket.on("message", |socket, args, _ack| {
///         let _ = socket.emit("message-back", args);
///     });
/// });
/// let running = io.listen("127.0.0.1:3000".parse().unwrap())?;
/// println!("listening on {}", running.local_addr());
/// running.wait();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server(pub(crate) Arc<ServerShared>);

/// The Engine.IO layer of a [`Server`] ([`Server::engine`]), as socket.io's `io.engine`.
/// Each hook can be set before `listen` or while the server runs; setting one again
/// replaces it. Hooks run on the shard serving the request.
pub struct Engine<'a>(&'a crate::transport::hooks::Hooks);

impl Engine<'_> {
    /// Accepts or refuses each handshake from its request (engine.io's `allowRequest`):
    /// origin, headers, address, query. `Err(message)` answers HTTP 403
    /// `{"code":4,"message":message}` (`"Forbidden"` when empty) and the client gets a
    /// `connect_error`. The future may await (a database, Redis): the shard serves its
    /// other connections meanwhile.
    ///
    /// ```no_run
    /// # let io = shardcast::Server::new(shardcast::Config::default());
    /// io.engine().allow_request(|req| async move {
    ///     match req.headers.get("origin") {
    ///         Some("https://example.com") => Ok(()),
    ///         _ => Err("origin not allowed".to_owned()),
    ///     }
    /// });
    /// ```
    pub fn allow_request<F, Fut>(&self, f: F)
    where
        F: Fn(Arc<crate::transport::request::HandshakeInfo>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + 'static,
    {
        self.0.set_allow_request(f);
    }

    /// Edits the headers of each handshake's response (engine.io's `initial_headers`
    /// event): the polling handshake's, or the WebSocket's `101`. Runs before `on_headers`.
    pub fn on_initial_headers(
        &self,
        f: impl Fn(&mut hyper::HeaderMap, &crate::transport::request::HandshakeInfo)
            + Send
            + Sync
            + 'static,
    ) {
        self.0.set_initial_headers(f);
    }

    /// Edits the headers of every Engine.IO response: each polling GET and POST, the
    /// handshake and the WebSocket `101` (engine.io's `headers` event).
    pub fn on_headers(
        &self,
        f: impl Fn(&mut hyper::HeaderMap, &crate::transport::request::HandshakeInfo)
            + Send
            + Sync
            + 'static,
    ) {
        self.0.set_headers(f);
    }

    /// Called for each request the engine refuses (engine.io's `connection_error` event),
    /// with the code, message, context and request.
    pub fn on_connection_error(
        &self,
        f: impl Fn(&crate::transport::hooks::ConnectionError) + Send + Sync + 'static,
    ) {
        self.0.set_connection_error(f);
    }
}

impl Server {
    /// A server with this configuration and no namespaces yet.
    pub fn new(config: Config) -> Server {
        match config.redis.clone() {
            Some(url) => {
                let proto = if config.redis_sharded {
                    adapter::redis::Proto::Sharded(config.redis_subscription_mode)
                } else if config.redis_streams {
                    adapter::redis::Proto::Streams
                } else {
                    adapter::redis::Proto::Classic
                };
                let pending = adapter::redis::new(
                    &url,
                    &config.redis_key,
                    proto,
                    config.requests_timeout,
                    config.redis_max_queued,
                    config.redis_stream_max_len,
                    config.connection_state_recovery.is_some(),
                );
                let shared = ServerShared::new(config);
                if let (Some(rec), true) = (shared.recovery(), pending.adapter.keeps_packets()) {
                    rec.set_cluster(pending.adapter.clone());
                }
                adapter::install(&shared, pending.adapter.clone(), Some(pending.starter()));
                Server(Arc::new(shared))
            }
            None => Server::with_adapter(config, Arc::new(InProcess)),
        }
    }

    /// A server whose cross-process operations go through `adapter`.
    pub(crate) fn with_adapter(config: Config, adapter: Arc<dyn adapter::Adapter>) -> Server {
        let shared = ServerShared::new(config);
        adapter::install(&shared, adapter, None);
        Server(Arc::new(shared))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.0.config()
    }

    /// The names of the namespaces that exist, sorted (a dynamic pattern's children
    /// included, the patterns not).
    pub fn namespaces(&self) -> Vec<String> {
        self.0.namespace_names().iter().map(|n| n.to_string()).collect()
    }

    /// The Engine.IO layer's hooks (socket.io's `io.engine`): `allow_request`, and the
    /// `initial_headers`, `headers` and `connection_error` events.
    pub fn engine(&self) -> Engine<'_> {
        Engine(&self.0.transport.hooks)
    }

    /// The namespace `name` (`/`, `/chat`, ...), created on first use. Clients can only join
    /// namespaces that exist; others get CONNECT_ERROR "Invalid namespace".
    pub fn of(&self, name: &str) -> Namespace {
        Namespace { inner: self.0.of(name), server: self.0.clone() }
    }

    /// Sets the connection handler of the main namespace `/`.
    pub fn on_connection<F>(&self, handler: F)
    where
        F: Fn(Socket) + Send + Sync + 'static,
    {
        self.of("/").on_connection(handler);
    }

    /// A namespace pattern: the first client to connect to a name that `accept(name, auth)`
    /// accepts creates that namespace, which then uses the handlers and middlewares
    /// registered on the returned namespace (socket.io's `io.of(regex or function)`).
    /// Patterns are tried in the order they were added, after the registered names.
    pub fn of_dynamic<F>(&self, accept: F) -> Namespace
    where
        F: Fn(&str, &Value) -> bool + Send + Sync + 'static,
    {
        Namespace { inner: self.0.add_pattern(Arc::new(accept)), server: self.0.clone() }
    }

    /// A namespace pattern given as a regular expression on the name (e.g.
    /// `^/room-\d+$`). See [`Server::of_dynamic`].
    pub fn of_regex(&self, pattern: regex::Regex) -> Namespace {
        self.of_dynamic(move |name, _auth| pattern.is_match(name))
    }

    fn root(&self) -> Namespace {
        Namespace { inner: self.0.root().clone(), server: self.0.clone() }
    }

    /// A broadcast to the sockets of `/` in `rooms` (a socket id names one socket).
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.root().to(rooms)
    }

    /// Same as [`Server::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.root().to(rooms)
    }

    /// A broadcast to the sockets of `/` except those in `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.root().except(rooms)
    }

    /// A broadcast to the sockets of `/` on this server process only.
    pub fn local(&self) -> BroadcastOperator {
        self.root().local()
    }

    /// A broadcast to `/` that may be dropped for recipients not ready to receive it.
    pub fn volatile(&self) -> BroadcastOperator {
        self.root().volatile()
    }

    /// A broadcast to `/` with per-message compression allowed or not.
    pub fn compress(&self, compress: bool) -> BroadcastOperator {
        self.root().compress(compress)
    }

    /// A broadcast to `/` whose acknowledgements are awaited at most `timeout`.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.root().timeout(timeout)
    }

    /// Emits to every socket of `/`.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.root().emit(event, args)
    }

    /// Every room of `/` on every server, socket ids included, sorted.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, RequestError> {
        self.root().all_rooms().await
    }

    /// The number of servers of the cluster (those that have `/`), this one included.
    pub async fn server_count(&self) -> Result<usize, RequestError> {
        self.root().server_count().await
    }

    /// Emits `event` to the other servers of the cluster (socket.io's `io.serverSideEmit`);
    /// none without a cluster adapter.
    pub fn server_side_emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.root().server_side_emit(event, args)
    }

    /// [`Server::server_side_emit`] awaiting one reply per other server for at most
    /// `timeout`: the replies (none without a cluster adapter).
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: impl IntoArgs,
        timeout: Duration,
    ) -> Result<Vec<Args>, ServerSideAckError> {
        self.root().server_side_emit_with_ack(event, args, timeout).await
    }

    /// Every socket of `/`, from every shard and every server of the cluster.
    pub async fn fetch_sockets(&self) -> Result<Vec<FetchedSocket>, RequestError> {
        self.root().fetch_sockets().await
    }

    /// Makes every socket of `/` join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoRooms) {
        self.root().sockets_join(rooms)
    }

    /// Makes every socket of `/` leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoRooms) {
        self.root().sockets_leave(rooms)
    }

    /// Disconnects every socket of `/` (with `close`, their connections).
    pub fn disconnect_sockets(&self, close: bool) {
        self.root().disconnect_sockets(close)
    }

    /// Connection state recovery's counters (all zero when it is off): sessions kept,
    /// clients recovered, and those that asked and got a new session instead.
    pub fn recovery_stats(&self) -> crate::ns::recovery::RecoveryStats {
        self.0.recovery().map(|r| r.stats()).unwrap_or_default()
    }

    /// Volatile packets dropped so far because their recipient was not ready.
    pub fn volatile_dropped(&self) -> u64 {
        self.0.transport.volatile_dropped.load(Ordering::Relaxed)
    }

    /// Binds `addr` and starts the shard threads. Returns once the server accepts connections.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<RunningServer> {
        self.listen_on(bind(addr)?)
    }

    /// Starts serving on an already bound listener.
    pub fn listen_on(&self, listener: StdListener) -> io::Result<RunningServer> {
        self.run(Some(listener))
    }

    /// Starts the shards (and the cluster adapter, the metrics listener) with no listener
    /// of their own: the server is reached through [`Server::service`], mounted on another
    /// server's port. `local_addr()` of the result is `0.0.0.0:0`.
    pub fn start(&self) -> io::Result<RunningServer> {
        self.run(None)
    }

    /// The engine as a `tower` service for requests another server accepted (hyper, axum):
    /// mount it on the path (`/socket.io/`) and the REST API and the real-time endpoint
    /// share one port. Each request is served on a shard, as the server's own acceptor's
    /// are, and a WebSocket leaves the other server's runtime for its shard once upgraded
    /// (which needs the connection to be a plain `TcpStream` in hyper-util's `TokioIo`, as
    /// `axum::serve` gives). Put the client's address in the request's extensions as
    /// [`RemoteAddr`] for the handshake to see it. Answers 503 until [`Server::start`] (or
    /// `listen`) ran. See examples/axum.rs.
    pub fn service(&self) -> EngineService {
        EngineService { server: self.0.clone(), turn: Arc::new(AtomicUsize::new(0)) }
    }

    fn run(&self, listener: Option<StdListener>) -> io::Result<RunningServer> {
        let n = self.0.config().shards;
        let mesh = Arc::new(Mesh::new(n));
        if !self.0.set_mesh(mesh.clone()) {
            return Err(io::Error::other("this server is already listening"));
        }
        let local_addr = match &listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                l.local_addr()?
            }
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        if let Some(files) = &self.0.config().tls {
            let tls = crate::transport::tls::Tls::load(files)?;
            let _ = self.0.transport.tls.set(Arc::new(tls));
        }
        let mut threads = Vec::with_capacity(n + 1);
        let mut adapter_running = None;
        let mut metrics_running = None;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        // Every thread builds its runtime before anything is accepted: a runtime needs
        // descriptors, which a flood of connections must not take first.
        let started = (|| -> io::Result<Option<JoinHandle<()>>> {
            for id in 0..n {
                let setup: Arc<dyn ShardSetup> = Arc::new(EngineSetup(self.0.clone()));
                let (mesh, ready) = (mesh.clone(), ready_tx.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("shard-{id}"))
                        .stack_size(shard_stack_size(self.0.config().max_json_depth))
                        .spawn(move || shard::run(id, mesh, setup, ready))?,
                );
            }
            for _ in 0..n {
                ready_rx.recv().map_err(|_| io::Error::other("a shard thread died"))??;
            }
            // The cluster adapter is connected and subscribed before anything is accepted.
            adapter_running = adapter::start(&self.0)?;
            if let Some(addr) = self.0.config().metrics {
                metrics_running = Some(crate::metrics::start(&self.0, addr)?);
            }
            let Some(listener) = listener else { return Ok(None) };
            let (server, stop2) = (self.0.clone(), stop.clone());
            let acceptor = std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || accept_loop(listener, server, stop2, ready_tx))?;
            ready_rx.recv().map_err(|_| io::Error::other("the acceptor thread died"))??;
            Ok(Some(acceptor))
        })();
        let mut running = RunningServer {
            server: self.0.clone(),
            local_addr,
            mesh,
            threads,
            acceptor: None,
            stop,
            adapter: adapter_running,
            metrics: metrics_running,
        };
        match started {
            Ok(acceptor) => {
                running.acceptor = acceptor;
                Ok(running)
            }
            // Dropping `running` stops the shards that did start.
            Err(e) => Err(e),
        }
    }
}

/// The client's address of a request handed to [`Server::service`], put in its extensions by
/// the server that accepted it (axum: from its `ConnectInfo`). Without it the handshake
/// sees `0.0.0.0:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// [`Server::service`]: the engine as a `tower` service.
#[derive(Clone)]
pub struct EngineService {
    server: Arc<ServerShared>,
    turn: Arc<AtomicUsize>,
}

impl<B> tower_service::Service<hyper::Request<B>> for EngineService
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    type Response = hyper::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        let mesh = self.server.mesh().cloned();
        let shared = self.server.transport.clone();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let addr = req
            .extensions()
            .get::<RemoteAddr>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |a| a.0);
        Box::pin(async move {
            Ok(match mesh {
                Some(mesh) => transport::http::serve_request(mesh, shared, req, addr, turn).await,
                None => {
                    let mut r = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"Service Unavailable"),
                    ));
                    *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            })
        })
    }
}

/// The per-shard state of every layer, for one shard of `server`.
pub(crate) fn shard_locals(server: &Arc<ServerShared>) -> Vec<Box<dyn Any>> {
    let s = server.clone();
    let upper: UpperFactory =
        Arc::new(move |conn, info| Box::new(Client::new(s.clone(), conn, info)));
    vec![
        Box::new(TransportLocal::new(server.transport.clone(), upper)),
        Box::new(NsLocal::default()),
    ]
}

/// What the server puts on each of its shards: the transport's per-shard state, whose
/// sessions get a Socket.IO client each, and the flusher.
struct EngineSetup(Arc<ServerShared>);

impl ShardSetup for EngineSetup {
    fn locals(&self, _id: usize, _mesh: &Arc<ShardMesh>) -> Vec<Box<dyn Any>> {
        shard_locals(&self.0)
    }

    fn start(&self, ctx: &Rc<ShardCtx>) {
        tokio::task::spawn_local(link::flusher(ctx.clone()));
        tokio::task::spawn_local(link::trimmer());
        if self.0.recovery().is_some() {
            tokio::task::spawn_local(crate::ns::recovery::sweeper(ctx.clone()));
        }
    }

    fn stop(&self, ctx: Rc<ShardCtx>) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(transport::local::shutdown(ctx))
    }
}

/// A started server. Dropping it shuts the server down.
pub struct RunningServer {
    server: Arc<ServerShared>,
    local_addr: SocketAddr,
    mesh: Arc<ShardMesh>,
    threads: Vec<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The cluster adapter's thread, when there is one.
    adapter: Option<adapter::Started>,
    /// The metrics listener, when `Config::metrics` asks for one.
    metrics: Option<crate::metrics::Running>,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics listener's bound address, when `Config::metrics` set one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(crate::metrics::Running::addr)
    }

    /// Reads `Config::tls`'s certificate and key again: connections from now on get the
    /// new pair, established ones keep theirs. On an error (a file missing or unreadable, a
    /// key that does not go with the certificate) the pair in use stays. Without TLS: an
    /// error.
    pub fn reload_tls(&self) -> io::Result<()> {
        match self.server.transport.tls.get() {
            Some(tls) => tls.reload(),
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, "the server has no TLS")),
        }
    }

    /// Blocks the calling thread until the server stops.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Stops accepting, closes every connection (reason `server shutting down`) and joins
    /// the threads.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        if !self.threads.is_empty() {
            self.drain();
        }
        for to in 0..self.mesh.len() {
            self.mesh.inject(to, ShardMsg::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(a) = self.adapter.take() {
            a.stop();
        }
        // Nothing runs the server's code any more: what would keep it alive in a cycle goes.
        self.mesh.clear();
        self.server.release_handlers();
    }
}

impl RunningServer {
    /// The graceful part of a shutdown, once nothing more is accepted. First a barrier:
    /// each shard sends every shard (itself included) a marker behind whatever it sent
    /// there before, so once a shard has every marker, each broadcast issued anywhere
    /// before the shutdown is queued on its links. Then each shard closes its sessions,
    /// which write what is queued before closing. Waits for every shard, at most
    /// `shutdown_timeout`.
    fn drain(&self) {
        let timeout = self.server.config().shutdown_timeout;
        if timeout.is_zero() {
            return;
        }
        let deadline = std::time::Instant::now() + timeout;
        let n = self.mesh.len();
        let markers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..n).map(|_| AtomicUsize::new(n)).collect());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        for i in 0..n {
            let (markers, tx) = (markers.clone(), tx.clone());
            let send_markers: shard::Task = Box::new(move |ctx| {
                for j in 0..n {
                    let (markers, tx) = (markers.clone(), tx.clone());
                    let marker: shard::Task = Box::new(move |ctx| {
                        if markers[ctx.id].fetch_sub(1, Ordering::AcqRel) == 1 {
                            let ctx = ctx.clone();
                            let at = tokio::time::Instant::from_std(deadline);
                            tokio::task::spawn_local(async move {
                                transport::local::drain(ctx, at).await;
                                let _ = tx.send(());
                            });
                        }
                    });
                    if j == ctx.id {
                        marker(ctx);
                    } else {
                        ctx.send_to(j, ShardMsg::Run(marker));
                    }
                }
            });
            self.mesh.inject(i, ShardMsg::Run(send_markers));
        }
        drop(tx);
        for _ in 0..n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // A little past the deadline: a shard's last sessions close at it.
            if rx.recv_timeout(left + Duration::from_millis(200)).is_err() {
                tracing::warn!("shutdown: the drain did not finish within shutdown_timeout");
                break;
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A shard thread's stack: room for values `max_json_depth` deep. The JSON parser does not
/// recurse, but what handlers do with a value does (drop, clone, compare, serialize, serde's
/// `Deserialize`): measured at ~1.6 KiB per level in a debug build and ~0.4 KiB in release,
/// so 4 KiB per level over an 8 MiB base. Only the pages a deep value touches are committed.
fn shard_stack_size(max_json_depth: usize) -> usize {
    8 * 1024 * 1024 + max_json_depth.saturating_mul(4 * 1024)
}

/// Accepts connections and deals them round-robin to the shards. On running out of file
/// descriptors (or memory) it backs off instead of spinning: the pending connection stays
/// in the kernel's backlog until a descriptor is free.
fn accept_loop(
    listener: StdListener,
    server: Arc<ServerShared>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let Some(mesh) = server.mesh().cloned() else { return };
        let mut next = 0usize;
        let mut last_warning: Option<std::time::Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
            let (stream, addr) = match accepted {
                Err(_) => continue,
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    if is_resource_exhaustion(&e) {
                        // At most one line a second: the condition can last.
                        if last_warning.is_none_or(|t: std::time::Instant| t.elapsed().as_secs() >= 1) {
                            tracing::warn!(error = %e, "accept failed: out of resources; backing off");
                            last_warning = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } else {
                        tracing::debug!(error = %e, "accept failed");
                    }
                    continue;
                }
            };
            let Some(guard) = ConnGuard::acquire(&server.transport) else {
                tracing::warn!(%addr, "max_connections reached; closing new connection");
                drop(stream);
                continue;
            };
            if server.config().tcp_nodelay {
                let _ = stream.set_nodelay(true);
            }
            let std = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot detach accepted socket");
                    continue;
                }
            };
            let tls = server.transport.tls.get().cloned();
            let serve = move |ctx: &Rc<ShardCtx>| match tls {
                Some(tls) => {
                    let relay = crate::transport::tls::serve(ctx.clone(), tls, std, addr, guard);
                    tokio::task::spawn_local(relay);
                }
                None => {
                    let http = crate::transport::http::serve(ctx.clone(), std, addr, guard, false);
                    tokio::task::spawn_local(http);
                }
            };
            mesh.inject(next, ShardMsg::Run(Box::new(serve)));
            next = (next + 1) % mesh.len();
        }
    });
}

/// Binds with a deep accept backlog: std's default of 128 overflows when thousands of
/// clients connect at once, and the kernel then drops SYNs, which clients retry only after a
/// second. `SO_REUSEADDR` lets a restarted server bind its port again at once.
fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The accept backlog asked for (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_emfile) if [23, 24, 105, 12].contains(&libc_emfile))
}

#[cfg(test)]
mod adapter_seam_tests;
#[cfg(test)]
mod shutdown_tests;

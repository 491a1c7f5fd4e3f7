//! The adapter seam: every operation that may reach beyond this process goes through an
//! [`Adapter`], as in socket.io (`socket.io-adapter`'s `Adapter` / `ClusterAdapter`): a
//! broadcast (with its rooms, exceptions and flags), a broadcast awaiting acks (how many
//! reports to expect, then the replies), fetching, joining, leaving and disconnecting a
//! selection of sockets, server-side emits (with and without ack), all rooms, and the
//! number of servers.
//!
//! [`InProcess`], the default, is this process alone: every shard, reached through the
//! broadcast engine. A cluster adapter (Redis, in a later issue) implements the same trait:
//! it runs the local part through the engine too and carries the rest to other servers,
//! without the namespace, transport or operator code changing.
//!
//! Layer: above the broadcast engine, below the operators users call.

pub mod cluster_wire;
#[cfg(test)]
mod cluster_wire_tests;
pub(crate) mod redis;
pub mod request;
#[cfg(test)]
mod request_tests;
pub mod streams_wire;
#[cfg(test)]
mod streams_wire_tests;
pub mod wire;
#[cfg(test)]
mod wire_tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::broadcast::{self, BroadcastMsg, Selection};
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::Room;

/// A boxed future, as the adapter's asynchronous operations return.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Which namespaces and sockets an operation applies to, and whether it stays on this server.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The namespaces reached (several for a dynamic pattern's namespace).
    pub names: Vec<Arc<str>>,
    pub sel: Selection,
    /// `local`: this server only, whatever the adapter. (This process is all the in-process
    /// adapter reaches anyway; a cluster adapter reads it.)
    pub local: bool,
}

/// Why a request to the other servers of the cluster failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Some servers did not answer within the adapter's `requests_timeout`.
    #[error("timeout reached while waiting for {what} response ({answered} of {expected} servers answered)")]
    Timeout {
        /// The operation (`fetchSockets`, `allRooms`), as socket.io names it.
        what: &'static str,
        /// How many other servers were asked.
        expected: usize,
        /// How many answered.
        answered: usize,
    },
    /// The broker cannot be reached: the request was not sent.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// The sockets a fetch found: this server's as full handles, the others' as the cluster
/// protocol describes them.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub local: Vec<Socket>,
    pub remote: Vec<request::WireSocket>,
}

/// What a broadcast with acks was handed to: how many shards here report a delivery, and
/// whether other servers were asked too (their number then arrives as
/// [`crate::ns::socket::AckEvent::Servers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckPlan {
    pub shards: usize,
    pub remote: bool,
}

/// Why a server-side emit with acknowledgement did not get every reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServerSideAckError {
    /// The emit itself was refused (a reserved event name).
    #[error(transparent)]
    Emit(#[from] crate::error::EmitError),
    /// Some servers did not answer within the timeout: the replies that did arrive.
    #[error("timeout reached: only {} responses received out of {expected}", responses.len())]
    Timeout {
        /// The replies received.
        responses: Vec<Args>,
        /// How many servers were asked.
        expected: usize,
        /// How many did not answer.
        missing: usize,
    },
    /// The broker cannot be reached: the event was not sent.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// A cluster adapter's counters at one moment (the metrics' `shardcast_adapter_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AdapterCounters {
    /// Connected to the broker (subscribed and able to publish).
    pub connected: bool,
    /// Messages published.
    pub published: u64,
    /// Messages not published: the queue was full or the broker was away.
    pub dropped: u64,
    /// Messages received from other servers and handled.
    pub received: u64,
    /// Messages received and ignored as malformed.
    pub malformed: u64,
    /// Publishing round trips to the broker, their total time (ns), the last one's (ns).
    pub round_trips: u64,
    pub round_trip_ns: u64,
    pub last_round_trip_ns: u64,
    /// Requests to other servers awaiting answers or their timeout.
    pub requests_pending: u64,
}

/// The operations that may cross the process boundary. Implementations are called from any
/// thread; what they run on shards goes there by message. Each method's default is what it
/// does for this process alone (every shard): an adapter overrides what it carries further.
pub(crate) trait Adapter: Send + Sync + 'static {
    /// A cluster adapter's counters, for the metrics; `None` for this process alone.
    fn counters(&self) -> Option<AdapterCounters> {
        None
    }

    /// Delivers the encoded broadcast to the selected sockets of every shard here and, unless
    /// `local`, of every other server.
    fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, _local: bool) {
        broadcast::dispatch(server, msg);
    }

    /// The same for a broadcast awaiting acks (`msg.ack` is set): how many
    /// [`crate::ns::socket::AckEvent::Delivered`] reports to expect on the ack channel (one
    /// per shard here), and whether other servers report too.
    fn broadcast_with_ack(
        &self,
        server: &ServerShared,
        msg: Arc<BroadcastMsg>,
        _local: bool,
    ) -> AckPlan {
        AckPlan { shards: broadcast::dispatch(server, msg), remote: false }
    }

    /// The selected sockets.
    fn fetch_sockets(
        &self,
        server: &Arc<ServerShared>,
        target: Target,
    ) -> BoxFuture<Result<Fetched, RequestError>> {
        let server = server.clone();
        Box::pin(async move {
            let local = broadcast::fetch_sockets(&server, target.names, target.sel).await;
            Ok(Fetched { local, remote: Vec::new() })
        })
    }

    /// Makes the selected sockets join `rooms`.
    fn sockets_join(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        broadcast::for_each_selected(server, target.names, target.sel, move |ctx, s| {
            for r in &rooms {
                ctx.join(&s.0.nsp.name, s.sid(), r.clone());
            }
        });
    }

    /// Makes the selected sockets leave `rooms`.
    fn sockets_leave(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        broadcast::for_each_selected(server, target.names, target.sel, move |ctx, s| {
            for r in &rooms {
                ctx.leave(&s.0.nsp.name, s.sid(), r);
            }
        });
    }

    /// Disconnects the selected sockets (with `close`, their connections).
    fn disconnect_sockets(&self, server: &ServerShared, target: Target, close: bool) {
        broadcast::for_each_selected(server, target.names, target.sel, move |_ctx, s| {
            s.disconnect(close)
        });
    }

    /// Emits `event` to the other servers of the cluster (not to this one, as in socket.io).
    fn server_side_emit(&self, _server: &ServerShared, _nsp: &str, _event: &str, _args: Args) {
        // No other server to tell.
    }

    /// The same, awaiting one reply per other server for at most `timeout`.
    fn server_side_emit_with_ack(
        &self,
        _server: &ServerShared,
        _nsp: &str,
        _event: &str,
        _args: Args,
        _timeout: Duration,
    ) -> BoxFuture<Result<Vec<Args>, ServerSideAckError>> {
        // Every other server answered: there is none.
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Every room of the namespaces `names` (socket ids included), sorted, each once.
    fn all_rooms(
        &self,
        server: &Arc<ServerShared>,
        names: Vec<Arc<str>>,
    ) -> BoxFuture<Result<Vec<Room>, RequestError>> {
        let server = server.clone();
        Box::pin(async move { Ok(broadcast::all_rooms(&server, names).await) })
    }

    /// The number of servers of the cluster that serve namespace `nsp`, this one included.
    fn server_count(&self, _nsp: &str) -> BoxFuture<Result<usize, RequestError>> {
        Box::pin(async { Ok(1) })
    }
}

/// The default adapter: this process, all its shards, nothing else (every default method).
#[derive(Debug, Default)]
pub(crate) struct InProcess;

impl Adapter for InProcess {}

/// A cluster adapter's running side (its task on shard 0), stopped with the server.
pub(crate) struct Started {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Closed when the task ends (or is dropped with its shard).
    done: std::sync::mpsc::Receiver<()>,
}

impl Started {
    /// Stops the adapter's task and waits for it (at once when its shard has stopped).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.recv();
    }
}

/// Runs a cluster adapter's Redis side on shard 0 of `server`, which must be listening:
/// `run(ready, stop)` says once on `ready` whether it is up (subscribed), and ends when
/// `stop` fires. Returns once it said so.
///
/// On shard 0 rather than on a thread of its own: what arrives from Redis is delivered to
/// shard 0's sockets in the same loop turn, and what shard 0 publishes reaches the Redis
/// connection without waking another thread. Measured side by side (docs/cluster.md,
/// 2 servers `--shards 1` at 10,000 broadcasts/s), the thread of its own cost 7-14% more CPU
/// per cross-server broadcast (publishing 49.6 against 46-47 µs, receiving 26.6 against
/// 23 µs). Other shards reach it over the adapter's queue, as before.
pub(crate) fn run_on_shard<F, Fut>(server: &Arc<ServerShared>, run: F) -> std::io::Result<Started>
where
    F: FnOnce(
            std::sync::mpsc::Sender<Result<(), String>>,
            tokio::sync::oneshot::Receiver<()>,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let Some(mesh) = server.mesh() else {
        return Err(std::io::Error::other("the server is not listening"));
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    crate::shard::submit_to(mesh, 0, move || {
        tokio::task::spawn_local(async move {
            let _done = done_tx;
            run(ready_tx, stop_rx).await;
        });
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Started { stop: stop_tx, done: done_rx }),
        Ok(Err(e)) => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, e)),
        Err(_) => Err(std::io::Error::other("the cluster adapter stopped before it was up")),
    }
}

/// Starts a cluster adapter's connections once the server's shared state exists; returns
/// when it is ready (subscribed).
pub(crate) type Starter = Box<dyn FnOnce(Arc<ServerShared>) -> std::io::Result<Started> + Send>;

/// What the adapter layer keeps in the server's shared state.
struct Slot {
    adapter: Arc<dyn Adapter>,
    starter: std::sync::Mutex<Option<Starter>>,
}

/// Installs `adapter` as `server`'s (before it serves; the first one installed stays), with
/// what starts it when the server listens.
pub(crate) fn install(server: &ServerShared, adapter: Arc<dyn Adapter>, starter: Option<Starter>) {
    server.set_upper(Box::new(Slot { adapter, starter: std::sync::Mutex::new(starter) }));
}

/// Starts the installed adapter's connections, if it has any (once).
pub(crate) fn start(server: &Arc<ServerShared>) -> std::io::Result<Option<Started>> {
    let Some(slot) = server.upper().and_then(|u| u.downcast_ref::<Slot>()) else { return Ok(None) };
    let starter = slot.starter.lock().unwrap_or_else(|p| p.into_inner()).take();
    starter.map(|s| s(server.clone())).transpose()
}

/// The adapter of `server`: the one installed, else this process alone.
pub(crate) fn of(server: &ServerShared) -> &dyn Adapter {
    static IN_PROCESS: InProcess = InProcess;
    match server.upper().and_then(|u| u.downcast_ref::<Slot>()) {
        Some(slot) => &*slot.adapter,
        None => &IN_PROCESS,
    }
}

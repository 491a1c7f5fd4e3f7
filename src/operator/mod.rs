//! The operators users call: `io.to(room).except(other).volatile().emit(..)`, broadcasts
//! awaiting acks, and the server-side operations of a selection (`fetch_sockets`,
//! `sockets_join`, `sockets_leave`, `disconnect_sockets`), plus the same entry points on
//! [`Socket`] (`socket.to(room)`, `socket.broadcast()`) and [`Namespace`]. Each builds a
//! selection and hands the operation to the server's adapter.
//!
//! Layer: above the adapter, below the `Server` handle. The methods on `Socket` and
//! `Namespace` are defined here, with the operators they return.

use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::sync::mpsc;

mod ack;
mod remote;

pub use remote::{FetchedSocket, RemoteSocket};

use ack::AckCollect;

use crate::adapter::{self, RequestError, ServerSideAckError, Target};
use crate::broadcast::{self, Selection};
use crate::error::EmitError;
use crate::ns::args::{Args, IntoArgs};
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::{Namespace, NamespaceInner, Room};
use crate::proto::sio;
use crate::shard;

/// What can name the target rooms of a broadcast: one room (`&str`, `String`, [`Room`]) or
/// several (`Vec`, arrays and slices of those).
pub trait IntoRooms {
    /// Appends the rooms to `out`.
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>);
}

impl IntoRooms for &str {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        out.push(Room::from(self));
    }
}
impl IntoRooms for String {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        out.push(Room::from(self));
    }
}
impl IntoRooms for &String {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        out.push(Room::from(self.as_str()));
    }
}
impl IntoRooms for Room {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        out.push(self);
    }
}
impl<T: IntoRooms> IntoRooms for Vec<T> {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        self.into_iter().for_each(|r| r.into_rooms(out));
    }
}
impl<T: IntoRooms, const N: usize> IntoRooms for [T; N] {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        self.into_iter().for_each(|r| r.into_rooms(out));
    }
}
impl<T: IntoRooms + Clone> IntoRooms for &[T] {
    fn into_rooms(self, out: &mut SmallVec<[Room; 2]>) {
        self.iter().cloned().for_each(|r| r.into_rooms(out));
    }
}

/// A selection of sockets to emit to or act on, built like socket.io's
/// `io.to(a).to(b).except(c)`, with the same flags (`local`, `volatile`, `compress`,
/// `timeout`).
#[derive(Clone)]
pub struct BroadcastOperator {
    server: Arc<ServerShared>,
    nsp: Arc<NamespaceInner>,
    sel: Selection,
    local: bool,
    volatile: bool,
    compress: bool,
    timeout: Option<Duration>,
}

/// The replies a broadcast with acknowledgements collected: the socket id (for sockets of
/// this server; `None` for a reply relayed by another server, which the cluster protocol
/// does not name) and the reply's arguments (only the first crosses servers).
pub type AckResponses = Vec<(Option<String>, Args)>;

/// A broadcast with acknowledgements that did not get every reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BroadcastAckError {
    /// The emit itself was refused.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// Some recipients did not acknowledge in time (or disconnected first): the replies that
    /// did arrive, the ids of this server's sockets that did not answer, and how many on
    /// other servers did not (or, when a server never reported, at least one).
    #[error("operation has timed out: {} of {} recipients did not acknowledge", missing.len() + missing_remote, missing.len() + missing_remote + responses.len())]
    Timeout {
        /// The replies received.
        responses: AckResponses,
        /// This server's sockets that did not reply.
        missing: Vec<String>,
        /// Clients of other servers that did not reply.
        missing_remote: usize,
    },
}

impl BroadcastOperator {
    pub(crate) fn new(server: Arc<ServerShared>, nsp: Arc<NamespaceInner>) -> Self {
        BroadcastOperator {
            server,
            nsp,
            sel: Selection::default(),
            local: false,
            volatile: false,
            compress: true,
            timeout: None,
        }
    }

    /// Adds target rooms (the union of all target rooms is selected).
    pub fn to(mut self, rooms: impl IntoRooms) -> Self {
        let mut add = SmallVec::new();
        rooms.into_rooms(&mut add);
        for r in add {
            if !self.sel.rooms.contains(&r) {
                self.sel.rooms.push(r);
            }
        }
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn in_(self, rooms: impl IntoRooms) -> Self {
        self.to(rooms)
    }

    /// Excludes the sockets in these rooms (a socket id excludes that socket).
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        let mut add = SmallVec::new();
        rooms.into_rooms(&mut add);
        for r in add {
            if !self.sel.except.contains(&r) {
                self.sel.except.push(r);
            }
        }
        self
    }

    /// Only the sockets connected to this server process. Every shard of the process is
    /// still reached; the flag matters once a cluster adapter links several servers.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// The packet may be dropped for a recipient that is not ready to receive it (a polling
    /// client with no pending request, or a connection with packets already waiting), instead
    /// of being queued. Drops are counted in [`crate::Server::volatile_dropped`].
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Whether the packet may be compressed (WebSocket per-message deflate, when enabled).
    /// Default `true`.
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// Bounds the wait of [`BroadcastOperator::emit_with_ack`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// True when [`BroadcastOperator::local`] was set.
    pub fn is_local(&self) -> bool {
        self.local
    }

    fn target(&self) -> Target {
        Target {
            names: broadcast::target_names(&self.nsp),
            sel: self.sel.clone(),
            local: self.local,
        }
    }

    /// Emits `event` to every selected socket on every shard. The packet is encoded once
    /// (once per namespace on a dynamic pattern's namespace).
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        // With connection state recovery, a plain broadcast is numbered by the shard that
        // issues it (each shard's sequence reaches every shard in order): from a thread that
        // is not a shard of this server, it is issued by shard 0.
        if self.server.recovery().is_some_and(|r| r.cluster().is_none()) && !self.volatile {
            if let Some(mesh) = self.server.mesh().filter(|m| shard::current(m).is_none()).cloned()
            {
                let (event, args) = (event.to_owned(), args.into_args());
                shard::submit_to(&mesh, 0, move || {
                    if let Err(e) = self.emit(&event, args) {
                        tracing::debug!(error = %e, "broadcast from another thread");
                    }
                });
                return Ok(());
            }
        }
        let adapter = adapter::of(&self.server);
        broadcast::for_each_target(&self.nsp, args.into_args(), |nsp, args| {
            self.server.count_broadcast();
            let msg = broadcast::encode(
                &self.server,
                nsp,
                &self.sel,
                event,
                args,
                None,
                self.volatile,
                self.compress,
            )?;
            adapter.broadcast(&self.server, msg, self.local);
            Ok(())
        })
    }

    /// Emits `event` to every selected socket and collects each one's acknowledgement, like
    /// socket.io's `io.timeout(ms).emit(event, ..., (err, responses) => ...)`. The packet is
    /// encoded once, with one namespace-wide ack id. With a cluster adapter the other
    /// servers deliver it too and report how many clients they reached, then each reply.
    /// Resolves with every reply, or with [`BroadcastAckError::Timeout`] listing the replies
    /// and the silent sockets once the timeout passes (without a timeout: once every silent
    /// socket here has disconnected and the other servers' part ended, which is bounded by
    /// the adapter's `requests_timeout`).
    pub async fn emit_with_ack(
        self,
        event: &str,
        args: impl IntoArgs,
    ) -> Result<AckResponses, BroadcastAckError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()).into());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (mut shards, mut remote_asks) = (0, 0);
        let adapter = adapter::of(&self.server);
        broadcast::for_each_target(&self.nsp, args.into_args(), |nsp, args| {
            self.server.count_broadcast();
            let ack = Some((nsp.next_ack_id(), tx.clone()));
            let mut msg = broadcast::encode(
                &self.server,
                nsp,
                &self.sel,
                event,
                args,
                ack,
                self.volatile,
                self.compress,
            )?;
            if let Some(m) = Arc::get_mut(&mut msg) {
                m.ack_timeout = self.timeout;
            }
            let plan = adapter.broadcast_with_ack(&self.server, msg, self.local);
            shards += plan.shards;
            remote_asks += usize::from(plan.remote);
            Ok(())
        })?;
        drop(tx);
        let mut c = AckCollect::default();
        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let timed_out = loop {
            if c.done(shards, remote_asks) {
                break false;
            }
            let ev = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(ev) => ev,
                    Err(_) => break true,
                },
                None => rx.recv().await,
            };
            match ev {
                Some(ev) => c.add(ev),
                // Every sender is gone: nothing more can arrive.
                None => break true,
            }
        };
        c.finish(timed_out, remote_asks)
    }

    /// The selected sockets, from every shard and (with a cluster adapter, unless
    /// [`BroadcastOperator::local`]) every server (socket.io's `fetchSockets()`). This
    /// server's are full handles; the others' carry what the cluster protocol describes
    /// (id, handshake, rooms, data), and can be emitted to, joined, left and disconnected.
    /// Fails when another server does not answer within `requests_timeout`.
    pub async fn fetch_sockets(self) -> Result<Vec<FetchedSocket>, RequestError> {
        let fetched = adapter::of(&self.server).fetch_sockets(&self.server, self.target()).await?;
        let mut out: Vec<FetchedSocket> =
            fetched.local.into_iter().map(FetchedSocket::Local).collect();
        for w in fetched.remote {
            out.push(FetchedSocket::Remote(RemoteSocket::new(
                self.server.clone(),
                self.nsp.clone(),
                w,
            )));
        }
        Ok(out)
    }

    /// Makes the selected sockets join `rooms`, on every shard.
    pub fn sockets_join(self, rooms: impl IntoRooms) {
        adapter::of(&self.server).sockets_join(&self.server, self.target(), room_list(rooms));
    }

    /// Makes the selected sockets leave `rooms`, on every shard.
    pub fn sockets_leave(self, rooms: impl IntoRooms) {
        adapter::of(&self.server).sockets_leave(&self.server, self.target(), room_list(rooms));
    }

    /// Disconnects the selected sockets (with `close`, their whole connections).
    pub fn disconnect_sockets(self, close: bool) {
        adapter::of(&self.server).disconnect_sockets(&self.server, self.target(), close);
    }
}

fn room_list(rooms: impl IntoRooms) -> Vec<Room> {
    let mut list: SmallVec<[Room; 2]> = SmallVec::new();
    rooms.into_rooms(&mut list);
    list.into_vec()
}

impl Namespace {
    fn op(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.server.clone(), self.inner.clone())
    }

    /// A broadcast to the sockets of this namespace in `rooms`.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().to(rooms)
    }

    /// Same as [`Namespace::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().to(rooms)
    }

    /// A broadcast to every socket of this namespace but those in `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().except(rooms)
    }

    /// A broadcast to the sockets of this server process only.
    pub fn local(&self) -> BroadcastOperator {
        self.op().local()
    }

    /// A broadcast that may be dropped for recipients not ready to receive it.
    pub fn volatile(&self) -> BroadcastOperator {
        self.op().volatile()
    }

    /// A broadcast with per-message compression allowed or not.
    pub fn compress(&self, compress: bool) -> BroadcastOperator {
        self.op().compress(compress)
    }

    /// A broadcast whose acknowledgements are awaited at most `timeout`.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.op().timeout(timeout)
    }

    /// Emits to every socket of this namespace, on every shard. On a dynamic pattern's
    /// namespace (as every broadcast and operation on it), reaches every namespace it
    /// created.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.op().emit(event, args)
    }

    /// Every socket of this namespace, from every shard and every server of the cluster.
    pub async fn fetch_sockets(&self) -> Result<Vec<FetchedSocket>, RequestError> {
        self.op().fetch_sockets().await
    }

    /// Makes every socket of this namespace join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoRooms) {
        self.op().sockets_join(rooms)
    }

    /// Makes every socket of this namespace leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoRooms) {
        self.op().sockets_leave(rooms)
    }

    /// Disconnects every socket of this namespace (with `close`, their connections).
    pub fn disconnect_sockets(&self, close: bool) {
        self.op().disconnect_sockets(close)
    }

    /// Every room of this namespace, on every server (socket ids included, as socket.io's
    /// `adapter.allRooms()`), sorted. Fails when another server does not answer within
    /// `requests_timeout`.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, RequestError> {
        let names = broadcast::target_names(&self.inner);
        adapter::of(&self.server).all_rooms(&self.server, names).await
    }

    /// The number of servers of the cluster that have this namespace, this one included
    /// (socket.io's `serverCount()`); 1 without a cluster adapter.
    pub async fn server_count(&self) -> Result<usize, RequestError> {
        adapter::of(&self.server).server_count(&self.inner.name).await
    }

    /// Emits `event` to the other servers of the cluster (socket.io's `serverSideEmit`);
    /// with the default in-process adapter there are none. Reserved names are refused.
    pub fn server_side_emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        adapter::of(&self.server).server_side_emit(
            &self.server,
            &self.inner.name,
            event,
            args.into_args(),
        );
        Ok(())
    }

    /// [`Namespace::server_side_emit`] awaiting one reply from each other server, for at
    /// most `timeout`: the replies (none without a cluster).
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: impl IntoArgs,
        timeout: Duration,
    ) -> Result<Vec<Args>, ServerSideAckError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()).into());
        }
        let adapter = adapter::of(&self.server);
        adapter
            .server_side_emit_with_ack(
                &self.server,
                &self.inner.name,
                event,
                args.into_args(),
                timeout,
            )
            .await
    }
}

impl Socket {
    /// A broadcast from this socket to everyone else in its namespace
    /// (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.0.server.clone(), self.0.nsp.clone()).except(self.room())
    }

    /// A broadcast from this socket to `rooms`: every member but this socket.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// Same as [`Socket::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// A broadcast from this socket to everyone else but the members of `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().except(rooms)
    }
}

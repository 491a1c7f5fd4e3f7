//! Broadcast operators (`to`, `in_`, `except`, `local`, `volatile`, `compress`, `timeout`)
//! → one encoded packet → one message per shard → local fan-out to each matching socket's
//! outbox; and the server-side operations over a selection (`fetch_sockets`,
//! `sockets_join`, `sockets_leave`, `disconnect_sockets`), run on every shard by message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod api;

use ahash::AHashSet;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::error::EmitError;
use crate::ns::args::{Args, IntoArgs};
use crate::ns::shared::ServerShared;
use crate::ns::socket::{AckEvent, AckSink, Socket};
use crate::ns::{NamespaceInner, Room};
use crate::proto::sid::Sid;
use crate::proto::sio;
use crate::shard::ShardMsg;
use crate::shard::{self, ShardCtx};
use crate::transport::outbox::Out;

/// How many broadcasts have been encoded by this process (each exactly once, whatever the
/// number of recipients and shards). Read by tests and metrics.
pub static ENCODINGS: AtomicU64 = AtomicU64::new(0);

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

/// Which sockets of a namespace a broadcast or an operation selects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// Target rooms (union); empty means every socket of the namespace.
    pub rooms: SmallVec<[Room; 2]>,
    /// Sockets in any of these rooms are skipped.
    pub except: SmallVec<[Room; 2]>,
}

/// One broadcast as it travels between shards: the selection and the encoded packet.
pub(crate) struct BroadcastMsg {
    pub nsp: Arc<str>,
    pub sel: Selection,
    pub packet: Out,
    pub volatile: bool,
    /// Event and arguments, for recipients with `on_any_outgoing` listeners.
    pub event: Arc<str>,
    pub args: Arc<Args>,
    /// Namespace-wide ack id and where replies go, for broadcasts with acks.
    pub ack: Option<(u64, AckSink)>,
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

/// The replies a broadcast with acknowledgements collected, by socket id.
pub type AckResponses = Vec<(String, Args)>;

/// A broadcast with acknowledgements that did not get every reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BroadcastAckError {
    /// The emit itself was refused.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// Some recipients did not acknowledge in time (or disconnected first): the replies that
    /// did arrive, and the ids of the sockets that did not answer.
    #[error("operation has timed out: {} of {} recipients did not acknowledge", missing.len(), missing.len() + responses.len())]
    Timeout {
        /// The replies received, by socket id.
        responses: AckResponses,
        /// The sockets that did not reply.
        missing: Vec<String>,
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

    fn prepare(
        &self,
        nsp: &NamespaceInner,
        event: &str,
        args: Args,
        ack: Option<(u64, AckSink)>,
    ) -> Result<Arc<BroadcastMsg>, EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        let packet = Out::event(
            &nsp.name,
            event,
            args.values(),
            args.verbatim(),
            args.binary().to_vec(),
            ack.as_ref().map(|a| a.0),
            self.server.encoding(self.compress),
        );
        ENCODINGS.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(BroadcastMsg {
            nsp: nsp.name.clone(),
            sel: self.sel.clone(),
            packet,
            volatile: self.volatile,
            event: Arc::from(event),
            args: Arc::new(args),
            ack,
        }))
    }

    /// Emits `event` to every selected socket on every shard. The packet is encoded once
    /// (once per namespace on a dynamic pattern's namespace).
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        for_each_target(&self.nsp, args.into_args(), |nsp, args| {
            dispatch(&self.server, self.prepare(nsp, event, args, None)?);
            Ok(())
        })
    }

    /// Emits `event` to every selected socket and collects each one's acknowledgement, like
    /// socket.io's `io.timeout(ms).emit(event, ..., (err, responses) => ...)`. The packet is
    /// encoded once, with one namespace-wide ack id. Resolves with every reply, or with
    /// [`BroadcastAckError::Timeout`] listing the replies and the silent sockets once the
    /// timeout passes (without a timeout: once every silent socket has disconnected).
    pub async fn emit_with_ack(
        self,
        event: &str,
        args: impl IntoArgs,
    ) -> Result<AckResponses, BroadcastAckError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()).into());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut shards = 0;
        for_each_target(&self.nsp, args.into_args(), |nsp, args| {
            let id = nsp.next_ack_id();
            shards +=
                dispatch(&self.server, self.prepare(nsp, event, args, Some((id, tx.clone())))?);
            Ok(())
        })?;
        drop(tx);
        let mut delivered_shards = 0;
        let mut expected: AHashSet<Sid> = AHashSet::new();
        let mut replies: HashMap<Sid, Args> = HashMap::new();
        let mut gone: AHashSet<Sid> = AHashSet::new();
        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let timed_out = loop {
            let done = delivered_shards == shards
                && expected.iter().all(|s| replies.contains_key(s) || gone.contains(s));
            if done {
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
                Some(AckEvent::Delivered(sids)) => {
                    delivered_shards += 1;
                    expected.extend(sids);
                }
                Some(AckEvent::Reply(sid, args)) => {
                    replies.entry(sid).or_insert(args);
                }
                Some(AckEvent::Gone(sid)) => {
                    gone.insert(sid);
                }
                // Every sender is gone: nothing more can arrive.
                None => break true,
            }
        };
        let mut responses: AckResponses = Vec::with_capacity(replies.len());
        let mut missing = Vec::new();
        for sid in &expected {
            match replies.remove(sid) {
                Some(args) => responses.push((sid.as_str().to_owned(), args)),
                None => missing.push(sid.as_str().to_owned()),
            }
        }
        if missing.is_empty() && !timed_out {
            Ok(responses)
        } else {
            Err(BroadcastAckError::Timeout { responses, missing })
        }
    }

    /// The selected sockets, from every shard. Each is a full handle: it can emit, join,
    /// leave and disconnect wherever it lives.
    pub async fn fetch_sockets(self) -> Vec<Socket> {
        let names: Vec<Arc<str>> = self.nsp.targets().iter().map(|n| n.name.clone()).collect();
        let sel = self.sel.clone();
        map_reduce(&self.server, move |ctx| {
            let mut out = Vec::new();
            for nsp in &names {
                select_local(ctx, nsp, &sel, |s| out.push(s.clone()));
            }
            out
        })
        .await
        .into_iter()
        .flatten()
        .collect()
    }

    /// Makes the selected sockets join `rooms`, on every shard.
    pub fn sockets_join(self, rooms: impl IntoRooms) {
        let mut add: SmallVec<[Room; 2]> = SmallVec::new();
        rooms.into_rooms(&mut add);
        self.for_each_selected(move |ctx, s| {
            for r in &add {
                ctx.join(&s.0.nsp.name, s.sid(), r.clone());
            }
        });
    }

    /// Makes the selected sockets leave `rooms`, on every shard.
    pub fn sockets_leave(self, rooms: impl IntoRooms) {
        let mut del: SmallVec<[Room; 2]> = SmallVec::new();
        rooms.into_rooms(&mut del);
        self.for_each_selected(move |ctx, s| {
            for r in &del {
                ctx.leave(&s.0.nsp.name, s.sid(), r);
            }
        });
    }

    /// Disconnects the selected sockets (with `close`, their whole connections).
    pub fn disconnect_sockets(self, close: bool) {
        self.for_each_selected(move |_ctx, s| s.disconnect(close));
    }

    /// Runs `f` on each selected socket, on its shard. Applied on every shard in the order
    /// of the messages this thread sends (a later broadcast from here sees the effect).
    fn for_each_selected(self, f: impl Fn(&ShardCtx, &Socket) + Send + Sync + 'static) {
        let f = Arc::new(f);
        let names: Vec<Arc<str>> = self.nsp.targets().iter().map(|n| n.name.clone()).collect();
        let sel = self.sel.clone();
        invoke_on_all(&self.server, move |ctx| {
            let mut targets: Vec<Socket> = Vec::new();
            for nsp in &names {
                select_local(ctx, nsp, &sel, |s| targets.push(s.clone()));
            }
            for s in &targets {
                f(ctx, s);
            }
        });
    }
}

/// Calls `f` for each namespace a broadcast on `nsp` reaches, handing the arguments over:
/// copied only when a dynamic pattern has several namespaces, moved in the usual case of one.
fn for_each_target(
    nsp: &Arc<NamespaceInner>,
    args: Args,
    mut f: impl FnMut(&NamespaceInner, Args) -> Result<(), EmitError>,
) -> Result<(), EmitError> {
    let targets = nsp.targets();
    let Some((last, rest)) = targets.split_last() else { return Ok(()) };
    for t in rest {
        f(t, args.clone())?;
    }
    f(last, args)
}

/// Runs `f` on every shard: here at once, elsewhere by one mesh message each.
pub(crate) fn invoke_on_all(
    server: &Arc<ServerShared>,
    f: impl Fn(&ShardCtx) + Send + Sync + 'static,
) {
    let Some(mesh) = server.mesh() else { return };
    let f = Arc::new(f);
    for to in 0..mesh.len() {
        let (f, mesh2) = (f.clone(), mesh.clone());
        shard::submit_to(mesh, to, move || {
            if let Some(ctx) = shard::current(&mesh2) {
                f(&ctx)
            }
        });
    }
}

/// Runs `f` on every shard and gathers the results (in no particular order).
pub(crate) async fn map_reduce<T: Send + 'static>(
    server: &Arc<ServerShared>,
    f: impl Fn(&ShardCtx) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let Some(n) = server.mesh().map(|m| m.len()) else { return Vec::new() };
    let (tx, mut rx) = mpsc::unbounded_channel();
    invoke_on_all(server, move |ctx| {
        let _ = tx.send(f(ctx));
    });
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match rx.recv().await {
            Some(v) => out.push(v),
            None => break,
        }
    }
    out
}

/// Sends `msg` to every shard: delivered here at once when called on a shard of this server,
/// by one mesh message per other shard. Returns the number of shards reached.
fn dispatch(server: &Arc<ServerShared>, msg: Arc<BroadcastMsg>) -> usize {
    let Some(mesh) = server.mesh() else { return 0 };
    match shard::current(mesh) {
        Some(ctx) => {
            for to in 0..mesh.len() {
                if to != ctx.id {
                    ctx.send_to(to, deliver_task(&msg));
                }
            }
            deliver_local(&ctx, &msg);
        }
        None => {
            for to in 0..mesh.len() {
                mesh.inject(to, deliver_task(&msg));
            }
        }
    }
    mesh.len()
}

/// The mesh message that delivers `msg` on the shard that runs it (one per shard and
/// broadcast, not per recipient).
fn deliver_task(msg: &Arc<BroadcastMsg>) -> ShardMsg {
    let msg = msg.clone();
    ShardMsg::Run(Box::new(move |ctx| deliver_local(ctx, &msg)))
}

/// Calls `f` on each local socket of `nsp` that `sel` selects, each once.
pub(crate) fn select_local(ctx: &ShardCtx, nsp: &str, sel: &Selection, mut f: impl FnMut(&Socket)) {
    let nsps = ctx.ns().nsps.borrow();
    let Some(ns) = nsps.get(nsp) else { return };
    let excluded = |sid: &Sid| sel.except.iter().any(|r| ns.is_member(r, sid));
    let mut visit = |sid: &Sid| {
        if !excluded(sid) {
            if let Some(e) = ns.sockets.get(sid) {
                f(&e.socket);
            }
        }
    };
    match sel.rooms.as_slice() {
        [] => ns.sockets.keys().for_each(visit),
        [room] => ns.for_members(room, visit),
        rooms => {
            let mut seen = AHashSet::new();
            for r in rooms {
                ns.for_members(r, |sid| {
                    if seen.insert(*sid) {
                        visit(sid);
                    }
                });
            }
        }
    }
}

/// The common case, a broadcast to one room with no acks, no exceptions and no outgoing
/// listeners in the namespace: each member's link is in the room's member map, so no socket
/// is looked up. False when the broadcast needs the general path.
fn deliver_plain(ctx: &ShardCtx, msg: &BroadcastMsg) -> bool {
    let [room] = msg.sel.rooms.as_slice() else { return false };
    if msg.ack.is_some() || !msg.sel.except.is_empty() {
        return false;
    }
    let nsps = ctx.ns().nsps.borrow();
    let Some(ns) = nsps.get(&*msg.nsp) else { return true };
    if ns.inner.has_outgoing_listeners() {
        return false;
    }
    let members = ns.rooms.get(room);
    if let Some(members) = members {
        let transport = ctx.transport();
        for m in members.values() {
            transport.push(m.slot, m.conn, &msg.packet, msg.volatile);
        }
    }
    // The socket whose own room this is, unless it also joined it explicitly.
    if let Some(sid) = ns.own_room_member(room) {
        if !members.is_some_and(|m| m.contains_key(&sid)) {
            if let Some(e) = ns.sockets.get(&sid) {
                e.socket.0.conn.push_on(ctx, &msg.packet, msg.volatile);
            }
        }
    }
    true
}

/// Queues the packet on each local socket the broadcast selects, each socket once.
/// Only called on the owning shard.
pub(crate) fn deliver_local(ctx: &ShardCtx, msg: &BroadcastMsg) {
    if deliver_plain(ctx, msg) {
        return;
    }
    let mut delivered = Vec::new();
    let mut outgoing: SmallVec<[Socket; 4]> = SmallVec::new();
    select_local(ctx, &msg.nsp, &msg.sel, |s| {
        if !s.0.conn.push_on(ctx, &msg.packet, msg.volatile) {
            return;
        }
        if let Some((id, sink)) = &msg.ack {
            s.expect_broadcast_ack(*id, sink.clone());
            delivered.push(s.sid());
        }
        if s.has_outgoing_listeners() {
            outgoing.push(s.clone());
        }
    });
    if let Some((_, sink)) = &msg.ack {
        let _ = sink.send(AckEvent::Delivered(delivered));
    }
    // Listeners run after the rooms map is released: they may join, leave or emit.
    for s in outgoing {
        s.notify_outgoing(&msg.event, &msg.args);
    }
}

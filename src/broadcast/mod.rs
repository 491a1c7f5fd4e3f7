//! The broadcast engine of one process: a selection of sockets and an event → one encoded
//! packet (`encode`) → one message per shard (`dispatch`) → local fan-out to each
//! matching socket's link (`deliver_local`); and the operations over a selection
//! (fetch, join, leave, disconnect, all rooms), run on every shard by message.
//!
//! Layer: above the namespaces (it walks their per-shard sockets and rooms maps), below the
//! adapter, which decides what of this runs here and what goes to other servers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashSet;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::error::EmitError;
use crate::ns::args::Args;
use crate::ns::recovery::{Audience, Replayable};
use crate::ns::shared::ServerShared;
use crate::ns::socket::{AckEvent, AckSink, Socket};
use crate::ns::{NamespaceInner, Room};
use crate::proto::offset::EntryId;
use crate::proto::sid::Sid;
use crate::proto::sio;
use crate::shard::ShardMsg;
use crate::shard::{self, ShardCtx};
use crate::transport::outbox::Out;

/// How many broadcasts have been encoded by this process (each exactly once, whatever the
/// number of recipients and shards). Read by tests and metrics.
pub static ENCODINGS: AtomicU64 = AtomicU64::new(0);

/// Which sockets of a namespace a broadcast or an operation selects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
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
    /// Whether the packet may be compressed (a cluster adapter passes the flag on).
    pub compress: bool,
    /// Event and arguments, for recipients with `on_any_outgoing` listeners.
    pub event: Arc<str>,
    pub args: Arc<Args>,
    /// Namespace-wide ack id and where replies go, for broadcasts with acks.
    pub ack: Option<(u64, AckSink)>,
    /// How long the issuer of a broadcast with acks waits (a cluster adapter tells the other
    /// servers).
    pub ack_timeout: Option<std::time::Duration>,
    /// With connection state recovery: the packet as each shard's replay log keeps it (its
    /// offset is in the encoded packet, as its last argument).
    pub replay: Option<Arc<Replayable>>,
    /// With recovery across servers: the stream entry id the packet carries as its offset.
    pub entry: Option<EntryId>,
}

/// Encodes a broadcast of `event` once, for the sockets of `nsp` that `sel` selects; `ack`
/// is the namespace-wide ack id and the channel replies go to.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode(
    server: &ServerShared,
    nsp: &NamespaceInner,
    sel: &Selection,
    event: &str,
    args: Args,
    ack: Option<(u64, AckSink)>,
    volatile: bool,
    compress: bool,
) -> Result<Arc<BroadcastMsg>, EmitError> {
    encode_inner(server, nsp, sel, event, args, ack, volatile, compress, None)
}

/// [`encode`] for another server's broadcast read from the cluster's stream, with its
/// entry id as its offset (recovery across servers; not volatile, no ack).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_entry(
    server: &ServerShared,
    nsp: &NamespaceInner,
    sel: &Selection,
    event: &str,
    args: Args,
    compress: bool,
    id: EntryId,
) -> Result<Arc<BroadcastMsg>, EmitError> {
    encode_inner(server, nsp, sel, event, args, None, false, compress, Some(id))
}

#[allow(clippy::too_many_arguments)]
fn encode_inner(
    server: &ServerShared,
    nsp: &NamespaceInner,
    sel: &Selection,
    event: &str,
    args: Args,
    ack: Option<(u64, AckSink)>,
    volatile: bool,
    compress: bool,
    entry: Option<EntryId>,
) -> Result<Arc<BroadcastMsg>, EmitError> {
    if sio::is_reserved_event(event) {
        return Err(EmitError::ReservedEvent(event.to_owned()));
    }
    // Recovery numbers a plain broadcast on the shard issuing it, before the one encoding:
    // every recipient gets the same offset. (The operators issue broadcasts from a shard
    // when recovery is on.) Across servers, the stream numbers it.
    let numbered = server
        .recovery()
        .filter(|r| ack.is_none() && !volatile && r.cluster().is_none())
        .and_then(|r| Some((r, shard::current(server.mesh()?)?.next_broadcast_offset())));
    let text = match entry {
        Some(id) => Some(id.to_string()),
        None => numbered.map(|(r, o)| r.tag.format(o)),
    };
    let packet = Out::event_with_offset(
        &nsp.name,
        event,
        args.values(),
        args.verbatim(),
        args.binary().to_vec(),
        ack.as_ref().map(|a| a.0),
        server.encoding(compress),
        text.as_deref(),
    );
    let replay = numbered.map(|(_, id)| {
        Arc::new(Replayable {
            id,
            nsp: nsp.name.clone(),
            to: Audience::Rooms { rooms: sel.rooms.clone(), except: sel.except.clone() },
            packet: packet.clone(),
            at: Instant::now(),
        })
    });
    ENCODINGS.fetch_add(1, Ordering::Relaxed);
    Ok(Arc::new(BroadcastMsg {
        nsp: nsp.name.clone(),
        sel: sel.clone(),
        packet,
        volatile,
        compress,
        event: Arc::from(event),
        args: Arc::new(args),
        ack,
        ack_timeout: None,
        replay,
        entry,
    }))
}

/// Calls `f` for each namespace a broadcast on `nsp` reaches, handing the arguments over:
/// copied only when a dynamic pattern has several namespaces, moved in the usual case of one.
pub(crate) fn for_each_target(
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
pub(crate) fn invoke_on_all(server: &ServerShared, f: impl Fn(&ShardCtx) + Send + Sync + 'static) {
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
    server: &ServerShared,
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
pub(crate) fn dispatch(server: &ServerShared, msg: Arc<BroadcastMsg>) -> usize {
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
    // Recovery across servers: clients being restored here keep what reaches them.
    if msg.ack.is_none() {
        ctx.catchup_deliver(&msg.nsp, &msg.sel.rooms, &msg.sel.except, &msg.packet, msg.entry);
    }
    // Recovery: sockets restored here that had this one in their replay, then the log, in
    // the same turn as the packet is queued on the links (the log is the order this
    // shard's clients got their packets in).
    let mut replayed = SmallVec::new();
    if let Some(r) = &msg.replay {
        replayed = ctx.replayed_already(r);
        ctx.log_replayable(r);
    }
    if replayed.is_empty() && deliver_plain(ctx, msg) {
        return;
    }
    let mut delivered = Vec::new();
    let mut outgoing: SmallVec<[Socket; 4]> = SmallVec::new();
    select_local(ctx, &msg.nsp, &msg.sel, |s| {
        if replayed.contains(&s.sid()) {
            return;
        }
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

/// The names of the namespaces an operation on `nsp` reaches (a dynamic pattern's: every
/// namespace it created).
pub(crate) fn target_names(nsp: &Arc<NamespaceInner>) -> Vec<Arc<str>> {
    nsp.targets().iter().map(|n| n.name.clone()).collect()
}

/// The sockets of namespaces `names` that `sel` selects, from every shard of this process.
pub(crate) async fn fetch_sockets(
    server: &ServerShared,
    names: Vec<Arc<str>>,
    sel: Selection,
) -> Vec<Socket> {
    map_reduce(server, move |ctx| {
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

/// Runs `f` on each socket of namespaces `names` that `sel` selects, on its shard. Applied
/// on every shard in the order of the messages this thread sends (a later broadcast from
/// here sees the effect).
pub(crate) fn for_each_selected(
    server: &ServerShared,
    names: Vec<Arc<str>>,
    sel: Selection,
    f: impl Fn(&ShardCtx, &Socket) + Send + Sync + 'static,
) {
    invoke_on_all(server, move |ctx| {
        let mut targets: Vec<Socket> = Vec::new();
        for nsp in &names {
            select_local(ctx, nsp, &sel, |s| targets.push(s.clone()));
        }
        for s in &targets {
            f(ctx, s);
        }
    });
}

/// Every room of namespaces `names` on every shard of this process, each socket's own room
/// (its id) included while it is in it, sorted and each once.
pub(crate) async fn all_rooms(server: &ServerShared, names: Vec<Arc<str>>) -> Vec<Room> {
    let per_shard = map_reduce(server, move |ctx| {
        let nsps = ctx.ns().nsps.borrow();
        let mut out: Vec<Room> = Vec::new();
        for name in &names {
            let Some(ns) = nsps.get(name) else { continue };
            out.extend(ns.rooms.keys().cloned());
            for e in ns.sockets.values() {
                let id = e.socket.id();
                let own = crate::ns::socket::lock(&e.socket.0.rooms).iter().any(|r| **r == *id);
                if own {
                    out.push(Room::from(id));
                }
            }
        }
        out
    })
    .await;
    let mut rooms: Vec<Room> = per_shard.into_iter().flatten().collect();
    rooms.sort();
    rooms.dedup();
    rooms
}

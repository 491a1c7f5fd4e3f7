//! Broadcast operators (`to`, `in_`, `except`, `emit`) → one encoded packet → one message
//! per shard → local fan-out to each matching socket's outbox.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ahash::AHashSet;
use smallvec::SmallVec;

use crate::error::EmitError;
use crate::mesh::ShardMsg;
use crate::ns::args::IntoArgs;
use crate::ns::Room;
use crate::proto::sio;
use crate::server::ServerShared;
use crate::shard::{self, ShardCtx};
use crate::transport::outbox::Out;

/// How many broadcasts have been encoded by this process (each exactly once, whatever the
/// number of recipients). Read by tests and metrics.
pub static ENCODINGS: AtomicU64 = AtomicU64::new(0);

/// One broadcast as it travels between shards: the selection and the encoded packet.
#[derive(Debug)]
pub(crate) struct BroadcastMsg {
    pub nsp: Arc<str>,
    /// Target rooms; empty means every socket of the namespace.
    pub rooms: SmallVec<[Room; 2]>,
    /// Sockets in any of these rooms are skipped.
    pub except: SmallVec<[Room; 2]>,
    pub packet: Out,
}

/// A selection of sockets to emit to, built like socket.io's `io.to(a).to(b).except(c)`.
#[derive(Clone)]
pub struct BroadcastOperator {
    server: Arc<ServerShared>,
    nsp: Arc<str>,
    rooms: SmallVec<[Room; 2]>,
    except: SmallVec<[Room; 2]>,
}

impl BroadcastOperator {
    pub(crate) fn new(server: Arc<ServerShared>, nsp: Arc<str>) -> Self {
        BroadcastOperator { server, nsp, rooms: SmallVec::new(), except: SmallVec::new() }
    }

    /// Adds a target room (the union of all target rooms is selected).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.rooms.contains(&room) {
            self.rooms.push(room);
        }
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn in_(self, room: impl Into<Room>) -> Self {
        self.to(room)
    }

    /// Excludes the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.except.contains(&room) {
            self.except.push(room);
        }
        self
    }

    /// Emits `event` to every selected socket on every shard. The packet is encoded once.
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        if sio::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent(event.to_owned()));
        }
        let (values, binary) = args.into_args().into_parts();
        let packet = Out::event(&self.nsp, event, &values, binary, None);
        ENCODINGS.fetch_add(1, Ordering::Relaxed);
        let msg = Arc::new(BroadcastMsg {
            nsp: self.nsp,
            rooms: self.rooms,
            except: self.except,
            packet,
        });
        dispatch(&self.server, msg);
        Ok(())
    }
}

/// Sends `msg` to every shard: delivered here at once when called on a shard of this server,
/// by one mesh message per other shard.
fn dispatch(server: &Arc<ServerShared>, msg: Arc<BroadcastMsg>) {
    let Some(mesh) = server.mesh() else { return };
    match shard::current(server) {
        Some(ctx) => {
            for to in 0..mesh.len() {
                if to != ctx.id {
                    ctx.send_to(to, ShardMsg::Broadcast(msg.clone()));
                }
            }
            deliver_local(&ctx, &msg);
        }
        None => {
            for to in 0..mesh.len() {
                mesh.inject(to, ShardMsg::Broadcast(msg.clone()));
            }
        }
    }
}

/// Queues the packet on each local socket the broadcast selects, each socket once.
/// Only called on the owning shard.
pub(crate) fn deliver_local(ctx: &ShardCtx, msg: &BroadcastMsg) {
    let nsps = ctx.nsps.borrow();
    let Some(ns) = nsps.get(&msg.nsp) else { return };
    let excluded = |sid| {
        msg.except.iter().any(|r| ns.rooms.get(r).is_some_and(|members| members.contains(sid)))
    };
    let send = |sid| {
        if !excluded(sid) {
            if let Some(s) = ns.sockets.get(sid) {
                s.socket.0.conn.send(msg.packet.clone());
            }
        }
    };
    match msg.rooms.as_slice() {
        [] => ns.sockets.keys().for_each(send),
        [room] => {
            if let Some(members) = ns.rooms.get(room) {
                members.iter().for_each(send);
            }
        }
        rooms => {
            let mut seen = AHashSet::new();
            for r in rooms {
                if let Some(members) = ns.rooms.get(r) {
                    for sid in members {
                        if seen.insert(*sid) {
                            send(sid);
                        }
                    }
                }
            }
        }
    }
}

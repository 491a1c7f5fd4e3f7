//! The namespace layer's state on one shard: per namespace, its local sockets and its rooms
//! index (room → members, each with its connection's link so a plain broadcast reaches it
//! without a socket lookup), and on shard 0 the room member counts behind the room events.
//!
//! Single-owner: an [`NsLocal`] belongs to its shard thread (`ctx.ns()`); other threads
//! change it only by sending the owner a task.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use ahash::AHashMap;

use crate::ns::socket::{lock, Socket};
use crate::ns::{NamespaceInner, Room, RoomChange};
use crate::proto::sid::Sid;
use crate::shard::{self, ShardCtx};

/// A local socket. The rooms it is in are kept on the socket itself (behind its own
/// mutex, written only here, on the owning shard) so `Socket::rooms` answers from any thread.
pub(crate) struct SocketEntry {
    pub socket: Socket,
}

/// One namespace's sockets on one shard.
///
/// A socket's own room (its id) is not in `rooms`: it would be a map entry and a set per
/// socket, for the life of every connection, to find one socket whose id is the room name.
/// The socket's room list says whether it is still in it (it may leave it), and
/// [`NspLocal::for_members`] / [`NspLocal::is_member`] answer for both kinds.
pub(crate) struct NspLocal {
    pub inner: Arc<NamespaceInner>,
    pub sockets: AHashMap<Sid, SocketEntry>,
    pub rooms: AHashMap<Room, AHashMap<Sid, Member>>,
}

/// Where a room member's packets go: its connection's link, so that a plain broadcast
/// reaches each member without looking the socket up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// The Engine.IO session id of the member's connection.
    pub conn: Sid,
    /// Its link's slot.
    pub slot: usize,
}

impl NspLocal {
    /// The local socket whose own room is `room`, while it is in it (an Engine.IO v3
    /// client's socket outside `/` is `<namespace>#<session id>`).
    pub(crate) fn own_room_member(&self, room: &str) -> Option<Sid> {
        let sid = match Sid::parse(room) {
            Some(sid) => sid,
            None => Sid::parse(room.strip_prefix(&*self.inner.name)?.strip_prefix('#')?)?,
        };
        let entry = self.sockets.get(&sid)?;
        lock(&entry.socket.0.rooms).iter().any(|r| &**r == room).then_some(sid)
    }

    /// Calls `f` once for each local member of `room`.
    pub(crate) fn for_members(&self, room: &str, mut f: impl FnMut(&Sid)) {
        let members = self.rooms.get(room);
        if let Some(m) = members {
            m.keys().for_each(&mut f);
        }
        if let Some(sid) = self.own_room_member(room) {
            if !members.is_some_and(|m| m.contains_key(&sid)) {
                f(&sid);
            }
        }
    }

    /// Whether local socket `sid` is in `room`.
    pub(crate) fn is_member(&self, room: &str, sid: &Sid) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains_key(sid))
            || self.own_room_member(room) == Some(*sid)
    }
}

/// One shard's namespace state. Installed in the shard's context when it starts.
#[derive(Default)]
pub(crate) struct NsLocal {
    pub nsps: RefCell<AHashMap<Arc<str>, NspLocal>>,
    /// Shard 0 only: members of each room across all shards, for the room events.
    room_counts: RefCell<AHashMap<(Arc<str>, Room), usize>>,
    /// Connection state recovery's replay log and sessions (empty when it is off).
    pub recovery: crate::ns::recovery::RecoveryLocal,
    /// Recovery across servers: the clients being restored here whose missed packets are
    /// being read (see [`crate::ns::cluster_recovery`]).
    pub catchups: RefCell<Vec<crate::ns::cluster_recovery::Catchup>>,
    /// What the metrics count here (plain cells: only this shard touches them; the scrape
    /// reads them on this shard and sums the shards).
    pub counters: NsCounters,
}

/// One shard's namespace-layer counters (see [`NsLocal::counters`]).
#[derive(Default)]
pub(crate) struct NsCounters {
    /// Socket.IO packets from clients, each once whole (binary attachments included).
    pub packets_received: Cell<u64>,
    /// Broadcasts issued on this shard (one per namespace a broadcast targets).
    pub broadcasts: Cell<u64>,
    /// Sockets that disconnected, by reason.
    pub disconnects: RefCell<AHashMap<&'static str, u64>>,
}

impl NsLocal {
    /// The sizes of this shard's namespace tables (and its recovery tables), for the
    /// metrics (`shardcast_table_entries`).
    pub(crate) fn table_sizes(&self, out: &mut Vec<(&'static str, u64)>) {
        let nsps = self.nsps.borrow();
        let (mut sockets, mut rooms, mut members, mut acks) = (0, 0, 0, 0);
        for n in nsps.values() {
            sockets += n.sockets.len();
            rooms += n.rooms.len();
            members += n.rooms.values().map(|m| m.len()).sum::<usize>();
            acks += n.sockets.values().map(|e| e.socket.pending_acks()).sum::<usize>();
        }
        out.push(("sockets", sockets as u64));
        out.push(("rooms", rooms as u64));
        out.push(("room_members", members as u64));
        out.push(("socket_acks", acks as u64));
        out.push(("room_counts", self.room_counts.borrow().len() as u64));
        out.push(("recovery_catchups", self.catchups.borrow().len() as u64));
        self.recovery.table_sizes(out);
    }
}

impl ShardCtx {
    /// This shard's namespace state.
    pub(crate) fn ns(&self) -> &NsLocal {
        self.local::<NsLocal>()
    }

    /// Whether socket `sid` of namespace `nsp` is connected on this shard.
    pub(crate) fn has_socket(&self, nsp: &str, sid: Sid) -> bool {
        self.ns().nsps.borrow().get(nsp).is_some_and(|ns| ns.sockets.contains_key(&sid))
    }

    /// Registers a connected socket and puts it in its own room (its id), as socket.io does.
    pub(crate) fn add_socket(&self, socket: Socket) {
        let sid = socket.sid();
        let inner = socket.0.nsp.clone();
        let own = socket.room();
        {
            let mut nsps = self.ns().nsps.borrow_mut();
            let ns = nsps.entry(inner.name.clone()).or_insert_with(|| NspLocal {
                inner: inner.clone(),
                sockets: AHashMap::new(),
                rooms: AHashMap::new(),
            });
            // A dynamic child removed once empty (`cleanup_empty_child_namespaces`) and made
            // again: this shard's empty entry takes the new one.
            if !Arc::ptr_eq(&ns.inner, &inner) && ns.sockets.is_empty() {
                ns.inner = inner.clone();
            }
            lock(&socket.0.rooms).push(own.clone());
            ns.sockets.insert(sid, SocketEntry { socket });
        }
        if inner.wants_room_events() {
            self.room_changed(&inner, own.clone(), own, true);
        }
    }

    /// Removes a socket and its memberships.
    pub(crate) fn remove_socket(&self, nsp: &Arc<NamespaceInner>, sid: Sid) {
        let left = {
            let mut nsps = self.ns().nsps.borrow_mut();
            let Some(ns) = nsps.get_mut(&nsp.name) else { return };
            let Some(entry) = ns.sockets.remove(&sid) else { return };
            let id = Room::from(entry.socket.id());
            let rooms = std::mem::take(&mut *lock(&entry.socket.0.rooms));
            for room in &rooms {
                if let Some(members) = ns.rooms.get_mut(room) {
                    members.remove(&sid);
                    if members.is_empty() {
                        ns.rooms.remove(room);
                    }
                }
            }
            // A dynamic child's entry goes with its last socket here when such namespaces
            // are cleaned up: names come and go, and each would leave an entry behind.
            if ns.sockets.is_empty()
                && ns.rooms.is_empty()
                && ns.inner.is_child()
                && self.config().cleanup_empty_child_namespaces
            {
                nsps.remove(&nsp.name);
            }
            (rooms, id)
        };
        if nsp.wants_room_events() {
            let (rooms, id) = left;
            for room in rooms {
                self.room_changed(nsp, room, id.clone(), false);
            }
        }
    }

    pub(crate) fn join(&self, nsp: &str, sid: Sid, room: Room) {
        let inner = {
            let mut nsps = self.ns().nsps.borrow_mut();
            let Some(ns) = nsps.get_mut(nsp) else { return };
            let Some(entry) = ns.sockets.get_mut(&sid) else { return };
            {
                let mut rooms = lock(&entry.socket.0.rooms);
                if rooms.contains(&room) {
                    return;
                }
                rooms.push(room.clone());
            }
            let conn = &entry.socket.0.conn;
            let member = Member { conn: conn.sid, slot: conn.slot };
            ns.rooms.entry(room.clone()).or_default().insert(sid, member);
            let id = ns.inner.wants_room_events().then(|| Room::from(entry.socket.id()));
            (ns.inner.clone(), id)
        };
        let (inner, id) = inner;
        self.note_live_change(&inner.name, sid);
        if let Some(id) = id {
            self.room_changed(&inner, room, id, true);
        }
    }

    pub(crate) fn leave(&self, nsp: &str, sid: Sid, room: &Room) {
        let inner = {
            let mut nsps = self.ns().nsps.borrow_mut();
            let Some(ns) = nsps.get_mut(nsp) else { return };
            let Some(entry) = ns.sockets.get_mut(&sid) else { return };
            {
                let mut rooms = lock(&entry.socket.0.rooms);
                let Some(pos) = rooms.iter().position(|r| r == room) else { return };
                rooms.remove(pos);
            }
            if let Some(members) = ns.rooms.get_mut(room) {
                members.remove(&sid);
                if members.is_empty() {
                    ns.rooms.remove(room);
                }
            }
            let id = ns.inner.wants_room_events().then(|| Room::from(entry.socket.id()));
            (ns.inner.clone(), id)
        };
        let (inner, id) = inner;
        self.note_live_change(&inner.name, sid);
        if let Some(id) = id {
            self.room_changed(&inner, room.clone(), id, false);
        }
    }

    /// Reports a membership change to shard 0, which counts members across shards and fires
    /// the room events in the order it receives them (each lane is FIFO, so one shard's
    /// changes keep their order).
    fn room_changed(&self, nsp: &Arc<NamespaceInner>, room: Room, id: Room, joined: bool) {
        let (nsp, mesh) = (nsp.clone(), self.mesh.clone());
        shard::submit_to(&self.mesh, 0, move || {
            if let Some(ctx) = shard::current(&mesh) {
                ctx.count_room_change(&nsp, room, id, joined);
            }
        });
    }

    /// Only called on shard 0.
    fn count_room_change(&self, nsp: &NamespaceInner, room: Room, id: Room, joined: bool) {
        let key = (nsp.name.clone(), room.clone());
        let (created, deleted) = {
            let mut counts = self.ns().room_counts.borrow_mut();
            if joined {
                let c = counts.entry(key).or_insert(0);
                *c += 1;
                (*c == 1, false)
            } else {
                match counts.get_mut(&key) {
                    Some(c) if *c > 1 => {
                        *c -= 1;
                        (false, false)
                    }
                    Some(_) => {
                        counts.remove(&key);
                        (false, true)
                    }
                    // A leave for a join made before anyone listened: nothing to report.
                    None => return,
                }
            }
        };
        let id = id.to_string();
        if joined {
            if created {
                nsp.fire_room_event(RoomChange::CreateRoom(room.clone()));
            }
            nsp.fire_room_event(RoomChange::JoinRoom(room, id));
        } else {
            nsp.fire_room_event(RoomChange::LeaveRoom(room.clone(), id));
            if deleted {
                nsp.fire_room_event(RoomChange::DeleteRoom(room));
            }
        }
    }
}

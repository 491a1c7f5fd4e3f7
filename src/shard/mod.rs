//! A shard: one thread, one current-thread tokio runtime, and the state it alone owns: its
//! Engine.IO sessions and, per namespace, its sockets and rooms maps.
//!
//! Other threads reach this state only through the mesh ([`submit_to`], broadcasts). The
//! state sits in `RefCell`s behind a thread-local `Rc`: no lock, no sharing. No borrow is
//! held across an `.await` or while a user handler runs.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use crate::mesh::Mesh;
use crate::ns::socket::{lock, Socket};
use crate::ns::{NamespaceInner, Room, RoomEvent};
use crate::proto::sid::Sid;

/// Work for a shard, run on it with its context: an accepted connection to serve, a
/// broadcast to deliver, a `submit_to` closure. The layers above build these; the shard
/// runtime only runs them, in the order each lane delivers them.
pub(crate) type Task = Box<dyn FnOnce(&Rc<ShardCtx>) + Send>;

/// A message from one shard (or an outside thread) to a shard, carried by the mesh.
pub(crate) enum ShardMsg {
    /// Run a task on the receiving shard.
    Run(Task),
    /// Stop the shard.
    Shutdown,
}

/// The mesh between the shards of one server.
pub(crate) type ShardMesh = Mesh<ShardMsg>;

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
    /// The local socket whose own room is `room`, while it is in it.
    pub(crate) fn own_room_member(&self, room: &str) -> Option<Sid> {
        let sid = Sid::parse(room)?;
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
            || (sid.as_str() == room && self.own_room_member(room).is_some())
    }
}

/// Everything one shard owns: its id and lanes, and the per-shard state of the layers above
/// (`locals`, one value per type, reached through their typed accessors such as
/// `ctx.transport()`).
pub(crate) struct ShardCtx {
    pub id: usize,
    pub mesh: Arc<ShardMesh>,
    pub nsps: RefCell<AHashMap<Arc<str>, NspLocal>>,
    /// The layers' per-shard state, installed before the shard runs anything.
    locals: Vec<Box<dyn Any>>,
    /// Messages for other shards whose lane was full, kept in order and retried.
    overflow: RefCell<Vec<VecDeque<ShardMsg>>>,
    /// Shard 0 only: members of each room across all shards, for the room events.
    room_counts: RefCell<AHashMap<(Arc<str>, Room), usize>>,
    /// When to give freed memory back to the system.
    trim: RefCell<Trim>,
}

thread_local! {
    static CTX: RefCell<Option<Rc<ShardCtx>>> = const { RefCell::new(None) };
}

/// The shard this thread runs, if it is a shard of the server whose mesh is `mesh`.
pub(crate) fn current(mesh: &Arc<ShardMesh>) -> Option<Rc<ShardCtx>> {
    CTX.with(|c| c.borrow().as_ref().filter(|ctx| Arc::ptr_eq(&ctx.mesh, mesh)).cloned())
}

/// Runs `f` on shard `to` of `mesh`'s server: immediately when already there, else by
/// message.
pub(crate) fn submit_to(mesh: &Arc<ShardMesh>, to: usize, f: impl FnOnce() + Send + 'static) {
    match current(mesh) {
        Some(ctx) if ctx.id == to => f(),
        Some(ctx) => ctx.send_to(to, ShardMsg::Run(Box::new(move |_| f()))),
        None => mesh.inject(to, ShardMsg::Run(Box::new(move |_| f()))),
    }
}

impl ShardCtx {
    /// A shard's context with the layers' per-shard state (`locals`, one value per type).
    pub(crate) fn new(id: usize, mesh: Arc<ShardMesh>, locals: Vec<Box<dyn Any>>) -> Self {
        let n = mesh.len();
        ShardCtx {
            id,
            mesh,
            nsps: RefCell::new(AHashMap::new()),
            locals,
            room_counts: RefCell::new(AHashMap::new()),
            trim: RefCell::new(Trim::default()),
            overflow: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
        }
    }

    /// The per-shard state of type `T` that a layer above installed.
    ///
    /// # Panics
    /// When no `T` was installed: the server installs every layer's state before the shard
    /// runs anything, so this is a bug in the server's set-up, never a runtime condition.
    pub(crate) fn local<T: Any>(&self) -> &T {
        self.locals
            .iter()
            .find_map(|l| l.downcast_ref::<T>())
            .expect("every layer's per-shard state is installed before the shard runs")
    }

    /// Counts sessions as they open and close, giving memory back after many closed.
    pub(crate) fn maybe_trim(&self, sessions: usize) {
        self.trim.borrow_mut().maybe_trim(sessions);
    }

    /// Sends to another shard over this shard's lane, keeping order when the lane is full.
    pub(crate) fn send_to(&self, to: usize, msg: ShardMsg) {
        let mut overflow = self.overflow.borrow_mut();
        let msg = if overflow[to].is_empty() {
            match self.mesh.push(self.id, to, msg) {
                Ok(()) => return,
                Err(msg) => msg,
            }
        } else {
            msg
        };
        overflow[to].push_back(msg);
        // The shard loop retries overflow on its turns; make sure it is not parked.
        self.mesh.wake_self(self.id);
    }

    fn flush_overflow(&self) -> bool {
        let mut overflow = self.overflow.borrow_mut();
        let mut pending = false;
        for (to, q) in overflow.iter_mut().enumerate() {
            while let Some(msg) = q.pop_front() {
                if let Err(msg) = self.mesh.push(self.id, to, msg) {
                    q.push_front(msg);
                    pending = true;
                    break;
                }
            }
        }
        pending
    }

    /// Registers a connected socket and puts it in its own room (its id), as socket.io does.
    pub(crate) fn add_socket(&self, socket: Socket) {
        let sid = socket.sid();
        let inner = socket.0.nsp.clone();
        let own = Room::from(sid.as_str());
        {
            let mut nsps = self.nsps.borrow_mut();
            let ns = nsps.entry(inner.name.clone()).or_insert_with(|| NspLocal {
                inner: inner.clone(),
                sockets: AHashMap::new(),
                rooms: AHashMap::new(),
            });
            lock(&socket.0.rooms).push(own.clone());
            ns.sockets.insert(sid, SocketEntry { socket });
        }
        if inner.wants_room_events() {
            self.room_changed(&inner, own, sid, true);
        }
    }

    /// Removes a socket and its memberships.
    pub(crate) fn remove_socket(&self, nsp: &Arc<NamespaceInner>, sid: Sid) {
        let left = {
            let mut nsps = self.nsps.borrow_mut();
            let Some(ns) = nsps.get_mut(&nsp.name) else { return };
            let Some(entry) = ns.sockets.remove(&sid) else { return };
            let rooms = std::mem::take(&mut *lock(&entry.socket.0.rooms));
            for room in &rooms {
                if let Some(members) = ns.rooms.get_mut(room) {
                    members.remove(&sid);
                    if members.is_empty() {
                        ns.rooms.remove(room);
                    }
                }
            }
            rooms
        };
        if nsp.wants_room_events() {
            for room in left {
                self.room_changed(nsp, room, sid, false);
            }
        }
    }

    pub(crate) fn join(&self, nsp: &str, sid: Sid, room: Room) {
        let inner = {
            let mut nsps = self.nsps.borrow_mut();
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
            ns.inner.clone()
        };
        if inner.wants_room_events() {
            self.room_changed(&inner, room, sid, true);
        }
    }

    pub(crate) fn leave(&self, nsp: &str, sid: Sid, room: &Room) {
        let inner = {
            let mut nsps = self.nsps.borrow_mut();
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
            ns.inner.clone()
        };
        if inner.wants_room_events() {
            self.room_changed(&inner, room.clone(), sid, false);
        }
    }

    /// Reports a membership change to shard 0, which counts members across shards and fires
    /// the room events in the order it receives them (each lane is FIFO, so one shard's
    /// changes keep their order).
    fn room_changed(&self, nsp: &Arc<NamespaceInner>, room: Room, sid: Sid, joined: bool) {
        let (nsp, mesh) = (nsp.clone(), self.mesh.clone());
        submit_to(&self.mesh, 0, move || {
            if let Some(ctx) = current(&mesh) {
                ctx.count_room_change(&nsp, room, sid, joined);
            }
        });
    }

    /// Only called on shard 0.
    fn count_room_change(&self, nsp: &NamespaceInner, room: Room, sid: Sid, joined: bool) {
        let key = (nsp.name.clone(), room.clone());
        let (created, deleted) = {
            let mut counts = self.room_counts.borrow_mut();
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
        let id = sid.as_str().to_owned();
        if joined {
            if created {
                nsp.fire_room_event(&RoomEvent::CreateRoom(room.clone()));
            }
            nsp.fire_room_event(&RoomEvent::JoinRoom(room, id));
        } else {
            nsp.fire_room_event(&RoomEvent::LeaveRoom(room.clone(), id));
            if deleted {
                nsp.fire_room_event(&RoomEvent::DeleteRoom(room));
            }
        }
    }

    fn handle(self: &Rc<Self>, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Run(task) => task(self),
            ShardMsg::Shutdown => return false,
        }
        true
    }
}

/// Gives memory back to the system after many connections have closed. glibc's malloc
/// keeps what is freed in its arenas, so without this the memory of closed connections is
/// never returned; `malloc_trim` releases it. Checked as sessions open and close; it trims
/// only when the count has fallen by a margin since its high mark: a rare call.
#[derive(Default)]
pub(crate) struct Trim {
    high: usize,
}

impl Trim {
    const MARGIN: usize = 256;

    pub(crate) fn maybe_trim(&mut self, sessions: usize) {
        if sessions > self.high {
            self.high = sessions;
        } else if self.high - sessions >= Self::MARGIN {
            tracing::debug!(from = self.high, to = sessions, "returning freed memory");
            self.high = sessions;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own
            // free lists.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// What the layers above put on each shard. Built into the shard's context on its own
/// thread (the state holds `Rc`s and `RefCell`s, which never leave it).
pub(crate) trait ShardSetup: Send + Sync {
    /// The per-shard state of each layer above (one value per type).
    fn locals(&self, id: usize, mesh: &Arc<ShardMesh>) -> Vec<Box<dyn Any>>;
    /// Starts the shard's own tasks.
    fn start(&self, ctx: &Rc<ShardCtx>);
    /// Winds down what the shard serves once it is told to stop.
    fn stop(&self, ctx: Rc<ShardCtx>) -> Pin<Box<dyn Future<Output = ()>>>;
}

/// Body of a shard thread: runs until told to shut down, then lets `setup` wind down.
/// `ready` hears once whether the shard's runtime could be built: the server accepts
/// nothing before every shard is up (a runtime needs descriptors, which a flood of early
/// connections could otherwise take first).
pub(crate) fn run(
    id: usize,
    mesh: Arc<ShardMesh>,
    setup: Arc<dyn ShardSetup>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let ctx = Rc::new(ShardCtx::new(id, mesh.clone(), setup.locals(id, &mesh)));
    CTX.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        setup.start(&ctx);
        loop {
            let pending = ctx.flush_overflow();
            let mut running = true;
            let n = mesh.drain(id, 256, |m| running &= ctx.handle(m));
            if !running {
                break;
            }
            if n > 0 {
                tokio::task::yield_now().await;
            } else if pending {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                mesh.park(id).await;
            }
        }
        setup.stop(ctx.clone()).await;
    });
    CTX.with(|c| *c.borrow_mut() = None);
}

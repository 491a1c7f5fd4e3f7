//! What the transport layer keeps per server and per shard: the connection count and limits
//! ([`Shared`], [`ConnGuard`]), each shard's sessions, links and flush lists
//! ([`TransportLocal`], reached as `ctx.transport()`), and the handle through which the
//! layers above write to a connection ([`ConnHandle`]).
//!
//! Single-owner: a [`TransportLocal`] belongs to its shard thread and is touched only there.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use crate::config::Config;
use crate::error::DisconnectReason;
use crate::proto::sid::Sid;
use crate::shard::{self, ShardCtx, ShardMesh};
use crate::transport::link::{Flush, Link};
use crate::transport::outbox::Out;
use crate::transport::session::{Cmd, UpperFactory};

/// Transport state shared by every shard of one server.
pub(crate) struct Shared {
    pub config: Config,
    /// Open TCP connections, against `max_connections`.
    pub connections: AtomicUsize,
    /// Volatile packets dropped because their recipient was not ready.
    pub volatile_dropped: AtomicU64,
    /// TLS, when `Config::tls` is set: loaded when the server starts listening.
    pub tls: std::sync::OnceLock<Arc<crate::transport::tls::Tls>>,
    /// `allow_request` and the engine's events (`io.engine()`).
    pub hooks: crate::transport::hooks::Hooks,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Shared {
        Shared {
            config,
            connections: AtomicUsize::new(0),
            volatile_dropped: AtomicU64::new(0),
            tls: std::sync::OnceLock::new(),
            hooks: Default::default(),
        }
    }
}

/// Counts an open TCP connection against `max_connections` until dropped. It travels with
/// the connection, including when an upgraded WebSocket moves to its session's shard.
pub(crate) struct ConnGuard(Arc<Shared>);

impl ConnGuard {
    /// Takes a slot, or `None` when the server is at `max_connections`.
    pub(crate) fn acquire(shared: &Arc<Shared>) -> Option<ConnGuard> {
        let n = shared.connections.fetch_add(1, Ordering::AcqRel);
        if n >= shared.config.max_connections {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnGuard(shared.clone()))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        crate::transport::counters::connection_closed();
    }
}

/// The handle a shard keeps on each of its sessions: its link's slot (commands go there).
pub(crate) struct SessionHandle {
    pub slot: usize,
}

/// One shard's transport state. Installed in the shard's context when it starts.
pub(crate) struct TransportLocal {
    pub shared: Arc<Shared>,
    /// Makes the Socket.IO side of each new session (the layer above).
    pub upper: UpperFactory,
    pub sessions: RefCell<AHashMap<Sid, SessionHandle>>,
    /// The write side of each session (see [`crate::transport::link`]).
    pub links: RefCell<slab::Slab<Link>>,
    /// The flusher's dirty and deferred lists.
    pub flush: RefCell<Flush>,
    /// Packets queued for this shard's clients (a plain cell, read by the metrics scrape).
    pub packets_sent: Cell<u64>,
}

impl TransportLocal {
    pub(crate) fn new(shared: Arc<Shared>, upper: UpperFactory) -> TransportLocal {
        TransportLocal {
            shared,
            upper,
            sessions: RefCell::new(AHashMap::new()),
            links: RefCell::new(slab::Slab::new()),
            flush: RefCell::new(Flush::default()),
            packets_sent: Cell::new(0),
        }
    }
}

impl ShardCtx {
    /// This shard's transport state.
    pub(crate) fn transport(&self) -> &TransportLocal {
        self.local::<TransportLocal>()
    }

    /// The server's transport configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.transport().shared.config
    }

    /// Registers a new session.
    pub(crate) fn add_session(&self, sid: Sid, handle: SessionHandle) {
        let n = {
            let mut sessions = self.transport().sessions.borrow_mut();
            sessions.insert(sid, handle);
            sessions.len()
        };
        self.maybe_trim(n);
    }

    /// Forgets a closed session; gives memory back after many have closed.
    pub(crate) fn remove_session(&self, sid: &Sid) {
        let n = {
            let mut sessions = self.transport().sessions.borrow_mut();
            sessions.remove(sid);
            if sessions.is_empty() {
                // Release the table itself too once the shard is empty.
                sessions.shrink_to_fit();
            }
            sessions.len()
        };
        self.maybe_trim(n);
    }
}

/// Closes every session of the shard (`server shutting down`) and gives them a moment to
/// say goodbye.
/// Drains this shard: every session is closed with `server shutting down`, each writing
/// what was queued for it first; returns once all are gone, or at `deadline`.
pub(crate) async fn drain(ctx: Rc<ShardCtx>, deadline: tokio::time::Instant) {
    let sids: Vec<Sid> = ctx.transport().sessions.borrow().keys().copied().collect();
    for sid in sids {
        ctx.transport().send_cmd(&sid, Cmd::Close(DisconnectReason::ServerShuttingDown));
    }
    while !ctx.transport().sessions.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn shutdown(ctx: Rc<ShardCtx>) {
    let sids: Vec<Sid> = ctx.transport().sessions.borrow().keys().copied().collect();
    for sid in sids {
        ctx.transport().send_cmd(&sid, Cmd::Close(DisconnectReason::ServerShuttingDown));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while !ctx.transport().sessions.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The connection a socket is multiplexed on.
pub(crate) struct ConnHandle {
    /// Engine.IO session id.
    pub sid: Sid,
    /// Owning shard.
    pub shard: usize,
    /// The session's link (write side) in its shard's slab.
    pub slot: usize,
    /// The mesh of the server the connection belongs to (to reach its shard).
    pub mesh: Arc<ShardMesh>,
    /// It runs on WebSocket now (set when an upgrade completes).
    pub websocket: std::sync::atomic::AtomicBool,
    /// It started on polling and was upgraded.
    pub upgraded: std::sync::atomic::AtomicBool,
    /// Engine.IO protocol 3 (a socket.io-client 2.x connection, `allow_eio3`).
    pub eio3: bool,
}

impl ConnHandle {
    /// Queues a packet on the connection (see [`ShardCtx::push`] for the slow-consumer
    /// policy). From another thread the packet travels to the owning shard through the
    /// mesh, behind whatever this thread sent there before. Returns false when it was
    /// refused on the spot (it is known only on the owning shard).
    pub(crate) fn send(&self, out: Out) -> bool {
        self.send_as(out, false)
    }

    /// Queues a volatile packet only when the transport is ready for it; otherwise drops it
    /// and counts the drop. Never condemns the connection.
    pub(crate) fn send_volatile(&self, out: Out) -> bool {
        self.send_as(out, true)
    }

    fn send_as(&self, out: Out, volatile: bool) -> bool {
        if let Some(ctx) = shard::current(&self.mesh).filter(|c| c.id == self.shard) {
            return ctx.transport().push(self.slot, self.sid, &out, volatile);
        }
        let (slot, sid, mesh) = (self.slot, self.sid, self.mesh.clone());
        shard::submit_to(&self.mesh, self.shard, move || {
            if let Some(ctx) = shard::current(&mesh) {
                ctx.transport().push(slot, sid, &out, volatile);
            }
        });
        true
    }

    /// Queues on the owning shard, `ctx` (the broadcast path).
    pub(crate) fn push_on(&self, ctx: &ShardCtx, out: &Out, volatile: bool) -> bool {
        ctx.transport().push(self.slot, self.sid, out, volatile)
    }
}

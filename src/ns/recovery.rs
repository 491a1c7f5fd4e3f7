//! Connection state recovery (socket.io's `connectionStateRecovery`) on one server: the
//! replay log each shard keeps of the replayable packets it delivered, the sessions of
//! sockets whose connection dropped, and the restore of one for a client that comes back
//! with its private session id (`pid`) and the offset of the last packet it got.
//!
//! Single-owner, like the rest of a shard's state: each shard's [`RecoveryLocal`] is touched
//! only by that shard; another shard asks it by message and hears back by message.
//!
//! How it fits the engine (docs/recovery.md has the whole story):
//! - A replayable packet (an EVENT, not volatile, not awaiting an ack) is numbered once, by
//!   the shard that issues it ([`Offset`]: issuer, sequence), before it is encoded once; the
//!   offset is its last argument, so every recipient gets the same bytes. Its
//!   [`Replayable`] (the shared encoded packet, its namespace and audience) travels in the
//!   broadcast's one message per shard, and each shard appends it to its log as it delivers
//!   it: a shard's log is the order its own clients got their packets in. A `socket.emit` is
//!   logged only by the socket's shard.
//! - A socket that leaves for a recoverable reason is persisted on its shard. The pid names
//!   the shard where the socket was first created (its "home", as a sid names its shard);
//!   when a restored socket lives or is kept on another shard, that shard tells the home
//!   where it is, so a restore asks one shard and is forwarded at most once. A client that
//!   comes back while its socket is still connected (the old connection half-open) takes it
//!   over: the old connection is closed as dropped, and the request answered once the
//!   socket is kept.
//! - Shards see the broadcasts of different issuers in different interleavings, but each
//!   issuer's in the same order (its lanes are FIFO). The holder of a session answers with
//!   the packets after the offset in its log and how far it has seen each issuer's
//!   sequence; the shard the client reconnected to adds what it has seen beyond that, and
//!   skips, live, what the holder had and it has not received yet. So the replay has every
//!   missed packet once, each issuer's in order, and live traffic follows with no gap and no
//!   duplicate.
//!
//! Across servers (the Redis Streams adapter) none of this is used: the stream is the log
//! and Redis keeps the sessions ([`crate::ns::cluster_recovery`]); the seams are where an
//! offset is made (`broadcast::encode`, `Socket::emit`), where a session is kept
//! ([`ShardCtx::recovery_on_closed`]) and where a restore is asked (the client's CONNECT).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use serde_json::Value;
use smallvec::SmallVec;

use crate::config::Config;
use crate::error::DisconnectReason;
use crate::ns::cluster_recovery::{ClusterLog, ClusterSession};
use crate::ns::socket::{lock, Socket};
use crate::ns::Room;
use crate::proto::offset::{Offset, OffsetTag};
use crate::proto::sid::Sid;
use crate::shard::{self, ShardCtx};
use crate::transport::outbox::Out;
use crate::transport::session::Cmd;

/// Counters of connection state recovery (see [`crate::Server::recovery_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Sessions kept for a socket whose connection dropped.
    pub persisted: u64,
    /// Clients that came back and got their session and missed packets.
    pub recovered: u64,
    /// Clients that asked to recover (a string `pid` and `offset`) and got a new session
    /// instead: unknown, forged or expired pid, unknown offset, or the cases below.
    pub not_recovered: u64,
    /// Of those, the clients whose missed packets were no longer all there because the
    /// replay log's cap (`recovery_max_packets`, `recovery_max_bytes`) had dropped some, or
    /// were more than a connection's outbox may hold (`max_outbox`, `max_outbox_bytes`).
    pub not_recovered_cap: u64,
    /// Sockets still connected when their client came back on a new connection (the old
    /// one half-open: the server had not noticed the drop yet): closed as dropped
    /// (`transport close`), then restored.
    pub taken_over: u64,
}

/// What every shard of a server shares for recovery: the settings, the offset tag, the
/// counter of direct emits and the statistics.
pub(crate) struct RecoveryShared {
    pub window: Duration,
    pub skip_middlewares: bool,
    pub tag: OffsetTag,
    /// Numbers `socket.emit` packets, which may be encoded on any thread.
    direct_seq: AtomicU64,
    persisted: AtomicU64,
    recovered: AtomicU64,
    not_recovered: AtomicU64,
    not_recovered_cap: AtomicU64,
    taken_over: AtomicU64,
    /// Recovery across servers: the cluster adapter that keeps the packets and sessions
    /// (set before the server serves). When set, the per-shard logs are not used.
    cluster: std::sync::OnceLock<Arc<dyn ClusterLog>>,
}

impl RecoveryShared {
    /// The shared recovery state, when `config` turns recovery on.
    pub(crate) fn new(config: &Config) -> Option<RecoveryShared> {
        let r = config.connection_state_recovery?;
        Some(RecoveryShared {
            window: r.max_disconnection_duration,
            skip_middlewares: r.skip_middlewares,
            tag: OffsetTag::generate(),
            direct_seq: AtomicU64::new(1),
            persisted: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            not_recovered_cap: AtomicU64::new(0),
            taken_over: AtomicU64::new(0),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Makes recovery go across servers through `log` (once, before the server serves).
    pub(crate) fn set_cluster(&self, log: Arc<dyn ClusterLog>) {
        let _ = self.cluster.set(log);
    }

    /// The cluster adapter recovery goes through, when it goes across servers.
    pub(crate) fn cluster(&self) -> Option<&Arc<dyn ClusterLog>> {
        self.cluster.get()
    }

    pub(crate) fn note_persisted(&self) {
        self.persisted.fetch_add(1, Ordering::Relaxed);
    }

    /// The id of the next `socket.emit` packet.
    pub(crate) fn next_direct(&self) -> Offset {
        Offset { issuer: Offset::DIRECT, seq: self.direct_seq.fetch_add(1, Ordering::Relaxed) }
    }

    pub(crate) fn stats(&self) -> RecoveryStats {
        RecoveryStats {
            persisted: self.persisted.load(Ordering::Relaxed),
            recovered: self.recovered.load(Ordering::Relaxed),
            not_recovered: self.not_recovered.load(Ordering::Relaxed),
            not_recovered_cap: self.not_recovered_cap.load(Ordering::Relaxed),
            taken_over: self.taken_over.load(Ordering::Relaxed),
        }
    }

    /// Counts a restore that fell back to a new session.
    pub(crate) fn refused(&self, cap: bool) {
        self.not_recovered.fetch_add(1, Ordering::Relaxed);
        if cap {
            self.not_recovered_cap.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn note_recovered(&self) {
        self.recovered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The disconnect reasons after which socket.io keeps a session (its
/// `RECOVERABLE_DISCONNECT_REASONS`): the connection failed or was closed under the socket,
/// not by either side on purpose. `slow consumer` is not one: replaying the backlog a client
/// could not take would only fill its outbox again.
pub(crate) fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportError
            | DisconnectReason::TransportClose
            | DisconnectReason::ForcedClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ServerShuttingDown
            | DisconnectReason::ForcedServerClose
    )
}

/// Which sockets a replayable packet was for.
#[derive(Debug)]
pub(crate) enum Audience {
    /// A broadcast: the sockets in any of `rooms` (all when empty) and in none of `except`.
    Rooms { rooms: SmallVec<[Room; 2]>, except: SmallVec<[Room; 2]> },
    /// `socket.emit` to this socket alone.
    Socket(Sid),
}

/// One replayable packet, made once per broadcast (or direct emit) and shared by every
/// shard's log: the encoded packet itself, not a copy.
#[derive(Debug)]
pub(crate) struct Replayable {
    pub id: Offset,
    pub nsp: Arc<str>,
    pub to: Audience,
    pub packet: Out,
    /// When it was emitted: it leaves the logs `max_disconnection_duration` later.
    pub at: Instant,
}

impl Replayable {
    /// Whether socket `sid` of namespace `nsp`, in `rooms`, was (or would have been) sent
    /// this packet: socket.io's `shouldIncludePacket`.
    fn reaches(&self, nsp: &str, sid: Sid, rooms: &[Room]) -> bool {
        if *self.nsp != *nsp {
            return false;
        }
        match &self.to {
            Audience::Socket(s) => *s == sid,
            Audience::Rooms { rooms: to, except } => {
                (to.is_empty() || rooms.iter().any(|r| to.contains(r)))
                    && !rooms.iter().any(|r| except.contains(r))
            }
        }
    }
}

/// A socket kept after its connection dropped, as socket.io's session `{sid, pid, rooms,
/// data}`.
#[derive(Debug)]
pub(crate) struct Persisted {
    pub sid: Sid,
    pub pid: Sid,
    pub nsp: Arc<str>,
    /// Its rooms, its own id included.
    pub rooms: Vec<Room>,
    pub data: Option<Box<Value>>,
    at: Instant,
    /// Set when the socket had been restored on this shard (see [`Restored`]).
    restored: Option<Restored>,
}

/// What a shard keeps about a socket it restored, for its live packets and its next
/// restore.
#[derive(Debug, Clone)]
struct Restored {
    /// Where, in this shard's log, the copies of the packets replayed to it begin. Its
    /// replay was not in this log's order, so an offset before this point says nothing.
    copies_from: u64,
    /// Per issuer: broadcasts up to this number were in its replay, and any of them that
    /// reaches this shard after the restore is not delivered to it again, nor replayed by
    /// its next restore. `None` when there were none.
    skip: Option<Vec<u64>>,
}

/// Packets to replay, in order.
type Packets = Vec<Arc<Replayable>>;

/// One entry of a shard's log.
struct Entry {
    r: Arc<Replayable>,
    /// A copy of a packet replayed to this socket when it was restored here (see
    /// [`Restored`]): only its own next restore reads it.
    only: Option<Sid>,
}

/// A shard's replay log: the replayable packets in the order this shard delivered them,
/// bounded by the window and by the cap.
#[derive(Default)]
struct Log {
    entries: VecDeque<Entry>,
    /// Absolute index of `entries[0]` (indexes keep growing as the front is dropped).
    base: u64,
    /// Where each packet delivered here is (absolute index).
    index: AHashMap<Offset, u64>,
    /// Where each copy made for a restored socket is.
    copies: AHashMap<(Sid, Offset), u64>,
    /// Entries that are not copies, and the bytes of their packets (their wire size):
    /// what the cap bounds. Copies share the packets and cost a pointer each.
    originals: usize,
    bytes: usize,
    /// Per issuer shard: the highest sequence number delivered here. Every shard gets every
    /// broadcast, each issuer's in order, so this says exactly which ones it has had.
    last_seen: Vec<u64>,
    /// Per issuer (all 256): the highest sequence number the cap dropped, to tell a restore
    /// refused because of the cap from one with an unknown offset.
    cap_floor: Vec<u64>,
    /// Where the entries that can reach a socket are, by what they are addressed to
    /// (absolute indexes, ascending): a restore reads the entries for the session's rooms
    /// and its id, and those to everyone, not every entry after its offset (10,000 clients
    /// coming back at once after a second away would otherwise each scan the whole second
    /// of every room's traffic).
    by_room: AHashMap<Room, VecDeque<u64>>,
    by_sid: AHashMap<Sid, VecDeque<u64>>,
    to_all: VecDeque<u64>,
}

/// What an entry is indexed under.
enum Key<'a> {
    Room(&'a Room),
    Sid(Sid),
    All,
}

/// The keys of entry `e` in the log's indexes (each once).
fn keys(e: &Entry) -> SmallVec<[Key<'_>; 2]> {
    match (e.only, &e.r.to) {
        (Some(sid), _) => smallvec::smallvec![Key::Sid(sid)],
        (None, Audience::Socket(sid)) => smallvec::smallvec![Key::Sid(*sid)],
        (None, Audience::Rooms { rooms, .. }) if rooms.is_empty() => smallvec::smallvec![Key::All],
        (None, Audience::Rooms { rooms, .. }) => {
            let mut out: SmallVec<[Key<'_>; 2]> = SmallVec::new();
            for (i, r) in rooms.iter().enumerate() {
                if !rooms[..i].contains(r) {
                    out.push(Key::Room(r));
                }
            }
            out
        }
    }
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn push(&mut self, r: Arc<Replayable>, only: Option<Sid>) {
        let abs = self.end();
        match only {
            Some(sid) => {
                self.copies.insert((sid, r.id), abs);
            }
            None => {
                self.index.insert(r.id, abs);
            }
        }
        if only.is_none() {
            self.originals += 1;
            self.bytes += r.packet.wire_len();
        }
        let e = Entry { r, only };
        for k in keys(&e) {
            match k {
                Key::Room(room) => self.by_room.entry(room.clone()).or_default().push_back(abs),
                Key::Sid(sid) => self.by_sid.entry(sid).or_default().push_back(abs),
                Key::All => self.to_all.push_back(abs),
            }
        }
        self.entries.push_back(e);
    }

    /// Appends a packet being delivered here (not a copy), noting how far its issuer's
    /// sequence has come.
    fn deliver(&mut self, r: Arc<Replayable>) {
        let issuer = usize::from(r.id.issuer);
        if r.id.issuer != Offset::DIRECT {
            if self.last_seen.len() <= issuer {
                self.last_seen.resize(issuer + 1, 0);
            }
            self.last_seen[issuer] = r.id.seq;
        }
        self.push(r, None);
    }

    /// Drops the oldest entry; `cap` when the cap made room.
    fn pop(&mut self, cap: bool) {
        let Some(e) = self.entries.pop_front() else { return };
        let abs = self.base;
        self.base += 1;
        // The oldest entry is at the front of each index it is in.
        for k in keys(&e) {
            match k {
                Key::Room(room) => {
                    if let Some(d) = self.by_room.get_mut(room) {
                        if d.front() == Some(&abs) {
                            d.pop_front();
                        }
                        if d.is_empty() {
                            self.by_room.remove(room);
                        }
                    }
                }
                Key::Sid(sid) => {
                    if let Some(d) = self.by_sid.get_mut(&sid) {
                        if d.front() == Some(&abs) {
                            d.pop_front();
                        }
                        if d.is_empty() {
                            self.by_sid.remove(&sid);
                        }
                    }
                }
                Key::All => {
                    if self.to_all.front() == Some(&abs) {
                        self.to_all.pop_front();
                    }
                }
            }
        }
        if e.only.is_none() {
            self.originals -= 1;
            self.bytes -= e.r.packet.wire_len();
        }
        // A later copy of the same packet keeps its own place.
        match e.only {
            Some(sid) => {
                if self.copies.get(&(sid, e.r.id)) == Some(&abs) {
                    self.copies.remove(&(sid, e.r.id));
                }
            }
            None => {
                if self.index.get(&e.r.id) == Some(&abs) {
                    self.index.remove(&e.r.id);
                }
            }
        }
        if cap && e.only.is_none() {
            if self.cap_floor.is_empty() {
                self.cap_floor = vec![0; 256];
            }
            let floor = &mut self.cap_floor[usize::from(e.r.id.issuer)];
            *floor = (*floor).max(e.r.id.seq);
        }
    }

    /// Drops entries past the cap, then those emitted before `expired`.
    fn enforce(&mut self, max_packets: usize, max_bytes: usize, expired: Option<Instant>) {
        while self.originals > max_packets || self.bytes > max_bytes {
            self.pop(true);
        }
        let Some(expired) = expired else { return };
        while self.entries.front().is_some_and(|e| e.r.at < expired) {
            self.pop(false);
        }
    }

    /// Whether the cap dropped packet `o`.
    fn capped(&self, o: Offset) -> bool {
        self.cap_floor.get(usize::from(o.issuer)).is_some_and(|&f| o.seq <= f)
    }

    fn seen(&self, issuer: usize) -> u64 {
        self.last_seen.get(issuer).copied().unwrap_or(0)
    }

    /// The holder's part of a restore, for `session` whose client got the entry at `at`
    /// last: the packets after it that reach the session, in this log's order, and how far
    /// this log has seen each of the `n` issuers' sequences (at least as far as the
    /// session's previous replay went).
    fn missed_after(
        &self,
        at: u64,
        session: &Persisted,
        n: usize,
    ) -> Result<(Packets, Vec<u64>), bool> {
        let skip = session.restored.as_ref().and_then(|h| h.skip.as_deref());
        let mut missed = Vec::new();
        // Entries that left the log leave its maps, so `at` is at or after `base`.
        (at + 1).checked_sub(self.base).ok_or(true)?;
        // The entries after `at` that can reach the session, in the log's order.
        let from = at + 1;
        let mut at_list: Vec<u64> = Vec::new();
        let mut add = |d: &VecDeque<u64>| {
            let i = d.partition_point(|&p| p < from);
            at_list.extend(d.range(i..).copied());
        };
        add(&self.to_all);
        if let Some(d) = self.by_sid.get(&session.sid) {
            add(d);
        }
        for r in &session.rooms {
            if let Some(d) = self.by_room.get(r) {
                add(d);
            }
        }
        at_list.sort_unstable();
        at_list.dedup();
        let entries = at_list
            .iter()
            .filter_map(|&p| self.entries.get(usize::try_from(p.checked_sub(self.base)?).ok()?));
        for e in entries {
            match e.only {
                Some(sid) if sid == session.sid => missed.push(e.r.clone()),
                Some(_) => {}
                None => {
                    // A broadcast in the previous replay, arrived here after it.
                    let late = skip.is_some_and(|s| {
                        e.r.id.issuer != Offset::DIRECT
                            && s.get(usize::from(e.r.id.issuer)).is_some_and(|&k| e.r.id.seq <= k)
                    });
                    if !late && e.r.reaches(&session.nsp, session.sid, &session.rooms) {
                        missed.push(e.r.clone());
                    }
                }
            }
        }
        let seen = (0..n)
            .map(|i| {
                let k = skip.and_then(|s| s.get(i).copied()).unwrap_or(0);
                self.seen(i).max(k)
            })
            .collect();
        Ok((missed, seen))
    }

    /// The reconnecting shard's part of a restore, given how far the holder had seen each
    /// issuer (`seen`): the broadcasts this log has beyond that which reach the session, in
    /// this log's order, and per issuer how far to skip live broadcasts (those the holder
    /// had and this shard has not received yet). `Err(true)` when some of them already left
    /// this log.
    fn beyond(
        &self,
        session: &Persisted,
        seen: &[u64],
        n: usize,
    ) -> Result<(Packets, Option<Vec<u64>>), bool> {
        let n = seen.len().min(n);
        // Each issuer's sequence arrives in order, so what is beyond `seen` is the newest
        // of each here: counted down from the end.
        let mut left: u64 = (0..n).map(|i| self.seen(i).saturating_sub(seen[i])).sum();
        let mut extra = Vec::new();
        for e in self.entries.iter().rev() {
            if left == 0 {
                break;
            }
            let i = usize::from(e.r.id.issuer);
            if e.only.is_some() || i >= n || e.r.id.seq <= seen[i] {
                continue;
            }
            left -= 1;
            if e.r.reaches(&session.nsp, session.sid, &session.rooms) {
                extra.push(e.r.clone());
            }
        }
        if left > 0 {
            return Err(true);
        }
        extra.reverse();
        let skip: Vec<u64> =
            (0..n).map(|i| if seen[i] > self.seen(i) { seen[i] } else { 0 }).collect();
        let skip = skip.iter().any(|&k| k > 0).then_some(skip);
        Ok((extra, skip))
    }
}

/// A shard's recovery state. Installed in the shard's namespace state (`ctx.ns().recovery`).
#[derive(Default)]
pub(crate) struct RecoveryLocal {
    /// Numbers the broadcasts this shard issues (starting at 1; 0 means none seen).
    next_seq: Cell<u64>,
    log: RefCell<Log>,
    /// Persisted sessions held here, by pid.
    sessions: RefCell<AHashMap<Sid, Persisted>>,
    /// For pids whose home is this shard: the shard that holds the session now, or has the
    /// socket connected (`None`: no expiry).
    pointers: RefCell<AHashMap<Sid, (usize, Option<Instant>)>>,
    /// The connected sockets of this shard that have a pid, by pid: a client that comes
    /// back while its old connection is still open here takes its socket over.
    live: RefCell<AHashMap<Sid, Socket>>,
    /// Restore requests waiting for the socket they take over to close.
    waiting: RefCell<AHashMap<Sid, Ask>>,
    /// Sockets restored on this shard and still connected, by socket id.
    restored: RefCell<AHashMap<Sid, Restored>>,
    /// The sockets of `restored` that still skip late broadcasts: checked on every
    /// delivery, so the usual case (none) is one length check.
    skipping: RefCell<Vec<Sid>>,
    /// Live sessions across servers: the sockets of this shard whose session changed
    /// (connected, joined, left, data set) since the last write, by namespace and id.
    live_dirty: RefCell<ahash::AHashSet<(Arc<str>, Sid)>>,
    /// When every live session of this shard was last written again.
    live_refreshed: Cell<Option<Instant>>,
}

impl RecoveryLocal {
    /// The sizes of this shard's recovery tables (see [`crate::ns::local::NsLocal`]).
    pub(crate) fn table_sizes(&self, out: &mut Vec<(&'static str, u64)>) {
        let log = self.log.borrow();
        let n = |v: usize| v as u64;
        out.push(("recovery_log", n(log.entries.len())));
        out.push(("recovery_log_index", n(log.index.len() + log.copies.len())));
        out.push(("recovery_log_keys", n(log.by_room.len() + log.by_sid.len())));
        out.push(("recovery_sessions", n(self.sessions.borrow().len())));
        out.push(("recovery_pointers", n(self.pointers.borrow().len())));
        out.push(("recovery_live", n(self.live.borrow().len())));
        out.push(("recovery_waiting", n(self.waiting.borrow().len())));
        out.push((
            "recovery_restored",
            n(self.restored.borrow().len() + self.skipping.borrow().len()),
        ));
        out.push(("recovery_live_dirty", n(self.live_dirty.borrow().len())));
    }
}

/// A restore request: from the shard the client reconnected to, for the session of `pid`.
pub(crate) struct Ask {
    pub pid: Sid,
    pub offset: Offset,
    pub nsp: Arc<str>,
    /// Where the answer goes: the shard and the Engine.IO session of the connection.
    pub reply_shard: usize,
    pub conn: Sid,
}

/// The answer to an [`Ask`], delivered to the connection's session as a command for its
/// Socket.IO client.
pub(crate) struct Answer {
    pub nsp: Arc<str>,
    /// The session, or why not: `true` when the cap had dropped packets it missed.
    pub found: Result<Found, bool>,
}

/// A session found, with what its holder had for it.
pub(crate) struct Found {
    pub session: Persisted,
    /// The packets after the offset in the holder's log that reach the session, in that
    /// log's order.
    missed: Vec<Arc<Replayable>>,
    /// How far the holder had seen each issuer's sequence (at least as far as the session
    /// had already been replayed).
    seen: Vec<u64>,
}

/// What a restore gives the socket: its session and the packets to write before CONNECT.
pub(crate) struct Restore {
    pub session: Persisted,
    pub replay: Vec<Arc<Replayable>>,
    skip: Option<Vec<u64>>,
    /// Across servers, the packets to write instead (`replay` is empty then): the
    /// stream's, then those delivered here while it was read.
    pub packets: Vec<Out>,
}

impl Restore {
    /// A restore across servers: session `s` of `nsp`, and the packets it missed.
    pub(crate) fn from_cluster(s: ClusterSession, nsp: Arc<str>, packets: Vec<Out>) -> Restore {
        let session = Persisted {
            sid: s.sid,
            pid: s.pid,
            nsp,
            rooms: s.rooms,
            data: s.data,
            at: Instant::now(),
            restored: None,
        };
        Restore { session, replay: Vec::new(), skip: None, packets }
    }

    /// Whether the packets fit a connection's outbox (`max_outbox` frames, with room to
    /// spare, and `max_outbox_bytes`).
    pub(crate) fn fits(packets: &[&Out], cfg: &Config) -> bool {
        let frames: usize = packets.iter().map(|p| p.messages()).sum();
        let bytes: usize = packets.iter().map(|p| p.wire_len()).sum();
        frames + 16 <= cfg.max_outbox && bytes <= cfg.max_outbox_bytes
    }
}

impl ShardCtx {
    fn recovery(&self) -> &RecoveryLocal {
        &self.ns().recovery
    }

    /// The next number in this shard's sequence of broadcasts. Only called on this shard.
    pub(crate) fn next_broadcast_offset(&self) -> Offset {
        let r = self.recovery();
        let seq = r.next_seq.get() + 1;
        r.next_seq.set(seq);
        Offset { issuer: self.id as u8, seq }
    }

    /// This shard's replay log and kept sessions, for the metrics: (packets logged, their
    /// bytes on the wire, sessions kept for clients that may come back).
    pub(crate) fn recovery_sizes(&self) -> (u64, u64, u64) {
        let r = self.recovery();
        let log = r.log.borrow();
        (log.originals as u64, log.bytes as u64, r.sessions.borrow().len() as u64)
    }

    fn recovery_limits(&self) -> (usize, usize, Duration) {
        let c = self.config();
        let window =
            c.connection_state_recovery.map_or(Duration::ZERO, |r| r.max_disconnection_duration);
        (c.recovery_max_packets, c.recovery_max_bytes, window)
    }

    /// Appends a packet this shard is delivering to its log (before it is queued on any
    /// link, in the same turn). Only called on this shard.
    pub(crate) fn log_replayable(&self, r: &Arc<Replayable>) {
        let (max_packets, max_bytes, window) = self.recovery_limits();
        let mut log = self.recovery().log.borrow_mut();
        log.deliver(r.clone());
        log.enforce(max_packets, max_bytes, Instant::now().checked_sub(window));
    }

    /// The sockets restored here that must not get broadcast `r` live: it was in their
    /// replay. Empty (and one load) unless a restore is that recent.
    pub(crate) fn replayed_already(&self, r: &Replayable) -> SmallVec<[Sid; 2]> {
        let rec = self.recovery();
        let mut out = SmallVec::new();
        if r.id.issuer == Offset::DIRECT || rec.skipping.borrow().is_empty() {
            return out;
        }
        let issuer = usize::from(r.id.issuer);
        let log = rec.log.borrow();
        let restored = rec.restored.borrow();
        rec.skipping.borrow_mut().retain(|sid| {
            let Some(h) = restored.get(sid) else { return false };
            let Some(skip) = &h.skip else { return false };
            if skip.get(issuer).is_some_and(|&s| r.id.seq <= s) {
                out.push(*sid);
            }
            // Once this shard has seen everything it skips (counting the packet being
            // delivered), it never needs to skip live again. The vector stays: the
            // socket's next restore leaves those late arrivals out too.
            let passed = skip.iter().enumerate().all(|(i, &s)| {
                let seen = if i == issuer { log.seen(i).max(r.id.seq) } else { log.seen(i) };
                seen >= s
            });
            !passed
        });
        out
    }

    /// A socket left: keeps its session when recovery is on and the reason is
    /// recoverable, and forgets what was kept about its restore. Called on the socket's
    /// shard, before its memberships are removed.
    pub(crate) fn recovery_on_closed(&self, socket: &Socket, reason: DisconnectReason) {
        let rec = self.recovery();
        let restored = rec.restored.borrow_mut().remove(&socket.sid());
        if restored.is_some() {
            rec.skipping.borrow_mut().retain(|s| *s != socket.sid());
        }
        let (Some(shared), Some(pid)) = (socket.0.server.recovery(), socket.pid()) else { return };
        if let Some(cluster) = shared.cluster() {
            rec.live_dirty.borrow_mut().remove(&(socket.0.nsp.name.clone(), socket.sid()));
            if self.live_sessions() && !recoverable(reason) {
                cluster.drop_live(pid);
            }
            if recoverable(reason) {
                cluster.persist(ClusterSession {
                    sid: socket.sid(),
                    pid,
                    rooms: lock(&socket.0.rooms).to_vec(),
                    data: socket.data_box(),
                });
                shared.note_persisted();
            }
            return;
        }
        rec.live.borrow_mut().remove(&pid);
        let waiting = rec.waiting.borrow_mut().remove(&pid);
        let home = usize::from(pid.shard());
        let away = home != self.id && home < self.mesh.len();
        if !recoverable(reason) {
            if away {
                self.point_home(pid, None);
            }
            if let Some(ask) = waiting {
                self.reply(ask, Err(false));
            }
            return;
        }
        let session = Persisted {
            sid: socket.sid(),
            pid,
            nsp: socket.0.nsp.name.clone(),
            rooms: lock(&socket.0.rooms).to_vec(),
            data: socket.data_box(),
            at: Instant::now(),
            restored,
        };
        rec.sessions.borrow_mut().insert(pid, session);
        shared.persisted.fetch_add(1, Ordering::Relaxed);
        if away {
            // (No expiry when the window is too long for the clock to count.)
            let until = Instant::now().checked_add(shared.window);
            self.point_home(pid, Some((self.id, until)));
        }
        if let Some(ask) = waiting {
            // The client that took the socket over gets it now.
            self.answer_here(ask);
        }
    }

    /// A socket with a pid connected here (new or restored): a client coming back while
    /// this connection is still open finds it. Only called on this shard.
    pub(crate) fn recovery_on_connected(&self, socket: &Socket) {
        let Some(pid) = socket.pid() else { return };
        if socket.0.server.recovery().is_some_and(|r| r.cluster().is_some()) {
            self.note_live_change(&socket.0.nsp.name, socket.sid());
            return;
        }
        self.recovery().live.borrow_mut().insert(pid, socket.clone());
        let home = usize::from(pid.shard());
        if home != self.id && home < self.mesh.len() {
            self.point_home(pid, Some((self.id, None)));
        }
    }

    /// Tells the home shard of `pid` where its session or socket is (`None`: forget what it
    /// knows from this shard).
    fn point_home(&self, pid: Sid, to: Option<(usize, Option<Instant>)>) {
        let (mesh, from) = (self.mesh.clone(), self.id);
        shard::submit_to(&self.mesh, usize::from(pid.shard()), move || {
            let Some(ctx) = shard::current(&mesh) else { return };
            let mut pointers = ctx.recovery().pointers.borrow_mut();
            match to {
                Some(p) => {
                    pointers.insert(pid, p);
                }
                None => {
                    if pointers.get(&pid).is_some_and(|p| p.0 == from) {
                        pointers.remove(&pid);
                    }
                }
            }
        });
    }

    /// Sends a restore request to the home shard of its pid (at once when that is this
    /// shard); the answer comes back to the connection's session as a command.
    pub(crate) fn ask_restore(&self, ask: Ask) {
        let home = usize::from(ask.pid.shard());
        let mesh = self.mesh.clone();
        shard::submit_to(&self.mesh, home, move || {
            if let Some(ctx) = shard::current(&mesh) {
                ctx.answer_at_home(ask);
            }
        });
    }

    /// On the pid's home: answers from here, or forwards to the shard that holds the
    /// session now.
    fn answer_at_home(&self, ask: Ask) {
        let rec = self.recovery();
        let here = rec.sessions.borrow().contains_key(&ask.pid)
            || rec.live.borrow().contains_key(&ask.pid);
        if !here {
            let pointer = rec.pointers.borrow().get(&ask.pid).copied();
            if let Some((holder, until)) = pointer {
                if holder != self.id && until.is_none_or(|u| u > Instant::now()) {
                    let mesh = self.mesh.clone();
                    shard::submit_to(&self.mesh, holder, move || {
                        if let Some(ctx) = shard::current(&mesh) {
                            ctx.answer_here(ask);
                        }
                    });
                    return;
                }
            }
        }
        self.answer_here(ask);
    }

    /// On the shard that may hold the session: takes it (a session is restored once) and
    /// answers with the packets after the offset. When the socket is still connected here
    /// instead, its client came back before this server noticed the drop (the old
    /// connection is half-open): the connection is closed as dropped, and the answer comes
    /// once the socket is kept.
    fn answer_here(&self, ask: Ask) {
        let rec = self.recovery();
        let live = if rec.sessions.borrow().contains_key(&ask.pid) {
            None
        } else {
            rec.live.borrow().get(&ask.pid).filter(|s| *s.0.nsp.name == *ask.nsp).cloned()
        };
        if let Some(old) = live {
            let conn = old.0.conn.sid;
            if self.transport().send_cmd(&conn, Cmd::Close(DisconnectReason::TransportClose)) {
                if let Some(shared) = old.0.server.recovery() {
                    shared.taken_over.fetch_add(1, Ordering::Relaxed);
                }
                let earlier = rec.waiting.borrow_mut().insert(ask.pid, ask);
                if let Some(earlier) = earlier {
                    // Two clients came back with the same pid: the later one gets it.
                    self.reply(earlier, Err(false));
                }
                return;
            }
        }
        let found = self.find(&ask);
        self.reply(ask, found);
    }

    /// Sends the answer to the connection that asked.
    fn reply(&self, ask: Ask, found: Result<Found, bool>) {
        let (mesh, conn, nsp) = (self.mesh.clone(), ask.conn, ask.nsp);
        shard::submit_to(&self.mesh, ask.reply_shard, move || {
            if let Some(ctx) = shard::current(&mesh) {
                let answer = Answer { nsp, found };
                ctx.transport().send_cmd(&conn, Cmd::Upper(Box::new(answer)));
            }
        });
    }

    fn find(&self, ask: &Ask) -> Result<Found, bool> {
        let rec = self.recovery();
        let session = rec.sessions.borrow_mut().remove(&ask.pid).ok_or(false)?;
        let window = self.recovery_limits().2;
        let expired = session.at.checked_add(window).is_some_and(|end| end < Instant::now());
        if *session.nsp != *ask.nsp || expired {
            return Err(false);
        }
        let log = rec.log.borrow();
        let at = log
            .copies
            .get(&(session.sid, ask.offset))
            .or_else(|| log.index.get(&ask.offset))
            .copied()
            .filter(|&at| session.restored.as_ref().is_none_or(|h| at >= h.copies_from))
            .ok_or_else(|| log.capped(ask.offset))?;
        let (missed, seen) = log.missed_after(at, &session, self.mesh.len())?;
        Ok(Found { session, missed, seen })
    }

    /// On the shard the client reconnected to, when the holder's answer arrives: the
    /// replay (the holder's packets, then those this shard has seen beyond what the holder
    /// had) and what to skip live. `Err(true)` when some of them are gone (the cap) or
    /// there are more than the connection's outbox may hold. Changes nothing: the
    /// socket's middlewares may still refuse it.
    pub(crate) fn prepare_restore(&self, found: Found) -> Result<Restore, bool> {
        let Found { session, mut missed, seen } = found;
        let log = self.recovery().log.borrow();
        let (extra, skip) = log.beyond(&session, &seen, self.mesh.len())?;
        missed.extend(extra);
        let packets: Vec<&Out> = missed.iter().map(|r| &r.packet).collect();
        if !Restore::fits(&packets, self.config()) {
            return Err(true);
        }
        Ok(Restore { session, replay: missed, skip, packets: Vec::new() })
    }

    /// The restore is accepted: copies of the replay go to this shard's log (so the
    /// socket's next restore finds its offsets in the order it got them), and the late
    /// broadcasts to skip are registered. In the same turn as the replay is queued and the
    /// socket joins its rooms.
    pub(crate) fn commit_restore(&self, restore: &mut Restore) {
        let rec = self.recovery();
        let sid = restore.session.sid;
        let copies_from = {
            let mut log = rec.log.borrow_mut();
            let from = log.end();
            for r in &restore.replay {
                log.push(r.clone(), Some(sid));
            }
            from
        };
        let skip = restore.skip.take();
        let skips = skip.is_some();
        let old = rec.restored.borrow_mut().insert(sid, Restored { copies_from, skip });
        let mut skipping = rec.skipping.borrow_mut();
        if old.is_some() {
            skipping.retain(|s| *s != sid);
        }
        if skips {
            skipping.push(sid);
        }
    }

    /// Whether connected sockets' sessions are kept in Redis too (live sessions).
    pub(crate) fn live_sessions(&self) -> bool {
        self.config().connection_state_recovery.is_some_and(|r| r.live_sessions)
    }

    /// Live sessions: socket `sid` of `nsp` (on this shard) changed what its session holds;
    /// it is written within a second. One set insert, and nothing when they are off.
    pub(crate) fn note_live_change(&self, nsp: &Arc<str>, sid: Sid) {
        if self.live_sessions() {
            self.recovery().live_dirty.borrow_mut().insert((nsp.clone(), sid));
        }
    }

    /// Live sessions: writes the sessions that changed, and every session of this shard
    /// when the refresh interval passed, in one command to the adapter.
    fn flush_live(&self) {
        if !self.live_sessions() {
            return;
        }
        let rec = self.recovery();
        let now = Instant::now();
        let window = self.recovery_limits().2;
        let all = rec
            .live_refreshed
            .get()
            .is_none_or(|t| now.duration_since(t) >= super::cluster_recovery::live_refresh(window));
        let session = |socket: &Socket| {
            socket.pid().map(|pid| ClusterSession {
                sid: socket.sid(),
                pid,
                rooms: lock(&socket.0.rooms).to_vec(),
                data: socket.data_box(),
            })
        };
        let nsps = self.ns().nsps.borrow();
        // The adapter, from any socket's server (a shard with no socket has nothing to write).
        let Some(cluster) = nsps
            .values()
            .flat_map(|n| n.sockets.values())
            .find_map(|e| e.socket.0.server.recovery().and_then(|r| r.cluster()).cloned())
        else {
            rec.live_dirty.borrow_mut().clear();
            return;
        };
        let sessions: Vec<ClusterSession> = if all {
            rec.live_refreshed.set(Some(now));
            rec.live_dirty.borrow_mut().clear();
            nsps.values()
                .flat_map(|n| n.sockets.values())
                .filter_map(|e| session(&e.socket))
                .collect()
        } else {
            let dirty: Vec<(Arc<str>, Sid)> = rec.live_dirty.borrow_mut().drain().collect();
            dirty
                .iter()
                .filter_map(|(nsp, sid)| nsps.get(nsp)?.sockets.get(sid))
                .filter_map(|e| session(&e.socket))
                .collect()
        };
        drop(nsps);
        cluster.keep_live(sessions);
    }

    /// Drops what has outlived the window: old packets, sessions and pointers. Run about
    /// once a second on each shard, so memory is given back when traffic stops.
    pub(crate) fn expire_recovery(&self) {
        let (max_packets, max_bytes, window) = self.recovery_limits();
        let now = Instant::now();
        let Some(expired) = now.checked_sub(window) else { return };
        let rec = self.recovery();
        rec.log.borrow_mut().enforce(max_packets, max_bytes, Some(expired));
        rec.sessions.borrow_mut().retain(|_, s| s.at >= expired);
        rec.pointers.borrow_mut().retain(|_, p| p.1.is_none_or(|u| u > now));
    }
}

/// Expires old recovery state on shard `ctx` about once a second, for the shard's life.
pub(crate) async fn sweeper(ctx: Rc<ShardCtx>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ctx.expire_recovery();
        ctx.flush_live();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::json::Verbatim;
    use crate::transport::outbox::Encoding;

    fn packet(text: &str) -> Out {
        let v = [Value::String(text.to_owned())];
        Out::event("/", "e", &v, &Verbatim::default(), Vec::new(), None, Encoding::default())
    }

    fn rooms(names: &[&str]) -> SmallVec<[Room; 2]> {
        names.iter().map(|r| Room::from(*r)).collect()
    }

    fn replayable(issuer: u8, seq: u64, to: Audience, at: Instant) -> Arc<Replayable> {
        Arc::new(Replayable {
            id: Offset { issuer, seq },
            nsp: Arc::from("/"),
            to,
            packet: packet("x"),
            at,
        })
    }

    #[test]
    fn audiences_as_socket_io_includes_packets() {
        let sid = Sid::generate(0);
        let other = Sid::generate(0);
        let session: Vec<Room> = vec![Room::from(sid.as_str()), Room::from("r1")];
        let now = Instant::now();
        let to = |r: &[&str], e: &[&str]| Audience::Rooms { rooms: rooms(r), except: rooms(e) };
        let cases = [
            (to(&[], &[]), true),
            (to(&["r1"], &[]), true),
            (to(&["r2", "r1"], &[]), true),
            (to(&["r2"], &[]), false),
            (to(&[], &["r1"]), false),
            (to(&["r1"], &[sid.as_str()]), false),
            (to(&[sid.as_str()], &[]), true),
            (Audience::Socket(sid), true),
            (Audience::Socket(other), false),
        ];
        for (i, (audience, expected)) in cases.into_iter().enumerate() {
            let r = replayable(0, 1, audience, now);
            assert_eq!(r.reaches("/", sid, &session), expected, "case {i}");
            assert!(!r.reaches("/chat", sid, &session), "another namespace, case {i}");
        }
    }

    #[test]
    fn recoverable_reasons_are_socket_io_s() {
        use DisconnectReason::*;
        for r in [
            TransportError,
            TransportClose,
            ForcedClose,
            PingTimeout,
            ServerShuttingDown,
            ForcedServerClose,
        ] {
            assert!(recoverable(r), "{r}");
        }
        for r in [
            ClientNamespaceDisconnect,
            ServerNamespaceDisconnect,
            ParseError,
            ConnectTimeout,
            SlowConsumer,
        ] {
            assert!(!recoverable(r), "{r}");
        }
    }

    #[test]
    fn the_log_keeps_its_index_through_the_cap_and_the_window() {
        let mut log = Log::default();
        let t0 = Instant::now();
        let wire = packet("x").wire_len();
        let all = || Audience::Rooms { rooms: SmallVec::new(), except: SmallVec::new() };
        for seq in 1..=10 {
            log.push(replayable(1, seq, all(), t0), None);
        }
        assert_eq!((log.originals, log.bytes, log.end()), (10, 10 * wire, 10));
        // A copy made for a restored socket: not counted against the cap.
        let sid = Sid::generate(0);
        let copied = log.entries[2].r.clone();
        log.push(copied, Some(sid));
        assert_eq!((log.originals, log.entries.len()), (10, 11));
        assert_eq!(log.copies.get(&(sid, Offset { issuer: 1, seq: 3 })), Some(&10));
        // The cap drops the oldest, and remembers how far.
        log.enforce(7, usize::MAX, None);
        assert_eq!((log.originals, log.base), (7, 3));
        assert!(log.index.get(&Offset { issuer: 1, seq: 3 }).is_none());
        assert_eq!(log.index.get(&Offset { issuer: 1, seq: 4 }), Some(&3));
        assert!(log.capped(Offset { issuer: 1, seq: 3 }));
        assert!(!log.capped(Offset { issuer: 1, seq: 4 }));
        assert!(!log.capped(Offset { issuer: 2, seq: 1 }));
        // The copy stays where it is, found by its own key.
        assert_eq!(log.copies.get(&(sid, Offset { issuer: 1, seq: 3 })), Some(&10));
        // By bytes too.
        log.enforce(usize::MAX, 5 * wire, None);
        assert_eq!((log.originals, log.bytes), (5, 5 * wire));
        // The window: everything emitted before `t1` goes, copies included once they are
        // at the front.
        let t1 = t0 + Duration::from_millis(1);
        log.push(replayable(1, 11, all(), t1), None);
        log.enforce(usize::MAX, usize::MAX, Some(t1));
        assert_eq!(log.entries.len(), 1);
        assert!(log.copies.is_empty());
        assert_eq!(log.index.len(), 1);
        assert_eq!(log.index.get(&Offset { issuer: 1, seq: 11 }), Some(&11));
    }

    /// A tiny deterministic generator (xorshift), for the interleavings below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Each issuer's broadcasts in its order, interleaved at random: what one shard sees.
    fn interleave(all: &[Vec<Arc<Replayable>>], rng: &mut Rng) -> Vec<Arc<Replayable>> {
        let mut next = vec![0; all.len()];
        let mut out = Vec::new();
        while out.len() < all.iter().map(Vec::len).sum() {
            let i = rng.below(all.len());
            if let Some(r) = all[i].get(next[i]) {
                out.push(r.clone());
                next[i] += 1;
            }
        }
        out
    }

    fn log_of(order: &[Arc<Replayable>]) -> Log {
        let mut log = Log::default();
        for r in order {
            log.deliver(r.clone());
        }
        log
    }

    /// The sequence numbers of each issuer in `got`, which must be 1..=each.
    fn check(got: &[Arc<Replayable>], issuers: usize, each: u64, what: &str) {
        for i in 0..issuers {
            let seqs: Vec<u64> =
                got.iter().filter(|r| usize::from(r.id.issuer) == i).map(|r| r.id.seq).collect();
            assert_eq!(seqs, (1..=each).collect::<Vec<_>>(), "issuer {i}: {what}");
        }
    }

    /// A session kept on shard B is restored on shard R, then dropped again and restored on
    /// shard S, while 3 issuers' broadcasts reach B, R and S in different interleavings
    /// (each issuer's in order), at whatever moments each shard answers: the client gets
    /// every broadcast exactly once, each issuer's in order.
    #[test]
    fn restores_across_shards_miss_nothing_and_repeat_nothing() {
        const ISSUERS: usize = 3;
        const EACH: u64 = 5;
        let sid = Sid::generate(0);
        let t = Instant::now();
        let all: Vec<Vec<Arc<Replayable>>> = (0..ISSUERS)
            .map(|i| {
                (1..=EACH)
                    .map(|seq| {
                        let to =
                            Audience::Rooms { rooms: SmallVec::new(), except: SmallVec::new() };
                        replayable(i as u8, seq, to, t)
                    })
                    .collect()
            })
            .collect();
        let total = ISSUERS * EACH as usize;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let session = |restored| Persisted {
            sid,
            pid: Sid::generate(0),
            nsp: Arc::from("/"),
            rooms: vec![Room::from(sid.as_str())],
            data: None,
            at: t,
            restored,
        };
        for trial in 0..3000 {
            let (b, r, s) = (
                interleave(&all, &mut rng),
                interleave(&all, &mut rng),
                interleave(&all, &mut rng),
            );
            // The client got B's first `c`; B answers having had `p`; R completes having
            // had `q`.
            let c = 1 + rng.below(total);
            let p = c + rng.below(total - c + 1);
            let q = rng.below(total + 1);
            let log_b = log_of(&b[..p]);
            let (missed, seen) = log_b.missed_after(c as u64 - 1, &session(None), ISSUERS).unwrap();
            let mut log_r = log_of(&r[..q]);
            let (extra, skip) = log_r.beyond(&session(None), &seen, ISSUERS).unwrap();
            let replay: Vec<_> = missed.into_iter().chain(extra).collect();
            let late = |skip: &Option<Vec<u64>>, x: &Replayable| {
                skip.as_ref().is_some_and(|k| x.id.seq <= k[usize::from(x.id.issuer)])
            };
            let live: Vec<_> = r[q..].iter().filter(|x| !late(&skip, x)).cloned().collect();
            let mut got: Vec<_> = b[..c].to_vec();
            got.extend(replay.iter().cloned());
            got.extend(live.iter().cloned());
            check(&got, ISSUERS, EACH, &format!("trial {trial}, one restore"));

            // On R: the copies of the replay, then live traffic up to `q2`; the client got
            // the first `d` of what R sent it (at least one) and drops.
            let copies_from = log_r.end();
            for x in &replay {
                log_r.push(x.clone(), Some(sid));
            }
            let q2 = q + rng.below(total - q + 1);
            for x in &r[q..q2] {
                log_r.deliver(x.clone());
            }
            let sent: Vec<_> = replay
                .iter()
                .cloned()
                .chain(r[q..q2].iter().filter(|x| !late(&skip, x)).cloned())
                .collect();
            if sent.is_empty() {
                continue;
            }
            let d = 1 + rng.below(sent.len());
            let last = sent[d - 1].id;
            let at = log_r
                .copies
                .get(&(sid, last))
                .or_else(|| log_r.index.get(&last))
                .copied()
                .filter(|&at| at >= copies_from)
                .expect("the offset of what R sent is found after the copies");
            let kept = session(Some(Restored { copies_from, skip: skip.clone() }));
            let (missed2, seen2) = log_r.missed_after(at, &kept, ISSUERS).unwrap();
            let q3 = rng.below(total + 1);
            let log_s = log_of(&s[..q3]);
            let (extra2, skip2) = log_s.beyond(&kept, &seen2, ISSUERS).unwrap();
            let mut got: Vec<_> = b[..c].to_vec();
            got.extend(sent[..d].iter().cloned());
            got.extend(missed2);
            got.extend(extra2);
            got.extend(s[q3..].iter().filter(|x| !late(&skip2, x)).cloned());
            check(&got, ISSUERS, EACH, &format!("trial {trial}, two restores"));
        }
    }

    #[test]
    fn a_restore_reads_only_what_can_reach_the_session_and_the_indexes_empty_with_the_log() {
        let (sid, other) = (Sid::generate(0), Sid::generate(0));
        let t = Instant::now();
        let to = |r: &[&str], except: &[&str]| Audience::Rooms {
            rooms: rooms(r),
            except: rooms(except),
        };
        let mut log = Log::default();
        let entries = [
            replayable(1, 1, to(&["a"], &[]), t),                      // in
            replayable(1, 2, to(&["b"], &[]), t),                      // another room
            replayable(1, 3, to(&[], &[]), t),                         // everyone: in
            replayable(1, 4, to(&["a", "a"], &["x"]), t),              // in (once)
            replayable(1, 5, to(&["a"], &["a"]), t),                   // excluded
            replayable(Offset::DIRECT, 6, Audience::Socket(sid), t),   // to it: in
            replayable(Offset::DIRECT, 7, Audience::Socket(other), t), // to another
            replayable(1, 8, to(&[sid.as_str()], &[]), t),             // its own room: in
        ];
        for e in &entries {
            log.deliver(e.clone());
        }
        log.push(replayable(1, 9, to(&["b"], &[]), t), Some(sid)); // a copy made for it: in
        log.push(replayable(1, 10, to(&["a"], &[]), t), Some(other)); // another's copy
        let session = Persisted {
            sid,
            pid: Sid::generate(0),
            nsp: Arc::from("/"),
            rooms: vec![Room::from(sid.as_str()), Room::from("a")],
            data: None,
            at: t,
            restored: None,
        };
        let (missed, _) = log.missed_after(0, &session, 2).unwrap();
        let got: Vec<u64> = missed.iter().map(|r| r.id.seq).collect();
        assert_eq!(got, vec![3, 4, 6, 8, 9], "after the first, in the log's order");
        let (missed, _) = log.missed_after(5, &session, 2).unwrap();
        assert_eq!(missed.iter().map(|r| r.id.seq).collect::<Vec<_>>(), vec![8, 9]);
        // Everything leaves with the window: so do the indexes.
        log.enforce(usize::MAX, usize::MAX, Some(t + Duration::from_secs(1)));
        assert!(log.entries.is_empty());
        assert!(log.by_room.is_empty() && log.by_sid.is_empty() && log.to_all.is_empty());
    }
}

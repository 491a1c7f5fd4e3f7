//! Connection state recovery across servers: the engine's side of it, for a cluster
//! adapter that keeps packets (the Redis Streams adapter, which implements [`ClusterLog`]).
//!
//! Across servers the stream is the replay log and Redis keeps the sessions, so nothing of
//! [`super::recovery`]'s per-shard log is used:
//! - A replayable packet's offset is its stream entry id ([`EntryId`]): this server's
//!   broadcasts and `socket.emit`s are queued on the adapter's thread and appended, and
//!   every server (this one too) delivers them as its stream reader reads them, encoded
//!   with their offset: each server delivers in the stream's order, so a client's last
//!   offset is always its newest packet. What cannot be appended (Redis away, the queue
//!   full) is delivered at once without an offset: local traffic goes on, it just cannot be
//!   replayed.
//! - A socket that leaves for a recoverable reason is persisted to Redis ([`ClusterLog::persist`]).
//! - A client that comes back (here or on any server of the cluster, Node ones included)
//!   is restored in two steps, so that it gets every missed packet once and live traffic
//!   with no gap: its session is taken ([`ClusterLog::take`]); the shard then starts
//!   keeping, for it, what it delivers to its rooms ([`Catchup`]) and asks for the
//!   packets after its offset ([`ClusterLog::missed`]). The adapter answers once every
//!   entry up to the last one it read has been delivered here, so the answer's packets
//!   plus the kept ones whose entry is later (or that have none) are exactly what the
//!   client missed, in order; then the socket is made, in the same turn.
//!
//! Layer: the namespaces' (a socket's emits, a client's CONNECT); the adapter, above,
//! implements the trait.

use std::sync::Arc;

use serde_json::Value;

use super::args::Args;
use super::shared::ServerShared;
use super::Room;
use crate::proto::offset::EntryId;
use crate::proto::sid::Sid;
use crate::shard::{self, ShardCtx};
use crate::transport::local::ConnHandle;
use crate::transport::outbox::Out;
use crate::transport::session::Cmd;

/// A session as the cluster keeps it (socket.io's `{sid, pid, rooms, data}`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClusterSession {
    pub sid: Sid,
    pub pid: Sid,
    /// Its rooms, its own id included.
    pub rooms: Vec<Room>,
    /// `socket.data`, `None` when unset.
    pub data: Option<Box<Value>>,
}

/// A `socket.emit` with recovery across servers: appended (when replayable), then queued
/// on the socket's connection with its offset as the stream reader reads it back (an emit
/// with an ack, which is not appended, once the appends queued before it have returned).
pub(crate) struct DirectEmit {
    pub nsp: Arc<str>,
    pub sid: Sid,
    pub event: String,
    pub args: Args,
    pub ack: Option<u64>,
    pub volatile: bool,
    pub compress: bool,
    pub conn: Arc<ConnHandle>,
}

impl DirectEmit {
    /// Queues it on its connection at once, without an offset: it was not appended (an
    /// emit with an ack, Redis away). What was appended the stream reader delivers, as a
    /// broadcast to the socket's own room, with its offset.
    pub(crate) fn deliver(self, server: &ServerShared) {
        let out = Out::event(
            &self.nsp,
            &self.event,
            self.args.values(),
            self.args.verbatim(),
            self.args.binary().to_vec(),
            self.ack,
            server.encoding(self.compress),
        );
        if self.volatile {
            self.conn.send_volatile(out);
        } else {
            self.conn.send(out);
        }
    }
}

/// The packet of a missed broadcast, as it is replayed: its offset as the last argument.
pub(crate) fn replay_packet(
    server: &ServerShared,
    nsp: &str,
    event: &str,
    args: &Args,
    compress: bool,
    id: EntryId,
) -> Out {
    let offset = id.to_string();
    Out::event_with_offset(
        nsp,
        event,
        args.values(),
        args.verbatim(),
        args.binary().to_vec(),
        None,
        server.encoding(compress),
        Some(&offset),
    )
}

/// Who asks, and where the answer goes: the shard and the Engine.IO session of the
/// connection that sent the CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTo {
    pub nsp: Arc<str>,
    pub shard: usize,
    pub conn: Sid,
}

/// Take session `pid`, if the entry `offset` is still in the stream.
pub(crate) struct TakeAsk {
    pub pid: Sid,
    pub offset: EntryId,
    pub reply: ReplyTo,
}

/// The packets after `offset` that reach a session of `rooms` (its own id among them).
pub(crate) struct MissedAsk {
    pub offset: EntryId,
    pub rooms: Vec<Room>,
    pub reply: ReplyTo,
}

/// What the adapter answers, delivered to the connection's session.
pub(crate) enum ClusterAnswer {
    /// The session taken (`None`: unknown, expired, unreadable, or its offset has left
    /// the stream, or Redis could not be asked).
    Taken { nsp: Arc<str>, session: Option<ClusterSession> },
    /// The missed packets in order and the last entry read (packets delivered here since
    /// with a later entry come after them), or why not: `true` when there were more than
    /// `recovery_max_packets`.
    Missed { nsp: Arc<str>, replay: Result<(Vec<Out>, EntryId), bool> },
}

impl ClusterAnswer {
    fn nsp(&self) -> &Arc<str> {
        match self {
            ClusterAnswer::Taken { nsp, .. } | ClusterAnswer::Missed { nsp, .. } => nsp,
        }
    }
}

/// Sends `answer` to the connection that asked (any thread).
pub(crate) fn answer(server: &ServerShared, to: &ReplyTo, answer: ClusterAnswer) {
    let Some(mesh) = server.mesh().cloned() else { return };
    debug_assert!(**answer.nsp() == *to.nsp);
    let conn = to.conn;
    shard::submit_to(&mesh.clone(), to.shard, move || {
        if let Some(ctx) = shard::current(&mesh) {
            ctx.transport().send_cmd(&conn, Cmd::Upper(Box::new(answer)));
        }
    });
}

/// A cluster adapter that keeps packets and sessions: what the engine asks of it for
/// recovery across servers. Every method only queues work; none waits.
pub(crate) trait ClusterLog: Send + Sync {
    /// Appends `e` (when replayable) and delivers it after; hands it back when it cannot
    /// be queued (the caller then sends it at once, without an offset).
    fn emit(&self, e: Box<DirectEmit>) -> Result<(), Box<DirectEmit>>;
    /// Keeps `s` for the recovery window.
    fn persist(&self, s: ClusterSession);
    /// Live sessions: keeps (or refreshes) the sessions of these connected sockets.
    fn keep_live(&self, sessions: Vec<ClusterSession>);
    /// Live sessions: the socket of `pid` left for good; its live session goes.
    fn drop_live(&self, pid: Sid);
    /// Takes a session; answers [`ClusterAnswer::Taken`].
    fn take(&self, server: &ServerShared, ask: TakeAsk);
    /// Reads what a session missed; answers [`ClusterAnswer::Missed`] once every entry up
    /// to the last one it read has been delivered on this server.
    fn missed(&self, server: &ServerShared, ask: MissedAsk);
}

/// Live sessions: how often each connected socket's session is written again, for a
/// recovery window of `window` (half of it, between 1 s and 60 s). A live session is kept
/// for `window` plus this, so that it outlives a crash by at least `window`.
pub(crate) fn live_refresh(window: std::time::Duration) -> std::time::Duration {
    (window / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60))
}

/// What a shard keeps for a client being restored while its missed packets are read:
/// the packets it delivers meanwhile that reach the session.
pub(crate) struct Catchup {
    conn: Sid,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    kept: Vec<(Out, Option<EntryId>)>,
}

/// Whether a packet for `to` (all when empty) except `except`, in namespace `msg_nsp`,
/// reaches a socket of `nsp` in `rooms` (its own id among them): socket.io's
/// `shouldIncludePacket`.
pub(crate) fn reaches(
    msg_nsp: &str,
    to: &[Room],
    except: &[Room],
    nsp: &str,
    rooms: &[Room],
) -> bool {
    msg_nsp == nsp
        && (to.is_empty() || rooms.iter().any(|r| to.contains(r)))
        && !rooms.iter().any(|r| except.contains(r))
}

impl ShardCtx {
    /// Starts keeping what reaches the session being restored for `conn` in `nsp`.
    pub(crate) fn catchup_begin(&self, conn: Sid, nsp: Arc<str>, rooms: Vec<Room>) {
        let mut list = self.ns().catchups.borrow_mut();
        list.retain(|c| !(c.conn == conn && c.nsp == nsp));
        list.push(Catchup { conn, nsp, rooms, kept: Vec::new() });
    }

    /// A packet being delivered on this shard: kept for each session being restored that
    /// it reaches. One length check when none is.
    pub(crate) fn catchup_deliver(
        &self,
        nsp: &str,
        to: &[Room],
        except: &[Room],
        packet: &Out,
        entry: Option<EntryId>,
    ) {
        let mut list = self.ns().catchups.borrow_mut();
        if list.is_empty() {
            return;
        }
        for c in list.iter_mut() {
            if reaches(nsp, to, except, &c.nsp, &c.rooms) {
                c.kept.push((packet.clone(), entry));
            }
        }
    }

    /// Ends the catch-up of `conn` in `nsp`: the packets to send after the replay, those
    /// whose entry is after `last` (the replay has the others) or that have none.
    pub(crate) fn catchup_end(&self, conn: Sid, nsp: &str, last: Option<EntryId>) -> Vec<Out> {
        let mut list = self.ns().catchups.borrow_mut();
        let Some(at) = list.iter().position(|c| c.conn == conn && *c.nsp == *nsp) else {
            return Vec::new();
        };
        let c = list.swap_remove(at);
        match last {
            None => Vec::new(),
            Some(last) => c
                .kept
                .into_iter()
                .filter(|(_, e)| e.is_none_or(|e| e > last))
                .map(|(p, _)| p)
                .collect(),
        }
    }

    /// The connection `conn` closed: what was kept for its restores goes.
    pub(crate) fn catchup_drop(&self, conn: Sid) {
        let mut list = self.ns().catchups.borrow_mut();
        if !list.is_empty() {
            list.retain(|c| c.conn != conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_reaches_a_session_as_socket_io_includes_it() {
        let sid = Sid::generate(0);
        let r = |n: &[&str]| n.iter().map(|x| Room::from(*x)).collect::<Vec<_>>();
        let mine = r(&[sid.as_str(), "a"]);
        assert!(reaches("/", &[], &[], "/", &mine));
        assert!(reaches("/", &r(&["a"]), &[], "/", &mine));
        assert!(reaches("/", &r(&[sid.as_str()]), &[], "/", &mine));
        assert!(!reaches("/", &r(&["b"]), &[], "/", &mine));
        assert!(!reaches("/", &[], &r(&["a"]), "/", &mine));
        assert!(!reaches("/", &r(&["a"]), &r(&[sid.as_str()]), "/", &mine));
        assert!(!reaches("/chat", &[], &[], "/", &mine));
    }
}

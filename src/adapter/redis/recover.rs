//! Connection state recovery across servers on the Redis Streams adapter: the adapter's
//! side of [`crate::ns::cluster_recovery`] (read that first).
//!
//! - This server's broadcasts and `socket.emit`s reach the Redis side in the order they
//!   were issued ([`Then`]) and are appended; the stream reader delivers them here as it
//!   reads them back, with their entry id as their offset, in the stream's order with every
//!   other server's. What could not be appended is delivered at once without an offset.
//! - Sessions go to Redis as the Node adapter keeps them ([`super::sessions`]); a restore
//!   takes the session, then reads what it missed ([`missed`]), and answers only once
//!   everything up to the last entry read has been delivered on this server: the batches
//!   of appends sent before that read ([`Progress::done`]) and the reader's position in the
//!   stream ([`Progress::read`]). Both deliver through the same queue as the answer, so the
//!   shard sees them first.
//!
//! Layer: the Redis adapter's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::sessions;
use super::{Cmd, RedisAdapter};
use crate::adapter::cluster_wire::{Body, ClusterMessage, Flags, Opts};
use crate::adapter::streams_wire::{self, Session};
use crate::broadcast::{self, BroadcastMsg};
use crate::ns::cluster_recovery::{
    self as cr, ClusterAnswer, ClusterLog, ClusterSession, DirectEmit, MissedAsk, TakeAsk,
};
use crate::ns::shared::ServerShared;
use crate::ns::Room;
use crate::proto::offset::EntryId;
use crate::proto::sid::Sid;
use crate::transport::outbox::Out;

/// Where sessions are kept (the Node adapter's default `sessionKeyPrefix`).
pub(super) const SESSION_PREFIX: &str = "sio:session:";

/// What to deliver here once its append (if any) has returned.
pub(crate) enum Then {
    /// A broadcast of this server.
    Broadcast(Arc<BroadcastMsg>),
    /// A `socket.emit`.
    Direct(Box<DirectEmit>),
}

impl Then {
    /// Delivers it here without an offset: it was not appended (Redis away, the append
    /// refused, or not meant for the stream). What was appended the stream reader delivers,
    /// with its entry id as its offset, as it reads it back.
    pub(super) fn run(self, server: &ServerShared) {
        match self {
            Then::Broadcast(msg) => {
                broadcast::dispatch(server, msg);
            }
            Then::Direct(e) => e.deliver(server),
        }
    }
}

/// How far this server's deliveries have come, for restores to wait on.
pub(super) struct Progress {
    /// Batches of commands the publisher has sent.
    pub sent: AtomicU64,
    /// Batches whose deliveries have been handed to the shards.
    pub done: watch::Sender<u64>,
    /// The last stream entry the reader has handled (delivered, or skipped as ours).
    pub read: watch::Sender<EntryId>,
}

impl Progress {
    pub(super) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            sent: AtomicU64::new(0),
            done: watch::Sender::new(0),
            read: watch::Sender::new(EntryId { ms: 0, seq: 0 }),
        })
    }

    /// The reader has handled every entry up to `id`.
    pub(super) fn read_to(&self, id: EntryId) {
        self.read.send_if_modified(|r| {
            let later = id > *r;
            if later {
                *r = id;
            }
            later
        });
    }
}

/// The entry id an `XADD` answered.
pub(super) fn entry_id(v: &redis::RedisResult<redis::Value>) -> Option<EntryId> {
    match v {
        Ok(redis::Value::BulkString(b)) => EntryId::parse(std::str::from_utf8(b).ok()?),
        Ok(redis::Value::SimpleString(s)) => EntryId::parse(s),
        _ => None,
    }
}

/// A socket's direct emit as the stream carries it: a broadcast to its own room.
fn direct_message(uid: &str, e: &DirectEmit) -> ClusterMessage {
    let mut rooms = smallvec::SmallVec::new();
    rooms.push(Room::from(e.sid.as_str()));
    ClusterMessage {
        uid: uid.to_owned(),
        nsp: e.nsp.to_string(),
        body: Body::Broadcast {
            opts: Opts {
                rooms,
                except: Default::default(),
                flags: Flags {
                    volatile: e.volatile,
                    compress: (!e.compress).then_some(false),
                    ..Flags::default()
                },
            },
            event: e.event.clone(),
            args: e.args.clone(),
            request_id: None,
        },
    }
}

/// A stored session as the engine restores it; `None` when its ids are not socket.io's
/// (20 base64url characters).
fn cluster_session(s: Session) -> Option<ClusterSession> {
    Some(ClusterSession {
        sid: Sid::parse(&s.sid)?,
        pid: Sid::parse(&s.pid)?,
        rooms: s.rooms.iter().map(|r| Room::from(r.as_str())).collect(),
        data: (!s.data.is_null()).then(|| Box::new(s.data)),
    })
}

/// A session as Redis keeps it.
fn stored_session(s: ClusterSession) -> Session {
    // socket.io's `socket.data` is `{}` until set: a Node server restoring it expects an
    // object.
    let data = s.data.map_or_else(|| Value::Object(Default::default()), |d| *d);
    Session {
        sid: s.sid.as_str().to_owned(),
        pid: s.pid.as_str().to_owned(),
        rooms: s.rooms.iter().map(|r| r.to_string()).collect(),
        data,
    }
}

impl ClusterLog for RedisAdapter {
    fn emit(&self, e: Box<DirectEmit>) -> Result<(), Box<DirectEmit>> {
        // Appended unless it awaits an ack (the stream's broadcasts carry no ack id; socket.io
        // appends it with its id, and would replay it to nobody waiting): volatile ones too,
        // so that the reader delivers this socket's emits in one order (not replayed).
        let cmd = if e.ack.is_none() {
            let fields = streams_wire::entry_fields(&direct_message(&self.uid, &e));
            Cmd::AppendThen(fields, Then::Direct(e))
        } else {
            Cmd::Then(Then::Direct(e))
        };
        match self.cmds.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                match err.into_inner() {
                    Cmd::AppendThen(_, Then::Direct(e)) | Cmd::Then(Then::Direct(e)) => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }

    fn persist(&self, s: ClusterSession) {
        self.queue(Cmd::Persist(stored_session(s)));
    }

    fn keep_live(&self, sessions: Vec<ClusterSession>) {
        if !sessions.is_empty() {
            self.queue(Cmd::KeepLive(sessions.into_iter().map(stored_session).collect()));
        }
    }

    fn drop_live(&self, pid: Sid) {
        self.queue(Cmd::DropLive(pid.as_str().to_owned()));
    }

    fn take(&self, server: &ServerShared, ask: TakeAsk) {
        if let Err(err) = self.cmds.try_send(Cmd::Take(ask)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Cmd::Take(ask) = err.into_inner() {
                let nsp = ask.reply.nsp.clone();
                cr::answer(server, &ask.reply, ClusterAnswer::Taken { nsp, session: None });
            }
        }
    }

    fn missed(&self, server: &ServerShared, ask: MissedAsk) {
        if let Err(err) = self.cmds.try_send(Cmd::Missed(ask)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Cmd::Missed(ask) = err.into_inner() {
                let nsp = ask.reply.nsp.clone();
                cr::answer(server, &ask.reply, ClusterAnswer::Missed { nsp, replay: Err(false) });
            }
        }
    }
}

/// Takes the session a client asks for and answers its shard. With live sessions (`owner`,
/// this server's uid), when none was persisted, another server's live session of that pid
/// is claimed and taken.
pub(super) async fn take(
    conn: Option<redis::aio::MultiplexedConnection>,
    stream: String,
    ask: TakeAsk,
    server: Arc<ServerShared>,
    owner: Option<String>,
) {
    let session = match conn {
        Some(mut c) => {
            let (pid, offset) = (ask.pid.as_str(), ask.offset);
            let mut found = sessions::take(&mut c, &stream, SESSION_PREFIX, pid, offset).await;
            if let (Ok(None), Some(owner)) = (&found, &owner) {
                found =
                    sessions::take_live(&mut c, &stream, SESSION_PREFIX, pid, offset, owner).await;
            }
            match found {
                Ok(s) => s.and_then(cluster_session),
                Err(e) => {
                    tracing::debug!(error = %e, "redis streams adapter: a restore could not take its session");
                    None
                }
            }
        }
        None => None,
    };
    let nsp = ask.reply.nsp.clone();
    cr::answer(&server, &ask.reply, ClusterAnswer::Taken { nsp, session });
}

/// A restore's second step as the publisher hands it over: the ask and the connection.
pub(super) type MissedJob = (MissedAsk, Option<redis::aio::MultiplexedConnection>);

/// Answers the restores' second step for the server's life: every ask waiting is served by
/// one read of the stream (a burst of clients coming back at once costs one read, each entry
/// decoded and encoded once), then, once this server has delivered everything up to the
/// last entry read (at most `wait`: otherwise the clients get new sessions), each answered.
pub(super) async fn restorer(
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<MissedJob>,
    stream: String,
    server: Arc<ServerShared>,
    progress: Arc<Progress>,
    wait: Duration,
) {
    let mut round: Vec<MissedJob> = Vec::new();
    while jobs.recv_many(&mut round, 4096).await > 0 {
        let conn = round.iter().find_map(|(_, c)| c.clone());
        let asks: Vec<MissedAsk> = round.drain(..).map(|(a, _)| a).collect();
        serve_round(conn, &stream, asks, &server, &progress, wait).await;
    }
}

async fn serve_round(
    conn: Option<redis::aio::MultiplexedConnection>,
    stream: &str,
    asks: Vec<MissedAsk>,
    server: &Arc<ServerShared>,
    progress: &Arc<Progress>,
    wait: Duration,
) {
    let max = server.config().recovery_max_packets;
    let rooms: Vec<Vec<String>> =
        asks.iter().map(|a| a.rooms.iter().map(|r| r.to_string()).collect()).collect();
    let wanted: Vec<sessions::Wanted<'_>> = asks
        .iter()
        .zip(&rooms)
        .map(|(a, r)| sessions::Wanted { offset: a.offset, nsp: &a.reply.nsp, rooms: r })
        .collect();
    let read = match conn {
        Some(mut c) => {
            let p = progress.clone();
            sessions::missed(&mut c, stream, &wanted, max, move || p.sent.load(Ordering::Acquire))
                .await
        }
        None => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "not connected to Redis",
        ))),
    };
    let m = match read {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "redis streams adapter: restores could not read the stream");
            for a in asks {
                let nsp = a.reply.nsp.clone();
                cr::answer(server, &a.reply, ClusterAnswer::Missed { nsp, replay: Err(false) });
            }
            return;
        }
    };
    let (mut done, mut reader) = (progress.done.subscribe(), progress.read.subscribe());
    let caught_up = tokio::time::timeout(wait, async {
        let a = done.wait_for(|d| *d >= m.mark).await.is_ok();
        let b = reader.wait_for(|r| *r >= m.last).await.is_ok();
        a && b
    })
    .await
    .unwrap_or(false);
    if !caught_up {
        tracing::debug!(
            "redis streams adapter: restores timed out waiting for the stream to be delivered"
        );
    }
    // Each entry encoded once (with its offset), shared by every restore it reaches.
    let mut packets: Vec<Option<Out>> = vec![None; m.entries.len()];
    for (a, reach) in asks.into_iter().zip(m.reach) {
        let nsp = a.reply.nsp.clone();
        let replay = match (caught_up, reach) {
            (true, Some(list)) => Ok((
                list.into_iter()
                    .filter_map(|i| {
                        let (id, msg) = &m.entries[i];
                        let Body::Broadcast { event, args, opts, .. } = &msg.body else {
                            return None;
                        };
                        let compress = opts.flags.compress.unwrap_or(true);
                        Some(
                            packets[i]
                                .get_or_insert_with(|| {
                                    cr::replay_packet(server, &msg.nsp, event, args, compress, *id)
                                })
                                .clone(),
                        )
                    })
                    .collect(),
                m.last,
            )),
            (true, None) => Err(true),
            (false, _) => Err(false),
        };
        cr::answer(server, &a.reply, ClusterAnswer::Missed { nsp, replay });
    }
}

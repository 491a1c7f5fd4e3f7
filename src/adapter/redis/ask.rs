//! This server's requests awaiting the other servers' answers: the table the Redis side
//! keeps (no lock: only that thread touches it), filled as answers arrive, completed when
//! the expected number came (`PUBSUB NUMSUB` of the request channel, less this server) or
//! when the wait ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::super::request::{kind, Response, WireSocket};
use super::super::wire::WireError;
use super::super::{RequestError, ServerSideAckError};
use crate::ns::args::Args;
use crate::ns::socket::{AckEvent, AckSink};
use crate::ns::Room;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What collects a request's answers.
pub(crate) enum Kind {
    /// Only the server count (`PUBSUB NUMSUB`); nothing is published.
    Count(Reply<usize>),
    /// `fetch_sockets`: the sockets of every other server.
    Fetch(Reply<Vec<WireSocket>>),
    /// `all_rooms`: the rooms of every other server.
    AllRooms(Reply<Vec<Room>>),
    /// `server_side_emit_with_ack`: one reply per other server.
    ServerSide(oneshot::Sender<Result<Vec<Args>, ServerSideAckError>>),
    /// A broadcast with acks: the counts and replies go to the operator as they come.
    Ack(AckSink),
}

impl Kind {
    /// Ends the request with `e` before it was sent.
    pub(crate) fn fail(self, e: RequestError) {
        match self {
            Kind::Count(tx) => drop(tx.send(Err(e))),
            Kind::Fetch(tx) => drop(tx.send(Err(e))),
            Kind::AllRooms(tx) => drop(tx.send(Err(e))),
            Kind::ServerSide(tx) => {
                drop(tx.send(Err(ServerSideAckError::Unavailable(e.to_string()))))
            }
            Kind::Ack(sink) => drop(sink.send(AckEvent::RemoteExpired)),
        }
    }
}

/// A request to publish and the collector of its answers.
pub(crate) struct Ask {
    /// The request channel of its namespace (whose subscribers are counted).
    pub request_channel: String,
    /// The encoded request (empty for [`Kind::Count`]).
    pub payload: Bytes,
    pub request_id: String,
    /// How long answers are awaited.
    pub wait: Duration,
    pub kind: Kind,
}

impl Ask {
    /// Only the number of servers subscribed to `request_channel`.
    pub(crate) fn count(request_channel: String, tx: Reply<usize>) -> Ask {
        Ask {
            request_channel,
            payload: Bytes::new(),
            request_id: String::new(),
            wait: Duration::ZERO,
            kind: Kind::Count(tx),
        }
    }
}

/// One server's answer to a request of ours, whatever the protocol carried it.
pub(crate) enum Answer {
    /// Its selected sockets (a fetch).
    Sockets(Vec<WireSocket>),
    /// Its rooms.
    Rooms(Vec<Room>),
    /// Its server-side listener's reply.
    ServerSide(Args),
    /// How many of its clients a broadcast with acks reached.
    ClientCount(usize),
    /// One of those clients' ack.
    Ack(Args),
}

/// What has been collected so far for one request.
enum Collected {
    Fetch(Reply<Vec<WireSocket>>, Vec<WireSocket>),
    AllRooms(Reply<Vec<Room>>, Vec<Room>),
    ServerSide(oneshot::Sender<Result<Vec<Args>, ServerSideAckError>>, Vec<Args>),
    Ack(AckSink),
}

struct Entry {
    /// How many other servers answer; `None` until `PUBSUB NUMSUB` returned.
    expected: Option<usize>,
    /// How many answered.
    answered: usize,
    collected: Collected,
}

/// The requests of this server awaiting answers, by request id.
pub(crate) struct Table {
    entries: HashMap<String, Entry>,
    /// How many entries there are, for the metrics (`shardcast_table_entries`): kept in
    /// step by every change of `entries`, read from any thread.
    pending: Arc<AtomicU64>,
}

impl Table {
    /// An empty table whose size is kept in `pending`.
    pub(crate) fn new(pending: Arc<AtomicU64>) -> Table {
        pending.store(0, Ordering::Relaxed);
        Table { entries: HashMap::new(), pending }
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let e = self.entries.remove(id);
        self.pending.store(self.entries.len() as u64, Ordering::Relaxed);
        e
    }

    /// Starts collecting for `id` (before its request is published).
    pub(crate) fn insert(&mut self, id: String, kind: Kind) {
        let collected = match kind {
            Kind::Count(tx) => {
                // Answered by `PUBSUB NUMSUB` alone; never in the table.
                drop(tx);
                return;
            }
            Kind::Fetch(tx) => Collected::Fetch(tx, Vec::new()),
            Kind::AllRooms(tx) => Collected::AllRooms(tx, Vec::new()),
            Kind::ServerSide(tx) => Collected::ServerSide(tx, Vec::new()),
            Kind::Ack(sink) => Collected::Ack(sink),
        };
        self.entries.insert(id, Entry { expected: None, answered: 0, collected });
        self.pending.store(self.entries.len() as u64, Ordering::Relaxed);
    }

    /// `servers` subscribe to the request channel, this one included.
    pub(crate) fn set_servers(&mut self, id: &str, servers: usize) {
        let Some(e) = self.entries.get_mut(id) else { return };
        let others = servers.saturating_sub(1);
        e.expected = Some(others);
        if let Collected::Ack(sink) = &e.collected {
            if sink.send(AckEvent::Servers(others)).is_err() {
                self.remove(id);
                return;
            }
        }
        self.complete_if_done(id);
    }

    /// A classic response arrived, read by what its request asked; unknown ids (another
    /// server's requests) are ignored.
    pub(crate) fn answer_classic(&mut self, r: Response) -> Result<(), WireError> {
        let Some(e) = self.entries.get(&r.request_id) else { return Ok(()) };
        let a = match &e.collected {
            Collected::Fetch(..) => Answer::Sockets(r.sockets()?),
            Collected::AllRooms(..) => Answer::Rooms(r.rooms()?),
            Collected::ServerSide(..) if r.kind == Some(kind::SERVER_SIDE_EMIT) => {
                Answer::ServerSide(r.reply())
            }
            Collected::Ack(_) if r.kind == Some(kind::BROADCAST_CLIENT_COUNT) => {
                Answer::ClientCount(r.client_count()?)
            }
            Collected::Ack(_) if r.kind == Some(kind::BROADCAST_ACK) => Answer::Ack(r.reply()),
            _ => return Ok(()),
        };
        self.answer(&r.request_id, a);
        Ok(())
    }

    /// An answer to request `id` arrived; unknown ids and answers of another kind than
    /// the request are ignored.
    pub(crate) fn answer(&mut self, id: &str, a: Answer) {
        let Some(e) = self.entries.get_mut(id) else { return };
        match (&mut e.collected, a) {
            (Collected::Fetch(_, got), Answer::Sockets(s)) => got.extend(s),
            (Collected::AllRooms(_, got), Answer::Rooms(r)) => got.extend(r),
            (Collected::ServerSide(_, got), Answer::ServerSide(args)) => got.push(args),
            (Collected::Ack(sink), a @ (Answer::ClientCount(_) | Answer::Ack(_))) => {
                let ev = match a {
                    Answer::ClientCount(n) => AckEvent::RemoteDelivered(n),
                    Answer::Ack(args) => AckEvent::RemoteReply(args),
                    _ => return,
                };
                if sink.send(ev).is_err() {
                    // The operator is done with it.
                    self.remove(id);
                }
                return;
            }
            _ => return,
        }
        e.answered += 1;
        self.complete_if_done(id);
    }

    fn complete_if_done(&mut self, id: &str) {
        let done = self.entries.get(id).is_some_and(|e| {
            !matches!(e.collected, Collected::Ack(_)) && e.expected.is_some_and(|n| e.answered >= n)
        });
        if !done {
            return;
        }
        if let Some(e) = self.remove(id) {
            match e.collected {
                Collected::Fetch(tx, got) => drop(tx.send(Ok(got))),
                Collected::AllRooms(tx, got) => drop(tx.send(Ok(got))),
                Collected::ServerSide(tx, got) => drop(tx.send(Ok(got))),
                Collected::Ack(_) => {}
            }
        }
    }

    /// The wait for `id` ended: what did not answer is a timeout.
    pub(crate) fn expire(&mut self, id: &str) {
        let Some(e) = self.remove(id) else { return };
        // Before the server count is known, every other server counts as silent; the count
        // is not known then, so the error says at least one.
        let expected = e.expected.unwrap_or(e.answered + 1);
        match e.collected {
            Collected::Fetch(tx, _) => drop(tx.send(Err(RequestError::Timeout {
                what: "fetchSockets",
                expected,
                answered: e.answered,
            }))),
            Collected::AllRooms(tx, _) => drop(tx.send(Err(RequestError::Timeout {
                what: "allRooms",
                expected,
                answered: e.answered,
            }))),
            Collected::ServerSide(tx, responses) => {
                let missing = expected.saturating_sub(responses.len());
                drop(tx.send(Err(ServerSideAckError::Timeout { responses, expected, missing })))
            }
            Collected::Ack(sink) => drop(sink.send(AckEvent::RemoteExpired)),
        }
    }
}

/// Waits on request `id` for both links: tells `servers` the count `count` gives (when
/// connected), then `expire` at the deadline.
pub(crate) fn spawn_wait<F>(
    count: Option<F>,
    id: String,
    deadline: tokio::time::Instant,
    servers: impl FnOnce(String, usize) + Send + 'static,
    expire: impl FnOnce(String) + Send + 'static,
) where
    F: std::future::Future<Output = redis::RedisResult<usize>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Some(count) = count {
            if let Ok(n) = count.await {
                servers(id.clone(), n);
            }
        }
        tokio::time::sleep_until(deadline).await;
        expire(id);
    });
}

/// Answers a server count with what `count` gives, or unavailable when not connected.
pub(crate) fn spawn_count<F>(count: Option<F>, tx: Reply<usize>)
where
    F: std::future::Future<Output = redis::RedisResult<usize>> + Send + 'static,
{
    tokio::spawn(async move {
        let n = match count {
            Some(count) => count.await.map_err(|e| RequestError::Unavailable(e.to_string())),
            None => Err(RequestError::Unavailable("not connected to Redis".into())),
        };
        let _ = tx.send(n);
    });
}

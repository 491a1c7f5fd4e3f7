//! The classic Redis adapter, wire-compatible with `@socket.io/redis-adapter` 8.x
//! (`createAdapter(pub, sub, { key })`) and `@socket.io/redis-emitter` 5.x: shardcast servers
//! and Node servers on one Redis share broadcasts, broadcast acks, fetches, remote joins,
//! leaves and disconnects, server-side emits, all rooms and the server count.
//!
//! - A broadcast is delivered here as by the in-process adapter and, unless `local`,
//!   published once on `{key}#{nsp}#` (or `{key}#{nsp}#{room}#`), as [`super::wire`]
//!   encodes it. What other servers and the emitter publish there enters the same local
//!   fan-out, decoded once per server; our own messages come back and are skipped by uid.
//! - A request ([`super::request`]) is published on `{key}-request#{nsp}#`; the number of
//!   answers to wait for is `PUBSUB NUMSUB` of that channel (every server of the namespace
//!   subscribes to it) less this one; the answers come on `{key}-response#{nsp}#`. Requests
//!   of other servers are answered here ([`serve`]). Joins, leaves and disconnects are
//!   applied here directly and published for the others (a Node server applies its own when
//!   its request comes back to it; we skip ours by uid).
//!
//! The Redis side runs as tasks on shard 0 of each server ([`link`]): one subscriber
//! connection for every namespace and one connection that publishes everything queued since
//! its last write as one pipeline. Shards never wait on Redis: what they publish goes to
//! it over one bounded queue, in order (a join published before a broadcast is
//! applied before it everywhere); a full queue drops and counts, it never blocks.

mod ask;
mod link;
mod recover;
mod serve;
mod sessions;
mod sharded;
mod streams;

pub(crate) use super::cluster_wire::SubscriptionMode;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::request::{self, Request, RequestBody, Targets};
use super::wire::{self, WireBroadcast};
use super::{AckPlan, Adapter, BoxFuture, Fetched, RequestError, ServerSideAckError, Target};
use crate::broadcast::{self, BroadcastMsg};
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::socket::AckEvent;
use crate::ns::Room;

/// The deepest MessagePack or JSON a peer's message may nest (arguments included).
const MAX_DEPTH: usize = 1000;

/// How long a command on the publishing connection may wait for its reply before it counts
/// as failed (and the connection is made again). The client's default, 500 ms, is shorter
/// than a busy Redis or a burst of restores can take: a burst of comebacks failed with it.
/// A Redis that died is noticed sooner anyway: its connections close.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The publishing connection's settings.
fn conn_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// What the shards and operators hand the Redis side, in order.
pub(super) enum Cmd {
    /// Publish `payload` on `channel` (broadcasts, requests nobody answers, answers).
    Publish(String, Bytes),
    /// Append a message to the stream (the Redis Streams adapter).
    Append(super::streams_wire::EntryFields),
    /// Recovery across servers: append a message, then deliver here (with its offset).
    AppendThen(super::streams_wire::EntryFields, recover::Then),
    /// Recovery across servers: deliver here, in order with what is appended.
    Then(recover::Then),
    /// Recovery across servers: keep a session.
    Persist(super::streams_wire::Session),
    /// Live sessions: keep (or refresh) the sessions of connected sockets.
    KeepLive(Vec<super::streams_wire::Session>),
    /// Live sessions: a socket left for good (its pid).
    DropLive(String),
    /// Recovery across servers: take a session for a client that came back.
    Take(crate::ns::cluster_recovery::TakeAsk),
    /// Recovery across servers: read what a session missed.
    Missed(crate::ns::cluster_recovery::MissedAsk),
    /// Publish a request and collect the answers.
    Ask(ask::Ask),
    /// A namespace now exists here: subscribe to its request and response channels.
    Watch(Arc<str>),
    /// A namespace was removed here (`cleanup_empty_child_namespaces`): unsubscribe.
    Unwatch(Arc<str>),
}

/// Counters of the adapter, read by tests, logs and metrics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connected to Redis (subscribed and able to publish).
    pub up: AtomicBool,
    /// Messages published.
    pub published: AtomicU64,
    /// Messages not published: the queue was full or Redis was away.
    pub dropped: AtomicU64,
    /// Messages received from other servers and handled.
    pub received: AtomicU64,
    /// Messages received and ignored as malformed.
    pub malformed: AtomicU64,
    /// Publishing round trips to Redis (a pipeline written and answered), their total time in
    /// nanoseconds, and the last one's.
    pub round_trips: AtomicU64,
    pub round_trip_ns: AtomicU64,
    pub last_round_trip_ns: AtomicU64,
    /// Requests of this server to the others (fetches, server-side emits, broadcast acks,
    /// room lists) still awaiting answers or their timeout (the link's table, kept in step).
    pub requests_pending: Arc<AtomicU64>,
}

impl Stats {
    /// One publishing round trip took `d`.
    pub(crate) fn note_round_trip(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.round_trip_ns.fetch_add(ns, Ordering::Relaxed);
        self.last_round_trip_ns.store(ns, Ordering::Relaxed);
    }
}

/// Which of the Redis adapters' wire protocols a cluster speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// `createAdapter`: PUBLISH / PSUBSCRIBE, the request and response channels.
    Classic,
    /// `createShardedAdapter`: SPUBLISH / SSUBSCRIBE, socket.io-adapter's cluster messages.
    Sharded(SubscriptionMode),
    /// `@socket.io/redis-streams-adapter`: the same messages, those every server must apply
    /// in order appended to a stream (XADD / XREAD), the rest over PUBLISH / SUBSCRIBE.
    Streams,
}

/// The adapter object the operators call (any thread).
pub(crate) struct RedisAdapter {
    uid: String,
    key: String,
    proto: Proto,
    /// The stream's approximate length bound (`MAXLEN ~`), for [`Proto::Streams`].
    max_len: u64,
    /// Connection state recovery across servers ([`Proto::Streams`] with recovery on):
    /// this server's broadcasts are appended before they are delivered here.
    recovery: bool,
    requests_timeout: Duration,
    cmds: mpsc::Sender<Cmd>,
    pub(crate) stats: Arc<Stats>,
}

/// What [`new`] hands back: the adapter to install, and the Redis side to run once the
/// server's shared state exists.
pub(crate) struct Pending {
    pub(crate) adapter: Arc<RedisAdapter>,
    url: String,
    rx: mpsc::Receiver<Cmd>,
}

/// A new adapter for `url` with channel prefix `key`, speaking `proto`; nothing is
/// connected yet.
pub(crate) fn new(
    url: &str,
    key: &str,
    proto: Proto,
    requests_timeout: Duration,
    max_queued: usize,
    max_len: u64,
    recovery: bool,
) -> Pending {
    let (cmds, rx) = mpsc::channel(max_queued.max(1));
    let adapter = Arc::new(RedisAdapter {
        uid: new_id(),
        key: key.to_owned(),
        proto,
        max_len,
        recovery: recovery && proto == Proto::Streams,
        requests_timeout,
        cmds,
        stats: Arc::new(Stats::default()),
    });
    Pending { adapter, url: url.to_owned(), rx }
}

impl Pending {
    /// What starts the Redis side when the server listens: returns once subscribed (it
    /// retries with backoff while Redis cannot be reached, saying so in the log).
    pub(crate) fn starter(self) -> super::Starter {
        Box::new(move |server| match self.adapter.proto {
            Proto::Classic => link::start(self, server),
            Proto::Sharded(_) | Proto::Streams => sharded::start(self, server),
        })
    }
}

/// A server uid or request id: 16 hex digits.
fn new_id() -> String {
    (0..8).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

impl RedisAdapter {
    /// Queues `cmd` for the Redis side; false (and counted) when the queue is full.
    fn queue(&self, cmd: Cmd) -> bool {
        match self.cmds.try_send(cmd) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The channel requests of `nsp` go on (whose subscribers are the servers counted).
    fn request_channel(&self, nsp: &str) -> String {
        match self.proto {
            Proto::Classic => request::request_channel(&self.key, nsp),
            Proto::Sharded(_) | Proto::Streams => super::cluster_wire::channel(&self.key, nsp),
        }
    }

    /// `body` as this cluster's protocol writes it (`None`: it has no such request).
    fn encode_request(
        &self,
        nsp: &str,
        request_id: Option<String>,
        body: RequestBody,
    ) -> Option<Bytes> {
        match self.proto {
            Proto::Classic => {
                let r = Request { uid: Some(self.uid.clone()), request_id, body };
                Some(request::encode_request(&r))
            }
            Proto::Sharded(_) | Proto::Streams => {
                let body = sharded::body_of(body, request_id)?;
                let msg = super::cluster_wire::ClusterMessage {
                    uid: self.uid.clone(),
                    nsp: nsp.to_owned(),
                    body,
                };
                Some(self.encode_message(&msg))
            }
        }
    }

    /// A cluster message as this protocol publishes it on a channel.
    fn encode_message(&self, msg: &super::cluster_wire::ClusterMessage) -> Bytes {
        match self.proto {
            Proto::Streams => super::streams_wire::encode_pubsub(msg),
            _ => super::cluster_wire::encode(msg),
        }
    }

    fn publish_request(&self, nsp: &str, body: RequestBody) {
        if self.proto == Proto::Streams {
            // Joins, leaves and disconnects go to the stream, in order with the broadcasts.
            let Some(body) = sharded::body_of(body, None) else { return };
            let msg = super::cluster_wire::ClusterMessage {
                uid: self.uid.clone(),
                nsp: nsp.to_owned(),
                body,
            };
            if super::streams_wire::goes_to_stream(&msg) {
                self.queue(Cmd::Append(super::streams_wire::entry_fields(&msg)));
            } else {
                self.queue(Cmd::Publish(self.request_channel(nsp), self.encode_message(&msg)));
            }
            return;
        }
        if let Some(payload) = self.encode_request(nsp, None, body) {
            self.queue(Cmd::Publish(self.request_channel(nsp), payload));
        }
    }

    /// Why a request cannot be sent now, if it cannot.
    fn unavailable(&self) -> Option<RequestError> {
        (!self.stats.up.load(Ordering::Acquire))
            .then(|| RequestError::Unavailable("not connected to Redis".into()))
    }

    /// Publishes a request awaiting answers, with `kind` collecting them.
    fn ask(&self, nsp: &str, body: RequestBody, wait: Duration, kind: ask::Kind) {
        let request_id = new_id();
        let Some(payload) = self.encode_request(nsp, Some(request_id.clone()), body) else {
            kind.fail(RequestError::Unavailable("not a request of this protocol".into()));
            return;
        };
        let a = ask::Ask {
            request_channel: self.request_channel(nsp),
            payload,
            request_id,
            wait,
            kind,
        };
        if let Err(mpsc::error::TrySendError::Full(Cmd::Ask(a))) = self.cmds.try_send(Cmd::Ask(a)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            a.kind.fail(RequestError::Unavailable("the Redis queue is full".into()));
        }
    }

    /// Asks the other servers of `nsp` and waits for the collected answers.
    async fn ask_and_wait<T>(
        &self,
        nsp: &str,
        body: RequestBody,
        make: impl FnOnce(oneshot::Sender<Result<T, RequestError>>) -> ask::Kind,
    ) -> Result<T, RequestError> {
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        self.ask(nsp, body, self.requests_timeout, make(tx));
        rx.await.unwrap_or_else(|_| Err(RequestError::Unavailable("the Redis side stopped".into())))
    }
}

impl Adapter for RedisAdapter {
    fn counters(&self) -> Option<super::AdapterCounters> {
        let s = &self.stats;
        Some(super::AdapterCounters {
            connected: s.up.load(Ordering::Acquire),
            published: s.published.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            round_trips: s.round_trips.load(Ordering::Relaxed),
            round_trip_ns: s.round_trip_ns.load(Ordering::Relaxed),
            last_round_trip_ns: s.last_round_trip_ns.load(Ordering::Relaxed),
            requests_pending: s.requests_pending.load(Ordering::Relaxed),
        })
    }

    fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, local: bool) {
        if let (false, Proto::Sharded(mode)) = (local, self.proto) {
            let m = sharded::broadcast_message(&self.uid, &msg);
            let channel = super::cluster_wire::publish_channel(&self.key, &m, mode);
            self.queue(Cmd::Publish(channel, super::cluster_wire::encode(&m)));
        } else if let (false, Proto::Streams) = (local, self.proto) {
            let m = sharded::broadcast_message(&self.uid, &msg);
            let fields = super::streams_wire::entry_fields(&m);
            if self.recovery {
                // Delivered here once appended, with its offset (see `recover`); at once
                // when it cannot be queued.
                match self.cmds.try_send(Cmd::AppendThen(fields, recover::Then::Broadcast(msg))) {
                    Ok(()) => return,
                    Err(err) => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        if let Cmd::AppendThen(_, recover::Then::Broadcast(msg)) = err.into_inner()
                        {
                            broadcast::dispatch(server, msg);
                        }
                        return;
                    }
                }
            }
            self.queue(Cmd::Append(fields));
        } else if !local {
            let wire = WireBroadcast {
                uid: self.uid.clone(),
                nsp: msg.nsp.to_string(),
                event: msg.event.to_string(),
                args: (*msg.args).clone(),
                sel: msg.sel.clone(),
                volatile: msg.volatile,
                compress: msg.compress,
            };
            let channel = wire::broadcast_channel(&self.key, &msg.nsp, &msg.sel.rooms);
            self.queue(Cmd::Publish(channel, wire::encode_broadcast(&wire)));
        }
        broadcast::dispatch(server, msg);
    }

    fn broadcast_with_ack(
        &self,
        server: &ServerShared,
        msg: Arc<BroadcastMsg>,
        local: bool,
    ) -> AckPlan {
        let sink = msg.ack.as_ref().map(|(_, sink)| sink.clone());
        let remote = match sink {
            Some(sink) if !local => {
                if self.unavailable().is_some() {
                    // Nobody else can be asked: the remote part can only time out.
                    let _ = sink.send(AckEvent::RemoteExpired);
                } else {
                    let body = RequestBody::Broadcast {
                        event: msg.event.to_string(),
                        args: (*msg.args).clone(),
                        sel: msg.sel.clone(),
                        volatile: msg.volatile,
                        compress: msg.compress,
                        timeout: msg.ack_timeout,
                    };
                    let wait = msg.ack_timeout.unwrap_or(self.requests_timeout);
                    self.ask(&msg.nsp, body, wait, ask::Kind::Ack(sink));
                }
                true
            }
            _ => false,
        };
        AckPlan { shards: broadcast::dispatch(server, msg), remote }
    }

    fn fetch_sockets(
        &self,
        server: &Arc<ServerShared>,
        target: Target,
    ) -> BoxFuture<Result<Fetched, RequestError>> {
        let server = server.clone();
        let this = self.clone_handle();
        Box::pin(async move {
            let local =
                broadcast::fetch_sockets(&server, target.names.clone(), target.sel.clone()).await;
            if target.local {
                return Ok(Fetched { local, remote: Vec::new() });
            }
            let mut remote = Vec::new();
            for nsp in &target.names {
                let body = RequestBody::Fetch { sel: target.sel.clone() };
                remote.extend(this.ask_and_wait(nsp, body, ask::Kind::Fetch).await?);
            }
            Ok(Fetched { local, remote })
        })
    }

    fn sockets_join(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        if !target.local {
            for nsp in &target.names {
                let targets = Targets::Selection(target.sel.clone());
                self.publish_request(nsp, RequestBody::Join { targets, rooms: rooms.clone() });
            }
        }
        super::InProcess.sockets_join(server, target, rooms);
    }

    fn sockets_leave(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        if !target.local {
            for nsp in &target.names {
                let targets = Targets::Selection(target.sel.clone());
                self.publish_request(nsp, RequestBody::Leave { targets, rooms: rooms.clone() });
            }
        }
        super::InProcess.sockets_leave(server, target, rooms);
    }

    fn disconnect_sockets(&self, server: &ServerShared, target: Target, close: bool) {
        if !target.local {
            for nsp in &target.names {
                let targets = Targets::Selection(target.sel.clone());
                self.publish_request(nsp, RequestBody::Disconnect { targets, close });
            }
        }
        super::InProcess.disconnect_sockets(server, target, close);
    }

    fn server_side_emit(&self, _server: &ServerShared, nsp: &str, event: &str, args: Args) {
        self.publish_request(nsp, RequestBody::ServerSideEmit { event: event.to_owned(), args });
    }

    fn server_side_emit_with_ack(
        &self,
        _server: &ServerShared,
        nsp: &str,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<Args>, ServerSideAckError>> {
        let this = self.clone_handle();
        let (nsp, event) = (nsp.to_owned(), event.to_owned());
        Box::pin(async move {
            if let Some(e) = this.unavailable() {
                return Err(ServerSideAckError::Unavailable(e.to_string()));
            }
            let (tx, rx) = oneshot::channel();
            let body = RequestBody::ServerSideEmit { event, args };
            this.ask(&nsp, body, timeout, ask::Kind::ServerSide(tx));
            rx.await.unwrap_or_else(|_| {
                Err(ServerSideAckError::Unavailable("the Redis side stopped".into()))
            })
        })
    }

    fn all_rooms(
        &self,
        server: &Arc<ServerShared>,
        names: Vec<Arc<str>>,
    ) -> BoxFuture<Result<Vec<Room>, RequestError>> {
        let server = server.clone();
        let this = self.clone_handle();
        Box::pin(async move {
            let mut rooms = broadcast::all_rooms(&server, names.clone()).await;
            // The sharded protocol has no such request: this server's rooms alone.
            let names = if this.proto == Proto::Classic { names } else { Vec::new() };
            for nsp in &names {
                rooms.extend(
                    this.ask_and_wait(nsp, RequestBody::AllRooms, ask::Kind::AllRooms).await?,
                );
            }
            rooms.sort();
            rooms.dedup();
            Ok(rooms)
        })
    }

    fn server_count(&self, nsp: &str) -> BoxFuture<Result<usize, RequestError>> {
        let this = self.clone_handle();
        let nsp = nsp.to_owned();
        Box::pin(async move {
            if let Some(e) = this.unavailable() {
                return Err(e);
            }
            let (tx, rx) = oneshot::channel();
            let channel = this.request_channel(&nsp);
            if !this.queue(Cmd::Ask(ask::Ask::count(channel, tx))) {
                return Err(RequestError::Unavailable("the Redis queue is full".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(RequestError::Unavailable("the Redis side stopped".into())))
        })
    }
}

impl RedisAdapter {
    /// Whether connection state recovery goes through this adapter (the Redis Streams
    /// adapter, with recovery on).
    pub(crate) fn keeps_packets(&self) -> bool {
        self.recovery
    }

    /// A handle for the futures the adapter returns (they outlive the `&self` borrow).
    fn clone_handle(&self) -> Arc<RedisAdapter> {
        Arc::new(RedisAdapter {
            uid: self.uid.clone(),
            key: self.key.clone(),
            proto: self.proto,
            max_len: self.max_len,
            recovery: self.recovery,
            requests_timeout: self.requests_timeout,
            cmds: self.cmds.clone(),
            stats: self.stats.clone(),
        })
    }
}

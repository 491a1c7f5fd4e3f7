//! The sharded Redis adapter, wire-compatible with `@socket.io/redis-adapter` 8.2+'s
//! `createShardedAdapter` (Redis 7 sharded pub/sub): socket.io-adapter's cluster messages
//! ([`crate::adapter::cluster_wire`]) with SPUBLISH / SSUBSCRIBE on `{prefix}#{nsp}#` (every
//! server), `{prefix}#{nsp}#{uid}#` (the answers to this server) and, in the `dynamic`
//! subscription mode (the default), `{prefix}#{nsp}#{room}#` for each public room a server
//! has, where one-room broadcasts go. Servers are counted with `PUBSUB SHARDNUMSUB`.
//!
//! It runs on a single Redis 7 or on a **Redis Cluster** (detected from `INFO cluster` when
//! connecting): there the `redis` crate's cluster connection routes each channel to the
//! node of its slot, and resubscribes after a node comes back. On a single Redis, the
//! subscriber is a plain connection read here (the crate has no sharded subscribe outside
//! its cluster client): SSUBSCRIBE and the `smessage` pushes are a few lines of RESP on top
//! of its value codec.
//!
//! The requests are those of the classic adapter less `allRooms` (this protocol has none:
//! `all_rooms` answers for this server alone, as the reference's does).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::ask::{self, Answer};
use super::serve;
use super::{Cmd, Pending, RedisAdapter, MAX_DEPTH};
use crate::adapter::cluster_wire::{
    self as cw, Body, ClusterMessage, Flags, Opts, SubscriptionMode,
};
use crate::adapter::request::{Request, RequestBody, Targets, WireSocket};
use crate::adapter::{RequestError, Started};
use crate::broadcast::{self, BroadcastMsg};
use crate::ns::shared::ServerShared;
use crate::ns::{NamespaceInner, Room, RoomChange};
use crate::proto::offset::EntryId;

/// A request of the seam as a cluster message body (`None`: the protocol has no such
/// request, or no one-socket form).
pub(super) fn body_of(body: RequestBody, request_id: Option<String>) -> Option<Body> {
    let opts = |sel| Opts::from(sel);
    Some(match body {
        RequestBody::Join { targets: Targets::Selection(sel), rooms } => {
            Body::SocketsJoin { opts: opts(sel), rooms }
        }
        RequestBody::Leave { targets: Targets::Selection(sel), rooms } => {
            Body::SocketsLeave { opts: opts(sel), rooms }
        }
        RequestBody::Disconnect { targets: Targets::Selection(sel), close } => {
            Body::DisconnectSockets { opts: opts(sel), close }
        }
        RequestBody::Fetch { sel } => {
            Body::FetchSockets { opts: opts(sel), request_id: request_id? }
        }
        RequestBody::ServerSideEmit { event, args } => {
            Body::ServerSideEmit { event, args, request_id }
        }
        RequestBody::Broadcast { event, args, sel, volatile, compress, timeout } => {
            Body::Broadcast {
                opts: Opts {
                    rooms: sel.rooms,
                    except: sel.except,
                    flags: Flags {
                        volatile,
                        compress: (!compress).then_some(false),
                        timeout: timeout.map(|t| t.as_millis() as u64),
                        ..Flags::default()
                    },
                },
                event,
                args,
                request_id,
            }
        }
        _ => return None,
    })
}

/// A broadcast as this server publishes it.
pub(super) fn broadcast_message(uid: &str, msg: &BroadcastMsg) -> ClusterMessage {
    ClusterMessage {
        uid: uid.to_owned(),
        nsp: msg.nsp.to_string(),
        body: Body::Broadcast {
            opts: Opts {
                rooms: msg.sel.rooms.clone(),
                except: msg.sel.except.clone(),
                flags: Flags {
                    volatile: msg.volatile,
                    compress: (!msg.compress).then_some(false),
                    ..Flags::default()
                },
            },
            event: msg.event.to_string(),
            args: (*msg.args).clone(),
            request_id: None,
        },
    }
}

/// What a received cluster message asks of this server.
enum Incoming {
    /// Deliver a broadcast here.
    Broadcast(ClusterMessage),
    /// Answer (or apply) a request.
    Request(Request),
    /// An answer to a request of ours.
    Answer(String, Answer),
    /// Nothing (heartbeats, closes: this protocol's servers do not send them).
    Nothing,
}

fn incoming(m: ClusterMessage) -> Incoming {
    let uid = Some(m.uid.clone());
    let request = |request_id: Option<String>, body| {
        Incoming::Request(Request { uid: uid.clone(), request_id, body })
    };
    match m.body {
        Body::Broadcast { request_id: None, .. } => Incoming::Broadcast(m),
        Body::Broadcast { opts, event, args, request_id: Some(id) } => request(
            Some(id),
            RequestBody::Broadcast {
                event,
                args,
                sel: (&opts).into(),
                volatile: opts.flags.volatile,
                compress: opts.flags.compress.unwrap_or(true),
                timeout: opts.flags.timeout.map(Duration::from_millis),
            },
        ),
        Body::SocketsJoin { opts, rooms } => {
            request(None, RequestBody::Join { targets: Targets::Selection((&opts).into()), rooms })
        }
        Body::SocketsLeave { opts, rooms } => {
            request(None, RequestBody::Leave { targets: Targets::Selection((&opts).into()), rooms })
        }
        Body::DisconnectSockets { opts, close } => request(
            None,
            RequestBody::Disconnect { targets: Targets::Selection((&opts).into()), close },
        ),
        Body::FetchSockets { opts, request_id } => {
            request(Some(request_id), RequestBody::Fetch { sel: (&opts).into() })
        }
        Body::ServerSideEmit { event, args, request_id } => {
            request(request_id, RequestBody::ServerSideEmit { event, args })
        }
        Body::FetchSocketsResponse { request_id, sockets, .. } => {
            let sockets = sockets
                .into_iter()
                .map(|s| WireSocket {
                    id: s.id,
                    handshake: s.handshake,
                    rooms: s.rooms,
                    data: s.data.unwrap_or(serde_json::Value::Null),
                })
                .collect();
            Incoming::Answer(request_id, Answer::Sockets(sockets))
        }
        Body::ServerSideEmitResponse { request_id, reply } => {
            Incoming::Answer(request_id, Answer::ServerSide(reply))
        }
        Body::BroadcastClientCount { request_id, client_count } => Incoming::Answer(
            request_id,
            Answer::ClientCount(usize::try_from(client_count).unwrap_or(usize::MAX)),
        ),
        Body::BroadcastAck { request_id, reply } => {
            Incoming::Answer(request_id, Answer::Ack(reply))
        }
        Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => Incoming::Nothing,
    }
}

/// An answer of this server to `to`'s request, as a cluster message on `to`'s response
/// channel.
pub(super) fn response(a: &RedisAdapter, nsp: &str, to: &str, body: Body) -> (String, Bytes) {
    let m = ClusterMessage { uid: a.uid.clone(), nsp: nsp.to_owned(), body };
    (cw::response_channel(&a.key, nsp, to), a.encode_message(&m))
}

// ---------------------------------------------------------------------------------------
// The Redis side: connections, subscriptions, dispatch
// ---------------------------------------------------------------------------------------

/// What the publisher and the namespaces tell the link.
enum Internal {
    Register { id: String, kind: ask::Kind, channel: String, deadline: tokio::time::Instant },
    Count(String, oneshot::Sender<Result<usize, RequestError>>),
    Servers(String, usize),
    Expire(String),
    Watch(Arc<str>),
    Unwatch(Arc<str>),
    Room(Arc<str>, Room, bool),
    PublishFailed,
}

/// The publishing side: a single Redis's multiplexed connection or a cluster's.
#[derive(Clone)]
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// `PUBSUB SHARDNUMSUB channel` (a cluster sums every node's answer), or `PUBSUB NUMSUB`
/// for the streams adapter's plain channels.
async fn shardnumsub(mut conn: Conn, channel: &str, plain: bool) -> redis::RedisResult<usize> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg(if plain { "NUMSUB" } else { "SHARDNUMSUB" }).arg(channel);
    let v: redis::Value = conn.query(&cmd).await?;
    // [channel, n] (a map in RESP3 and from the cluster's combination)
    let n = match v {
        redis::Value::Array(items) => {
            items.get(1).and_then(|n| redis::from_redis_value::<usize>(n.clone()).ok())
        }
        redis::Value::Map(pairs) => {
            pairs.first().and_then(|(_, n)| redis::from_redis_value::<usize>(n.clone()).ok())
        }
        _ => None,
    };
    n.ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "unexpected PUBSUB NUMSUB answer"))
    })
}

/// The subscribing side.
enum Sub {
    /// A plain connection to a single Redis, read here.
    Single {
        write: tokio_util::codec::FramedWrite<tokio::net::tcp::OwnedWriteHalf, RawCodec>,
        read: tokio_util::codec::FramedRead<tokio::net::tcp::OwnedReadHalf, redis::ValueCodec>,
        /// Plain SUBSCRIBE (the streams adapter) instead of SSUBSCRIBE.
        plain: bool,
    },
    /// The cluster connection (its pushes arrive on `pushes`).
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

/// Writes packed commands as they are.
#[derive(Default)]
struct RawCodec;

impl tokio_util::codec::Encoder<Vec<u8>> for RawCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Vec<u8>, dst: &mut bytes::BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

impl Sub {
    /// Subscribes to each channel, one command each (channels of several slots cannot
    /// share one on a cluster).
    async fn ssubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        for channel in channels {
            match self {
                Sub::Single { write, plain, .. } => {
                    let name = if *plain { "SUBSCRIBE" } else { "SSUBSCRIBE" };
                    let packed = redis::cmd(name).arg(channel).get_packed_command();
                    write.send(packed).await?;
                }
                Sub::Cluster { conn, .. } => conn.ssubscribe(channel).await?,
            }
        }
        Ok(())
    }

    async fn sunsubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        for channel in channels {
            match self {
                Sub::Single { write, plain, .. } => {
                    let name = if *plain { "UNSUBSCRIBE" } else { "SUNSUBSCRIBE" };
                    let packed = redis::cmd(name).arg(channel).get_packed_command();
                    write.send(packed).await?;
                }
                Sub::Cluster { conn, .. } => conn.sunsubscribe(channel).await?,
            }
        }
        Ok(())
    }

    /// Asks a single Redis for a `pong` after what was sent before (the subscriptions);
    /// false when there is nothing to wait for (a cluster confirms each subscription).
    async fn ping(&mut self) -> redis::RedisResult<bool> {
        match self {
            Sub::Single { write, .. } => {
                write.send(redis::cmd("PING").get_packed_command()).await?;
                Ok(true)
            }
            Sub::Cluster { .. } => Ok(false),
        }
    }

    /// The next message: `Some((channel, payload))`, `Some` of an empty channel for other
    /// pushes ([`PONG`] for a `pong`), `None` when the connection is gone.
    async fn next(&mut self) -> Option<(String, Bytes)> {
        let (kind, data) = match self {
            Sub::Single { read, .. } => match read.next().await? {
                Ok(redis::Value::Array(mut items))
                | Ok(redis::Value::Push { data: mut items, .. }) => {
                    if items.is_empty() {
                        return Some((String::new(), Bytes::new()));
                    }
                    let kind = bulk(&items.remove(0)).unwrap_or_default();
                    (kind, items)
                }
                Ok(_) => return Some((String::new(), Bytes::new())),
                Err(e) => {
                    tracing::debug!(error = %e, "redis adapter: subscriber read failed");
                    return None;
                }
            },
            Sub::Cluster { pushes, .. } => {
                let p = pushes.recv().await?;
                (format!("{:?}", p.kind).to_ascii_lowercase(), p.data)
            }
        };
        if kind == "pong" {
            return Some((PONG.to_owned(), Bytes::new()));
        }
        if !(kind == "smessage" || kind == "message") || data.len() < 2 {
            return Some((String::new(), Bytes::new()));
        }
        let channel = bulk(&data[0]).unwrap_or_default();
        let payload = match &data[1] {
            redis::Value::BulkString(b) => Bytes::copy_from_slice(b),
            _ => Bytes::new(),
        };
        Some((channel, payload))
    }
}

/// What [`Sub::next`] gives for a `pong` (no channel is named so: channels have a `#`).
const PONG: &str = "pong";

fn bulk(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Connects the publishing and the subscribing side, to a single Redis or a cluster.
async fn connect(
    client: &redis::Client,
    url: &str,
    plain: bool,
) -> redis::RedisResult<(Sub, Conn)> {
    let mut single =
        client.get_multiplexed_async_connection_with_config(&super::conn_config()).await?;
    let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut single).await?;
    if info.contains("cluster_enabled:1") && plain {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "the streams adapter runs on a single Redis, not a Redis Cluster",
        )));
    }
    if info.contains("cluster_enabled:1") {
        let (tx, pushes) = mpsc::unbounded_channel();
        let cluster = redis::cluster::ClusterClientBuilder::new(vec![url])
            .use_protocol(redis::ProtocolVersion::RESP3)
            .response_timeout(super::RESPONSE_TIMEOUT)
            .push_sender(tx)
            .build()?;
        let sub = cluster.get_async_connection().await?;
        let publisher = cluster.get_async_connection().await?;
        return Ok((Sub::Cluster { conn: sub, pushes }, Conn::Cluster(publisher)));
    }
    let info = client.get_connection_info();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "the sharded adapter reaches a single Redis over plain TCP only",
        )));
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut write = tokio_util::codec::FramedWrite::new(w, RawCodec);
    let mut read = tokio_util::codec::FramedRead::new(r, redis::ValueCodec::default());
    let settings = info.redis_settings();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        write.send(auth.arg(password).get_packed_command()).await?;
        match read.next().await {
            Some(Ok(redis::Value::Okay | redis::Value::SimpleString(_))) => {}
            _ => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::AuthenticationFailed,
                    "AUTH refused",
                )))
            }
        }
    }
    Ok((Sub::Single { write, read, plain }, Conn::Single(single)))
}

/// Starts the Redis side of the sharded adapter on shard 0; returns once subscribed.
pub(super) fn start(p: Pending, server: Arc<ServerShared>) -> std::io::Result<Started> {
    let on = server.clone();
    crate::adapter::run_on_shard(&on, move |ready, stop| run(p, server, ready, stop))
}

struct Link {
    ctx: Arc<serve::Ctx>,
    mode: SubscriptionMode,
    /// The streams adapter: plain channels, no room channels, a stream beside.
    streams: bool,
    url: String,
    table: ask::Table,
    /// Namespaces, and the public rooms this server has (dynamic room channels).
    nsps: BTreeSet<Arc<str>>,
    rooms: BTreeSet<(Arc<str>, Room)>,
    conn: Option<Conn>,
    internal: mpsc::UnboundedSender<Internal>,
}

impl Link {
    fn prefix(&self) -> &str {
        &self.ctx.adapter.key
    }

    fn nsp_channels(&self, nsp: &str) -> Vec<String> {
        vec![
            cw::channel(self.prefix(), nsp),
            cw::response_channel(self.prefix(), nsp, &self.ctx.adapter.uid),
        ]
    }

    fn all_channels(&self) -> Vec<String> {
        let mut out: Vec<String> = self.nsps.iter().flat_map(|n| self.nsp_channels(n)).collect();
        out.extend(self.rooms.iter().map(|(n, r)| cw::room_channel(self.prefix(), n, r)));
        out
    }

    /// Whether a room of this server gets its own channel.
    fn room_has_channel(&self, room: &str) -> bool {
        !self.streams && self.mode.subscribes_to_room(cw::looks_like_socket_id(room))
    }

    async fn handle_internal(&mut self, msg: Internal, sub: Option<&mut Sub>) -> bool {
        match msg {
            Internal::Register { id, kind, channel, deadline } => {
                let plain = self.streams;
                self.table.insert(id.clone(), kind);
                let count =
                    self.conn.clone().map(|c| async move { shardnumsub(c, &channel, plain).await });
                let (l1, l2) = (self.internal.clone(), self.internal.clone());
                ask::spawn_wait(
                    count,
                    id,
                    deadline,
                    move |id, n| drop(l1.send(Internal::Servers(id, n))),
                    move |id| drop(l2.send(Internal::Expire(id))),
                );
            }
            Internal::Count(channel, tx) => {
                let plain = self.streams;
                let count =
                    self.conn.clone().map(|c| async move { shardnumsub(c, &channel, plain).await });
                ask::spawn_count(count, tx);
            }
            Internal::Servers(id, n) => self.table.set_servers(&id, n),
            Internal::Expire(id) => self.table.expire(&id),
            Internal::Watch(nsp) => {
                if nsp.starts_with('/') && self.nsps.insert(nsp.clone()) {
                    if let Some(sub) = sub {
                        if sub.ssubscribe(&self.nsp_channels(&nsp)).await.is_err() {
                            return false;
                        }
                    }
                }
            }
            Internal::Unwatch(nsp) => {
                if self.nsps.remove(&nsp) {
                    if let Some(sub) = sub {
                        if sub.sunsubscribe(&self.nsp_channels(&nsp)).await.is_err() {
                            return false;
                        }
                    }
                }
            }
            Internal::Room(nsp, room, created) => {
                if !self.room_has_channel(&room) {
                    return true;
                }
                let channel = [cw::room_channel(self.prefix(), &nsp, &room)];
                let changed = if created {
                    self.rooms.insert((nsp, room))
                } else {
                    self.rooms.remove(&(nsp, room))
                };
                if let (true, Some(sub)) = (changed, sub) {
                    let r = if created {
                        sub.ssubscribe(&channel).await
                    } else {
                        sub.sunsubscribe(&channel).await
                    };
                    if r.is_err() {
                        return false;
                    }
                }
            }
            Internal::PublishFailed => return false,
        }
        true
    }

    fn on_message(&mut self, channel: &str, payload: &Bytes) {
        let stats = &self.ctx.adapter.stats;
        let m = match cw::decode(payload, MAX_DEPTH) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%channel, error = %e, "redis adapter: ignored a message");
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        stats.received.fetch_add(1, Ordering::Relaxed);
        if let Some((id, a)) = handle_message(&self.ctx, m, None) {
            self.table.answer(&id, a);
        }
    }
}

/// Handles a cluster message from another server (ours are skipped: what this server
/// publishes it has applied already); an answer to a request of ours is handed back.
/// `entry`: the stream entry it was read from (the Redis Streams adapter), its offset
/// with recovery across servers.
pub(super) fn handle_message(
    ctx: &Arc<serve::Ctx>,
    m: ClusterMessage,
    entry: Option<EntryId>,
) -> Option<(String, Answer)> {
    // Ours are applied here already, but for our broadcasts read back from the stream with
    // recovery across servers: those are delivered here as they are read, in the stream's
    // order with every other server's (see `recover`).
    let ours_to_deliver = entry.is_some()
        && ctx.adapter.keeps_packets()
        && matches!(&m.body, Body::Broadcast { request_id: None, .. });
    if (m.uid == ctx.adapter.uid && !ours_to_deliver) || ctx.server.existing(&m.nsp).is_none() {
        return None;
    }
    let nsp = m.nsp.clone();
    match incoming(m) {
        Incoming::Broadcast(m) => deliver(ctx, m, entry),
        Incoming::Request(r) => serve::handle(ctx, &nsp, r),
        Incoming::Answer(id, a) => return Some((id, a)),
        Incoming::Nothing => {}
    }
    None
}

/// Another server's broadcast, into this server's fan-out.
fn deliver(ctx: &serve::Ctx, m: ClusterMessage, entry: Option<EntryId>) {
    let server = &ctx.server;
    let Some(nsp) = server.existing(&m.nsp) else { return };
    let Body::Broadcast { opts, event, args, .. } = m.body else { return };
    let sel = (&opts).into();
    let compress = opts.flags.compress.unwrap_or(true);
    let volatile = opts.flags.volatile;
    let msg = match entry {
        // Recovery across servers: its entry id is its offset.
        Some(id) if ctx.adapter.keeps_packets() && !volatile => {
            broadcast::encode_entry(server, &nsp, &sel, &event, args, compress, id)
        }
        _ => broadcast::encode(server, &nsp, &sel, &event, args, None, volatile, compress),
    };
    match msg {
        Ok(msg) => {
            broadcast::dispatch(server, msg);
        }
        Err(e) => tracing::debug!(error = %e, "redis adapter: refused a broadcast"),
    }
}

/// Tells the link of `nsp`'s rooms as they are created and deleted (dynamic room channels),
/// naming the namespace of each (one watcher per dynamic pattern serves all its children).
fn watch_rooms(ns: &NamespaceInner, link: mpsc::UnboundedSender<Internal>) {
    ns.add_room_watcher(
        "sharded-redis-adapter",
        Arc::new(move |nsp: &Arc<str>, ev: &RoomChange| {
            let msg = match ev {
                RoomChange::CreateRoom(r) => Internal::Room(nsp.clone(), r.clone(), true),
                RoomChange::DeleteRoom(r) => Internal::Room(nsp.clone(), r.clone(), false),
                _ => return,
            };
            let _ = link.send(msg);
        }),
    );
}

async fn run(
    p: Pending,
    server: Arc<ServerShared>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    mut stop: oneshot::Receiver<()>,
) {
    let Pending { adapter, url, rx } = p;
    let (mode, streams) = match adapter.proto {
        super::Proto::Sharded(mode) => (mode, false),
        super::Proto::Streams => (SubscriptionMode::Static, true),
        super::Proto::Classic => return,
    };
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("invalid Redis URL {url}: {e}")));
            return;
        }
    };
    let (internal_tx, mut internal) = mpsc::unbounded_channel();
    let (conn_tx, conn_rx) = watch::channel(None);
    {
        let (adapter, link) = (adapter.clone(), internal_tx.clone());
        let existing = server.watch_namespaces(Box::new(move |ns, created| {
            if !created {
                let _ = adapter.cmds.try_send(Cmd::Unwatch(ns.name.clone()));
                return;
            }
            // Its rooms are watched at once, before a socket can join one; its channels are
            // subscribed in order with what was published before.
            if !streams {
                watch_rooms(ns, link.clone());
            }
            let _ = adapter.cmds.try_send(Cmd::Watch(ns.name.clone()));
        }));
        for name in existing.into_iter().filter(|n| n.starts_with('/')) {
            if let (false, Some(ns)) = (streams, server.existing(&name)) {
                watch_rooms(&ns, internal_tx.clone());
            }
            let _ = internal_tx.send(Internal::Watch(name));
        }
    }
    let ctx = Arc::new(serve::Ctx { server: server.clone(), adapter: adapter.clone() });
    let progress = super::recover::Progress::new();
    tokio::spawn(publisher(
        rx,
        conn_rx,
        internal_tx.clone(),
        adapter.clone(),
        streams,
        server.clone(),
        progress.clone(),
    ));
    tokio::spawn(super::link::log_drops(adapter.clone()));
    let mut link = Link {
        ctx,
        mode,
        streams,
        url,
        table: ask::Table::new(adapter.stats.requests_pending.clone()),
        nsps: BTreeSet::new(),
        rooms: BTreeSet::new(),
        conn: None,
        internal: internal_tx,
    };
    // The namespaces that exist are watched before the first subscription.
    while let Ok(msg) = internal.try_recv() {
        link.handle_internal(msg, None).await;
    }
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    // The streams adapter's reader, once started (it reconnects on its own).
    let mut reader: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = tokio::time::timeout(Duration::from_secs(5), connect(&client, &link.url, streams)) => c,
        };
        let (mut sub, conn) = match connected {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                tracing::warn!("cannot reach Redis at {}: {e}; retrying in {backoff:?}", link.url);
                if !pause(&mut link, &mut internal, &mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    "cannot reach Redis at {}: connect timed out; retrying in {backoff:?}",
                    link.url
                );
                if !pause(&mut link, &mut internal, &mut stop, backoff).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = sub.ssubscribe(&link.all_channels()).await {
            tracing::warn!("cannot subscribe on Redis at {}: {e}", link.url);
            continue;
        }
        if streams && reader.is_none() {
            // The stream is read from its last entry now, before this server says it is
            // ready: nothing appended after that is missed.
            let Conn::Single(mut c) = conn.clone() else { continue };
            match super::streams::last_id(&mut c, &link.ctx.adapter.key).await {
                Ok(from) => {
                    let ctx = link.ctx.clone();
                    let stream = link.ctx.adapter.key.clone();
                    reader = Some(tokio::spawn(super::streams::read(
                        client.clone(),
                        stream,
                        from,
                        ctx,
                        progress.clone(),
                    )));
                }
                Err(e) => {
                    tracing::warn!("cannot read the stream on Redis at {}: {e}", link.url);
                    continue;
                }
            }
        }
        backoff = Duration::from_millis(100);
        link.conn = Some(conn.clone());
        let _ = conn_tx.send(Some(conn));
        link.ctx.adapter.stats.up.store(true, Ordering::Release);
        // Ready once the subscriptions are in force: on a single Redis, when the PING sent
        // after them is answered on the same connection.
        let mut ready_now = ready.take();
        let mut waiting_pong = match sub.ping().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot subscribe on Redis at {}: {e}", link.url);
                ready = ready_now;
                continue;
            }
        };
        if !waiting_pong {
            match ready_now.take() {
                Some(r) => drop(r.send(Ok(()))),
                None => tracing::warn!("reconnected to Redis at {}", link.url),
            }
        }
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                Some(msg) = internal.recv() => {
                    if !link.handle_internal(msg, Some(&mut sub)).await {
                        break;
                    }
                }
                msg = sub.next() => match msg {
                    Some((channel, _)) if channel == PONG && waiting_pong => {
                        waiting_pong = false;
                        match ready_now.take() {
                            Some(r) => drop(r.send(Ok(()))),
                            None => tracing::warn!("reconnected to Redis at {}", link.url),
                        }
                    }
                    Some((channel, payload)) if !channel.is_empty() => link.on_message(&channel, &payload),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        link.ctx.adapter.stats.up.store(false, Ordering::Release);
        link.conn = None;
        let _ = conn_tx.send(None);
        // Lost before the first PING came back: still not ready.
        if ready_now.is_some() {
            ready = ready_now;
        }
        tracing::warn!("lost the connection to Redis at {}; reconnecting", link.url);
    }
}

/// Waits `d` while still handling what the publisher says; false when stopped.
async fn pause(
    link: &mut Link,
    internal: &mut mpsc::UnboundedReceiver<Internal>,
    stop: &mut oneshot::Receiver<()>,
    d: Duration,
) -> bool {
    let pause = tokio::time::sleep(d);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            _ = &mut *stop => return false,
            () = &mut pause => return true,
            Some(msg) = internal.recv() => drop(link.handle_internal(msg, None).await),
        }
    }
}

/// `n` failures, for a pipeline that failed as a whole.
fn failed_all(n: u64, why: &str) -> Vec<redis::RedisResult<redis::Value>> {
    (0..n).map(|_| Err(redis::RedisError::from(std::io::Error::other(why.to_owned())))).collect()
}

/// Publishes what the shards queue with SPUBLISH, everything waiting since the last
/// write sent together (each command on its own, in order: a cluster routes each channel
/// to its node).
#[allow(clippy::too_many_arguments)]
async fn publisher(
    mut rx: mpsc::Receiver<Cmd>,
    mut conn: watch::Receiver<Option<Conn>>,
    link: mpsc::UnboundedSender<Internal>,
    adapter: Arc<RedisAdapter>,
    plain: bool,
    server: Arc<ServerShared>,
    progress: Arc<super::recover::Progress>,
) {
    let stats = &adapter.stats;
    let publish = if plain { "PUBLISH" } else { "SPUBLISH" };
    let (restores, jobs) = mpsc::unbounded_channel();
    tokio::spawn(super::recover::restorer(
        jobs,
        adapter.key.clone(),
        server.clone(),
        progress.clone(),
        adapter.requests_timeout,
    ));
    let recovery = server.config().connection_state_recovery;
    let window = recovery.map_or(Duration::ZERO, |r| r.max_disconnection_duration);
    let live = recovery.is_some_and(|r| r.live_sessions);
    let live_ttl = window + crate::ns::cluster_recovery::live_refresh(window);
    let prefix = super::recover::SESSION_PREFIX;
    let xadd = |f: super::super::streams_wire::EntryFields| {
        // XADD {stream} MAXLEN ~ {max_len} * uid U nsp N type T [data D]
        let mut c = redis::cmd("XADD");
        c.arg(&adapter.key).arg("MAXLEN").arg("~").arg(adapter.max_len).arg("*");
        c.arg("uid").arg(f.uid).arg("nsp").arg(f.nsp).arg("type").arg(f.kind);
        if let Some(d) = f.data {
            c.arg("data").arg(d.as_ref());
        }
        c
    };
    let mut batch = Vec::with_capacity(1024);
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let current = conn.borrow_and_update().clone();
        let single = match &current {
            Some(Conn::Single(c)) => Some(c.clone()),
            _ => None,
        };
        let mut cmds = Vec::new();
        // Deliveries after the replies (recovery across servers): the command whose reply
        // is the entry id, if any.
        let mut thens: Vec<(Option<usize>, super::recover::Then)> = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Publish(channel, payload) => {
                    let mut c = redis::cmd(publish);
                    c.arg(channel).arg(payload.as_ref());
                    cmds.push(c);
                }
                Cmd::Append(f) => cmds.push(xadd(f)),
                Cmd::AppendThen(f, then) => {
                    cmds.push(xadd(f));
                    thens.push((Some(cmds.len() - 1), then));
                }
                Cmd::Then(then) => thens.push((None, then)),
                Cmd::Persist(session) if live => {
                    cmds.push(super::sessions::persist_live_cmd(
                        prefix,
                        &session,
                        &adapter.uid,
                        window,
                    ));
                }
                Cmd::Persist(session) => {
                    cmds.push(super::sessions::persist_cmd(prefix, &session, window));
                }
                Cmd::KeepLive(sessions) => {
                    for s in &sessions {
                        cmds.push(super::sessions::keep_live_cmd(
                            prefix,
                            s,
                            &adapter.uid,
                            live_ttl,
                        ));
                    }
                }
                Cmd::DropLive(pid) => {
                    cmds.push(super::sessions::drop_live_cmd(prefix, &pid, &adapter.uid));
                }
                Cmd::Take(ask) => {
                    let stream = adapter.key.clone();
                    let owner = live.then(|| adapter.uid.clone());
                    tokio::spawn(super::recover::take(
                        single.clone(),
                        stream,
                        ask,
                        server.clone(),
                        owner,
                    ));
                }
                Cmd::Missed(ask) => {
                    // Served with the other restores waiting (one read of the stream).
                    let _ = restores.send((ask, single.clone()));
                }
                Cmd::Watch(nsp) => drop(link.send(Internal::Watch(nsp))),
                Cmd::Unwatch(nsp) => drop(link.send(Internal::Unwatch(nsp))),
                Cmd::Ask(a) => {
                    let ask::Ask { request_channel, payload, request_id, wait, kind } = a;
                    if current.is_none() {
                        kind.fail(RequestError::Unavailable("not connected to Redis".into()));
                        continue;
                    }
                    if let ask::Kind::Count(tx) = kind {
                        let _ = link.send(Internal::Count(request_channel, tx));
                        continue;
                    }
                    let deadline = tokio::time::Instant::now() + wait;
                    let mut c = redis::cmd(publish);
                    c.arg(&request_channel).arg(payload.as_ref());
                    cmds.push(c);
                    let _ = link.send(Internal::Register {
                        id: request_id,
                        kind,
                        channel: request_channel,
                        deadline,
                    });
                }
            }
        }
        if cmds.is_empty() && thens.is_empty() {
            continue;
        }
        progress.sent.fetch_add(1, Ordering::AcqRel);
        let n = cmds.len() as u64;
        let sent = std::time::Instant::now();
        let results = match current {
            Some(Conn::Single(mut c)) if n > 0 => {
                // One pipeline: written, executed and answered in this order (the entry
                // ids of the appends follow the order the shards issued them, which is the
                // order they are delivered here; separate concurrent sends did not
                // promise it).
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                match pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut c).await {
                    Ok(v) if v.len() == n as usize => v,
                    Ok(_) => failed_all(n, "a pipeline answered a different number of replies"),
                    Err(e) => failed_all(n, &e.to_string()),
                }
            }
            Some(c) if n > 0 => {
                // A Redis Cluster routes each channel to its node: issued together, polled
                // in order.
                let sends = cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { c.query::<redis::Value>(cmd).await }
                });
                futures_util::future::join_all(sends).await
            }
            c => {
                if c.is_none() {
                    stats.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Vec::new()
            }
        };
        let failed = results.iter().filter(|r| r.is_err()).count() as u64;
        if !results.is_empty() {
            stats.published.fetch_add(n - failed, Ordering::Relaxed);
            if failed == 0 {
                stats.note_round_trip(sent.elapsed());
            }
        }
        // What was appended is delivered here by the stream reader, as it reads it back (in
        // the stream's order: a client's last offset is then always its newest packet, which
        // a restore replays from). What was not (Redis away, an append refused, or not meant
        // for the stream) is delivered now, in the order issued, without an offset: local
        // traffic goes on.
        for (at, then) in thens {
            let appended = at.and_then(|i| results.get(i)).and_then(super::recover::entry_id);
            if appended.is_none() {
                then.run(&server);
            }
        }
        progress.done.send_modify(|d| *d += 1);
        if failed > 0 {
            stats.dropped.fetch_add(failed, Ordering::Relaxed);
            let _ = link.send(Internal::PublishFailed);
        }
    }
}

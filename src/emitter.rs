//! The emitter: broadcasts, remote joins, leaves and disconnects, and server-side emits
//! published on Redis by a process that is not a server, for the servers of a cluster
//! (shardcast or Node, on the classic Redis adapter) to carry out, wire-compatible with
//! `@socket.io/redis-emitter` 5.x (uid `emitter`).
//!
//! ```no_run
//! # async fn run() -> Result<(), shardcast::EmitterError> {
//! use shardcast::{Args, Emitter};
//!
//! let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
//! emitter.to("room").except("muted").emit("news", ("hello", 1)).await?;
//! emitter.of("/admin").emit("report", Args::new().binary_arg(vec![1, 2, 3])).await?;
//! emitter.in_("room").sockets_join("other").await?;
//! emitter.server_side_emit("reload", ()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each operation is one `PUBLISH`, its message encoded by the classic adapter's codecs
//! (`adapter::wire`, `adapter::request`) as the official emitter lays it out, byte for byte
//! (tests/emitter.rs compares both). Nothing is answered: the official emitter has no
//! acknowledgements, fetches or counts, and neither has this one. docs/emitter.md has the
//! rest, and `shardcast emit` is this module on the command line.
//!
//! Layer: beside `server` (it uses the adapter's codecs, `IntoRooms` of the operators and
//! the protocol core; no shard, no server state).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::adapter::request::{self, Request, RequestBody, Targets};
use crate::adapter::wire;
use crate::broadcast::Selection;
use crate::ns::args::IntoArgs;
use crate::ns::Room;
use crate::operator::IntoRooms;
use crate::proto::sio;

/// The uid the emitter signs its messages with, as `@socket.io/redis-emitter` does.
const UID: &str = "emitter";

/// How long connecting, and each publish, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before making a broken connection again, and the longest.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Attempts per reconnection (a failed one is retried on the next operation).
const RECONNECT_TRIES: usize = 4;

/// Why an emitter operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitterError {
    /// The Redis URL cannot be read (the caller's mistake; nothing was tried).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The event name is one socket.io reserves (`connect`, `connect_error`, `disconnect`,
    /// `disconnecting`, `newListener`, `removeListener`); nothing was sent.
    #[error("\"{0}\" is a reserved event name")]
    ReservedEvent(String),
    /// Redis could not be reached, or did not take the message.
    #[error("Redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for EmitterError {
    fn from(e: redis::RedisError) -> Self {
        EmitterError::Redis(e.to_string())
    }
}

/// A handle on one namespace of a cluster, publishing through one Redis connection.
///
/// Cheap to clone: clones, and the handles [`Emitter::key`] and [`Emitter::of`] return,
/// share the connection. Redis commands on it are pipelined in the order they are issued.
/// When Redis goes away, the operation that finds the connection broken fails with
/// [`EmitterError::Redis`] and the connection is made again in the background (with
/// backoff, 100 ms doubling to 5 s); operations meanwhile wait for it, then fail as well
/// if Redis stays away. Nothing is queued for later: what failed is not sent. Once Redis is
/// back, operations succeed again on the same emitter (as with the official emitter on a
/// node-redis client, which reconnects by itself).
#[derive(Clone)]
pub struct Emitter {
    conn: ConnectionManager,
    key: Arc<str>,
    nsp: Arc<str>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter").field("key", &self.key).field("nsp", &self.nsp).finish()
    }
}

impl Emitter {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`, `redis+unix:///PATH`), for
    /// namespace `/` and key `socket.io`. Connecting, and each publish later, may take 5 s
    /// at most. Call it within a Tokio runtime: the connection's driver task runs there, as
    /// long as the runtime does.
    pub async fn connect(url: &str) -> Result<Emitter, EmitterError> {
        let client =
            redis::Client::open(url).map_err(|e| EmitterError::InvalidUrl(e.to_string()))?;
        // The crate's ConnectionManager: a multiplexed connection made again when it breaks.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_min_delay(RECONNECT_MIN)
            .set_max_delay(RECONNECT_MAX)
            .set_number_of_retries(RECONNECT_TRIES);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Emitter { conn, key: Arc::from("socket.io"), nsp: Arc::from("/") })
    }

    /// The same emitter with channel prefix `prefix` (the adapter's `key`; default
    /// `socket.io`).
    pub fn key(&self, prefix: impl Into<String>) -> Emitter {
        Emitter { key: Arc::from(prefix.into()), ..self.clone() }
    }

    /// The same emitter for namespace `nsp` (`/` prefixed when missing, as socket.io does).
    pub fn of(&self, nsp: &str) -> Emitter {
        let nsp: Arc<str> =
            if nsp.starts_with('/') { Arc::from(nsp) } else { Arc::from(format!("/{nsp}")) };
        Emitter { nsp, ..self.clone() }
    }

    /// The namespace this emitter publishes for.
    pub fn namespace(&self) -> &str {
        &self.nsp
    }

    fn operator(&self) -> EmitterOperator {
        EmitterOperator { emitter: self.clone(), sel: Selection::default(), flags: Map::new() }
    }

    /// Targets the sockets in these rooms (see [`EmitterOperator::to`]).
    pub fn to(&self, rooms: impl IntoRooms) -> EmitterOperator {
        self.operator().to(rooms)
    }

    /// Same as [`Emitter::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> EmitterOperator {
        self.operator().to(rooms)
    }

    /// Excludes the sockets in these rooms (see [`EmitterOperator::except`]).
    pub fn except(&self, rooms: impl IntoRooms) -> EmitterOperator {
        self.operator().except(rooms)
    }

    /// Marks the broadcast volatile (see [`EmitterOperator::volatile`]).
    pub fn volatile(&self) -> EmitterOperator {
        self.operator().volatile()
    }

    /// Sets the compress flag (see [`EmitterOperator::compress`]).
    pub fn compress(&self, compress: bool) -> EmitterOperator {
        self.operator().compress(compress)
    }

    /// Emits `event` to every socket of the namespace (see [`EmitterOperator::emit`]).
    pub async fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitterError> {
        self.operator().emit(event, args).await
    }

    /// Makes every socket of the namespace join `rooms`.
    pub async fn sockets_join(&self, rooms: impl IntoRooms) -> Result<(), EmitterError> {
        self.operator().sockets_join(rooms).await
    }

    /// Makes every socket of the namespace leave `rooms`.
    pub async fn sockets_leave(&self, rooms: impl IntoRooms) -> Result<(), EmitterError> {
        self.operator().sockets_leave(rooms).await
    }

    /// Disconnects every socket of the namespace (with `close`, their whole connections).
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), EmitterError> {
        self.operator().disconnect_sockets(close).await
    }

    /// Emits `event` to the servers of the cluster themselves: their server-side listeners
    /// of this namespace (`io.of(nsp).on_server_side(...)`, `serverSideEmit` listeners in
    /// Node) hear it. Without acknowledgement, as the official emitter refuses one.
    ///
    /// Reserved event names are refused here too (the official emitter lets them through,
    /// where a Node server would run its own `connect` listeners on them). Binary arguments
    /// are sent as MessagePack, which every server of the classic adapter reads (the
    /// official emitter writes JSON, turning a `Buffer` into `{"type":"Buffer","data":[..]}`).
    pub async fn server_side_emit(
        &self,
        event: &str,
        args: impl IntoArgs,
    ) -> Result<(), EmitterError> {
        refuse_reserved(event)?;
        let body = RequestBody::ServerSideEmit { event: event.to_owned(), args: args.into_args() };
        // Unlike its other requests, the official emitter signs this one.
        let r = Request { uid: Some(UID.to_owned()), request_id: None, body };
        self.publish(request::request_channel(&self.key, &self.nsp), request::encode_request(&r))
            .await
    }

    async fn publish(&self, channel: String, payload: Bytes) -> Result<(), EmitterError> {
        let mut conn = self.conn.clone();
        // The reply is the number of subscribers that got it: nobody listening is no error.
        let _: i64 =
            redis::cmd("PUBLISH").arg(channel).arg(payload.as_ref()).query_async(&mut conn).await?;
        Ok(())
    }
}

fn refuse_reserved(event: &str) -> Result<(), EmitterError> {
    if sio::is_reserved_event(event) {
        return Err(EmitterError::ReservedEvent(event.to_owned()));
    }
    Ok(())
}

/// A selection of sockets and flags, built like the official emitter's
/// `emitter.to(a).except(b).volatile`, to emit to or act on. Reusable: each operation
/// publishes what the builder holds.
#[derive(Debug, Clone)]
pub struct EmitterOperator {
    emitter: Emitter,
    sel: Selection,
    /// The flags in the order they were first set, as the official emitter writes them.
    flags: Map<String, Value>,
}

/// Appends `rooms` to `list`, each once.
fn add_rooms(list: &mut SmallVec<[Room; 2]>, rooms: impl IntoRooms) {
    let mut add = SmallVec::new();
    rooms.into_rooms(&mut add);
    for r in add {
        if !list.contains(&r) {
            list.push(r);
        }
    }
}

impl EmitterOperator {
    /// Adds target rooms: the sockets in any of them are selected (every socket of the
    /// namespace when none is named).
    pub fn to(mut self, rooms: impl IntoRooms) -> Self {
        add_rooms(&mut self.sel.rooms, rooms);
        self
    }

    /// Same as [`EmitterOperator::to`].
    pub fn in_(self, rooms: impl IntoRooms) -> Self {
        self.to(rooms)
    }

    /// Excludes the sockets in these rooms (a socket id excludes that socket).
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        add_rooms(&mut self.sel.except, rooms);
        self
    }

    /// The packet may be dropped for a recipient that is not ready to receive it.
    pub fn volatile(mut self) -> Self {
        self.flags.insert("volatile".into(), Value::Bool(true));
        self
    }

    /// Whether the packet may be compressed by the servers (per-message deflate). Default
    /// `true`.
    pub fn compress(mut self, compress: bool) -> Self {
        self.flags.insert("compress".into(), Value::Bool(compress));
        self
    }

    /// Emits `event` with `args` (binary ones through [`crate::Args::binary_arg`]) to the
    /// selected sockets on every server. Reserved event names are refused.
    pub async fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitterError> {
        refuse_reserved(event)?;
        let (e, sel) = (&self.emitter, &self.sel);
        let args = args.into_args();
        let payload = wire::encode_emitter_broadcast(&e.nsp, event, &args, sel, &self.flags);
        e.publish(wire::broadcast_channel(&e.key, &e.nsp, &sel.rooms), payload).await
    }

    /// Makes the selected sockets join `rooms`.
    pub async fn sockets_join(&self, rooms: impl IntoRooms) -> Result<(), EmitterError> {
        let targets = Targets::Selection(self.sel.clone());
        self.request(RequestBody::Join { targets, rooms: room_list(rooms) }).await
    }

    /// Makes the selected sockets leave `rooms`.
    pub async fn sockets_leave(&self, rooms: impl IntoRooms) -> Result<(), EmitterError> {
        let targets = Targets::Selection(self.sel.clone());
        self.request(RequestBody::Leave { targets, rooms: room_list(rooms) }).await
    }

    /// Disconnects the selected sockets (with `close`, their whole connections, every
    /// namespace on them).
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), EmitterError> {
        let targets = Targets::Selection(self.sel.clone());
        self.request(RequestBody::Disconnect { targets, close }).await
    }

    /// Publishes an unanswered, unsigned request, as the official emitter does.
    async fn request(&self, body: RequestBody) -> Result<(), EmitterError> {
        let e = &self.emitter;
        let r = Request { uid: None, request_id: None, body };
        e.publish(request::request_channel(&e.key, &e.nsp), request::encode_request(&r)).await
    }
}

/// The rooms of a join or leave as given (the official emitter does not deduplicate them).
fn room_list(rooms: impl IntoRooms) -> Vec<Room> {
    let mut list = SmallVec::new();
    rooms.into_rooms(&mut list);
    list.into_vec()
}

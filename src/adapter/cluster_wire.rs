//! The messages of socket.io-adapter's `ClusterAdapter` (2.5), sans-IO: what servers of a
//! cluster send each other through `@socket.io/redis-adapter`'s sharded adapter
//! (`createShardedAdapter`, Redis 7 sharded pub/sub), and the channels it sends them on.
//! The same messages travel through `@socket.io/redis-streams-adapter`.
//!
//! A message is `{type, data, uid, nsp}`: `type` 1..=13 ([`MessageType`]), `data` the fields
//! of that type ([`Body`]; none for heartbeats and `ADAPTER_CLOSE`), `uid` the sending
//! server's random id, `nsp` the namespace. The sharded adapter writes it with
//! `JSON.stringify`, unless the type may carry binary *and* does, then as notepack.io
//! MessagePack; a receiver tells them apart by the first byte (`{` is JSON). What JSON drops
//! (`undefined`) is an absent key here: a reply that was `undefined`, a socket without `data`.
//!
//! Channels ([`channel`], [`response_channel`], [`room_channel`], [`publish_channel`]):
//! requests go to `{prefix}#{nsp}#` (or, for a plain broadcast to one room, to that room's
//! own channel, per [`SubscriptionMode`]), responses to `{prefix}#{nsp}#{requester uid}#`.
//! The Node receiver treats whatever arrives on its response channel as a response, and a
//! response arriving on the namespace channel as one too; it drops a message with its own
//! uid or another namespace's name, except on its response channel.
//!
//! Layer: the adapter (it builds on the codecs of `proto`, the arguments of `ns` and the
//! selection of `broadcast`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;
use crate::proto::json::{self, JsonError, Verbatim};
use crate::proto::msgpack::{self, MsgpackError};
use crate::proto::sio;

/// Why a received cluster message was ignored. Every case is corrupt (or hostile) input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterWireError {
    /// Starts with `{` but is not JSON.
    #[error("cluster message: {0}")]
    Json(#[from] JsonError),
    /// Does not start with `{` and is not MessagePack.
    #[error("cluster message: {0}")]
    Msgpack(#[from] MsgpackError),
    /// The message is not an object.
    #[error("cluster message: not an object")]
    NotAnObject,
    /// A `type` outside 1..=13.
    #[error("cluster message: unknown type {0}")]
    UnknownType(u64),
    /// A field the message type requires is absent (named by its path).
    #[error("cluster message: `{0}` is missing")]
    Missing(&'static str),
    /// A field holds another kind of value than the protocol's.
    #[error("cluster message: `{0}` has the wrong type")]
    WrongType(&'static str),
    /// A number that is negative, fractional or too large for the field.
    #[error("cluster message: `{0}` is out of range")]
    OutOfRange(&'static str),
    /// An event (`[event, ...args]`) without its name.
    #[error("cluster message: `{0}` has no event name")]
    NoEvent(&'static str),
    /// A Socket.IO packet in a broadcast that is not an event.
    #[error("cluster message: broadcast packet of type {0}, not an event")]
    NotAnEvent(u64),
    /// A stream entry's `data` that is neither JSON nor base64 (Redis Streams adapter).
    #[error("cluster message: `data` is neither JSON nor base64")]
    Base64,
}

/// The message types, numbered as `MessageType` in socket.io-adapter's cluster-adapter.js.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// A server announces itself (heartbeat adapters answer with a [`MessageType::Heartbeat`]).
    InitialHeartbeat = 1,
    /// A server is still there.
    Heartbeat = 2,
    /// A broadcast, with or without acks.
    Broadcast = 3,
    /// The selected sockets join rooms.
    SocketsJoin = 4,
    /// The selected sockets leave rooms.
    SocketsLeave = 5,
    /// The selected sockets disconnect.
    DisconnectSockets = 6,
    /// A request for the selected sockets.
    FetchSockets = 7,
    /// One server's sockets, in answer to [`MessageType::FetchSockets`].
    FetchSocketsResponse = 8,
    /// An event for the other servers (`serverSideEmit`).
    ServerSideEmit = 9,
    /// One server's reply to a [`MessageType::ServerSideEmit`] awaiting acks.
    ServerSideEmitResponse = 10,
    /// How many clients of one server a broadcast awaiting acks reached.
    BroadcastClientCount = 11,
    /// One client's ack of a broadcast.
    BroadcastAck = 12,
    /// A server leaves the cluster.
    AdapterClose = 13,
}

impl MessageType {
    /// The type numbered `n` on the wire.
    pub fn from_code(n: u64) -> Option<MessageType> {
        use MessageType as T;
        Some(match n {
            1 => T::InitialHeartbeat,
            2 => T::Heartbeat,
            3 => T::Broadcast,
            4 => T::SocketsJoin,
            5 => T::SocketsLeave,
            6 => T::DisconnectSockets,
            7 => T::FetchSockets,
            8 => T::FetchSocketsResponse,
            9 => T::ServerSideEmit,
            10 => T::ServerSideEmitResponse,
            11 => T::BroadcastClientCount,
            12 => T::BroadcastAck,
            13 => T::AdapterClose,
            _ => return None,
        })
    }

    /// Its number on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether the sharded adapter looks for binary in messages of this type (and then sends
    /// them as MessagePack).
    pub fn may_contain_binary(self) -> bool {
        use MessageType as T;
        matches!(
            self,
            T::Broadcast
                | T::BroadcastAck
                | T::FetchSocketsResponse
                | T::ServerSideEmit
                | T::ServerSideEmitResponse
        )
    }

    /// Whether this is an answer, sent to the requester's response channel.
    pub fn is_response(self) -> bool {
        use MessageType as T;
        matches!(
            self,
            T::FetchSocketsResponse
                | T::ServerSideEmitResponse
                | T::BroadcastClientCount
                | T::BroadcastAck
        )
    }
}

/// The flags of an operation (`opts.flags`), those socket.io sets. Others are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `volatile`: may be dropped for a client that is not ready.
    pub volatile: bool,
    /// `compress`, when set (`None`: absent, which compresses).
    pub compress: Option<bool>,
    /// `local`: this server only (such operations are not sent, so this is rarely seen).
    pub local: bool,
    /// `timeout` in milliseconds: how long a broadcast awaits acks, or a fetch its answers.
    pub timeout: Option<u64>,
    /// `expectSingleResponse`: a remote socket's emit with ack, which wants one reply.
    pub expect_single_response: bool,
}

/// The sockets an operation selects and its flags (`opts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    /// Target rooms (union); empty selects every socket of the namespace.
    pub rooms: SmallVec<[Room; 2]>,
    /// Sockets in any of these rooms are skipped.
    pub except: SmallVec<[Room; 2]>,
    /// The flags.
    pub flags: Flags,
}

impl From<&Opts> for Selection {
    fn from(o: &Opts) -> Selection {
        Selection { rooms: o.rooms.clone(), except: o.except.clone() }
    }
}

impl From<Selection> for Opts {
    fn from(sel: Selection) -> Opts {
        Opts { rooms: sel.rooms, except: sel.except, flags: Flags::default() }
    }
}

/// One socket of a [`Body::FetchSocketsResponse`].
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// Its handshake (socket.io's `socket.handshake`: headers, time, address, query, auth,
    /// ...), binary as placeholders into the response's attachments.
    pub handshake: Value,
    /// Its rooms, its own id included.
    pub rooms: Vec<Room>,
    /// `socket.data` (`None` when it was `undefined`).
    pub data: Option<Value>,
}

/// The `type` of a message and its `data`, field for field.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `INITIAL_HEARTBEAT`, no data.
    InitialHeartbeat,
    /// `HEARTBEAT`, no data.
    Heartbeat,
    /// `BROADCAST`: `{packet: {type: 2, data: [event, ...args]}, requestId?, opts}`. The
    /// packet has no `nsp` (the receiving namespace sets it); one there, or an `id`, is
    /// not read.
    Broadcast {
        /// Selection and flags.
        opts: Opts,
        /// The event name.
        event: String,
        /// Its arguments (binary as placeholders and attachments).
        args: Args,
        /// Set when acks are awaited: the responses name it.
        request_id: Option<String>,
    },
    /// `SOCKETS_JOIN`: `{opts, rooms}`.
    SocketsJoin {
        /// The sockets.
        opts: Opts,
        /// The rooms they join.
        rooms: Vec<Room>,
    },
    /// `SOCKETS_LEAVE`: `{opts, rooms}`.
    SocketsLeave {
        /// The sockets.
        opts: Opts,
        /// The rooms they leave.
        rooms: Vec<Room>,
    },
    /// `DISCONNECT_SOCKETS`: `{opts, close}`.
    DisconnectSockets {
        /// The sockets.
        opts: Opts,
        /// Whether their connections close too.
        close: bool,
    },
    /// `FETCH_SOCKETS`: `{opts, requestId}`.
    FetchSockets {
        /// The sockets.
        opts: Opts,
        /// Named by the responses.
        request_id: String,
    },
    /// `FETCH_SOCKETS_RESPONSE`: `{requestId, sockets: [{id, handshake, rooms, data}]}`.
    FetchSocketsResponse {
        /// The request answered.
        request_id: String,
        /// The answering server's selected sockets.
        sockets: Vec<SocketInfo>,
        /// The binary parts of every socket's handshake and data, in placeholder order.
        binary: Vec<Bytes>,
    },
    /// `SERVER_SIDE_EMIT`: `{requestId?, packet: [event, ...args]}`.
    ServerSideEmit {
        /// The event name.
        event: String,
        /// Its arguments.
        args: Args,
        /// Set when each server's reply is awaited.
        request_id: Option<String>,
    },
    /// `SERVER_SIDE_EMIT_RESPONSE`: `{requestId, packet}`.
    ServerSideEmitResponse {
        /// The request answered.
        request_id: String,
        /// The reply: one value (the first argument the handler acked with), or none when
        /// it was `undefined`. Further values are not sent.
        reply: Args,
    },
    /// `BROADCAST_CLIENT_COUNT`: `{requestId, clientCount}`.
    BroadcastClientCount {
        /// The broadcast.
        request_id: String,
        /// How many of the answering server's clients it reached.
        client_count: u64,
    },
    /// `BROADCAST_ACK`: `{requestId, packet}`.
    BroadcastAck {
        /// The broadcast.
        request_id: String,
        /// The client's ack: its first argument, or none when it was `undefined`.
        reply: Args,
    },
    /// `ADAPTER_CLOSE`, no data.
    AdapterClose,
}

impl Body {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        use MessageType as T;
        match self {
            Body::InitialHeartbeat => T::InitialHeartbeat,
            Body::Heartbeat => T::Heartbeat,
            Body::Broadcast { .. } => T::Broadcast,
            Body::SocketsJoin { .. } => T::SocketsJoin,
            Body::SocketsLeave { .. } => T::SocketsLeave,
            Body::DisconnectSockets { .. } => T::DisconnectSockets,
            Body::FetchSockets { .. } => T::FetchSockets,
            Body::FetchSocketsResponse { .. } => T::FetchSocketsResponse,
            Body::ServerSideEmit { .. } => T::ServerSideEmit,
            Body::ServerSideEmitResponse { .. } => T::ServerSideEmitResponse,
            Body::BroadcastClientCount { .. } => T::BroadcastClientCount,
            Body::BroadcastAck { .. } => T::BroadcastAck,
            Body::AdapterClose => T::AdapterClose,
        }
    }

    /// The binary attachments the body carries (empty for types that carry none).
    pub fn binary(&self) -> &[Bytes] {
        match self {
            Body::Broadcast { args, .. } | Body::ServerSideEmit { args, .. } => args.binary(),
            Body::ServerSideEmitResponse { reply, .. } | Body::BroadcastAck { reply, .. } => {
                reply.binary()
            }
            Body::FetchSocketsResponse { binary, .. } => binary,
            _ => &[],
        }
    }

    /// The request id, for the types that have one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Body::Broadcast { request_id, .. } | Body::ServerSideEmit { request_id, .. } => {
                request_id.as_deref()
            }
            Body::FetchSockets { request_id, .. }
            | Body::FetchSocketsResponse { request_id, .. }
            | Body::ServerSideEmitResponse { request_id, .. }
            | Body::BroadcastClientCount { request_id, .. }
            | Body::BroadcastAck { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}

/// A message between the servers of a cluster: `{type, data, uid, nsp}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    /// The sending server's uid (`"emitter"` for an emitter).
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// The type and its data.
    pub body: Body,
}

impl ClusterMessage {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        self.body.kind()
    }
}

// ---------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------

pub use crate::config::SubscriptionMode;

impl SubscriptionMode {
    /// Whether a server subscribes to the channel of its local room `room` (when the room
    /// is created; it unsubscribes when the room goes): in `dynamic` mode for public rooms
    /// only (`is_socket_id`: the room is one of its sockets' ids), in `dynamic-private` for
    /// every room.
    pub fn subscribes_to_room(self, is_socket_id: bool) -> bool {
        match self {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !is_socket_id,
            SubscriptionMode::DynamicPrivate => true,
        }
    }
}

/// The namespace channel every server of the cluster subscribes to: `{prefix}#{nsp}#`
/// (the prefix is the `channelPrefix` option, `socket.io` by default).
pub fn channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The channel where server `uid` receives the responses to its requests:
/// `{prefix}#{nsp}#{uid}#`.
pub fn response_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}#{nsp}#{uid}#")
}

/// The channel of one room: `{prefix}#{nsp}#{room}#`.
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    format!("{prefix}#{nsp}#{room}#")
}

/// Whether the sharded adapter takes `room` for a socket id when choosing a channel: 20
/// UTF-16 code units, its length in JavaScript, whether or not such a socket exists.
pub fn looks_like_socket_id(room: &str) -> bool {
    // A UTF-16 unit is 1 to 3 bytes of UTF-8 (a pair, 4): 20 units are 20..=60 bytes.
    (20..=60).contains(&room.len()) && room.encode_utf16().count() == 20
}

/// The room whose channel a message goes to instead of the namespace channel: a broadcast
/// without acks (a broadcast awaiting acks must reach every server, whose count is that of
/// the namespace channel's subscribers) to exactly one room, that room not looking like a
/// socket id unless the mode is `dynamic-private`; never in `static` mode.
pub fn dynamic_room(msg: &ClusterMessage, mode: SubscriptionMode) -> Option<&Room> {
    let Body::Broadcast { opts, request_id: None, .. } = &msg.body else { return None };
    let [room] = opts.rooms.as_slice() else { return None };
    match mode {
        SubscriptionMode::Static => None,
        SubscriptionMode::Dynamic => (!looks_like_socket_id(room)).then_some(room),
        SubscriptionMode::DynamicPrivate => Some(room),
    }
}

/// The channel the sharded adapter publishes a request (any type but the responses) on:
/// the room's channel per [`dynamic_room`], else the namespace channel. A response goes to
/// [`response_channel`] of the requester instead.
pub fn publish_channel(prefix: &str, msg: &ClusterMessage, mode: SubscriptionMode) -> String {
    match dynamic_room(msg, mode) {
        Some(room) => room_channel(prefix, &msg.nsp, room),
        None => channel(prefix, &msg.nsp),
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Decodes a message as the sharded adapter receives it: JSON when the first byte is `{`
/// (read as JavaScript does, invalid UTF-8 as U+FFFD, as `Buffer.toString` reads it), else
/// MessagePack (binary as attachments). `max_depth` bounds the nesting of the whole message:
/// a broadcast's arguments are 4 levels down (`{data: {packet: {data: [...]}}}`), a server-side
/// emit's 3.
pub fn decode(bytes: &Bytes, max_depth: usize) -> Result<ClusterMessage, ClusterWireError> {
    let (value, binary) = if bytes.first() == Some(&b'{') {
        let text = String::from_utf8_lossy(bytes);
        (json::parse(&text, max_depth)?.value, Vec::new())
    } else {
        let d = msgpack::decode(bytes, max_depth)?;
        (d.value, d.binary)
    };
    from_value(value, &binary)
}

/// A message from its decoded value and the attachments its placeholders name.
pub(super) fn from_value(
    value: Value,
    binary: &[Bytes],
) -> Result<ClusterMessage, ClusterWireError> {
    use ClusterWireError as E;
    let Value::Object(mut msg) = value else { return Err(E::NotAnObject) };
    let code = uint(msg.get("type"), "type")?;
    let kind = MessageType::from_code(code).ok_or(E::UnknownType(code))?;
    let uid = string(msg.remove("uid"), "uid")?;
    let nsp = string(msg.remove("nsp"), "nsp")?;
    let body = match kind {
        MessageType::InitialHeartbeat => Body::InitialHeartbeat,
        MessageType::Heartbeat => Body::Heartbeat,
        MessageType::AdapterClose => Body::AdapterClose,
        kind => {
            let data = match msg.remove("data") {
                Some(Value::Object(data)) => data,
                None => return Err(E::Missing("data")),
                Some(_) => return Err(E::WrongType("data")),
            };
            body(kind, data, binary)?
        }
    };
    Ok(ClusterMessage { uid, nsp, body })
}

fn body(
    kind: MessageType,
    mut d: Map<String, Value>,
    binary: &[Bytes],
) -> Result<Body, ClusterWireError> {
    use ClusterWireError as E;
    Ok(match kind {
        MessageType::Broadcast => {
            let opts = opts(d.remove("opts"))?;
            let request_id = optional_string(d.remove("requestId"), "data.requestId")?;
            let mut packet = match d.remove("packet") {
                Some(Value::Object(p)) => p,
                None => return Err(E::Missing("data.packet")),
                Some(_) => return Err(E::WrongType("data.packet")),
            };
            // EVENT, as ClusterAdapter publishes it, or BINARY_EVENT from older encoders.
            match uint(packet.get("type"), "data.packet.type")? {
                2 | 5 => {}
                other => return Err(E::NotAnEvent(other)),
            }
            let data = packet.remove("data");
            let (event, args) = event(data, binary, "data.packet.data")?;
            Body::Broadcast { opts, event, args, request_id }
        }
        MessageType::SocketsJoin | MessageType::SocketsLeave => {
            let opts = opts(d.remove("opts"))?;
            let rooms = match d.remove("rooms") {
                Some(Value::Array(list)) => {
                    list.iter().map(|r| room(r, "data.rooms")).collect::<Result<_, _>>()?
                }
                None => return Err(E::Missing("data.rooms")),
                Some(_) => return Err(E::WrongType("data.rooms")),
            };
            if kind == MessageType::SocketsJoin {
                Body::SocketsJoin { opts, rooms }
            } else {
                Body::SocketsLeave { opts, rooms }
            }
        }
        MessageType::DisconnectSockets => {
            let opts = opts(d.remove("opts"))?;
            let close = match d.remove("close") {
                Some(Value::Bool(b)) => b,
                None => return Err(E::Missing("data.close")),
                Some(_) => return Err(E::WrongType("data.close")),
            };
            Body::DisconnectSockets { opts, close }
        }
        MessageType::FetchSockets => {
            let opts = opts(d.remove("opts"))?;
            let request_id = string(d.remove("requestId"), "data.requestId")?;
            Body::FetchSockets { opts, request_id }
        }
        MessageType::FetchSocketsResponse => {
            let request_id = string(d.remove("requestId"), "data.requestId")?;
            let list = match d.remove("sockets") {
                Some(Value::Array(list)) => list,
                None => return Err(E::Missing("data.sockets")),
                Some(_) => return Err(E::WrongType("data.sockets")),
            };
            let mut sockets = list.into_iter().map(socket_info).collect::<Result<Vec<_>, _>>()?;
            let mut holders: Vec<&mut Value> = Vec::with_capacity(sockets.len() * 2);
            for s in &mut sockets {
                holders.push(&mut s.handshake);
                holders.extend(s.data.as_mut());
            }
            let binary = sio::keep_referenced(holders, binary);
            Body::FetchSocketsResponse { request_id, sockets, binary }
        }
        MessageType::ServerSideEmit => {
            let request_id = optional_string(d.remove("requestId"), "data.requestId")?;
            let (event, args) = event(d.remove("packet"), binary, "data.packet")?;
            Body::ServerSideEmit { event, args, request_id }
        }
        MessageType::ServerSideEmitResponse | MessageType::BroadcastAck => {
            let request_id = string(d.remove("requestId"), "data.requestId")?;
            let reply = match d.remove("packet") {
                None => Args::new(),
                Some(mut v) => {
                    let kept = sio::keep_referenced(vec![&mut v], binary);
                    Args::from_parts(vec![v], kept, Verbatim::default())
                }
            };
            if kind == MessageType::BroadcastAck {
                Body::BroadcastAck { request_id, reply }
            } else {
                Body::ServerSideEmitResponse { request_id, reply }
            }
        }
        MessageType::BroadcastClientCount => {
            let request_id = string(d.remove("requestId"), "data.requestId")?;
            let client_count = match d.get("clientCount") {
                None => return Err(E::Missing("data.clientCount")),
                v => uint(v, "data.clientCount")?,
            };
            Body::BroadcastClientCount { request_id, client_count }
        }
        // Handled by the caller: they have no data.
        MessageType::InitialHeartbeat => Body::InitialHeartbeat,
        MessageType::Heartbeat => Body::Heartbeat,
        MessageType::AdapterClose => Body::AdapterClose,
    })
}

/// `[event, ...args]`: the name (a number is named as JavaScript prints it) and the
/// arguments, with the attachments their placeholders name.
fn event(
    data: Option<Value>,
    binary: &[Bytes],
    field: &'static str,
) -> Result<(String, Args), ClusterWireError> {
    let mut items = match data {
        Some(Value::Array(items)) => items,
        None => return Err(ClusterWireError::Missing(field)),
        Some(_) => return Err(ClusterWireError::WrongType(field)),
    };
    if items.is_empty() {
        return Err(ClusterWireError::NoEvent(field));
    }
    let name = match items.remove(0) {
        Value::String(s) => s,
        v @ Value::Number(_) => js_text(&v),
        _ => return Err(ClusterWireError::WrongType(field)),
    };
    let kept = sio::keep_referenced(items.iter_mut().collect(), binary);
    Ok((name, Args::from_parts(items, kept, Verbatim::default())))
}

fn socket_info(v: Value) -> Result<SocketInfo, ClusterWireError> {
    use ClusterWireError as E;
    let Value::Object(mut s) = v else { return Err(E::WrongType("data.sockets[]")) };
    let id = string(s.remove("id"), "data.sockets[].id")?;
    let handshake = s.remove("handshake").ok_or(E::Missing("data.sockets[].handshake"))?;
    let rooms = match s.remove("rooms") {
        Some(Value::Array(list)) => {
            list.iter().map(|r| room(r, "data.sockets[].rooms")).collect::<Result<_, _>>()?
        }
        None => return Err(E::Missing("data.sockets[].rooms")),
        Some(_) => return Err(E::WrongType("data.sockets[].rooms")),
    };
    Ok(SocketInfo { id, handshake, rooms, data: s.remove("data") })
}

fn opts(v: Option<Value>) -> Result<Opts, ClusterWireError> {
    use ClusterWireError as E;
    let mut o = match v {
        Some(Value::Object(o)) => o,
        None => return Err(E::Missing("data.opts")),
        Some(_) => return Err(E::WrongType("data.opts")),
    };
    let rooms = room_list(o.remove("rooms"), "data.opts.rooms")?;
    let except = room_list(o.remove("except"), "data.opts.except")?;
    let flags = match o.remove("flags") {
        // `undefined` flags (dropped by JSON) or null are no flags, as in JavaScript.
        None | Some(Value::Null) => Flags::default(),
        Some(Value::Object(f)) => flags(&f)?,
        Some(_) => return Err(E::WrongType("data.opts.flags")),
    };
    Ok(Opts { rooms, except, flags })
}

fn flags(f: &Map<String, Value>) -> Result<Flags, ClusterWireError> {
    let flag = |key: &str, field: &'static str| match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ClusterWireError::WrongType(field)),
    };
    let timeout = match f.get("timeout") {
        // Infinity, as JSON writes it.
        None | Some(Value::Null) => None,
        // A fractional delay is truncated and a negative one is 0, as timers take them; a
        // huge one is the longest (`as` saturates).
        Some(Value::Number(n)) => {
            Some(n.as_u64().unwrap_or_else(|| n.as_f64().map_or(0, |f| f as u64)))
        }
        Some(_) => return Err(ClusterWireError::WrongType("data.opts.flags.timeout")),
    };
    Ok(Flags {
        volatile: flag("volatile", "data.opts.flags.volatile")?.unwrap_or(false),
        compress: flag("compress", "data.opts.flags.compress")?,
        local: flag("local", "data.opts.flags.local")?.unwrap_or(false),
        timeout,
        expect_single_response: flag(
            "expectSingleResponse",
            "data.opts.flags.expectSingleResponse",
        )?
        .unwrap_or(false),
    })
}

/// `rooms` / `except`: an array of names (absent or null is none, as `new Set(x)` reads it).
fn room_list(
    v: Option<Value>,
    field: &'static str,
) -> Result<SmallVec<[Room; 2]>, ClusterWireError> {
    match v {
        None | Some(Value::Null) => Ok(SmallVec::new()),
        Some(Value::Array(list)) => list.iter().map(|r| room(r, field)).collect(),
        Some(_) => Err(ClusterWireError::WrongType(field)),
    }
}

/// A room name as JavaScript would make a Set member of it (rooms may be numbers there).
fn room(v: &Value, field: &'static str) -> Result<Room, ClusterWireError> {
    match v {
        Value::String(s) => Ok(Arc::from(s.as_str())),
        Value::Number(_) => Ok(Arc::from(js_text(v))),
        _ => Err(ClusterWireError::WrongType(field)),
    }
}

/// A number as JavaScript prints it.
fn js_text(v: &Value) -> String {
    let mut t = BytesMut::new();
    json::write_value(&mut t, v);
    String::from_utf8_lossy(&t).into_owned()
}

fn string(v: Option<Value>, field: &'static str) -> Result<String, ClusterWireError> {
    match v {
        Some(Value::String(s)) => Ok(s),
        None => Err(ClusterWireError::Missing(field)),
        Some(_) => Err(ClusterWireError::WrongType(field)),
    }
}

fn optional_string(
    v: Option<Value>,
    field: &'static str,
) -> Result<Option<String>, ClusterWireError> {
    v.map(|v| string(Some(v), field)).transpose()
}

/// A non-negative integer.
fn uint(v: Option<&Value>, field: &'static str) -> Result<u64, ClusterWireError> {
    match v {
        Some(Value::Number(n)) => n.as_u64().ok_or(ClusterWireError::OutOfRange(field)),
        None => Err(ClusterWireError::Missing(field)),
        Some(_) => Err(ClusterWireError::WrongType(field)),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Encodes a message as the sharded adapter does: MessagePack when its type may carry binary
/// and it does, else JSON text (numbers as JavaScript writes them; an argument received
/// from a client with a lone surrogate is written as the client wrote it). Keys are in the
/// adapter's order, so what it would send for the same message is the same bytes.
pub fn encode(msg: &ClusterMessage) -> Bytes {
    let mut out = BytesMut::new();
    let binary = msg.body.binary();
    if msg.kind().may_contain_binary() && !binary.is_empty() {
        msgpack::encode(&mut out, &tree(msg), binary);
    } else {
        write_json(&mut out, msg);
    }
    out.freeze()
}

/// JSON text, written field by field (no value tree is built for the arguments).
fn write_json(out: &mut BytesMut, msg: &ClusterMessage) {
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(itoa::Buffer::new().format(msg.kind().code()).as_bytes());
    if has_data(&msg.body) {
        out.extend_from_slice(b",\"data\":");
        json_data(out, &msg.body);
        out.put_u8(b'}');
    }
    out.extend_from_slice(b",\"uid\":");
    json::put_json_str(out, &msg.uid);
    out.extend_from_slice(b",\"nsp\":");
    json::put_json_str(out, &msg.nsp);
    out.put_u8(b'}');
}

/// Whether the type has a `data` member (heartbeats and `ADAPTER_CLOSE` have none).
pub(super) fn has_data(body: &Body) -> bool {
    !matches!(body, Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose)
}

/// The members of `data`, its `{` included (every type with data has members), not its `}`.
pub(super) fn json_data(out: &mut BytesMut, body: &Body) {
    match body {
        Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => out.put_u8(b'{'),
        Body::Broadcast { opts, event, args, request_id } => {
            key(out, "packet", true);
            out.extend_from_slice(b"{\"type\":2,\"data\":");
            json_event(out, event, args);
            out.put_u8(b'}');
            if let Some(id) = request_id {
                key(out, "requestId", false);
                json::put_json_str(out, id);
            }
            key(out, "opts", false);
            json_opts(out, opts);
        }
        Body::SocketsJoin { opts, rooms } | Body::SocketsLeave { opts, rooms } => {
            key(out, "opts", true);
            json_opts(out, opts);
            key(out, "rooms", false);
            json_rooms(out, rooms);
        }
        Body::DisconnectSockets { opts, close } => {
            key(out, "opts", true);
            json_opts(out, opts);
            key(out, "close", false);
            out.extend_from_slice(if *close { b"true" } else { b"false" });
        }
        Body::FetchSockets { opts, request_id } => {
            key(out, "opts", true);
            json_opts(out, opts);
            key(out, "requestId", false);
            json::put_json_str(out, request_id);
        }
        Body::FetchSocketsResponse { request_id, sockets, .. } => {
            key(out, "requestId", true);
            json::put_json_str(out, request_id);
            key(out, "sockets", false);
            out.put_u8(b'[');
            for (i, s) in sockets.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                key(out, "id", true);
                json::put_json_str(out, &s.id);
                key(out, "handshake", false);
                json::write_value(out, &s.handshake);
                key(out, "rooms", false);
                json_rooms(out, &s.rooms);
                if let Some(d) = &s.data {
                    key(out, "data", false);
                    json::write_value(out, d);
                }
                out.put_u8(b'}');
            }
            out.put_u8(b']');
        }
        Body::ServerSideEmit { event, args, request_id } => {
            if let Some(id) = request_id {
                key(out, "requestId", true);
                json::put_json_str(out, id);
            }
            key(out, "packet", request_id.is_none());
            json_event(out, event, args);
        }
        Body::ServerSideEmitResponse { request_id, reply }
        | Body::BroadcastAck { request_id, reply } => {
            key(out, "requestId", true);
            json::put_json_str(out, request_id);
            if let Some(v) = reply.values().first() {
                key(out, "packet", false);
                json::write_elements(out, std::slice::from_ref(v), reply.verbatim());
            }
        }
        Body::BroadcastClientCount { request_id, client_count } => {
            key(out, "requestId", true);
            json::put_json_str(out, request_id);
            key(out, "clientCount", false);
            out.extend_from_slice(itoa::Buffer::new().format(*client_count).as_bytes());
        }
    }
}

/// `"name":`, after a comma unless it is the object's first member (which opens it).
fn key(out: &mut BytesMut, name: &str, first: bool) {
    out.extend_from_slice(if first { b"{" } else { b"," });
    json::put_json_str(out, name);
    out.put_u8(b':');
}

/// `[event, ...args]`.
fn json_event(out: &mut BytesMut, event: &str, args: &Args) {
    out.put_u8(b'[');
    json::put_json_str(out, event);
    if !args.is_empty() {
        out.put_u8(b',');
        json::write_elements(out, args.values(), args.verbatim());
    }
    out.put_u8(b']');
}

fn json_rooms(out: &mut BytesMut, rooms: &[Room]) {
    out.put_u8(b'[');
    for (i, r) in rooms.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        json::put_json_str(out, r);
    }
    out.put_u8(b']');
}

/// `{"rooms":[...],"except":[...],"flags":{...}}`.
fn json_opts(out: &mut BytesMut, o: &Opts) {
    key(out, "rooms", true);
    json_rooms(out, &o.rooms);
    key(out, "except", false);
    json_rooms(out, &o.except);
    key(out, "flags", false);
    let mut first = true;
    for (name, v) in flag_members(&o.flags) {
        key(out, name, first);
        first = false;
        json::write_value(out, &v);
    }
    out.extend_from_slice(if first { b"{}}" } else { b"}}" });
}

/// The flags that are set, in the order socket.io's operators usually set them.
fn flag_members(f: &Flags) -> impl Iterator<Item = (&'static str, Value)> {
    [
        f.expect_single_response.then_some(("expectSingleResponse", Value::Bool(true))),
        f.volatile.then_some(("volatile", Value::Bool(true))),
        f.compress.map(|c| ("compress", Value::Bool(c))),
        f.local.then_some(("local", Value::Bool(true))),
        f.timeout.map(|t| ("timeout", Value::from(t))),
    ]
    .into_iter()
    .flatten()
}

/// The message as a value in the adapter's key order, binary as placeholders (for the
/// MessagePack encoder, which writes them as `bin`).
pub(super) fn tree(msg: &ClusterMessage) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(msg.kind().code()));
    let mut d = Map::new();
    match &msg.body {
        Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => {}
        Body::Broadcast { opts, event, args, request_id } => {
            let mut p = Map::new();
            p.insert("type".into(), Value::from(2));
            p.insert("data".into(), event_tree(event, args));
            d.insert("packet".into(), Value::Object(p));
            if let Some(id) = request_id {
                d.insert("requestId".into(), Value::String(id.clone()));
            }
            d.insert("opts".into(), opts_tree(opts));
        }
        Body::SocketsJoin { opts, rooms } | Body::SocketsLeave { opts, rooms } => {
            d.insert("opts".into(), opts_tree(opts));
            d.insert("rooms".into(), rooms_tree(rooms));
        }
        Body::DisconnectSockets { opts, close } => {
            d.insert("opts".into(), opts_tree(opts));
            d.insert("close".into(), Value::Bool(*close));
        }
        Body::FetchSockets { opts, request_id } => {
            d.insert("opts".into(), opts_tree(opts));
            d.insert("requestId".into(), Value::String(request_id.clone()));
        }
        Body::FetchSocketsResponse { request_id, sockets, .. } => {
            d.insert("requestId".into(), Value::String(request_id.clone()));
            let list = sockets
                .iter()
                .map(|s| {
                    let mut o = Map::new();
                    o.insert("id".into(), Value::String(s.id.clone()));
                    o.insert("handshake".into(), s.handshake.clone());
                    o.insert("rooms".into(), rooms_tree(&s.rooms));
                    if let Some(data) = &s.data {
                        o.insert("data".into(), data.clone());
                    }
                    Value::Object(o)
                })
                .collect();
            d.insert("sockets".into(), Value::Array(list));
        }
        Body::ServerSideEmit { event, args, request_id } => {
            if let Some(id) = request_id {
                d.insert("requestId".into(), Value::String(id.clone()));
            }
            d.insert("packet".into(), event_tree(event, args));
        }
        Body::ServerSideEmitResponse { request_id, reply }
        | Body::BroadcastAck { request_id, reply } => {
            d.insert("requestId".into(), Value::String(request_id.clone()));
            if let Some(v) = reply.values().first() {
                d.insert("packet".into(), v.clone());
            }
        }
        Body::BroadcastClientCount { request_id, client_count } => {
            d.insert("requestId".into(), Value::String(request_id.clone()));
            d.insert("clientCount".into(), Value::from(*client_count));
        }
    }
    if has_data(&msg.body) {
        m.insert("data".into(), Value::Object(d));
    }
    m.insert("uid".into(), Value::String(msg.uid.clone()));
    m.insert("nsp".into(), Value::String(msg.nsp.clone()));
    Value::Object(m)
}

fn event_tree(event: &str, args: &Args) -> Value {
    let mut items = Vec::with_capacity(args.len() + 1);
    items.push(Value::String(event.to_owned()));
    items.extend(args.values().iter().cloned());
    Value::Array(items)
}

fn rooms_tree(rooms: &[Room]) -> Value {
    Value::Array(rooms.iter().map(|r| Value::String(r.to_string())).collect())
}

fn opts_tree(o: &Opts) -> Value {
    let mut m = Map::new();
    m.insert("rooms".into(), rooms_tree(&o.rooms));
    m.insert("except".into(), rooms_tree(&o.except));
    m.insert(
        "flags".into(),
        Value::Object(flag_members(&o.flags).map(|(k, v)| (k.into(), v)).collect()),
    );
    Value::Object(m)
}

//! The messages of `@socket.io/redis-streams-adapter` (0.3), sans-IO: socket.io-adapter's
//! cluster messages ([`super::cluster_wire`]) split over two carriers.
//!
//! - **The stream** (`XADD {stream} MAXLEN ~ {max_len} * uid U nsp N type T data D`) holds
//!   what a reconnecting client may have missed and what must reach every server in order:
//!   plain broadcasts (type 3 without `requestId`), `socketsJoin` (4), `socketsLeave` (5)
//!   and `disconnectSockets` (6) ([`goes_to_stream`]). An entry is four fields: the
//!   sender's uid, the namespace, the type as decimal text, and `data` as JSON text, or, for
//!   a type that may carry binary and does, base64 (standard, padded) of its MessagePack.
//!   A receiver tells them apart by the first byte (`{`: JSON). The entry id is the
//!   broadcast's offset for connection state recovery.
//! - **Pub/sub** carries the rest (requests to `{prefix}#{nsp}#`, answers to
//!   `{prefix}#{nsp}#{uid}#`), each message whole as MessagePack ([`encode_pubsub`]).
//!
//! Sessions of connection state recovery are kept under `{session_prefix}{pid}` as base64 of
//! the MessagePack map `{sid, pid, rooms, data}` ([`Session`]).
//!
//! Layer: the adapter, beside `cluster_wire`, whose message model it shares.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::cluster_wire::{
    from_value, has_data, json_data, tree, Body, ClusterMessage, ClusterWireError,
};
use crate::proto::json;
use crate::proto::msgpack::{self, MsgpackError};

/// Whether a message goes to the stream (else to pub/sub): plain broadcasts and the
/// operations that change sockets, which every server must apply in order.
pub fn goes_to_stream(msg: &ClusterMessage) -> bool {
    match &msg.body {
        Body::Broadcast { request_id, .. } => request_id.is_none(),
        Body::SocketsJoin { .. } | Body::SocketsLeave { .. } | Body::DisconnectSockets { .. } => {
            true
        }
        _ => false,
    }
}

/// The fields of a stream entry, in the order the adapter writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryFields {
    /// The sender's uid.
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// The message type as decimal text.
    pub kind: String,
    /// `data`, absent for the types that have none.
    pub data: Option<Bytes>,
}

/// A message as a stream entry's fields.
pub fn entry_fields(msg: &ClusterMessage) -> EntryFields {
    let data = has_data(&msg.body).then(|| {
        let binary = msg.body.binary();
        let mut out = BytesMut::new();
        if msg.kind().may_contain_binary() && !binary.is_empty() {
            let data = match tree(msg) {
                Value::Object(mut m) => m.remove("data").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            let mut packed = BytesMut::new();
            msgpack::encode(&mut packed, &data, binary);
            out.extend_from_slice(STANDARD.encode(&packed).as_bytes());
        } else {
            json_data(&mut out, &msg.body);
            out.put_u8(b'}');
        }
        out.freeze()
    });
    EntryFields {
        uid: msg.uid.clone(),
        nsp: msg.nsp.clone(),
        kind: msg.kind().code().to_string(),
        data,
    }
}

/// Decodes a stream entry from its field/value pairs (in any order; unknown fields are
/// ignored, as the adapter does). `max_depth` bounds the nesting of `data` as for
/// [`super::cluster_wire::decode`].
pub fn decode_entry(
    fields: &[(Bytes, Bytes)],
    max_depth: usize,
) -> Result<ClusterMessage, ClusterWireError> {
    use ClusterWireError as E;
    let get = |name: &str| fields.iter().find(|(k, _)| k.as_ref() == name.as_bytes()).map(|f| &f.1);
    let text = |name: &'static str| -> Result<String, ClusterWireError> {
        let v = get(name).ok_or(E::Missing(name))?;
        std::str::from_utf8(v).map(str::to_owned).map_err(|_| E::WrongType(name))
    };
    let uid = text("uid")?;
    let nsp = text("nsp")?;
    // parseInt(type, 10) in the adapter; a type that is not a number is no message.
    let code: u64 = text("type")?.trim().parse().map_err(|_| E::WrongType("type"))?;
    let mut msg = Map::new();
    msg.insert("type".into(), Value::from(code));
    let mut binary = Vec::new();
    if let Some(data) = get("data") {
        let value = if data.first() == Some(&b'{') {
            json::parse(&String::from_utf8_lossy(data), max_depth)?.value
        } else {
            let packed = STANDARD.decode(data).map_err(|_| E::Base64)?;
            let d = msgpack::decode(&Bytes::from(packed), max_depth)?;
            binary = d.binary;
            d.value
        };
        msg.insert("data".into(), value);
    }
    msg.insert("uid".into(), Value::String(uid));
    msg.insert("nsp".into(), Value::String(nsp));
    from_value(Value::Object(msg), &binary)
}

/// A message as it travels over the adapter's pub/sub channels: MessagePack, whole, `type`
/// a number (decoded by [`super::cluster_wire::decode`], which reads MessagePack).
pub fn encode_pubsub(msg: &ClusterMessage) -> Bytes {
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, &tree(msg), msg.body.binary());
    out.freeze()
}

/// Whether a broadcast read from the stream is replayed to a session of namespace `nsp` in
/// `rooms` (its own id among them), as the adapter's restore filters them: a plain
/// broadcast (no `requestId`) of that namespace to any of its rooms (or to all) and to none
/// of its exceptions. Volatile broadcasts are not replayed (the reference's streams adapter
/// replays them; its in-memory adapter, and our single-server recovery, do not).
pub fn replays_to(msg: &ClusterMessage, nsp: &str, rooms: &[String]) -> bool {
    let Body::Broadcast { opts, request_id: None, .. } = &msg.body else { return false };
    if msg.nsp != nsp || opts.flags.volatile {
        return false;
    }
    let has = |list: &[crate::ns::Room], r: &str| list.iter().any(|x| **x == *r);
    (opts.rooms.is_empty() || rooms.iter().any(|r| has(&opts.rooms, r)))
        && !rooms.iter().any(|r| has(&opts.except, r))
}

/// A session kept for connection state recovery: the socket's id, its private id, its
/// rooms (its own id among them) and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The socket id.
    pub sid: String,
    /// The private session id.
    pub pid: String,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// `socket.data` (`null` when unset).
    pub data: Value,
}

/// Why a stored session could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not base64.
    #[error("session: not base64")]
    Base64,
    /// Not MessagePack.
    #[error("session: {0}")]
    Msgpack(#[from] MsgpackError),
    /// Not the `{sid, pid, rooms, data}` map.
    #[error("session: unexpected shape ({0})")]
    Shape(&'static str),
}

/// The Redis key of session `pid`.
pub fn session_key(prefix: &str, pid: &str) -> String {
    format!("{prefix}{pid}")
}

impl Session {
    /// The stored value: base64 of MessagePack `{sid, pid, rooms, data}`.
    pub fn encode(&self) -> String {
        let mut m = Map::new();
        m.insert("sid".into(), Value::String(self.sid.clone()));
        m.insert("pid".into(), Value::String(self.pid.clone()));
        m.insert(
            "rooms".into(),
            Value::Array(self.rooms.iter().cloned().map(Value::String).collect()),
        );
        m.insert("data".into(), self.data.clone());
        let mut out = BytesMut::new();
        msgpack::encode(&mut out, &Value::Object(m), &[]);
        STANDARD.encode(&out)
    }

    /// Reads a stored value. Binary inside `data` is not kept (a session's data is JSON
    /// here).
    pub fn decode(stored: &[u8], max_depth: usize) -> Result<Session, SessionError> {
        let packed = STANDARD.decode(stored).map_err(|_| SessionError::Base64)?;
        let d = msgpack::decode(&Bytes::from(packed), max_depth)?;
        let Value::Object(mut m) = d.value else { return Err(SessionError::Shape("not a map")) };
        let text = |v: Option<Value>, what| match v {
            Some(Value::String(s)) => Ok(s),
            _ => Err(SessionError::Shape(what)),
        };
        let sid = text(m.remove("sid"), "sid")?;
        let pid = text(m.remove("pid"), "pid")?;
        let rooms = match m.remove("rooms") {
            Some(Value::Array(rs)) => {
                rs.into_iter().map(|r| text(Some(r), "rooms")).collect::<Result<Vec<_>, _>>()?
            }
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(SessionError::Shape("rooms")),
        };
        Ok(Session { sid, pid, rooms, data: m.remove("data").unwrap_or(Value::Null) })
    }
}

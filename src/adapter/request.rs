//! The classic `@socket.io/redis-adapter` requests and responses (8.x), sans-IO: what one
//! server publishes on `{key}-request#{nsp}#` to ask the others (and what
//! `@socket.io/redis-emitter` publishes there), and what they answer on
//! `{key}-response#{nsp}#` (or `{key}-response#{nsp}#{uid}#` when the asker's servers publish
//! on the specific channel).
//!
//! Requests are JSON objects `{uid, requestId, type, ...}`, except a broadcast awaiting acks
//! (type 7), which is MessagePack because its packet may hold binary; a receiver reads either
//! (JSON when the first byte is `{`). Responses are JSON, except a client's ack (type 9),
//! MessagePack. A response names its request by `requestId` only (and, for acks, by its own
//! `type`), so it is decoded here as a map and read by what the asker asked.
//!
//! | type | request | fields | answer |
//! | --- | --- | --- | --- |
//! | 0 | SOCKETS | `rooms` | `{requestId, sockets: [sid]}` |
//! | 1 | ALL_ROOMS | | `{requestId, rooms}` |
//! | 2 | REMOTE_JOIN | `opts {rooms, except}`, `rooms`; or `sid`, `room` | none with `opts`; else `{requestId}` |
//! | 3 | REMOTE_LEAVE | the same | the same |
//! | 4 | REMOTE_DISCONNECT | `opts`, `close`; or `sid`, `close` | the same |
//! | 5 | REMOTE_FETCH | `opts {rooms, except}` | `{requestId, sockets: [{id, handshake, rooms, data}]}` |
//! | 6 | SERVER_SIDE_EMIT | `data: [event, ...args]`, `requestId` when acked | `{type: 6, requestId, data}` on the common channel |
//! | 7 | BROADCAST | `packet`, `opts {rooms, except, flags}` | `{type: 8, requestId, clientCount}`, then `{type: 9, requestId, packet}` per ack |

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use smallvec::SmallVec;

use super::wire::WireError;
use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;
use crate::proto::{json, msgpack, sio};

/// The request type numbers of the classic adapter.
pub mod kind {
    /// The ids of the sockets in some rooms (socket.io's deprecated `allSockets`).
    pub const SOCKETS: u64 = 0;
    /// Every room of the namespace.
    pub const ALL_ROOMS: u64 = 1;
    /// Selected sockets join rooms.
    pub const REMOTE_JOIN: u64 = 2;
    /// Selected sockets leave rooms.
    pub const REMOTE_LEAVE: u64 = 3;
    /// Selected sockets are disconnected.
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// The selected sockets' details.
    pub const REMOTE_FETCH: u64 = 5;
    /// An event for the servers themselves.
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// A broadcast awaiting acks.
    pub const BROADCAST: u64 = 7;
    /// A server's count of the clients a broadcast with acks reached (a response).
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    /// One client's ack of a broadcast (a response).
    pub const BROADCAST_ACK: u64 = 9;
}

/// Which sockets a join, leave or disconnect request is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Those a selection picks (the form every current sender uses; no answer).
    Selection(Selection),
    /// One socket by id (the older form; answered with `{requestId}`).
    Socket(String),
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Type 0: the ids of the sockets in `rooms` (all when empty).
    Sockets {
        /// The rooms.
        rooms: Vec<Room>,
    },
    /// Type 1: every room of the namespace.
    AllRooms,
    /// Type 2: the targets join `rooms`.
    Join {
        /// Who joins.
        targets: Targets,
        /// The rooms.
        rooms: Vec<Room>,
    },
    /// Type 3: the targets leave `rooms`.
    Leave {
        /// Who leaves.
        targets: Targets,
        /// The rooms.
        rooms: Vec<Room>,
    },
    /// Type 4: the targets are disconnected (`close`: their whole connections).
    Disconnect {
        /// Who is disconnected.
        targets: Targets,
        /// Close the underlying connections too.
        close: bool,
    },
    /// Type 5: the selected sockets' id, handshake, rooms and data.
    Fetch {
        /// The selection.
        sel: Selection,
    },
    /// Type 6: an event for the servers' own listeners.
    ServerSideEmit {
        /// The event name.
        event: String,
        /// Its arguments.
        args: Args,
    },
    /// Type 7: a broadcast whose clients' acks go back to the asker.
    Broadcast {
        /// The event name.
        event: String,
        /// Its arguments.
        args: Args,
        /// Target rooms and exceptions.
        sel: Selection,
        /// `flags.volatile`.
        volatile: bool,
        /// `flags.compress` (true when absent).
        compress: bool,
        /// `flags.timeout`: how long the asker waits for acks.
        timeout: Option<Duration>,
    },
}

impl RequestBody {
    /// The request's type number.
    pub fn kind(&self) -> u64 {
        match self {
            RequestBody::Sockets { .. } => kind::SOCKETS,
            RequestBody::AllRooms => kind::ALL_ROOMS,
            RequestBody::Join { .. } => kind::REMOTE_JOIN,
            RequestBody::Leave { .. } => kind::REMOTE_LEAVE,
            RequestBody::Disconnect { .. } => kind::REMOTE_DISCONNECT,
            RequestBody::Fetch { .. } => kind::REMOTE_FETCH,
            RequestBody::ServerSideEmit { .. } => kind::SERVER_SIDE_EMIT,
            RequestBody::Broadcast { .. } => kind::BROADCAST,
        }
    }
}

/// A request as it travels between servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The asking server's uid (absent from the emitter's requests).
    pub uid: Option<String>,
    /// The request id, for requests that are answered.
    pub request_id: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// A socket as a fetch response carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct WireSocket {
    /// The socket id.
    pub id: String,
    /// The handshake as socket.io shapes it (`headers`, `time`, `address`, `xdomain`,
    /// `secure`, `issued`, `url`, `query`, `auth`).
    pub handshake: Value,
    /// Its rooms, its own id included.
    pub rooms: Vec<Room>,
    /// `socket.data`.
    pub data: Value,
}

/// A response, read by what its request asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request it answers.
    pub request_id: String,
    /// Its own `type`, for the ack responses (8, 9) and server-side emit replies (6).
    pub kind: Option<u64>,
    fields: Map<String, Value>,
    binary: Vec<Bytes>,
}

fn shape(what: &'static str) -> WireError {
    WireError::Shape(what)
}

/// Reads a JSON (first byte `{`) or MessagePack message into a value and its binary parts.
fn decode_any(bytes: &Bytes, max_depth: usize) -> Result<(Value, Vec<Bytes>), WireError> {
    if bytes.first() == Some(&b'{') {
        let text = std::str::from_utf8(bytes).map_err(|_| shape("JSON is not UTF-8"))?;
        let parsed = json::parse(text, max_depth).map_err(|_| shape("invalid JSON"))?;
        Ok((parsed.value, Vec::new()))
    } else {
        let d = msgpack::decode(bytes, max_depth)?;
        Ok((d.value, d.binary))
    }
}

fn string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A room name as JavaScript makes a Set member of it (rooms may be numbers there).
pub(crate) fn room_name(v: &Value) -> Result<Room, WireError> {
    match v {
        Value::String(s) => Ok(Arc::from(s.as_str())),
        Value::Number(_) => Ok(Arc::from(js_text(v).as_str())),
        _ => Err(shape("room name")),
    }
}

fn js_text(v: &Value) -> String {
    let mut t = BytesMut::new();
    json::write_value(&mut t, v);
    String::from_utf8_lossy(&t).into_owned()
}

fn room_list(v: Option<&Value>) -> Result<Vec<Room>, WireError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(room_name).collect(),
        // `socketsJoin("room")` from an emitter that did not wrap it.
        Some(v @ (Value::String(_) | Value::Number(_))) => Ok(vec![room_name(v)?]),
        Some(_) => Err(shape("rooms")),
    }
}

/// `opts {rooms, except}` as a selection.
pub(crate) fn selection(opts: &Value) -> Result<Selection, WireError> {
    let Value::Object(o) = opts else { return Err(shape("opts")) };
    let small = |key| room_list(o.get(key)).map(SmallVec::from_vec);
    Ok(Selection { rooms: small("rooms")?, except: small("except")? })
}

/// `[event, ...args]` (a packet's `data`) as the event name and its arguments, with the
/// attachments their placeholders name (binary elsewhere in the message is dropped).
pub(crate) fn event_and_args(data: Value, binary: Vec<Bytes>) -> Result<(String, Args), WireError> {
    let Value::Array(mut data) = data else { return Err(shape("data")) };
    let binary = sio::keep_referenced(data.iter_mut().collect(), &binary);
    if data.is_empty() {
        return Err(shape("no event"));
    }
    let event = match data.remove(0) {
        Value::String(s) => s,
        v @ Value::Number(_) => js_text(&v),
        _ => return Err(shape("event name")),
    };
    Ok((event, Args::from_parts(data, binary, Default::default())))
}

/// Decodes a request another server (or the emitter) published.
pub fn decode_request(bytes: &Bytes, max_depth: usize) -> Result<Request, WireError> {
    let (value, binary) = decode_any(bytes, max_depth)?;
    let Value::Object(mut m) = value else { return Err(shape("request is not an object")) };
    let uid = string(m.get("uid"));
    let request_id = match m.get("requestId") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(string_of(v)),
        Some(_) => return Err(shape("requestId")),
    };
    let ty = m.get("type").and_then(Value::as_u64).ok_or(shape("request type"))?;
    let targets = |m: &Map<String, Value>| -> Result<Targets, WireError> {
        match (m.get("opts"), m.get("sid")) {
            (Some(opts), _) if !opts.is_null() => Ok(Targets::Selection(selection(opts)?)),
            (_, Some(Value::String(sid))) => Ok(Targets::Socket(sid.clone())),
            _ => Err(shape("opts or sid")),
        }
    };
    // The older one-socket form names one `room`; the selection form lists `rooms`.
    let rooms = |m: &Map<String, Value>| match m.get("room") {
        Some(r) if !m.contains_key("rooms") => room_list(Some(r)),
        _ => room_list(m.get("rooms")),
    };
    let body = match ty {
        kind::SOCKETS => RequestBody::Sockets { rooms: room_list(m.get("rooms"))? },
        kind::ALL_ROOMS => RequestBody::AllRooms,
        kind::REMOTE_JOIN => RequestBody::Join { targets: targets(&m)?, rooms: rooms(&m)? },
        kind::REMOTE_LEAVE => RequestBody::Leave { targets: targets(&m)?, rooms: rooms(&m)? },
        kind::REMOTE_DISCONNECT => RequestBody::Disconnect {
            targets: targets(&m)?,
            close: m.get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        kind::REMOTE_FETCH => {
            RequestBody::Fetch { sel: selection(m.get("opts").ok_or(shape("opts"))?)? }
        }
        kind::SERVER_SIDE_EMIT => {
            let (event, args) = event_and_args(m.remove("data").unwrap_or(Value::Null), binary)?;
            RequestBody::ServerSideEmit { event, args }
        }
        kind::BROADCAST => {
            let Some(Value::Object(mut packet)) = m.remove("packet") else {
                return Err(shape("packet"));
            };
            let (event, args) =
                event_and_args(packet.remove("data").unwrap_or(Value::Null), binary)?;
            let opts = m.get("opts").ok_or(shape("opts"))?;
            let flags = opts.get("flags").and_then(Value::as_object);
            let flag = |name: &str| flags.and_then(|f| f.get(name));
            RequestBody::Broadcast {
                event,
                args,
                sel: selection(opts)?,
                volatile: flag("volatile").and_then(Value::as_bool).unwrap_or(false),
                compress: flag("compress").and_then(Value::as_bool).unwrap_or(true),
                timeout: flag("timeout")
                    .and_then(Value::as_f64)
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| Duration::from_millis(t.min(u32::MAX as f64) as u64)),
            }
        }
        _ => return Err(shape("unknown request type")),
    };
    Ok(Request { uid, request_id, body })
}

fn string_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => js_text(other),
    }
}

fn rooms_json(rooms: &[Room]) -> Value {
    Value::Array(rooms.iter().map(|r| Value::String(r.to_string())).collect())
}

fn opts_json(sel: &Selection) -> Value {
    json!({"rooms": rooms_json(&sel.rooms), "except": rooms_json(&sel.except)})
}

fn data_json(event: &str, args: &Args) -> Value {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::String(event.to_owned()));
    data.extend(args.values().iter().cloned());
    Value::Array(data)
}

fn to_json(v: &Value) -> Bytes {
    let mut out = BytesMut::new();
    json::write_value(&mut out, v);
    out.freeze()
}

fn to_msgpack(v: &Value, binary: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, v, binary);
    out.freeze()
}

/// Encodes a request for the other servers: JSON, or MessagePack for a broadcast awaiting
/// acks and for a server-side emit with binary arguments (JSON cannot carry bytes).
pub fn encode_request(r: &Request) -> Bytes {
    let mut m = Map::new();
    if let Some(uid) = &r.uid {
        m.insert("uid".into(), Value::String(uid.clone()));
    }
    if let Some(id) = &r.request_id {
        m.insert("requestId".into(), Value::String(id.clone()));
    }
    // The reference's key order: uid, requestId, type, then the request's own fields.
    m.insert("type".into(), Value::from(r.body.kind()));
    let targets = |m: &mut Map<String, Value>, t: &Targets| match t {
        Targets::Selection(sel) => {
            m.insert("opts".into(), opts_json(sel));
        }
        Targets::Socket(sid) => {
            m.insert("sid".into(), Value::String(sid.clone()));
        }
    };
    let binary: &[Bytes] = match &r.body {
        RequestBody::Sockets { rooms } => {
            m.insert("rooms".into(), rooms_json(rooms));
            &[]
        }
        RequestBody::AllRooms => &[],
        RequestBody::Join { targets: t, rooms } | RequestBody::Leave { targets: t, rooms } => {
            targets(&mut m, t);
            match (t, rooms.as_slice()) {
                (Targets::Socket(_), [room]) => {
                    m.insert("room".into(), Value::String(room.to_string()));
                }
                _ => {
                    m.insert("rooms".into(), rooms_json(rooms));
                }
            }
            &[]
        }
        RequestBody::Disconnect { targets: t, close } => {
            targets(&mut m, t);
            m.insert("close".into(), Value::Bool(*close));
            &[]
        }
        RequestBody::Fetch { sel } => {
            m.insert("opts".into(), opts_json(sel));
            &[]
        }
        RequestBody::ServerSideEmit { event, args } => {
            m.insert("data".into(), data_json(event, args));
            args.binary()
        }
        RequestBody::Broadcast { event, args, sel, volatile, compress, timeout } => {
            let mut flags = Map::new();
            if *volatile {
                flags.insert("volatile".into(), Value::Bool(true));
            }
            if !compress {
                flags.insert("compress".into(), Value::Bool(false));
            }
            if let Some(t) = timeout {
                flags.insert("timeout".into(), Value::from(t.as_millis() as u64));
            }
            m.insert("packet".into(), json!({"type": 2, "data": data_json(event, args)}));
            let mut opts = opts_json(sel);
            if let Value::Object(o) = &mut opts {
                o.insert("flags".into(), Value::Object(flags));
            }
            m.insert("opts".into(), opts);
            return to_msgpack(&Value::Object(m), args.binary());
        }
    };
    let v = Value::Object(m);
    if binary.is_empty() {
        to_json(&v)
    } else {
        to_msgpack(&v, binary)
    }
}

/// Decodes a response on a response channel.
pub fn decode_response(bytes: &Bytes, max_depth: usize) -> Result<Response, WireError> {
    let (value, binary) = decode_any(bytes, max_depth)?;
    let Value::Object(fields) = value else { return Err(shape("response is not an object")) };
    let request_id = match fields.get("requestId") {
        Some(v @ (Value::String(_) | Value::Number(_))) => string_of(v),
        _ => return Err(shape("requestId")),
    };
    let kind = fields.get("type").and_then(Value::as_u64);
    Ok(Response { request_id, kind, fields, binary })
}

impl Response {
    /// The rooms of an ALL_ROOMS answer.
    pub fn rooms(&self) -> Result<Vec<Room>, WireError> {
        match self.fields.get("rooms") {
            Some(Value::Array(list)) => list.iter().map(room_name).collect(),
            _ => Err(shape("rooms")),
        }
    }

    /// The sockets of a REMOTE_FETCH answer.
    pub fn sockets(&self) -> Result<Vec<WireSocket>, WireError> {
        let Some(Value::Array(list)) = self.fields.get("sockets") else {
            return Err(shape("sockets"));
        };
        list.iter()
            .map(|s| {
                let id = string(s.get("id")).ok_or(shape("socket id"))?;
                Ok(WireSocket {
                    id,
                    handshake: s.get("handshake").cloned().unwrap_or(Value::Null),
                    rooms: room_list(s.get("rooms"))?,
                    data: s.get("data").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// The client count of a BROADCAST_CLIENT_COUNT answer.
    pub fn client_count(&self) -> Result<usize, WireError> {
        let n =
            self.fields.get("clientCount").and_then(Value::as_u64).ok_or(shape("clientCount"))?;
        usize::try_from(n).map_err(|_| shape("clientCount"))
    }

    /// The one argument a BROADCAST_ACK (`packet`) or SERVER_SIDE_EMIT (`data`) answer
    /// carries, as the arguments of a reply (`undefined` when absent, as in socket.io).
    pub fn reply(&self) -> Args {
        let key = if self.kind == Some(kind::BROADCAST_ACK) { "packet" } else { "data" };
        match self.fields.get(key) {
            Some(v) => {
                let mut v = v.clone();
                let binary = sio::keep_referenced(vec![&mut v], &self.binary);
                Args::from_parts(vec![v], binary, Default::default())
            }
            None => Args::new(),
        }
    }
}

/// A SOCKETS answer.
pub fn socket_ids_response(request_id: &str, ids: &[String]) -> Bytes {
    to_json(&json!({"requestId": request_id, "sockets": ids}))
}

/// An ALL_ROOMS answer.
pub fn rooms_response(request_id: &str, rooms: &[Room]) -> Bytes {
    to_json(&json!({"requestId": request_id, "rooms": rooms_json(rooms)}))
}

/// The answer to a one-socket join, leave or disconnect.
pub fn done_response(request_id: &str) -> Bytes {
    to_json(&json!({ "requestId": request_id }))
}

/// A REMOTE_FETCH answer.
pub fn fetch_response(request_id: &str, sockets: &[WireSocket]) -> Bytes {
    let list: Vec<Value> = sockets
        .iter()
        .map(|s| {
            json!({"id": s.id, "handshake": s.handshake, "rooms": rooms_json(&s.rooms), "data": s.data})
        })
        .collect();
    to_json(&json!({"requestId": request_id, "sockets": list}))
}

/// A server-side emit's reply (one argument, `null` when the listener gave none).
pub fn server_side_response(request_id: &str, reply: &Args) -> Bytes {
    let v = json!({
        "type": kind::SERVER_SIDE_EMIT,
        "requestId": request_id,
        "data": reply.values().first().cloned().unwrap_or(Value::Null),
    });
    if reply.binary().is_empty() {
        to_json(&v)
    } else {
        to_msgpack(&v, reply.binary())
    }
}

/// How many clients a broadcast with acks reached here.
pub fn client_count_response(request_id: &str, count: usize) -> Bytes {
    to_json(&json!({
        "type": kind::BROADCAST_CLIENT_COUNT,
        "requestId": request_id,
        "clientCount": count,
    }))
}

/// One client's ack of a broadcast: its first argument (MessagePack, binary kept).
pub fn ack_response(request_id: &str, reply: &Args) -> Bytes {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind::BROADCAST_ACK));
    m.insert("requestId".into(), Value::String(request_id.to_owned()));
    // An ack with no argument is `undefined` there, which notepack drops from a map.
    if let Some(v) = reply.values().first() {
        m.insert("packet".into(), v.clone());
    }
    to_msgpack(&Value::Object(m), reply.binary())
}

/// The channel requests of namespace `nsp` go on.
pub fn request_channel(key: &str, nsp: &str) -> String {
    format!("{key}-request#{nsp}#")
}

/// The common response channel of namespace `nsp`.
pub fn response_channel(key: &str, nsp: &str) -> String {
    format!("{key}-response#{nsp}#")
}

/// The response channel specific to server `uid`.
pub fn specific_response_channel(key: &str, nsp: &str, uid: &str) -> String {
    format!("{key}-response#{nsp}#{uid}#")
}

//! The classic `@socket.io/redis-adapter` broadcast message (8.x), sans-IO: what one server
//! publishes on `{key}#{nsp}#` (or `{key}#{nsp}#{room}#` when it targets exactly one room) for
//! the others to deliver to their own sockets: the MessagePack (notepack.io) array
//! `[uid, packet, {rooms, except, flags}]` (the emitter writes `{rooms, flags, except}`),
//! where `packet` is the Socket.IO packet before the parser sees it: `{type: 2, data:
//! [event, ...args], nsp}`, binary arguments in place as `bin`. A receiver ignores its own
//! uid, treats a missing `nsp` as `/`, and applies `flags` (`volatile`, `compress`) to its
//! local delivery; `local` broadcasts are never published.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::request::{event_and_args, selection};
use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;
use crate::proto::msgpack::{self, MsgpackError};

/// Why a received broadcast message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not MessagePack.
    #[error("adapter message: {0}")]
    Msgpack(#[from] MsgpackError),
    /// MessagePack of another shape than `[uid, packet, opts]`.
    #[error("adapter message: unexpected shape ({0})")]
    Shape(&'static str),
}

/// A broadcast as it travels between servers.
#[derive(Debug, Clone, PartialEq)]
pub struct WireBroadcast {
    /// The publishing server's uid.
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// The event name.
    pub event: String,
    /// Its arguments (binary as placeholders and attachments).
    pub args: Args,
    /// Target rooms and exceptions.
    pub sel: Selection,
    /// `flags.volatile`.
    pub volatile: bool,
    /// `flags.compress` (true when absent, as in socket.io).
    pub compress: bool,
}

/// The channel a broadcast is published on: `{key}#{nsp}#`, plus `{room}#` when the
/// broadcast targets exactly one room.
pub fn broadcast_channel(key: &str, nsp: &str, rooms: &[Room]) -> String {
    match rooms {
        [room] => format!("{key}#{nsp}#{room}#"),
        _ => format!("{key}#{nsp}#"),
    }
}

/// Encodes a broadcast for the other servers.
pub fn encode_broadcast(b: &WireBroadcast) -> Bytes {
    let mut flags = Map::new();
    if b.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if !b.compress {
        flags.insert("compress".into(), Value::Bool(false));
    }
    let opts =
        json!({"rooms": names(&b.sel.rooms), "except": names(&b.sel.except), "flags": flags});
    encode_message(&b.uid, &b.nsp, &b.event, &b.args, opts)
}

/// Encodes a broadcast as `@socket.io/redis-emitter` 5.x publishes it, byte for byte: uid
/// `emitter`, `opts` in its key order `{rooms, flags, except}`, and `flags` as the caller
/// set them, in the order set (`compress: true` included, which [`encode_broadcast`] leaves
/// out as the default). Receivers read both layouts alike.
pub fn encode_emitter_broadcast(
    nsp: &str,
    event: &str,
    args: &Args,
    sel: &Selection,
    flags: &Map<String, Value>,
) -> Bytes {
    let opts = json!({"rooms": names(&sel.rooms), "flags": flags, "except": names(&sel.except)});
    encode_message("emitter", nsp, event, args, opts)
}

fn names(rooms: &[Room]) -> Vec<&str> {
    rooms.iter().map(|r| &**r).collect()
}

/// `[uid, {type: 2, data: [event, ...args], nsp}, opts]` as MessagePack, binary as `bin`.
fn encode_message(uid: &str, nsp: &str, event: &str, args: &Args, opts: Value) -> Bytes {
    let (values, binary) = (args.values(), args.binary());
    let mut data = Vec::with_capacity(values.len() + 1);
    data.push(Value::String(event.to_owned()));
    data.extend(values.iter().cloned());
    let msg = json!([uid, {"type": 2, "data": data, "nsp": nsp}, opts]);
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, &msg, binary);
    out.freeze()
}

/// The uid a broadcast message starts with (`[uid, ...]`), read without decoding the rest:
/// a server skips its own broadcasts, which Redis sends back to it, for the price of a few
/// byte comparisons. `None` when the message does not start that way (the full decoder then
/// says why).
pub fn peek_uid(bytes: &[u8]) -> Option<&str> {
    let rest = match *bytes.first()? {
        0x91..=0x9f => &bytes[1..],
        0xdc => bytes.get(3..)?,
        0xdd => bytes.get(5..)?,
        _ => return None,
    };
    let (len, at): (usize, usize) = match *rest.first()? {
        b @ 0xa0..=0xbf => (usize::from(b & 0x1f), 1),
        0xd9 => (usize::from(*rest.get(1)?), 2),
        0xda => (usize::from(u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?])), 3),
        _ => return None,
    };
    std::str::from_utf8(rest.get(at..at.checked_add(len)?)?).ok()
}

/// Decodes a broadcast another server (or the emitter) published.
pub fn decode_broadcast(bytes: &Bytes, max_depth: usize) -> Result<WireBroadcast, WireError> {
    let decoded = msgpack::decode(bytes, max_depth)?;
    let Value::Array(mut parts) = decoded.value else {
        return Err(WireError::Shape("not an array"));
    };
    if parts.len() < 3 {
        return Err(WireError::Shape("fewer than 3 parts"));
    }
    let opts = parts.remove(2);
    let packet = parts.remove(1);
    let uid = match parts.remove(0) {
        Value::String(s) => s,
        _ => return Err(WireError::Shape("uid")),
    };
    let Value::Object(mut packet) = packet else { return Err(WireError::Shape("packet")) };
    // EVENT (2) as the adapter publishes it, or BINARY_EVENT (5) from older encoders.
    if !matches!(packet.get("type").and_then(Value::as_u64), Some(2 | 5)) {
        return Err(WireError::Shape("packet type"));
    }
    let nsp = match packet.remove("nsp") {
        None | Some(Value::Null) => "/".to_owned(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(WireError::Shape("nsp")),
    };
    let (event, args) =
        event_and_args(packet.remove("data").unwrap_or(Value::Null), decoded.binary)?;
    let sel = selection(&opts)?;
    let flags = opts.get("flags").and_then(Value::as_object);
    let flag = |name: &str| flags.and_then(|f| f.get(name)).and_then(Value::as_bool);
    Ok(WireBroadcast {
        uid,
        nsp,
        event,
        args,
        sel,
        volatile: flag("volatile").unwrap_or(false),
        compress: flag("compress").unwrap_or(true),
    })
}

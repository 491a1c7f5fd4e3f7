//! Socket.IO packets as `socket.io-msgpack-parser` (v3, protocol 5) carries them: the
//! packet object itself, `{type, data, id, nsp}`, written as one MessagePack map by
//! notepack.io 2 and sent as one binary Engine.IO message. Binary stays inside the data as
//! MessagePack `bin` (no attachments, no BINARY_EVENT / BINARY_ACK on the wire): decoded, it
//! becomes placeholders and parts as with the default parser, so handlers and the
//! broadcast path see the same [`Packet`].
//!
//! What the reference decoder (`checkPacket`) requires, and so this one: a map whose `type`
//! is an integer from 0 (CONNECT) to 4 (CONNECT_ERROR), whose `nsp` is a string, whose
//! `data` is absent or an object for CONNECT, absent for DISCONNECT, a string or an object
//! for CONNECT_ERROR and an array otherwise, and whose `id` is absent or an integer. Other
//! keys (socket.io-client writes `options`) are ignored. Stricter here, as with the default
//! parser: an event must be named by a string that is not reserved, or a number; an ACK
//! needs its id; an id is an integer from 0 to 2^64 - 1.
//!
//! Layer: the bottom (sans-IO).

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::json::Verbatim;
use super::msgpack::{self, put_array_len, put_map_len, put_str, put_uint};
use super::sio::{self, DecodeError, Limits, Packet, PacketType};

/// Decodes one binary Engine.IO message into a packet and its binary parts (placeholders in
/// the data stand for them). `limits.max_json_depth` bounds the nesting (the packet map
/// itself is one level); attachments are not counted: a packet is one message, bounded by
/// `max_payload`.
pub fn decode(frame: &Bytes, limits: Limits) -> Result<(Packet, Vec<Bytes>), DecodeError> {
    let decoded = msgpack::decode(frame, limits.max_json_depth.saturating_add(1))
        .map_err(DecodeError::Msgpack)?;
    let Value::Object(mut map) = decoded.value else {
        return Err(DecodeError::InvalidPacketType);
    };
    let kind = match map.get("type").and_then(Value::as_u64) {
        Some(0) => PacketType::Connect,
        Some(1) => PacketType::Disconnect,
        Some(2) => PacketType::Event,
        Some(3) => PacketType::Ack,
        Some(4) => PacketType::ConnectError,
        _ => return Err(DecodeError::InvalidPacketType),
    };
    let nsp = match map.remove("nsp") {
        Some(Value::String(s)) => s,
        _ => return Err(DecodeError::InvalidNamespace),
    };
    let id = match map.get("id") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or(DecodeError::InvalidAckId)?),
    };
    let mut data = map.remove("data");
    if !sio::is_payload_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload);
    }
    if id.is_none() && kind == PacketType::Ack {
        return Err(DecodeError::MissingAckId);
    }
    // Binary outside the data (in a key the parser ignores) is dropped, and the data's
    // placeholders renumbered from 0.
    let mut binary = decoded.binary;
    if let Some(d) = data.as_mut() {
        if sio::count_placeholders(d) != binary.len() {
            binary = msgpack::renumber(d, &binary);
        }
    } else {
        binary.clear();
    }
    let kind = match (kind, binary.is_empty()) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (kind, _) => kind,
    };
    let attachments = if kind.is_binary() { binary.len() } else { 0 };
    Ok((Packet { kind, nsp, id, data, attachments, verbatim: Verbatim::default() }, binary))
}

/// The packet type as the MessagePack parser writes it: binary packets keep the plain type
/// (the binary is inside the data).
fn wire_type(kind: PacketType) -> u64 {
    match kind {
        PacketType::Connect => 0,
        PacketType::Disconnect => 1,
        PacketType::Event | PacketType::BinaryEvent => 2,
        PacketType::Ack | PacketType::BinaryAck => 3,
        PacketType::ConnectError => 4,
    }
}

/// Writes the map header and `type`, in the order the reference builds a packet (`type`,
/// `data`, then `id` and `nsp`).
fn put_start(out: &mut BytesMut, kind: PacketType, data: bool, id: bool) {
    put_map_len(out, 2 + usize::from(data) + usize::from(id));
    put_str(out, "type");
    put_uint(out, wire_type(kind));
}

fn put_end(out: &mut BytesMut, nsp: &str, id: Option<u64>) {
    if let Some(id) = id {
        put_str(out, "id");
        put_uint(out, id);
    }
    put_str(out, "nsp");
    put_str(out, nsp);
}

/// Appends any packet (binary as `bin`, each placeholder of the data naming its part in
/// `binary`).
pub fn encode(out: &mut BytesMut, p: &Packet, binary: &[Bytes]) {
    put_start(out, p.kind, p.data.is_some(), p.id.is_some());
    if let Some(data) = &p.data {
        put_str(out, "data");
        msgpack::encode(out, data, binary);
    }
    put_end(out, &p.nsp, p.id);
}

/// Appends an EVENT of `event` with `args` (their placeholders naming parts of `binary`)
/// and, when `offset` is set, that string as the last argument (connection state
/// recovery's offset). Same bytes as [`encode`] of the equivalent packet.
pub fn encode_event(
    out: &mut BytesMut,
    nsp: &str,
    event: &str,
    args: &[Value],
    binary: &[Bytes],
    id: Option<u64>,
    offset: Option<&str>,
) {
    out.reserve(32 + nsp.len() + event.len());
    put_start(out, PacketType::Event, true, id.is_some());
    put_str(out, "data");
    put_array_len(out, 1 + args.len() + usize::from(offset.is_some()));
    put_str(out, event);
    for a in args {
        msgpack::encode(out, a, binary);
    }
    if let Some(o) = offset {
        put_str(out, o);
    }
    put_end(out, nsp, id);
}

/// Appends an ACK for `id` with `args`. Same bytes as [`encode`] of the equivalent packet.
pub fn encode_ack(out: &mut BytesMut, nsp: &str, id: u64, args: &[Value], binary: &[Bytes]) {
    out.reserve(24 + nsp.len());
    put_start(out, PacketType::Ack, true, true);
    put_str(out, "data");
    put_array_len(out, args.len());
    for a in args {
        msgpack::encode(out, a, binary);
    }
    put_end(out, nsp, Some(id));
}

/// The first byte of every packet this module writes and most it reads: a map of 2 to 15
/// entries. Lets a server with the default parser name what it got (a client configured
/// with the MessagePack parser) in its log.
pub fn looks_like_msgpack(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| (0x82..=0x8f).contains(b))
}

#[cfg(test)]
#[path = "sio_msgpack_tests.rs"]
mod tests;

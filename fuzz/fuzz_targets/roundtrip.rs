//! Round trips from structured inputs (`arbitrary`): a Socket.IO packet of any type, with a
//! namespace, an ack id and JSON data of the shape its type allows (strings with any
//! character, numbers JavaScript keeps as they are, nesting), and an Engine.IO packet of any type with any payload, each
//! encoded then decoded: decode(encode(x)) == x.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use shardcast::proto::eio;
use shardcast::proto::sio::{self, Limits, Packet, PacketType};

/// A JSON value at most `depth` deep, numbers as JSON can carry them.
fn value(u: &mut Unstructured, depth: u32) -> arbitrary::Result<Value> {
    let pick = if depth == 0 { u.int_in_range(0..=4)? } else { u.int_in_range(0..=6)? };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        // Integers JavaScript holds exactly, and numbers with a fraction: the shapes a JSON
        // number keeps through JavaScript's reading and writing (1.0 comes back as 1).
        2 => Value::from(u.int_in_range(-(1i64 << 53)..=1i64 << 53)?),
        3 => {
            let f = f64::arbitrary(u)?;
            if f.is_finite() && f.fract() != 0.0 {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            } else {
                Value::Null
            }
        }
        4 => Value::String(String::arbitrary(u)?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| value(u, depth - 1)).collect::<Result<_, _>>()?)
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0..=4)? {
                m.insert(String::arbitrary(u)?, value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

fn sio_packet(u: &mut Unstructured) -> arbitrary::Result<Packet> {
    let kind = *u.choose(&[
        PacketType::Connect,
        PacketType::Disconnect,
        PacketType::Event,
        PacketType::Ack,
        PacketType::ConnectError,
    ])?;
    // A namespace as socket.io writes one: `/` and a name with no `,`.
    let name: String = String::arbitrary(u)?.chars().filter(|c| *c != ',').collect();
    let nsp = if bool::arbitrary(u)? { "/".to_owned() } else { format!("/{name}") };
    let id = match kind {
        PacketType::Ack => Some(u.int_in_range(0..=u64::MAX >> 11)?),
        PacketType::Event if bool::arbitrary(u)? => Some(u.int_in_range(0..=u64::MAX >> 11)?),
        _ => None,
    };
    let data = match kind {
        PacketType::Connect if bool::arbitrary(u)? => None,
        PacketType::Connect | PacketType::ConnectError => {
            let mut m = Map::new();
            m.insert("message".into(), Value::String(String::arbitrary(u)?));
            m.insert("data".into(), value(u, 3)?);
            Some(Value::Object(m))
        }
        PacketType::Disconnect => None,
        PacketType::Event => {
            // Any name but the reserved ones (`connect`, ...), which the decoder refuses as
            // socket.io-parser does.
            let mut name = String::arbitrary(u)?;
            if sio::is_reserved_event(&name) {
                name.push('!');
            }
            let mut items = vec![Value::String(name)];
            for _ in 0..u.int_in_range(0..=4)? {
                items.push(value(u, 4)?);
            }
            Some(Value::Array(items))
        }
        _ => Some(Value::Array((0..u.int_in_range(0..=4)?).map(|_| value(u, 4)).collect::<Result<_, _>>()?)),
    };
    Ok(Packet::new(kind, nsp, id, data))
}

fn eio_packet(u: &mut Unstructured) -> arbitrary::Result<eio::Packet> {
    let text = |u: &mut Unstructured| -> arbitrary::Result<Bytes> {
        Ok(Bytes::from(String::arbitrary(u)?.into_bytes()))
    };
    Ok(match u.int_in_range(0..=6)? {
        0 => eio::Packet::Open(text(u)?),
        1 => eio::Packet::Close,
        2 => eio::Packet::Ping(text(u)?),
        3 => eio::Packet::Pong(text(u)?),
        4 => eio::Packet::Message(text(u)?),
        5 => eio::Packet::Upgrade,
        _ => eio::Packet::Noop,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(p) = sio_packet(&mut u) {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let back = Packet::decode(&out, Limits { max_attachments: 10, max_json_depth: 1000 })
            .unwrap_or_else(|e| panic!("{p:?} encoded as {out:?} does not decode: {e}"));
        assert_eq!((back.kind, &back.nsp, back.id, &back.data), (p.kind, &p.nsp, p.id, &p.data), "{out:?}");
    }
    if let Ok(p) = eio_packet(&mut u) {
        let mut out = BytesMut::new();
        p.encode_text(&mut out);
        assert_eq!(eio::Packet::decode_text(out.freeze()), Ok(p));
    }
});

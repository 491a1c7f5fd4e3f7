//! The MessagePack parser (`Parser::MsgPack`) on real sockets, 4 shards, with the demo
//! app: every packet is one binary WebSocket message (or one `b` segment of a polling
//! payload); a broadcast is encoded once and every recipient, on every shard and on either
//! transport, gets the same bytes; a text message or a malformed packet closes that one
//! connection and the others are served. (The official client with
//! socket.io-msgpack-parser is in tests/interop/msgpack.test.mjs.) One test in this file:
//! `ENCODINGS` counts per process.

mod common;

use std::sync::atomic::Ordering;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use common::*;
use serde_json::{json, Value};
use shardcast::broadcast::ENCODINGS;
use shardcast::proto::msgpack;
use shardcast::proto::sio::{Packet, PacketType};
use shardcast::proto::sio_msgpack;
use shardcast::Parser;

fn packet(kind: PacketType, id: Option<u64>, data: Option<Value>, binary: &[Bytes]) -> Vec<u8> {
    let mut out = BytesMut::new();
    sio_msgpack::encode(&mut out, &Packet::new(kind, "/", id, data), binary);
    out.to_vec()
}

fn event(id: Option<u64>, args: Value) -> Vec<u8> {
    packet(PacketType::Event, id, Some(args), &[])
}

/// The packet a binary message holds, as `(type, data, id)`, binary parts as placeholders.
fn read(frame: &[u8]) -> (u64, Value, Option<u64>, Vec<Bytes>) {
    let d = msgpack::decode(&Bytes::copy_from_slice(frame), 64).expect("MessagePack");
    let Value::Object(m) = d.value else { panic!("not a map: {frame:02x?}") };
    assert_eq!(m["nsp"], "/");
    (
        m["type"].as_u64().unwrap(),
        m.get("data").cloned().unwrap_or(Value::Null),
        m.get("id").and_then(Value::as_u64),
        d.binary,
    )
}

async fn connected(addr: std::net::SocketAddr) -> Ws {
    let (mut ws, _) = Ws::open(addr).await;
    ws.send_binary(&packet(PacketType::Connect, None, None, &[])).await;
    let (kind, data, _, _) = read(&ws.binary().await);
    assert_eq!(kind, 0);
    assert_eq!(data["sid"].as_str().map(str::len), Some(20));
    let (kind, data, _, _) = read(&ws.binary().await);
    assert_eq!((kind, data), (2, json!(["auth", {}])));
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_binary_message_per_packet_encoded_once_for_every_shard() {
    let server = TestServer::demo(config().shards(4).parser(Parser::MsgPack).build().unwrap());
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connected(server.addr).await);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send_binary(&event(Some(i as u64), json!(["join", "room"]))).await;
        assert_eq!(read(&ws.binary().await), (3, json!([true]), Some(i as u64), vec![]));
    }

    // A polling client joins too.
    let (sid, _) = handshake(server.addr).await;
    let connect = packet(PacketType::Connect, None, None, &[]);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    post_ok(server.addr, &sid, &format!("b{}", b64(&connect))).await;
    let got = poll_packets(server.addr, &sid).await;
    assert_eq!(got.len(), 2, "the CONNECT reply and the auth event: {got:?}");
    assert!(got.iter().all(|p| p.starts_with('b')), "{got:?}");
    post_ok(server.addr, &sid, &format!("b{}", b64(&event(Some(1), json!(["join", "room"])))))
        .await;
    let got = poll_packets(server.addr, &sid).await;
    assert_eq!(
        got,
        vec![format!("b{}", b64(&packet(PacketType::Ack, Some(1), Some(json!([true])), &[])))]
    );

    // A broadcast with binary from outside the shards: one encoding, the same bytes for all.
    let before = ENCODINGS.load(Ordering::SeqCst);
    let args = shardcast::Args::new().arg("hello").binary_arg(Bytes::from_static(b"\x00\x01\xff"));
    server.io.to("room").emit("news", args).unwrap();
    assert_eq!(ENCODINGS.load(Ordering::SeqCst), before + 1, "one encoding per broadcast");
    let mut first: Option<Vec<u8>> = None;
    for ws in clients.iter_mut() {
        let frame = ws.binary().await;
        let (kind, data, id, bins) = read(&frame);
        assert_eq!((kind, id), (2, None));
        assert_eq!(data, json!(["news", "hello", {"_placeholder": true, "num": 0}]));
        assert_eq!(bins, vec![Bytes::from_static(b"\x00\x01\xff")]);
        assert_eq!(first.get_or_insert_with(|| frame.clone()), &frame, "the same bytes");
    }
    let polled = poll_packets(server.addr, &sid).await;
    assert_eq!(polled, vec![format!("b{}", b64(first.as_ref().unwrap()))]);

    // A publish from a client, with binary in, the same way round.
    let part = Bytes::from_static(b"\xca\xfe");
    let publish = packet(
        PacketType::Event,
        Some(50),
        Some(json!(["publish", "room", "file", {"_placeholder": true, "num": 0}])),
        std::slice::from_ref(&part),
    );
    clients[0].send_binary(&publish).await;
    for (i, ws) in clients.iter_mut().enumerate() {
        let mut frames = vec![ws.binary().await];
        if i == 0 {
            frames.push(ws.binary().await);
            frames.sort_by_key(|f| read(f).0);
            assert_eq!(read(&frames[1]), (3, json!([true]), Some(50), vec![]));
        }
        assert_eq!(read(&frames[0]).3, vec![part.clone()], "client {i}");
    }

    // A text message (a client with the default parser) closes that connection only; so
    // does a packet that is not MessagePack, or one the reference refuses.
    for bad in [b"not msgpack".to_vec(), packet(PacketType::Event, None, Some(json!([])), &[])] {
        let mut ws = connected(server.addr).await;
        ws.send_binary(&bad).await;
        ws.expect_closed().await;
    }
    let mut ws = connected(server.addr).await;
    ws.send(r#"42["message","x"]"#).await;
    ws.expect_closed().await;
    for ws in clients.iter_mut() {
        ws.send_binary(&event(None, json!(["message", 1]))).await;
        assert_eq!(read(&ws.binary().await).1, json!(["message-back", 1]));
    }
}

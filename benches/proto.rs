//! Protocol-layer benchmarks: `proto/encode_event`, `proto/decode_event` (a chat message),
//! `proto/decode_event_numbers` and `proto/encode_event_numbers` (a game update: floats and
//! large integers).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use shardcast::proto::{eio, sio};

fn encode_event(c: &mut Criterion) {
    let chat = [json!("room-1"), json!({"user": "alice", "text": "hello there", "n": 42})];
    let numbers = [
        json!({"x": 12.345678, "y": -0.000123, "vx": 0.5, "id": 123456789, "t": 1733040000123u64, "hp": [100, 87.5]}),
    ];
    let mut g = c.benchmark_group("proto");
    g.throughput(Throughput::Elements(1));
    for (name, args) in [("encode_event", &chat[..]), ("encode_event_numbers", &numbers[..])] {
        g.bench_function(name, |b| {
            let mut buf = BytesMut::with_capacity(256);
            b.iter(|| {
                buf.clear();
                sio::encode_event(&mut buf, "/", "chat", args, &Default::default(), None, 0);
                std::hint::black_box(&buf);
            })
        });
    }
    g.finish();
}

fn decode_event(c: &mut Criterion) {
    let chat = bytes::Bytes::from_static(
        br#"42["chat","room-1",{"user":"alice","text":"hello there","n":42}]"#,
    );
    let numbers = bytes::Bytes::from_static(
        br#"42["move",{"x":12.345678,"y":-0.000123,"vx":0.5,"id":123456789,"t":1733040000123,"hp":[100,87.5]}]"#,
    );
    let mut g = c.benchmark_group("proto");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [("decode_event", chat), ("decode_event_numbers", numbers)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let eio::Packet::Message(text) =
                    eio::Packet::decode_text(frame.clone()).expect("valid frame")
                else {
                    unreachable!("a message frame")
                };
                std::hint::black_box(
                    sio::Packet::decode(&text, sio::Limits::default()).expect("valid packet"),
                );
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode_event, decode_event);
criterion_main!(benches);

//! Protocol-layer benchmarks: `proto/encode_event`, `proto/decode_event`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use shardcast::proto::{eio, sio};

fn encode_event(c: &mut Criterion) {
    let args = [json!("room-1"), json!({"user": "alice", "text": "hello there", "n": 42})];
    let mut g = c.benchmark_group("proto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_event", |b| {
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            buf.clear();
            sio::encode_event(&mut buf, "/", "chat", &args, &Default::default(), None, 0);
            std::hint::black_box(&buf);
        })
    });
    g.finish();
}

fn decode_event(c: &mut Criterion) {
    let frame = bytes::Bytes::from_static(
        br#"42["chat","room-1",{"user":"alice","text":"hello there","n":42}]"#,
    );
    let mut g = c.benchmark_group("proto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_event", |b| {
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
    g.finish();
}

criterion_group!(benches, encode_event, decode_event);
criterion_main!(benches);

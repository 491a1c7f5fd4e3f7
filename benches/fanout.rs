//! Fan-out benchmarks: `fanout/encode_once_1k`, `fanout/encode_once_10k` (one event encoded
//! once and queued on every member of a room's links, then taken as a polling GET would),
//! `fanout/ws_write_1k` (the same to 1,000 loopback WebSocket links, written with one
//! send each by a flush pass),
//! `rooms/join_leave`, and `mesh/lane_throughput` (messages per second over one lane between
//! two threads).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use shardcast::__bench::{Lane, Shard, WsShard};
use shardcast::{Args, Room};

fn fanout(c: &mut Criterion) {
    let args = Args::new().arg("room-1").arg(json!({"user": "alice", "text": "hello", "n": 42}));
    let mut g = c.benchmark_group("fanout");
    for (name, n) in [("encode_once_1k", 1_000usize), ("encode_once_10k", 10_000)] {
        let mut shard = Shard::with_sockets(n, "r");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let delivered = shard.broadcast("r", "news", &args);
                assert_eq!(delivered, n);
            })
        });
    }
    // The same broadcast to 1,000 real loopback WebSocket links, written by a flush pass.
    let mut ws = WsShard::with_sockets(1_000, "r");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("ws_write_1k", |b| {
        b.iter(|| assert!(ws.broadcast("r", "news", &args) > 0));
    });
    g.finish();
}

fn rooms(c: &mut Criterion) {
    let shard = Shard::with_sockets(1_000, "lobby");
    let rooms: Vec<Room> = (0..100).map(|i| Room::from(format!("room-{i}"))).collect();
    let mut g = c.benchmark_group("rooms");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("join_leave", |b| {
        b.iter(|| {
            shard.join_leave(i, &rooms[i % rooms.len()]);
            i = i.wrapping_add(1);
        })
    });
    g.finish();
}

fn mesh(c: &mut Criterion) {
    let lane = Lane::new();
    let mut g = c.benchmark_group("mesh");
    let n = 100_000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_with_input(BenchmarkId::new("lane_throughput", n), &n, |b, &n| {
        b.iter(|| assert_eq!(lane.transfer(n), n))
    });
    g.finish();
}

criterion_group!(benches, fanout, rooms, mesh);
criterion_main!(benches);

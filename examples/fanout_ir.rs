//! Drives the broadcast hot path for the instruction count (`scripts/instructions`): a shard
//! with 1,000 sockets on real loopback WebSocket links, one room, N broadcasts (each one
//! encoding, queuing on every link, and a flush pass writing every link).
//!
//!     cargo run --release --example fanout_ir -- 100 [--recovery]
//!
//! `--recovery`: with connection state recovery on (each broadcast numbered, carrying its
//! offset, and logged by the shard).

use serde_json::json;
use shardcast::__bench::WsShard;
use shardcast::Args;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let conns = 1_000;
    let recovery = std::env::args().any(|a| a == "--recovery");
    let mut shard = WsShard::with(conns, "r", recovery);
    let args = Args::new().arg("room-1").arg(json!({"user": "alice", "text": "hello", "n": 42}));
    let mut bytes = 0;
    for _ in 0..n {
        bytes += shard.broadcast("r", "news", &args);
    }
    println!("{n} broadcasts to {conns} links, {bytes} bytes received");
}

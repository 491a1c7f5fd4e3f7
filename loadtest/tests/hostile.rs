//! `hostile` against `shardcast serve` (the binary, so a panic or a crash shows as what it
//! is): for a bounded time, attackers throw garbage, oversized and endless headers and
//! bodies, malformed WebSocket frames, mutated packets, deep JSON and connection floods at
//! it while healthy clients receive a stream. Passes when the server never panics, the
//! healthy clients got every acknowledged message in order, a new handshake is answered at
//! once, and its memory and descriptors come back. Seeded (`HOSTILE_SEED`, default 7), so a
//! failure can be replayed; `HOSTILE_SECONDS` (default 8) for longer runs.

mod common;

use std::process::Command;

use common::server::{self, env_or};

#[test]
fn hostile_traffic_leaves_the_healthy_stream_and_the_server_whole() {
    let server = server::start(&["--shards", "2"]);
    let json = std::env::temp_dir().join(format!("hostile-{}.json", std::process::id()));
    let seed = env_or("HOSTILE_SEED", "7");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(["hostile", "--url", &format!("http://127.0.0.1:{}", server.port)])
        .args(["--duration", &env_or("HOSTILE_SECONDS", "8"), "--seed", &seed])
        .args(["--attackers", "16", "--clients", "20", "--rate", "50", "--settle", "7"])
        .args(["--server-pid", &server.pid().to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the harness");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    println!("{report}");
    server.stop_cleanly(&report);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hostile failed (seed {seed}):\n{report}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(r["pass"], true);
    assert_eq!(r["lost"], 0);
    for (kind, n) in r["attacks"].as_object().expect("attacks") {
        assert!(n.as_u64().unwrap_or(0) > 0, "no {kind} attack was made: {report}");
    }
    assert!(r["acked"].as_u64().unwrap_or(0) >= 100, "{report}");
    let _ = std::fs::remove_file(json);
}

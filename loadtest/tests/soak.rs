//! `soak` against `shardcast serve` (the binary), bounded for CI: clients connect over
//! WebSocket and long-polling, join and leave rooms, publish, publish with acks, echo, end
//! cleanly, drop their connections or ask `disconnect-me`, and come back recovered
//! (connection state recovery on, a 3 s window). Passes when every handshake and ack was
//! answered, every dropped client was recovered with its rooms, the server's RSS,
//! descriptors and internal tables (`shardcast_table_entries`) stayed flat after the
//! warm-up, and every table is back to its size before once the clients left and the
//! recovery window passed. `SOAK_SECONDS` (default 60) and `SOAK_SEED` (default 3) change
//! the run; the hour-long soak is run on purpose (docs/reliability.md).

mod common;

use std::process::Command;

use common::server::{self, env_or};

#[test]
fn a_soak_of_churn_leaves_no_table_growing() {
    let server = server::start(&[
        "--shards",
        "2",
        "--recovery",
        "3000",
        "--metrics",
        "127.0.0.1:0",
        "--ping-interval",
        "1000",
        "--ping-timeout",
        "1000",
    ]);
    let metrics = server.metrics_port.expect("the metrics line");
    let json = std::env::temp_dir().join(format!("soak-{}.json", std::process::id()));
    let seed = env_or("SOAK_SEED", "3");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(["soak", "--url", &format!("http://127.0.0.1:{}", server.port)])
        .args(["--duration", &env_or("SOAK_SECONDS", "60"), "--seed", &seed])
        .args(["--clients", "150", "--rooms", "20", "--polling", "0.3", "--recovery"])
        .args(["--metrics", &format!("http://127.0.0.1:{metrics}/metrics")])
        .args(["--server-pid", &server.pid().to_string(), "--settle", "5"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the harness");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    server.stop_cleanly(&stdout);
    assert!(out.status.success(), "soak failed (seed {seed}):\n{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(r["pass"], true);
    // The run did what it says: churn of every kind, recoveries, acks both ways, and the
    // tables were read.
    for ending in ["clean", "dropped", "disconnect-me"] {
        assert!(r["endings"][ending].as_u64().unwrap_or(0) >= 20, "few {ending}: {stdout}");
    }
    assert!(r["polling_sessions"].as_u64().unwrap_or(0) >= 20, "{stdout}");
    assert!(r["recovered"].as_u64().unwrap_or(0) >= 20, "{stdout}");
    assert_eq!(r["recovered"], r["recovery_tried"]);
    assert!(r["acks_received"].as_u64().unwrap_or(0) >= 1000, "{stdout}");
    assert!(r["acks_sent"].as_u64().unwrap_or(0) >= 100, "{stdout}");
    let tables = r["tables_after"].as_object().expect("tables");
    for name in ["transport_sessions", "sockets", "rooms", "socket_acks", "recovery_sessions"] {
        assert_eq!(tables.get(name).and_then(|v| v.as_u64()), Some(0), "{name}: {stdout}");
    }
    let peak = |name: &str| {
        r["samples"]
            .as_array()
            .map_or(0, |s| s.iter().filter_map(|x| x["tables"][name].as_u64()).max().unwrap_or(0))
    };
    assert!(peak("sockets") >= 100, "{stdout}");
    assert!(peak("recovery_log") > 0, "{stdout}");
    let _ = std::fs::remove_file(json);
}

//! `hostile` against `shardcast serve` (the binary, so a panic or a crash shows as what it
//! is): for a bounded time, attackers throw garbage, oversized and endless headers and
//! bodies, malformed WebSocket frames, mutated packets, deep JSON and connection floods at
//! it while healthy clients receive a stream. Passes when the server never panics, the
//! healthy clients got every acknowledged message in order, a new handshake is answered at
//! once, and its memory and descriptors come back. Seeded (`HOSTILE_SEED`, default 7), so a
//! failure can be replayed; `HOSTILE_SECONDS` (default 8) for longer runs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `shardcast` binary of this build (built when this test runs alone).
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/hostile-... → target/<profile>/shardcast
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let bin = dir.join("shardcast");
    if !bin.exists() {
        let release = dir.ends_with("release");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "shardcast", "--bin", "shardcast"]);
        if release {
            cargo.arg("--release");
        }
        assert!(cargo.status().expect("cargo").success(), "cannot build the shardcast binary");
    }
    bin
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn hostile_traffic_leaves_the_healthy_stream_and_the_server_whole() {
    let mut server = Command::new(server_binary())
        .args(["serve", "--port", "0", "--shards", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardcast");
    let mut stdout = server.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "no listening line");
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    let json = std::env::temp_dir().join(format!("hostile-{}.json", std::process::id()));
    let seed = env_or("HOSTILE_SEED", "7");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(["hostile", "--url", &format!("http://127.0.0.1:{port}")])
        .args(["--duration", &env_or("HOSTILE_SECONDS", "8"), "--seed", &seed])
        .args(["--attackers", "16", "--clients", "20", "--rate", "50", "--settle", "7"])
        .args(["--server-pid", &server.id().to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the harness");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    println!("{report}");
    // The server is still there, then stops cleanly; its stderr has no panic.
    assert!(server.try_wait().unwrap().is_none(), "the server died:\n{report}");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let mut waited = 0;
    let status = loop {
        if let Some(st) = server.try_wait().unwrap() {
            break st;
        }
        assert!(waited < 200, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    };
    let mut err = String::new();
    server.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!err.contains("panicked"), "the server panicked:\n{err}");
    assert!(status.success(), "exit {status}:\n{err}");
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

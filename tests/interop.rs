//! The interop suite: the official `socket.io-client` (npm, lockfile in tests/interop/)
//! against `shardcast serve`, over websocket-only, polling-only and polling-then-upgrade.
//!
//! This test installs the suite's npm dependencies when they are missing (`npm ci`), then
//! runs `node --test` in tests/interop with `SERVER_CMD` pointing at the binary built by
//! cargo. It fails when Node.js is missing: the interop suite is part of the test command.

use std::process::Command;

#[path = "common/process.rs"]
mod process;

#[test]
fn official_js_client_against_shardcast_serve() {
    let dir = process::interop_dir();
    let server_cmd = serde_json::json!([env!("CARGO_BIN_EXE_shardcast"), "serve"]).to_string();
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&dir)
        .env("SERVER_CMD", &server_cmd)
        .output()
        .expect("node is needed for the interop suite (Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and on failure.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "interop suite failed against {server_cmd}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("pass"), "interop suite ran no test:\n{stdout}");
}

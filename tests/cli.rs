//! `shardcast serve` as a process: flags, the `listening on` line, signals, one-line errors,
//! and surviving the open-file limit without a busy accept loop.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

#[path = "common/process.rs"]
mod process;
use process::{handshake, signal, start, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--shards",
        "--ping-interval",
        "--ping-timeout",
        "--max-payload",
        "--write-coalesce",
        "--write-coalesce-max",
        "--max-json-depth",
        "--redis",
        "--redis-key",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_flags_give_one_line_and_non_zero_exit() {
    for args in [
        &["serve", "--bogus"][..],
        &["serve", "--port", "http"],
        &["serve", "--shards", "0"],
        &["serve", "--max-json-depth", "1"],
    ] {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with("shardcast: "), "{err:?}");
    }
}

#[test]
fn unreachable_redis_gives_one_line_and_non_zero_exit() {
    let free = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let url = format!("redis://127.0.0.1:{port}");
    let out =
        Command::new(BIN).args(["serve", "--port", "0", "--redis", &url]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.starts_with("shardcast: cannot reach Redis at redis://127.0.0.1:"), "{err:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

#[test]
fn port_in_use_gives_one_line_and_non_zero_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(BIN).args(["serve", "--port", &port.to_string()]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("cannot listen"), "{err:?}");
}

#[test]
fn serves_then_exits_cleanly_on_sigterm_and_sigint() {
    for sig in ["-TERM", "-INT"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--shards", "2"]);
        let (mut child, port) = start(cmd);
        let resp = handshake(port);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(r#""upgrades":["websocket"]"#), "{resp}");
        signal(&child, sig);
        let st = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "exit status after {sig}");
    }
}

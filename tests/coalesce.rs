//! Adaptive write coalescing, seen from a client: a connection not written to for a while
//! gets its next frame at once; a connection written to less than `write_coalesce` ago gets
//! its next frames together when the window ends, in order. Through the library's `Config`
//! and through `shardcast serve --write-coalesce/--write-coalesce-max`.
//!
//! The window here is 400 ms so that the assertions have wide margins on a loaded machine:
//! "held" means at least 300 ms later, "at once" within 300 ms.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[path = "common/process.rs"]
mod process;

const WINDOW: Duration = Duration::from_millis(400);
const HELD: Duration = Duration::from_millis(300);
const AT_ONCE: Duration = Duration::from_millis(300);

/// Echoes through the demo app's `message` → `message-back` on one connection: the first
/// after a quiet period comes back at once, the two sent right after it are held until the
/// window since the first write ends, and arrive in order.
async fn check_coalescing(addr: SocketAddr) {
    let (mut ws, _id) = Ws::connected(addr).await;
    // Quiet for longer than the window since the connect and `auth` packets were written.
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;

    let sent = Instant::now();
    ws.send(r#"42["message","a"]"#).await;
    ws.expect(r#"42["message-back","a"]"#).await;
    let first = Instant::now();
    assert!(first - sent < AT_ONCE, "an idle connection is written at once ({:?})", first - sent);

    ws.send(r#"42["message","b"]"#).await;
    ws.send(r#"42["message","c"]"#).await;
    ws.expect(r#"42["message-back","b"]"#).await;
    let second = Instant::now();
    ws.expect(r#"42["message-back","c"]"#).await;
    assert!(
        second - first >= HELD,
        "a connection written {:?} ago waits for its window ({WINDOW:?})",
        second - first
    );
}

#[tokio::test]
async fn config_window_holds_a_busy_connection_and_not_an_idle_one() {
    let cfg = config().write_coalesce(WINDOW).write_coalesce_max(WINDOW).build().unwrap();
    let server = TestServer::demo(cfg);
    check_coalescing(server.addr).await;
}

#[tokio::test]
async fn serve_flags_set_the_window() {
    let ms = WINDOW.as_millis().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args(["serve", "--port", "0", "--shards", "1", "--write-coalesce", &ms]);
    cmd.args(["--write-coalesce-max", &ms]);
    let (mut child, port) = process::start(cmd);
    check_coalescing(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn zero_window_writes_every_turn() {
    // With no window, frames sent one after another come back one after another, none held.
    let cfg = config().write_coalesce(Duration::ZERO).write_coalesce_max(Duration::ZERO);
    let server = TestServer::demo(cfg.build().unwrap());
    let (mut ws, _id) = Ws::connected(server.addr).await;
    let start = Instant::now();
    for i in 0..5 {
        ws.send(&format!(r#"42["message",{i}]"#)).await;
        ws.expect(&format!(r#"42["message-back",{i}]"#)).await;
    }
    assert!(start.elapsed() < HELD, "five round trips took {:?}", start.elapsed());
}

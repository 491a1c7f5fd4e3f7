//! The write policy, seen from clients: by default what a loop turn queued goes out at the
//! end of that turn (nothing is held); with a window (`write_coalesce`), a connection
//! written to less than that long ago gets its next broadcasts together when the window
//! ends, in order; and whatever the window, what answers a client that just sent something
//! (its acks, its replies) is written at once, together with what was waiting for it, in
//! order. Through the library's `Config` and through `shardcast serve --write-coalesce`.
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

/// A member `m` of room `r` and a publisher `p` (the demo app's `publish` with acks).
async fn member_and_publisher(addr: SocketAddr) -> (Ws, Ws) {
    let (mut m, _) = Ws::connected(addr).await;
    m.send(r#"421["join","r"]"#).await;
    m.expect("431[true]").await;
    let (p, _) = Ws::connected(addr).await;
    (m, p)
}

async fn publish(p: &mut Ws, id: u32, text: &str) {
    p.send(&format!(r#"42{id}["publish","r","m","{text}"]"#)).await;
}

/// With a window: an idle member gets a broadcast at once, a busy one its next broadcasts
/// when the window since its last write ends, in order; the publisher's acks come at once
/// although it was written to just before; and a member that sends something gets the
/// answer at once, after what was held for it.
async fn check_window(addr: SocketAddr) {
    let (mut m, mut p) = member_and_publisher(addr).await;
    // Quiet for longer than the window since the connects and acks were written.
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;

    let sent = Instant::now();
    publish(&mut p, 1, "a").await;
    p.expect("431[true]").await;
    m.expect(r#"42["m","a"]"#).await;
    let first = Instant::now();
    assert!(first - sent < AT_ONCE, "an idle connection is written at once ({:?})", first - sent);

    let acks = Instant::now();
    publish(&mut p, 2, "b").await;
    p.expect("432[true]").await;
    publish(&mut p, 3, "c").await;
    p.expect("433[true]").await;
    assert!(acks.elapsed() < AT_ONCE, "acks are never held ({:?})", acks.elapsed());
    m.expect(r#"42["m","b"]"#).await;
    let second = Instant::now();
    m.expect(r#"42["m","c"]"#).await;
    assert!(
        second - first >= HELD,
        "a connection written {:?} ago waits for its window ({WINDOW:?})",
        second - first
    );

    // Held for the member again (it was just written to); then it sends: the answer comes
    // at once, after the held broadcast.
    publish(&mut p, 4, "d").await;
    p.expect("434[true]").await;
    let asked = Instant::now();
    m.send(r#"42["message","x"]"#).await;
    m.expect(r#"42["m","d"]"#).await;
    m.expect(r#"42["message-back","x"]"#).await;
    assert!(asked.elapsed() < AT_ONCE, "a reply is never held ({:?})", asked.elapsed());
}

#[tokio::test]
async fn a_window_holds_broadcasts_to_a_busy_connection_never_replies() {
    let cfg = config().write_coalesce(WINDOW).write_coalesce_max(WINDOW).build().unwrap();
    let server = TestServer::demo(cfg);
    check_window(server.addr).await;
}

#[tokio::test]
async fn serve_flags_set_the_window() {
    let ms = WINDOW.as_millis().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args(["serve", "--port", "0", "--shards", "1", "--write-coalesce", &ms]);
    cmd.args(["--write-coalesce-max", &ms]);
    let (mut child, port) = process::start(cmd);
    check_window(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn by_default_nothing_is_held() {
    // The default policy: round trips back to back, and broadcasts to a connection written
    // to a moment ago, all at once, in order.
    let server = TestServer::demo(config().build().unwrap());
    let (mut m, mut p) = member_and_publisher(server.addr).await;
    let start = Instant::now();
    for i in 0..5 {
        m.send(&format!(r#"42["message",{i}]"#)).await;
        m.expect(&format!(r#"42["message-back",{i}]"#)).await;
    }
    for (i, t) in ["a", "b", "c"].iter().enumerate() {
        publish(&mut p, i as u32 + 1, t).await;
    }
    for t in ["a", "b", "c"] {
        m.expect(&format!(r#"42["m","{t}"]"#)).await;
    }
    assert!(start.elapsed() < HELD, "nothing held: {:?}", start.elapsed());
}

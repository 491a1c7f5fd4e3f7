//! The write policy, seen from clients: by default what a loop turn queued goes out at the
//! end of that turn (nothing is held); with a window (`write_coalesce`), a connection
//! written to less than that long ago gets its next broadcasts together when the window
//! ends, in order; and whatever the window, what answers a client that just sent something
//! (its acks, its replies) is written at once, together with what was waiting for it, in
//! order. Through the library's `Config` and through `shardcast serve --write-coalesce`.
//! Counted in TCP segments at the client (`TCP_INFO`): the answers to what one read
//! brought leave in one write, and under saturation broadcasts share segments, in order.
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

/// Data-carrying TCP segments this client socket has received so far (`TCP_INFO`).
fn data_segments_in(ws: &Ws) -> u32 {
    use std::os::fd::AsRawFd;
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.inner.get_ref() else {
        panic!("a plain TCP client")
    };
    // SAFETY: a zeroed tcp_info is a valid value; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_in
}

#[tokio::test]
async fn replies_to_what_one_read_brought_go_out_in_one_write() {
    // Ten events in one TCP segment are read in one go; their ten answers (replies and
    // acks, interleaved) are written at the end of that loop turn, in order, in one write:
    // the client's socket receives them as one data segment.
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::demo(config().build().unwrap());
    let (mut c, _) = Ws::connected(server.addr).await;
    // Quiet first: nothing else in flight.
    assert!(c.next_within(Duration::from_millis(200)).await.is_none());
    for round in 0..3 {
        let before = data_segments_in(&c);
        for i in 0..10 {
            let t = if i % 2 == 0 {
                format!(r#"42["message",{round},{i}]"#)
            } else {
                format!(r#"42{i}["message-with-ack",{round},{i}]"#)
            };
            c.inner.feed(Message::text(t)).await.unwrap();
        }
        c.inner.flush().await.unwrap();
        for i in 0..10 {
            if i % 2 == 0 {
                c.expect(&format!(r#"42["message-back",{round},{i}]"#)).await;
            } else {
                c.expect(&format!(r#"43{i}[{round},{i}]"#)).await;
            }
        }
        let segs = data_segments_in(&c) - before;
        assert_eq!(segs, 1, "round {round}: ten answers came in {segs} segments");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_saturation_writes_coalesce_and_stay_in_order() {
    // One shard kept busy by a publisher that never waits and 200 members: a member sees
    // several broadcasts per TCP segment (the shard writes what several turns, or a window,
    // gathered in one write), every one of them, in the order they were published.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let cfg = config().shards(1).build().unwrap();
    let server = TestServer::demo(cfg);
    let addr = server.addr;
    let mut drains = Vec::new();
    for _ in 0..200 {
        let (mut m, _) = Ws::connected(addr).await;
        m.send(r#"420["join","r"]"#).await;
        m.expect("430[true]").await;
        drains.push(tokio::spawn(async move {
            while let Some(Ok(f)) = m.inner.next().await {
                if matches!(f, Message::Close(_)) {
                    break;
                }
            }
        }));
    }
    let (mut watcher, _) = Ws::connected(addr).await;
    watcher.send(r#"420["join","r"]"#).await;
    watcher.expect("430[true]").await;
    const N: usize = 4000;
    let (mut p, _) = Ws::connected(addr).await;
    let publisher = tokio::spawn(async move {
        let pad = "x".repeat(100);
        for k in 0..N {
            let t = format!(r#"42["publish","r","m",{k},"{pad}"]"#);
            p.inner.feed(Message::text(t)).await.unwrap();
            if k % 50 == 49 {
                p.inner.flush().await.unwrap();
            }
        }
        p.inner.flush().await.unwrap();
        p
    });
    let before = data_segments_in(&watcher);
    let pad = "x".repeat(100);
    for k in 0..N {
        watcher.expect(&format!(r#"42["m",{k},"{pad}"]"#)).await;
    }
    let segs = data_segments_in(&watcher) - before;
    let _p = publisher.await.unwrap();
    let per_segment = N as f64 / f64::from(segs.max(1));
    assert!(
        per_segment >= 2.0,
        "{N} broadcasts in {segs} segments ({per_segment:.2} per segment): no coalescing"
    );
    for d in drains {
        d.abort();
    }
}

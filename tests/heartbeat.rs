//! Heartbeat (server PING every `ping_interval`, client PONG within `ping_timeout`) and
//! `connect_timeout`, over WebSocket and long-polling.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardcast::DisconnectReason;

const INTERVAL: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_millis(200);

fn heartbeat_config() -> shardcast::Config {
    config().ping_interval(INTERVAL).ping_timeout(TIMEOUT).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_every_interval_and_pongs_keep_the_session() {
    let (server, mut probe) = TestServer::probe(heartbeat_config());
    let started = Instant::now();
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.auto_pong = false;

    let mut last = started;
    for round in 0..4 {
        ws.expect("2").await;
        let now = Instant::now();
        // A PING never comes before its interval has passed.
        assert!(
            now - last >= INTERVAL - Duration::from_millis(50),
            "round {round}: ping after {:?}",
            now - last
        );
        last = now;
        ws.send("3").await;
    }
    // Four rounds took well over ping_interval + ping_timeout: the PONGs kept it alive.
    assert!(started.elapsed() > INTERVAL + TIMEOUT);
    ws.roundtrip("/").await;
    if let Some(g) = probe.try_gone() {
        panic!("{id} should be connected, got {g:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_without_pong_is_closed_with_ping_timeout() {
    let (server, mut probe) = TestServer::probe(heartbeat_config());
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.auto_pong = false;
    ws.expect("2").await;
    let pinged = Instant::now();
    let before = ws.expect_closed().await;
    assert!(before.is_empty(), "{before:?}");
    assert!(
        pinged.elapsed() >= TIMEOUT - Duration::from_millis(50),
        "closed {:?} after the ping",
        pinged.elapsed()
    );
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::PingTimeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_traffic_is_no_substitute_for_pong() {
    let (server, mut probe) = TestServer::probe(heartbeat_config());
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.auto_pong = false;
    ws.expect("2").await;
    // Keep sending messages, never a PONG: the session still times out.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "session not closed");
        ws.send(r#"42["message","busy"]"#).await;
        match ws.next_within(Duration::from_millis(50)).await {
            Some(Frame::Closed) => break,
            Some(Frame::Text(t)) => assert!(t == r#"42["message-back","busy"]"# || t == "2", "{t}"),
            Some(other) => panic!("{other:?}"),
            None => {}
        }
    }
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::PingTimeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_pings_and_pongs() {
    let (server, mut probe) = TestServer::probe(heartbeat_config());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;

    for _ in 0..3 {
        // The pending GET is answered with the PING.
        assert_eq!(poll_packets(addr, &sid).await, vec!["2".to_owned()]);
        post_ok(addr, &sid, "3").await;
    }
    post_ok(addr, &sid, r#"42["message","alive"]"#).await;
    let packets = poll_packets(addr, &sid).await;
    assert!(packets.contains(&r#"42["message-back","alive"]"#.to_owned()), "{packets:?}");
    if let Some(g) = probe.try_gone() {
        panic!("{id} should be connected, got {g:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_without_pong_is_closed_with_ping_timeout() {
    let (server, mut probe) = TestServer::probe(heartbeat_config());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    assert_eq!(poll_packets(addr, &sid).await, vec!["2".to_owned()]);
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::PingTimeout);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_queued_for_polling_goes_over_the_websocket_after_upgrade() {
    // A generous timeout: the PING is queued while nobody polls, and must be answered
    // over the WebSocket once the upgrade is done.
    let cfg = config()
        .ping_interval(INTERVAL)
        .ping_timeout(Duration::from_millis(1_500))
        .build()
        .unwrap();
    let (server, mut probe) = TestServer::probe(cfg);
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    let mut ws = Ws::connect_url(
        &format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    .unwrap();
    ws.auto_pong = false;
    ws.send("2probe").await;
    ws.expect("3probe").await;
    ws.send("5").await;
    ws.expect("2").await;
    ws.send("3").await;
    // The heartbeat goes on over the WebSocket.
    ws.expect("2").await;
    ws.send("3").await;
    ws.auto_pong = true;
    ws.roundtrip("/").await;
    if let Some(g) = probe.try_gone() {
        panic!("{id} should be connected, got {g:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_closes_a_client_that_joins_no_namespace() {
    let cfg = config().connect_timeout(Duration::from_millis(300)).build().unwrap();
    let server = TestServer::demo(cfg);
    let started = Instant::now();
    let (mut idle, _) = Ws::open(server.addr).await;
    let (mut refused, _) = Ws::open(server.addr).await;
    let (mut joined, _) = Ws::connected(server.addr).await;

    // A CONNECT refused (unknown namespace) does not count as joining.
    refused.send("40/nope,").await;
    refused.expect(r#"44/nope,{"message":"Invalid namespace"}"#).await;

    assert!(idle.expect_closed().await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        started.elapsed()
    );
    refused.expect_closed().await;

    // The client that joined in time is kept past the timeout.
    tokio::time::sleep(Duration::from_millis(400)).await;
    joined.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_over_polling() {
    let cfg = config().connect_timeout(Duration::from_millis(300)).build().unwrap();
    let server = TestServer::demo(cfg);
    let (sid, _) = handshake(server.addr).await;
    // The waiting GET is answered with CLOSE when the timeout fires.
    let packets = poll_packets(server.addr, &sid).await;
    assert_eq!(packets, vec!["1".to_owned()]);
    assert_session_gone(server.addr, &sid).await;
}

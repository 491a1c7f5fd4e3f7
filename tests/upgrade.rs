//! The polling → WebSocket upgrade: probe, release of the pending poll, UPGRADE, then
//! traffic over WebSocket only; refusals afterwards; upgrades across shards; aborted and
//! timed-out upgrades.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use shardcast::proto::sid::Sid;
use tokio_tungstenite::tungstenite;

/// Opens the probe WebSocket of session `sid`.
async fn probe_socket(addr: SocketAddr, sid: &str) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    Ws::connect_url(&url, &[]).await.expect("upgrade handshake")
}

/// Upgrades polling session `sid`: a pending GET is released with `6` by the probe, then
/// `5` completes the upgrade.
async fn upgrade(addr: SocketAddr, sid: &str) -> Ws {
    let sid2 = sid.to_owned();
    let pending = tokio::spawn(async move { poll(addr, &sid2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = probe_socket(addr, sid).await;
    ws.send("2probe").await;
    ws.expect("3probe").await;
    let released =
        tokio::time::timeout(WAIT, pending).await.expect("pending GET released").unwrap();
    assert_eq!((released.status, released.text().as_str()), (200, "6"), "{released:?}");
    ws.send("5").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_moves_the_session_to_websocket() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;
    let mut ws = upgrade(addr, &sid).await;

    // Traffic now goes over the WebSocket, both ways, binary included.
    ws.roundtrip("/").await;
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[9, 8, 7]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![9, 8, 7]);

    // Polling on the upgraded session is a bad request.
    assert_eio_error(&poll(addr, &sid).await, 3, "Bad request");
    assert_eio_error(&post(addr, &sid, r#"42["message","x"]"#).await, 3, "Bad request");

    // So is a second WebSocket for the same session: 400, not 101.
    let headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    assert_eio_error(&request(addr, "GET", &target, &headers, b"").await, 3, "Bad request");
    match Ws::connect_url(&format!("ws://{addr}{target}"), &[]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second websocket accepted"),
    }

    // None of this disturbed the upgraded session.
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_probe_while_upgrading_is_refused() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;
    let mut first = probe_socket(addr, &sid).await;
    match Ws::connect_url(
        &format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second probe accepted"),
    }
    first.send("2probe").await;
    first.expect("3probe").await;
    first.send("5").await;
    first.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_emitted_during_the_upgrade_are_not_lost() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;
    let socket = probe.socket().await;

    let mut ws = probe_socket(addr, &sid).await;
    ws.send("2probe").await;
    ws.expect("3probe").await;
    // Paused: polls are released at once with a NOOP, nothing else goes over polling.
    assert_eq!(poll_packets(addr, &sid).await, vec!["6".to_owned()]);
    socket.emit("during", (1,)).unwrap();
    socket.emit("during", (2,)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(poll_packets(addr, &sid).await, vec!["6".to_owned()]);
    ws.send("5").await;
    ws.expect(r#"42["during",1]"#).await;
    ws.expect(r#"42["during",2]"#).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_work_across_shards() {
    let server = TestServer::demo(config().shards(4).build().unwrap());
    let addr = server.addr;
    let mut shards = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        // Connections are dealt round-robin to the shards and each request below uses a new
        // one, so the WebSocket usually lands on another shard than the session's.
        let (sid, _) = polling_session(addr).await;
        shards.insert(Sid::parse(&sid).expect("sid").shard());
        let mut ws = upgrade(addr, &sid).await;
        ws.roundtrip("/").await;
        assert_eio_error(&poll(addr, &sid).await, 3, "Bad request");
        clients.push(ws);
    }
    assert!(shards.len() > 1, "sessions all landed on one shard: {shards:?}");
    for ws in &mut clients {
        ws.roundtrip("/").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_timeout_drops_the_probe_and_polling_goes_on() {
    let cfg = config().upgrade_timeout(Duration::from_millis(300)).build().unwrap();
    let server = TestServer::demo(cfg);
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;

    let mut stalled = probe_socket(addr, &sid).await;
    stalled.expect_closed().await;

    // Still a polling session.
    post_ok(addr, &sid, r#"42["message","still polling"]"#).await;
    assert_eq!(
        poll_packets(addr, &sid).await,
        vec![r#"42["message-back","still polling"]"#.to_owned()]
    );

    // And it can still be upgraded.
    let mut ws = upgrade(addr, &sid).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_probe_aborts_the_upgrade_only() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;

    for first_packet in [r#"42["message","x"]"#, "2notaprobe", "5"] {
        let mut ws = probe_socket(addr, &sid).await;
        ws.send(first_packet).await;
        ws.expect_closed().await;
        // Wait until the session accepts upgrades again (the abort is asynchronous), which
        // also shows it is alive.
        post_ok(addr, &sid, r#"42["message","p"]"#).await;
        assert_eq!(poll_packets(addr, &sid).await, vec![r#"42["message-back","p"]"#.to_owned()]);
    }
    let mut ws = upgrade(addr, &sid).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refused_when_upgrades_are_off() {
    let server = TestServer::demo(config().allow_upgrades(false).build().unwrap());
    let addr = server.addr;
    let (sid, open) = handshake(addr).await;
    assert_eq!(open["upgrades"], json!([]));
    match Ws::connect_url(
        &format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade accepted although upgrades are off"),
    }
    // A direct WebSocket session is still allowed.
    let (mut ws, _) = Ws::connected(addr).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_closing_during_the_upgrade_closes_the_probe() {
    let cfg = config()
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (server, mut probe) = TestServer::probe(cfg);
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    let mut ws = probe_socket(addr, &sid).await;
    ws.auto_pong = false;
    ws.send("2probe").await;
    ws.expect("3probe").await;
    // Never completes the upgrade nor answers the PING: the session times out, and the
    // probe WebSocket goes with it.
    ws.expect_closed().await;
    assert_eq!(probe.reason_of(&id).await, shardcast::DisconnectReason::PingTimeout);
    assert_session_gone(addr, &sid).await;
}

/// `socket.conn()` follows the connection: polling, then WebSocket and upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_conn_tells_the_transport_and_the_upgrade() {
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.on_connection(|socket| {
            socket.on("conn", |s, _args, ack| {
                let c = s.conn();
                if let Some(ack) = ack {
                    let _ = ack.send((serde_json::json!({
                        "id": c.id,
                        "transport": c.transport,
                        "upgraded": c.upgraded,
                        "ip": c.remote_address.ip().to_string(),
                        "secure": c.secure,
                    }),));
                }
            });
        });
    });
    let addr = server.addr;
    let (sid, _) = handshake(addr).await;
    post_ok(addr, &sid, "40").await;
    assert!(poll_packets(addr, &sid).await[0].starts_with("40{"));
    post_ok(addr, &sid, r#"421["conn"]"#).await;
    let want = |transport: &str, upgraded: bool| {
        format!(
            r#"431[{{"id":"{sid}","transport":"{transport}","upgraded":{upgraded},"ip":"127.0.0.1","secure":false}}]"#
        )
    };
    assert_eq!(poll_packets(addr, &sid).await, vec![want("polling", false)]);
    let mut ws = upgrade(addr, &sid).await;
    ws.send(r#"422["conn"]"#).await;
    ws.expect(&want("websocket", true).replace("431[", "432[")).await;

    let (mut direct, _) = Ws::open(addr).await;
    direct.sio_connect("/", None).await;
    direct.send(r#"421["conn"]"#).await;
    let answer = direct.text().await;
    assert!(answer.contains(r#""transport":"websocket","upgraded":false"#), "{answer}");
}

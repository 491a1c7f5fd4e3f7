//! Engine.IO directly over WebSocket: the open packet, ends of the connection from the
//! client side, handshake refusals and `max_connections`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use shardcast::DisconnectReason;
use tokio_tungstenite::tungstenite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_packet_is_the_first_frame_and_offers_no_upgrade() {
    let cfg = config()
        .ping_interval(Duration::from_millis(4_000))
        .ping_timeout(Duration::from_millis(3_000))
        .max_payload(77_777)
        .build()
        .unwrap();
    let server = TestServer::demo(cfg);
    let (mut ws, open) = Ws::open(server.addr).await;
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 20);
    assert_eq!(
        open,
        json!({"sid": sid, "upgrades": [], "pingInterval": 4000, "pingTimeout": 3000, "maxPayload": 77777})
    );
    let id = ws.sio_connect("/", None).await;
    assert_ne!(id, sid, "the socket id is not the engine session id");
    ws.expect(r#"42["auth",{}]"#).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_and_client_ping_are_harmless() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send("6").await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_frame_is_transport_close() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.inner.close(None).await.unwrap();
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportClose);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_close_packet_is_transport_close() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.send("1").await;
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportClose);
    ws.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tcp_connection_is_transport_close() {
    // The reference (`ws` emits "close" with code 1006) reports "transport close".
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (ws, id) = Ws::connected(server.addr).await;
    drop(ws);
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportClose);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_handshakes_are_refused() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let target = "/socket.io/?EIO=4&transport=websocket";
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    // Unsupported WebSocket version.
    let mut headers = upgrade.to_vec();
    headers.push(("Sec-WebSocket-Version", "8"));
    assert_eio_error(&request(addr, "GET", target, &headers, b"").await, 3, "Bad request");

    // Missing key.
    let headers =
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")];
    assert_eio_error(&request(addr, "GET", target, &headers, b"").await, 3, "Bad request");

    // Upgrade headers on a polling request.
    let mut headers = upgrade.to_vec();
    headers.push(("Sec-WebSocket-Version", "13"));
    let resp = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", &headers, b"").await;
    assert_eio_error(&resp, 3, "Bad request");

    // A sid that does not exist.
    let resp =
        request(addr, "GET", &format!("{target}&sid=AAAAAAAAAAAAAAAAAAAA"), &headers, b"").await;
    assert_eio_error(&resp, 1, "Session ID unknown");
    match Ws::connect_url(&server.ws_url("&sid=AAAAAAAAAAAAAAAAAAAA"), &[]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade of an unknown session accepted"),
    }

    // EIO=3 over WebSocket.
    match Ws::connect_url(&format!("ws://{addr}/socket.io/?EIO=3&transport=websocket"), &[]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("EIO=3 accepted"),
    }

    // The server still serves.
    let (mut ws, _) = Ws::connected(addr).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_disabled_is_transport_unknown() {
    let server = TestServer::demo(config().websocket(false).build().unwrap());
    match Ws::connect_url(&server.ws_url(""), &[]).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body, json!({"code": 0, "message": "Transport unknown"}));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("websocket accepted although disabled"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_extra_connections() {
    let server = TestServer::demo(config().max_connections(2).build().unwrap());
    let (mut a, _) = Ws::connected(server.addr).await;
    let (b, _) = Ws::connected(server.addr).await;
    assert!(
        Ws::connect_url(&server.ws_url(""), &[]).await.is_err(),
        "a third connection must be refused"
    );

    // Freeing a slot lets a new client in.
    drop(b);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut c = loop {
        if let Ok(ws) = Ws::connect_url(&server.ws_url(""), &[]).await {
            break ws;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(c.text().await.starts_with("0{"));
    a.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_socket_leaves_when_the_connection_closes() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;
    ws.inner.close(None).await.unwrap();
    assert_eq!(probe.reason_of(&root).await, DisconnectReason::TransportClose);
    assert_eq!(probe.reason_of(&custom).await, DisconnectReason::TransportClose);
}

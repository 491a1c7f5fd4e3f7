//! The engine mounted on an axum server (`Server::start` + `Server::service`): a REST route
//! and `/socket.io/` share one port; polling sessions, direct WebSockets and upgrades work
//! through it; a broadcast from the server reaches them (they live on its shards); the
//! handshake sees the client's address from `RemoteAddr`. (The official client runs the
//! interop suite against examples/axum.rs the same way: docs/operations.md.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::routing::get;
use axum::{middleware, Router};
use common::*;
use shardcast::{RemoteAddr, Server};

async fn mount(io: &Server) -> SocketAddr {
    async fn remote(ConnectInfo(addr): ConnectInfo<SocketAddr>, mut req: Request) -> Request {
        req.extensions_mut().insert(RemoteAddr(addr));
        req
    }
    let app = Router::new()
        .route("/api/ping", get(|| async { "pong" }))
        .route_service("/socket.io/", io.service())
        .layer(middleware::map_request(remote));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ =
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_socket_io_share_one_port() {
    let io = Server::new(config().shards(2).build().unwrap());
    shardcast::app::install(&io);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    io.engine().allow_request(move |req| {
        s.lock().unwrap().push(req.address.ip().to_string());
        async { Ok(()) }
    });
    let addr = mount(&io).await;

    // Before the shards run: 503, and REST is served.
    assert_eq!(
        request(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await.status,
        503
    );
    let running = io.start().unwrap();
    let rest = request(addr, "GET", "/api/ping", &[], b"").await;
    assert_eq!((rest.status, rest.text().as_str()), (200, "pong"));

    // Long-polling.
    let (sid, _) = polling_session(addr).await;
    post_ok(addr, &sid, r#"42["message","over polling"]"#).await;
    assert_eq!(poll_packets(addr, &sid).await, vec![r#"42["message-back","over polling"]"#]);

    // WebSockets, direct: several, dealt over the shards.
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let (mut ws, wid) = Ws::connected(addr).await;
        ws.roundtrip("/").await;
        sockets.push((ws, wid));
    }
    let shards: std::collections::HashSet<u8> = sockets
        .iter()
        .map(|(_, i)| shardcast::proto::sid::Sid::parse(i).unwrap().shard())
        .collect();
    assert_eq!(shards.len(), 2, "handshakes are dealt over the shards");

    // An upgrade from polling.
    let sid2 = sid.clone();
    let pending = tokio::spawn(async move { poll(addr, &sid2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let mut up = Ws::connect_url(&url, &[]).await.unwrap();
    up.send("2probe").await;
    up.expect("3probe").await;
    assert_eq!(pending.await.unwrap().text(), "6");
    up.send("5").await;
    up.roundtrip("/").await;

    // A broadcast from the server reaches all of them.
    io.emit("news", ("all",)).unwrap();
    for (ws, _) in sockets.iter_mut() {
        ws.expect(r#"42["news","all"]"#).await;
    }
    up.expect(r#"42["news","all"]"#).await;
    assert!(seen.lock().unwrap().iter().all(|ip| ip == "127.0.0.1"), "{seen:?}");
    assert_eq!(seen.lock().unwrap().len(), 5, "one handshake each");
    running.shutdown();
}

//! shardcast mounted on an axum server: a REST API and the Socket.IO endpoint on one port.
//!
//!     cargo run --release --example axum -- [--port 3000]
//!
//! `GET /api/stats` answers JSON from the REST side; `/socket.io/` is the engine, running
//! the demo app (docs/demo-app.md), so any Socket.IO client connects to the same port.
//! Each Socket.IO request is served on a shard, and a WebSocket moves to its shard once
//! upgraded: axum only routes. Prints `listening on HOST:PORT` once it accepts connections.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::routing::get;
use axum::{middleware, Json, Router};
use shardcast::{Config, RemoteAddr, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .skip_while(|a| a != "--port")
        .nth(1)
        .map_or(Ok(3000), |p| p.parse())
        .map_err(std::io::Error::other)?;
    let io = Server::new(Config::builder().build().map_err(std::io::Error::other)?);
    shardcast::app::install(&io);
    // The shards, with no listener of their own.
    let running = io.start()?;

    let app = Router::new()
        .route("/api/stats", get(stats))
        .route_service("/socket.io/", io.service())
        // The client's address, for the handshake (`socket.handshake()`).
        .layer(middleware::map_request(remote_addr))
        .with_state(io.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>());
    tokio::select! {
        r = serve => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    running.shutdown();
    Ok(())
}

async fn remote_addr(ConnectInfo(addr): ConnectInfo<SocketAddr>, mut req: Request) -> Request {
    req.extensions_mut().insert(RemoteAddr(addr));
    req
}

async fn stats(State(io): State<Server>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "namespaces": io.namespaces() }))
}

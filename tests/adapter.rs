//! The adapter seam with the in-process adapter, across 4 shards and real clients: the
//! operations that only it answers (`all_rooms`, `server_count`, server-side emits without
//! a cluster), and the selection operations issued from a shard (inside a handler) as well
//! as from another thread. (The broadcast operators themselves: tests/broadcast.rs.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use shardcast::proto::sid::Sid;
use shardcast::{EmitError, ServerSideAckError};

/// `n` clients on `/`, spread over the 4 shards, each joined to room `r{i % 3}`.
async fn crowd(server: &TestServer, n: usize) -> (Vec<Ws>, Vec<String>) {
    let (mut clients, mut ids) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (mut ws, id) = Ws::connected(server.addr).await;
        ws.send(&format!(r#"421["join","r{}"]"#, i % 3)).await;
        ws.expect("431[true]").await;
        clients.push(ws);
        ids.push(id);
    }
    let shards: HashSet<u8> = ids.iter().map(|id| Sid::parse(id).unwrap().shard()).collect();
    assert_eq!(shards.len(), 4, "clients not spread over the 4 shards");
    (clients, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_rooms_gathers_every_shard_with_socket_ids() {
    let (server, _probe) = TestServer::probe(config().shards(4).build().unwrap());
    let (mut clients, ids) = crowd(&server, 8).await;
    // client 0 leaves its own room; a /custom socket's rooms are another namespace's
    clients[0].send(&format!(r#"421["leave","{}"]"#, ids[0])).await;
    clients[0].expect("431[true]").await;
    let (mut other, _) = Ws::open(server.addr).await;
    other.sio_connect("/custom", None).await;
    other.expect(r#"42/custom,["auth",{}]"#).await;
    other.send(r#"42/custom,1["join","elsewhere"]"#).await;
    other.expect(r#"43/custom,1[true]"#).await;

    let mut want: Vec<String> = vec!["r0".into(), "r1".into(), "r2".into()];
    want.extend(ids[1..].iter().cloned());
    want.sort();
    let got: Vec<String> =
        server.io.all_rooms().await.unwrap().iter().map(|r| r.to_string()).collect();
    assert_eq!(got, want);
    let custom: Vec<String> =
        server.io.of("/custom").all_rooms().await.unwrap().iter().map(|r| r.to_string()).collect();
    assert!(custom.contains(&"elsewhere".to_owned()) && !custom.contains(&"r0".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_server_side_emits_reach_no_one_and_count_one_server() {
    let (server, _probe) = TestServer::probe(config().shards(4).build().unwrap());
    let (mut clients, _) = crowd(&server, 4).await;
    assert_eq!(server.io.server_count().await, Ok(1));
    assert_eq!(server.io.server_side_emit("hello", ("x",)), Ok(()));
    let started = std::time::Instant::now();
    let replies =
        server.io.server_side_emit_with_ack("hello", (), Duration::from_secs(5)).await.unwrap();
    assert!(replies.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1), "no server to wait for");
    assert_eq!(
        server.io.server_side_emit("disconnect", ()),
        Err(EmitError::ReservedEvent("disconnect".into()))
    );
    assert_eq!(
        server.io.server_side_emit_with_ack("connect", (), Duration::from_secs(1)).await,
        Err(ServerSideAckError::Emit(EmitError::ReservedEvent("connect".into())))
    );
    // server-side events are for servers: no client heard any of it
    for ws in &mut clients {
        ws.expect_silence(Duration::from_millis(100)).await;
    }
}

/// The selection operations issued from a shard thread (a handler) reach every shard, in
/// order with a broadcast sent after them from the same handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_from_a_handler_reach_every_shard_in_order() {
    let server = TestServer::start(config().shards(4).build().unwrap(), |io| {
        let ns = io.of("/");
        ns.clone().on_connection(move |socket| {
            let ns = ns.clone();
            socket.on("gather", move |_s, _args, ack| {
                ns.to("r1").sockets_join("gathered");
                ns.to("r2").sockets_leave("r2");
                let _ = ns.to("gathered").emit("hi", ("all",));
                let _ = ns.to("r2").emit("r2-still", ());
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            });
            socket.on("join", |s, args, ack| {
                if let Some(room) = args.str(0) {
                    s.join(room);
                }
                if let Some(ack) = ack {
                    let _ = ack.send((true,));
                }
            });
        });
    });
    let mut clients = Vec::new();
    for i in 0..8 {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.sio_connect("/", None).await;
        ws.send(&format!(r#"421["join","r{}"]"#, i % 3)).await;
        ws.expect("431[true]").await;
        clients.push(ws);
    }
    clients[0].send(r#"429["gather"]"#).await;
    clients[0].expect("439[]").await;
    for (i, ws) in clients.iter_mut().enumerate() {
        if i % 3 == 1 {
            ws.expect(r#"42["hi","all"]"#).await;
        }
        ws.expect_silence(Duration::from_millis(100)).await;
    }
    // and from outside any shard: the rest of the crowd joins too
    server.io.to("r0").sockets_join("gathered");
    server.io.to("gathered").emit("again", ()).unwrap();
    for (i, ws) in clients.iter_mut().enumerate() {
        if i % 3 != 2 {
            ws.expect(r#"42["again"]"#).await;
        }
    }
    let fetched = server.io.in_("gathered").fetch_sockets().await.unwrap();
    assert_eq!(fetched.len(), 6);
}

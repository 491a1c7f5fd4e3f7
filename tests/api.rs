//! The Rust API seen by an application: reserved event names, the handshake, namespaces,
//! rooms of a socket, starting and shutting down, and the slow-consumer policy.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use shardcast::{AckError, DisconnectReason, EmitError, Server};

const RESERVED: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_event_names_are_refused() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;

    for name in RESERVED {
        assert_eq!(socket.emit(name, ()), Err(EmitError::ReservedEvent(name.to_owned())), "{name}");
        assert_eq!(
            socket.timeout(Duration::from_millis(100)).emit_with_ack(name, ()).await.unwrap_err(),
            AckError::Emit(EmitError::ReservedEvent(name.to_owned())),
            "{name}"
        );
        assert_eq!(server.io.emit(name, ()), Err(EmitError::ReservedEvent(name.to_owned())));
        assert_eq!(
            server.io.to("r").emit(name, ()),
            Err(EmitError::ReservedEvent(name.to_owned()))
        );
        assert_eq!(
            server.io.of("/custom").emit(name, ()),
            Err(EmitError::ReservedEvent(name.to_owned()))
        );
        assert_eq!(socket.to("r").emit(name, ()), Err(EmitError::ReservedEvent(name.to_owned())));
    }
    // Nothing of it reached the client; names that merely look alike are fine.
    socket.emit("connected", ()).unwrap();
    ws.expect(r#"42["connected"]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitting_to_a_disconnected_socket_fails() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, id) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;
    assert!(socket.connected());
    ws.send("41").await;
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::ClientNamespaceDisconnect);
    assert!(!socket.connected());
    assert_eq!(socket.emit("late", ()), Err(EmitError::Disconnected));
    assert_eq!(
        socket.timeout(Duration::from_millis(100)).emit_with_ack("late", ()).await.unwrap_err(),
        AckError::Emit(EmitError::Disconnected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_gives_auth_query_headers_and_address() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let before = SystemTime::now();
    let url = server.ws_url("&room=blue&empty=&enc=a%20b");
    let (mut ws, _) = Ws::open_url(&url, &[("X-Custom", "hello"), ("Cookie", "a=1")]).await;
    let id = ws.sio_connect("/custom", Some(json!({"token": "secret"}))).await;
    ws.expect(r#"42/custom,["auth",{"token":"secret"}]"#).await;
    let socket = probe.socket().await;
    assert_eq!(socket.id(), id);
    assert_eq!(socket.ns(), "/custom");

    let hs = socket.handshake();
    assert_eq!(hs.auth, json!({"token": "secret"}));
    assert_eq!(hs.query_param("room"), Some("blue"));
    assert_eq!(hs.query_param("empty"), Some(""));
    assert_eq!(hs.query_param("enc"), Some("a b"));
    assert_eq!(hs.query_param("EIO"), Some("4"));
    assert_eq!(hs.query_param("transport"), Some("websocket"));
    assert_eq!(hs.query_param("missing"), None);
    assert_eq!(hs.headers.get("x-custom").unwrap(), "hello");
    assert_eq!(hs.headers.get("cookie").unwrap(), "a=1");
    assert!(hs.address.ip().is_loopback(), "{}", hs.address);
    assert_ne!(hs.address.port(), server.addr.port());
    assert!(hs.url.starts_with("/socket.io/?EIO=4&transport=websocket&room=blue"), "{}", hs.url);
    assert!(hs.issued >= before - Duration::from_secs(1) && hs.issued <= SystemTime::now());

    // Each namespace gets its own auth, the connection's headers and query.
    let root = ws.sio_connect("/", None).await;
    let root_socket = probe.socket().await;
    assert_eq!(root_socket.id(), root);
    assert_eq!(root_socket.handshake().auth, json!({}));
    assert_eq!(root_socket.handshake().query_param("room"), Some("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_names_and_config() {
    let io = Server::new(config().ping_interval(Duration::from_millis(1234)).build().unwrap());
    assert_eq!(io.of("chat").name(), "/chat");
    assert_eq!(io.of("/chat").name(), "/chat");
    assert_eq!(io.of("/").name(), "/");
    assert_eq!(io.config().ping_interval, Duration::from_millis(1234));

    io.of("chat").on_connection(|s| {
        let _ = s.emit("hi", (s.ns().to_owned(),));
    });
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(io.listen("127.0.0.1:0".parse().unwrap()).is_err(), "a server listens once");
    let (mut ws, _) = Ws::open(running.local_addr()).await;
    ws.sio_connect("/chat", None).await;
    ws.expect(r#"42/chat,["hi","/chat"]"#).await;
    drop(ws);
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_namespace_exists_without_handlers() {
    // socket.io always has `/`: connecting to it works even when the app only uses others.
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.of("/chat");
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    ws.sio_connect("/chat", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_rooms_include_its_own_id() {
    let server = TestServer::probe(config().build().unwrap()).0;
    let (mut ws, id) = Ws::connected(server.addr).await;
    ws.send(r#"420["rooms"]"#).await;
    ws.expect(&format!(r#"430[["{id}"]]"#)).await;
    ws.send(r#"421["join","zeta"]"#).await;
    ws.expect("431[true]").await;
    ws.send(r#"422["join","alpha"]"#).await;
    ws.expect("432[true]").await;
    ws.send(r#"423["rooms"]"#).await;
    let mut expected = vec![id.clone(), "alpha".into(), "zeta".into()];
    expected.sort();
    ws.expect(&format!("433{}", json!([expected]))).await;
    ws.send(r#"424["leave","zeta"]"#).await;
    ws.expect("434[true]").await;
    ws.send(r#"425["rooms"]"#).await;
    let mut expected = vec![id.clone(), "alpha".into()];
    expected.sort();
    ws.expect(&format!("435{}", json!([expected]))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection() {
    let (server, mut probe) = TestServer::probe(config().shards(2).build().unwrap());
    let (mut a, id_a) = Ws::connected(server.addr).await;
    let (mut b, id_b) = Ws::connected(server.addr).await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();
    a.expect_closed().await;
    b.expect_closed().await;
    assert_eq!(probe.reason_of(&id_a).await, DisconnectReason::ServerShuttingDown);
    assert_eq!(probe.reason_of(&id_b).await, DisconnectReason::ServerShuttingDown);
    // Nobody listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected() {
    let (server, mut probe) = TestServer::probe(config().max_outbox(8).build().unwrap());
    let (ws, id) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;
    // The client reads nothing; the server keeps emitting big packets: once the TCP buffers
    // and the outbox are full the connection is closed.
    let big = "x".repeat(64 * 1024);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sent = 0usize;
    while socket.emit("flood", (big.as_str(),)).is_ok() {
        sent += 1;
        if sent % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting emits after {sent} of 64 KiB"
        );
    }
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::SlowConsumer);
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_client_that_never_polls_is_a_slow_consumer() {
    let (server, mut probe) = TestServer::probe(config().max_outbox(8).build().unwrap());
    let (sid, id) = polling_session(server.addr).await;
    let socket = probe.socket().await;
    for i in 0..9 {
        let _ = socket.emit("queued", (i,));
    }
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::SlowConsumer);
    assert!(!socket.connected());
    assert_session_gone(server.addr, &sid).await;
}

/// A connection on `/` and `/custom` whose first `/` socket left and was replaced by a new
/// one; returns the client, the stale handle and the new socket id.
async fn replaced_root(server: &TestServer, probe: &mut Probe) -> (Ws, shardcast::Socket, String) {
    let (mut ws, old_root) = Ws::connected(server.addr).await;
    let stale = probe.socket().await;
    ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;
    ws.send("41").await;
    assert_eq!(probe.reason_of(&old_root).await, DisconnectReason::ClientNamespaceDisconnect);
    let new_root = ws.sio_connect("/", None).await;
    ws.expect(r#"42["auth",{}]"#).await;
    (ws, stale, new_root)
}

// socket.io: `socket.disconnect()` on a socket that already left returns at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_on_a_stale_socket_handle_is_a_no_op() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, stale, new_root) = replaced_root(&server, &mut probe).await;
    stale.disconnect(false);
    ws.roundtrip("/").await;
    ws.roundtrip("/custom").await;
    assert!(probe.try_gone().is_none(), "stale disconnect affected {new_root} or /custom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_close_on_a_stale_socket_handle_is_a_no_op() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, stale, new_root) = replaced_root(&server, &mut probe).await;
    stale.disconnect(true);
    ws.roundtrip("/").await;
    ws.roundtrip("/custom").await;
    assert!(probe.try_gone().is_none(), "stale disconnect affected {new_root} or /custom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_close_after_leaving_keeps_the_other_namespaces() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;
    ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;
    ws.send("41").await;
    assert_eq!(probe.reason_of(&root).await, DisconnectReason::ClientNamespaceDisconnect);
    socket.disconnect(true);
    ws.roundtrip("/custom").await;
    assert!(probe.try_gone().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_from_outside_the_shard_then_broadcast() {
    let (server, mut probe) = TestServer::probe(config().shards(4).build().unwrap());
    let mut clients = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let (ws, _) = Ws::connected(server.addr).await;
        clients.push(ws);
        sockets.push(probe.socket().await);
    }
    // Joins made from the test thread are applied before a later broadcast from it.
    for s in &sockets[..2] {
        s.join("outside");
    }
    server.io.to("outside").emit("news", ()).unwrap();
    sockets[0].leave("outside");
    server.io.to("outside").emit("news2", ()).unwrap();
    server.io.emit("marker", ()).unwrap();
    let expected: [&[&str]; 4] =
        [&[r#"42["news"]"#], &[r#"42["news"]"#, r#"42["news2"]"#], &[], &[]];
    for (ws, exp) in clients.iter_mut().zip(expected) {
        let mut got = Vec::new();
        loop {
            let t = ws.text().await;
            if t == r#"42["marker"]"# {
                break;
            }
            got.push(t);
        }
        assert_eq!(got, exp);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_are_per_socket_though_stateless_ones_share_storage() {
    // Every socket gets the same capture-free handlers from the connection handler (one
    // allocation serves them all); replacing one socket's handler leaves the others' alone;
    // a socket's namespace is its own, a dynamic pattern's child included.
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.of("/").on_connection(|socket| {
            socket.on("ask", |s, _args, ack| {
                if let Some(ack) = ack {
                    let _ = ack.send((s.namespace().name().to_owned(), "first"));
                }
            });
            socket.on("swap", |s, _args, ack| {
                s.on("ask", |s, _args, ack| {
                    if let Some(ack) = ack {
                        let _ = ack.send((s.namespace().name().to_owned(), "second"));
                    }
                });
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            });
        });
        io.of_dynamic(|name, _auth| name.starts_with("/room-")).on_connection(|socket| {
            socket.on("ask", |s, _args, ack| {
                if let Some(ack) = ack {
                    let _ = ack.send((s.namespace().name().to_owned(), s.ns().to_owned()));
                }
            });
        });
    });
    let (mut a, _) = Ws::open(server.addr).await;
    a.sio_connect("/", None).await;
    let (mut b, _) = Ws::open(server.addr).await;
    b.sio_connect("/", None).await;
    a.send(r#"421["ask"]"#).await;
    a.expect(r#"431["/","first"]"#).await;
    b.send(r#"421["ask"]"#).await;
    b.expect(r#"431["/","first"]"#).await;
    a.send(r#"422["swap"]"#).await;
    a.expect("432[]").await;
    a.send(r#"423["ask"]"#).await;
    a.expect(r#"433["/","second"]"#).await;
    b.send(r#"423["ask"]"#).await;
    b.expect(r#"433["/","first"]"#).await;
    // A new socket gets the connection handler's handlers, not a's replacement.
    let (mut c, _) = Ws::open(server.addr).await;
    c.sio_connect("/", None).await;
    c.send(r#"424["ask"]"#).await;
    c.expect(r#"434["/","first"]"#).await;

    let (mut d, _) = Ws::open(server.addr).await;
    d.sio_connect("/room-7", None).await;
    d.send(r#"42/room-7,5["ask"]"#).await;
    d.expect(r#"43/room-7,5["/room-7","/room-7"]"#).await;
}

/// `off`, `off_any` and `leave_all` on a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_off_and_rooms_are_all_left() {
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.on_connection(|socket| {
            socket.on_any(|s, event, _args| {
                let _ = s.emit("any", (event.to_owned(),));
            });
            socket.on("message", |s, args, _| {
                let _ = s.emit("message-back", args);
            });
            socket.on("quiet", |s, _args, ack| {
                let had = s.off("message");
                s.off_any();
                if let Some(ack) = ack {
                    let _ = ack.send((had, s.off("message")));
                }
            });
            socket.on("join", |s, args, _| s.join(args.str(0).unwrap_or_default()));
            socket.on("leave-all", |s, _args, ack| {
                s.leave_all();
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            });
            socket.on("rooms", |s, _args, ack| {
                let rooms: Vec<String> = s.rooms().iter().map(|r| r.to_string()).collect();
                if let Some(ack) = ack {
                    let _ = ack.send((rooms,));
                }
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = ws.sio_connect("/", None).await;
    ws.send(r#"42["message",1]"#).await;
    ws.expect(r#"42["any","message"]"#).await;
    ws.expect(r#"42["message-back",1]"#).await;
    ws.send(r#"421["quiet"]"#).await;
    ws.expect(r#"42["any","quiet"]"#).await;
    ws.expect("431[true,false]").await;
    ws.send(r#"42["message",2]"#).await;
    for room in ["a", "b"] {
        ws.send(&format!(r#"42["join","{room}"]"#)).await;
    }
    ws.send(r#"422["rooms"]"#).await;
    ws.expect(&format!(r#"432[["{id}","a","b"]]"#)).await;
    ws.send(r#"423["leave-all"]"#).await;
    ws.expect("433[]").await;
    ws.send(r#"424["rooms"]"#).await;
    ws.expect(&format!(r#"434[["{id}"]]"#)).await;
}

/// Typed handlers on a real socket: a struct and binary in, a struct with binary out, the
/// wrong shape acked as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_arguments_in_and_out() {
    #[derive(serde::Deserialize)]
    struct Move {
        x: i32,
        y: i32,
    }
    #[derive(serde::Serialize)]
    struct Snapshot {
        at: (i32, i32),
        map: bytes::Bytes,
    }
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.on_connection(|socket| {
            socket.on_typed("move", |s, data: Result<(Move, bytes::Bytes), _>, ack| {
                let Some(ack) = ack else { return };
                match data {
                    Ok((m, blob)) => {
                        let _ = ack.send((m.x + m.y, blob.len()));
                        let _ = s.emit("snapshot", (Snapshot { at: (m.x, m.y), map: blob },));
                    }
                    Err(e) => {
                        let _ = ack.send((json!({"error": e.to_string()}),));
                    }
                }
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    ws.send(r#"451-1["move",{"x":1,"y":2},{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(b"\xab\xcd").await;
    ws.expect("431[3,2]").await;
    ws.expect(r#"451-["snapshot",{"at":[1,2],"map":{"_placeholder":true,"num":0}}]"#).await;
    assert_eq!(ws.binary().await, b"\xab\xcd");
    ws.send(r#"422["move","oops"]"#).await;
    ws.expect(r#"432[{"error":"arguments: invalid type: string \"oops\", expected struct Move"}]"#)
        .await;
}

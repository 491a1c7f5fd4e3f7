//! The rest of the socket.io server API: dynamic namespaces, per-socket middlewares and
//! `error`, catch-all listeners, `socket.broadcast`, `socket.data`, the adapter's room
//! events, volatile emits.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use shardcast::{ConnectError, RoomChange, RoomEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespaces_are_created_on_first_connect() {
    let mut parent = None;
    let server = TestServer::start(config().shards(2).build().unwrap(), |io| {
        let nsp = io.of_regex(regex::Regex::new(r"^/dyn-\d+$").unwrap());
        nsp.use_middleware(|s| {
            if s.handshake().auth.get("deny").is_some() {
                Err(ConnectError::new("denied"))
            } else {
                Ok(())
            }
        });
        nsp.on_connection(|s| {
            let _ = s.emit("hello", (s.ns().to_owned(),));
        });
        parent = Some(nsp);
    });
    let parent = parent.unwrap();

    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/dyn-1", None).await;
    ws.expect(r#"42/dyn-1,["hello","/dyn-1"]"#).await;
    ws.send("40/dyn-x,").await;
    ws.expect(r#"44/dyn-x,{"message":"Invalid namespace"}"#).await;
    ws.send(r#"40/dyn-3,{"deny":true}"#).await;
    ws.expect(r#"44/dyn-3,{"message":"denied"}"#).await;

    let (mut other, _) = Ws::open(server.addr).await;
    other.sio_connect("/dyn-2", None).await;
    other.expect(r#"42/dyn-2,["hello","/dyn-2"]"#).await;
    // A second client of an existing dynamic namespace.
    other.sio_connect("/dyn-1", None).await;
    other.expect(r#"42/dyn-1,["hello","/dyn-1"]"#).await;

    let mut names: Vec<String> = parent.children().iter().map(|n| n.name().to_owned()).collect();
    names.sort();
    assert!(
        names.contains(&"/dyn-1".to_owned()) && names.contains(&"/dyn-2".to_owned()),
        "{names:?}"
    );
    assert_eq!(server.io.of("/dyn-1").fetch_sockets().await.unwrap().len(), 2);

    // The parent's emit reaches every child namespace.
    parent.emit("everyone", ()).unwrap();
    ws.expect(r#"42/dyn-1,["everyone"]"#).await;
    let mut got = vec![other.text().await, other.text().await];
    got.sort();
    assert_eq!(
        got,
        vec![r#"42/dyn-1,["everyone"]"#.to_owned(), r#"42/dyn-2,["everyone"]"#.to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespace_predicate_sees_the_auth() {
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.of_dynamic(|name, auth| name.starts_with("/t-") && auth.get("ok") == Some(&json!(true)))
            .on_connection(|s| {
                let _ = s.emit("in", ());
            });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send("40/t-1,").await;
    ws.expect(r#"44/t-1,{"message":"Invalid namespace"}"#).await;
    ws.sio_connect("/t-1", Some(json!({"ok": true}))).await;
    ws.expect(r#"42/t-1,["in"]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_middlewares_and_catch_all_listeners() {
    let (seen_tx, mut seen) = channel::<String>();
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.on_connection(move |socket| {
            let seen_tx = seen_tx.clone();
            socket.on_any(move |_s, event, args| {
                let _ = seen_tx.send(format!("any:{event}:{}", args.len()));
            });
            socket.use_middleware(|_s, event, _args| {
                if event == "forbidden" {
                    Err("unauthorized event".to_owned())
                } else {
                    Ok(())
                }
            });
            socket.on_error(|s, err| {
                let _ = s.emit("error-seen", (err.to_owned(),));
            });
            socket.on("allowed", |s, args, _| {
                let _ = s.emit("ran", args);
            });
            socket.on("forbidden", |s, _, _| {
                let _ = s.emit("ran", ("forbidden handler must not run",));
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    ws.send(r#"42["allowed",1,2]"#).await;
    ws.expect(r#"42["ran",1,2]"#).await;
    ws.send(r#"42["forbidden"]"#).await;
    ws.expect(r#"42["error-seen","unauthorized event"]"#).await;
    ws.send(r#"42["unhandled"]"#).await;
    ws.send(r#"42["allowed"]"#).await;
    ws.expect(r#"42["ran"]"#).await;
    // The catch-all listener runs before the middlewares (socket.io's onevent calls the
    // onAny listeners, then dispatch runs socket.use): it sees every event, refused or not.
    let mut got = Vec::new();
    while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await {
        got.push(s);
    }
    assert_eq!(got, vec!["any:allowed:2", "any:forbidden:0", "any:unhandled:0", "any:allowed:0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_catch_all_sees_emits_and_broadcasts() {
    let (out_tx, mut out) = channel::<String>();
    let server = TestServer::start(config().build().unwrap(), |io| {
        io.on_connection(move |socket| {
            let out_tx = out_tx.clone();
            socket.on_any_outgoing(move |_s, event, _args| {
                let _ = out_tx.send(event.to_owned());
            });
            let _ = socket.emit("direct", ());
            socket.join("r");
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    ws.expect(r#"42["direct"]"#).await;
    server.io.to("r").emit("via-room", ()).unwrap();
    ws.expect(r#"42["via-room"]"#).await;
    assert_eq!(recv(&mut out).await, "direct");
    assert_eq!(recv(&mut out).await, "via-room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_broadcast_reaches_everyone_but_the_sender() {
    let server = TestServer::start(config().shards(4).build().unwrap(), |io| {
        io.on_connection(|socket| {
            socket.on("shout", |s, args, _| {
                let _ = s.broadcast().emit("heard", args);
            });
        });
    });
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.sio_connect("/", None).await;
        clients.push(ws);
    }
    clients[2].send(r#"42["shout","hi"]"#).await;
    for (i, ws) in clients.iter_mut().enumerate() {
        if i != 2 {
            ws.expect(r#"42["heard","hi"]"#).await;
        }
    }
    server.io.emit("marker", ()).unwrap();
    clients[2].expect(r#"42["marker"]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_data_is_visible_through_fetch_sockets() {
    let server = TestServer::start(config().shards(2).build().unwrap(), |io| {
        io.on_connection(|socket| {
            let user = socket.handshake().auth.get("user").cloned().unwrap_or_default();
            socket.set_data(json!({"user": user}));
        });
    });
    let mut clients = Vec::new();
    for user in ["ann", "bob", "cy"] {
        let (mut ws, _) = Ws::open(server.addr).await;
        ws.sio_connect("/", Some(json!({"user": user}))).await;
        clients.push(ws);
    }
    let mut users: Vec<String> = server
        .io
        .fetch_sockets()
        .await
        .unwrap()
        .iter()
        .map(|s| s.data()["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    assert_eq!(users, vec!["ann", "bob", "cy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_follow_the_adapter() {
    let (tx, mut rx) = channel::<RoomEvent>();
    let server = TestServer::start(config().shards(2).build().unwrap(), |io| {
        let tx = tx.clone();
        io.of("/").on_room_event(move |ev| {
            let _ = tx.send(ev.clone());
        });
        io.on_connection(|socket| {
            socket.on("join", |s, args, ack| {
                s.join(args.str(0).unwrap_or_default());
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            });
            socket.on("leave", |s, args, ack| {
                s.leave(args.str(0).unwrap_or_default());
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = ws.sio_connect("/", None).await;
    ws.send(r#"421["join","r"]"#).await;
    ws.expect("431[]").await;
    ws.send(r#"422["join","r"]"#).await;
    ws.expect("432[]").await;
    ws.send(r#"423["leave","r"]"#).await;
    ws.expect("433[]").await;
    ws.send("41").await;

    let own: shardcast::Room = id.as_str().into();
    let r: shardcast::Room = "r".into();
    let ev = |change| RoomEvent { nsp: "/".into(), change };
    let expected = vec![
        ev(RoomChange::CreateRoom(own.clone())),
        ev(RoomChange::JoinRoom(own.clone(), id.clone())),
        ev(RoomChange::CreateRoom(r.clone())),
        ev(RoomChange::JoinRoom(r.clone(), id.clone())),
        ev(RoomChange::LeaveRoom(r.clone(), id.clone())),
        ev(RoomChange::DeleteRoom(r.clone())),
        ev(RoomChange::LeaveRoom(own.clone(), id.clone())),
        ev(RoomChange::DeleteRoom(own.clone())),
    ];
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(recv(&mut rx).await);
    }
    assert_eq!(got, expected);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "extra room event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_emits_are_dropped_when_the_client_is_not_ready() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    // A polling client with no pending GET is not ready: volatile packets are dropped.
    let (sid, _) = polling_session(addr).await;
    let socket = probe.socket().await;
    let dropped = server.io.volatile_dropped();
    socket.volatile().emit("volatile", (1,)).unwrap();
    server.io.volatile().emit("volatile", (2,)).unwrap();
    socket.emit("normal", ()).unwrap();
    assert_eq!(poll_packets(addr, &sid).await, vec![r#"42["normal"]"#.to_owned()]);
    assert!(server.io.volatile_dropped() >= dropped + 2);

    // An idle WebSocket client is ready: they are delivered. (Right after a write the
    // writer may still count as busy, so allow a few attempts, spaced out.)
    let (mut ws, _) = Ws::connected(addr).await;
    let ws_socket = probe.socket().await;
    let mut delivered = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ws_socket.volatile().emit("volatile", (3,)).unwrap();
        if let Some(f) = ws.next_within(Duration::from_millis(200)).await {
            assert_eq!(f, Frame::Text(r#"42["volatile",3]"#.to_owned()));
            delivered = true;
            break;
        }
    }
    assert!(delivered, "volatile emits to an idle WebSocket client were all dropped");
}

/// A dynamic pattern's room listener hears the rooms of each namespace it created, each
/// event naming its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_name_their_namespace() {
    let (tx, mut rx) = channel::<RoomEvent>();
    let server = TestServer::start(config().shards(2).build().unwrap(), |io| {
        let tx = tx.clone();
        let games = io.of_dynamic(|name, _auth| name.starts_with("/game-"));
        games.on_room_event(move |ev| {
            if !matches!(&ev.change, RoomChange::JoinRoom(r, _) if &**r == "table") {
                return;
            }
            let _ = tx.send(ev.clone());
        });
        games.on_connection(|socket| {
            socket.join("table");
        });
    });
    for nsp in ["/game-1", "/game-2"] {
        let (mut ws, _) = Ws::open(server.addr).await;
        let id = ws.sio_connect(nsp, None).await;
        let ev = recv(&mut rx).await;
        assert_eq!(
            ev,
            RoomEvent { nsp: nsp.into(), change: RoomChange::JoinRoom("table".into(), id) }
        );
    }
}

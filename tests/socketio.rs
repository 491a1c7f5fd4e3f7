//! The Socket.IO protocol over a raw WebSocket: namespace CONNECT (auth, refusals,
//! multiplexing), events and acknowledgements both ways, binary attachments, the three kinds
//! of disconnection, middlewares.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use shardcast::{AckError, Args, ConnectError, DisconnectReason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_and_without_auth() {
    let server = TestServer::demo(config().build().unwrap());

    let (mut a, _) = Ws::open(server.addr).await;
    let id_a = a.sio_connect("/", Some(json!({"token": "abc", "n": [1, 2]}))).await;
    a.expect(r#"42["auth",{"token":"abc","n":[1,2]}]"#).await;

    let (mut b, _) = Ws::open(server.addr).await;
    b.send("40").await;
    let id_b = connect_ok_sid(&b.text().await, "/");
    b.expect(r#"42["auth",{}]"#).await;
    assert_ne!(id_a, id_b);

    a.roundtrip("/").await;
    b.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespace_is_refused_and_the_connection_stays_usable() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send("40/nope,").await;
    ws.expect(r#"44/nope,{"message":"Invalid namespace"}"#).await;
    // Without the trailing comma, with auth: the same.
    ws.send(r#"40/nope2,{"token":1}"#).await;
    ws.expect(r#"44/nope2,{"message":"Invalid namespace"}"#).await;
    ws.send("40/nope3").await;
    ws.expect(r#"44/nope3,{"message":"Invalid namespace"}"#).await;

    ws.sio_connect("/", None).await;
    ws.expect(r#"42["auth",{}]"#).await;
    ws.roundtrip("/").await;
    ws.send("40/again,").await;
    ws.expect(r#"44/again,{"message":"Invalid namespace"}"#).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_multiplexed_on_one_connection() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let custom = ws.sio_connect("/custom", Some(json!({"who": "me"}))).await;
    ws.expect(r#"42/custom,["auth",{"who":"me"}]"#).await;
    assert_ne!(root, custom);

    ws.roundtrip("/custom").await;
    ws.roundtrip("/").await;
    ws.send(r#"42/custom,["message",{"deep":[true,null,1.5]}]"#).await;
    ws.expect(r#"42/custom,["message-back",{"deep":[true,null,1.5]}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_their_order() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    for i in 0..200 {
        ws.send(&format!(r#"42["message",{i}]"#)).await;
    }
    for i in 0..200 {
        ws.expect(&format!(r#"42["message-back",{i}]"#)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_acks_are_answered() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send(r#"421["message-with-ack",1,"two",{"x":null}]"#).await;
    ws.expect(r#"431[1,"two",{"x":null}]"#).await;
    ws.send(r#"4212345678901["message-with-ack"]"#).await;
    ws.expect("4312345678901[]").await;
    // An event without a handler is ignored, ack or not.
    ws.send(r#"427["no-such-event",1]"#).await;
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_emit_with_ack_resolves_times_out_and_fails_on_disconnect() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;

    // Answered.
    let s = socket.clone();
    let asked = tokio::spawn(async move {
        s.timeout(Duration::from_secs(3)).emit_with_ack("question", (42,)).await
    });
    ws.expect(r#"420["question",42]"#).await;
    ws.send(r#"430["answer",{"n":1}]"#).await;
    let args = asked.await.unwrap().expect("ack");
    assert_eq!(args.values(), &[json!("answer"), json!({"n": 1})]);

    // Not answered: times out.
    let s = socket.clone();
    let asked = tokio::spawn(async move {
        s.timeout(Duration::from_millis(300)).emit_with_ack("question", ()).await
    });
    ws.expect(r#"421["question"]"#).await;
    assert_eq!(asked.await.unwrap().unwrap_err(), AckError::Timeout);
    // A late answer is ignored, the session goes on.
    ws.send("431[\"late\"]").await;
    ws.roundtrip("/").await;

    // The socket leaves before answering.
    let s = socket.clone();
    let asked = tokio::spawn(async move { s.emit_with_ack("question", ()).await });
    ws.expect(r#"422["question"]"#).await;
    ws.send("41").await;
    let r = tokio::time::timeout(WAIT, asked).await.expect("ack future resolved").unwrap();
    assert_eq!(r.unwrap_err(), AckError::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_events_both_ways() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    let socket = probe.socket().await;

    // Client → server → client.
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[1, 2, 3, 0, 255]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![1, 2, 3, 0, 255]);

    // Nested placeholders, attachments in placeholder order.
    ws.send(
        r#"452-["message",{"a":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#,
    )
    .await;
    ws.send_binary(b"zero").await;
    ws.send_binary(b"one").await;
    ws.expect(r#"452-["message-back",{"a":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#).await;
    assert_eq!(ws.binary().await, b"zero");
    assert_eq!(ws.binary().await, b"one");

    // Binary ack of a client event.
    ws.send(r#"451-5["message-with-ack","t",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[7]).await;
    ws.expect(r#"461-5["t",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![7]);

    // Server → client.
    socket.emit("bin", Args::new().arg("x").binary_arg(Bytes::from_static(&[0, 1, 2]))).unwrap();
    ws.expect(r#"451-["bin","x",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![0, 1, 2]);

    // Binary ack to a server emit.
    let s = socket.clone();
    let asked = tokio::spawn(async move {
        s.timeout(Duration::from_secs(3)).emit_with_ack("give-bytes", ()).await
    });
    ws.expect(r#"420["give-bytes"]"#).await;
    ws.send(r#"461-0["here",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 5, 6]).await;
    let args = asked.await.unwrap().expect("ack");
    assert_eq!(args.str(0), Some("here"));
    assert_eq!(args.get_binary(1).map(|b| b.to_vec()), Some(vec![4, 5, 6]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_namespace_disconnect_keeps_the_other_namespace() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;

    ws.send("41/custom,").await;
    assert_eq!(probe.reason_of(&custom).await, DisconnectReason::ClientNamespaceDisconnect);
    ws.roundtrip("/").await;

    // The namespace can be joined again, as a new socket.
    let again = ws.sio_connect("/custom", None).await;
    assert_ne!(again, custom);
    ws.expect(r#"42/custom,["auth",{}]"#).await;
    ws.roundtrip("/custom").await;

    // Leaving every namespace does not close the connection.
    ws.send("41").await;
    assert_eq!(probe.reason_of(&root).await, DisconnectReason::ClientNamespaceDisconnect);
    ws.roundtrip("/custom").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_me_disconnects_every_namespace_then_closes() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;

    ws.send(r#"42["disconnect-me"]"#).await;
    let mut before = ws.expect_closed().await;
    before.sort();
    assert_eq!(before, vec!["41".to_owned(), "41/custom,".to_owned()]);
    assert_eq!(probe.reason_of(&root).await, DisconnectReason::ServerNamespaceDisconnect);
    assert_eq!(probe.reason_of(&custom).await, DisconnectReason::ServerNamespaceDisconnect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_disconnect_me_sends_disconnect_then_closes() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send(r#"42["disconnect-me"]"#).await;
    assert_eq!(ws.expect_closed().await, vec!["41".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_namespace_disconnect_keeps_the_connection() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut ws, root) = Ws::connected(server.addr).await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.expect(r#"42/custom,["auth",{}]"#).await;

    ws.send(r#"42["kick-me"]"#).await;
    ws.expect("41").await;
    assert_eq!(probe.reason_of(&root).await, DisconnectReason::ServerNamespaceDisconnect);
    ws.roundtrip("/custom").await;

    // Rejoin `/`.
    let again = ws.sio_connect("/", None).await;
    assert_ne!(again, root);
    ws.expect(r#"42["auth",{}]"#).await;
    ws.roundtrip("/").await;

    // The same from outside the handlers, through the Rust API.
    let _root_socket = probe.socket().await;
    let _custom_socket = probe.socket().await;
    let again_socket = probe.socket().await;
    assert_eq!(again_socket.id(), again);
    again_socket.disconnect(false);
    ws.expect("41").await;
    assert_eq!(probe.reason_of(&again).await, DisconnectReason::ServerNamespaceDisconnect);
    assert!(!again_socket.connected());
    ws.roundtrip("/custom").await;
    assert!(probe.try_gone().is_none(), "{custom} must still be connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_refusal_is_a_connect_error() {
    let server = TestServer::start(config().build().unwrap(), |io| {
        shardcast::app::install(io);
        io.of("/x").use_middleware(|_| Err(ConnectError::new("nope").with_data(json!({"k": 1}))));
        io.of("/plain").use_middleware(|_| Err(ConnectError::new("just no")));
        let guarded = io.of("/guarded");
        guarded
            .use_middleware(|s| {
                if s.handshake().auth.get("token").and_then(|t| t.as_str()) == Some("ok") {
                    Ok(())
                } else {
                    Err(ConnectError::new("bad token"))
                }
            })
            .use_middleware(|_| Ok(()));
        guarded.on_connection(|s| {
            let _ = s.emit("welcome", ());
        });
    });
    let (mut ws, _) = Ws::connected(server.addr).await;

    ws.send("40/x,").await;
    ws.expect(r#"44/x,{"message":"nope","data":{"k":1}}"#).await;
    ws.send("40/plain,").await;
    ws.expect(r#"44/plain,{"message":"just no"}"#).await;
    ws.send(r#"40/guarded,{"token":"wrong"}"#).await;
    ws.expect(r#"44/guarded,{"message":"bad token"}"#).await;
    ws.roundtrip("/").await;

    ws.sio_connect("/guarded", Some(json!({"token": "ok"}))).await;
    ws.expect(r#"42/guarded,["welcome"]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middlewares_run_in_order_and_the_first_refusal_wins() {
    let (tx, mut rx) = channel::<&'static str>();
    let server = TestServer::start(config().build().unwrap(), |io| {
        let (t1, t2, t3) = (tx.clone(), tx.clone(), tx.clone());
        io.of("/")
            .use_middleware(move |_| {
                let _ = t1.send("first");
                Ok(())
            })
            .use_middleware(move |_| {
                let _ = t2.send("second");
                Err(ConnectError::new("second says no"))
            })
            .use_middleware(move |_| {
                let _ = t3.send("third");
                Ok(())
            });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send("40").await;
    ws.expect(r#"44{"message":"second says no"}"#).await;
    assert_eq!(recv(&mut rx).await, "first");
    assert_eq!(recv(&mut rx).await, "second");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "a middleware ran after a refusal");
}

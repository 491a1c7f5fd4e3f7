//! JSON as JavaScript writes it, over real sockets against the demo app and the Rust API:
//! lone surrogates, deep nesting and out-of-range numbers keep the connection and come back
//! as the reference server sends them, on WebSocket and polling, in events, acks, CONNECT
//! auth, broadcasts and binary events. (The decoder's own cases: src/proto/json.rs.)

mod common;

use common::*;
use serde_json::json;
use shardcast::{Args, DisconnectReason};

/// Each packet a client sends, and what the demo app answers, as the Node server answers it.
fn exchanges() -> Vec<(String, String)> {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    vec![
        (r#"421["message-with-ack","\ud83d"]"#.into(), r#"431["\ud83d"]"#.into()),
        (format!(r#"421["message-with-ack",{deep}]"#), format!("431[{deep}]")),
        (r#"422["message-with-ack",1e999999]"#.into(), "432[null]".into()),
        (
            r#"42["message","\uD83D",-0,9007199254740993,1E2,1.5e-7,-1e999999,{"k":"\ude00x"}]"#
                .into(),
            r#"42["message-back","\uD83D",0,9007199254740992,100,1.5e-7,null,{"k":"\ude00x"}]"#
                .into(),
        ),
        // a valid pair is one character, written as UTF-8 as JSON.stringify does
        (r#"42["message","\ud83d\ude00"]"#.into(), "42[\"message-back\",\"\u{1f600}\"]".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_and_ack_as_the_reference() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    for (sent, answer) in exchanges() {
        ws.send(&sent).await;
        ws.expect(&answer).await;
    }
    ws.roundtrip("/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_echo_and_ack_as_the_reference() {
    let server = TestServer::demo(config().build().unwrap());
    let (sid, _) = polling_session(server.addr).await;
    for (sent, answer) in exchanges() {
        post_ok(server.addr, &sid, &sent).await;
        assert_eq!(poll_packets(server.addr, &sid).await, vec![answer]);
    }
    // several packets in one POST body, each decoded on its own
    let (sent, answers): (Vec<_>, Vec<_>) = exchanges().into_iter().unzip();
    let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
    post_ok(server.addr, &sid, &payload(&sent)).await;
    let mut got = Vec::new();
    while got.len() < answers.len() {
        got.extend(poll_packets(server.addr, &sid).await);
    }
    assert_eq!(got, answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_auth_comes_back_as_sent() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send(r#"40{"token":"\ud83d","n":1e999999}"#).await;
    connect_ok_sid(&ws.text().await, "/");
    ws.expect(r#"42["auth",{"token":"\ud83d","n":null}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_relays_the_clients_escape_to_every_member() {
    let server = TestServer::demo(config().build().unwrap());
    let mut members = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = Ws::connected(server.addr).await;
        ws.send(r#"421["join","r"]"#).await;
        ws.expect("431[true]").await;
        members.push(ws);
    }
    members[0].send(r#"422["publish","r","chat","\ud83d","a\udc00b",[1e400]]"#).await;
    for ws in &mut members {
        ws.expect(r#"42["chat","\ud83d","a\udc00b",[null]]"#).await;
    }
    // (the publisher is a member: the broadcast reaches it before the ack)
    members[0].expect("432[true]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_event_with_a_lone_surrogate() {
    let server = TestServer::demo(config().build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send(r#"451-["message",{"_placeholder":true,"num":0},"\ud83d",{"n":1e999}]"#).await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0},"\ud83d",{"n":null}]"#).await;
    assert_eq!(ws.binary().await, vec![1, 2, 3]);
}

/// What a Rust handler sees, and that an ack from the client keeps its text too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_u_fffd_and_re_emit_the_original() {
    let (seen_tx, mut seen) = channel::<Args>();
    let server = TestServer::start(config().build().unwrap(), move |io| {
        let seen_tx = seen_tx.clone();
        io.of("/").on_connection(move |socket| {
            let seen_tx = seen_tx.clone();
            socket.on("look", move |s, args, _ack| {
                let _ = seen_tx.send(args.clone());
                let _ = s.emit("again", args.skip(1));
                let s2 = s.clone();
                let seen_tx = seen_tx.clone();
                tokio::task::spawn_local(async move {
                    if let Ok(reply) = s2.emit_with_ack("q", ()).await {
                        let _ = seen_tx.send(reply.clone());
                        let _ = s2.emit("reply", reply);
                    }
                });
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    ws.send(r#"42["look",1.0,"\ud83d",["\udc00",5]]"#).await;
    let args = recv(&mut seen).await;
    assert_eq!(args.get::<u32>(0), Some(1));
    assert_eq!(args.str(1), Some("\u{fffd}"));
    assert_eq!(args.get::<(String, u8)>(2), Some(("\u{fffd}".to_owned(), 5)));
    assert_eq!(args.original(0), None);
    assert_eq!(args.original(1), Some(r#""\ud83d""#));
    assert_eq!(args.original(2), Some(r#"["\udc00",5]"#));
    assert_eq!(args.values(), &[json!(1), json!("\u{fffd}"), json!(["\u{fffd}", 5])]);
    ws.expect(r#"42["again","\ud83d",["\udc00",5]]"#).await;
    let q = ws.text().await;
    let id = q.strip_prefix("42").and_then(|r| r.strip_suffix(r#"["q"]"#)).expect("q with an id");
    ws.send(&format!(r#"43{id}["\ud83d",1e999999]"#)).await;
    let reply = recv(&mut seen).await;
    assert_eq!(reply.values(), &[json!("\u{fffd}"), json!(null)]);
    ws.expect(r#"42["reply","\ud83d",null]"#).await;
}

/// Nesting right at `max_json_depth` is served (on the shard's stack, in a debug build);
/// one level more closes that connection only, and 100,000 levels as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_up_to_the_limit_is_served_and_beyond_it_closes_that_connection() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let (mut other, _) = Ws::connected(server.addr).await;
    // The data array is level 1: an argument 999 deep makes 1000.
    let arg = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send(&format!(r#"42["message",{}]"#, arg(999))).await;
    ws.expect(&format!(r#"42["message-back",{}]"#, arg(999))).await;
    for depth in [1000, 100_000] {
        let (mut bad, id) = Ws::connected(server.addr).await;
        bad.send(&format!(r#"42["message",{}]"#, arg(depth))).await;
        assert!(bad.expect_closed().await.is_empty());
        assert_eq!(probe.reason_of(&id).await, DisconnectReason::ForcedClose);
        other.roundtrip("/").await;
        ws.roundtrip("/").await;
    }
    let open_only = format!(r#"42["message",{}"#, "{\"k\":".repeat(100_000));
    let (mut bad, id) = Ws::connected(server.addr).await;
    bad.send(&open_only).await;
    assert!(bad.expect_closed().await.is_empty());
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::ForcedClose);
    other.roundtrip("/").await;
    assert!(probe.try_gone().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_json_depth_is_configurable() {
    let (server, mut probe) = TestServer::probe(config().max_json_depth(3).build().unwrap());
    let (mut ws, _) = Ws::connected(server.addr).await;
    ws.send(r#"42["message",[[1]]]"#).await;
    ws.expect(r#"42["message-back",[[1]]]"#).await;
    let (mut bad, id) = Ws::connected(server.addr).await;
    bad.send(r#"42["message",[[[1]]]]"#).await;
    assert!(bad.expect_closed().await.is_empty());
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::ForcedClose);
    ws.roundtrip("/").await;
}

/// Hostile JSON from many connections at once (seeded mixes of lone surrogates, nesting
/// far past the limit, out-of-range numbers, deep but allowed values) while a healthy room
/// member receives a numbered stream: each hostile connection gets the reference's answer or
/// is closed alone, the stream arrives whole and in order, and a new client is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_javascript_json_leaves_everyone_else_served() {
    const SEED: u64 = 0x5eed_2026_1201;
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (mut member, _) = Ws::connected(addr).await;
    member.send(r#"421["join","feed"]"#).await;
    member.expect("431[true]").await;
    let (mut publisher, _) = Ws::connected(addr).await;

    let deep_ok = format!("{}0{}", "[".repeat(900), "]".repeat(900));
    let too_deep = "[".repeat(100_000);
    let storm: Vec<_> = (0..40u64)
        .map(|i| {
            let (deep_ok, too_deep) = (deep_ok.clone(), too_deep.clone());
            tokio::spawn(async move {
                let mut rng = SEED ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let (mut ws, _) = Ws::connected(addr).await;
                for step in 0..6 {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    match (rng >> 33) % 4 {
                        0 => {
                            ws.send(r#"421["message-with-ack","a\ud83d","\udc00"]"#).await;
                            ws.expect(r#"431["a\ud83d","\udc00"]"#).await;
                        }
                        1 => {
                            ws.send(r#"422["message-with-ack",1e999999,-0,9007199254740993]"#)
                                .await;
                            ws.expect("432[null,0,9007199254740992]").await;
                        }
                        2 => {
                            ws.send(&format!(r#"423["message-with-ack",{deep_ok}]"#)).await;
                            ws.expect(&format!("433[{deep_ok}]")).await;
                        }
                        _ => {
                            ws.send(&format!(r#"42["message",{too_deep}"#)).await;
                            let before = ws.expect_closed().await;
                            assert!(before.is_empty(), "seed {SEED:#x} conn {i} step {step}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for n in 0..300 {
        publisher.send(&format!(r#"42["publish","feed","n",{n}]"#)).await;
    }
    for n in 0..300 {
        member.expect(&format!(r#"42["n",{n}]"#)).await;
    }
    for s in storm {
        s.await.unwrap_or_else(|e| panic!("seed {SEED:#x}: a storm connection failed: {e}"));
    }
    let (mut newcomer, _) = Ws::connected(addr).await;
    newcomer.roundtrip("/").await;
    member.roundtrip("/").await;
}

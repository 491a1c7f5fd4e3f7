//! The Rust [`Emitter`] against a real shardcast server on the Redis at 127.0.0.1:6379
//! (`REDIS_URL` to use another), one key per test, clients over WebSocket: emit (binary
//! included), to / in / except, `of(nsp)`, volatile and compress, sockets_join /
//! sockets_leave, disconnect_sockets and server_side_emit all reach them; reserved names and
//! an unreachable Redis are refused by name. And the bytes: the official
//! `@socket.io/redis-emitter` (tests/cluster/node_modules) and ours publish the same
//! messages on the same channels for the same operations.

mod common;
#[path = "common/process.rs"]
mod process;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{Frame, TestServer, Ws};
use futures_util::StreamExt;
use serde_json::{json, Value};
use shardcast::{Args, Emitter, EmitterError, Server};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A channel prefix of this test alone.
fn key(name: &str) -> String {
    format!("em-{}-{name}", std::process::id())
}

/// Joins each socket of `/` and `/custom` to the rooms its auth names (`{"rooms": [...]}`).
fn rooms_from_auth(io: &Server) {
    for nsp in ["/", "/custom"] {
        io.of(nsp).on_connection(|s| {
            let auth = s.handshake().auth.clone();
            for r in auth["rooms"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                s.join(r);
            }
        });
    }
}

/// A server of the cluster on `key` (subscribed once this returns), and an emitter for it.
async fn cluster(key: &str, setup: impl FnOnce(&Server)) -> (TestServer, Emitter) {
    let config = common::config().redis(redis_url()).redis_key(key).build().unwrap();
    let server = TestServer::start(config, setup);
    let emitter = Emitter::connect(&redis_url()).await.expect("Redis is needed").key(key);
    (server, emitter)
}

/// A client connected to `/` in `rooms`; its socket id.
async fn client(server: &TestServer, rooms: &[&str]) -> (Ws, String) {
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = ws.sio_connect("/", Some(json!({ "rooms": rooms }))).await;
    (ws, id)
}

/// Retries `f` until it holds, for at most 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "condition not reached within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_reaches_every_socket_binary_included() {
    let (server, emitter) = cluster(&key("emit"), rooms_from_auth).await;
    let (mut a, _) = client(&server, &[]).await;
    let (mut b, _) = client(&server, &["r"]).await;
    let args = Args::new()
        .arg(1)
        .arg("two")
        .binary_arg(vec![1u8, 2, 3])
        .arg(json!({"nested": [true, null], "é": "😀"}));
    emitter.emit("from-emitter", args).await.unwrap();
    for ws in [&mut a, &mut b] {
        ws.expect(r#"451-["from-emitter",1,"two",{"_placeholder":true,"num":0},{"nested":[true,null],"é":"😀"}]"#).await;
        assert_eq!(ws.binary().await, vec![1, 2, 3]);
    }
    // from another task (the futures are Send), one binary argument alone
    let e = emitter.clone();
    tokio::spawn(async move { e.emit("bytes", Bytes::from_static(b"\xff")).await })
        .await
        .unwrap()
        .unwrap();
    for ws in [&mut a, &mut b] {
        ws.expect(r#"451-["bytes",{"_placeholder":true,"num":0}]"#).await;
        assert_eq!(ws.binary().await, vec![0xff]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_in_and_except_select_rooms() {
    let (server, emitter) = cluster(&key("rooms"), rooms_from_auth).await;
    let (mut a, ida) = client(&server, &["er"]).await;
    let (mut b, _) = client(&server, &["ex"]).await;
    let (mut c, _) = client(&server, &["er", "ex"]).await;
    let (mut d, _) = client(&server, &[]).await;
    emitter.to("er").emit("sel", ("to",)).await.unwrap();
    emitter.in_(["er", "ex"]).except("ex").emit("sel", ("in-except",)).await.unwrap();
    emitter.except("er").emit("sel", ("except",)).await.unwrap();
    // a socket id excludes that socket; rooms given twice count once
    emitter.to("er").to(vec!["er"]).except(ida.as_str()).emit("sel", ("not-a",)).await.unwrap();
    emitter.emit("end", ()).await.unwrap();
    let want: [&[&str]; 4] = [&["to", "in-except"], &["except"], &["to", "not-a"], &["except"]];
    for (ws, want) in [&mut a, &mut b, &mut c, &mut d].into_iter().zip(want) {
        for w in want {
            ws.expect(&format!(r#"42["sel","{w}"]"#)).await;
        }
        ws.expect(r#"42["end"]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_reaches_that_namespace_only() {
    let (server, emitter) = cluster(&key("of"), rooms_from_auth).await;
    let (mut ws, _) = client(&server, &["r"]).await;
    ws.sio_connect("/custom", Some(json!({"rooms": ["r"]}))).await;
    let custom = emitter.of("custom");
    assert_eq!(custom.namespace(), "/custom", "a missing / is prefixed");
    custom.to("r").emit("ns", ("x",)).await.unwrap();
    emitter.of("/custom").emit("ns", ("y",)).await.unwrap();
    // a namespace the server does not have is ignored there
    emitter.of("/nowhere").emit("ns", ("z",)).await.unwrap();
    emitter.emit("root", ()).await.unwrap();
    ws.expect(r#"42/custom,["ns","x"]"#).await;
    ws.expect(r#"42/custom,["ns","y"]"#).await;
    ws.expect(r#"42["root"]"#).await;
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_and_compress_flags_are_delivered() {
    let (server, emitter) = cluster(&key("flags"), rooms_from_auth).await;
    let (mut ws, _) = client(&server, &["r"]).await;
    // an idle WebSocket client is ready: a volatile packet reaches it
    emitter.volatile().to("r").emit("v", (1,)).await.unwrap();
    ws.expect(r#"42["v",1]"#).await;
    emitter.to("r").compress(false).volatile().emit("v", (2,)).await.unwrap();
    ws.expect(r#"42["v",2]"#).await;
    emitter.compress(true).emit("c", ()).await.unwrap();
    ws.expect(r#"42["c"]"#).await;
    assert_eq!(server.io.volatile_dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_join_and_leave() {
    let (server, emitter) = cluster(&key("join"), rooms_from_auth).await;
    let (mut a, ida) = client(&server, &["a"]).await;
    let (mut b, idb) = client(&server, &["b"]).await;
    emitter.in_("a").sockets_join(["j", "k"]).await.unwrap();
    // applied before a broadcast published after it
    emitter.to("j").emit("in-j", ()).await.unwrap();
    a.expect(r#"42["in-j"]"#).await;
    let found = server.io.in_("k").fetch_sockets().await.unwrap();
    assert_eq!(found.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), vec![ida.clone()]);
    // every socket of the namespace
    emitter.sockets_join("all").await.unwrap();
    eventually(|| async { server.io.in_("all").fetch_sockets().await.unwrap().len() == 2 }).await;
    emitter.except("b").sockets_leave(["j", "all"]).await.unwrap();
    emitter.to("j").emit("in-j", ()).await.unwrap();
    emitter.to("all").emit("in-all", ()).await.unwrap();
    b.expect(r#"42["in-all"]"#).await;
    a.expect_silence(Duration::from_millis(200)).await;
    let ids = |found: Vec<shardcast::FetchedSocket>| {
        found.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(server.io.in_("all").fetch_sockets().await.unwrap()), vec![idb]);
    assert_eq!(ids(server.io.in_("k").fetch_sockets().await.unwrap()), vec![ida]);
    emitter.sockets_leave("k").await.unwrap();
    eventually(|| async { server.io.in_("k").fetch_sockets().await.unwrap().is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_sockets_with_and_without_close() {
    let (server, emitter) = cluster(&key("disconnect"), rooms_from_auth).await;
    let (mut a, _) = client(&server, &["d"]).await;
    let (mut b, _) = client(&server, &["c"]).await;
    let (mut other, _) = client(&server, &[]).await;
    emitter.in_("d").disconnect_sockets(false).await.unwrap();
    a.expect("41").await;
    // the connection stays: it can join `/` again
    a.sio_connect("/", None).await;
    emitter.to("c").disconnect_sockets(true).await.unwrap();
    b.expect_closed().await;
    emitter.emit("still-here", ()).await.unwrap();
    a.expect(r#"42["still-here"]"#).await;
    other.expect(r#"42["still-here"]"#).await;
    // every socket, its connection closed
    emitter.disconnect_sockets(true).await.unwrap();
    a.expect_closed().await;
    other.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_emit_reaches_the_server_side_listeners() {
    let (tx, mut rx) = common::channel();
    let setup = |io: &Server| {
        for nsp in ["/", "/custom"] {
            let tx = tx.clone();
            io.of(nsp).on_server_side_any(move |event, args, ack| {
                let _ = tx.send((nsp, event.to_owned(), args, ack.is_some()));
            });
        }
    };
    let (_server, emitter) = cluster(&key("sse"), setup).await;
    emitter.server_side_emit("notice", ("n", 2)).await.unwrap();
    let (nsp, event, args, acked) = common::recv(&mut rx).await;
    assert_eq!((nsp, event.as_str(), acked), ("/", "notice", false));
    assert_eq!(args, Args::new().arg("n").arg(2));
    // binary arguments arrive as binary
    let bin = Args::new().arg(json!({"k": [1]})).binary_arg(vec![7u8, 8]);
    emitter.of("custom").server_side_emit("bin", bin).await.unwrap();
    let (nsp, event, args, _) = common::recv(&mut rx).await;
    assert_eq!((nsp, event.as_str()), ("/custom", "bin"));
    assert_eq!(args.values()[0], json!({"k": [1]}));
    assert_eq!(args.get_binary(1).map(|b| b.to_vec()), Some(vec![7, 8]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_bad_urls_and_an_absent_redis_are_refused_by_name() {
    let (server, emitter) = cluster(&key("refused"), rooms_from_auth).await;
    let (mut ws, _) = client(&server, &[]).await;
    for name in
        ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]
    {
        let want = Err(EmitterError::ReservedEvent(name.to_owned()));
        assert_eq!(emitter.emit(name, ()).await, want);
        assert_eq!(emitter.to("r").volatile().emit(name, ("x",)).await, want);
        assert_eq!(emitter.server_side_emit(name, ()).await, want);
    }
    assert_eq!(
        EmitterError::ReservedEvent("connect".into()).to_string(),
        r#""connect" is a reserved event name"#,
        "the official emitter's words"
    );
    // nothing of the refused was sent
    emitter.emit("after", ()).await.unwrap();
    ws.expect(r#"42["after"]"#).await;
    assert!(matches!(Emitter::connect("http://nope").await, Err(EmitterError::InvalidUrl(_))));
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let absent = Emitter::connect(&format!("redis://127.0.0.1:{free}")).await;
    assert!(matches!(absent, Err(EmitterError::Redis(_))), "{absent:?}");
}

/// Redis restarted under an emitter (a private redis-server, killed and started again on
/// its port): the operation that finds the connection broken fails by name, and the same
/// emitter publishes again once Redis is back, without a new `connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_emitter_publishes_again_after_redis_restarts() {
    let port = process::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let redis = process::RedisServer::start(port);
    let k = key("restart");
    let config = common::config().redis(url.clone()).redis_key(&k).build().unwrap();
    let server = TestServer::start(config, rooms_from_auth);
    let emitter = Emitter::connect(&url).await.unwrap().key(&k);
    let (mut ws, _) = client(&server, &[]).await;
    emitter.emit("before", ()).await.unwrap();
    ws.expect(r#"42["before"]"#).await;
    drop(redis);
    let away = emitter.emit("away", ()).await;
    assert!(matches!(away, Err(EmitterError::Redis(_))), "{away:?}");
    let _redis = process::RedisServer::start(port);
    // The server resubscribes with its own backoff: publish until one arrives.
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    let got = loop {
        assert!(tokio::time::Instant::now() < end, "nothing arrived within 20 s of the restart");
        if emitter.emit("back", (sent,)).await.is_ok() {
            sent += 1;
        }
        match ws.next_within(Duration::from_millis(200)).await {
            Some(Frame::Text(t)) => break t,
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    };
    assert!(sent > 0, "no publish succeeded");
    assert!(got.starts_with(r#"42["back","#), "{got}");
    assert!(!got.contains("away"), "what failed is not sent later: {got}");
}

// ---------------------------------------------------------------------------------------
// Byte compatibility with the official emitter
// ---------------------------------------------------------------------------------------

/// The official emitter's operations, mirrored one for one by [`ours`]; prints what a raw
/// subscriber of `{key}*` got, in order, as JSON `[{channel, hex}]`.
const OFFICIAL: &str = r##"
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
const [url, key, count] = process.argv.slice(1);
const redis = createClient({ url }), raw = redis.duplicate();
await Promise.all([redis.connect(), raw.connect()]);
const seen = [];
await raw.pSubscribe(key + "*", (msg, channel) => seen.push({ channel: channel.toString(), hex: msg.toString("hex") }), true);
const e = new Emitter(redis, { key });
e.emit("plain");
e.emit("args", 1, "two", Buffer.from([1, 2, 3]), { a: [1.5, null], "é": "😀" }, -7, 2 ** 40, 0.25, true, null, "x".repeat(300));
e.to("r").emit("one-room", "x");
e.to(["a", "b"]).in("a").except("x").except(["y", "x"]).emit("rooms");
e.volatile.compress(false).emit("flags-vc");
e.compress(false).volatile.emit("flags-cv");
e.compress(true).compress(false).emit("flags-c");
e.except("x").volatile.emit("v-except");
e.of("custom").to("r").emit("ns", "y");
e.of("/custom").emit("ns2");
e.socketsJoin("j");
e.in("a").except("b").socketsJoin(["j", "k"]);
e.to("a").socketsLeave("j");
e.disconnectSockets();
e.in("a").disconnectSockets(true);
e.serverSideEmit("sse", 1, { x: "y\n\u0001é\u2028" }, [1.5, null, -0]);
e.of("/custom").serverSideEmit("sse2");
const end = Date.now() + 5000;
while (seen.length < Number(count) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
process.stdout.write(JSON.stringify(seen));
await Promise.all([redis.quit(), raw.quit()]);
"##;

/// How many messages [`OFFICIAL`] and [`ours`] publish.
const OPERATIONS: usize = 17;

/// [`OFFICIAL`]'s operations with our emitter.
async fn ours(e: &Emitter) -> Result<(), EmitterError> {
    e.emit("plain", ()).await?;
    let args = Args::new()
        .arg(1)
        .arg("two")
        .binary_arg(vec![1u8, 2, 3])
        .arg(json!({"a": [1.5, null], "é": "😀"}))
        .arg(-7)
        .arg(1u64 << 40)
        .arg(0.25)
        .arg(true)
        .arg(Value::Null)
        .arg("x".repeat(300));
    e.emit("args", args).await?;
    e.to("r").emit("one-room", ("x",)).await?;
    e.to(["a", "b"]).in_("a").except("x").except(["y", "x"]).emit("rooms", ()).await?;
    e.volatile().compress(false).emit("flags-vc", ()).await?;
    e.compress(false).volatile().emit("flags-cv", ()).await?;
    e.compress(true).compress(false).emit("flags-c", ()).await?;
    e.except("x").volatile().emit("v-except", ()).await?;
    e.of("custom").to("r").emit("ns", ("y",)).await?;
    e.of("/custom").emit("ns2", ()).await?;
    e.sockets_join("j").await?;
    e.in_("a").except("b").sockets_join(["j", "k"]).await?;
    e.to("a").sockets_leave("j").await?;
    e.disconnect_sockets(false).await?;
    e.in_("a").disconnect_sockets(true).await?;
    e.server_side_emit("sse", (1, json!({"x": "y\n\u{1}é\u{2028}"}), json!([1.5, null, -0.0])))
        .await?;
    e.of("/custom").server_side_emit("sse2", ()).await
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn node(script: &str, args: &[&str]) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster");
    if !std::path::Path::new(dir).join("node_modules/@socket.io/redis-emitter").exists() {
        let st =
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).status();
        assert!(st.is_ok_and(|s| s.success()), "npm ci in tests/cluster failed");
    }
    let out = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("node is needed for this test");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The official emitter and ours publish the same bytes on the same channels, in the same
/// order: equal byte for byte, not just after decoding (notepack.io writes map keys in
/// insertion order, so `opts` comes as the emitter builds it, `{rooms, flags, except}`, and
/// `flags` in the order they were set; JSON requests as `JSON.stringify` writes them).
///
/// Not compared, as they differ on purpose (docs/emitter.md): a server-side emit with
/// binary arguments (the official emitter's `JSON.stringify` turns a `Buffer` into
/// `{"type":"Buffer","data":[...]}`; ours is MessagePack, bytes kept), and reserved names
/// on a server-side emit (the official emitter sends them; ours refuses them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_what_the_official_emitter_publishes_byte_for_byte() {
    let key = key("bytes");
    let url = redis_url();
    let theirs: Value =
        serde_json::from_str(&node(OFFICIAL, &[&url, &key, &OPERATIONS.to_string()])).unwrap();
    let theirs: Vec<(String, String)> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["channel"].as_str().unwrap().to_owned(), m["hex"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(theirs.len(), OPERATIONS, "the official emitter published {theirs:?}");

    // the same raw subscription, then our operations (the Node run is over: only ours come)
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.expect("Redis is needed");
    pubsub.psubscribe(format!("{key}*")).await.unwrap();
    let emitter = Emitter::connect(&url).await.unwrap().key(key.as_str());
    ours(&emitter).await.unwrap();
    let mut messages = pubsub.on_message();
    let mut mine = Vec::new();
    while mine.len() < OPERATIONS {
        let msg = tokio::time::timeout(common::WAIT, messages.next())
            .await
            .unwrap_or_else(|_| panic!("only {} messages came: {mine:?}", mine.len()))
            .expect("subscription open");
        mine.push((msg.get_channel_name().to_owned(), hex(msg.get_payload_bytes())));
    }
    for (i, (t, m)) in theirs.iter().zip(&mine).enumerate() {
        assert_eq!(m, t, "operation {} differs (ours, theirs)", i + 1);
    }
    assert_eq!(mine, theirs);
}

//! The Redis Streams adapter (`redis_streams`, `@socket.io/redis-streams-adapter` 0.3's
//! protocol) between two servers in this process on the Redis at 127.0.0.1:6379
//! (`REDIS_URL` to use another), one stream per test: broadcasts (rooms, except, binary)
//! and the operations on sockets travel through the stream, in order, as the entries the
//! Node adapter writes; requests and answers over pub/sub (fetch, server-side emit with
//! ack, broadcast acks, the server count).

mod common;

use std::time::Duration;

use common::{config, TestServer, Ws};
use serde_json::{json, Value};
use shardcast::{Args, Config, Server};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn key(name: &str) -> String {
    format!("rs-{}-streams-{name}", std::process::id())
}

fn streams_config(key: &str) -> Config {
    config().redis(redis_url()).redis_key(key).redis_streams(true).build().unwrap()
}

fn rooms_from_auth(io: &Server) {
    io.on_connection(|s| {
        let auth = s.handshake().auth.clone();
        for r in auth["rooms"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str() {
                s.join(r);
            }
        }
        s.set_data(auth);
    });
}

fn pair(key: &str) -> (TestServer, TestServer) {
    (
        TestServer::start(streams_config(key), rooms_from_auth),
        TestServer::start(streams_config(key), rooms_from_auth),
    )
}

async fn connect(server: &TestServer, auth: Value) -> (Ws, String) {
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = ws.sio_connect("/", Some(auth)).await;
    (ws, id)
}

/// The stream's entries as (uid, nsp, type, data) from a fresh connection.
fn entries(stream: &str) -> Vec<(String, String, String, Option<String>)> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let raw: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut conn).unwrap();
    raw.into_iter()
        .map(|(_, f)| {
            let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            (get("uid").unwrap(), get("nsp").unwrap(), get("type").unwrap(), get("data"))
        })
        .collect()
}

fn drop_stream(stream: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(stream).query(&mut conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_and_socket_operations_travel_through_the_stream_in_order() {
    let k = key("bcast");
    drop_stream(&k);
    let (a, b) = pair(&k);
    let (mut wb, _) = connect(&b, json!({"rooms": ["r", "vip"]})).await;
    let (mut wb2, _) = connect(&b, json!({"rooms": ["r"]})).await;
    a.io.to("r").except("vip").emit("news", ("for r, not vip",)).unwrap();
    a.io.to("r").emit("bin", bytes::Bytes::from_static(&[1, 2, 3])).unwrap();
    a.io.in_("r").sockets_join("joined");
    a.io.to("joined").emit("after-join", ()).unwrap();
    wb2.expect(r#"42["news","for r, not vip"]"#).await;
    for ws in [&mut wb, &mut wb2] {
        ws.expect(r#"451-["bin",{"_placeholder":true,"num":0}]"#).await;
        assert_eq!(ws.binary().await, vec![1, 2, 3]);
    }
    // The join was applied on b before the broadcast that followed it, as it was sent.
    wb.expect(r#"42["after-join"]"#).await;
    wb2.expect(r#"42["after-join"]"#).await;
    let e = entries(&k);
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e.iter().all(|(_, nsp, _, _)| nsp == "/"));
    assert_eq!(
        e[0].3.as_deref(),
        Some(
            r#"{"packet":{"type":2,"data":["news","for r, not vip"]},"opts":{"rooms":["r"],"except":["vip"],"flags":{}}}"#
        )
    );
    assert_eq!(e.iter().map(|x| x.2.as_str()).collect::<Vec<_>>(), ["3", "3", "4", "3"]);
    assert!(!e[1].3.as_deref().unwrap().starts_with('{'), "binary as base64 MessagePack");
    // b's client in "vip" got nothing but the binary and the post-join broadcast.
    wb.expect_silence(Duration::from_millis(200)).await;
    drop_stream(&k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_answers_go_over_pub_sub() {
    let k = key("req");
    drop_stream(&k);
    let (a, b) = pair(&k);
    b.io.of("/").on_server_side("ping", |args, ack| {
        if let Some(ack) = ack {
            ack.send(Args::new().arg(json!({"pong": args.get::<i64>(0)})));
        }
    });
    assert_eq!(a.io.server_count().await, Ok(2));
    let (_wb, idb) = connect(&b, json!({"user": "bob", "rooms": ["q"]})).await;
    let found = a.io.in_("q").fetch_sockets().await.unwrap();
    assert_eq!(found.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), vec![idb.clone()]);
    let replies =
        a.io.server_side_emit_with_ack("ping", (7,), Duration::from_secs(5)).await.unwrap();
    assert_eq!(replies, vec![Args::new().arg(json!({"pong": 7}))]);
    // None of it is in the stream.
    assert!(entries(&k).is_empty(), "{:?}", entries(&k));
    drop_stream(&k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_acks_cross_servers() {
    let k = key("acks");
    drop_stream(&k);
    let (a, b) = pair(&k);
    let (mut wa, _) = connect(&a, json!({"rooms": ["q"]})).await;
    let (mut wb, _) = connect(&b, json!({"rooms": ["q"]})).await;
    let io = a.io.clone();
    let asked = tokio::spawn(async move {
        io.to("q").timeout(Duration::from_secs(3)).emit_with_ack("ask", ()).await
    });
    for (ws, answer) in [(&mut wa, "\"here\""), (&mut wb, "\"there\"")] {
        let got = ws.text().await;
        let ack_id: String = got[2..].chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(&got[2 + ack_id.len()..], r#"["ask"]"#);
        ws.send(&format!("43{ack_id}[{answer}]")).await;
    }
    let mut responses = asked.await.unwrap().expect("both answered");
    responses.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].1, Args::new().arg("there"));
    drop_stream(&k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_in_the_stream_before_a_server_started_is_not_replayed_to_it() {
    let k = key("late");
    drop_stream(&k);
    let a = TestServer::start(streams_config(&k), rooms_from_auth);
    a.io.emit("before", ()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = TestServer::start(streams_config(&k), rooms_from_auth);
    let (mut wb, _) = connect(&b, json!({})).await;
    a.io.emit("after", ()).unwrap();
    wb.expect(r#"42["after"]"#).await;
    wb.expect_silence(Duration::from_millis(200)).await;
    drop_stream(&k);
}

#[test]
fn sharded_and_streams_are_refused_together() {
    let err = config().redis(redis_url()).redis_sharded(true).redis_streams(true).build();
    assert_eq!(err.unwrap_err(), shardcast::ConfigError::RedisProtocols);
}

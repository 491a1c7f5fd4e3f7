//! The Rust API across a cluster: two servers in this process (each its own shards and its
//! Redis side) on the Redis at 127.0.0.1:6379 (`REDIS_URL` to use another), one key per
//! test. Remote sockets from `fetch_sockets` (id, handshake, rooms, data; emit, join,
//! leave, disconnect), `server_count`, server-side listeners with and without ack,
//! broadcast acks across servers, and `local` staying local.

mod common;

use std::time::Duration;

use common::{config, TestServer, Ws};
use serde_json::{json, Value};
use shardcast::{Args, Config, FetchedSocket, Server};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn cluster_config(key: &str) -> Config {
    config()
        .redis(redis_url())
        .redis_key(format!("rs-{}-{key}", std::process::id()))
        .build()
        .unwrap()
}

/// Two servers of one cluster, each set up by `setup`.
fn pair(key: &str, setup: impl Fn(&Server)) -> (TestServer, TestServer) {
    (TestServer::start(cluster_config(key), &setup), TestServer::start(cluster_config(key), &setup))
}

/// Joins each socket to the rooms its auth names (`{"rooms": [...]}`) and keeps its auth
/// as its data.
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

async fn connect(server: &TestServer, auth: Value) -> (Ws, String) {
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = ws.sio_connect("/", Some(auth)).await;
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
async fn remote_sockets_are_fetched_and_can_be_acted_on() {
    let (a, b) = pair("fetch", rooms_from_auth);
    let (mut ws, id) = connect(&b, json!({"user": "bob", "rooms": ["r"]})).await;
    let (_local_ws, local_id) = connect(&a, json!({"user": "ann", "rooms": ["r"]})).await;
    let found = a.io.in_("r").fetch_sockets().await.unwrap();
    assert_eq!(found.len(), 2);
    let remote = found.iter().find(|s| s.id() == id).expect("the remote socket");
    let local = found.iter().find(|s| s.id() == local_id).expect("the local socket");
    assert!(local.as_local().is_some());
    let FetchedSocket::Remote(r) = remote else { panic!("{remote:?} is not remote") };
    assert_eq!(r.data()["user"], "bob");
    let mut rooms: Vec<String> = r.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    let mut want = vec![id.clone(), "r".to_owned()];
    want.sort();
    assert_eq!(rooms, want);
    let hs = r.handshake();
    assert_eq!(hs["auth"]["user"], "bob");
    assert_eq!(hs["query"]["EIO"], "4");
    assert_eq!(hs["address"], "127.0.0.1");
    assert!(
        hs["issued"].as_u64().is_some() && hs["time"].as_str().is_some_and(|t| t.contains("GMT"))
    );
    // emit to it, make it join and leave, then disconnect it
    r.emit("hello", ("from-a",)).unwrap();
    ws.expect(r#"42["hello","from-a"]"#).await;
    r.join("x");
    eventually(|| async {
        let f = a.io.in_("x").fetch_sockets().await.unwrap();
        f.len() == 1 && f[0].id() == id
    })
    .await;
    r.leave("x");
    eventually(|| async { a.io.in_("x").fetch_sockets().await.unwrap().is_empty() }).await;
    r.disconnect(false);
    ws.expect("41").await;
    // a local fetch sees this server's sockets only
    let here = a.io.local().in_("r").fetch_sockets().await.unwrap();
    assert_eq!(here.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), vec![local_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_count_and_server_side_listeners() {
    let (a, b) = pair("sse", |io| {
        io.of("/").on_server_side("ping", |args, ack| {
            if let Some(ack) = ack {
                ack.send(Args::new().arg(json!({"pong": args.get::<i64>(0)})));
            }
        });
    });
    assert_eq!(a.io.server_count().await, Ok(2));
    assert_eq!(b.io.of("/nowhere").server_count().await, Ok(1), "only this server has /nowhere");
    let replies =
        a.io.server_side_emit_with_ack("ping", (7,), Duration::from_secs(5)).await.unwrap();
    assert_eq!(replies, vec![Args::new().arg(json!({"pong": 7}))]);
    // without ack, and a catch-all listener
    let (tx, mut rx) = common::channel();
    b.io.of("/").on_server_side_any(move |event, args, ack| {
        let _ = tx.send((event.to_owned(), args.get::<String>(0), ack.is_some()));
    });
    a.io.server_side_emit("notice", ("n",)).unwrap();
    assert_eq!(common::recv(&mut rx).await, ("notice".to_owned(), Some("n".to_owned()), false));
    // a server does not hear its own
    b.io.server_side_emit("own", ()).unwrap();
    a.io.server_side_emit("marker", ()).unwrap();
    assert_eq!(common::recv(&mut rx).await.0, "marker");
    // reserved names are refused before anything is sent
    assert!(a.io.server_side_emit("connect", ()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_acks_cross_servers() {
    let (a, b) = pair("acks", rooms_from_auth);
    let (mut wa, ida) = connect(&a, json!({"rooms": ["q"]})).await;
    let (mut wb, _idb) = connect(&b, json!({"rooms": ["q"]})).await;
    let io = a.io.clone();
    let asked = tokio::spawn(async move {
        io.to("q").timeout(Duration::from_secs(3)).emit_with_ack("ask", ()).await
    });
    for (ws, answer) in [(&mut wa, "\"here\""), (&mut wb, "\"there\"")] {
        let got = ws.text().await;
        let ack_id: String = got[2..].chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(&got[2 + ack_id.len()..], r#"["ask"]"#);
        ws.send(&format!("43{ack_id}[{answer},\"dropped\"]")).await;
    }
    let mut responses = asked.await.unwrap().expect("both answered");
    responses.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].0, None, "a remote reply carries no id");
    assert_eq!(responses[0].1, Args::new().arg("there"), "only the first argument crosses");
    assert_eq!(responses[1].0.as_deref(), Some(ida.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stays_local() {
    let (a, b) = pair("local", rooms_from_auth);
    let (mut wa, _) = connect(&a, json!({})).await;
    let (mut wb, _) = connect(&b, json!({})).await;
    a.io.local().emit("only-a", ()).unwrap();
    a.io.emit("both", ()).unwrap();
    wa.expect(r#"42["only-a"]"#).await;
    wa.expect(r#"42["both"]"#).await;
    wb.expect(r#"42["both"]"#).await;
    wb.expect_silence(Duration::from_millis(300)).await;
}

/// Sharded, with a dynamic pattern's namespaces: a room of one child is subscribed on its
/// own channel, and the same room deleted in another child does not unsubscribe it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_room_channels_follow_each_child_of_a_pattern() {
    let key = format!("rs-{}-sharded-dyn", std::process::id());
    let cfg = || config().redis(redis_url()).redis_key(&key).redis_sharded(true).build().unwrap();
    let setup = |io: &Server| {
        io.of_regex(regex::Regex::new(r"^/dyn-\d+$").unwrap()).on_connection(|s| s.join("x"));
    };
    let a = TestServer::start(cfg(), setup);
    let b = TestServer::start(cfg(), setup);
    let (mut c1, _) = Ws::open(b.addr).await;
    c1.sio_connect("/dyn-1", None).await;
    let (mut c2, _) = Ws::open(b.addr).await;
    c2.sio_connect("/dyn-2", None).await;
    // "x" in /dyn-2 loses its last member on b
    c2.send("41/dyn-2,").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // a one-room broadcast goes on the room's own channel: b must still hear /dyn-1's
    let dyn1 = a.io.of("/dyn-1");
    eventually(|| async { dyn1.server_count().await == Ok(2) }).await;
    dyn1.to("x").emit("hi", ()).unwrap();
    c1.expect(r#"42/dyn-1,["hi"]"#).await;
}

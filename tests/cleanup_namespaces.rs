//! `cleanup_empty_child_namespaces`: a dynamic pattern's namespace goes once its last socket
//! left, on every shard (and the Redis adapter unsubscribes from its channels); a new
//! connection to that name makes it again, and broadcasts reach it. Without the option the
//! namespace stays.

mod common;

use std::time::Duration;

use common::*;
use shardcast::Server;

fn games(io: &Server) {
    io.of_dynamic(|name, _| name.starts_with("/game-")).on_connection(|socket| {
        socket.on("message", |s, args, _| {
            let _ = s.emit("message-back", args);
        });
    });
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..250 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 5 s");
}

fn children(io: &Server) -> Vec<String> {
    let mut names = io.namespaces();
    names.retain(|n| n.starts_with("/game-"));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_child_namespace_goes_and_comes_back() {
    let server = TestServer::start(
        config().shards(2).cleanup_empty_child_namespaces(true).build().unwrap(),
        games,
    );
    let (mut a, _) = Ws::open(server.addr).await;
    a.sio_connect("/game-1", None).await;
    let (mut b, _) = Ws::open(server.addr).await;
    b.sio_connect("/game-1", None).await;
    let (mut c, _) = Ws::open(server.addr).await;
    c.sio_connect("/game-2", None).await;
    assert_eq!(children(&server.io), ["/game-1", "/game-2"]);

    a.send("41/game-1,").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(children(&server.io), ["/game-1", "/game-2"], "b is still in /game-1");
    drop(b);
    eventually("/game-1 removed", || children(&server.io) == ["/game-2"]).await;

    // Made again on the next connection; it works and broadcasts reach it.
    a.sio_connect("/game-1", None).await;
    assert_eq!(children(&server.io), ["/game-1", "/game-2"]);
    a.roundtrip("/game-1").await;
    server.io.of("/game-1").emit("news", ("again",)).unwrap();
    a.expect(r#"42/game-1,["news","again"]"#).await;

    // Without the option, an emptied child stays.
    let keep = TestServer::start(config().shards(2).build().unwrap(), games);
    let (mut d, _) = Ws::open(keep.addr).await;
    d.sio_connect("/game-9", None).await;
    d.send("41/game-9,").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(children(&keep.io), ["/game-9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_adapter_unsubscribes_from_a_removed_namespace() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("cleanup-{}-{}", std::process::id(), rand_token());
    let cfg =
        config().redis(url.clone()).redis_key(key.clone()).cleanup_empty_child_namespaces(true);
    let server = TestServer::start(cfg.build().unwrap(), games);
    let redis = redis::Client::open(url).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{key}-*#/game-5#*");
    let channels = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let pattern = pattern.clone();
        async move {
            let list: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            list.len()
        }
    };
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/game-5", None).await;
    let mut subscribed = 0;
    for _ in 0..250 {
        subscribed = channels(&mut conn).await;
        if subscribed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(subscribed >= 2, "the request and response channels of /game-5: {subscribed}");
    ws.send("41/game-5,").await;
    for _ in 0..250 {
        if channels(&mut conn).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still subscribed to /game-5's channels");
}

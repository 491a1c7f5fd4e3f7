//! Async middlewares against real databases: a namespace middleware that looks the
//! handshake's token up in PostgreSQL (127.0.0.1:5432, database `test`) and refuses with a
//! message and data, and a per-socket middleware that asks Redis (127.0.0.1:6379) whether
//! an event is banned. While a middleware waits (on a PostgreSQL advisory lock the test
//! holds), the same shard keeps serving its other connections.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use shardcast::ConnectError;
use tokio_postgres::NoTls;

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

async fn pg() -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(PG, NoTls).await.expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_awaits_postgres_and_the_shard_keeps_serving() {
    let tag = format!("{}_{}", std::process::id(), rand_token());
    let table = format!("shardcast_tokens_{tag}");
    let lock_key: i64 = 7_000_000 + i64::from(std::process::id());
    let admin = pg().await;
    admin
        .batch_execute(&format!("CREATE TABLE {table} (token text PRIMARY KEY, name text)"))
        .await
        .unwrap();
    admin.execute(&format!("INSERT INTO {table} VALUES ('good', 'alice')"), &[]).await.unwrap();

    let t = table.clone();
    let server = TestServer::start(config().shards(1).build().unwrap(), move |io| {
        let table = t.clone();
        io.of("/").use_async_middleware(move |socket| {
            let table = table.clone();
            async move {
                let token = socket.handshake().auth["token"].as_str().unwrap_or("").to_owned();
                // Its own connection: the query waits on the test's lock first.
                let (db, conn) = tokio_postgres::connect(PG, NoTls)
                    .await
                    .map_err(|e| ConnectError::new(format!("database: {e}")))?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                db.execute("SELECT pg_advisory_lock_shared($1)", &[&lock_key])
                    .await
                    .map_err(|e| ConnectError::new(format!("database: {e}")))?;
                let row = db
                    .query_opt(&format!("SELECT name FROM {table} WHERE token = $1"), &[&token])
                    .await
                    .map_err(|e| ConnectError::new(format!("database: {e}")))?;
                match row {
                    Some(r) => {
                        socket.set_data(json!({"name": r.get::<_, String>(0)}));
                        Ok(())
                    }
                    None => {
                        Err(ConnectError::new("unknown token").with_data(json!({"token": token})))
                    }
                }
            }
        });
        // A sync middleware after it sees what it left.
        io.of("/").use_middleware(|socket| match socket.data()["name"].as_str() {
            Some(_) => Ok(()),
            None => Err(ConnectError::new("no name")),
        });
        io.of("/").on_connection(|socket| {
            let _ = socket.emit("hello", (socket.data()["name"].clone(),));
            socket.on("message", |s, args, _| {
                let _ = s.emit("message-back", args);
            });
        });
    });

    // B connects while nothing holds the lock.
    let (mut b, _) = Ws::open(server.addr).await;
    b.send(r#"40{"token":"good"}"#).await;
    assert!(b.text().await.starts_with("40{\"sid\""));
    b.expect(r#"42["hello","alice"]"#).await;

    // The test takes the lock: A's middleware waits on it.
    let locker = pg().await;
    locker.execute("SELECT pg_advisory_lock($1)", &[&lock_key]).await.unwrap();
    let (mut a, _) = Ws::open(server.addr).await;
    a.send(r#"40{"token":"good"}"#).await;
    let (mut c, _) = Ws::open(server.addr).await;
    c.send(r#"40{"token":"bad"}"#).await;
    // Meanwhile the one shard serves B, round trip after round trip.
    for i in 0..5 {
        b.send(&format!(r#"42["message",{i}]"#)).await;
        b.expect(&format!(r#"42["message-back",{i}]"#)).await;
    }
    a.expect_silence(Duration::from_millis(300)).await;
    locker.execute("SELECT pg_advisory_unlock($1)", &[&lock_key]).await.unwrap();
    assert!(a.text().await.starts_with("40{\"sid\""));
    a.expect(r#"42["hello","alice"]"#).await;
    c.expect(r#"44{"message":"unknown token","data":{"token":"bad"}}"#).await;
    // A refused client may try again on the same connection.
    c.send(r#"40{"token":"good"}"#).await;
    assert!(c.text().await.starts_with("40{\"sid\""));

    // A connection that leaves while its middleware waits is forgotten.
    locker.execute("SELECT pg_advisory_lock($1)", &[&lock_key]).await.unwrap();
    let (mut gone, _) = Ws::open(server.addr).await;
    gone.send(r#"40{"token":"good"}"#).await;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    locker.execute("SELECT pg_advisory_unlock($1)", &[&lock_key]).await.unwrap();
    b.send(r#"42["message","still"]"#).await;
    b.expect(r#"42["message-back","still"]"#).await;

    admin.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_middleware_asks_redis() {
    let prefix = format!("shardcast-test:{}:{}:banned:", std::process::id(), rand_token());
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let conn = redis.get_multiplexed_async_connection().await.expect("Redis on 127.0.0.1:6379");
    let mut setter = conn.clone();
    let p = prefix.clone();
    let server = TestServer::start(config().build().unwrap(), move |io| {
        let (conn, prefix) = (conn.clone(), p.clone());
        io.of("/").on_connection(move |socket| {
            let (conn, prefix) = (conn.clone(), prefix.clone());
            socket.use_async_middleware(move |_socket, event, _args| {
                let (mut conn, key) = (conn.clone(), format!("{prefix}{event}"));
                async move {
                    let banned: bool = redis::AsyncCommands::exists(&mut conn, &key)
                        .await
                        .map_err(|e| format!("redis: {e}"))?;
                    if banned {
                        Err(format!("{event} is banned"))
                    } else {
                        Ok(())
                    }
                }
            });
            socket.on_error(|s, e| {
                let _ = s.emit("refused", (e.to_owned(),));
            });
            socket.on("message", |s, args, _| {
                let _ = s.emit("message-back", args);
            });
            socket.on("shout", |s, args, _| {
                let _ = s.emit("shout-back", args);
            });
        });
    });
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.sio_connect("/", None).await;
    let _: () = redis::AsyncCommands::set(&mut setter, format!("{prefix}shout"), 1).await.unwrap();
    ws.send(r#"42["message","hi"]"#).await;
    ws.expect(r#"42["message-back","hi"]"#).await;
    ws.send(r#"42["shout","HI"]"#).await;
    ws.expect(r#"42["refused","shout is banned"]"#).await;
    let _: () = redis::AsyncCommands::del(&mut setter, format!("{prefix}shout")).await.unwrap();
    ws.send(r#"42["shout","ok now"]"#).await;
    ws.expect(r#"42["shout-back","ok now"]"#).await;
}

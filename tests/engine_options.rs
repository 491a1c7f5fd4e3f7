//! The engine's options and hooks on raw HTTP and WebSocket: `allow_request` (awaiting,
//! refusing with the reference's 403 answer, handshakes only), the `initial_headers`,
//! `headers` and `connection_error` hooks, the `io` cookie, `add_trailing_slash`, and the
//! polling responses' `Cache-Control: no-store`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use shardcast::{Cookie, SameSite};
use tokio_tungstenite::tungstenite;

const HS: &str = "/socket.io/?EIO=4&transport=polling";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_awaits_refuses_and_runs_on_handshakes_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let server = TestServer::start(config().build().unwrap(), |io| {
        shardcast::app::install(io);
        let calls = calls.clone();
        io.engine().allow_request(move |req| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // An await on the shard, as a database lookup would.
                tokio::time::sleep(Duration::from_millis(20)).await;
                match req.headers.get("x-token") {
                    Some("ok") => Ok(()),
                    Some("quiet") => Err(String::new()),
                    _ => Err(format!("bad token from {}", req.address.ip())),
                }
            }
        });
        let errors = errors.clone();
        io.engine().on_connection_error(move |e| {
            errors.lock().unwrap().push((e.code, e.message, e.context.clone(), e.method.clone()));
        });
    });
    let addr = server.addr;

    let refused = request(addr, "GET", HS, &[], b"").await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        serde_json::json!({"code": 4, "message": "bad token from 127.0.0.1"})
    );
    let quiet = request(addr, "GET", HS, &[("x-token", "quiet")], b"").await;
    assert_eq!((quiet.status, quiet.json()["message"].as_str()), (403, Some("Forbidden")));

    // Accepted: the session works, and its polls and posts are not asked about.
    let ok = request(addr, "GET", HS, &[("x-token", "ok")], b"").await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let sid = serde_json::from_str::<serde_json::Value>(&ok.text()[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = calls.load(Ordering::SeqCst);
    post_ok(addr, &sid, "40").await;
    assert!(poll_packets(addr, &sid).await[0].starts_with("40{"));
    assert_eq!(calls.load(Ordering::SeqCst), before, "not run for requests with a sid");

    // Directly over WebSocket too.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    match Ws::connect_url(&url, &[]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = Ws::open_url(&url, &[("x-token", "ok")]).await;
    ws.sio_connect("/", None).await;

    // Every refusal reached the hook, with its code and context.
    let _ = request(addr, "GET", "/socket.io/?EIO=4&transport=carrier-pigeon", &[], b"").await;
    let _ = request(addr, "GET", "/socket.io/?EIO=4&transport=polling&sid=nope", &[], b"").await;
    let seen = errors.lock().unwrap().clone();
    let codes: Vec<u8> = seen.iter().map(|e| e.0).collect();
    assert_eq!(codes, vec![4, 4, 4, 0, 1], "{seen:?}");
    assert_eq!(seen[0].1, "Forbidden");
    assert_eq!(seen[0].2, "bad token from 127.0.0.1");
    assert_eq!(seen[0].3, "GET");
    assert!(seen[3].2.contains("carrier-pigeon"), "{seen:?}");
    assert!(seen[4].2.contains("nope"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_hooks_and_the_io_cookie() {
    let cookie = Cookie {
        max_age: Some(60),
        secure: true,
        same_site: Some(SameSite::None),
        ..Cookie::default()
    };
    let server = TestServer::start(config().cookie(cookie).build().unwrap(), |io| {
        shardcast::app::install(io);
        io.engine().on_initial_headers(|h, req| {
            h.insert("x-initial", req.address.ip().to_string().parse().unwrap());
        });
        io.engine().on_headers(|h, _req| {
            h.insert("x-every", "1".parse().unwrap());
        });
    });
    let addr = server.addr;
    let hs = request(addr, "GET", HS, &[], b"").await;
    let sid = serde_json::from_str::<serde_json::Value>(&hs.text()[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hs.header("x-initial"), Some("127.0.0.1"));
    assert_eq!(hs.header("x-every"), Some("1"));
    assert_eq!(hs.header("cache-control"), Some("no-store"));
    assert_eq!(
        hs.header("set-cookie"),
        Some(format!("io={sid}; Max-Age=60; Path=/; HttpOnly; Secure; SameSite=None").as_str())
    );
    let post = post(addr, &sid, "40").await;
    assert_eq!((post.header("x-every"), post.header("x-initial")), (Some("1"), None));
    assert_eq!(post.header("cache-control"), Some("no-store"));
    let get = poll(addr, &sid).await;
    assert_eq!((get.header("x-every"), get.header("x-initial")), (Some("1"), None));
    assert_eq!(get.header("set-cookie"), None, "the cookie comes with the handshake only");

    // The WebSocket's 101: both hooks on a direct handshake.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers().get("x-initial").map(|v| v.to_str().unwrap()), Some("127.0.0.1"));
    assert_eq!(resp.headers().get("x-every").map(|v| v.to_str().unwrap()), Some("1"));

    // Refusals are not Engine.IO answers: no hook headers.
    let bad = request(addr, "GET", "/socket.io/?EIO=4&transport=polling&sid=x", &[], b"").await;
    assert_eq!((bad.status, bad.header("x-every")), (400, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trailing_slash_is_an_option() {
    let with = TestServer::demo(config().path("/socket.io").build().unwrap());
    assert_eq!(with.io.config().path, "/socket.io/");
    assert_eq!(request(with.addr, "GET", HS, &[], b"").await.status, 200);
    let bare = "/socket.io?EIO=4&transport=polling";
    assert_eq!(request(with.addr, "GET", bare, &[], b"").await.status, 404);

    let without = TestServer::demo(config().add_trailing_slash(false).build().unwrap());
    assert_eq!(without.io.config().path, "/socket.io");
    let resp = request(without.addr, "GET", bare, &[], b"").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.text().starts_with("0{\"sid\""));
    assert!(config().path("/").add_trailing_slash(false).build().is_err());
}

//! CORS: off by default; an allow-list with credentials; any origin; preflights.

mod common;

use common::*;
use shardcast::{Cors, CorsOrigins};

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

fn listed() -> shardcast::Config {
    config()
        .cors(Cors { origins: CorsOrigins::List(vec!["http://a.test".into()]), credentials: true })
        .build()
        .unwrap()
}

fn has_any_cors_header(resp: &Resp) -> bool {
    resp.headers.iter().any(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_is_echoed_with_credentials() {
    let server = TestServer::demo(listed());
    let resp = request(server.addr, "GET", HANDSHAKE, &[("Origin", "http://a.test")], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
    assert!(
        resp.header_all("vary").iter().any(|v| v.to_ascii_lowercase().contains("origin")),
        "{resp:?}"
    );

    // Every Engine.IO answer carries them: POST, GET, and errors.
    let sid = serde_json::from_str::<serde_json::Value>(&resp.text()[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let post =
        request(server.addr, "POST", &poll_target(&sid), &[("Origin", "http://a.test")], b"40")
            .await;
    assert_eq!(post.text(), "ok");
    assert_eq!(post.header("access-control-allow-origin"), Some("http://a.test"));
    let get =
        request(server.addr, "GET", &poll_target(&sid), &[("Origin", "http://a.test")], b"").await;
    assert_eq!(get.status, 200);
    assert_eq!(get.header("access-control-allow-origin"), Some("http://a.test"));
    let err = request(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=nope",
        &[("Origin", "http://a.test")],
        b"",
    )
    .await;
    assert_eio_error(&err, 0, "Transport unknown");
    assert_eq!(err.header("access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(err.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_no_allow_origin() {
    let server = TestServer::demo(listed());
    for origin in ["http://b.test", "http://a.test.evil", "https://a.test", "http://A.TEST"] {
        let resp = request(server.addr, "GET", HANDSHAKE, &[("Origin", origin)], b"").await;
        assert_eq!(resp.status, 200, "{origin}");
        assert_eq!(resp.header("access-control-allow-origin"), None, "{origin}: {resp:?}");
    }
    // No Origin at all (same-origin or non-browser client).
    let resp = get(server.addr, HANDSHAKE).await;
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_is_answered_204() {
    let server = TestServer::demo(listed());
    let resp = request(
        server.addr,
        "OPTIONS",
        HANDSHAKE,
        &[
            ("Origin", "http://a.test"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-custom, content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(resp.status, 204, "{resp:?}");
    let methods = resp.header("access-control-allow-methods").expect("allow-methods");
    for m in ["GET", "POST"] {
        assert!(methods.split(',').any(|x| x.trim() == m), "{methods}");
    }
    assert_eq!(resp.header("access-control-allow-headers"), Some("x-custom, content-type"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://a.test"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
    assert!(resp.body.is_empty());

    // A preflight from an origin not on the list is not allowed.
    let resp = request(
        server.addr,
        "OPTIONS",
        HANDSHAKE,
        &[("Origin", "http://b.test"), ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert_eq!(resp.header("access-control-allow-origin"), None, "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin() {
    // Without credentials: `*`.
    let server = TestServer::demo(
        config().cors(Cors { origins: CorsOrigins::Any, credentials: false }).build().unwrap(),
    );
    let resp = request(server.addr, "GET", HANDSHAKE, &[("Origin", "http://x.test")], b"").await;
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(resp.header("access-control-allow-credentials"), None);
    drop(server);

    // With credentials `*` is not allowed by browsers: the origin is echoed.
    let server = TestServer::demo(
        config().cors(Cors { origins: CorsOrigins::Any, credentials: true }).build().unwrap(),
    );
    let resp = request(server.addr, "GET", HANDSHAKE, &[("Origin", "http://x.test")], b"").await;
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://x.test"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_off_sends_no_cors_headers() {
    let server = TestServer::demo(config().build().unwrap());
    let resp = request(server.addr, "GET", HANDSHAKE, &[("Origin", "http://a.test")], b"").await;
    assert_eq!(resp.status, 200);
    assert!(!has_any_cors_header(&resp), "{resp:?}");
    let resp = request(
        server.addr,
        "OPTIONS",
        HANDSHAKE,
        &[("Origin", "http://a.test"), ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert!(!has_any_cors_header(&resp), "{resp:?}");
    let resp = request(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=nope",
        &[("Origin", "http://a.test")],
        b"",
    )
    .await;
    assert!(!has_any_cors_header(&resp), "{resp:?}");
}

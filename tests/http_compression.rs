//! Long-polling response compression (`http_compression`, engine.io's `httpCompression`)
//! on raw HTTP: a large response is compressed as the client accepts, unless every packet
//! in it was emitted with `compress(false)`; `http_compression(false)` and the threshold are
//! honoured. (Against the reference, and with the official client: tests/interop/
//! compression.test.mjs.)

mod common;

use std::io::Read;

use common::*;
use shardcast::Config;

fn big() -> String {
    "x".repeat(3000)
}

fn start(config: Config) -> TestServer {
    TestServer::start(config, |io| {
        io.of("/").on_connection(|socket| {
            socket.on("plain", |s, _args, _ack| {
                let _ = s.compress(false).emit("big", (big(),));
            });
            socket.on("normal", |s, _args, _ack| {
                let _ = s.emit("big", (big(),));
            });
        });
    })
}

async fn session(addr: std::net::SocketAddr) -> String {
    let (sid, _) = handshake(addr).await;
    post_ok(addr, &sid, "40").await;
    let connected = poll_packets(addr, &sid).await;
    assert!(connected[0].starts_with("40{"), "{connected:?}");
    sid
}

/// Asks for `event`, then polls accepting gzip; returns the body (gunzipped when it came
/// compressed) and whether it did.
async fn fetch(addr: std::net::SocketAddr, sid: &str, event: &str) -> (String, bool) {
    post_ok(addr, sid, &format!(r#"42["{event}"]"#)).await;
    let resp = request(addr, "GET", &poll_target(sid), &[("Accept-Encoding", "gzip")], b"").await;
    assert_eq!(resp.status, 200);
    match resp.header("Content-Encoding") {
        None => (resp.text(), false),
        Some("gzip") => {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&resp.body[..]).read_to_string(&mut text).unwrap();
            (text, true)
        }
        Some(other) => panic!("content-encoding {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_unless_told_not_to() {
    let want = format!(r#"42["big","{}"]"#, big());
    let server = start(config().build().unwrap());
    let sid = session(server.addr).await;
    assert_eq!(fetch(server.addr, &sid, "normal").await, (want.clone(), true));
    assert_eq!(fetch(server.addr, &sid, "plain").await, (want.clone(), false), "compress(false)");

    let off = start(config().http_compression(false).build().unwrap());
    let sid = session(off.addr).await;
    assert_eq!(fetch(off.addr, &sid, "normal").await, (want.clone(), false), "turned off");

    let high = start(config().http_compression_threshold(4000).build().unwrap());
    let sid = session(high.addr).await;
    assert_eq!(fetch(high.addr, &sid, "normal").await, (want, false), "below the threshold");
}

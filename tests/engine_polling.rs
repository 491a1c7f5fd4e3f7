//! Engine.IO over HTTP long-polling: the handshake, the reference server's error answers,
//! payload batching, binary packets in base64, overlapping GETs and oversized POSTs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use shardcast::DisconnectReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_gives_sid_upgrades_and_config() {
    let cfg = config()
        .ping_interval(Duration::from_millis(12_345))
        .ping_timeout(Duration::from_millis(2_345))
        .max_payload(54_321)
        .build()
        .unwrap();
    let server = TestServer::demo(cfg);
    let resp = get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("text/plain"), "{resp:?}");
    let body = resp.text();
    assert!(body.starts_with("0{"), "{body:?}");
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    assert_eq!(sid.len(), 20, "{sid}");
    assert!(sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{sid}");
    assert_eq!(
        open,
        json!({"sid": sid, "upgrades": ["websocket"], "pingInterval": 12345, "pingTimeout": 2345, "maxPayload": 54321})
    );

    let (other, _) = handshake(server.addr).await;
    assert_ne!(other, sid, "each handshake opens a new session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upgrade_offered_when_upgrades_or_websocket_are_off() {
    for cfg in [config().allow_upgrades(false), config().websocket(false)] {
        let server = TestServer::demo(cfg.build().unwrap());
        let (_, open) = handshake(server.addr).await;
        assert_eq!(open["upgrades"], json!([]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_answered_as_the_reference_does() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;

    // Transport unknown: absent, misspelled.
    assert_eio_error(&get(addr, "/socket.io/?EIO=4").await, 0, "Transport unknown");
    assert_eio_error(
        &get(addr, "/socket.io/?EIO=4&transport=carrier-pigeon").await,
        0,
        "Transport unknown",
    );

    // Session ID unknown: well-formed but never issued, malformed, too long, for POST too.
    assert_eio_error(&poll(addr, "AAAAAAAAAAAAAAAAAAAA").await, 1, "Session ID unknown");
    assert_eio_error(&poll(addr, "abc").await, 1, "Session ID unknown");
    assert_eio_error(&poll(addr, "not%20a%20sid%20at%20all%20!!!").await, 1, "Session ID unknown");
    assert_eio_error(
        &poll(addr, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await,
        1,
        "Session ID unknown",
    );
    // A well-formed sid naming shard 255 (this server has 2).
    assert_eio_error(&poll(addr, "_8AAAAAAAAAAAAAAAAAA").await, 1, "Session ID unknown");
    assert_eio_error(&post(addr, "AAAAAAAAAAAAAAAAAAAA", "40").await, 1, "Session ID unknown");

    // Bad handshake method: a handshake must be a GET.
    let resp = request(addr, "POST", "/socket.io/?EIO=4&transport=polling", &[], b"40").await;
    assert_eio_error(&resp, 2, "Bad handshake method");

    // Unsupported protocol version: EIO=3, or none.
    assert_eio_error(
        &get(addr, "/socket.io/?EIO=3&transport=polling").await,
        5,
        "Unsupported protocol version",
    );
    assert_eio_error(
        &get(addr, "/socket.io/?transport=polling").await,
        5,
        "Unsupported protocol version",
    );

    // Bad request: transport=websocket without the upgrade headers.
    assert_eio_error(&get(addr, "/socket.io/?EIO=4&transport=websocket").await, 3, "Bad request");

    // Other paths are not ours.
    for path in ["/", "/other/?EIO=4&transport=polling", "/socket.i/?EIO=4&transport=polling"] {
        assert_eq!(get(addr, path).await.status, 404, "{path}");
    }

    // Nothing of this created a session: a real one still works.
    let (sid, _) = handshake(addr).await;
    post_ok(addr, &sid, "40").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_content_type_is_json() {
    let server = TestServer::demo(config().build().unwrap());
    let resp = get(server.addr, "/socket.io/?EIO=4&transport=nope").await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_transport_is_unknown() {
    let server = TestServer::demo(config().polling(false).build().unwrap());
    assert_eio_error(
        &get(server.addr, "/socket.io/?EIO=4&transport=polling").await,
        0,
        "Transport unknown",
    );
    // WebSocket still works.
    let (_ws, open) = Ws::open(server.addr).await;
    assert_eq!(open["upgrades"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_path() {
    let server = TestServer::demo(config().path("/rt/").build().unwrap());
    let resp = get(server.addr, "/rt/?EIO=4&transport=polling").await;
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with("0{"));
    assert_eq!(get(server.addr, "/socket.io/?EIO=4&transport=polling").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_several_packets_and_get_them_batched() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = handshake(addr).await;

    let resp =
        post(addr, &sid, &payload(&["40", r#"42["message","a"]"#, r#"42["message",{"b":[1,2]}]"#]))
            .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert!(resp.header("content-type").unwrap().starts_with("text/html"), "{resp:?}");

    let resp = poll(addr, &sid).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("text/plain"), "{resp:?}");
    let packets = split_payload(&resp.text());
    assert_eq!(packets.len(), 4, "{packets:?}");
    connect_ok_sid(&packets[0], "/");
    assert_eq!(packets[1], r#"42["auth",{}]"#);
    assert_eq!(packets[2], r#"42["message-back","a"]"#);
    assert_eq!(packets[3], r#"42["message-back",{"b":[1,2]}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_get_is_answered_when_data_arrives() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;

    let sid2 = sid.clone();
    let pending = tokio::spawn(async move { poll_packets(addr, &sid2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "a GET with nothing to send must wait");
    post_ok(addr, &sid, r#"42["message","late"]"#).await;
    let packets = pending.await.unwrap();
    assert_eq!(packets, vec![r#"42["message-back","late"]"#.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_attachments_travel_as_base64() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;

    // [1, 2, 3] is "AQID"; [0xff, 0xfe] is "//4=".
    let body = payload(&[
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        "bAQID",
        "b//4=",
    ]);
    post_ok(addr, &sid, &body).await;
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(
        packets,
        vec![
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
                .to_owned(),
            "bAQID".to_owned(),
            "b//4=".to_owned(),
        ]
    );

    // Binary ack: 451-<id>[...] is acknowledged with 461-<id>[...].
    post_ok(
        addr,
        &sid,
        &payload(&[r#"451-7["message-with-ack",{"_placeholder":true,"num":0}]"#, "bAAEC"]),
    )
    .await;
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(
        packets,
        vec![r#"461-7[{"_placeholder":true,"num":0}]"#.to_owned(), "bAAEC".to_owned()]
    );

    // The header and its attachment may come in separate POSTs.
    post_ok(addr, &sid, r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    post_ok(addr, &sid, "bAQID").await;
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(
        packets,
        vec![
            r#"451-["message-back",{"_placeholder":true,"num":0}]"#.to_owned(),
            "bAQID".to_owned()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_gets_close_the_session() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;

    let (s1, s2) = (sid.clone(), sid.clone());
    let first = tokio::spawn(async move { poll(addr, &s1).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = tokio::spawn(async move { poll(addr, &s2).await });
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    // Whichever arrived second is refused; the one that was waiting is released.
    let (refused, released) = if a.status == 400 { (a, b) } else { (b, a) };
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!(
        split_payload(&released.text()).last().map(String::as_str),
        Some("1"),
        "{released:?}"
    );

    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_post_is_refused_with_413_and_closes_the_session() {
    let (server, mut probe) = TestServer::probe(config().max_payload(1_000).build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;

    let big = format!(r#"42["message","{}"]"#, "x".repeat(2_000));
    let resp = post(addr, &sid, &big).await;
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
    assert_session_gone(addr, &sid).await;

    // Exactly max_payload is fine.
    let (sid, _) = polling_session(addr).await;
    let filler = 1_000 - r#"42["message",""]"#.len();
    let exact = format!(r#"42["message","{}"]"#, "y".repeat(filler));
    assert_eq!(exact.len(), 1_000);
    post_ok(addr, &sid, &exact).await;
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(packets.len(), 1);
    assert!(packets[0].starts_with(r#"42["message-back","yyy"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_chunked_post_is_refused_with_413() {
    let (server, mut probe) = TestServer::probe(config().max_payload(1_000).build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;

    // No Content-Length: the limit applies while the body streams in.
    let chunk = "x".repeat(600);
    let part1 = format!("42[\"message\",\"{chunk}");
    let part2 = format!("{chunk}\"]");
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{part1}\r\n{:x}\r\n{part2}\r\n0\r\n\r\n",
        poll_target(&sid),
        part1.len(),
        part2.len(),
    );
    let resp = parse_response(&raw_exchange(addr, raw.as_bytes()).await).expect("a response");
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_packet_ends_the_session() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    post_ok(addr, &sid, "1").await;
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportClose);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disconnect_over_polling_sends_disconnect_then_close() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;
    post_ok(addr, &sid, r#"42["disconnect-me"]"#).await;
    // DISCONNECT first, CLOSE in a later response (the reference's order after "drain").
    let mut seen = Vec::new();
    while !seen.contains(&"1".to_owned()) {
        let resp = poll(addr, &sid).await;
        assert_eq!(resp.status, 200, "{resp:?} after {seen:?}");
        seen.extend(split_payload(&resp.text()));
    }
    assert_eq!(seen, vec!["41".to_owned(), "1".to_owned()]);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_info_reaches_the_socket() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let resp = request(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling&room=blue&n=1",
        &[("X-Client", "rust-tests"), ("User-Agent", "probe/1.0")],
        b"",
    )
    .await;
    let sid = serde_json::from_str::<serde_json::Value>(&resp.text()[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    post_ok(addr, &sid, r#"40{"token":"t0"}"#).await;
    let socket = probe.socket().await;
    let hs = socket.handshake();
    assert_eq!(hs.auth, json!({"token": "t0"}));
    assert_eq!(hs.query_param("room"), Some("blue"));
    assert_eq!(hs.query_param("n"), Some("1"));
    assert_eq!(hs.query_param("transport"), Some("polling"));
    assert_eq!(hs.headers.get("x-client").unwrap(), "rust-tests");
    assert_eq!(hs.headers.get("user-agent").unwrap(), "probe/1.0");
    assert!(hs.address.ip().is_loopback());
    assert!(hs.url.starts_with("/socket.io/?EIO=4&transport=polling"), "{}", hs.url);
    let packets = poll_packets(addr, &sid).await;
    assert_eq!(packets[1], r#"42["auth",{"token":"t0"}]"#);
}

/// Starts a polling GET on a raw connection and abandons it while it waits.
async fn abandon_poll(addr: std::net::SocketAddr, sid: &str) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {} HTTP/1.1\r\nHost: {addr}\r\n\r\n", poll_target(sid));
    tcp.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_for_an_abandoned_poll_is_not_silently_lost() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    let socket = probe.socket().await;
    abandon_poll(addr, &sid).await;
    // The session may already be gone (closed when the poll was dropped): then this fails.
    let _ = socket.emit("into-the-void", ());
    // Either the session ends (the reference's "poll connection closed prematurely"), or
    // the packet is still delivered by the next poll: never lost with the session going on.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = tokio::time::timeout(Duration::from_secs(2), poll(addr, &sid)).await;
    match resp {
        Ok(resp) if resp.status == 400 => {
            assert_eio_error(&resp, 1, "Session ID unknown");
            assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
        }
        Ok(resp) => {
            let packets = split_payload(&resp.text());
            assert!(
                packets.contains(&r#"42["into-the-void"]"#.to_owned())
                    || packets.last().map(String::as_str) == Some("1"),
                "{packets:?}"
            );
        }
        Err(_) => panic!("the packet was lost: the next poll waits with the session still open"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_poll_closes_the_session() {
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    abandon_poll(addr, &sid).await;
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
    assert_session_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_posts_close_the_session() {
    use tokio::io::AsyncWriteExt;
    let (server, mut probe) = TestServer::probe(config().build().unwrap());
    let addr = server.addr;
    let (sid, id) = polling_session(addr).await;
    // A POST whose body is still arriving...
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 20\r\n\r\n42[\"mes",
        poll_target(&sid)
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...and a second one meanwhile.
    let resp = post(addr, &sid, r#"42["message","x"]"#).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::TransportError);
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_serves_several_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();

    async fn exchange(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, req: String) -> Resp {
        tcp.write_all(req.as_bytes()).await.unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if let Some(resp) = parse_response(buf) {
                        let len: usize = resp.header("content-length").unwrap().parse().unwrap();
                        buf.drain(..head_end + 4 + len);
                        return resp;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("keep-alive response timed out")
    }

    let open = exchange(
        &mut tcp,
        &mut buf,
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    let sid = serde_json::from_str::<serde_json::Value>(&open.text()[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = r#"40"#;
    let ok = exchange(
        &mut tcp,
        &mut buf,
        format!(
            "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            poll_target(&sid),
            body.len()
        ),
    )
    .await;
    assert_eq!(ok.text(), "ok");
    let got = exchange(
        &mut tcp,
        &mut buf,
        format!("GET {} HTTP/1.1\r\nHost: {addr}\r\n\r\n", poll_target(&sid)),
    )
    .await;
    let packets = split_payload(&got.text());
    connect_ok_sid(&packets[0], "/");
    // The same connection can then carry the upgrade.
    let upgrade = format!(
        "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&buf));
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let inner = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut ws = Ws { inner, auto_pong: true };
    ws.send("2probe").await;
    ws.expect("3probe").await;
    ws.send("5").await;
    ws.roundtrip("/").await;
}

/// JSONP polling (`j`): engine.io serves it for protocol 4 too; each payload is a script
/// `___eio[J]("...");` and a POST is the form field `d`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_polling() {
    let server = TestServer::demo(config().build().unwrap());
    let addr = server.addr;
    let script = |body: String| -> String {
        let inner = body.strip_prefix("___eio[7](").and_then(|b| b.strip_suffix(");")).unwrap();
        serde_json::from_str(inner).unwrap()
    };
    let resp = get(addr, "/socket.io/?EIO=4&transport=polling&j=7x").await;
    let open: serde_json::Value = serde_json::from_str(&script(resp.text())[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let url = format!("{}&j=7", poll_target(&sid));
    let form =
        |d: &str| form_urlencoded::Serializer::new(String::new()).append_pair("d", d).finish();
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let resp = request(
        addr,
        "POST",
        &url,
        &headers,
        form(&payload(&["40", r#"42["message","x\\ny"]"#])).as_bytes(),
    )
    .await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{resp:?}");
    let got = split_payload(&script(get(addr, &url).await.text()));
    assert_eq!(got.len(), 3, "{got:?}");
    connect_ok_sid(&got[0], "/");
    assert_eq!(&got[1..], [r#"42["auth",{}]"#, r#"42["message-back","x\ny"]"#]);
}

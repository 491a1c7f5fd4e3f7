//! Engine.IO protocol 3 (socket.io-client 2.x; `allow_eio3`) on the wire, with raw HTTP and
//! WebSocket clients: refused unless allowed; `<utf16 length>:<packet>` polling payloads and
//! the XHR2 binary payload form; client pings; binary frames with the type byte; the
//! implicit `/`, bare CONNECT answers, `/nsp#sid` socket ids, namespace queries as auth,
//! CONNECT_ERROR forms; the upgrade; a broadcast reaching v3 and v4 clients alike.
//! (tests/interop/eio3.test.mjs runs the real socket.io-client 2.x.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shardcast::{ConnectError, DisconnectReason};

fn v3_config() -> shardcast::ConfigBuilder {
    config().allow_eio3(true)
}

/// Protocol 3 with a 300 ms ping interval and a 200 ms ping timeout.
fn fast_heartbeat() -> shardcast::Config {
    v3_config()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// A v3 WebSocket session, opened at `url`, past its implicit `/` connect and the demo
/// app's `auth` event; returns it and the open packet's JSON.
async fn v3_ws(url: &str) -> (Ws, Value) {
    let (mut ws, open) = Ws::open_url(url, &[]).await;
    ws.expect("40").await;
    ws.expect(r#"42["auth",{}]"#).await;
    (ws, open)
}

/// `<utf16 length>:<packet>` for each packet.
fn v3_payload(packets: &[&str]) -> String {
    packets.iter().map(|p| format!("{}:{p}", p.encode_utf16().count())).collect()
}

/// Splits a v3 text payload into its packets, checking every length prefix (UTF-16 units).
#[track_caller]
fn v3_split(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(':').unwrap_or_else(|| panic!("no length in {body:?}"));
        let units: usize = len.parse().unwrap_or_else(|_| panic!("bad length {len:?} in {body:?}"));
        let mut taken = 0;
        let mut end = 0;
        for (i, c) in tail.char_indices() {
            if taken == units {
                end = i;
                break;
            }
            taken += c.len_utf16();
            end = i + c.len_utf8();
        }
        assert_eq!(taken, units, "length {units} runs past the body {body:?}");
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

fn target(sid: &str, extra: &str) -> String {
    format!("/socket.io/?EIO=3&transport=polling&sid={sid}{extra}")
}

/// A v3 polling handshake (`b64=1` when `base64`): the sid and the open packet's JSON, after
/// checking the framing.
async fn v3_handshake(addr: std::net::SocketAddr, extra: &str) -> (String, Value) {
    let resp = get(addr, &format!("/socket.io/?EIO=3&transport=polling{extra}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("text/plain; charset=UTF-8"));
    let packets = v3_split(&resp.text());
    assert_eq!(packets.len(), 1, "{packets:?}");
    let open: Value = serde_json::from_str(packets[0].strip_prefix('0').expect("open")).unwrap();
    (open["sid"].as_str().unwrap().to_owned(), open)
}

async fn v3_poll(addr: std::net::SocketAddr, sid: &str, extra: &str) -> Vec<String> {
    let resp = get(addr, &target(sid, extra)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    v3_split(&resp.text())
}

async fn v3_post(addr: std::net::SocketAddr, sid: &str, body: &str) -> Resp {
    let headers = [("Content-Type", "text/plain;charset=UTF-8")];
    request(addr, "POST", &target(sid, ""), &headers, body.as_bytes()).await
}

async fn v3_post_ok(addr: std::net::SocketAddr, sid: &str, body: &str) {
    let resp = v3_post(addr, sid, body).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "POST {body:?}: {resp:?}");
}

/// Polls until the session is gone (GETs in between may carry what was queued and CLOSE).
async fn v3_gone(addr: std::net::SocketAddr, sid: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "session {sid} still alive");
        let resp = get(addr, &target(sid, "")).await;
        if resp.status == 400 {
            assert_eio_error(&resp, 1, "Session ID unknown");
            return;
        }
    }
}

fn v3_ws_url(addr: std::net::SocketAddr, extra: &str) -> String {
    format!("ws://{addr}/socket.io/?EIO=3&transport=websocket{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_is_refused_unless_allowed() {
    let server = TestServer::demo(config().build().unwrap());
    for q in ["EIO=3&", "EIO=2&", ""] {
        let resp = get(server.addr, &format!("/socket.io/?{q}transport=polling")).await;
        assert_eio_error(&resp, 5, "Unsupported protocol version");
    }
    let refused = Ws::connect_url(&v3_ws_url(server.addr, ""), &[]).await;
    assert!(refused.is_err(), "a v3 WebSocket was accepted");

    let server = TestServer::demo(v3_config().build().unwrap());
    // As the reference: anything but EIO=4, a missing EIO too, is protocol 3.
    for q in ["EIO=3&", ""] {
        let resp = get(server.addr, &format!("/socket.io/?{q}transport=polling")).await;
        assert!(v3_split(&resp.text())[0].starts_with("0{"), "{resp:?}");
    }
    let (_, open) = handshake(server.addr).await;
    assert_eq!(open["upgrades"], json!(["websocket"]), "v4 is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_framing_and_the_implicit_root_namespace() {
    let cfg = v3_config()
        .ping_interval(Duration::from_millis(2000))
        .ping_timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let server = TestServer::demo(cfg);
    let (sid, open) = v3_handshake(server.addr, "&b64=1").await;
    assert_eq!(
        open,
        json!({"sid": sid, "upgrades": ["websocket"], "pingInterval": 2000, "pingTimeout": 1000, "maxPayload": 1000000})
    );
    // Connected to `/` without asking: a bare CONNECT, then the demo app's `auth` event.
    let got = v3_poll(server.addr, &sid, "&b64=1").await;
    assert_eq!(got, vec!["40", r#"42["auth",{}]"#]);
    // A CONNECT for `/`, already joined, closes the connection as socket.io does.
    v3_post_ok(server.addr, &sid, &v3_payload(&["40"])).await;
    v3_gone(server.addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_count_utf16_units_both_ways() {
    let server = TestServer::demo(v3_config().build().unwrap());
    let (sid, _) = v3_handshake(server.addr, "&b64=1").await;
    v3_poll(server.addr, &sid, "").await;
    let text = "é€😀 ключ";
    let event = format!(r#"420["message-with-ack","{text}"]"#);
    let body = v3_payload(&[&event]);
    // 35 UTF-16 units in 44 UTF-8 bytes.
    assert_eq!((event.encode_utf16().count(), event.len()), (35, 44));
    assert!(body.starts_with("35:"), "{body}");
    v3_post_ok(server.addr, &sid, &body).await;
    let raw = get(server.addr, &target(&sid, "")).await.text();
    let ack = format!(r#"430["{text}"]"#);
    assert_eq!(raw, format!("{}:{ack}", ack.encode_utf16().count()));
    assert_eq!(v3_split(&raw), vec![ack]);

    // The UTF-8 byte length instead: a parse error, and the session is gone.
    let bad = format!("{}:{event}", event.len());
    let resp = v3_post(server.addr, &sid, &bad).await;
    assert_eio_error(&resp, 3, "Bad request");
    v3_gone(server.addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_pings_and_the_server_answers() {
    let cfg = fast_heartbeat();
    let (server, mut probe) = TestServer::probe(cfg);
    let addr = server.addr;
    let (sid, _) = v3_handshake(addr, "&b64=1").await;
    let root = probe.socket().await;
    assert_eq!(root.id(), sid, "a v3 client's socket in / is named after its session");
    assert_eq!(root.conn().protocol, 3);
    v3_poll(addr, &sid, "").await;
    // Pings keep the session past interval + timeout (500 ms); each gets a bare PONG, and the
    // server never pings.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        v3_post_ok(addr, &sid, &v3_payload(&["2"])).await;
        assert_eq!(v3_poll(addr, &sid, "").await, vec!["3"]);
    }
    v3_post_ok(addr, &sid, &v3_payload(&["2probe"])).await;
    assert_eq!(v3_poll(addr, &sid, "").await, vec!["3"], "a ping's data is not echoed");
    // Then silence: closed once interval + timeout passed since the last ping.
    let started = std::time::Instant::now();
    let last = get(addr, &target(&sid, "")).await;
    assert_eq!(v3_split(&last.text()), vec!["1"], "{last:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(350), "closed after {waited:?}");
    assert_eq!(probe.reason_of(&sid).await, DisconnectReason::PingTimeout);

    // A PONG from a v3 client is the wrong direction: the session closes.
    let (sid, _) = v3_handshake(addr, "&b64=1").await;
    let _ = probe.socket().await;
    v3_post_ok(addr, &sid, &v3_payload(&["3"])).await;
    assert_eq!(probe.reason_of(&sid).await, DisconnectReason::TransportError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_over_polling_base64_and_xhr2() {
    let server = TestServer::demo(v3_config().build().unwrap());
    let addr = server.addr;
    let header = r#"451-["message",{"_placeholder":true,"num":0}]"#;
    let back = r#"451-["message-back",{"_placeholder":true,"num":0}]"#;

    // b64=1 (socket.io-client 2.x in Node): `b4` + base64 both ways; the header and its
    // attachment may come in different POSTs.
    let (sid, _) = v3_handshake(addr, "&b64=1").await;
    v3_poll(addr, &sid, "").await;
    v3_post_ok(addr, &sid, &v3_payload(&[header])).await;
    v3_post_ok(addr, &sid, &v3_payload(&["b4CQgH"])).await;
    assert_eq!(v3_poll(addr, &sid, "&b64=1").await, vec![back, "b4CQgH"]);

    // No b64 (a browser's XHR2): a batch with binary comes as the binary payload form.
    let (sid, _) = v3_handshake(addr, "").await;
    assert_eq!(
        v3_poll(addr, &sid, "").await,
        vec!["40", r#"42["auth",{}]"#],
        "text without binary"
    );
    v3_post_ok(addr, &sid, &v3_payload(&[header, "b4AQID"])).await;
    let resp = get(addr, &target(&sid, "")).await;
    assert_eq!(resp.header("content-type"), Some("application/octet-stream"));
    assert_eq!(back.len(), 50);
    let mut want = vec![0u8, 5, 0, 255];
    want.extend_from_slice(back.as_bytes());
    want.extend_from_slice(&[1, 4, 255, 4, 1, 2, 3]);
    assert_eq!(resp.body, want);

    // ... and may POST one (application/octet-stream).
    assert_eq!(header.len(), 45);
    let mut body = vec![0u8, 4, 5, 255];
    body.extend_from_slice(header.as_bytes());
    body.extend_from_slice(&[1, 3, 255, 4, 0xaa, 0xbb]);
    let headers = [("Content-Type", "application/octet-stream")];
    let resp = request(addr, "POST", &target(&sid, ""), &headers, &body).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{resp:?}");
    let resp = get(addr, &target(&sid, "")).await;
    let mut want = vec![0u8, 5, 0, 255];
    want.extend_from_slice(back.as_bytes());
    want.extend_from_slice(&[1, 3, 255, 4, 0xaa, 0xbb]);
    assert_eq!(resp.body, want);

    // A bad binary payload closes the session, with a 400.
    let resp = request(addr, "POST", &target(&sid, ""), &headers, &[0, 9, 9, 255, b'4']).await;
    assert_eio_error(&resp, 3, "Bad request");
    v3_gone(addr, &sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_binary_frames_carry_the_type_byte() {
    let server = TestServer::demo(v3_config().build().unwrap());
    let (mut ws, open) = Ws::open_url(&v3_ws_url(server.addr, ""), &[]).await;
    ws.auto_pong = false;
    assert_eq!(open["upgrades"], json!([]));
    ws.expect("40").await;
    ws.expect(r#"42["auth",{}]"#).await;
    ws.send("2").await;
    ws.expect("3").await;
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 9, 8, 7]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![4, 9, 8, 7]);
    // `b4` text frames are binary too.
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send("b4Bwc=").await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![4, 7, 7]);
    // A binary frame that is not a message: a parse error closes this connection.
    ws.send_binary(&[7, 7]).await;
    ws.expect_closed().await;

    // b64=1 on the WebSocket: binary goes out as `b4` text frames.
    let (mut ws, _) = v3_ws(&v3_ws_url(server.addr, "&b64=1")).await;
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 1, 2, 3]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    ws.expect("b4AQID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_ids_auth_and_disconnects() {
    let (server, mut probe) = TestServer::probe(v3_config().build().unwrap());
    let (mut ws, open) = v3_ws(&v3_ws_url(server.addr, "&foo=bar")).await;
    let sid = open["sid"].as_str().unwrap().to_owned();
    let root = probe.socket().await;
    // The namespace's query is its auth; the reply is a bare CONNECT.
    ws.send("40/custom?token=x&n=1&token=y,").await;
    ws.expect("40/custom,").await;
    ws.expect(r#"42/custom,["auth",{"token":"y","n":"1"}]"#).await;
    let custom = probe.socket().await;
    assert_eq!(root.id(), sid);
    let id = format!("/custom#{sid}");
    assert_eq!(custom.id(), id);
    assert_eq!(custom.rooms(), vec![shardcast::Room::from(id.as_str())]);
    assert_eq!(custom.handshake().query_param("foo"), Some("bar"));
    assert_eq!(custom.handshake().query_param("EIO"), Some("3"));
    // Its own room reaches it, from the namespace and the server's fetch.
    server.io.of("/custom").to(id.as_str()).emit("to-self", (1,)).unwrap();
    ws.expect(r#"42/custom,["to-self",1]"#).await;
    let fetched = server.io.of("/custom").to(id.as_str()).fetch_sockets().await.unwrap();
    assert_eq!(fetched.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), vec![id.clone()]);
    // Packets with a query in their namespace go to the namespace.
    ws.send(r#"42/custom?x=1,["message","q"]"#).await;
    ws.expect(r#"42/custom,["message-back","q"]"#).await;
    // Disconnecting the /custom socket leaves / alone (the two share one id).
    custom.disconnect(false);
    ws.expect("41/custom,").await;
    assert_eq!(probe.reason_of(&id).await, DisconnectReason::ServerNamespaceDisconnect);
    ws.roundtrip("/").await;
    // The client leaving a namespace.
    ws.send("40/other,").await;
    ws.expect("40/other,").await;
    ws.expect(r#"42/other,["auth",{}]"#).await;
    ws.send("41/other,").await;
    assert_eq!(
        probe.reason_of(&format!("/other#{sid}")).await,
        DisconnectReason::ClientNamespaceDisconnect
    );
    root.disconnect(false);
    ws.expect("41").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_as_protocol_4_sends_them() {
    let cfg = v3_config().connect_timeout(Duration::from_millis(800)).build().unwrap();
    let server = TestServer::start(cfg, |io| {
        shardcast::app::install(io);
        io.of("/secret").use_middleware(|s| {
            match s.handshake().auth.get("token").and_then(Value::as_str) {
                Some("ok") => Ok(()),
                Some(_) => Err(ConnectError::new("bad").with_data(json!({"reason": "bad token"}))),
                None => Err(ConnectError::new("not authorized")),
            }
        });
        io.of("/secret").on_connection(|_| {});
    });
    let (mut ws, _) = v3_ws(&v3_ws_url(server.addr, "")).await;
    ws.send("40/secret,").await;
    ws.expect(r#"44/secret,"not authorized""#).await;
    ws.send("40/secret?token=no,").await;
    ws.expect(r#"44/secret,{"reason":"bad token"}"#).await;
    ws.send("40/secret?token=ok,").await;
    ws.expect("40/secret,").await;
    ws.send("40/nope,").await;
    ws.expect(r#"44/nope,{"message":"Invalid namespace"}"#).await;

    // Refused on `/`: the error has no namespace, and the connection, in no namespace,
    // ends at the connect timeout.
    let server = TestServer::start(
        v3_config().connect_timeout(Duration::from_millis(800)).build().unwrap(),
        |io| {
            io.of("/").use_middleware(|_| Err(ConnectError::new("root denied")));
        },
    );
    let (mut ws, _) = Ws::open_url(&v3_ws_url(server.addr, ""), &[]).await;
    ws.expect(r#"44"root denied""#).await;
    let started = std::time::Instant::now();
    ws.expect_closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_websocket_keeps_the_heartbeat() {
    let cfg = fast_heartbeat();
    let (server, mut probe) = TestServer::probe(cfg);
    let addr = server.addr;
    let (sid, _) = v3_handshake(addr, "&b64=1").await;
    let _root = probe.socket().await;
    assert_eq!(v3_poll(addr, &sid, "").await, vec!["40", r#"42["auth",{}]"#]);
    let poll_url = target(&sid, "");
    let pending = tokio::spawn(async move { get(addr, &poll_url).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = Ws::connect_url(&v3_ws_url(addr, &format!("&sid={sid}")), &[]).await.unwrap();
    ws.auto_pong = false;
    ws.send("2probe").await;
    ws.expect("3probe").await;
    let released = pending.await.unwrap();
    assert_eq!(v3_split(&released.text()), vec!["6"], "the pending GET is released with a noop");
    ws.send("5").await;
    ws.send(r#"451-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 5]).await;
    ws.expect(r#"451-["message-back",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(ws.binary().await, vec![4, 5]);
    // Polling is over for this session.
    assert_eio_error(&get(addr, &target(&sid, "")).await, 3, "Bad request");
    // Pings keep it; silence past interval + timeout ends it, upgraded or not.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ws.send("2").await;
        ws.expect("3").await;
    }
    let started = std::time::Instant::now();
    ws.expect_closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(probe.reason_of(&sid).await, DisconnectReason::PingTimeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broadcast_reaches_v3_and_v4_clients_each_in_its_framing() {
    let server = TestServer::demo(v3_config().shards(2).build().unwrap());
    let addr = server.addr;
    let (mut v4, _) = Ws::connected(addr).await;
    let (mut v3, _) = v3_ws(&v3_ws_url(addr, "")).await;
    let (p3, _) = v3_handshake(addr, "").await;
    v3_poll(addr, &p3, "").await;
    v4.send(r#"420["join","r"]"#).await;
    v4.expect("430[true]").await;
    v3.send(r#"420["join","r"]"#).await;
    v3.expect("430[true]").await;
    v3_post_ok(addr, &p3, &v3_payload(&[r#"420["join","r"]"#])).await;
    assert_eq!(v3_poll(addr, &p3, "").await, vec!["430[true]"]);
    v4.send(r#"451-["publish","r","news","é",{"_placeholder":true,"num":0}]"#).await;
    v4.send_binary(&[1, 2, 3]).await;
    let text = r#"451-["news","é",{"_placeholder":true,"num":0}]"#;
    v4.expect(text).await;
    assert_eq!(v4.binary().await, vec![1, 2, 3]);
    v3.expect(text).await;
    assert_eq!(v3.binary().await, vec![4, 1, 2, 3]);
    let resp = get(addr, &target(&p3, "")).await;
    assert_eq!(resp.header("content-type"), Some("application/octet-stream"));
    let mut want = vec![0u8];
    let len = text.len().to_string();
    want.extend(len.bytes().map(|d| d - b'0'));
    want.push(255);
    want.extend_from_slice(text.as_bytes());
    want.extend_from_slice(&[1, 4, 255, 4, 1, 2, 3]);
    assert_eq!(resp.body, want);
}

/// The `b4`-free text of a JSONP script `___eio[J]("...");`, checked and unescaped.
#[track_caller]
fn unscript(body: &str, index: &str) -> String {
    let inner = body
        .strip_prefix(&format!("___eio[{index}]("))
        .and_then(|b| b.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not a JSONP script: {body:?}"));
    serde_json::from_str(inner).unwrap_or_else(|e| panic!("not a JSON string ({e}): {inner:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_polling_for_v3_clients() {
    let server = TestServer::demo(v3_config().build().unwrap());
    let addr = server.addr;
    // As engine.io-client 3's JSONP transport asks (`j`, and b64=1).
    let resp = get(addr, "/socket.io/?EIO=3&transport=polling&j=0&b64=1").await;
    assert_eq!(resp.header("content-type"), Some("text/plain; charset=UTF-8"));
    let open = v3_split(&unscript(&resp.text(), "0"));
    let open: Value = serde_json::from_str(open[0].strip_prefix('0').unwrap()).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let get_js = |extra: &'static str| {
        let t = target(&sid, &format!("&j=0{extra}"));
        async move { get(addr, &t).await.text() }
    };
    assert_eq!(v3_split(&unscript(&get_js("").await, "0")), vec!["40", r#"42["auth",{}]"#]);
    // A newline in the payload, escaped by the client (`\n`), and a `\n` in the JSON text
    // (escaped as `\\n`): the reference's unescaping.
    let event = r#"420["message-with-ack","a\nb","é\u2028"]"#;
    let escaped = v3_payload(&[event]).replace("\\n", "\\\\n");
    let form: String =
        form_urlencoded::Serializer::new(String::new()).append_pair("d", &escaped).finish();
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let resp = request(addr, "POST", &target(&sid, "&j=0"), &headers, form.as_bytes()).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{resp:?}");
    let body = get_js("").await;
    assert!(body.contains("\\u2028"), "U+2028 escaped in the script: {body:?}");
    // (the JSON escape came back as the character itself, which the script escapes)
    assert_eq!(v3_split(&unscript(&body, "0")), vec!["430[\"a\\nb\",\"é\u{2028}\"]"]);
    // Binary goes as base64 inside the script (such a client cannot read bytes).
    let header = r#"451-["message",{"_placeholder":true,"num":0}]"#;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("d", &v3_payload(&[header, "b4AQID"]))
        .finish();
    request(addr, "POST", &target(&sid, "&j=0"), &headers, form.as_bytes()).await;
    assert_eq!(
        v3_split(&unscript(&get_js("").await, "0")),
        vec![r#"451-["message-back",{"_placeholder":true,"num":0}]"#, "b4AQID"]
    );
    // A POST with no `d` is ignored, as the reference does.
    let resp = request(addr, "POST", &target(&sid, "&j=0"), &headers, b"e=1").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
}

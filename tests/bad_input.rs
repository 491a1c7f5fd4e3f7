//! Bad input: each case closes only the offending session, with a named reason, while other
//! clients of the same server (on the same shard and on another one) keep working.

mod common;

use std::time::Duration;

use common::*;
use shardcast::{Config, DisconnectReason};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy)]
enum Out<'a> {
    Text(&'a str),
    Bin(&'a [u8]),
}
use Out::{Bin, Text};

/// Two well-behaved clients and, between them in connection order, the offender (so that it
/// shares a shard with one of them when there are 2 shards).
struct Bench {
    server: TestServer,
    probe: Probe,
    good: Vec<Ws>,
    good_ids: Vec<String>,
}

impl Bench {
    async fn new(cfg: Config) -> Bench {
        let (server, probe) = TestServer::probe(cfg);
        let mut bench = Bench { server, probe, good: Vec::new(), good_ids: Vec::new() };
        for _ in 0..2 {
            let (ws, id) = Ws::connected(bench.server.addr).await;
            bench.good.push(ws);
            bench.good_ids.push(id);
        }
        bench
    }

    /// The other clients are untouched: nobody else left, and round trips work.
    async fn check_others(&mut self) {
        for ws in &mut self.good {
            ws.roundtrip("/").await;
        }
        if let Some(g) = self.probe.try_gone() {
            panic!("another socket was disconnected: {g:?}");
        }
        // And a newcomer is served.
        let (mut ws, _) = Ws::connected(self.server.addr).await;
        ws.roundtrip("/").await;
    }
}

/// Connects an offender to `/`, sends `frames`, and checks that only it is closed, with
/// `reason`.
async fn offend_with(cfg: Config, frames: &[Out<'_>], reason: DisconnectReason) {
    let mut bench = Bench::new(cfg).await;
    let (mut bad, id) = Ws::connected(bench.server.addr).await;
    for f in frames {
        match *f {
            Text(t) => bad.send(t).await,
            Bin(b) => bad.send_binary(b).await,
        }
    }
    let before = bad.expect_closed().await;
    assert!(before.is_empty(), "offender got {before:?} before the close");
    assert_eq!(bench.probe.reason_of(&id).await, reason, "reason after {:?}", frames_debug(frames));
    bench.check_others().await;
}

async fn offend(frames: &[Out<'_>], reason: DisconnectReason) {
    offend_with(config().build().unwrap(), frames, reason).await;
}

fn frames_debug(frames: &[Out<'_>]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Text(t) => format!("{t:?}"),
            Bin(b) => format!("<{} bytes>", b.len()),
        })
        .collect()
}

// --- Engine.IO level -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_engine_packet_type() {
    offend(&[Text("9")], DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_text_frame() {
    offend(&[Text("")], DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_packet_with_data() {
    offend(&[Text("1junk")], DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_message_larger_than_max_payload() {
    let cfg = config().max_payload(1_000).build().unwrap();
    let big = format!(r#"42["message","{}"]"#, "x".repeat(2_000));
    offend_with(cfg.clone(), &[Text(&big)], DisconnectReason::TransportError).await;
    offend_with(cfg, &[Bin(&[0u8; 2_000])], DisconnectReason::TransportError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_of_exactly_max_payload_is_fine() {
    let mut bench = Bench::new(config().max_payload(1_000).build().unwrap()).await;
    let filler = 1_000 - r#"42["message",""]"#.len();
    let msg = format!(r#"42["message","{}"]"#, "y".repeat(filler));
    assert_eq!(msg.len(), 1_000);
    let ws = &mut bench.good[0];
    ws.send(&msg).await;
    assert!(ws.text().await.starts_with(r#"42["message-back","yyy"#));
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ping_is_an_invalid_heartbeat_direction() {
    offend(&[Text("2")], DisconnectReason::TransportError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_open_packet_is_ignored() {
    let mut bench = Bench::new(config().build().unwrap()).await;
    let (mut ws, _) = Ws::connected(bench.server.addr).await;
    ws.send("0{}").await;
    ws.roundtrip("/").await;
    bench.check_others().await;
}

// --- Socket.IO level: undecodable packets ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_socketio_packet_type() {
    offend(&[Text("4x")], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_with_invalid_json() {
    offend(&[Text("42[not json")], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_with_an_object_instead_of_an_array() {
    offend(&[Text(r#"42{"a":1}"#)], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_with_an_empty_array() {
    offend(&[Text("42[]")], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_with_trailing_garbage() {
    offend(&[Text(r#"42["a"]x"#)], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_with_a_reserved_name() {
    offend(&[Text(r#"42["disconnect"]"#)], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_id_overflow() {
    offend(&[Text(r#"4299999999999999999999["message"]"#)], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_non_object_auth() {
    offend(&[Text(r#"40/custom,"text""#)], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_attachments() {
    let header = format!(
        r#"4511-["message",{}]"#,
        (0..11)
            .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    offend(&[Text(&header)], DisconnectReason::ForcedClose).await;
    offend(&[Text(r#"4599999999999999999999999-["message"]"#)], DisconnectReason::ForcedClose)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attachments_is_allowed() {
    let mut bench = Bench::new(config().build().unwrap()).await;
    let placeholders: Vec<String> =
        (0..10).map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#)).collect();
    let ws = &mut bench.good[0];
    ws.send(&format!(r#"4510-["message",{}]"#, placeholders.join(","))).await;
    for i in 0..10u8 {
        ws.send_binary(&[i]).await;
    }
    ws.expect(&format!(r#"4510-["message-back",{}]"#, placeholders.join(","))).await;
    for i in 0..10u8 {
        assert_eq!(ws.binary().await, vec![i]);
    }
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_with_no_pending_binary_packet() {
    offend(&[Bin(&[1, 2, 3])], DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_frame_while_attachments_are_expected() {
    offend(
        &[Text(r#"451-["message",{"_placeholder":true,"num":0}]"#), Text(r#"42["message","x"]"#)],
        DisconnectReason::ForcedClose,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_pointing_past_the_attachments() {
    offend(
        &[Text(r#"451-["message",{"_placeholder":true,"num":5}]"#), Bin(&[1])],
        DisconnectReason::ForcedClose,
    )
    .await;
}

// --- Socket.IO level: valid packets in the wrong state ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_for_a_namespace_not_joined() {
    offend(&[Text(r#"42/custom,["message","x"]"#)], DisconnectReason::ForcedServerClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_from_a_namespace_not_joined() {
    offend(&[Text("41/custom,")], DisconnectReason::ForcedServerClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_namespace_already_joined() {
    offend(&[Text("40")], DisconnectReason::ForcedServerClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_error_from_the_client() {
    offend(&[Text(r#"44{"message":"x"}"#)], DisconnectReason::ForcedServerClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_with_an_unknown_id_is_ignored() {
    // As in the reference (`bad ack` is only logged): the session stays open.
    let mut bench = Bench::new(config().build().unwrap()).await;
    let (mut ws, _) = Ws::connected(bench.server.addr).await;
    ws.send(r#"43999["x"]"#).await;
    ws.send(r#"461-12[{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[1]).await;
    ws.roundtrip("/").await;
    bench.check_others().await;
}

// --- Long-polling payloads ----------------------------------------------------------------

/// A polling session on `/` gets `body` POSTed: it must be closed with `reason`.
async fn offend_polling(body: &str, reason: DisconnectReason) {
    let mut bench = Bench::new(config().build().unwrap()).await;
    let addr = bench.server.addr;
    let (sid, id) = polling_session(addr).await;
    let resp = post(addr, &sid, body).await;
    assert!(resp.status == 200 || resp.status == 400, "{resp:?}");
    assert_eq!(bench.probe.reason_of(&id).await, reason, "after POST {body:?}");
    assert_session_gone(addr, &sid).await;
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_unknown_engine_packet() {
    offend_polling("9", DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_empty_segment() {
    offend_polling(&payload(&[r#"42["message","a"]"#, ""]), DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_invalid_base64() {
    offend_polling("b!!!!", DisconnectReason::ParseError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_malformed_socketio_packet() {
    offend_polling(r#"42{"a":1}"#, DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_binary_with_no_pending_packet() {
    offend_polling("bAQID", DisconnectReason::ForcedClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_event_for_a_namespace_not_joined() {
    offend_polling(r#"42/custom,["message"]"#, DisconnectReason::ForcedServerClose).await;
}

// --- HTTP / TCP level ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tcp_socket() {
    let mut bench = Bench::new(config().build().unwrap()).await;
    let addr = bench.server.addr;
    // Blank lines only: the server waits for a request line (as HTTP allows), holding the
    // connection open; this must not get in anybody else's way.
    let mut blank = tokio::net::TcpStream::connect(addr).await.unwrap();
    blank.write_all(b"\r\n\r\n\r\n\r\n").await.unwrap();
    for garbage in
        [&b"GARBAGE\r\n\r\n"[..], b"\x00\x01\x02\xff\xfe\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"]
    {
        let raw = raw_exchange(addr, garbage).await;
        if !raw.is_empty() {
            let resp = parse_response(&raw)
                .unwrap_or_else(|| panic!("unparsable answer {:?}", String::from_utf8_lossy(&raw)));
            assert!((400..500).contains(&resp.status), "{garbage:?} → {resp:?}");
        }
    }
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_then_close() {
    let mut bench = Bench::new(config().build().unwrap()).await;
    let addr = bench.server.addr;
    let partials = [
        "GET /socket.io/?EIO=4&transp".to_owned(),
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {addr}\r\n"),
        format!("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"),
    ];
    for partial in &partials {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(partial.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tcp);
    }
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_post_cut_short_closes_its_session() {
    // The reference: "data request connection closed prematurely" → `transport error`.
    let mut bench = Bench::new(config().build().unwrap()).await;
    let addr = bench.server.addr;
    let (sid, id) = polling_session(addr).await;
    let partial = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n42[\"mess",
        poll_target(&sid)
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(partial.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(tcp);
    assert_eq!(bench.probe.reason_of(&id).await, DisconnectReason::TransportError);
    assert_session_gone(addr, &sid).await;
    bench.check_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_with_431_and_the_server_goes_on() {
    let server = TestServer::demo(config().max_http_header_size(8192).build().unwrap());
    let big = "a".repeat(9000);
    let resp = request(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("X-Big", big.as_str())],
        b"",
    )
    .await;
    assert_eq!(resp.status, 431, "{resp:?}");
    let fits = "a".repeat(6000);
    let ok = request(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("X-Fits", fits.as_str())],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(matches!(
        Config::builder().max_http_header_size(4096).build(),
        Err(shardcast::ConfigError::HeaderSize(4096))
    ));
}

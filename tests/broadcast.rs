//! Broadcast operators across 4 shards: `except`, `socket.to` (sender excluded), several
//! rooms, namespaces kept apart, binary broadcasts, polling recipients, and the operations
//! over a selection (`fetch_sockets`, `sockets_join` / `sockets_leave`,
//! `disconnect_sockets`, `emit_with_ack`). (ENCODINGS is checked in rooms.rs.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use shardcast::proto::sid::Sid;
use shardcast::BroadcastAckError;
use shardcast::DisconnectReason;

/// Reads text frames until `marker`; returns those before it.
async fn until(ws: &mut Ws, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        match ws.next().await {
            Frame::Text(t) if t == marker => return before,
            Frame::Text(t) => before.push(t),
            Frame::Binary(b) => before.push(format!("<{b:?}>")),
            Frame::Closed => panic!("closed while waiting for {marker} (got {before:?})"),
        }
    }
}

/// 8 clients on `/` over 4 shards; clients 0, 3, 5 and 6 are in room "r1".
struct Crowd {
    server: TestServer,
    probe: Probe,
    clients: Vec<Ws>,
    ids: Vec<String>,
    members: Vec<usize>,
}

impl Crowd {
    async fn new() -> Crowd {
        let (server, probe) = TestServer::probe(config().shards(4).build().unwrap());
        let mut crowd = Crowd {
            server,
            probe,
            clients: Vec::new(),
            ids: Vec::new(),
            members: vec![0, 3, 5, 6],
        };
        for i in 0..8 {
            let (mut ws, id) = Ws::connected(crowd.server.addr).await;
            if crowd.members.contains(&i) {
                ws.send(r#"421["join","r1"]"#).await;
                ws.expect("431[true]").await;
            }
            crowd.clients.push(ws);
            crowd.ids.push(id);
        }
        let shards: HashSet<u8> =
            crowd.ids.iter().map(|id| Sid::parse(id).unwrap().shard()).collect();
        assert_eq!(shards.len(), 4, "clients not spread over the 4 shards");
        crowd
    }

    fn is_member(&self, i: usize) -> bool {
        self.members.contains(&i)
    }

    /// Sends a marker to everyone from the test thread and returns what each client got
    /// before it.
    async fn collect(&mut self) -> Vec<Vec<String>> {
        self.server.io.emit("marker", ()).unwrap();
        let mut out = Vec::new();
        for ws in &mut self.clients {
            out.push(until(ws, r#"42["marker"]"#).await);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_excludes_rooms_and_single_sockets() {
    let mut c = Crowd::new().await;
    c.server.io.except("r1").emit("outsiders", ()).unwrap();
    let except_id = c.ids[1].clone();
    c.server.io.except(except_id.as_str()).emit("all-but-1", ()).unwrap();
    c.server.io.to("r1").except(c.ids[3].as_str()).emit("r1-but-3", ()).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let mut expected = Vec::new();
        if !c.is_member(i) {
            expected.push(r#"42["outsiders"]"#.to_owned());
        }
        if i != 1 {
            expected.push(r#"42["all-but-1"]"#.to_owned());
        }
        if c.is_member(i) && i != 3 {
            expected.push(r#"42["r1-but-3"]"#.to_owned());
        }
        assert_eq!(got, &expected, "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_to_room_excludes_the_sender() {
    let mut c = Crowd::new().await;
    // Client 3 relays to r1: the other members get it, not client 3.
    c.clients[3].send(r#"42["relay","r1","hello",1]"#).await;
    // A round trip with client 3 ensures the relay was handled before the marker.
    c.clients[3].roundtrip("/").await;
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let expected: Vec<String> =
            if c.is_member(i) && i != 3 { vec![r#"42["hello",1]"#.to_owned()] } else { vec![] };
        assert_eq!(got, &expected, "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_binary_reaches_each_member_with_its_attachment() {
    let mut c = Crowd::new().await;
    c.server.io.to("r1").emit("bin", Bytes::from_static(&[1, 2, 3])).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let expected: Vec<String> = if c.is_member(i) {
            vec![
                r#"451-["bin",{"_placeholder":true,"num":0}]"#.to_owned(),
                "<[1, 2, 3]>".to_owned(),
            ]
        } else {
            vec![]
        };
        assert_eq!(got, &expected, "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_kept_apart() {
    let (server, _probe) = TestServer::probe(config().shards(4).build().unwrap());
    let (mut root, _) = Ws::connected(server.addr).await;
    let (mut custom_only, _) = Ws::open(server.addr).await;
    custom_only.sio_connect("/custom", None).await;
    custom_only.expect(r#"42/custom,["auth",{}]"#).await;
    let (mut both, _) = Ws::connected(server.addr).await;
    both.sio_connect("/custom", None).await;
    both.expect(r#"42/custom,["auth",{}]"#).await;

    server.io.emit("to-root", ()).unwrap();
    server.io.of("/custom").emit("to-custom", ()).unwrap();
    server.io.emit("marker", ()).unwrap();
    server.io.of("/custom").emit("marker", ()).unwrap();

    assert_eq!(until(&mut root, r#"42["marker"]"#).await, vec![r#"42["to-root"]"#.to_owned()]);
    assert_eq!(
        until(&mut custom_only, r#"42/custom,["marker"]"#).await,
        vec![r#"42/custom,["to-custom"]"#.to_owned()]
    );
    let mut got = until(&mut both, r#"42/custom,["marker"]"#).await;
    got.retain(|t| t != r#"42["marker"]"#);
    got.sort();
    assert_eq!(got, vec![r#"42/custom,["to-custom"]"#.to_owned(), r#"42["to-root"]"#.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_members_get_broadcasts_on_their_next_poll() {
    let (server, _probe) = TestServer::probe(config().shards(4).build().unwrap());
    let addr = server.addr;
    let (sid, _) = polling_session(addr).await;
    post_ok(addr, &sid, r#"421["join","r1"]"#).await;
    assert_eq!(poll_packets(addr, &sid).await, vec!["431[true]".to_owned()]);
    server.io.to("r1").emit("news", (1,)).unwrap();
    server.io.to("r1").emit("bin", Bytes::from_static(&[1, 2, 3])).unwrap();
    server.io.to("elsewhere").emit("news", (2,)).unwrap();
    server.io.to("r1").emit("news", (3,)).unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(poll_packets(addr, &sid).await);
    }
    assert_eq!(
        got,
        vec![
            r#"42["news",1]"#,
            r#"451-["bin",{"_placeholder":true,"num":0}]"#,
            "bAQID",
            r#"42["news",3]"#
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_sees_every_shard() {
    let c = Crowd::new().await;
    let mut ids: Vec<String> = c
        .server
        .io
        .in_("r1")
        .fetch_sockets()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = c.members.iter().map(|&i| c.ids[i].clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(c.server.io.fetch_sockets().await.unwrap().len(), 8);
    assert!(c.server.io.in_("nobody").fetch_sockets().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_join_and_leave_across_shards() {
    let mut c = Crowd::new().await;
    c.server.io.in_("r1").sockets_join("r2");
    c.server.io.to("r2").emit("r2-news", ()).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let expected: Vec<String> =
            if c.is_member(i) { vec![r#"42["r2-news"]"#.to_owned()] } else { vec![] };
        assert_eq!(got, &expected, "client {i} after sockets_join");
    }
    c.server.io.in_("r2").sockets_leave("r1");
    c.server.io.to("r1").emit("r1-news", ()).unwrap();
    c.server.io.to("r2").emit("r2-news", ()).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let expected: Vec<String> =
            if c.is_member(i) { vec![r#"42["r2-news"]"#.to_owned()] } else { vec![] };
        assert_eq!(got, &expected, "client {i} after sockets_leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_sockets_of_a_room() {
    let mut c = Crowd::new().await;
    c.server.io.in_("r1").disconnect_sockets(false);
    for i in 0..8 {
        if c.is_member(i) {
            c.clients[i].expect("41").await;
            assert_eq!(
                c.probe.reason_of(&c.ids[i]).await,
                DisconnectReason::ServerNamespaceDisconnect
            );
        }
    }
    for (i, ws) in c.clients.iter_mut().enumerate() {
        if !c.members.contains(&i) {
            ws.roundtrip("/").await;
        }
    }
    assert!(c.probe.try_gone().is_none(), "only the members were disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_emit_with_ack_collects_every_reply() {
    let mut c = Crowd::new().await;
    let io = c.server.io.clone();
    let asked = tokio::spawn(async move {
        io.to("r1").timeout(Duration::from_secs(3)).emit_with_ack("poll", ("q",)).await
    });
    for i in c.members.clone() {
        let ws = &mut c.clients[i];
        let got = ws.text().await;
        let rest = got.strip_prefix("42").unwrap();
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(&rest[id.len()..], r#"["poll","q"]"#, "{got}");
        ws.send(&format!("43{id}[\"answer-{i}\"]")).await;
    }
    let mut responses = asked.await.unwrap().expect("every member answered");
    responses.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<(String, String)> =
        c.members.iter().map(|&i| (c.ids[i].clone(), format!("answer-{i}"))).collect();
    expected.sort();
    let got: Vec<(String, String)> = responses
        .iter()
        .map(|(id, a)| (id.clone().unwrap(), a.str(0).unwrap().to_owned()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_emit_with_ack_times_out_listing_the_silent() {
    let mut c = Crowd::new().await;
    let io = c.server.io.clone();
    let asked = tokio::spawn(async move {
        io.to("r1").timeout(Duration::from_millis(500)).emit_with_ack("poll", ()).await
    });
    let silent = 6;
    for i in c.members.clone() {
        let ws = &mut c.clients[i];
        let got = ws.text().await;
        let id: String = got[2..].chars().take_while(char::is_ascii_digit).collect();
        if i != silent {
            ws.send(&format!("43{id}[{i}]")).await;
        }
    }
    match asked.await.unwrap() {
        Err(BroadcastAckError::Timeout { responses, missing, missing_remote }) => {
            assert_eq!(missing, vec![c.ids[silent].clone()]);
            assert_eq!(missing_remote, 0);
            assert_eq!(responses.len(), 3);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // An empty selection resolves at once with no replies.
    let none =
        c.server.io.to("nobody").timeout(Duration::from_secs(3)).emit_with_ack("poll", ()).await;
    assert_eq!(none.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_member_no_longer_receives() {
    let mut c = Crowd::new().await;
    let gone = c.clients.remove(5);
    let gone_id = c.ids[5].clone();
    drop(gone);
    c.probe.reason_of(&gone_id).await;
    c.members = vec![0, 3, 5]; // indices shifted: former 6 is now 5
    c.server.io.to("r1").emit("news", ()).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let expected: Vec<String> =
            if c.is_member(i) { vec![r#"42["news"]"#.to_owned()] } else { vec![] };
        assert_eq!(got, &expected, "client {i}");
    }
    let remaining = c.server.io.in_("r1").fetch_sockets().await.unwrap();
    assert_eq!(remaining.len(), 3);
    assert!(remaining.iter().all(|s| s.id() != gone_id));
}

/// A socket's own room (its id) is kept on the socket, not in the rooms map: `to(id)` and
/// `except(id)` still find it on any shard, it can leave it (and is then no longer reached
/// by id, as in socket.io), and another socket may join a room named after that id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_id_rooms_behave_as_rooms() {
    let mut c = Crowd::new().await;
    let (id2, id4) = (c.ids[2].clone(), c.ids[4].clone());
    // Client 7 also joins the room named after client 2's id.
    let join = format!(r#"421["join","{id2}"]"#);
    c.clients[7].send(&join).await;
    c.clients[7].expect("431[true]").await;
    // Client 4 leaves its own room.
    let leave = format!(r#"422["leave","{id4}"]"#);
    c.clients[4].send(&leave).await;
    c.clients[4].expect("432[true]").await;
    c.clients[4].send(r#"423["rooms"]"#).await;
    c.clients[4].expect("433[[]]").await;
    c.server.io.to(id2.as_str()).emit("to-2", ()).unwrap();
    c.server.io.to(id4.as_str()).emit("to-4", ()).unwrap();
    c.server.io.to(id2.as_str()).to("r1").emit("2-or-r1", ()).unwrap();
    c.server.io.except(id2.as_str()).emit("not-2", ()).unwrap();
    let got = c.collect().await;
    for (i, got) in got.iter().enumerate() {
        let mut expected = Vec::new();
        if i == 2 || i == 7 {
            expected.push(r#"42["to-2"]"#.to_owned());
        }
        if i == 2 || i == 7 || c.is_member(i) {
            expected.push(r#"42["2-or-r1"]"#.to_owned());
        }
        if i != 2 && i != 7 {
            expected.push(r#"42["not-2"]"#.to_owned());
        }
        assert_eq!(got, &expected, "client {i}");
    }
}

/// Per-emitter order across paths and threads: from a thread that is not a shard, direct
/// emits on a socket and broadcasts that reach it (by its id, by a room) interleave, and
/// the client receives them exactly in the order they were made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_emitter_keeps_its_order_across_emit_paths() {
    let mut c = Crowd::new().await;
    let s = c.probe.socket().await;
    let i = c.ids.iter().position(|id| id == s.id()).expect("a crowd socket");
    let (io, id) = (c.server.io.clone(), s.id().to_owned());
    let room = if c.is_member(i) { "r1" } else { id.as_str() }.to_owned();
    std::thread::spawn(move || {
        for n in 0..300u32 {
            match n % 3 {
                0 => s.emit("n", (n,)).unwrap(),
                1 => io.to(id.as_str()).emit("n", (n,)).unwrap(),
                _ => io.to(room.as_str()).emit("n", (n,)).unwrap(),
            }
        }
    })
    .join()
    .unwrap();
    let got = c.collect().await;
    let expected: Vec<String> = (0..300).map(|n| format!(r#"42["n",{n}]"#)).collect();
    assert_eq!(got[i], expected);
}

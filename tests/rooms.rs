//! Rooms across shards with the demo app: `join` / `leave` / `publish` from clients spread
//! over 4 shards, and a broadcast from outside any shard. Also checks that each broadcast is
//! encoded exactly once (`shardcast::broadcast::ENCODINGS`), so this file holds a single
//! test: the counter is per process and other tests would move it.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;
use shardcast::broadcast::ENCODINGS;
use shardcast::proto::sid::Sid;

/// Reads frames until `marker` and returns those before it.
async fn until(ws: &mut Ws, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let t = ws.text().await;
        if t == marker {
            return before;
        }
        before.push(t);
    }
}

fn encodings() -> u64 {
    ENCODINGS.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_across_shards_deliver_exactly_once_to_members() {
    let server = TestServer::demo(config().shards(4).build().unwrap());
    let mut clients = Vec::new();
    let mut shard_of = Vec::new();
    for _ in 0..8 {
        // Connections are dealt round-robin: client i lives on shard i % 4. The socket id
        // names its shard.
        let (ws, id) = Ws::connected(server.addr).await;
        clients.push(ws);
        shard_of.push(Sid::parse(&id).unwrap().shard());
    }
    // Everyone joins "all" (used for markers); half join "r1", on every shard.
    let mut members = vec![0usize, 3, 5, 6];
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(r#"421["join","all"]"#).await;
        ws.expect("431[true]").await;
        if members.contains(&i) {
            ws.send(r#"422["join","r1"]"#).await;
            ws.expect("432[true]").await;
        }
    }
    let spread = |set: &[usize]| set.iter().map(|&i| shard_of[i]).collect::<HashSet<_>>().len();
    let others: Vec<usize> = (0..8).filter(|i| !members.contains(i)).collect();
    assert!(
        spread(&members) >= 3 && spread(&others) >= 3,
        "clients not spread over the shards: {shard_of:?}"
    );
    let base = encodings();

    // A member publishes: the demo app does io.to(room).emit, the sender included.
    let publisher = 5;
    let mut ack = 3;
    for round in 1..=2 {
        if round == 2 {
            // Client 0 leaves: it gets nothing more.
            clients[0].send(r#"429["leave","r1"]"#).await;
            clients[0].expect("439[true]").await;
            members.retain(|&m| m != 0);
        }
        let before = encodings();
        let p = &mut clients[publisher];
        p.send(&format!(r#"42{ack}["publish","r1","news",{{"round":{round}}}]"#)).await;
        let got = until(p, &format!("43{ack}[true]")).await;
        assert_eq!(
            got,
            vec![format!(r#"42["news",{{"round":{round}}}]"#)],
            "publisher, round {round}"
        );
        assert_eq!(encodings(), before + 1, "one encoding per broadcast");
        ack += 1;
        p.send(&format!(r#"42{ack}["publish","all","marker"]"#)).await;
        p.expect(r#"42["marker"]"#).await;
        p.expect(&format!("43{ack}[true]")).await;
        ack += 1;
        assert_eq!(encodings(), before + 2);

        for (i, ws) in clients.iter_mut().enumerate() {
            if i == publisher {
                continue;
            }
            let got = until(ws, r#"42["marker"]"#).await;
            let expected: Vec<String> = if members.contains(&i) {
                vec![format!(r#"42["news",{{"round":{round}}}]"#)]
            } else {
                vec![]
            };
            assert_eq!(got, expected, "client {i} (shard {}), round {round}", shard_of[i]);
        }
    }

    // From the test thread, outside any shard.
    let before = encodings();
    server.io.to("r1").emit("news", (json!({"from": "outside"}),)).unwrap();
    assert_eq!(encodings(), before + 1);
    server.io.emit("marker", ()).unwrap();
    assert_eq!(encodings(), before + 2);
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = until(ws, r#"42["marker"]"#).await;
        let expected: Vec<String> = if members.contains(&i) {
            vec![r#"42["news",{"from":"outside"}]"#.to_owned()]
        } else {
            vec![]
        };
        assert_eq!(got, expected, "client {i} (shard {}), outside broadcast", shard_of[i]);
    }

    // Several rooms at once: the union, each socket once.
    let before = encodings();
    server.io.to(["r1", "all"]).emit("both", ()).unwrap();
    server.io.emit("marker", ()).unwrap();
    assert_eq!(encodings(), before + 2);
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(
            until(ws, r#"42["marker"]"#).await,
            vec![r#"42["both"]"#.to_owned()],
            "client {i}"
        );
    }
    assert!(encodings() - base >= 7);
}

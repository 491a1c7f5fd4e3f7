//! A misbehaving server: the harness must count every malformed packet by reason and finish
//! its bounded run, never panic.

use std::process::Command;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const GARBAGE: &[&str] = &[
    "",
    "9",
    "4",
    "49",
    "45x-[]",
    "42[\"news\",",
    "42[\"news\",1,2]",
    "42[\"news\",-1,2,3,4]",
    "42[\"news\",99999999999999999999999,0,0,0]",
    "42[\"news\",999,0,0,0,\"x\"]",
    "42{\"not\":\"an array\"}",
    "42[\"news\"]",
    "0{\"sid\":\"again\"}",
    "43abc",
    "4/other,[\"news\",0,0,0,0]",
    "\u{1}\u{2}",
];

/// A fake Engine.IO server: a correct handshake and join ack, then garbage.
async fn fake_server(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
            let open = r#"0{"sid":"fake","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
            if ws.send(Message::text(open)).await.is_err() {
                return;
            }
            let mut garbage_sent = false;
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let reply = if t.starts_with("40") {
                    Some("40{\"sid\":\"s\"}".to_owned())
                } else if t.starts_with("420[") {
                    Some("430[true]".to_owned())
                } else {
                    None
                };
                if let Some(r) = reply {
                    let _ = ws.send(Message::text(r)).await;
                }
                if t.starts_with("420[") && !garbage_sent {
                    garbage_sent = true;
                    for g in GARBAGE {
                        let _ = ws.send(Message::text(*g)).await;
                    }
                    let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_by_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(fake_server(listener));
    let json =
        std::env::temp_dir().join(format!("shardcast-loadtest-bad-{}.json", std::process::id()));
    let out = tokio::process::Command::from(Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest")))
        .args([
            "fanout",
            "--url",
            &url,
            "--clients",
            "2",
            "--rate",
            "10",
            "--duration",
            "0.5",
            "--drain",
            "0.5",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    // The fake server never delivers: everything sent is lost, and says so.
    assert_eq!(v["received"], 0);
    assert_eq!(v["expected"], v["lost"]);
    let malformed = v["setup_counters"]["malformed"].as_u64().unwrap()
        + v["counters"]["malformed"].as_u64().unwrap();
    assert!(malformed >= 2 * 10, "malformed {malformed}: {}", v["errors"]);
    let errors = v["errors"].as_object().unwrap();
    for reason in [
        "malformed: empty engine.io packet",
        "malformed: unknown engine.io packet type",
        "malformed: empty socket.io packet",
        "malformed: unknown socket.io packet type",
        "malformed: delivery from an unknown publisher id",
        "malformed: OPEN after the handshake",
    ] {
        assert!(errors.contains_key(reason), "no {reason:?} in {errors:?}");
    }
}

//! Graceful drain (SIGTERM to `shardcast serve`, `--shutdown-timeout`): with subscribers in
//! a room and a publisher running, every publish the server acknowledged (it had handed the
//! broadcast off) reaches every subscriber before its connection closes; the connections
//! close with a WebSocket close frame (socket.io-client: `transport close`, then it
//! reconnects); nothing new is accepted; the process exits 0 within the timeout.
//!
//! `DRAIN_CLIENTS` subscribers (default 300; the figure in docs/operations.md is from
//! `DRAIN_CLIENTS=5000 cargo test --release --test drain -- --nocapture`) on raw Engine.IO
//! WebSockets, the publisher at `DRAIN_RATE` publishes a second (default 20).

#[path = "common/process.rs"]
mod process;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Connects to `/` and joins `room`; returns the socket once the join is acknowledged.
async fn member(port: u16, room: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let mut ws = None;
    for _ in 0..50 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((s, _)) => {
                ws = Some(s);
                break;
            }
            // A burst of connects can overflow the accept queue for a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut ws = ws.expect("connect");
    ws.send(Message::text("40")).await.unwrap();
    ws.send(Message::text(format!("420[\"join\",\"{room}\"]"))).await.unwrap();
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("closed while joining") };
        if t.as_str() == "430[true]" {
            return ws;
        }
    }
}

/// What a subscriber got: the `news` sequence numbers, and how its connection ended.
#[derive(Default)]
struct Got {
    seqs: Vec<u64>,
    close_frame: bool,
}

async fn subscribe(mut ws: Ws) -> Got {
    let mut got = Got::default();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                let t = t.as_str();
                if t == "2" {
                    let _ = ws.send(Message::text("3")).await;
                } else if let Some(rest) = t.strip_prefix("42[\"news\",") {
                    if let Ok(n) = rest.trim_end_matches(']').parse() {
                        got.seqs.push(n);
                    }
                }
            }
            Ok(Message::Close(_)) => got.close_frame = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_every_acknowledged_publish_then_closes() {
    let clients = env("DRAIN_CLIENTS", 300);
    let rate = env("DRAIN_RATE", 20);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    let timeout = env("DRAIN_TIMEOUT_MS", 10_000).to_string();
    cmd.args(["serve", "--port", "0", "--shards", "2", "--shutdown-timeout", &timeout]);
    let (mut server, port) = process::start(cmd);

    let mut subs = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(200) {
        let joined =
            futures_util::future::join_all(chunk.iter().map(|_| member(port, "room"))).await;
        subs.extend(joined.into_iter().map(|ws| tokio::spawn(subscribe(ws))));
    }

    // The publisher: `publish` with an ack id per sequence number; acked ones are recorded.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let publisher = {
        let (acked, mut ws) = (acked.clone(), member(port, "publishers").await);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate as u64));
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        seq += 1;
                        let m = format!("42{seq}[\"publish\",\"room\",\"news\",{seq}]");
                        if ws.send(Message::text(m)).await.is_err() {
                            return seq;
                        }
                    }
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            let t = t.as_str();
                            if t == "2" {
                                let _ = ws.send(Message::text("3")).await;
                            } else if let Some(id) = t.strip_prefix("43").and_then(|r| r.strip_suffix("[true]")) {
                                if let Ok(id) = id.parse::<u64>() {
                                    acked.lock().unwrap().insert(id);
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return seq,
                    },
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let signalled = Instant::now();
    process::signal(&server, "-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let st = process::wait_exit(&mut server, Duration::from_secs(15));
        (st, signalled.elapsed())
    });
    // Nothing new is accepted once the signal is handled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    let (status, took) = status.await.unwrap();
    let sent = publisher.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let mut lost = 0usize;
    let mut closed_by_frame = 0usize;
    for s in subs {
        let got = s.await.unwrap();
        let have: HashSet<u64> = got.seqs.iter().copied().collect();
        lost += acked.iter().filter(|n| !have.contains(n)).count();
        closed_by_frame += usize::from(got.close_frame);
        let mut sorted = got.seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, got.seqs, "a subscriber got the publishes out of order");
    }
    println!(
        "drain: {clients} subscribers, {sent} publishes sent, {} acknowledged; {lost} \
         acknowledged deliveries lost; {closed_by_frame} closed with a close frame; exit {status} \
         {:.0} ms after SIGTERM; new connection refused: {refused}",
        acked.len(),
        took.as_secs_f64() * 1000.0,
    );
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(acked.len() >= rate, "the publisher ran: {} acknowledged", acked.len());
    assert_eq!(lost, 0, "acknowledged publishes that did not reach a subscriber");
    assert_eq!(closed_by_frame, clients, "every subscriber's connection closed with a close frame");
    assert!(refused, "a connection was accepted after SIGTERM");
}

/// The official client's view: a drain closes its transport (`transport close`, for
/// WebSocket and polling alike), so it reconnects, here to a server started on the same port
/// (in a cluster: to another server behind the same address).
#[test]
fn the_official_client_sees_transport_close_and_reconnects() {
    use std::io::BufRead;
    let port = process::free_port();
    let serve = |port: u16| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
        cmd.args(["serve", "--port", &port.to_string(), "--shards", "2"]);
        process::start(cmd).0
    };
    let mut first = serve(port);
    let mut client = Command::new("node")
        .arg("drain-client.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .current_dir(process::interop_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node is needed (Node.js 20+)");
    let mut lines = std::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line from the client").expect("read");
    assert_eq!(next(), "connected");
    process::signal(&first, "-TERM");
    assert!(process::wait_exit(&mut first, Duration::from_secs(10)).success());
    let mut reasons = vec![next(), next()];
    reasons.sort();
    assert_eq!(
        reasons,
        ["disconnect polling transport close", "disconnect websocket transport close"]
    );
    let mut second = serve(port);
    assert_eq!(next(), "reconnected");
    assert!(process::wait_exit(&mut client, Duration::from_secs(10)).success());
    process::signal(&second, "-TERM");
    assert!(process::wait_exit(&mut second, Duration::from_secs(10)).success());
}

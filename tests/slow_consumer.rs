//! The slow-consumer policy, end to end against `shardcast serve`: a client that stops
//! reading is closed once its outbox limit is reached, the server's memory stays bounded
//! (sampled from /proc while ~80 MB is broadcast), and the rest of the room receives every
//! message in order.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");
const MESSAGES: usize = 2_560;
const PAYLOAD: usize = 32 * 1024;

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--shards", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("line");
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    Server(child, port)
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("ws error");
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

/// Connects to `/`, joins `room`, returns the socket.
async fn member(port: u16, room: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    assert!(text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text("40")).await.expect("send");
    assert!(text(&mut ws).await.starts_with("40{"));
    assert_eq!(text(&mut ws).await, r#"42["auth",{}]"#);
    ws.send(Message::text(format!(r#"421["join","{room}"]"#))).await.expect("send");
    assert_eq!(text(&mut ws).await, "431[true]");
    ws
}

/// Reads `news` broadcasts until `MESSAGES` have arrived, checking their order.
async fn receive_all(mut ws: Ws, got: Arc<AtomicU64>) -> Ws {
    let mut next = 0usize;
    while next < MESSAGES {
        let t = text(&mut ws).await;
        if t == "2" {
            ws.send(Message::text("3")).await.expect("pong");
            continue;
        }
        if let Some(rest) = t.strip_prefix(r#"42["news","#) {
            let n: usize = rest.split(',').next().and_then(|n| n.parse().ok()).expect("seq");
            assert_eq!(n, next, "out of order");
            next += 1;
            got.fetch_add(1, Ordering::Relaxed);
        }
    }
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_cut_off_and_memory_stays_bounded() {
    let server = start();
    let pid = server.0.id();
    let port = server.1;
    let mut publisher = member(port, "big").await;
    let good: Vec<Ws> = futures_util::future::join_all((0..3).map(|_| member(port, "big"))).await;
    let mut stalled = member(port, "big").await;

    let baseline = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let got = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> =
        good.into_iter().map(|ws| tokio::spawn(receive_all(ws, got.clone()))).collect();

    // The publisher is a member too: it reads its own copies while publishing, acking in
    // windows so it never runs far ahead of the server.
    let blob = "x".repeat(PAYLOAD);
    let mut received_by_publisher = 0usize;
    let mut acks = 0usize;
    for i in 0..MESSAGES {
        let frame = format!(r#"42{i}["publish","big","news",{i},"{blob}"]"#);
        publisher.send(Message::text(frame)).await.expect("publish");
        if i % 32 == 31 || i + 1 == MESSAGES {
            while acks <= i {
                let t = text(&mut publisher).await;
                if t.starts_with("43") {
                    acks += 1;
                } else if t.starts_with(r#"42["news","#) {
                    received_by_publisher += 1;
                } else if t == "2" {
                    publisher.send(Message::text("3")).await.expect("pong");
                }
            }
        }
    }
    while received_by_publisher < MESSAGES {
        let t = text(&mut publisher).await;
        if t.starts_with(r#"42["news","#) {
            received_by_publisher += 1;
        }
    }
    for r in readers {
        tokio::time::timeout(Duration::from_secs(60), r).await.expect("readers done").expect("ok");
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");

    assert_eq!(got.load(Ordering::Relaxed), 3 * MESSAGES as u64, "every good member got all");
    let sent_mb = (MESSAGES * PAYLOAD) as f64 / 1e6;
    let growth_mb = (peak.load(Ordering::Relaxed).saturating_sub(baseline)) as f64 / 1e3;
    eprintln!("broadcast {sent_mb:.0} MB; server RSS grew by at most {growth_mb:.1} MB");
    // Retaining what the stalled client did not read would cost ~the whole broadcast; the
    // outbox limits (8 MiB + 256 KiB in the writer) keep it to a fraction of that.
    assert!(growth_mb < 40.0, "server RSS grew by {growth_mb:.1} MB for {sent_mb:.0} MB sent");

    // The stalled client finds its connection closed after what the kernel had buffered.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stalled.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the stalled client was not disconnected");
}

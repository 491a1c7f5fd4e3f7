//! The harness's event loop (receive-only connections once joined) against a server that
//! writes the WebSocket stream as awkwardly as the RFC allows: frames cut anywhere and
//! merged across writes, messages fragmented with control frames between the fragments,
//! every length form (7-bit, 16-bit, 64-bit) and frames larger than the loop's shared read
//! buffer, Engine.IO and WebSocket pings to answer. Every delivery must be counted once, in
//! order, and every ping answered.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

#[derive(Default)]
struct Seen {
    eio_pongs: AtomicU64,
    ws_pongs: AtomicU64,
    leaves: AtomicU64,
}

type Subs = Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>>;

/// One unmasked server frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else if n <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// A text message as the awkward server sends it: every third one in three fragments with a
/// WebSocket ping between the first two.
fn message(k: u64, text: &[u8]) -> Vec<u8> {
    if k % 3 != 1 || text.len() < 3 {
        return frame(true, 0x1, text);
    }
    let (a, rest) = text.split_at(text.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut out = frame(false, 0x1, a);
    out.extend(frame(true, 0x9, b"are you there"));
    out.extend(frame(false, 0x0, b));
    out.extend(frame(true, 0x0, c));
    out
}

/// The client's frames: (opcode, unmasked payload) for every complete one, the rest kept.
fn client_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 2 {
            return out;
        }
        let (op, mut len, mut h) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize, 2);
        if len == 126 {
            if buf.len() < 4 {
                return out;
            }
            len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            h = 4;
        } else if len == 127 {
            if buf.len() < 10 {
                return out;
            }
            len = u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize;
            h = 10;
        }
        assert!(buf[1] & 0x80 != 0, "client frames are masked");
        if buf.len() < h + 4 + len {
            return out;
        }
        let key = [buf[h], buf[h + 1], buf[h + 2], buf[h + 3]];
        let p = buf[h + 4..h + 4 + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        out.push((op, p));
        buf.drain(..h + 4 + len);
    }
}

/// Writes `bytes` in pieces of 1 to `max` bytes with pauses, so frames are cut anywhere.
async fn chop_write(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    rng: &mut u64,
    max: usize,
) {
    let mut at = 0;
    while at < bytes.len() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let n = (1 + (*rng as usize) % max).min(bytes.len() - at);
        if w.write_all(&bytes[at..at + n]).await.is_err() {
            return;
        }
        at += n;
        if (*rng).is_multiple_of(4) {
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
    }
}

async fn serve_one(tcp: TcpStream, subs: Subs, seen: Arc<Seen>, id: u64, chop: usize) {
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|x| x == b"\r\n\r\n") {
            break i + 4;
        }
        let n = r.read(&mut tmp).await.unwrap();
        assert!(n > 0, "closed during the upgrade");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a websocket key")
        .trim()
        .to_owned();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    // Everything to this client goes through one writer that cuts it up.
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(answer.into_bytes());
    let open = r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000000}"#;
    let _ = tx.send(frame(true, 0x1, open.as_bytes()));
    tokio::spawn(async move {
        let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (id << 17) | 1;
        while let Some(mut b) = rx.recv().await {
            // Merge whatever else is queued so frames share writes.
            while let Ok(more) = rx.try_recv() {
                b.extend(more);
            }
            chop_write(&mut w, &b, &mut rng, chop).await;
        }
    });
    let mut joined = false;
    let mut k = 0u64;
    loop {
        for (op, p) in client_frames(&mut buf) {
            match op {
                0xA => {
                    seen.ws_pongs.fetch_add(1, Relaxed);
                }
                0x8 => return,
                0x1 => {
                    let t = String::from_utf8(p).unwrap();
                    if t == "40" {
                        let _ = tx.send(frame(
                            true,
                            0x1,
                            format!("40{{\"sid\":\"s{id}\"}}").as_bytes(),
                        ));
                    } else if t.starts_with("420[\"join\"") {
                        let _ = tx.send(frame(true, 0x1, b"430[true]"));
                        subs.lock().await.push(tx.clone());
                        joined = true;
                        // An Engine.IO ping right after the join: answered by the loop.
                        let _ = tx.send(frame(true, 0x1, b"2"));
                    } else if t == "3" {
                        seen.eio_pongs.fetch_add(1, Relaxed);
                    } else if t == "41" && joined {
                        seen.leaves.fetch_add(1, Relaxed);
                    } else if let Some(rest) = t.strip_prefix("42[\"publish\",") {
                        // 42["publish","<room>","news",args...] -> 42["news",args...]
                        let rest = rest.split_once(',').expect("room").1;
                        let out = format!("42[{rest}");
                        for s in subs.lock().await.iter() {
                            k += 1;
                            let mut m = message(k, out.as_bytes());
                            if k.is_multiple_of(5) {
                                m.extend(frame(true, 0x1, b"2"));
                            }
                            let _ = s.send(m);
                        }
                    }
                }
                _ => {}
            }
        }
        let n = match r.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn awkward_server(listener: TcpListener, seen: Arc<Seen>, chop: usize) {
    let subs: Subs = Arc::default();
    let mut id = 0;
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        id += 1;
        tokio::spawn(serve_one(tcp, subs.clone(), seen.clone(), id, chop));
    }
}

async fn run(payload: usize, rate: &str) -> (Value, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    tokio::spawn(awkward_server(listener, seen.clone(), (payload / 40).max(700)));
    let json = std::env::temp_dir()
        .join(format!("shardcast-loadtest-loop-{}-{payload}.json", std::process::id()));
    let out = tokio::process::Command::from(Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest")))
        .args(["fanout", "--url", &url, "--clients", "3", "--rate", rate, "--duration", "1"])
        .args(["--drain", "5", "--quiet", "--payload", &payload.to_string(), "--json"])
        .arg(&json)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (v, seen)
}

fn check(v: &Value, seen: &Seen, clients: u64) {
    let errors: HashMap<String, Value> =
        serde_json::from_value(v["errors"].clone()).unwrap_or_default();
    assert!(errors.is_empty(), "errors: {errors:?}");
    assert!(v["expected"].as_u64().unwrap() > 0);
    assert_eq!(v["received"], v["expected"], "{}", v["counters"]);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["reordered"], 0);
    assert_eq!(v["counters"]["malformed"], 0);
    // One Engine.IO ping after each join, more among the deliveries: all answered.
    let pings = v["setup_counters"]["pings"].as_u64().unwrap()
        + v["counters"]["pings"].as_u64().unwrap()
        + v["closing_counters"]["pings"].as_u64().unwrap();
    assert!(pings > clients, "pings {pings}");
    // Answers may still be in flight when the run ends, but the ones counted by the
    // harness were written.
    assert!(seen.eio_pongs.load(Relaxed) >= clients, "eio pongs {:?}", seen.eio_pongs);
    assert!(seen.ws_pongs.load(Relaxed) > 0, "no websocket pong");
    // Closed politely at the end: a namespace leave from every subscriber.
    assert!(seen.leaves.load(Relaxed) >= clients, "leaves {:?}", seen.leaves);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_medium_frames_cut_and_fragmented() {
    let (v, seen) = run(200, "40").await;
    check(&v, &seen, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_with_64_bit_lengths() {
    let (v, seen) = run(70_000, "10").await;
    check(&v, &seen, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_shared_read_buffer() {
    let (v, seen) = run(300_000, "5").await;
    check(&v, &seen, 3);
}

//! `hostile`: for a bounded time, attackers throw at one server what a stranger can send
//! (garbage instead of HTTP, oversized and endless headers and bodies, malformed WebSocket
//! frames, mutated Engine.IO and Socket.IO packets, connection floods that vanish) while
//! healthy clients in a room receive an acknowledged stream. It passes when the healthy
//! clients got every acknowledged message in order, the server answers a new handshake at
//! once afterwards and its memory (with --server-pid) comes back near where it was.
//!
//! Seeded (`--seed`, printed and in the report): the same seed throws the same sequence of
//! attacks at each attacker, so a failure can be replayed. Any Socket.IO v4 server running the
//! demo app (`join`, `publish`) can be the target.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::plan::HostileArgs;
use crate::rng::Rng;

/// How long one attack may take before it is dropped.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(3);

/// The attack kinds, in the order the RNG picks them.
const KINDS: &[&str] = &[
    "garbage",
    "huge-header",
    "endless-headers",
    "huge-body",
    "bad-frame",
    "bad-packet",
    "flood",
    "deep-json",
];

/// The report (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The seed (give it again to replay).
    pub seed: u64,
    /// Seconds of attack.
    pub duration_s: f64,
    /// Attacks made, by kind.
    pub attacks: BTreeMap<String, u64>,
    /// Healthy subscribers.
    pub healthy_clients: usize,
    /// Messages the healthy publisher sent, and those the server acknowledged.
    pub sent: u64,
    /// Acknowledged by the server.
    pub acked: u64,
    /// Acknowledged messages that some healthy subscriber did not get (summed over them).
    pub lost: u64,
    /// Healthy subscribers that got a message before an earlier one.
    pub out_of_order: u64,
    /// Healthy connections that ended before the run did.
    pub healthy_dropped: u64,
    /// A polling handshake after the storm: milliseconds, or null when none was answered.
    pub handshake_after_ms: Option<f64>,
    /// The server's RSS before the storm, at its peak during it, and after `--settle`
    /// seconds, in KiB (with --server-pid).
    pub rss_kib: Option<(u64, u64, u64)>,
    /// The server's open descriptors before and after (with --server-pid).
    pub fds: Option<(u64, u64)>,
    /// Every check held.
    pub pass: bool,
    /// What did not hold.
    pub failures: Vec<String>,
}

/// Runs the scenario; the report, or an error when it could not run at all.
pub fn run(args: &HostileArgs) -> anyhow::Result<Report> {
    let target = crate::target::parse(&args.url, None)?;
    if !(1.0..=3600.0).contains(&args.duration) {
        bail!("--duration must be between 1 and 3600 seconds");
    }
    if args.attackers == 0 || args.attackers > 512 || args.clients == 0 || args.clients > 2000 {
        bail!("--attackers must be 1 to 512 and --clients 1 to 2000");
    }
    if let Some(k) = args.only.iter().find(|k| !KINDS.contains(&k.as_str())) {
        bail!("--only {k:?}: not an attack kind ({})", KINDS.join(", "));
    }
    let seed = crate::rng::seed_or_clock(args.seed);
    eprintln!("hostile: seed {seed} (give --seed {seed} to replay)");
    // One thread: the attackers wait on the network, not on the CPU.
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    let report = rt.block_on(storm(args, target.addr, target.host_header(), seed))?;
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(report)
}

fn write_json(path: &PathBuf, report: &Report) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

async fn storm(
    args: &HostileArgs,
    addr: SocketAddr,
    host: String,
    seed: u64,
) -> anyhow::Result<Report> {
    let pid = args.server_pid;
    let before = pid.and_then(sample);
    let room = format!("hostile-{seed}");
    // The healthy side: subscribers, then a publisher of an acknowledged, numbered stream.
    let records: Records = Arc::default();
    let mut subs = Vec::new();
    for _ in 0..args.clients {
        let ws = healthy_member(&host, &room).await.context("a healthy client could not join")?;
        subs.push(tokio::spawn(subscribe(ws, records.clone())));
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let publisher = {
        let ws = healthy_member(&host, &format!("{room}-pub")).await?;
        tokio::spawn(publish(
            ws,
            room.clone(),
            args.rate,
            acked.clone(),
            sent.clone(),
            stop.clone(),
        ))
    };

    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let counts: Arc<Vec<AtomicU64>> = Arc::new(KINDS.iter().map(|_| AtomicU64::new(0)).collect());
    let kinds: Arc<Vec<usize>> = Arc::new(
        (0..KINDS.len())
            .filter(|&i| args.only.is_empty() || args.only.iter().any(|k| k == KINDS[i]))
            .collect(),
    );
    let peak = Arc::new(AtomicU64::new(before.map_or(0, |s| s.0)));
    let mut attackers = Vec::new();
    for i in 0..args.attackers {
        let (counts, host, kinds) = (counts.clone(), host.clone(), kinds.clone());
        let mut rng = Rng::stream(seed, u64::from(i));
        attackers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let kind = kinds[rng.below(kinds.len() as u64) as usize];
                let _ =
                    tokio::time::timeout(ATTACK_TIMEOUT, attack(kind, addr, &host, &mut rng)).await;
                counts[kind].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if let Some(pid) = pid {
        let peak = peak.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Some((rss, _)) = sample(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    for a in attackers {
        let _ = a.await;
    }
    // The storm is over: is a handshake answered at once?
    let t = Instant::now();
    let handshake_after_ms =
        match tokio::time::timeout(Duration::from_secs(2), polling_handshake(addr, &host)).await {
            Ok(Ok(())) => Some(t.elapsed().as_secs_f64() * 1000.0),
            _ => None,
        };
    // A last second of the stream, then the publisher stops and the subscribers drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.notify_one();
    let _ = publisher.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut lost = 0;
    let mut out_of_order = 0;
    let mut healthy_dropped = 0;
    // What each subscriber got is in its record; its task stops here.
    for s in subs {
        s.abort();
    }
    let got_all = records.lock().map(|g| g.clone()).unwrap_or_default();
    for got in &got_all {
        let have: std::collections::HashSet<u64> = got.seqs.iter().copied().collect();
        lost += acked.iter().filter(|n| !have.contains(n)).count() as u64;
        if got.seqs.windows(2).any(|w| w[0] >= w[1]) {
            out_of_order += 1;
        }
        if got.ended {
            healthy_dropped += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = pid.and_then(sample);
    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("{lost} acknowledged messages did not reach a healthy subscriber"));
    }
    if out_of_order > 0 {
        failures.push(format!("{out_of_order} healthy subscribers got messages out of order"));
    }
    if healthy_dropped > 0 {
        failures.push(format!("{healthy_dropped} healthy connections were dropped"));
    }
    if acked.is_empty() {
        failures.push("the healthy publisher got no acknowledgement".into());
    }
    match handshake_after_ms {
        Some(ms) if ms <= 500.0 => {}
        Some(ms) => failures.push(format!("the handshake after the storm took {ms:.0} ms")),
        None => failures.push("no handshake answered after the storm".into()),
    }
    if pid.is_some() && after.is_none() {
        failures.push("the server process is gone".into());
    }
    let rss_kib = match (before, after) {
        (Some(b), Some(a)) => {
            let p = peak.load(Ordering::Relaxed);
            // "Near its level before": within half again plus 16 MiB (allocator slack).
            if a.0 > b.0 + b.0 / 2 + 16 * 1024 {
                failures.push(format!("RSS after the storm {} KiB, before {} KiB", a.0, b.0));
            }
            Some((b.0, p, a.0))
        }
        _ => None,
    };
    let fds = match (before, after) {
        (Some(b), Some(a)) => {
            if a.1 > b.1 + 16 {
                failures.push(format!("open descriptors after the storm {}, before {}", a.1, b.1));
            }
            Some((b.1, a.1))
        }
        _ => None,
    };
    Ok(Report {
        seed,
        duration_s: args.duration,
        attacks: KINDS
            .iter()
            .zip(counts.iter())
            .map(|(k, n)| ((*k).to_owned(), n.load(Ordering::Relaxed)))
            .collect(),
        healthy_clients: args.clients as usize,
        sent: sent.load(Ordering::Relaxed),
        acked: acked.len() as u64,
        lost,
        out_of_order,
        healthy_dropped,
        handshake_after_ms,
        rss_kib,
        fds,
        pass: failures.is_empty(),
        failures,
    })
}

fn sample(pid: u32) -> Option<(u64, u64)> {
    crate::sys::rss_and_fds(pid)
}

// ---------------------------------------------------------------------------------------
// The healthy side
// ---------------------------------------------------------------------------------------

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// What each healthy subscriber got (kept outside its task, which is stopped at the end).
#[derive(Clone, Default)]
struct Got {
    seqs: Vec<u64>,
    /// Its connection ended (the server closed or reset it) before the run did.
    ended: bool,
}

type Records = Arc<Mutex<Vec<Got>>>;

async fn healthy_member(host: &str, room: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
    ws.send(Message::text("40")).await?;
    // The join goes once the namespace CONNECT is answered: a server may drop an event for
    // a namespace its socket has not joined yet (the reference does, while its middlewares
    // run).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut joining = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let t = t.as_str();
                if t == "2" {
                    ws.send(Message::text("3")).await?;
                } else if !joining && t.starts_with("40") {
                    joining = true;
                    ws.send(Message::text(format!("420{}", serde_json::json!(["join", room]))))
                        .await?;
                } else if joining && t == "430[true]" {
                    return Ok(ws);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    bail!("no join acknowledgement")
}

async fn subscribe(mut ws: Ws, records: Records) {
    let slot = {
        let mut all = records.lock().unwrap_or_else(|p| p.into_inner());
        all.push(Got::default());
        all.len() - 1
    };
    let record = |f: &dyn Fn(&mut Got)| {
        let mut all = records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = all.get_mut(slot) {
            f(g);
        }
    };
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                let t = t.as_str();
                if t == "2" {
                    let _ = ws.send(Message::text("3")).await;
                } else if let Some(rest) = t.strip_prefix("42[\"news\",") {
                    if let Ok(n) = rest.trim_end_matches(']').parse::<u64>() {
                        record(&|g| g.seqs.push(n));
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    record(&|g| g.ended = true);
}

async fn publish(
    mut ws: Ws,
    room: String,
    rate: u32,
    acked: Arc<Mutex<Vec<u64>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tick.tick() => {
                seq += 1;
                let m = format!("42{seq}{}", serde_json::json!(["publish", room, "news", seq]));
                if ws.send(Message::text(m)).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if t == "2" {
                        let _ = ws.send(Message::text("3")).await;
                    } else if let Some(id) = t.strip_prefix("43").and_then(|r| r.strip_suffix("[true]")) {
                        if let Ok(id) = id.parse() {
                            if let Ok(mut a) = acked.lock() {
                                a.push(id);
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn polling_handshake(addr: SocketAddr, host: &str) -> anyhow::Result<()> {
    let mut tcp = TcpStream::connect(addr).await?;
    let req = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    if String::from_utf8_lossy(&out).contains("\"sid\"") {
        Ok(())
    } else {
        bail!("no handshake in the answer")
    }
}

// ---------------------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------------------

async fn attack(kind: usize, addr: SocketAddr, host: &str, rng: &mut Rng) -> std::io::Result<()> {
    match KINDS[kind] {
        "garbage" => {
            let mut tcp = TcpStream::connect(addr).await?;
            let n = 1 + rng.below(4096) as usize;
            tcp.write_all(&rng.bytes(n)).await?;
            drain(&mut tcp).await
        }
        "huge-header" => {
            let mut tcp = TcpStream::connect(addr).await?;
            let n = 16 * 1024 + rng.below(512 * 1024) as usize;
            let req = format!(
                "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\nX-Big: "
            );
            tcp.write_all(req.as_bytes()).await?;
            tcp.write_all(&vec![b'a'; n]).await?;
            tcp.write_all(b"\r\n\r\n").await?;
            drain(&mut tcp).await
        }
        "endless-headers" => {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(
                format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\n")
                    .as_bytes(),
            )
            .await?;
            for i in 0..2000 + rng.below(20_000) {
                tcp.write_all(format!("X-H{i}: v\r\n").as_bytes()).await?;
            }
            drain(&mut tcp).await
        }
        "huge-body" => {
            let sid = polling_sid(addr, host).await?;
            let mut tcp = TcpStream::connect(addr).await?;
            let claimed = 1u64 << (20 + rng.below(40));
            let req = format!(
                "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {claimed}\r\n\r\n"
            );
            tcp.write_all(req.as_bytes()).await?;
            let chunk = vec![b'4'; 64 * 1024];
            for _ in 0..rng.below(64) {
                if tcp.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drain(&mut tcp).await
        }
        "bad-frame" => {
            let mut tcp = ws_upgrade(addr, host).await?;
            let frame = bad_frame(rng);
            tcp.write_all(&frame).await?;
            drain(&mut tcp).await
        }
        "bad-packet" => {
            let mut tcp = ws_upgrade(addr, host).await?;
            tcp.write_all(&frame(1, b"40", true, rng)).await?;
            for _ in 0..1 + rng.below(4) {
                let p = bad_packet(rng);
                let op = if rng.below(8) == 0 { 2 } else { 1 };
                tcp.write_all(&frame(op, &p, true, rng)).await?;
            }
            drain(&mut tcp).await
        }
        "flood" => {
            let mut conns = Vec::new();
            for _ in 0..20 + rng.below(80) {
                if let Ok(mut c) = TcpStream::connect(addr).await {
                    if rng.below(2) == 0 {
                        let _ = c.write_all(b"GET /socket.io/?EIO=4&transport=pol").await;
                    }
                    conns.push(c);
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            drop(conns);
            Ok(())
        }
        _ => {
            // Deep JSON over polling: the handshake, then a POST of `42[[[[...`.
            let sid = polling_sid(addr, host).await?;
            let depth = 1000 + rng.below(200_000) as usize;
            let mut body = b"42[\"e\",".to_vec();
            body.extend(std::iter::repeat_n(b'[', depth));
            if rng.below(2) == 0 {
                body.extend(std::iter::repeat_n(b']', depth));
                body.push(b']');
            }
            let mut tcp = TcpStream::connect(addr).await?;
            let req = format!(
                "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tcp.write_all(req.as_bytes()).await?;
            tcp.write_all(&body).await?;
            drain(&mut tcp).await
        }
    }
}

/// Reads until the server closes (or resets) the connection.
async fn drain(tcp: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// A polling handshake's sid.
async fn polling_sid(addr: SocketAddr, host: &str) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    let req = format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let sid = text
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("none")
        .to_owned();
    Ok(sid)
}

/// A raw TCP connection upgraded to WebSocket (the 101 read), the server's open packet
/// left in the socket.
async fn ws_upgrade(addr: SocketAddr, host: &str) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    let req = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        if tcp.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(tcp)
}

/// A client frame: masked with a random key.
fn frame(opcode: u8, payload: &[u8], fin: bool, rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    push_len(&mut out, payload.len() as u64, true);
    let key = rng.bytes(4);
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn push_len(out: &mut Vec<u8>, len: u64, masked: bool) {
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len < 65536 {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// One malformed frame: a reserved opcode, reserved bits, no mask, a length up to 2^63, a
/// fragmented or oversized control frame, invalid UTF-8, a continuation with no start, a
/// close with a forbidden code, or random bytes after a valid header.
fn bad_frame(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => frame(3 + rng.below(5) as u8, b"x", true, rng),
        1 => frame(0xB + rng.below(5) as u8, b"x", true, rng),
        2 => {
            let mut f = frame(1, b"40", true, rng);
            f[0] |= 0x70;
            f
        }
        3 => {
            let mut f = vec![0x81];
            push_len(&mut f, 2, false);
            f.extend_from_slice(b"40");
            f
        }
        4 => {
            let mut f = vec![0x82];
            push_len(&mut f, (1u64 << 63) + rng.below(1 << 20), true);
            let n = 4 + rng.below(64) as usize;
            f.extend_from_slice(&rng.bytes(n));
            f
        }
        5 => frame(9, b"fragmented ping", false, rng),
        6 => frame(9, &[b'p'; 200], true, rng),
        7 => frame(1, &[0x34, 0x32, 0xff, 0xfe, 0xc0, 0x80], true, rng),
        8 => frame(0, b"continuation", true, rng),
        _ => frame(8, &[0x03, 0xed], true, rng),
    }
}

/// One mutated Engine.IO / Socket.IO packet.
fn bad_packet(rng: &mut Rng) -> Vec<u8> {
    let valid: &[&[u8]] = &[
        b"42[\"message\",\"hi\"]",
        b"420[\"message-with-ack\",1]",
        b"451-[\"message\",{\"_placeholder\":true,\"num\":0}]",
        b"40/custom,",
        b"43[\"x\"]",
    ];
    match rng.below(9) {
        0 => format!(
            "45{}-[\"message\",{{\"_placeholder\":true,\"num\":0}}]",
            1 + rng.below(1 << 40)
        )
        .into_bytes(),
        1 => b"451-[\"message\",{\"_placeholder\":true,\"num\":7}]".to_vec(),
        2 => format!("42{}[\"message\",1]", "9".repeat(1 + rng.below(60) as usize)).into_bytes(),
        3 => {
            let mut p = b"42[\"message\",\"".to_vec();
            p.extend(std::iter::repeat_n(b'a', 100_000 + rng.below(2_000_000) as usize));
            p.extend_from_slice(b"\"]");
            p
        }
        4 => b"42[\"connect\"]".to_vec(),
        5 => {
            let n = 1 + rng.below(256) as usize;
            rng.bytes(n)
        }
        6 => b"4".to_vec(),
        7 => b"9".to_vec(),
        _ => {
            let mut p = valid[rng.below(valid.len() as u64) as usize].to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(p.len() as u64) as usize;
                p[i] ^= 1 << rng.below(8);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_throws_the_same_attacks() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<_> =
            (0..100).map(|_| (a.below(8), bad_packet(&mut a), bad_frame(&mut a))).collect();
        let ys: Vec<_> =
            (0..100).map(|_| (b.below(8), bad_packet(&mut b), bad_frame(&mut b))).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::new(43);
        assert_ne!(
            xs[0..10],
            (0..10)
                .map(|_| (c.below(8), bad_packet(&mut c), bad_frame(&mut c)))
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn client_frames_are_masked_with_the_length_encoded_as_rfc_6455_says() {
        let mut rng = Rng::new(1);
        let f = frame(1, b"40", true, &mut rng);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 2);
        assert_eq!(f.len(), 2 + 4 + 2);
        let key = &f[2..6];
        assert_eq!([f[6] ^ key[0], f[7] ^ key[1]], *b"40");
        let big = frame(2, &vec![0; 70_000], true, &mut rng);
        assert_eq!(big[1], 0x80 | 127);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }
}

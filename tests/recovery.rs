//! Connection state recovery over real sockets, websocket and polling, on 4 shards: a
//! client whose connection dropped comes back with its `pid` and last offset and gets the
//! same socket id, its rooms and data, every missed packet once and in order (binary
//! included; acked and volatile ones not), then live traffic with no gap and no duplicate;
//! and the cases that get a new session instead: the window passed, a manual disconnect, a
//! forged pid or offset, the replay log's cap.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use shardcast::proto::sid::Sid;
use shardcast::{ConnectError, DisconnectReason, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

// ---------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------

/// What the test app reports.
struct Seen {
    /// (socket id, recovered) of each connection.
    connected: UnboundedReceiver<(String, bool)>,
    /// (socket id, reason) of each disconnection.
    gone: UnboundedReceiver<(String, DisconnectReason)>,
    /// How many times the namespace middleware ran.
    middleware_runs: Arc<AtomicUsize>,
}

/// On `/`: a middleware (refuses `auth.deny`), `auth` emitted on connection, and
/// - `join` (room) + ack; `set-data` (value) + ack;
/// - `whoami` + ack `{id, rooms (sorted, own id left out), data, recovered}`;
/// - `publish` (room, event, ...args) + ack: `io.to(room).emit(event, ...args)`;
/// - `publish-volatile` (room, event, ...args) + ack: the same, volatile;
/// - `publish-acked` (room, event) + ack: `io.to(room).timeout(200ms).emit_with_ack(event)`;
/// - `echo` (...args): `socket.emit("echo-back", ...args)`;
/// - `ask` + ack: `socket.timeout(200ms).emit_with_ack("question")`, acked at once.
fn app(io: &Server) -> Seen {
    let (ctx, crx) = channel();
    let (gtx, grx) = channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let root = io.of("/");
    let r = runs.clone();
    root.use_middleware(move |s| {
        r.fetch_add(1, Ordering::SeqCst);
        if s.handshake().auth.get("deny") == Some(&json!(true)) {
            return Err(ConnectError::new("denied"));
        }
        Ok(())
    });
    let ns = root.clone();
    root.on_connection(move |socket| {
        let _ = ctx.send((socket.id().to_owned(), socket.recovered()));
        let gtx = gtx.clone();
        socket.on_disconnect(move |s, reason| {
            let _ = gtx.send((s.id().to_owned(), reason));
        });
        let _ = socket.emit("auth", socket.handshake().auth.clone());
        socket.on("join", |s, args, ack| {
            if let Some(room) = args.str(0) {
                s.join(room);
            }
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
        socket.on("set-data", |s, args, ack| {
            s.set_data(args.values().first().cloned().unwrap_or(Value::Null));
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
        socket.on("whoami", |s, _args, ack| {
            let mut rooms: Vec<String> =
                s.rooms().iter().filter(|r| ***r != *s.id()).map(|r| r.to_string()).collect();
            rooms.sort();
            if let Some(ack) = ack {
                let _ = ack.send((json!({
                    "id": s.id(), "rooms": rooms, "data": s.data(), "recovered": s.recovered()
                }),));
            }
        });
        for (name, volatile) in [("publish", false), ("publish-volatile", true)] {
            let ns = ns.clone();
            socket.on(name, move |_s, args, ack| {
                let (Some(room), Some(event)) = (args.str(0), args.str(1)) else { return };
                let (room, event) = (room.to_owned(), event.to_owned());
                let op = ns.to(room);
                let op = if volatile { op.volatile() } else { op };
                let _ = op.emit(&event, args.skip(2));
                if let Some(ack) = ack {
                    let _ = ack.send((true,));
                }
            });
        }
        let n = ns.clone();
        socket.on("publish-acked", move |_s, args, ack| {
            let (Some(room), Some(event)) = (args.str(0), args.str(1)) else { return };
            let op = n.to(room.to_owned()).timeout(Duration::from_millis(200));
            let event = event.to_owned();
            tokio::task::spawn_local(async move {
                let _ = op.emit_with_ack(&event, ()).await;
            });
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
        socket.on("echo", |s, args, _ack| {
            let _ = s.emit("echo-back", args);
        });
        socket.on("ask", |s, _args, ack| {
            let s2 = s.clone();
            tokio::task::spawn_local(async move {
                let _ = s2.timeout(Duration::from_millis(200)).emit_with_ack("question", ()).await;
            });
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
    });
    Seen { connected: crx, gone: grx, middleware_runs: runs }
}

fn server_with(
    window: Duration,
    tune: impl FnOnce(shardcast::ConfigBuilder) -> shardcast::ConfigBuilder,
) -> (TestServer, Seen) {
    let cfg = tune(config().shards(4).connection_state_recovery(window, true)).build().unwrap();
    let mut seen = None;
    let server = TestServer::start(cfg, |io| seen = Some(app(io)));
    (server, seen.unwrap())
}

fn server() -> (TestServer, Seen) {
    server_with(Duration::from_secs(30), |c| c)
}

// ---------------------------------------------------------------------------------------
// A client over either transport, reading Socket.IO packets
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Websocket,
    Polling,
}

/// One packet from the server: an Engine.IO message (text) or a binary attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pkt {
    Text(String),
    Bin(Vec<u8>),
}

enum Wire {
    Ws(Box<Ws>),
    Polling { sid: String, queue: std::collections::VecDeque<Pkt> },
}

struct Client {
    addr: std::net::SocketAddr,
    wire: Wire,
    /// The shard of the connection (its Engine.IO session).
    shard: u8,
    /// The socket id, pid and the last offset seen.
    id: String,
    pid: String,
    offset: Option<String>,
    next_ack: u64,
}

/// The event name and arguments of `42[...]`, when `text` is an EVENT on `/`.
fn event_of(text: &str) -> Option<Vec<Value>> {
    let rest = text.strip_prefix("42").or_else(|| {
        // A BINARY_EVENT: `45<n>-[...]`.
        let r = text.strip_prefix("45")?;
        let dash = r.find('-')?;
        Some(&r[dash + 1..])
    })?;
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None; // an ack id: not a plain event
    }
    match serde_json::from_str(rest).ok()? {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// The trailing string argument of an event: its offset, when recovery is on.
fn offset_of(args: &[Value]) -> Option<String> {
    args.last().and_then(Value::as_str).map(str::to_owned)
}

impl Client {
    /// Opens a session and sends the CONNECT of `/` with `auth`; returns the client and the
    /// packets that came before the CONNECT reply (a restore's missed packets).
    async fn connect(addr: std::net::SocketAddr, mode: Mode, auth: Value) -> (Client, Vec<Pkt>) {
        let (wire, engine) = match mode {
            Mode::Websocket => {
                let (ws, open) = Ws::open(addr).await;
                let sid = open["sid"].as_str().unwrap().to_owned();
                (Wire::Ws(Box::new(ws)), sid)
            }
            Mode::Polling => {
                let (sid, _) = handshake(addr).await;
                (Wire::Polling { sid: sid.clone(), queue: Default::default() }, sid)
            }
        };
        let shard = Sid::parse(&engine).unwrap().shard();
        let mut c = Client {
            addr,
            wire,
            shard,
            id: String::new(),
            pid: String::new(),
            offset: None,
            next_ack: 1,
        };
        c.send(&format!("40{auth}")).await;
        let mut before = Vec::new();
        let connect = loop {
            let p = c.next().await;
            match &p {
                Pkt::Text(t) if t.starts_with("40") => break t.clone(),
                _ => {
                    c.note(&p);
                    before.push(p);
                }
            }
        };
        let v: Value = serde_json::from_str(&connect[2..]).expect("CONNECT reply JSON");
        c.id = v["sid"].as_str().expect("sid").to_owned();
        c.pid = v["pid"].as_str().expect("pid (recovery is on)").to_owned();
        assert_eq!(v.as_object().unwrap().len(), 2, "{connect}");
        // The `auth` event comes right after.
        let auth_event = c.next_event().await;
        assert_eq!(auth_event[0], "auth", "{auth_event:?}");
        (c, before)
    }

    /// Comes back with the pid and last offset of `old` (which must have dropped).
    async fn reconnect(old: &Client, mode: Mode) -> (Client, Vec<Pkt>) {
        let auth = json!({"pid": old.pid, "offset": old.offset.clone().expect("an offset")});
        Client::connect(old.addr, mode, auth).await
    }

    /// Keeps the offset of an event received.
    fn note(&mut self, p: &Pkt) {
        if let Pkt::Text(t) = p {
            if let Some(o) = event_of(t).as_deref().and_then(offset_of) {
                self.offset = Some(o);
            }
        }
    }

    async fn send(&mut self, text: &str) {
        match &mut self.wire {
            Wire::Ws(ws) => ws.send(text).await,
            Wire::Polling { sid, .. } => post_ok(self.addr, sid, text).await,
        }
    }

    /// The next packet (answering pings).
    async fn next(&mut self) -> Pkt {
        match &mut self.wire {
            Wire::Ws(ws) => match ws.next().await {
                Frame::Text(t) => Pkt::Text(t),
                Frame::Binary(b) => Pkt::Bin(b),
                Frame::Closed => panic!("connection closed"),
            },
            Wire::Polling { sid, queue } => loop {
                if let Some(p) = queue.pop_front() {
                    return p;
                }
                for p in poll_packets(self.addr, sid).await {
                    if p == "2" {
                        post_ok(self.addr, sid, "3").await;
                    } else if let Some(b64) = p.strip_prefix('b') {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .expect("base64 attachment");
                        queue.push_back(Pkt::Bin(bytes));
                    } else {
                        queue.push_back(Pkt::Text(p));
                    }
                }
            },
        }
    }

    /// The next plain event's arguments (event name first), noting its offset.
    async fn next_event(&mut self) -> Vec<Value> {
        loop {
            let p = self.next().await;
            self.note(&p);
            if let Pkt::Text(t) = &p {
                if let Some(ev) = event_of(t) {
                    return ev;
                }
            }
        }
    }

    /// Emits `event` with an ack and returns the ack's arguments; other packets received
    /// meanwhile are returned too.
    async fn call(&mut self, args: Value) -> (Value, Vec<Pkt>) {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!("42{id}{args}")).await;
        let prefix = format!("43{id}");
        let mut other = Vec::new();
        loop {
            let p = self.next().await;
            if let Pkt::Text(t) = &p {
                if let Some(rest) = t.strip_prefix(&prefix) {
                    return (serde_json::from_str(rest).expect("ack JSON"), other);
                }
            }
            self.note(&p);
            other.push(p);
        }
    }

    async fn call_ok(&mut self, args: Value) -> Vec<Pkt> {
        let (ack, other) = self.call(args).await;
        assert_eq!(ack, json!([true]));
        other
    }

    /// The connection drops under the client: the TCP connection goes away (websocket), or
    /// the pending poll is abandoned (polling), as a network failure does.
    async fn drop_connection(self) {
        match self.wire {
            Wire::Ws(ws) => drop(ws),
            Wire::Polling { sid, .. } => {
                // A poll that the server holds (nothing to send), then gone. While packets
                // keep coming, each poll is answered at once instead: those answers are lost
                // with the connection too (the replay has them), and the next poll tries
                // again.
                let req = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", poll_target(&sid));
                let deadline = tokio::time::Instant::now() + WAIT;
                while tokio::time::Instant::now() < deadline {
                    let mut tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                    tcp.write_all(req.as_bytes()).await.unwrap();
                    let mut buf = vec![0u8; 64 * 1024];
                    let read =
                        tokio::time::timeout(Duration::from_millis(150), tcp.read(&mut buf)).await;
                    match read {
                        // Held: drop it.
                        Err(_) => return drop(tcp),
                        Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 200") => continue,
                        // The session is gone already.
                        Ok(_) => return,
                    }
                }
                panic!("every poll was answered at once");
            }
        }
    }
}

/// Waits until `f(server)` holds (bounded by WAIT).
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The events among `pkts` (name and arguments, offsets stripped), binary attachments as
/// `{"bin": [bytes]}` after their event.
fn events(pkts: &[Pkt]) -> Vec<Value> {
    let mut out = Vec::new();
    for p in pkts {
        match p {
            Pkt::Text(t) => {
                if let Some(mut ev) = event_of(t) {
                    ev.pop(); // the offset
                    out.push(Value::Array(ev));
                }
            }
            Pkt::Bin(b) => out.push(json!({ "bin": b })),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

async fn recovers_id_rooms_data_and_missed_packets(mode: Mode) {
    let (server, mut seen) = server();
    let addr = server.addr;
    let (mut a, _) = Client::connect(addr, mode, json!({"token": "t"})).await;
    recv(&mut seen.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    a.call_ok(json!(["set-data", {"n": 1, "s": "x"}])).await;
    // Everything the server sends carries an offset, socket.emit included.
    a.send(r#"42["echo","before"]"#).await;
    assert_eq!(a.next_event().await.len(), 3, "echo-back, its argument and the offset");
    let (mut b, _) = Client::connect(addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    let (old_id, old_pid) = (a.id.clone(), a.pid.clone());
    assert_ne!(old_id, old_pid, "the pid is private, not the socket id");

    a.drop_connection_keep().await;
    let (gone_id, reason) = recv(&mut seen.gone).await;
    assert_eq!(gone_id, old_id);
    assert!(
        matches!(reason, DisconnectReason::TransportClose | DisconnectReason::TransportError),
        "{reason}"
    );
    until("the session kept", || server.io.recovery_stats().persisted == 1).await;

    // While it is away: what it must get back, and what it must not.
    b.call_ok(json!(["publish", "r1", "m1", "text", 1])).await;
    b.call_ok(json!(["publish-volatile", "r1", "vol", 2])).await;
    b.call_ok(json!(["publish-acked", "r1", "acked"])).await;
    b.call_ok(json!(["publish", "r2", "other-room", 3])).await;
    b.send(
        r#"452-["publish","r1","m2",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    match &mut b.wire {
        Wire::Ws(ws) => {
            ws.send_binary(&[1, 2, 3]).await;
            ws.send_binary(&[0xff]).await;
        }
        Wire::Polling { .. } => unreachable!(),
    }
    b.call_ok(json!(["publish", "r1", "m3"])).await;
    // From a thread that is not a shard, to the socket's own room.
    server.io.to(old_id.as_str()).emit("to-id", ("direct",)).unwrap();
    server.io.emit("everyone", ()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (mut a2, missed) = Client::reconnect(&a, mode).await;
    if mode == Mode::Websocket {
        // (Each polling request is a connection of its own, dealt to any shard.)
        assert_ne!(a2.shard, a.shard, "the new connection is on another shard");
    }
    assert_eq!(a2.id, old_id, "same socket id");
    assert_eq!(a2.pid, old_pid, "same pid");
    // Each sender's in the order it sent them (b's through its shard, the test thread's
    // through shard 0: the two sequences may interleave either way).
    let missed = events(&missed);
    let from_b: Vec<Value> = missed
        .iter()
        .filter(|e| e[0].as_str().is_none_or(|n| n.starts_with('m')))
        .cloned()
        .collect();
    let from_thread: Vec<Value> = missed
        .iter()
        .filter(|e| e[0].as_str().is_some_and(|n| !n.starts_with('m')))
        .cloned()
        .collect();
    assert_eq!(
        from_b,
        vec![
            json!(["m1", "text", 1]),
            json!(["m2", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}]),
            json!({"bin": [1, 2, 3]}),
            json!({"bin": [255]}),
            json!(["m3"]),
        ],
        "missed packets, in order, before the CONNECT reply: {missed:?}"
    );
    assert_eq!(from_thread, vec![json!(["to-id", "direct"]), json!(["everyone"])], "{missed:?}");
    assert_eq!(missed.len(), 7, "{missed:?}");
    let (id, recovered) = recv(&mut seen.connected).await;
    assert_eq!((id.as_str(), recovered), (old_id.as_str(), true));
    let (who, _) = a2.call(json!(["whoami"])).await;
    assert_eq!(
        who,
        json!([{"id": old_id, "rooms": ["r1"], "data": {"n": 1, "s": "x"}, "recovered": true}])
    );
    // Live traffic goes on, once.
    b.call_ok(json!(["publish", "r1", "live", 4])).await;
    assert_eq!(a2.next_event().await[..2], [json!("live"), json!(4)]);
    a2.send(r#"42["echo","after"]"#).await;
    assert_eq!(a2.next_event().await[..2], [json!("echo-back"), json!("after")]);
    let stats = server.io.recovery_stats();
    assert_eq!((stats.recovered, stats.not_recovered), (1, 0), "{stats:?}");
    // The middleware was skipped for the restored socket (2 runs: a and b).
    assert_eq!(seen.middleware_runs.load(Ordering::SeqCst), 2);
}

impl Client {
    /// [`Client::drop_connection`] keeping the client's ids and offset for a reconnect.
    async fn drop_connection_keep(&mut self) {
        let wire = std::mem::replace(
            &mut self.wire,
            Wire::Polling { sid: String::new(), queue: Default::default() },
        );
        let gone = Client {
            addr: self.addr,
            wire,
            shard: self.shard,
            id: String::new(),
            pid: String::new(),
            offset: None,
            next_ack: 0,
        };
        gone.drop_connection().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_over_websocket() {
    recovers_id_rooms_data_and_missed_packets(Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_over_polling() {
    recovers_id_rooms_data_and_missed_packets(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_offsets_only_on_plain_events() {
    let (server, mut seen) = server();
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    let Wire::Ws(ws) = &mut a.wire else { unreachable!() };
    // An event the server emits with an ack: `42<id>[...]`, no offset.
    ws.send(r#"429["ask"]"#).await;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        texts.push(ws.text().await);
    }
    assert!(texts.contains(&"439[true]".to_owned()), "{texts:?}");
    let question = texts.iter().find(|t| t.contains("question")).expect("question");
    let rest = question.strip_prefix("42").unwrap();
    let (id, body) = rest.split_at(rest.find('[').unwrap());
    assert!(id.parse::<u64>().is_ok(), "{question}");
    assert_eq!(body, r#"["question"]"#, "an acked emit carries no offset");
    // Volatile: no offset either.
    ws.send(r#"4210["publish-volatile","r1","vol",1]"#).await;
    let mut got = vec![ws.text().await, ws.text().await];
    got.sort();
    assert_eq!(got, vec![r#"42["vol",1]"#.to_owned(), "4310[true]".to_owned()]);
    // A plain broadcast: its offset, the same for every recipient.
    let (mut b, _) = Client::connect(server.addr, Mode::Polling, json!({})).await;
    b.call_ok(json!(["join", "r1"])).await;
    let Wire::Ws(ws) = &mut a.wire else { unreachable!() };
    ws.send(r#"4211["publish","r1","plain",1]"#).await;
    let mut at_a = Vec::new();
    while at_a.len() < 2 {
        at_a.push(ws.text().await);
    }
    let ev_a = at_a.iter().find(|t| t.contains("plain")).unwrap().clone();
    let ev_b = b.next_event().await;
    let args_a = event_of(&ev_a).unwrap();
    assert_eq!(args_a, ev_b, "one encoding: the same offset for every recipient");
    assert_eq!(args_a.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_window_gives_a_new_session() {
    let (server, mut seen) = server_with(Duration::from_millis(300), |c| c);
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    a.drop_connection_keep().await;
    until("the session kept", || server.io.recovery_stats().persisted == 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (a2, missed) = Client::reconnect(&a, Mode::Websocket).await;
    assert!(missed.is_empty());
    assert_ne!(a2.id, a.id);
    assert_ne!(a2.pid, a.pid);
    assert!(!recv(&mut seen.connected).await.1);
    assert_eq!(server.io.recovery_stats().not_recovered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_disconnects_are_not_recovered() {
    let (server, mut seen) = server();
    // The client leaves the namespace (`41`), then closes.
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    a.send("41").await;
    assert_eq!(recv(&mut seen.gone).await.1, DisconnectReason::ClientNamespaceDisconnect);
    a.drop_connection_keep().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.io.recovery_stats().persisted, 0);
    let (a2, _) = Client::reconnect(&a, Mode::Websocket).await;
    assert_ne!(a2.id, a.id);
    assert!(!recv(&mut seen.connected).await.1);
    // The server disconnects it (`socket.disconnect(true)`).
    let socket_id = a2.id.clone();
    let fetched = server.io.fetch_sockets().await.unwrap();
    let s = fetched.iter().find(|s| s.id() == socket_id).unwrap();
    s.disconnect(true);
    assert_eq!(recv(&mut seen.gone).await.1, DisconnectReason::ServerNamespaceDisconnect);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.io.recovery_stats().persisted, 0);
    let (a3, _) = Client::reconnect(&a2, Mode::Polling).await;
    assert_ne!(a3.id, a2.id);
    assert!(!recv(&mut seen.connected).await.1);
    assert_eq!(server.io.recovery_stats().recovered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_malformed_pid_and_offset_give_a_new_session() {
    let (server, mut seen) = server();
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    let offset = a.offset.clone().unwrap();
    let real_pid = a.pid.clone();
    a.drop_connection_keep().await;
    until("the session kept", || server.io.recovery_stats().persisted == 1).await;
    let forged = Sid::generate(Sid::parse(&real_pid).unwrap().shard()).to_string();
    // Right form, unknown packet.
    let (head, _) = offset.rsplit_once('.').unwrap();
    let unknown = format!("{head}.fffffff");
    let cases = [
        // Not even tried (counted): malformed pid, foreign pid, pid of a shard that does not
        // exist, offset of another form (another server's, or any trailing string).
        (json!({"pid": "foo", "offset": "bar"}), true),
        (json!({"pid": forged, "offset": offset}), true),
        (json!({"pid": Sid::generate(200).to_string(), "offset": offset}), true),
        (json!({"pid": real_pid, "offset": "Q8n-ngM.0"}), true),
        (json!({"pid": "\u{0}\u{ffff}", "offset": ""}), true),
        // Not strings: no attempt, as in socket.io.
        (json!({"pid": real_pid, "offset": 7}), false),
        (json!({"pid": ["x"], "offset": {"o": 1}}), false),
        // The right pid with an offset of the right form it never got: refused, and the
        // session is gone (a wrong guess burns it)...
        (json!({"pid": real_pid, "offset": unknown}), true),
        // ...so the right offset no longer works either.
        (json!({"pid": real_pid, "offset": offset}), true),
    ];
    let mut counted = 0;
    for (auth, tried) in cases {
        let (mut c, missed) = Client::connect(server.addr, Mode::Websocket, auth.clone()).await;
        assert!(missed.is_empty(), "{auth}");
        let (id, recovered) = recv(&mut seen.connected).await;
        assert_eq!(id, c.id);
        assert!(!recovered, "{auth}");
        assert_ne!(c.id, a.id, "{auth}");
        // The connection works.
        c.send(r#"42["echo","ok"]"#).await;
        assert_eq!(c.next_event().await[..2], [json!("echo-back"), json!("ok")]);
        counted += usize::from(tried);
        let stats = server.io.recovery_stats();
        assert_eq!((stats.recovered, stats.not_recovered), (0, counted as u64), "{auth}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_refuses_a_session_that_missed_too_much() {
    let (server, mut seen) = server_with(Duration::from_secs(30), |c| c.recovery_max_packets(8));
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    let (mut b, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    a.drop_connection_keep().await;
    until("the session kept", || server.io.recovery_stats().persisted == 1).await;
    for i in 0..20 {
        b.call_ok(json!(["publish", "r1", "m", i])).await;
    }
    let (a2, missed) = Client::reconnect(&a, Mode::Websocket).await;
    assert!(missed.is_empty(), "{missed:?}");
    assert_ne!(a2.id, a.id);
    let stats = server.io.recovery_stats();
    assert_eq!((stats.not_recovered, stats.not_recovered_cap), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middlewares_run_when_not_skipped() {
    let cfg = config()
        .shards(4)
        .connection_state_recovery(Duration::from_secs(30), false)
        .build()
        .unwrap();
    let mut seen = None;
    let server = TestServer::start(cfg, |io| seen = Some(app(io)));
    let mut seen = seen.unwrap();
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    a.drop_connection_keep().await;
    until("the session kept", || server.io.recovery_stats().persisted == 1).await;
    let (a2, _) = Client::reconnect(&a, Mode::Websocket).await;
    assert_eq!(a2.id, a.id);
    assert_eq!(recv(&mut seen.connected).await, (a.id.clone(), true));
    assert_eq!(seen.middleware_runs.load(Ordering::SeqCst), 2, "the middleware ran again");
}

/// Several publishers on different shards flood a room while a member drops and comes back
/// (twice): it gets each publisher's every message exactly once, in order.
async fn no_gap_no_duplicate(mode: Mode) {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 300;
    let (server, mut seen) = server();
    let addr = server.addr;
    let (mut a, _) = Client::connect(addr, mode, json!({})).await;
    recv(&mut seen.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    let mut tasks = Vec::new();
    let mut shards = HashSet::new();
    for p in 0..PUBLISHERS {
        let (c, _) = Client::connect(addr, Mode::Websocket, json!({})).await;
        shards.insert(Sid::parse(&c.id).unwrap().shard());
        let Wire::Ws(ws) = c.wire else { unreachable!() };
        let mut ws = *ws;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                ws.send(&format!(r#"42["publish","r1","n",{p},{i}]"#)).await;
                // Spread over a few hundred milliseconds, so the drops and restores happen
                // in the middle of the flood.
                if i % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            ws
        }));
    }
    assert!(shards.len() >= 3, "publishers on several shards: {shards:?}");
    let mut got: Vec<Vec<u64>> = vec![Vec::new(); PUBLISHERS];
    let record = |got: &mut Vec<Vec<u64>>, ev: &[Value]| {
        if ev.first() == Some(&json!("n")) {
            let (p, i) = (ev[1].as_u64().unwrap() as usize, ev[2].as_u64().unwrap());
            got[p].push(i);
        }
    };
    let total = |got: &Vec<Vec<u64>>| got.iter().map(Vec::len).sum::<usize>();
    for round in 0..2 {
        // Read a while, then drop in the middle of the flood.
        let target = (round + 1) * PUBLISHERS * EACH / 4;
        while total(&got) < target {
            let ev = a.next_event().await;
            record(&mut got, &ev);
        }
        if mode == Mode::Websocket && round == 1 {
            // The socket lives away from its pid's home: this restore asks the home, which
            // forwards to where the session is kept.
            assert_ne!(a.shard, Sid::parse(&a.pid).unwrap().shard());
        }
        let persisted = server.io.recovery_stats().persisted;
        a.drop_connection_keep().await;
        until("the session kept", || server.io.recovery_stats().persisted == persisted + 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (a2, missed) = Client::reconnect(&a, mode).await;
        assert_eq!(a2.id, a.id, "round {round}: recovered");
        if mode == Mode::Websocket {
            assert_ne!(a2.shard, a.shard, "round {round}: on another shard");
        }
        a = a2;
        for ev in events(&missed) {
            if let Value::Array(ev) = ev {
                record(&mut got, &ev);
            }
        }
    }
    while total(&got) < PUBLISHERS * EACH {
        let ev = tokio::time::timeout(WAIT, a.next_event()).await.unwrap_or_else(|_| {
            panic!("missing messages: {:?}", got.iter().map(Vec::len).collect::<Vec<_>>())
        });
        record(&mut got, &ev);
    }
    for (p, list) in got.iter().enumerate() {
        let expected: Vec<u64> = (0..EACH as u64).collect();
        assert_eq!(list, &expected, "publisher {p}: every message once, in order");
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.io.recovery_stats().recovered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_no_duplicate_over_websocket() {
    no_gap_no_duplicate(Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_no_duplicate_over_polling() {
    no_gap_no_duplicate(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_is_off_by_default() {
    let server = TestServer::demo(config().shards(4).build().unwrap());
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send(r#"40{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"x"}"#).await;
    let reply = ws.text().await;
    connect_ok_sid(&reply, "/"); // exactly {"sid"}: no pid
    assert_eq!(
        ws.text().await,
        r#"42["auth",{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"x"}]"#,
        "no offset appended"
    );
}

/// The client comes back while its old connection is still open (half-open: the server
/// has not noticed the drop yet, as when the client's ping timeout fires first): the old
/// connection is closed as dropped and the client gets its socket and what it missed.
async fn takes_over_a_half_open_connection(mode: Mode) {
    let (server, mut seen) = server();
    let (mut a, _) = Client::connect(server.addr, mode, json!({})).await;
    recv(&mut seen.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    let (mut b, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    b.call_ok(json!(["publish", "r1", "m", 1])).await;
    assert_eq!(a.next_event().await[..2], [json!("m"), json!(1)]);
    // Sent to the old connection, which nobody reads any more.
    b.call_ok(json!(["publish", "r1", "m", 2])).await;
    let (mut a2, missed) = Client::reconnect(&a, mode).await;
    assert_eq!(a2.id, a.id);
    assert_eq!(events(&missed), vec![json!(["m", 2])]);
    let (gone, reason) = recv(&mut seen.gone).await;
    assert_eq!((gone.as_str(), reason), (a.id.as_str(), DisconnectReason::TransportClose));
    assert_eq!(recv(&mut seen.connected).await, (a.id.clone(), true));
    let stats = server.io.recovery_stats();
    assert_eq!((stats.taken_over, stats.recovered), (1, 1), "{stats:?}");
    if let Wire::Ws(ws) = &mut a.wire {
        ws.expect_closed().await;
    }
    b.call_ok(json!(["publish", "r1", "m", 3])).await;
    assert_eq!(a2.next_event().await[..2], [json!("m"), json!(3)]);
    let (who, _) = a2.call(json!(["whoami"])).await;
    assert_eq!(who[0]["rooms"], json!(["r1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_over_a_half_open_websocket() {
    takes_over_a_half_open_connection(Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_over_a_half_open_polling_session() {
    takes_over_a_half_open_connection(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_too_long_for_the_clock_is_no_expiry() {
    let (server, mut seen) = server_with(Duration::MAX, |c| c);
    let (mut a, _) = Client::connect(server.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen.connected).await;
    // Restored away from its home, then dropped again: the home's pointer has no expiry.
    for round in 0..2 {
        a.drop_connection_keep().await;
        until("the session kept", || server.io.recovery_stats().persisted == round + 1).await;
        let (a2, _) = Client::reconnect(&a, Mode::Websocket).await;
        assert_eq!(a2.id, a.id, "round {round}");
        a = a2;
    }
    assert_eq!(server.io.recovery_stats().recovered, 2);
}

/// Many clients dropped at once come back at once, over 4 shards: each gets its own missed
/// packets, once and in order, then live traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_recover_at_once() {
    const CLIENTS: usize = 200;
    const MISSED: usize = 20;
    let (server, _seen) = server();
    let addr = server.addr;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (mut c, _) = Client::connect(addr, Mode::Websocket, json!({})).await;
        // Two rooms, so each client misses only its own room's packets.
        c.call_ok(json!(["join", format!("r{}", i % 2)])).await;
        clients.push(c);
    }
    let (mut b, _) = Client::connect(addr, Mode::Websocket, json!({})).await;
    for c in &mut clients {
        c.drop_connection_keep().await;
    }
    until("every session kept", || server.io.recovery_stats().persisted == CLIENTS as u64).await;
    for i in 0..MISSED {
        b.call_ok(json!(["publish", format!("r{}", i % 2), "m", i])).await;
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, old)| {
            tokio::spawn(async move {
                let (c, missed) = Client::reconnect(&old, Mode::Websocket).await;
                assert_eq!(c.id, old.id, "client {k}");
                let got: Vec<Value> = events(&missed);
                let expected: Vec<Value> =
                    (0..MISSED).filter(|i| i % 2 == k % 2).map(|i| json!(["m", i])).collect();
                assert_eq!(got, expected, "client {k}");
                c
            })
        })
        .collect();
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.unwrap());
    }
    let stats = server.io.recovery_stats();
    assert_eq!((stats.recovered, stats.not_recovered), (CLIENTS as u64, 0), "{stats:?}");
    b.call_ok(json!(["publish", "r0", "live", 1])).await;
    b.call_ok(json!(["publish", "r1", "live", 2])).await;
    for (k, c) in back.iter_mut().enumerate() {
        assert_eq!(c.next_event().await[..2], [json!("live"), json!(1 + k % 2)], "client {k}");
    }
}

// ---------------------------------------------------------------------------------------
// Across servers: two servers (4 shards each) on the Redis Streams adapter, on the Redis at
// 127.0.0.1:6379 (`REDIS_URL` to use another), a stream per test
// ---------------------------------------------------------------------------------------

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two servers of one cluster on stream `rs-<pid>-rec-<name>`, recovery on (30 s).
fn cluster_pair(
    name: &str,
    tune: impl Fn(shardcast::ConfigBuilder) -> shardcast::ConfigBuilder,
) -> [(TestServer, Seen); 2] {
    let key = format!("rs-{}-rec-{name}", std::process::id());
    let start = || {
        let cfg = config()
            .shards(4)
            .connection_state_recovery(Duration::from_secs(30), true)
            .redis(redis_url())
            .redis_key(&key)
            .redis_streams(true);
        let mut seen = None;
        let server = TestServer::start(tune(cfg).build().unwrap(), |io| seen = Some(app(io)));
        (server, seen.unwrap())
    };
    [start(), start()]
}

/// Whether Redis keeps session `pid` (`sio:session:<pid>`, as the Node adapter).
fn session_in_redis(pid: &str) -> bool {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("EXISTS").arg(format!("sio:session:{pid}")).query::<i64>(&mut conn).unwrap() == 1
}

async fn recovers_on_another_server(mode: Mode) {
    let [(sa, mut seen_a), (sb, mut seen_b)] = cluster_pair(&format!("{mode:?}"), |c| c);
    let (mut a, _) = Client::connect(sa.addr, mode, json!({})).await;
    recv(&mut seen_a.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    a.call_ok(json!(["set-data", {"n": 1, "s": "x"}])).await;
    // socket.emit carries the stream's offset too.
    a.send(r#"42["echo","before"]"#).await;
    let echo = a.next_event().await;
    assert_eq!(echo.len(), 3, "{echo:?}");
    assert!(echo[2].as_str().is_some_and(|o| o.split_once('-').is_some()), "an entry id: {echo:?}");
    let (mut b, _) = Client::connect(sb.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen_b.connected).await;
    let (old_id, old_pid) = (a.id.clone(), a.pid.clone());

    a.drop_connection_keep().await;
    assert_eq!(recv(&mut seen_a.gone).await.0, old_id);
    until("the session in Redis", || session_in_redis(&old_pid)).await;

    // While it is away, from the other server: what it must get back, and what it must not.
    b.call_ok(json!(["publish", "r1", "m1", "text", 1])).await;
    b.call_ok(json!(["publish-volatile", "r1", "vol", 2])).await;
    b.call_ok(json!(["publish-acked", "r1", "acked"])).await;
    b.call_ok(json!(["publish", "r2", "other-room", 3])).await;
    b.send(
        r#"452-["publish","r1","m2",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    match &mut b.wire {
        Wire::Ws(ws) => {
            ws.send_binary(&[1, 2, 3]).await;
            ws.send_binary(&[0xff]).await;
        }
        Wire::Polling { .. } => unreachable!(),
    }
    b.call_ok(json!(["publish", "r1", "m3"])).await;
    // And from the first server's API, to its own room and to everyone.
    sa.io.to(old_id.as_str()).emit("to-id", ("direct",)).unwrap();
    sa.io.emit("everyone", ()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Back on the other server.
    let auth = json!({"pid": old_pid, "offset": a.offset.clone().expect("an offset")});
    let (mut a2, missed) = Client::connect(sb.addr, mode, auth).await;
    assert_eq!((a2.id.as_str(), a2.pid.as_str()), (old_id.as_str(), old_pid.as_str()));
    // Each server's in the order it issued them (the two servers' may interleave: a
    // server acks a publish once it is queued for the stream, not appended).
    let missed = events(&missed);
    let from_a = |e: &&Value| e[0].as_str().is_some_and(|n| !n.starts_with('m'));
    let (a_part, b_part): (Vec<Value>, Vec<Value>) =
        missed.iter().cloned().partition(|e| from_a(&e));
    assert_eq!(
        b_part,
        vec![
            json!(["m1", "text", 1]),
            json!(["m2", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}]),
            json!({"bin": [1, 2, 3]}),
            json!({"bin": [255]}),
            json!(["m3"]),
        ],
        "missed packets of the other server, in order, before the CONNECT reply: {missed:?}"
    );
    assert_eq!(a_part, vec![json!(["to-id", "direct"]), json!(["everyone"])], "{missed:?}");
    assert_eq!(recv(&mut seen_b.connected).await, (old_id.clone(), true));
    let (who, _) = a2.call(json!(["whoami"])).await;
    assert_eq!(
        who,
        json!([{"id": old_id, "rooms": ["r1"], "data": {"n": 1, "s": "x"}, "recovered": true}])
    );
    // Live traffic from both servers, once.
    b.call_ok(json!(["publish", "r1", "live", 4])).await;
    assert_eq!(a2.next_event().await[..2], [json!("live"), json!(4)]);
    sa.io.to("r1").emit("live-a", (5,)).unwrap();
    assert_eq!(a2.next_event().await[..2], [json!("live-a"), json!(5)]);
    a2.send(r#"42["echo","after"]"#).await;
    assert_eq!(a2.next_event().await[..2], [json!("echo-back"), json!("after")]);
    let stats = sb.io.recovery_stats();
    assert_eq!((stats.recovered, stats.not_recovered), (1, 0), "{stats:?}");
    assert_eq!(sa.io.recovery_stats().persisted, 1);
    // The middleware was skipped for the restored socket (one run on b's server: b).
    assert_eq!(seen_b.middleware_runs.load(Ordering::SeqCst), 1);
    assert!(!session_in_redis(&old_pid), "a session is taken when restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_on_another_server_over_websocket() {
    recovers_on_another_server(Mode::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_on_another_server_over_polling() {
    recovers_on_another_server(Mode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_servers_the_cap_and_bad_offsets_give_a_new_session() {
    let [(sa, mut seen_a), (sb, _)] = cluster_pair("cap", |c| c.recovery_max_packets(8));
    let (mut a, _) = Client::connect(sa.addr, Mode::Websocket, json!({})).await;
    recv(&mut seen_a.connected).await;
    a.call_ok(json!(["join", "r1"])).await;
    let (mut b, _) = Client::connect(sb.addr, Mode::Websocket, json!({})).await;
    a.drop_connection_keep().await;
    until("the session in Redis", || session_in_redis(&a.pid)).await;
    for i in 0..20 {
        b.call_ok(json!(["publish", "r1", "m", i])).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let auth = json!({"pid": a.pid, "offset": a.offset.clone().unwrap()});
    let (a2, missed) = Client::connect(sb.addr, Mode::Websocket, auth.clone()).await;
    assert!(missed.is_empty(), "{missed:?}");
    assert_ne!(a2.id, a.id);
    let stats = sb.io.recovery_stats();
    assert_eq!((stats.not_recovered, stats.not_recovered_cap), (1, 1), "{stats:?}");
    // Taken, even so: a second try finds nothing. This server's own offsets, a forged
    // pid: new sessions too.
    for auth in [
        auth,
        json!({"pid": a.pid, "offset": "Qx3_.0.1"}),
        json!({"pid": "AAAAAAAAAAAAAAAAAAAA", "offset": a.offset.clone().unwrap()}),
        json!({"pid": "not a pid", "offset": "1-0"}),
    ] {
        let (c, missed) = Client::connect(sa.addr, Mode::Websocket, auth.clone()).await;
        assert!(missed.is_empty() && c.id != a.id, "{auth}");
    }
    assert_eq!(sa.io.recovery_stats().not_recovered, 4);
}

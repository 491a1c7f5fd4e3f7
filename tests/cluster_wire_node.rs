//! The cluster message codec (`adapter::cluster_wire`) against the real
//! `@socket.io/redis-adapter` sharded adapter (`createShardedAdapter`) on a real socket.io
//! server, with a `socket.io-client` connected to it. Its Redis clients are stand-ins that
//! record what `sPublish` sends and keep the handlers `sSubscribe` registers, so the bytes
//! are exactly what the adapter would put on Redis, and what we feed to a handler goes
//! through the adapter's own `onRawMessage` (the real Redis cluster is tested elsewhere).
//!
//! One Node process per test, driven over stdin/stdout in JSON lines: we send code to run
//! and messages to deliver on a channel; it reports every publication, what the client
//! receives and the results of the code. Needs Node.js and `npm ci` in tests/cluster (done
//! here when missing).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use shardcast::__wire::cluster_wire::*;
use shardcast::Args;

const HARNESS: &str = r##"
import http from "node:http";
import readline from "node:readline";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { ClusterAdapterWithHeartbeat, MessageType } from "socket.io-adapter";

const [prefix, subscriptionMode] = process.argv.slice(1);
const replacer = (k, v) => {
  if (typeof v === "function") return "<ack>";
  if (v && v.type === "Buffer" && Array.isArray(v.data)) return { buffer: Buffer.from(v.data).toString("hex") };
  return v;
};
const out = (o) => process.stdout.write(JSON.stringify(o, replacer) + "\n");
// One stand-in for both Redis clients (the adapter tells node-redis v4 by `sSubscribe`).
const handlers = new Map();
const redis = {
  sPublish(channel, payload) {
    out({ kind: "pub", channel, hex: Buffer.from(payload).toString("hex") });
    return Promise.resolve(1);
  },
  sSubscribe(channel, handler) { handlers.set(channel, handler); },
  sUnsubscribe(channel) { handlers.delete(channel); },
  // PUBSUB SHARDNUMSUB: this server and one other
  sendCommand(args) { return Promise.resolve([args[2], 2]); },
};
const httpServer = http.createServer();
const io = new Server(httpServer);
io.adapter(createShardedAdapter(redis, redis, { channelPrefix: prefix, subscriptionMode }));
const nsp = io.of("/");
const joined = new Promise((resolve) => io.on("connection", (socket) => {
  socket.join("r");
  socket.data = { user: "u", avatar: Buffer.from([0xff]) };
  resolve(socket);
}));
nsp.on("sse", (...args) => out({ kind: "sse", args }));
nsp.on("sse-ack", (n, cb) => cb(n * 2));
nsp.on("sse-bin", (cb) => cb(Buffer.from([7, 7])));
await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
const client = connect(`http://127.0.0.1:${httpServer.address().port}`, { transports: ["websocket"] });
client.onAny((ev, ...args) => out({ kind: "client", ev, args }));
client.on("ask", (x, cb) => cb("answer:" + x));
client.on("disconnect", (reason) => out({ kind: "client-disconnect", reason }));
await new Promise((r) => client.on("connect", r));
const socket = await joined;
const adapter = () => nsp.adapter;
Object.assign(globalThis, { io, nsp, out, handlers, socket, adapter, ClusterAdapterWithHeartbeat, MessageType });
out({ kind: "ready", uid: nsp.adapter.uid, sid: socket.id });
for await (const line of readline.createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line);
  if (cmd.op === "feed") {
    const handler = handlers.get(cmd.channel);
    if (!handler) out({ kind: "error", msg: "not subscribed to " + cmd.channel });
    else handler(Buffer.from(cmd.hex, "hex"), Buffer.from(cmd.channel));
    out({ kind: "fed", id: cmd.id });
  } else {
    try {
      const result = await (0, eval)("(async () => {" + cmd.code + "})()");
      out({ kind: "done", id: cmd.id, result: result === undefined ? null : result });
    } catch (e) {
      out({ kind: "error", msg: String(e && e.stack || e) });
      out({ kind: "done", id: cmd.id, result: null });
    }
  }
}
"##;

const PREFIX: &str = "pfx";

struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// Lines read but not yet asked for.
    pending: VecDeque<Value>,
    next_id: u64,
    /// The uid of the Node server's `/` adapter and its client's socket id.
    uid: String,
    sid: String,
}

impl Node {
    fn start(mode: SubscriptionMode) -> Node {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster");
        // Once for the tests of this file, which run in parallel.
        static NPM: std::sync::Once = std::sync::Once::new();
        NPM.call_once(|| {
            if !std::path::Path::new(dir).join("node_modules/@socket.io/redis-adapter").exists() {
                let st = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(dir)
                    .status()
                    .expect("npm is needed for this test");
                assert!(st.success(), "npm ci in tests/cluster failed");
            }
        });
        let mut child = Command::new("node")
            .args(["--input-type=module", "-e", HARNESS, PREFIX, mode.name()])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for this test");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            stdin,
            lines,
            pending: VecDeque::new(),
            next_id: 0,
            uid: String::new(),
            sid: String::new(),
        };
        let ready = node.next("ready");
        node.uid = ready["uid"].as_str().unwrap().to_owned();
        node.sid = ready["sid"].as_str().unwrap().to_owned();
        node
    }

    fn send(&mut self, mut cmd: Value) -> u64 {
        self.next_id += 1;
        cmd["id"] = json!(self.next_id);
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.next_id
    }

    /// The first line of `kind` (earlier lines of other kinds stay pending); an `error`
    /// line fails the test.
    fn next(&mut self, kind: &str) -> Value {
        self.next_where(kind, |_| true)
    }

    fn next_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = 0;
        loop {
            while seen < self.pending.len() {
                let v = &self.pending[seen];
                assert_ne!(v["kind"], "error", "node: {}", v["msg"]);
                if v["kind"] == kind && pred(v) {
                    return self.pending.remove(seen).unwrap();
                }
                seen += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.pending.push_back(v),
                Err(_) => panic!("no {kind:?} line from node; pending: {:?}", self.pending),
            }
        }
    }

    /// Runs `code` (the body of an async function) in the Node process; its result.
    fn eval(&mut self, code: &str) -> Value {
        let id = self.send(json!({"op": "eval", "code": code}));
        self.next_where("done", |v| v["id"] == id)["result"].clone()
    }

    /// Delivers `bytes` to the adapter's handler of `channel`, as Redis would.
    fn feed(&mut self, channel: &str, bytes: &[u8]) {
        let id = self.send(json!({"op": "feed", "channel": channel, "hex": hex(bytes)}));
        self.next_where("fed", |v| v["id"] == id);
    }

    /// The next publication, decoded: its channel, bytes and message.
    fn publication(&mut self) -> (String, Bytes, ClusterMessage) {
        let p = self.next("pub");
        let bytes = Bytes::from(unhex(p["hex"].as_str().unwrap()));
        let m = decode(&bytes, 100)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        (p["channel"].as_str().unwrap().to_owned(), bytes, m)
    }

    /// The next event the client receives.
    fn client_event(&mut self) -> (String, Value) {
        let e = self.next("client");
        (e["ev"].as_str().unwrap().to_owned(), e["args"].clone())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn room_list(list: &[&str]) -> Vec<shardcast::Room> {
    list.iter().map(|r| shardcast::Room::from(*r)).collect()
}

fn opts(rooms: &[&str], except: &[&str], flags: Flags) -> Opts {
    Opts { rooms: room_list(rooms).into(), except: room_list(except).into(), flags }
}

fn is_json(b: &[u8]) -> bool {
    b.first() == Some(&b'{')
}

#[test]
fn what_the_sharded_adapter_sends_decodes() {
    let mode = SubscriptionMode::Dynamic;
    let mut node = Node::start(mode);
    let uid = node.uid.clone();
    let root = channel(PREFIX, "/");
    // the channels it listens on: namespace, its responses, public rooms (not socket ids)
    let subscribed = node.eval("return [...handlers.keys()].sort()");
    let mut want =
        vec![root.clone(), response_channel(PREFIX, "/", &uid), room_channel(PREFIX, "/", "r")];
    want.sort();
    assert_eq!(subscribed, json!(want));

    // A broadcast to one room, with binary: MessagePack on the room's channel.
    node.eval(r#"io.to("r").emit("ev", 1, "two", Buffer.from([1, 2, 3]), { a: [1.5, null] })"#);
    let (ch, bytes, m) = node.publication();
    assert!(!is_json(&bytes));
    assert_eq!((m.uid.as_str(), m.nsp.as_str()), (uid.as_str(), "/"));
    let Body::Broadcast { opts: o, event, args, request_id } = &m.body else { panic!("{m:?}") };
    assert_eq!(o, &opts(&["r"], &[], Flags::default()));
    assert_eq!((event.as_str(), request_id), ("ev", &None));
    assert_eq!(
        args.values(),
        &[
            json!(1),
            json!("two"),
            json!({"_placeholder": true, "num": 0}),
            json!({"a": [1.5, null]})
        ]
    );
    assert_eq!(args.binary(), &[Bytes::from_static(b"\x01\x02\x03")]);
    assert_eq!(ch, room_channel(PREFIX, "/", "r"));
    assert_eq!(ch, publish_channel(PREFIX, &m, mode));
    assert_eq!(encode(&m), bytes, "we encode it byte for byte as the adapter does");

    // Flags, no room: JSON on the namespace channel.
    node.eval(r#"io.except("x").volatile.compress(false).emit("ev2")"#);
    let (ch, bytes, m) = node.publication();
    assert!(is_json(&bytes));
    assert_eq!(ch, root);
    assert_eq!(ch, publish_channel(PREFIX, &m, mode));
    let flags = Flags { volatile: true, compress: Some(false), ..Flags::default() };
    assert_eq!(
        m.body,
        Body::Broadcast {
            opts: opts(&[], &["x"], flags),
            event: "ev2".into(),
            args: Args::new(),
            request_id: None
        }
    );
    assert_eq!(encode(&m), bytes);

    // Another namespace, several rooms.
    node.eval(r#"io.of("/chat").to(["a", "b"]).emit("ev3", "é😀")"#);
    let (ch, bytes, m) = node.publication();
    assert_eq!((ch.as_str(), m.nsp.as_str()), (channel(PREFIX, "/chat").as_str(), "/chat"));
    assert_ne!(m.uid, uid, "one adapter (and uid) per namespace");
    assert_eq!(ch, publish_channel(PREFIX, &m, mode));
    let Body::Broadcast { opts: o, args, .. } = &m.body else { panic!("{m:?}") };
    assert_eq!((o.rooms.len(), args.values()), (2, &[json!("é😀")][..]));
    assert_eq!(encode(&m), bytes);

    // A socket id (20 characters) is not a room channel in "dynamic" mode.
    node.eval(&format!(r#"io.to("{}").emit("private")"#, node.sid));
    let (ch, _, m) = node.publication();
    assert_eq!(ch, root);
    assert_eq!(ch, publish_channel(PREFIX, &m, mode));
    assert!(looks_like_socket_id(&node.sid));

    // With acks: the namespace channel, a request id, the timeout flag.
    node.eval(r#"io.timeout(1000).to("r").emit("ack-ev", 7, () => {})"#);
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, root);
    assert_eq!(ch, publish_channel(PREFIX, &m, mode));
    let Body::Broadcast { opts: o, event, args, request_id: Some(id) } = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(
        (o.flags.timeout, event.as_str(), args.values()),
        (Some(1000), "ack-ev", &[json!(7)][..])
    );
    assert_eq!(id.len(), 16, "randomBytes(8) in hex");
    assert_eq!(encode(&m), bytes);

    // Join, leave, disconnect, fetch.
    node.eval(r#"io.in("r").socketsJoin(["r2", "r3"])"#);
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, root);
    assert_eq!(
        m.body,
        Body::SocketsJoin {
            opts: opts(&["r"], &[], Flags::default()),
            rooms: room_list(&["r2", "r3"])
        }
    );
    assert_eq!(encode(&m), bytes);
    node.eval(r#"io.except("r").socketsLeave("r2")"#);
    let (_, bytes, m) = node.publication();
    assert_eq!(
        m.body,
        Body::SocketsLeave { opts: opts(&[], &["r"], Flags::default()), rooms: room_list(&["r2"]) }
    );
    assert_eq!(encode(&m), bytes);
    node.eval(r#"io.in("nobody").disconnectSockets(true)"#);
    let (_, bytes, m) = node.publication();
    assert_eq!(
        m.body,
        Body::DisconnectSockets { opts: opts(&["nobody"], &[], Flags::default()), close: true }
    );
    assert_eq!(encode(&m), bytes);
    node.eval(r#"io.timeout(50).fetchSockets().catch(() => {})"#);
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, root);
    let Body::FetchSockets { opts: o, request_id } = &m.body else { panic!("{m:?}") };
    assert_eq!((o.flags.timeout, request_id.len()), (Some(50), 16));
    assert_eq!(encode(&m), bytes);

    // Server-side emits, with binary (MessagePack) and with an ack (a request id).
    node.eval(r#"io.serverSideEmit("sse", 1, Buffer.from([9]))"#);
    let (ch, bytes, m) = node.publication();
    assert!(!is_json(&bytes));
    assert_eq!(ch, root);
    assert_eq!(
        m.body,
        Body::ServerSideEmit {
            event: "sse".into(),
            args: Args::new().arg(1).binary_arg(Bytes::from_static(b"\x09")),
            request_id: None
        }
    );
    assert_eq!(encode(&m), bytes);
    node.eval(r#"io.serverSideEmit("sse2", "x", () => {})"#);
    let (_, bytes, m) = node.publication();
    let Body::ServerSideEmit { event, args, request_id: Some(_) } = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!((event.as_str(), args.values()), ("sse2", &[json!("x")][..]));
    assert_eq!(encode(&m), bytes);

    // Heartbeat messages (the sharded adapter never sends them itself; its base class's
    // heartbeat variant does, through the same publish path).
    node.eval("ClusterAdapterWithHeartbeat.prototype.init.call(adapter())");
    node.eval("adapter().publish({ type: MessageType.HEARTBEAT })");
    node.eval("adapter().publish({ type: MessageType.ADAPTER_CLOSE })");
    for body in [Body::InitialHeartbeat, Body::Heartbeat, Body::AdapterClose] {
        let (ch, bytes, m) = node.publication();
        assert_eq!(ch, root);
        assert_eq!(m, ClusterMessage { uid: uid.clone(), nsp: "/".into(), body });
        assert_eq!(encode(&m), bytes);
    }

    // The responses: requests we encode, fed to the adapter on its namespace channel,
    // answered on our response channel.
    let us = "rust-uid";
    let ours = response_channel(PREFIX, "/", us);
    let request = |body| encode(&ClusterMessage { uid: us.into(), nsp: "/".into(), body });
    node.feed(
        &root,
        &request(Body::FetchSockets {
            opts: opts(&["r"], &[], Flags::default()),
            request_id: "req-f".into(),
        }),
    );
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, ours);
    assert!(!is_json(&bytes), "socket.data holds a Buffer");
    let Body::FetchSocketsResponse { request_id, sockets, binary } = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!((request_id.as_str(), sockets.len()), ("req-f", 1));
    let s = &sockets[0];
    assert_eq!(s.id, node.sid);
    assert_eq!(s.rooms, room_list(&[&node.sid, "r", "r2", "r3"]));
    assert_eq!(s.data, Some(json!({"user": "u", "avatar": {"_placeholder": true, "num": 0}})));
    assert_eq!(binary, &[Bytes::from_static(b"\xff")]);
    assert_eq!(s.handshake["query"]["EIO"], "4");
    assert_eq!(s.handshake["auth"], json!({}));
    assert!(s.handshake["headers"].is_object() && s.handshake["issued"].is_u64());
    assert!(s.handshake.get("sessionStore").is_none());
    assert_eq!(encode(&m), bytes);
    // no socket selected: JSON
    node.feed(
        &root,
        &request(Body::FetchSockets {
            opts: opts(&["nobody"], &[], Flags::default()),
            request_id: "req-g".into(),
        }),
    );
    let (ch, bytes, m) = node.publication();
    assert!(is_json(&bytes));
    assert_eq!(ch, ours);
    assert_eq!(
        m.body,
        Body::FetchSocketsResponse { request_id: "req-g".into(), sockets: vec![], binary: vec![] }
    );
    assert_eq!(encode(&m), bytes);

    node.feed(
        &root,
        &request(Body::ServerSideEmit {
            event: "sse-ack".into(),
            args: Args::new().arg(21),
            request_id: Some("req-s".into()),
        }),
    );
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, ours);
    assert_eq!(
        m.body,
        Body::ServerSideEmitResponse { request_id: "req-s".into(), reply: Args::new().arg(42) }
    );
    assert_eq!(encode(&m), bytes);
    node.feed(
        &root,
        &request(Body::ServerSideEmit {
            event: "sse-bin".into(),
            args: Args::new(),
            request_id: Some("req-b".into()),
        }),
    );
    let (_, bytes, m) = node.publication();
    assert!(!is_json(&bytes));
    assert_eq!(
        m.body,
        Body::ServerSideEmitResponse {
            request_id: "req-b".into(),
            reply: Args::new().binary_arg(Bytes::from_static(b"\x07\x07"))
        }
    );
    assert_eq!(encode(&m), bytes);

    // A broadcast awaiting acks: the client count, then the client's ack.
    node.feed(
        &root,
        &request(Body::Broadcast {
            opts: opts(&["r"], &[], Flags { timeout: Some(2000), ..Flags::default() }),
            event: "ask".into(),
            args: Args::new().arg("q"),
            request_id: Some("req-a".into()),
        }),
    );
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, ours);
    assert_eq!(m.body, Body::BroadcastClientCount { request_id: "req-a".into(), client_count: 1 });
    assert_eq!(encode(&m), bytes);
    let (ch, bytes, m) = node.publication();
    assert_eq!(ch, ours);
    assert_eq!(
        m.body,
        Body::BroadcastAck { request_id: "req-a".into(), reply: Args::new().arg("answer:q") }
    );
    assert_eq!(encode(&m), bytes);
    assert_eq!(node.eval("return 'idle'"), "idle");
    let extra: Vec<&Value> = node.pending.iter().filter(|v| v["kind"] == "pub").collect();
    assert!(extra.is_empty(), "nothing else was published: {extra:?}");
}

#[test]
fn what_we_send_the_sharded_adapter_takes() {
    let mode = SubscriptionMode::DynamicPrivate;
    let mut node = Node::start(mode);
    let sid = node.sid.clone();
    let us = "rust-uid";
    let msg = |body| ClusterMessage { uid: us.into(), nsp: "/".into(), body };
    let broadcast = |rooms: &[&str], except: &[&str], event: &str, args: Args| {
        msg(Body::Broadcast {
            opts: opts(rooms, except, Flags::default()),
            event: event.into(),
            args,
            request_id: None,
        })
    };
    // every request through the channel the adapter would publish it on
    let send = |node: &mut Node, m: &ClusterMessage| {
        let ch = publish_channel(PREFIX, m, mode);
        node.feed(&ch, &encode(m));
        ch
    };

    // Broadcasts: to all (JSON), to a room with binary (MessagePack, the room's channel), to
    // a socket id (its own channel in "dynamic-private").
    let ch = send(&mut node, &broadcast(&[], &[], "hello", Args::new().arg(1).arg("x")));
    assert_eq!(ch, channel(PREFIX, "/"));
    assert_eq!(node.client_event(), ("hello".into(), json!([1, "x"])));
    let bin = Args::new().arg("b").binary_arg(Bytes::from_static(b"\x09\x08"));
    let ch = send(&mut node, &broadcast(&["r"], &[], "bin", bin));
    assert_eq!(ch, room_channel(PREFIX, "/", "r"));
    assert_eq!(node.client_event(), ("bin".into(), json!(["b", {"buffer": "0908"}])));
    let ch = send(&mut node, &broadcast(&[&sid], &[], "private", Args::new()));
    assert_eq!(ch, room_channel(PREFIX, "/", &sid));
    assert_eq!(node.client_event(), ("private".into(), json!([])));
    // excepted: not delivered (the next event the client sees is the one after)
    send(&mut node, &broadcast(&[], &["r"], "skipped", Args::new()));
    let mut volatile = broadcast(&[], &[], "after", Args::new());
    if let Body::Broadcast { opts, .. } = &mut volatile.body {
        opts.flags = Flags { volatile: true, compress: Some(false), ..Flags::default() };
    }
    send(&mut node, &volatile);
    assert_eq!(node.client_event().0, "after");
    // a message from the adapter itself (its uid) is ignored
    let own = ClusterMessage { uid: node.uid.clone(), ..broadcast(&[], &[], "own", Args::new()) };
    send(&mut node, &own);
    send(&mut node, &broadcast(&[], &[], "not-own", Args::new()));
    assert_eq!(node.client_event().0, "not-own");

    // Join and leave: the client's socket, and the room channel it subscribes to.
    let sel = |rooms: &[&str]| opts(rooms, &[], Flags::default());
    send(
        &mut node,
        &msg(Body::SocketsJoin { opts: sel(&[&sid]), rooms: room_list(&["j1", "j2"]) }),
    );
    let rooms = node.eval("return [...socket.rooms]");
    assert_eq!(rooms, json!([sid, "r", "j1", "j2"]));
    let j1 = room_channel(PREFIX, "/", "j1");
    assert_eq!(
        node.eval(&format!("return handlers.has({j1:?})")),
        json!(true),
        "subscribed to the new room's channel"
    );
    send(&mut node, &msg(Body::SocketsLeave { opts: sel(&[]), rooms: room_list(&["j1"]) }));
    assert_eq!(node.eval("return [...socket.rooms]"), json!([sid, "r", "j2"]));

    // Server-side emit, with binary.
    let args = Args::new().arg(1).binary_arg(Bytes::from_static(b"\xca\xfe"));
    send(&mut node, &msg(Body::ServerSideEmit { event: "sse".into(), args, request_id: None }));
    assert_eq!(node.next("sse")["args"], json!([1, {"buffer": "cafe"}]));

    // Responses to the Node server's requests, on its response channel.
    let theirs = response_channel(PREFIX, "/", &node.uid);
    node.eval(
        "io.timeout(3000).fetchSockets().then((s) => out({ kind: 'fetched', sockets: s.map((x) => \
         ({ id: x.id, rooms: [...x.rooms], data: x.data, handshake: x.handshake })) }))",
    );
    let (_, _, m) = node.publication();
    let Body::FetchSockets { request_id, .. } = m.body else { panic!("{m:?}") };
    let remote = SocketInfo {
        id: "remote-1".into(),
        handshake: json!({"headers": {}, "auth": {"token": "t"}}),
        rooms: room_list(&["remote-1", "x"]),
        data: Some(json!({"a": 1, "pic": {"_placeholder": true, "num": 0}})),
    };
    let response = msg(Body::FetchSocketsResponse {
        request_id,
        sockets: vec![remote],
        binary: vec![Bytes::from_static(b"\x01\x02")],
    });
    node.feed(&theirs, &encode(&response));
    let fetched = node.next("fetched")["sockets"].clone();
    assert_eq!(fetched.as_array().map(Vec::len), Some(2), "{fetched}");
    assert_eq!(fetched[0]["id"], json!(sid), "its own socket first");
    assert_eq!(
        fetched[1],
        json!({"id": "remote-1", "rooms": ["remote-1", "x"], "data": {"a": 1, "pic": {"buffer": "0102"}},
               "handshake": {"headers": {}, "auth": {"token": "t"}}})
    );

    node.eval("nsp.serverSideEmitWithAck('q', 1).then((r) => out({ kind: 'replies', r }))");
    let (_, _, m) = node.publication();
    let Body::ServerSideEmit { request_id: Some(request_id), .. } = m.body else { panic!("{m:?}") };
    let reply = Args::new().arg("pong");
    node.feed(&theirs, &encode(&msg(Body::ServerSideEmitResponse { request_id, reply })));
    assert_eq!(node.next("replies")["r"], json!(["pong"]));

    node.eval("io.timeout(3000).emitWithAck('ask', 'z').then((r) => out({ kind: 'acks', r }))");
    let (_, _, m) = node.publication();
    let Body::Broadcast { request_id: Some(request_id), .. } = m.body else { panic!("{m:?}") };
    let count = Body::BroadcastClientCount { request_id: request_id.clone(), client_count: 1 };
    node.feed(&theirs, &encode(&msg(count)));
    let reply = Args::new().binary_arg(Bytes::from_static(b"\xab\xcd"));
    node.feed(&theirs, &encode(&msg(Body::BroadcastAck { request_id, reply })));
    let acks = node.next("acks")["r"].clone();
    let acks = acks.as_array().cloned().unwrap_or_default();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(acks.contains(&json!("answer:z")), "its client's ack: {acks:?}");
    assert!(acks.contains(&json!({"buffer": "abcd"})), "and ours: {acks:?}");

    // Heartbeats, read by a heartbeat-tracking adapter (the streams adapter's base class)
    // through the sharded adapter's onRawMessage: it answers the initial heartbeat, counts
    // the senders, and forgets one that closes.
    node.eval(
        "const a = adapter(); const H = ClusterAdapterWithHeartbeat.prototype; \
         Object.assign(a, { nodesMap: new Map(), customRequests: new Map(), \
         onMessage: H.onMessage, removeNode: H.removeNode })",
    );
    let root = channel(PREFIX, "/");
    let beat = |uid: &str, body| encode(&ClusterMessage { uid: uid.into(), nsp: "/".into(), body });
    node.feed(&root, &beat("rust-1", Body::InitialHeartbeat));
    let (ch, _, m) = node.publication();
    assert_eq!((ch.as_str(), &m.body), (root.as_str(), &Body::Heartbeat));
    node.feed(&root, &beat("rust-2", Body::Heartbeat));
    assert_eq!(node.eval("return [...adapter().nodesMap.keys()]"), json!(["rust-1", "rust-2"]));
    node.feed(&root, &beat("rust-1", Body::AdapterClose));
    assert_eq!(node.eval("return [...adapter().nodesMap.keys()]"), json!(["rust-2"]));

    // Last: disconnect the client's socket.
    send(&mut node, &msg(Body::DisconnectSockets { opts: sel(&["r"]), close: false }));
    assert_eq!(node.next("client-disconnect")["reason"], "io server disconnect");
}

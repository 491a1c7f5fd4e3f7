//! The broadcast / emit API driven by the official `socket.io-client` (npm, lockfile in
//! tests/interop/).
//!
//! An in-process server (4 shards, so the clients spread over them) runs an "operator
//! playground": every operation of the server API (`io.to(..).except(..).emit`,
//! `socket.broadcast`, broadcast acks, `fetch_sockets`, `sockets_join`, `disconnect_sockets`,
//! room events, per-socket middlewares, catch-all listeners, dynamic namespaces...) is exposed
//! as an event the JS client triggers and gets the result of in its ack. The scenarios and
//! their exact expectations are in tests/interop/api/*.mjs (not named *.test.mjs, so the
//! main interop suite does not run them); this test runs them with `node --test` and
//! `SERVER_URL` pointing at the server.
//!
//! # The playground protocol
//!
//! On `/`, `/chat` and the dynamic namespaces `^/dyn-\d+$`, each socket gets `welcome
//! {id, nsp, auth}` once connected, and handles:
//!
//! - `message ...args` → `message-back ...args` (to itself).
//! - `join room|[rooms]`, `leave room|[rooms]` → ack `true`.
//! - `whoami` → ack `{id, nsp, rooms (sorted), shard, connected}`.
//! - `set-data value` → `socket.set_data(value)`, ack `true`. The initial data is
//!   `{name: auth.name, nsp}`.
//! - `op spec ...args`: an emit; ack `true` or the error message. `spec.from` picks the
//!   start: `"io"` (default; the namespace `spec.nsp`, default the socket's, through the
//!   `Server` methods for `/`), `"socket"` (`socket.to/in_/except`), `"broadcast"`
//!   (`socket.broadcast()`), `"parent"` (the dynamic pattern's namespace), `"self"`
//!   (`socket.emit`). Then `spec.steps`, a list of `["to", rooms]`, `["in", rooms]`,
//!   `["except", rooms]`, `"local"`, `"volatile"`, `["compress", bool]`, `["timeout", ms]`
//!   applied in order (or the shorthand fields `to`, `in`, `except`, `local`, `volatile`,
//!   `compress`, in that order). The emitted arguments are `spec.args` (JSON) plus one
//!   binary argument per hex string of `spec.bin` when `spec.args` is given, otherwise the
//!   event's own arguments after the spec (binary ones included).
//!   With `spec.thread: true`, the emit runs on a thread that is not a shard.
//! - `op-ack spec`: the same selection, `.timeout(spec.timeout_ms)` (default 1000), then
//!   `emit_with_ack`; ack `{ok, responses: [[id, ...args]] (sorted by id; a binary argument
//!   as `{"$hex": ...}`), missing: [ids]}` or `{ok: false, error}`. Awaited in a task of the
//!   shard, or with `spec.thread: true` on a thread that is not a shard (same for `fetch`).
//!   With `spec.from: "self"`: `socket.timeout(ms).emit_with_ack` to the socket itself.
//! - `fetch spec`: `fetch_sockets()` of the selection; ack `[{id, nsp, data, connected,
//!   rooms}]` sorted by id (`rooms` is what `rooms()` says on the fetched handle). Then, on each fetched (possibly remote) socket: `spec.emit: {event,
//!   args}` emits, `spec.join` / `spec.leave` rooms, `spec.disconnect: close` disconnects.
//! - `sockets-join spec` / `sockets-leave spec` (`spec.rooms`), `disconnect-sockets spec`
//!   (`spec.close`) → ack `true`.
//! - A per-socket middleware refuses the events named `forbidden`; the `on_error` handler
//!   then emits `refused message` to the socket. The `forbidden` handler itself (never run
//!   unless the middleware is broken) emits `forbidden-handled` and counts; `forbidden-ran`
//!   → ack that count.
//! - `count` → ack the number of incoming events `on_any` saw (this one included).
//! - `outgoing` → ack the names `on_any_outgoing` saw, in order.
//! - `room-events [filter]` → ack the namespace's room events in order, as
//!   `["create-room", room]`, `["join-room", room, id]`, `["leave-room", room, id]`,
//!   `["delete-room", room]`; with `filter {rooms, ids}` only those whose room is in
//!   `rooms` or `ids`, or whose socket is in `ids`.
//! - `volatile-dropped` → ack `io.volatile_dropped()`.
//!
//! The dynamic namespaces refuse a connection whose auth has `deny: true` with a
//! CONNECT_ERROR `{message: "denied by the dyn middleware", data: {nsp, reason: "deny"}}`.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitStatus, Stdio};

#[path = "common/process.rs"]
mod process;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardcast::proto::sid::Sid;
use shardcast::{
    AckError, AckSender, Args, BroadcastAckError, BroadcastOperator, Config, ConnectError,
    EmitError, FetchedSocket, IntoArgs, Namespace, RoomChange, Server, Socket,
};

// ---------------------------------------------------------------------------------------
// The playground application
// ---------------------------------------------------------------------------------------

type Log = Arc<Mutex<Vec<Value>>>;

/// What every socket's handlers share.
#[derive(Clone)]
struct App {
    io: Server,
    /// The dynamic pattern `^/dyn-\d+$`.
    parent: Namespace,
    /// The room events of the namespace the socket is in (one log per registered
    /// namespace; the dynamic children share the pattern's).
    log: Log,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the room events of `ns` into a new log.
fn record_room_events(ns: &Namespace) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    ns.on_room_event(move |ev| {
        let v = match &ev.change {
            RoomChange::CreateRoom(r) => json!(["create-room", &**r]),
            RoomChange::JoinRoom(r, id) => json!(["join-room", &**r, id]),
            RoomChange::LeaveRoom(r, id) => json!(["leave-room", &**r, id]),
            RoomChange::DeleteRoom(r) => json!(["delete-room", &**r]),
        };
        lock(&l).push(v);
    });
    log
}

fn playground(io: &Server) {
    let parent = io.of_regex(regex::Regex::new(r"^/dyn-\d+$").expect("valid regex"));
    parent.use_middleware(|s| {
        if s.handshake().auth.get("deny") == Some(&json!(true)) {
            Err(ConnectError::new("denied by the dyn middleware")
                .with_data(json!({"nsp": s.ns(), "reason": "deny"})))
        } else {
            Ok(())
        }
    });
    for ns in [io.of("/"), io.of("/chat"), parent.clone()] {
        let app = App { io: io.clone(), parent: parent.clone(), log: record_room_events(&ns) };
        ns.on_connection(move |socket| install(&app, &socket));
    }
}

fn reply(ack: Option<AckSender>, v: impl IntoArgs) {
    if let Some(ack) = ack {
        let _ = ack.send(v);
    }
}

/// A room or a list of rooms.
fn rooms(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn shard_of(id: &str) -> Option<u8> {
    Sid::parse(id).map(|s| s.shard())
}

fn install(app: &App, s: &Socket) {
    // Catch-all listeners first, so they see everything from the welcome on.
    let outgoing: Arc<Mutex<Vec<String>>> = Arc::default();
    let o = outgoing.clone();
    s.on_any_outgoing(move |_s, event, _args| lock(&o).push(event.to_owned()));
    let incoming = Arc::new(AtomicUsize::new(0));
    let i = incoming.clone();
    s.on_any(move |_s, _event, _args| {
        i.fetch_add(1, Ordering::SeqCst);
    });
    s.use_middleware(|_s, event, _args| {
        if event == "forbidden" {
            Err(format!("event {event:?} refused by the middleware"))
        } else {
            Ok(())
        }
    });
    s.on_error(|s, message| {
        let _ = s.emit("refused", (message,));
    });
    let auth = s.handshake().auth.clone();
    s.set_data(json!({"name": auth.get("name").cloned().unwrap_or(Value::Null), "nsp": s.ns()}));

    s.on("message", |s, args, _ack| {
        let _ = s.emit("message-back", args);
    });
    s.on("join", |s, args, ack| {
        rooms(args.values().first().unwrap_or(&Value::Null)).into_iter().for_each(|r| s.join(r));
        reply(ack, (true,));
    });
    s.on("leave", |s, args, ack| {
        for r in rooms(args.values().first().unwrap_or(&Value::Null)) {
            s.leave(r);
        }
        reply(ack, (true,));
    });
    s.on("whoami", |s, _args, ack| {
        let rooms: BTreeSet<String> = s.rooms().iter().map(|r| r.to_string()).collect();
        reply(
            ack,
            (json!({
                "id": s.id(), "nsp": s.ns(), "rooms": rooms,
                "shard": shard_of(s.id()), "connected": s.connected(),
            }),),
        );
    });
    s.on("set-data", |s, args, ack| {
        s.set_data(args.get::<Value>(0).unwrap_or(Value::Null));
        reply(ack, (true,));
    });
    s.on("count", move |_s, _args, ack| reply(ack, (incoming.load(Ordering::SeqCst),)));
    s.on("outgoing", move |_s, _args, ack| reply(ack, (lock(&outgoing).clone(),)));
    let forbidden_ran = Arc::new(AtomicUsize::new(0));
    let f = forbidden_ran.clone();
    s.on("forbidden", move |s, _args, ack| {
        f.fetch_add(1, Ordering::SeqCst);
        let _ = s.emit("forbidden-handled", ());
        reply(ack, ("handled",));
    });
    s.on("forbidden-ran", move |_s, _args, ack| {
        reply(ack, (forbidden_ran.load(Ordering::SeqCst),))
    });
    let log = app.log.clone();
    s.on("room-events", move |_s, args, ack| {
        let all = lock(&log).clone();
        let events = match args.get::<Value>(0) {
            Some(filter @ Value::Object(_)) => {
                let wanted: BTreeSet<String> =
                    rooms(&filter["rooms"]).into_iter().chain(rooms(&filter["ids"])).collect();
                let ids: BTreeSet<String> = rooms(&filter["ids"]).into_iter().collect();
                all.into_iter()
                    .filter(|ev| {
                        ev[1].as_str().is_some_and(|r| wanted.contains(r))
                            || ev[2].as_str().is_some_and(|id| ids.contains(id))
                    })
                    .collect()
            }
            _ => all,
        };
        reply(ack, (events,));
    });
    let io = app.io.clone();
    s.on("volatile-dropped", move |_s, _args, ack| reply(ack, (io.volatile_dropped(),)));

    let a = app.clone();
    s.on("op", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let result = if spec["thread"].as_bool() == Some(true) {
            // From a thread that is not a shard; acked once the emit is done.
            let a = a.clone();
            std::thread::spawn(move || emit_op(&a, &s, &spec, args))
                .join()
                .unwrap_or_else(|_| Err("the emitting thread panicked".into()))
        } else {
            emit_op(&a, &s, &spec, args)
        };
        reply(ack, (result.map_or_else(Value::String, |()| json!(true)),));
    });
    let a = app.clone();
    s.on("op-ack", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let timeout = Duration::from_millis(spec["timeout_ms"].as_u64().unwrap_or(1000));
        if spec["from"].as_str() == Some("self") {
            // socket.timeout(ms).emit_with_ack(...): one socket, one answer.
            let (event, args) = (event_name(&spec), event_args(&spec, args));
            tokio::spawn(async move {
                let id = s.id().to_owned();
                let v = match s.timeout(timeout).emit_with_ack(&event, args).await {
                    Ok(answer) => {
                        json!({"ok": true, "responses": responses_json(vec![(Some(id), answer)]), "missing": []})
                    }
                    Err(AckError::Emit(e)) => json!({"ok": false, "error": e.to_string()}),
                    Err(e) => json!({"ok": false, "responses": [], "missing": [id], "error": e.to_string()}),
                };
                reply(ack, (v,));
            });
            return;
        }
        let prepared = selection(&a, &s, &spec)
            .map(|sel| (sel.op().timeout(timeout), event_name(&spec), event_args(&spec, args)));
        let (op, event, args) = match prepared {
            Ok(p) => p,
            Err(e) => return reply(ack, (json!({"ok": false, "error": e}),)),
        };
        let off_shard = spec["thread"].as_bool() == Some(true);
        spawn(off_shard, async move {
            let v = match op.emit_with_ack(&event, args).await {
                Ok(responses) => {
                    json!({"ok": true, "responses": responses_json(responses), "missing": []})
                }
                Err(BroadcastAckError::Timeout { responses, mut missing, .. }) => {
                    missing.sort();
                    json!({"ok": false, "responses": responses_json(responses), "missing": missing})
                }
                Err(BroadcastAckError::Emit(e)) => json!({"ok": false, "error": e.to_string()}),
            };
            reply(ack, (v,));
        });
    });
    let a = app.clone();
    s.on("fetch", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let fetch = match fetch_op(&a, &s, &spec) {
            Ok(f) => f,
            Err(e) => return reply(ack, (json!({"error": e}),)),
        };
        let off_shard = spec["thread"].as_bool() == Some(true);
        spawn(off_shard, async move {
            let mut sockets = fetch.await;
            sockets.sort_by(|x, y| x.id().cmp(y.id()));
            let list: Vec<Value> = sockets
                .iter()
                .map(|f| {
                    let rooms: BTreeSet<String> = f.rooms().iter().map(|r| r.to_string()).collect();
                    json!({
                        "id": f.id(), "nsp": f.ns(), "data": f.data(),
                        "connected": f.connected(), "rooms": rooms,
                    })
                })
                .collect();
            for f in &sockets {
                if let Some(e) = spec.get("emit") {
                    let args: Args = json_args(&e["args"]);
                    let _ = f.emit(e["event"].as_str().unwrap_or("remote"), args);
                }
                rooms(&spec["join"]).into_iter().for_each(|r| f.join(r));
                rooms(&spec["leave"]).into_iter().for_each(|r| f.leave(r));
                if let Some(close) = spec["disconnect"].as_bool() {
                    f.disconnect(close);
                }
            }
            reply(ack, (list,));
        });
    });
    let a = app.clone();
    s.on("sockets-join", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let r = rooms(&spec["rooms"]);
        let res = selection(&a, &s, &spec).map(|sel| match sel {
            Sel::Io(io) => io.sockets_join(r),
            Sel::Ns(ns) => ns.sockets_join(r),
            sel => sel.op().sockets_join(r),
        });
        reply(ack, (res.map_or_else(Value::String, |()| json!(true)),));
    });
    let a = app.clone();
    s.on("sockets-leave", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let r = rooms(&spec["rooms"]);
        let res = selection(&a, &s, &spec).map(|sel| match sel {
            Sel::Io(io) => io.sockets_leave(r),
            Sel::Ns(ns) => ns.sockets_leave(r),
            sel => sel.op().sockets_leave(r),
        });
        reply(ack, (res.map_or_else(Value::String, |()| json!(true)),));
    });
    let a = app.clone();
    s.on("disconnect-sockets", move |s, args, ack| {
        let spec = args.get::<Value>(0).unwrap_or(Value::Null);
        let close = spec["close"].as_bool().unwrap_or(false);
        let res = selection(&a, &s, &spec).map(|sel| match sel {
            Sel::Io(io) => io.disconnect_sockets(close),
            Sel::Ns(ns) => ns.disconnect_sockets(close),
            sel => sel.op().disconnect_sockets(close),
        });
        reply(ack, (res.map_or_else(Value::String, |()| json!(true)),));
    });

    let _ = s.emit("welcome", (json!({"id": s.id(), "nsp": s.ns(), "auth": auth}),));
}

/// Runs `fut` in a task of the current shard, or (`off_shard`) on a new thread with its
/// own runtime, outside the shards.
fn spawn(off_shard: bool, fut: impl Future<Output = ()> + Send + 'static) {
    if off_shard {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(fut)
        });
    } else {
        tokio::spawn(fut);
    }
}

/// JSON values as event arguments.
fn json_args(v: &Value) -> Args {
    match v {
        Value::Array(a) => a.iter().fold(Args::new(), |acc, x| acc.arg(x)),
        Value::Null => Args::new(),
        other => Args::new().arg(other),
    }
}

fn event_name(spec: &Value) -> String {
    spec["event"].as_str().unwrap_or("news").to_owned()
}

/// `spec.args` (+ `spec.bin` as binary arguments), or the event's own args after the spec.
fn event_args(spec: &Value, args: Args) -> Args {
    match spec.get("args") {
        Some(v) => {
            let hex = spec["bin"].as_array().cloned().unwrap_or_default();
            hex.iter().fold(json_args(v), |acc, h| acc.binary_arg(unhex(h.as_str().unwrap_or(""))))
        }
        None => args.skip(1),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

fn responses_json(mut responses: Vec<(Option<String>, Args)>) -> Vec<Value> {
    responses.sort_by(|a, b| a.0.cmp(&b.0));
    responses
        .into_iter()
        .map(|(id, args)| {
            // A top-level binary argument as {"$hex": "..."}.
            let mut row = vec![json!(id)];
            row.extend(args.values().iter().enumerate().map(|(i, v)| match args.get_binary(i) {
                Some(b) => {
                    json!({"$hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
                }
                None => v.clone(),
            }));
            Value::Array(row)
        })
        .collect()
}

/// Where an operation starts, before or after its steps.
enum Sel {
    Io(Server),
    Ns(Namespace),
    Sock(Socket),
    Op(BroadcastOperator),
}

impl Sel {
    fn step(self, name: &str, arg: &Value) -> Result<Sel, String> {
        let r = || rooms(arg);
        let compress = || arg.as_bool().unwrap_or(true);
        let ms = || Duration::from_millis(arg.as_u64().unwrap_or(1000));
        Ok(Sel::Op(match (self, name) {
            (Sel::Io(io), "to") => io.to(r()),
            (Sel::Io(io), "in") => io.in_(r()),
            (Sel::Io(io), "except") => io.except(r()),
            (Sel::Io(io), "local") => io.local(),
            (Sel::Io(io), "volatile") => io.volatile(),
            (Sel::Io(io), "compress") => io.compress(compress()),
            (Sel::Io(io), "timeout") => io.timeout(ms()),
            (Sel::Ns(ns), "to") => ns.to(r()),
            (Sel::Ns(ns), "in") => ns.in_(r()),
            (Sel::Ns(ns), "except") => ns.except(r()),
            (Sel::Ns(ns), "local") => ns.local(),
            (Sel::Ns(ns), "volatile") => ns.volatile(),
            (Sel::Ns(ns), "compress") => ns.compress(compress()),
            (Sel::Ns(ns), "timeout") => ns.timeout(ms()),
            (Sel::Sock(s), "to") => s.to(r()),
            (Sel::Sock(s), "in") => s.in_(r()),
            (Sel::Sock(s), "except") => s.except(r()),
            (Sel::Sock(s), other) => return Sel::Op(s.broadcast()).step(other, arg),
            (Sel::Op(op), "to") => op.to(r()),
            (Sel::Op(op), "in") => op.in_(r()),
            (Sel::Op(op), "except") => op.except(r()),
            (Sel::Op(op), "local") => op.local(),
            (Sel::Op(op), "volatile") => op.volatile(),
            (Sel::Op(op), "compress") => op.compress(compress()),
            (Sel::Op(op), "timeout") => op.timeout(ms()),
            (_, other) => return Err(format!("unknown step {other:?}")),
        }))
    }

    /// The selection as a broadcast operator (everyone, when no step narrowed it).
    fn op(self) -> BroadcastOperator {
        match self {
            Sel::Io(io) => io.except(Vec::<String>::new()),
            Sel::Ns(ns) => ns.except(Vec::<String>::new()),
            Sel::Sock(s) => s.broadcast(),
            Sel::Op(op) => op,
        }
    }
}

fn base(app: &App, s: &Socket, spec: &Value) -> Result<Sel, String> {
    match spec["from"].as_str().unwrap_or("io") {
        "io" => {
            let nsp = spec["nsp"].as_str().unwrap_or(s.ns());
            Ok(if nsp == "/" { Sel::Io(app.io.clone()) } else { Sel::Ns(app.io.of(nsp)) })
        }
        "socket" => Ok(Sel::Sock(s.clone())),
        "broadcast" => Ok(Sel::Op(s.broadcast())),
        "parent" => Ok(Sel::Ns(app.parent.clone())),
        other => Err(format!("unknown from {other:?}")),
    }
}

/// The steps of a spec: `spec.steps`, or the shorthand fields.
fn steps(spec: &Value) -> Result<Vec<(String, Value)>, String> {
    if let Some(list) = spec.get("steps") {
        let list = list.as_array().ok_or("steps must be a list")?;
        return list
            .iter()
            .map(|st| match st {
                Value::String(name) => Ok((name.clone(), Value::Null)),
                Value::Array(a) if !a.is_empty() && a[0].is_string() => Ok((
                    a[0].as_str().unwrap_or_default().to_owned(),
                    a.get(1).cloned().unwrap_or(Value::Null),
                )),
                other => Err(format!("bad step {other}")),
            })
            .collect();
    }
    let mut out = Vec::new();
    for key in ["to", "in", "except"] {
        if let Some(v) = spec.get(key) {
            out.push((key.to_owned(), v.clone()));
        }
    }
    for key in ["local", "volatile"] {
        if spec[key].as_bool() == Some(true) {
            out.push((key.to_owned(), Value::Null));
        }
    }
    if let Some(c) = spec.get("compress") {
        out.push(("compress".to_owned(), c.clone()));
    }
    Ok(out)
}

/// The base with every step applied (with no step, the base itself: then the
/// namespace-wide methods of `Server` / `Namespace` are the ones called).
fn selection(app: &App, s: &Socket, spec: &Value) -> Result<Sel, String> {
    steps(spec)?.iter().try_fold(base(app, s, spec)?, |sel, (name, arg)| sel.step(name, arg))
}

fn emit_op(app: &App, s: &Socket, spec: &Value, args: Args) -> Result<(), String> {
    let event = event_name(spec);
    let args = event_args(spec, args);
    if spec["from"].as_str() == Some("self") {
        let mut e = s.compress(spec["compress"].as_bool().unwrap_or(true));
        if spec["volatile"].as_bool() == Some(true) {
            e = e.volatile();
        }
        return e.emit(&event, args).map_err(|e| e.to_string());
    }
    let res: Result<(), EmitError> = match selection(app, s, spec)? {
        Sel::Io(io) => io.emit(&event, args),
        Sel::Ns(ns) => ns.emit(&event, args),
        sel => sel.op().emit(&event, args),
    };
    res.map_err(|e| e.to_string())
}

type Fetch = Pin<Box<dyn Future<Output = Vec<FetchedSocket>> + Send>>;

fn fetch_op(app: &App, s: &Socket, spec: &Value) -> Result<Fetch, String> {
    Ok(match selection(app, s, spec)? {
        Sel::Io(io) => Box::pin(async move { io.fetch_sockets().await.unwrap() }),
        Sel::Ns(ns) => Box::pin(async move { ns.fetch_sockets().await.unwrap() }),
        sel => {
            let op = sel.op();
            Box::pin(async move { op.fetch_sockets().await.unwrap() })
        }
    })
}

// ---------------------------------------------------------------------------------------
// Running the JS scenarios
// ---------------------------------------------------------------------------------------

/// Runs `cmd` to completion, killing it after `limit`. Returns its status and output.
fn run_with_limit(mut cmd: Command, limit: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed for the interop API suite (Node.js 20+)");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out_t.join().unwrap_or_default(), err_t.join().unwrap_or_default());
            panic!("node did not finish within {limit:?}:\n{o}\n{e}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out_t.join().unwrap_or_default(), err_t.join().unwrap_or_default())
}

/// The scenario files: tests/interop/api/*.mjs but the helpers (`_*.mjs`), sorted. With
/// `INTEROP_API_ONLY=word`, only the files whose name contains `word`.
fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let only = std::env::var("INTEROP_API_ONLY").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("api"))
        .expect("tests/interop/api exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".mjs") && !name.starts_with('_') && name.contains(only.as_str())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn official_js_client_drives_the_broadcast_api() {
    let dir = process::interop_dir();
    let files = scenario_files(&dir);
    assert!(!files.is_empty(), "no scenario in tests/interop/api");

    // Per-message deflate on, with a low threshold: the official Node client (its `ws`
    // transport offers permessage-deflate by default) then exchanges compressed frames with
    // our WebSocket layer in every websocket scenario (api/deflate.mjs checks it).
    let config = Config::builder().shards(4).per_message_deflate(true).deflate_threshold(64);
    let io = Server::new(config.build().expect("valid config"));
    playground(&io);
    let running = io.listen("127.0.0.1:0".parse().expect("address")).expect("listen");
    let url = format!("http://{}", running.local_addr());

    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec", "--test-timeout=30000"])
        .args(&files)
        .current_dir(&dir)
        .env("SERVER_URL", &url);
    let (status, stdout, stderr) = run_with_limit(cmd, Duration::from_secs(150));
    // Shown with --nocapture, and on failure.
    println!("{stdout}");
    eprintln!("{stderr}");
    println!("volatile packets dropped: {}", io.volatile_dropped());
    drop(running);
    assert!(status.success(), "interop API suite failed against {url}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("pass"), "interop API suite ran no test:\n{stdout}");
}

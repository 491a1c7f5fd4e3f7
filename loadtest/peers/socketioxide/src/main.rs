//! Baseline peer: the shardcast demo app (docs/demo-app.md) on
//! [socketioxide](https://crates.io/crates/socketioxide) served by axum, as socketioxide's
//! documentation recommends.
//!
//!     socketioxide-peer [serve] [--host 127.0.0.1] [--port 3000] [--shards N]
//!                       [--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES]
//!                       [--max-buffer-size PACKETS]
//!
//! Prints `listening on HOST:PORT` once it accepts connections and exits with code 0 on
//! SIGINT / SIGTERM. `--shards` is accepted and ignored (socketioxide runs on one tokio
//! multi-thread runtime; under `taskset -c 1` that is one worker thread).
//! Accepted TCP sockets get TCP_NODELAY.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::SocketIo;

const USAGE: &str = "usage: socketioxide-peer [serve] [--host HOST] [--port PORT] [--shards N] \
[--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES] [--max-buffer-size PACKETS]";

struct Opts {
    host: String,
    port: u16,
    ping_interval: u64,
    ping_timeout: u64,
    max_payload: u64,
    /// socketioxide's per-connection queue of outgoing packets (its default: 128). Not a flag of
    /// the demo app: socketioxide-specific, for experiments only.
    max_buffer_size: Option<usize>,
}

fn usage_error(msg: &str) -> ! {
    eprintln!("{msg}\n{USAGE}");
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let mut o = Opts {
        host: "127.0.0.1".into(),
        port: 3000,
        ping_interval: 25_000,
        ping_timeout: 20_000,
        max_payload: 1_000_000,
        max_buffer_size: None,
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        args.remove(0);
    }
    let mut i = 0;
    while i < args.len() {
        let raw = args[i].clone();
        let (flag, inline) = match raw.split_once('=') {
            Some((f, v)) if raw.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (raw.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if !matches!(
            flag.as_str(),
            "--host"
                | "--port"
                | "--shards"
                | "--ping-interval"
                | "--ping-timeout"
                | "--max-payload"
                | "--max-buffer-size"
        ) {
            usage_error(&format!("unknown argument: {raw}"));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) => v.clone(),
                    None => usage_error(&format!("missing value for {flag}")),
                }
            }
        };
        let num = || -> u64 {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage_error(&format!("invalid value for {flag}: {value}")))
        };
        match flag.as_str() {
            "--host" => o.host = value.clone(),
            "--port" => {
                o.port = u16::try_from(num())
                    .unwrap_or_else(|_| usage_error(&format!("invalid value for --port: {value}")))
            }
            "--shards" => {
                num();
            }
            "--ping-interval" => o.ping_interval = num(),
            "--ping-timeout" => o.ping_timeout = num(),
            "--max-payload" => o.max_payload = num(),
            "--max-buffer-size" => o.max_buffer_size = Some(num().max(1) as usize),
            _ => unreachable!(),
        }
        i += 1;
    }
    o
}

/// The arguments of an event, any number of them, binary ones kept binary.
///
/// socketioxide's common parser decodes a tuple-like type from *all* the arguments of an event
/// (a non-tuple type only gets the first one), and encodes a tuple-like value as that many
/// arguments. This type is "tuple-like" with a length known only at run time; `rmpv::Value`
/// keeps binary attachments as `Binary` (socketioxide's docs recommend it over
/// `serde_json::Value` for exactly that).
#[derive(Debug, Clone, Default)]
struct Args(Vec<rmpv::Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
                while let Some(x) = seq.next_element::<rmpv::Value>()? {
                    v.push(x);
                }
                Ok(Args(v))
            }
        }
        d.deserialize_tuple(usize::MAX, V)
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for x in &self.0 {
            t.serialize_element(x)?;
        }
        t.end()
    }
}

/// A room name from an event argument: a string as is, anything else as its JSON text.
fn room_name(v: &rmpv::Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn echo_handlers(s: &SocketRef) {
    // `message` is never acknowledged, even if the client asked for an ack.
    s.on("message", async |s: SocketRef, TryData(args): TryData<Args>| {
        let _ = s.emit("message-back", &args.unwrap_or_default());
    });
}

async fn on_connect_root(s: SocketRef, io: SocketIo, TryData(auth): TryData<rmpv::Value>) {
    let _ = s.emit("auth", &auth.unwrap_or_else(|_| rmpv::Value::Map(vec![])));
    echo_handlers(&s);

    s.on("message-with-ack", async |TryData(args): TryData<Args>, ack: AckSender| {
        let _ = ack.send(&args.unwrap_or_default());
    });

    s.on("join", async |s: SocketRef, TryData(args): TryData<Args>, ack: AckSender| {
        if let Some(room) = args.ok().and_then(|a| a.0.into_iter().next()) {
            s.join(room_name(&room));
        }
        let _ = ack.send(&true);
    });

    s.on("leave", async |s: SocketRef, TryData(args): TryData<Args>, ack: AckSender| {
        if let Some(room) = args.ok().and_then(|a| a.0.into_iter().next()) {
            s.leave(room_name(&room));
        }
        let _ = ack.send(&true);
    });

    // publish(room, event, ...args): io.to(room).emit(event, ...args), the sender included
    // when it is a member; ack true once the broadcast is handed off.
    let io2 = io.clone();
    s.on("publish", async move |TryData(args): TryData<Args>, ack: AckSender| {
        let mut it = args.unwrap_or_default().0.into_iter();
        if let (Some(room), Some(event)) = (it.next(), it.next()) {
            let event = room_name(&event);
            let rest = Args(it.collect());
            let _ = io2.to(room_name(&room)).emit(event, &rest).await;
        }
        let _ = ack.send(&true);
    });

    // Like socket.io's `socket.disconnect(true)`: a DISCONNECT to every namespace multiplexed
    // on this connection. socketioxide names a socket by its engine.io session id in every
    // namespace, so the connection's sockets are found by that id. socketioxide 0.18 has no
    // public API to close the engine.io connection itself from a socket; the official client
    // closes it once all of its namespaces are disconnected.
    s.on("disconnect-me", async move |s: SocketRef| {
        let sid = s.id;
        for op in io.nsps() {
            if op.ns_path() == s.ns() {
                continue;
            }
            if let Some(other) = op.get_socket(sid) {
                let _ = other.disconnect();
            }
        }
        let _ = s.disconnect();
    });
}

async fn on_connect_custom(s: SocketRef, TryData(auth): TryData<rmpv::Value>) {
    let _ = s.emit("auth", &auth.unwrap_or_else(|_| rmpv::Value::Map(vec![])));
    echo_handlers(&s);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let o = parse_args();

    let mut b = SocketIo::builder()
        .ping_interval(Duration::from_millis(o.ping_interval))
        .ping_timeout(Duration::from_millis(o.ping_timeout))
        // socket.io's maxHttpBufferSize bounds polling payloads and websocket messages alike.
        .max_payload(o.max_payload)
        .ws_max_message_size(o.max_payload.min(usize::MAX as u64) as usize)
        .ws_max_frame_size(o.max_payload.min(usize::MAX as u64) as usize);
    if let Some(n) = o.max_buffer_size {
        b = b.max_buffer_size(n);
    }
    let (layer, io) = b.build_layer();
    io.ns("/", on_connect_root);
    io.ns("/custom", on_connect_custom);
    // Any other namespace: socketioxide refuses it with CONNECT_ERROR
    // {"message":"Invalid namespace"}.

    let app = axum::Router::new().layer(layer);

    let listener = match tokio::net::TcpListener::bind((o.host.as_str(), o.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("server error: cannot listen on {}:{}: {e}", o.host, o.port);
            std::process::exit(1);
        }
    };
    let addr: SocketAddr = listener.local_addr().expect("local_addr");
    let shown = match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("listening on {shown}");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => {
            if let Err(e) = r {
                eprintln!("server error: {e}");
                std::process::exit(1);
            }
        }
        _ = shutdown_signal() => {
            // Close every engine.io connection (clients see a transport close and may
            // reconnect), but do not wait more than 2 s for lingering ones.
            let _ = tokio::time::timeout(Duration::from_secs(2), io.close()).await;
        }
    }
    std::process::exit(0);
}

//! The built-in demo application of `shardcast serve`, exactly as docs/demo-app.md describes
//! it (following the workspace's `shared/spec/demo-app.md`): benchmarks, interop tests and
//! the load-test harness all talk to it.
//!
//! Layer: above the server (an application of the public API).

use std::time::Duration;

use serde_json::{json, Value};

use crate::adapter::ServerSideAckError;
use crate::ns::args::Args;
use crate::ns::socket::{AckSender, Socket};
use crate::ns::Namespace;
use crate::operator::BroadcastAckError;
use crate::server::Server;

/// `publish-with-ack`'s wait for the members' acks (the spec's `timeout(2000)`).
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_millis(2000);
/// `server-side-emit-with-ack`'s wait: the adapter's request timeout (socket.io's 5 s).
const REQUESTS_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers the demo app's namespaces (`/` and `/custom`) and handlers on `io`.
pub fn install(io: &Server) {
    let root = io.of("/");
    // The handlers capture nothing (the namespace comes from the socket): one allocation
    // per handler then serves every socket (see `Socket::on`), which an idle connection
    // would otherwise carry for its whole life.
    root.on_connection(move |socket| {
        greet_and_echo(&socket);
        socket.on("message-with-ack", |_s, args, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(args);
            }
        });
        socket.on("join", |s, args, ack| {
            let ok = args.str(0).map(|room| s.join(room)).is_some();
            reply(ack, ok);
        });
        socket.on("leave", |s, args, ack| {
            let ok = args.str(0).map(|room| s.leave(room)).is_some();
            reply(ack, ok);
        });
        socket.on("publish", |s, args, ack| {
            let ok = publish(&s.namespace(), args);
            reply(ack, ok);
        });
        socket.on("disconnect-me", |s, _args, _ack| s.disconnect(true));
        more_events(&socket);
    });
    let local = root.clone();
    root.on_server_side_any(move |event, args, ack| {
        // `server-side (event, ...args)` to this server's sockets on `/`.
        let (values, binary, _) = args.into_parts();
        let mut all = Vec::with_capacity(values.len() + 1);
        all.push(Value::String(event.to_owned()));
        all.extend(values);
        let _ =
            local.local().emit("server-side", Args::from_parts(all, binary, Default::default()));
        if let Some(ack) = ack {
            let local = local.clone();
            tokio::task::spawn_local(async move {
                let n = local.local().fetch_sockets().await.map_or(0, |s| s.len());
                ack.send((json!({ "sockets": n }),));
            });
        }
    });
    io.of("/custom").on_connection(|socket| greet_and_echo(&socket));
}

/// `auth` with the handshake's auth object, and `message` echoed as `message-back`.
fn greet_and_echo(socket: &Socket) {
    let _ = socket.emit("auth", socket.handshake().auth_arg());
    socket.on("message", |s, args, _ack| {
        let _ = s.emit("message-back", args);
    });
}

/// `sockets-join (room, other)` / `sockets-leave (room, other)`: the sockets in `room` join
/// (leave) `other`.
fn sockets_join_leave(s: &Socket, args: Args, ack: Option<AckSender>, join: bool) {
    let (Some(room), Some(other)) = (args.str(0), args.str(1)) else {
        return reply(ack, false);
    };
    let selected = s.namespace().in_(room.to_owned());
    if join {
        selected.sockets_join(other.to_owned());
    } else {
        selected.sockets_leave(other.to_owned());
    }
    reply(ack, true);
}

/// `publish (room, event, ...args)`: `io.to(room).emit(event, ...args)`, the sender included
/// when it is a member. False when the room or event is missing or the event is reserved.
fn publish(ns: &Namespace, args: Args) -> bool {
    let (Some(room), Some(event)) = (args.str(0), args.str(1)) else { return false };
    let (room, event) = (room.to_owned(), event.to_owned());
    ns.to(room).emit(&event, args.skip(2)).is_ok()
}

/// The "More events on `/`" of docs/demo-app.md: the operations over a selection, the
/// adapter's queries and server-side emits, each acked as the spec says. Without a cluster
/// adapter they cover this server (all its shards).
fn more_events(socket: &Socket) {
    socket.on("publish-volatile", |s, args, ack| {
        let n = s.namespace();
        let (Some(room), Some(event)) = (args.str(0), args.str(1)) else {
            return reply(ack, false);
        };
        let (room, event) = (room.to_owned(), event.to_owned());
        reply(ack, n.to(room).volatile().emit(&event, args.skip(2)).is_ok());
    });
    socket.on("publish-with-ack", |s, args, ack| {
        let n = s.namespace();
        let (Some(room), Some(event), Some(ack)) = (args.str(0), args.str(1), ack) else { return };
        let (room, event) = (room.to_owned(), event.to_owned());
        let op = n.to(room).timeout(PUBLISH_ACK_TIMEOUT);
        tokio::task::spawn_local(async move {
            let (error, responses) = match op.emit_with_ack(&event, args.skip(2)).await {
                Ok(r) => (Value::Null, r),
                Err(BroadcastAckError::Timeout { responses, .. }) => {
                    ("operation has timed out".into(), responses)
                }
                Err(BroadcastAckError::Emit(e)) => (e.to_string().into(), Vec::new()),
            };
            let first: Vec<Value> = responses.iter().map(|(_, a)| first_arg(a)).collect();
            let _ = ack.send(json!({"error": error, "responses": first}));
        });
    });
    socket.on("whoami", |s, _args, ack| {
        let Some(ack) = ack else { return };
        let mut rooms: Vec<String> =
            s.rooms().iter().filter(|r| ***r != *s.id()).map(|r| r.to_string()).collect();
        rooms.sort();
        let _ = ack.send(json!({"id": s.id(), "rooms": rooms, "recovered": s.recovered()}));
    });
    socket.on("fetch-sockets", |s, args, ack| {
        let (Some(room), Some(ack)) = (args.str(0), ack) else { return };
        let op = s.namespace().in_(room.to_owned());
        tokio::task::spawn_local(async move {
            // As the reference's handler, which rejects: no ack when a server did not answer.
            match op.fetch_sockets().await {
                Ok(found) => {
                    let mut ids: Vec<String> = found.iter().map(|s| s.id().to_owned()).collect();
                    ids.sort();
                    let _ = ack.send((ids,));
                }
                Err(e) => tracing::warn!(error = %e, "fetch-sockets"),
            }
        });
    });
    socket.on("sockets-join", |s, args, ack| sockets_join_leave(&s, args, ack, true));
    socket.on("sockets-leave", |s, args, ack| sockets_join_leave(&s, args, ack, false));
    socket.on("disconnect-room", |s, args, ack| {
        let Some(room) = args.str(0).map(str::to_owned) else { return reply(ack, false) };
        // The ack goes first, then the disconnects (the asker may be in the room).
        reply(ack, true);
        s.namespace().in_(room).disconnect_sockets(true);
    });
    socket.on("server-side-emit", |s, args, ack| {
        let Some(event) = args.str(0).map(str::to_owned) else { return reply(ack, false) };
        reply(ack, s.namespace().server_side_emit(&event, args.skip(1)).is_ok());
    });
    socket.on("server-side-emit-with-ack", |s, args, ack| {
        let (Some(event), Some(ack)) = (args.str(0).map(str::to_owned), ack) else { return };
        let n = s.namespace();
        tokio::task::spawn_local(async move {
            let (error, responses) =
                match n.server_side_emit_with_ack(&event, (), REQUESTS_TIMEOUT).await {
                    Ok(r) => (Value::Null, r),
                    // On a timeout, the replies that came, as the reference's callback gets.
                    Err(e) => {
                        let msg = e.to_string();
                        let responses = match e {
                            ServerSideAckError::Timeout { responses, .. } => responses,
                            _ => Vec::new(),
                        };
                        (msg.into(), responses)
                    }
                };
            let first: Vec<Value> = responses.iter().map(first_arg).collect();
            let _ = ack.send(json!({"error": error, "responses": first}));
        });
    });
    socket.on("all-rooms", |s, _args, ack| {
        let Some(ack) = ack else { return };
        let n = s.namespace();
        tokio::task::spawn_local(async move {
            match n.all_rooms().await {
                Ok(rooms) => {
                    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
                    let _ = ack.send((rooms,));
                }
                Err(e) => tracing::warn!(error = %e, "all-rooms"),
            }
        });
    });
}

/// A reply's first argument (`null` when it had none), as socket.io collects replies.
fn first_arg(args: &Args) -> Value {
    args.values().first().cloned().unwrap_or(Value::Null)
}

fn reply(ack: Option<AckSender>, ok: bool) {
    if let Some(ack) = ack {
        let _ = ack.send((ok,));
    }
}

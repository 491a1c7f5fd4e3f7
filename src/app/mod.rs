//! The built-in demo application of `shardcast serve`, exactly as docs/demo-app.md describes
//! it (following the workspace's `shared/spec/demo-app.md`): benchmarks, interop tests and
//! the load-test harness all talk to it.
//!
//! Layer: above the server (an application of the public API).

use crate::ns::args::Args;
use crate::ns::socket::Socket;
use crate::ns::Namespace;
use crate::server::Server;

/// Registers the demo app's namespaces (`/` and `/custom`) and handlers on `io`.
pub fn install(io: &Server) {
    let root = io.of("/");
    let room_ns = root.clone();
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
        let ns = room_ns.clone();
        socket.on("publish", move |_s, args, ack| {
            let ok = publish(&ns, args);
            reply(ack, ok);
        });
        socket.on("disconnect-me", |s, _args, _ack| s.disconnect(true));
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

/// `publish (room, event, ...args)`: `io.to(room).emit(event, ...args)`, the sender included
/// when it is a member. False when the room or event is missing or the event is reserved.
fn publish(ns: &Namespace, args: Args) -> bool {
    let (Some(room), Some(event)) = (args.str(0), args.str(1)) else { return false };
    let (room, event) = (room.to_owned(), event.to_owned());
    ns.to(room).emit(&event, args.skip(2)).is_ok()
}

fn reply(ack: Option<crate::ns::socket::AckSender>, ok: bool) {
    if let Some(ack) = ack {
        let _ = ack.send((ok,));
    }
}

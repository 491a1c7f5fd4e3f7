//! The adapter seam: every operation that may reach beyond this process goes through an
//! [`Adapter`], as in socket.io (`socket.io-adapter`'s `Adapter` / `ClusterAdapter`): a
//! broadcast (with its rooms, exceptions and flags), a broadcast awaiting acks (how many
//! reports to expect, then the replies), fetching, joining, leaving and disconnecting a
//! selection of sockets, server-side emits (with and without ack), all rooms, and the
//! number of servers.
//!
//! [`InProcess`], the default, is this process alone: every shard, reached through the
//! broadcast engine. A cluster adapter (Redis, in a later issue) implements the same trait:
//! it runs the local part through the engine too and carries the rest to other servers,
//! without the namespace, transport or operator code changing.
//!
//! Layer: above the broadcast engine, below the operators users call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::broadcast::{self, BroadcastMsg, Selection};
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::Room;

/// A boxed future, as the adapter's asynchronous operations return.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Which namespaces and sockets an operation applies to, and whether it stays on this server.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The namespaces reached (several for a dynamic pattern's namespace).
    pub names: Vec<Arc<str>>,
    pub sel: Selection,
    /// `local`: this server only, whatever the adapter. (This process is all the in-process
    /// adapter reaches anyway; a cluster adapter reads it.)
    #[allow(dead_code)]
    pub local: bool,
}

/// Why a server-side emit with acknowledgement did not get every reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServerSideAckError {
    /// The emit itself was refused (a reserved event name).
    #[error(transparent)]
    Emit(#[from] crate::error::EmitError),
    /// Some servers did not answer within the adapter's request timeout: the replies that
    /// did arrive.
    #[error("operation has timed out: {missing} of {expected} servers did not answer")]
    Timeout {
        /// The replies received.
        responses: Vec<Args>,
        /// How many servers were asked.
        expected: usize,
        /// How many did not answer.
        missing: usize,
    },
}

/// The operations that may cross the process boundary. Implementations are called from any
/// thread; what they run on shards goes there by message.
pub(crate) trait Adapter: Send + Sync + 'static {
    /// Delivers the encoded broadcast to the selected sockets of every shard here and, unless
    /// `local`, of every other server.
    fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, local: bool);

    /// The same for a broadcast awaiting acks (`msg.ack` is set). Returns how many
    /// [`crate::ns::socket::AckEvent::Delivered`] reports to expect on the ack channel: one
    /// per shard here, one per other server reached.
    fn broadcast_with_ack(
        &self,
        server: &ServerShared,
        msg: Arc<BroadcastMsg>,
        local: bool,
    ) -> usize;

    /// The selected sockets.
    fn fetch_sockets(&self, server: &Arc<ServerShared>, target: Target) -> BoxFuture<Vec<Socket>>;

    /// Makes the selected sockets join `rooms`.
    fn sockets_join(&self, server: &ServerShared, target: Target, rooms: Vec<Room>);

    /// Makes the selected sockets leave `rooms`.
    fn sockets_leave(&self, server: &ServerShared, target: Target, rooms: Vec<Room>);

    /// Disconnects the selected sockets (with `close`, their connections).
    fn disconnect_sockets(&self, server: &ServerShared, target: Target, close: bool);

    /// Emits `event` to the other servers of the cluster (not to this one, as in socket.io).
    fn server_side_emit(&self, server: &ServerShared, nsp: &str, event: &str, args: Args);

    /// The same, awaiting one reply per other server for at most `timeout`.
    fn server_side_emit_with_ack(
        &self,
        server: &ServerShared,
        nsp: &str,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<Args>, ServerSideAckError>>;

    /// Every room of the namespaces `names` (socket ids included), sorted, each once.
    fn all_rooms(&self, server: &Arc<ServerShared>, names: Vec<Arc<str>>) -> BoxFuture<Vec<Room>>;

    /// The number of servers sharing this adapter, this one included.
    fn server_count(&self) -> BoxFuture<usize>;
}

/// The default adapter: this process, all its shards, nothing else.
#[derive(Debug, Default)]
pub(crate) struct InProcess;

impl Adapter for InProcess {
    fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, _local: bool) {
        broadcast::dispatch(server, msg);
    }

    fn broadcast_with_ack(
        &self,
        server: &ServerShared,
        msg: Arc<BroadcastMsg>,
        _local: bool,
    ) -> usize {
        broadcast::dispatch(server, msg)
    }

    fn fetch_sockets(&self, server: &Arc<ServerShared>, target: Target) -> BoxFuture<Vec<Socket>> {
        let server = server.clone();
        Box::pin(async move { broadcast::fetch_sockets(&server, target.names, target.sel).await })
    }

    fn sockets_join(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        broadcast::for_each_selected(server, target.names, target.sel, move |ctx, s| {
            for r in &rooms {
                ctx.join(&s.0.nsp.name, s.sid(), r.clone());
            }
        });
    }

    fn sockets_leave(&self, server: &ServerShared, target: Target, rooms: Vec<Room>) {
        broadcast::for_each_selected(server, target.names, target.sel, move |ctx, s| {
            for r in &rooms {
                ctx.leave(&s.0.nsp.name, s.sid(), r);
            }
        });
    }

    fn disconnect_sockets(&self, server: &ServerShared, target: Target, close: bool) {
        broadcast::for_each_selected(server, target.names, target.sel, move |_ctx, s| {
            s.disconnect(close)
        });
    }

    fn server_side_emit(&self, _server: &ServerShared, _nsp: &str, _event: &str, _args: Args) {
        // No other server to tell.
    }

    fn server_side_emit_with_ack(
        &self,
        _server: &ServerShared,
        _nsp: &str,
        _event: &str,
        _args: Args,
        _timeout: Duration,
    ) -> BoxFuture<Result<Vec<Args>, ServerSideAckError>> {
        // Every other server answered: there is none.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn all_rooms(&self, server: &Arc<ServerShared>, names: Vec<Arc<str>>) -> BoxFuture<Vec<Room>> {
        let server = server.clone();
        Box::pin(async move { broadcast::all_rooms(&server, names).await })
    }

    fn server_count(&self) -> BoxFuture<usize> {
        Box::pin(async { 1 })
    }
}

/// What the adapter layer keeps in the server's shared state.
struct Slot(Arc<dyn Adapter>);

/// Installs `adapter` as `server`'s (before it serves; the first one installed stays).
pub(crate) fn install(server: &ServerShared, adapter: Arc<dyn Adapter>) {
    server.set_upper(Box::new(Slot(adapter)));
}

/// The adapter of `server`: the one installed, else this process alone.
pub(crate) fn of(server: &ServerShared) -> &dyn Adapter {
    static IN_PROCESS: InProcess = InProcess;
    match server.upper().and_then(|u| u.downcast_ref::<Slot>()) {
        Some(Slot(a)) => &**a,
        None => &IN_PROCESS,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::server::Server;

    /// Records each operation that reaches it, then does what the in-process adapter does.
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl Recording {
        fn note(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
    }

    impl Adapter for Recording {
        fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, local: bool) {
            self.note(format!("broadcast {} {:?} local={local}", msg.event, msg.sel.rooms));
            InProcess.broadcast(server, msg, local)
        }
        fn broadcast_with_ack(
            &self,
            s: &ServerShared,
            msg: Arc<BroadcastMsg>,
            local: bool,
        ) -> usize {
            self.note(format!("broadcast_with_ack {} local={local}", msg.event));
            InProcess.broadcast_with_ack(s, msg, local)
        }
        fn fetch_sockets(&self, s: &Arc<ServerShared>, t: Target) -> BoxFuture<Vec<Socket>> {
            self.note(format!("fetch_sockets {:?} except={:?}", t.sel.rooms, t.sel.except));
            InProcess.fetch_sockets(s, t)
        }
        fn sockets_join(&self, s: &ServerShared, t: Target, rooms: Vec<Room>) {
            self.note(format!("sockets_join {rooms:?}"));
            InProcess.sockets_join(s, t, rooms)
        }
        fn sockets_leave(&self, s: &ServerShared, t: Target, rooms: Vec<Room>) {
            self.note(format!("sockets_leave {rooms:?}"));
            InProcess.sockets_leave(s, t, rooms)
        }
        fn disconnect_sockets(&self, s: &ServerShared, t: Target, close: bool) {
            self.note(format!("disconnect_sockets close={close} local={}", t.local));
            InProcess.disconnect_sockets(s, t, close)
        }
        fn server_side_emit(&self, s: &ServerShared, nsp: &str, event: &str, args: Args) {
            self.note(format!("server_side_emit {nsp} {event}"));
            InProcess.server_side_emit(s, nsp, event, args)
        }
        fn server_side_emit_with_ack(
            &self,
            s: &ServerShared,
            nsp: &str,
            event: &str,
            args: Args,
            timeout: Duration,
        ) -> BoxFuture<Result<Vec<Args>, ServerSideAckError>> {
            self.note(format!("server_side_emit_with_ack {nsp} {event}"));
            InProcess.server_side_emit_with_ack(s, nsp, event, args, timeout)
        }
        fn all_rooms(&self, s: &Arc<ServerShared>, names: Vec<Arc<str>>) -> BoxFuture<Vec<Room>> {
            self.note(format!("all_rooms {names:?}"));
            InProcess.all_rooms(s, names)
        }
        fn server_count(&self) -> BoxFuture<usize> {
            self.note("server_count".into());
            InProcess.server_count()
        }
    }

    /// Every cross-process operation of the public API reaches the adapter, with its flags.
    #[test]
    fn every_operation_goes_through_the_adapter() {
        let rec = Arc::new(Recording::default());
        let io = Server::with_adapter(
            Config::builder().shards(4).build().unwrap(),
            rec.clone() as Arc<dyn Adapter>,
        );
        let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            io.to("r").emit("a", ()).unwrap();
            io.local().except("x").emit("b", ()).unwrap();
            let t = Duration::from_millis(50);
            assert_eq!(io.to("r").timeout(t).emit_with_ack("c", ()).await, Ok(Vec::new()));
            assert!(io.to("r").except("s").fetch_sockets().await.is_empty());
            io.to("r").sockets_join("j");
            io.to("r").sockets_leave(["k", "l"]);
            io.local().disconnect_sockets(true);
            io.server_side_emit("d", ()).unwrap();
            assert_eq!(io.of("/other").server_side_emit_with_ack("e", (), t).await, Ok(vec![]));
            assert_eq!(io.all_rooms().await, Vec::<Room>::new());
            assert_eq!(io.server_count().await, 1);
        });
        drop(running);
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                r#"broadcast a ["r"] local=false"#,
                "broadcast b [] local=true",
                "broadcast_with_ack c local=false",
                r#"fetch_sockets ["r"] except=["s"]"#,
                r#"sockets_join ["j"]"#,
                r#"sockets_leave ["k", "l"]"#,
                "disconnect_sockets close=true local=true",
                "server_side_emit / d",
                "server_side_emit_with_ack /other e",
                r#"all_rooms ["/"]"#,
                "server_count",
            ]
        );
    }
}

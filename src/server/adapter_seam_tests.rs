//! The adapter seam seen from the top: every public cross-process operation reaches the
//! server's adapter, with its flags (a recording adapter that then acts as the in-process one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapter::{
    AckPlan, Adapter, BoxFuture, Fetched, InProcess, RequestError, ServerSideAckError, Target,
};
use crate::broadcast::BroadcastMsg;
use crate::config::Config;
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::Room;
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
    fn broadcast_with_ack(&self, s: &ServerShared, msg: Arc<BroadcastMsg>, local: bool) -> AckPlan {
        self.note(format!("broadcast_with_ack {} local={local}", msg.event));
        InProcess.broadcast_with_ack(s, msg, local)
    }
    fn fetch_sockets(
        &self,
        s: &Arc<ServerShared>,
        t: Target,
    ) -> BoxFuture<Result<Fetched, RequestError>> {
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
    fn all_rooms(
        &self,
        s: &Arc<ServerShared>,
        names: Vec<Arc<str>>,
    ) -> BoxFuture<Result<Vec<Room>, RequestError>> {
        self.note(format!("all_rooms {names:?}"));
        InProcess.all_rooms(s, names)
    }
    fn server_count(&self, nsp: &str) -> BoxFuture<Result<usize, RequestError>> {
        self.note(format!("server_count {nsp}"));
        InProcess.server_count(nsp)
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
        assert!(io.to("r").except("s").fetch_sockets().await.unwrap().is_empty());
        io.to("r").sockets_join("j");
        io.to("r").sockets_leave(["k", "l"]);
        io.local().disconnect_sockets(true);
        io.server_side_emit("d", ()).unwrap();
        assert_eq!(io.of("/other").server_side_emit_with_ack("e", (), t).await, Ok(vec![]));
        assert_eq!(io.all_rooms().await, Ok(Vec::<Room>::new()));
        assert_eq!(io.of("/other").server_count().await, Ok(1));
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
            "server_count /other",
        ]
    );
}

//! Answering the requests of the other servers of the cluster (and of the emitter), on the
//! Redis thread: each is run against this server's shards as the in-process adapter runs
//! it, and its answer queued for publishing on the namespace's common response channel (the
//! one every asker listens to).

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashSet;
use smallvec::smallvec;
use tokio::sync::mpsc;

use super::{Cmd, RedisAdapter};
use crate::adapter::request::{self, Request, RequestBody, Targets, WireSocket};
use crate::adapter::{Adapter, InProcess, Target};
use crate::broadcast::{self, Selection};
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::socket::{AckEvent, Socket};
use crate::ns::{Room, ServerSideAck};
use crate::proto::sid::Sid;
use crate::shard;

/// What answering needs: this server and the adapter's queue.
pub(super) struct Ctx {
    pub server: Arc<ServerShared>,
    pub adapter: Arc<RedisAdapter>,
}

impl Ctx {
    fn respond(&self, nsp: &str, payload: bytes::Bytes) {
        let channel = request::response_channel(&self.adapter.key, nsp);
        self.adapter.queue(Cmd::Publish(channel, payload));
    }

    fn target(nsp: &str, sel: Selection) -> Target {
        Target { names: vec![Arc::from(nsp)], sel, local: true }
    }
}

/// Handles request `r` on namespace `nsp` from another server. Requests for a namespace
/// this server does not have are ignored (a Node server has no adapter for it either).
pub(super) fn handle(ctx: &Arc<Ctx>, nsp: &str, r: Request) {
    if ctx.server.existing(nsp).is_none() {
        return;
    }
    let id = r.request_id;
    let (server, nsp_name): (&Arc<ServerShared>, Arc<str>) = (&ctx.server, Arc::from(nsp));
    match r.body {
        RequestBody::Sockets { rooms } => {
            let Some(id) = id else { return };
            let ctx = ctx.clone();
            let sel = Selection { rooms: rooms.into(), except: smallvec![] };
            tokio::spawn(async move {
                let found =
                    broadcast::fetch_sockets(&ctx.server, vec![nsp_name.clone()], sel).await;
                let ids: Vec<String> = found.iter().map(|s| s.id().to_owned()).collect();
                ctx.respond(&nsp_name, request::socket_ids_response(&id, &ids));
            });
        }
        RequestBody::AllRooms => {
            let Some(id) = id else { return };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let rooms = broadcast::all_rooms(&ctx.server, vec![nsp_name.clone()]).await;
                ctx.respond(&nsp_name, request::rooms_response(&id, &rooms));
            });
        }
        RequestBody::Join { targets: Targets::Selection(sel), rooms } => {
            InProcess.sockets_join(server, Ctx::target(nsp, sel), rooms)
        }
        RequestBody::Leave { targets: Targets::Selection(sel), rooms } => {
            InProcess.sockets_leave(server, Ctx::target(nsp, sel), rooms)
        }
        RequestBody::Disconnect { targets: Targets::Selection(sel), close } => {
            InProcess.disconnect_sockets(server, Ctx::target(nsp, sel), close)
        }
        RequestBody::Join { targets: Targets::Socket(sid), rooms } => {
            on_one_socket(ctx, nsp_name, sid, id, move |s| {
                rooms.iter().for_each(|r| s.join(r.clone()))
            })
        }
        RequestBody::Leave { targets: Targets::Socket(sid), rooms } => {
            on_one_socket(ctx, nsp_name, sid, id, move |s| {
                rooms.iter().for_each(|r| s.leave(r.clone()))
            })
        }
        RequestBody::Disconnect { targets: Targets::Socket(sid), close } => {
            on_one_socket(ctx, nsp_name, sid, id, move |s| s.disconnect(close))
        }
        RequestBody::Fetch { sel } => {
            let Some(id) = id else { return };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let found =
                    broadcast::fetch_sockets(&ctx.server, vec![nsp_name.clone()], sel).await;
                let sockets: Vec<WireSocket> = found.iter().map(wire_socket).collect();
                ctx.respond(&nsp_name, request::fetch_response(&id, &sockets));
            });
        }
        RequestBody::ServerSideEmit { event, args } => server_side(ctx, nsp_name, id, event, args),
        RequestBody::Broadcast { event, args, sel, volatile, compress, timeout } => {
            let Some(id) = id else { return };
            let wait = timeout.unwrap_or(ctx.adapter.requests_timeout);
            broadcast_with_ack(ctx, nsp_name, id, event, args, sel, volatile, compress, wait);
        }
    }
}

/// A socket as a fetch answer describes it.
pub(crate) fn wire_socket(s: &Socket) -> WireSocket {
    WireSocket {
        id: s.id().to_owned(),
        handshake: s.handshake().to_json(),
        rooms: s.rooms(),
        data: s.data(),
    }
}

/// The older one-socket form: applied to socket `sid` when it is here, then answered.
fn on_one_socket(
    ctx: &Arc<Ctx>,
    nsp: Arc<str>,
    sid: String,
    id: Option<String>,
    f: impl FnOnce(&Socket) + Send + 'static,
) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let sel = Selection { rooms: smallvec![Room::from(sid.as_str())], except: smallvec![] };
        let found = broadcast::fetch_sockets(&ctx.server, vec![nsp.clone()], sel).await;
        let Some(s) = found.iter().find(|s| s.id() == sid) else { return };
        f(s);
        if let Some(id) = id {
            ctx.respond(&nsp, request::done_response(&id));
        }
    });
}

/// A server-side event: this server's listeners run on shard 0; the first reply goes back
/// when the sender asked for one.
fn server_side(ctx: &Arc<Ctx>, nsp: Arc<str>, id: Option<String>, event: String, args: Args) {
    let (Some(ns), Some(mesh)) = (ctx.server.existing(&nsp), ctx.server.mesh()) else { return };
    let ack = id.map(|id| {
        let ctx = ctx.clone();
        let nsp = nsp.clone();
        ServerSideAck::new(move |reply: Args| {
            ctx.respond(&nsp, request::server_side_response(&id, &reply));
        })
    });
    shard::submit_to(mesh, 0, move || {
        ns.fire_server_side(&event, args, ack);
    });
}

/// Another server's broadcast awaiting acks: delivered here with an ack id of this server;
/// the number of clients reached is answered once every shard reported, then each client's
/// ack as it comes, until all answered or the asker's wait is over.
#[allow(clippy::too_many_arguments)]
fn broadcast_with_ack(
    ctx: &Arc<Ctx>,
    nsp: Arc<str>,
    id: String,
    event: String,
    args: Args,
    sel: Selection,
    volatile: bool,
    compress: bool,
    wait: Duration,
) {
    let Some(ns) = ctx.server.existing(&nsp) else { return };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ack = Some((ns.next_ack_id(), tx));
    let msg = match broadcast::encode(&ctx.server, &ns, &sel, &event, args, ack, volatile, compress)
    {
        Ok(msg) => msg,
        Err(e) => {
            tracing::debug!(error = %e, "redis adapter: refused a broadcast with acks");
            return;
        }
    };
    let shards = broadcast::dispatch(&ctx.server, msg);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + wait;
        let (mut reported, mut count) = (0, 0);
        // A shard reports its deliveries before any of its sockets can reply.
        let mut pending: AHashSet<Sid> = AHashSet::new();
        loop {
            if reported == shards && pending.is_empty() {
                break;
            }
            let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => ev,
                _ => break,
            };
            match ev {
                AckEvent::Delivered(sids) => {
                    reported += 1;
                    count += sids.len();
                    pending.extend(sids);
                    if reported == shards {
                        ctx.respond(&nsp, request::client_count_response(&id, count));
                    }
                }
                AckEvent::Reply(sid, args) => {
                    pending.remove(&sid);
                    ctx.respond(&nsp, request::ack_response(&id, &args));
                }
                AckEvent::Gone(sid) => {
                    pending.remove(&sid);
                }
                _ => {}
            }
        }
        if reported < shards {
            // A shard did not report in time; the asker still needs a count to finish.
            ctx.respond(&nsp, request::client_count_response(&id, count));
        }
    });
}

//! Answering the requests of the other servers of the cluster (and of the emitter), on the
//! Redis side (shard 0): each is run against this server's shards as the in-process adapter runs
//! it, and its answer queued for publishing on the namespace's common response channel (the
//! one every asker listens to).

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashSet;
use smallvec::smallvec;
use tokio::sync::mpsc;

use super::{Cmd, Proto, RedisAdapter};
use crate::adapter::cluster_wire::{Body, SocketInfo};
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

/// An answer of this server, whatever the protocol writes it as.
pub(super) enum Reply<'a> {
    SocketIds(&'a [String]),
    Rooms(&'a [Room]),
    Done,
    Fetch(&'a [WireSocket]),
    ServerSide(&'a Args),
    ClientCount(usize),
    Ack(&'a Args),
}

impl Ctx {
    /// Publishes `reply` to request `id` of server `asker` (classic: on the namespace's
    /// common response channel; sharded: on the asker's own).
    fn respond(&self, nsp: &str, asker: Option<&str>, id: &str, reply: Reply<'_>) {
        let a = &self.adapter;
        let (channel, payload) = match a.proto {
            Proto::Classic => {
                let payload = match reply {
                    Reply::SocketIds(ids) => request::socket_ids_response(id, ids),
                    Reply::Rooms(rooms) => request::rooms_response(id, rooms),
                    Reply::Done => request::done_response(id),
                    Reply::Fetch(sockets) => request::fetch_response(id, sockets),
                    Reply::ServerSide(args) => request::server_side_response(id, args),
                    Reply::ClientCount(n) => request::client_count_response(id, n),
                    Reply::Ack(args) => request::ack_response(id, args),
                };
                (request::response_channel(&a.key, nsp), payload)
            }
            Proto::Sharded(_) | Proto::Streams => {
                let Some(asker) = asker else { return };
                let request_id = id.to_owned();
                let body = match reply {
                    Reply::Fetch(sockets) => Body::FetchSocketsResponse {
                        request_id,
                        sockets: sockets
                            .iter()
                            .map(|s| SocketInfo {
                                id: s.id.clone(),
                                handshake: s.handshake.clone(),
                                rooms: s.rooms.clone(),
                                data: Some(s.data.clone()),
                            })
                            .collect(),
                        binary: Vec::new(),
                    },
                    Reply::ServerSide(args) => {
                        Body::ServerSideEmitResponse { request_id, reply: first_only(args) }
                    }
                    Reply::ClientCount(n) => {
                        Body::BroadcastClientCount { request_id, client_count: n as u64 }
                    }
                    Reply::Ack(args) => Body::BroadcastAck { request_id, reply: first_only(args) },
                    // Not requests of this protocol.
                    Reply::SocketIds(_) | Reply::Rooms(_) | Reply::Done => return,
                };
                super::sharded::response(a, nsp, asker, body)
            }
        };
        a.queue(Cmd::Publish(channel, payload));
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
    let asker: Option<Arc<str>> = r.uid.as_deref().map(Arc::from);
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
                ctx.respond(&nsp_name, asker.as_deref(), &id, Reply::SocketIds(&ids));
            });
        }
        RequestBody::AllRooms => {
            let Some(id) = id else { return };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let rooms = broadcast::all_rooms(&ctx.server, vec![nsp_name.clone()]).await;
                ctx.respond(&nsp_name, asker.as_deref(), &id, Reply::Rooms(&rooms));
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
                ctx.respond(&nsp_name, asker.as_deref(), &id, Reply::Fetch(&sockets));
            });
        }
        RequestBody::ServerSideEmit { event, args } => {
            server_side(ctx, nsp_name, asker, id, event, args)
        }
        RequestBody::Broadcast { event, args, sel, volatile, compress, timeout } => {
            let Some(id) = id else { return };
            let wait = timeout.unwrap_or(ctx.adapter.requests_timeout);
            let asked = Asked { nsp: nsp_name, asker, id };
            broadcast_with_ack(ctx, asked, event, args, sel, volatile, compress, wait);
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
            ctx.respond(&nsp, None, &id, Reply::Done);
        }
    });
}

/// A server-side event: this server's listeners run on shard 0; the first reply goes back
/// when the sender asked for one.
fn server_side(
    ctx: &Arc<Ctx>,
    nsp: Arc<str>,
    asker: Option<Arc<str>>,
    id: Option<String>,
    event: String,
    args: Args,
) {
    let (Some(ns), Some(mesh)) = (ctx.server.existing(&nsp), ctx.server.mesh()) else { return };
    let ack = id.map(|id| {
        let ctx = ctx.clone();
        let nsp = nsp.clone();
        ServerSideAck::new(move |reply: Args| {
            ctx.respond(&nsp, asker.as_deref(), &id, Reply::ServerSide(&reply));
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
    asked: Asked,
    event: String,
    args: Args,
    sel: Selection,
    volatile: bool,
    compress: bool,
    wait: Duration,
) {
    let Some(ns) = ctx.server.existing(&asked.nsp) else { return };
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
                        asked.reply(&ctx, Reply::ClientCount(count));
                    }
                }
                AckEvent::Reply(sid, args) => {
                    pending.remove(&sid);
                    asked.reply(&ctx, Reply::Ack(&args));
                }
                AckEvent::Gone(sid) => {
                    pending.remove(&sid);
                }
                _ => {}
            }
        }
        if reported < shards {
            // A shard did not report in time; the asker still needs a count to finish.
            asked.reply(&ctx, Reply::ClientCount(count));
        }
    });
}

/// Who asked for a broadcast with acks, and in which namespace.
struct Asked {
    nsp: Arc<str>,
    asker: Option<Arc<str>>,
    id: String,
}

impl Asked {
    fn reply(&self, ctx: &Ctx, reply: Reply<'_>) {
        ctx.respond(&self.nsp, self.asker.as_deref(), &self.id, reply);
    }
}

/// A reply's first argument only (what crosses servers).
fn first_only(args: &Args) -> Args {
    match args.values().first() {
        Some(v) => Args::from_parts(vec![v.clone()], args.binary().to_vec(), Default::default()),
        None => Args::new(),
    }
}

//! The Socket.IO side of one connection: decodes its packets, joins and leaves namespaces,
//! reassembles binary attachments, and dispatches events and acknowledgements to sockets.
//!
//! Owned by the connection's session task on its shard; never shared.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use smallvec::SmallVec;

use crate::error::DisconnectReason;
use crate::ns::args::Args;
use crate::ns::cluster_recovery::{ClusterAnswer, ClusterSession, MissedAsk, ReplyTo, TakeAsk};
use crate::ns::recovery::{Answer, Ask, Restore};
use crate::ns::shared::ServerShared;
use crate::ns::socket::{Handshake, Socket};
use crate::ns::{Admission, NamespaceInner};
use crate::proto::json;
use crate::proto::offset::EntryId;
use crate::proto::sid::Sid;
use crate::proto::sio::{self, PacketType};
use crate::proto::sio_msgpack;
use crate::shard::ShardCtx;
use crate::transport::local::ConnHandle;
use crate::transport::outbox::Out;
use crate::transport::request::ConnInfo;
use crate::transport::session::{Cmd, Flow, SessionUpper};

pub(crate) struct Client {
    server: Arc<ServerShared>,
    conn: Arc<ConnHandle>,
    info: Arc<ConnInfo>,
    sockets: SmallVec<[Socket; 2]>,
    /// What a connection needs only now and then (boxed, one pointer, kept out of every
    /// idle session): a binary packet waiting for its attachments, CONNECTs waiting for a
    /// restore's answer.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    partial: Option<sio::Reassembler>,
    restoring: Vec<Pending>,
    /// Sockets whose namespace's async middlewares are running.
    admitting: Vec<Admitting>,
}

/// A socket waiting for its namespace's async middlewares.
struct Admitting {
    socket: Socket,
    /// The namespace as the client named it.
    name: String,
    restore: Option<Restore>,
}

/// The verdict of a socket's async middlewares, sent back to its session.
struct Admitted {
    name: String,
    result: Result<(), crate::error::ConnectError>,
}

/// A CONNECT whose session is being looked up (connection state recovery): what the
/// socket is made of once the answer comes.
struct Pending {
    nsp: Arc<NamespaceInner>,
    /// The namespace as the client named it (the CONNECT reply's).
    name: String,
    auth: Value,
    auth_verbatim: Option<Box<str>>,
    /// Recovery across servers: the offset the client sent, then the session once taken.
    cluster: Option<(EntryId, Option<ClusterSession>)>,
}

impl Client {
    pub(crate) fn new(
        server: Arc<ServerShared>,
        conn: Arc<ConnHandle>,
        info: Arc<ConnInfo>,
    ) -> Self {
        Client { server, conn, info, sockets: SmallVec::new(), rare: None }
    }

    /// True once the client has joined at least one namespace.
    pub(crate) fn has_sockets(&self) -> bool {
        !self.sockets.is_empty()
    }

    fn limits(&self) -> sio::Limits {
        sio::Limits {
            max_attachments: self.server.config().max_attachments,
            max_json_depth: self.server.config().max_json_depth,
        }
    }

    fn msgpack(&self) -> bool {
        self.server.config().parser == crate::config::Parser::MsgPack
    }

    /// An Engine.IO text message: one Socket.IO packet.
    pub(crate) fn on_text(&mut self, ctx: &ShardCtx, text: &[u8]) -> Flow {
        if self.msgpack() {
            // socket.io-msgpack-parser only ever sends binary messages.
            tracing::debug!(sid = %self.conn.sid, "text message on a server with the MessagePack parser (a client with the default parser?)");
            return Flow::Close(DisconnectReason::ForcedClose);
        }
        if self.rare.as_ref().is_some_and(|r| r.partial.is_some()) {
            tracing::debug!(sid = %self.conn.sid, "text packet while reassembling attachments");
            return Flow::Close(DisconnectReason::ForcedClose);
        }
        let packet = match sio::Packet::decode(text, self.limits()) {
            Ok(p) => p,
            Err(e) => {
                // Named in the log; the client sees the close, as from the reference.
                tracing::debug!(sid = %self.conn.sid, error = %e, "undecodable packet");
                return Flow::Close(DisconnectReason::ForcedClose);
            }
        };
        if packet.attachments > 0 {
            self.rare.get_or_insert_with(Default::default).partial =
                Some(sio::Reassembler::new(packet));
            return Flow::Continue;
        }
        self.dispatch(ctx, packet, Vec::new())
    }

    /// An Engine.IO binary message: the next attachment of the packet being reassembled.
    /// With the MessagePack parser: one whole Socket.IO packet.
    pub(crate) fn on_binary(&mut self, ctx: &ShardCtx, bin: Bytes) -> Flow {
        if self.msgpack() {
            return match sio_msgpack::decode(&bin, self.limits()) {
                Ok((packet, bins)) => self.dispatch(ctx, packet, bins),
                Err(e) => {
                    tracing::debug!(sid = %self.conn.sid, error = %e, "undecodable packet");
                    Flow::Close(DisconnectReason::ForcedClose)
                }
            };
        }
        let Some(partial) = self.rare.as_mut().and_then(|r| r.partial.as_mut()) else {
            if sio_msgpack::looks_like_msgpack(&bin) {
                tracing::debug!(sid = %self.conn.sid, "binary message with no packet expecting it (a client with the MessagePack parser? the server's parser is the default one)");
            } else {
                tracing::debug!(sid = %self.conn.sid, "binary message with no packet expecting it");
            }
            return Flow::Close(DisconnectReason::ForcedClose);
        };
        if !partial.push(bin) {
            return Flow::Continue;
        }
        let Some(done) = self.rare.as_mut().and_then(|r| r.partial.take()) else {
            return Flow::Continue;
        };
        self.tidy();
        match done.finish() {
            Ok((packet, bins)) => self.dispatch(ctx, packet, bins),
            Err(e) => {
                tracing::debug!(sid = %self.conn.sid, error = %e, "bad attachments");
                Flow::Close(DisconnectReason::ForcedClose)
            }
        }
    }

    fn socket(&self, nsp: &str) -> Option<&Socket> {
        self.sockets.iter().find(|s| s.ns() == nsp)
    }

    fn dispatch(&mut self, ctx: &ShardCtx, mut packet: sio::Packet, bins: Vec<Bytes>) -> Flow {
        if self.conn.eio3 {
            v3_namespace(&mut packet);
        }
        let received = &ctx.ns().counters.packets_received;
        received.set(received.get() + 1);
        let existing = self.socket(&packet.nsp).cloned();
        match (packet.kind, existing) {
            (PacketType::Connect, None) if !self.is_restoring(&packet.nsp) => {
                self.connect(ctx, packet)
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(socket)) => {
                let Some(Value::Array(mut values)) = packet.data else {
                    return Flow::Close(DisconnectReason::ForcedClose);
                };
                if values.is_empty() {
                    return Flow::Close(DisconnectReason::ForcedClose);
                }
                // A number as event name is its JavaScript string form ("7", "1.5").
                let event = match values.remove(0) {
                    Value::String(s) => s,
                    other => {
                        let mut text = bytes::BytesMut::new();
                        json::write_value(&mut text, &other);
                        String::from_utf8_lossy(&text).into_owned()
                    }
                };
                let mut verbatim = packet.verbatim;
                verbatim.skip(1);
                let args = Args::from_parts(values, bins, verbatim);
                let ack = packet.id.map(|id| socket.ack_sender(id));
                socket.dispatch_event(&event, args, ack);
                Flow::Continue
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(socket)) => {
                let (Some(id), Some(Value::Array(values))) = (packet.id, packet.data) else {
                    return Flow::Close(DisconnectReason::ForcedClose);
                };
                socket.on_ack(id, Args::from_parts(values, bins, packet.verbatim));
                Flow::Continue
            }
            (PacketType::Disconnect, Some(socket)) => {
                self.remove(ctx, &socket, DisconnectReason::ClientNamespaceDisconnect);
                Flow::Continue
            }
            // socket.io closes the connection on a packet that does not fit the state: a
            // CONNECT for a namespace already joined, anything else for one not joined, or a
            // CONNECT_ERROR (server-to-client only).
            (kind, _) => {
                tracing::debug!(sid = %self.conn.sid, ?kind, nsp = %packet.nsp, "packet invalid in this state");
                Flow::Close(DisconnectReason::ForcedServerClose)
            }
        }
    }

    /// Frees the rare state once nothing is in it.
    fn tidy(&mut self) {
        if self.rare.as_ref().is_some_and(|r| {
            r.partial.is_none() && r.restoring.is_empty() && r.admitting.is_empty()
        }) {
            self.rare = None;
        }
    }

    fn is_restoring(&self, nsp: &str) -> bool {
        self.rare.as_ref().is_some_and(|r| {
            r.restoring.iter().any(|p| p.name == nsp) || r.admitting.iter().any(|a| a.name == nsp)
        })
    }

    fn connect(&mut self, ctx: &ShardCtx, packet: sio::Packet) -> Flow {
        let (auth, auth_verbatim) = match packet.data {
            Some(v @ Value::Object(_)) => (v, packet.verbatim.get(0).map(Box::from)),
            _ => (json!({}), None),
        };
        let nsp = self.server.namespace_for(&packet.nsp, &auth);
        let Some(nsp) = nsp else {
            let err = sio::Packet::new(
                PacketType::ConnectError,
                packet.nsp,
                None,
                Some(json!({"message": "Invalid namespace"})),
            );
            self.conn.send(Out::packet(&err, self.server.encoding(true)));
            return Flow::Continue;
        };
        let mut pending = Pending { nsp, name: packet.nsp, auth, auth_verbatim, cluster: None };
        // Engine.IO v3 clients (socket.io-client 2.x) know nothing of recovery.
        if let Some(rec) = self.server.recovery().filter(|_| !self.conn.eio3) {
            // socket.io tries a restore only when both are strings; any other failure is a
            // new session, silently.
            let pid = pending.auth.get("pid").and_then(Value::as_str);
            let offset = pending.auth.get("offset").and_then(Value::as_str);
            if let (Some(cluster), Some(pid), Some(offset)) = (rec.cluster(), pid, offset) {
                // Across servers: any server's pid (20 base64url characters, as socket.io
                // makes them) and a stream entry id.
                match (Sid::parse(pid), EntryId::parse(offset)) {
                    (Some(pid), Some(offset)) => {
                        let reply = ReplyTo {
                            nsp: pending.nsp.name.clone(),
                            shard: ctx.id,
                            conn: self.conn.sid,
                        };
                        cluster.take(&self.server, TakeAsk { pid, offset, reply });
                        pending.cluster = Some((offset, None));
                        self.rare.get_or_insert_with(Default::default).restoring.push(pending);
                        return Flow::Continue;
                    }
                    _ => rec.refused(false),
                }
            } else if let (Some(pid), Some(offset)) = (pid, offset) {
                let pid = Sid::parse(pid).filter(|p| usize::from(p.shard()) < ctx.mesh.len());
                match (pid, rec.tag.parse(offset)) {
                    (Some(pid), Some(offset)) => {
                        ctx.ask_restore(Ask {
                            pid,
                            offset,
                            nsp: pending.nsp.name.clone(),
                            reply_shard: ctx.id,
                            conn: self.conn.sid,
                        });
                        self.rare.get_or_insert_with(Default::default).restoring.push(pending);
                        return Flow::Continue;
                    }
                    _ => rec.refused(false),
                }
            }
        }
        self.accept(ctx, pending, None)
    }

    /// The answer to a restore request: the socket is made, restored or new.
    fn on_answer(&mut self, ctx: &ShardCtx, answer: Answer) -> Flow {
        let Some(list) = self.rare.as_mut().map(|r| &mut r.restoring) else {
            return Flow::Continue;
        };
        let Some(at) = list.iter().position(|p| *p.nsp.name == *answer.nsp) else {
            return Flow::Continue;
        };
        let pending = list.remove(at);
        self.tidy();
        let Some(rec) = self.server.recovery() else { return Flow::Continue };
        let restore = answer.found.and_then(|found| ctx.prepare_restore(found));
        let restore = match restore {
            // A live socket with that id here (it cannot be anywhere else: a session is
            // taken once) would share its rooms: a new session instead.
            Ok(r) if ctx.has_socket(&r.session.nsp, r.session.sid) => {
                rec.refused(false);
                None
            }
            Ok(r) => Some(r),
            Err(cap) => {
                rec.refused(cap);
                None
            }
        };
        self.accept(ctx, pending, restore)
    }

    /// Recovery across servers: the session taken (then its missed packets are asked
    /// for, while this shard keeps what reaches it), or the missed packets (then the
    /// socket is made).
    fn on_cluster_answer(&mut self, ctx: &ShardCtx, answer: ClusterAnswer) -> Flow {
        let nsp = match &answer {
            ClusterAnswer::Taken { nsp, .. } | ClusterAnswer::Missed { nsp, .. } => nsp.clone(),
        };
        let Some(list) = self.rare.as_mut().map(|r| &mut r.restoring) else {
            return Flow::Continue;
        };
        let Some(at) = list.iter().position(|p| *p.nsp.name == *nsp) else {
            return Flow::Continue;
        };
        let server = self.server.clone();
        let Some(rec) = server.recovery() else { return Flow::Continue };
        let Some(cluster) = rec.cluster().cloned() else { return Flow::Continue };
        match answer {
            ClusterAnswer::Taken { session: Some(s), .. }
                if !ctx.has_socket(&nsp, s.sid) && list[at].cluster.is_some() =>
            {
                let offset = list[at].cluster.as_ref().map_or(EntryId { ms: 0, seq: 0 }, |c| c.0);
                ctx.catchup_begin(self.conn.sid, nsp.clone(), s.rooms.clone());
                let reply = ReplyTo { nsp, shard: ctx.id, conn: self.conn.sid };
                cluster.missed(&server, MissedAsk { offset, rooms: s.rooms.clone(), reply });
                list[at].cluster = Some((offset, Some(s)));
                Flow::Continue
            }
            ClusterAnswer::Taken { .. } => {
                let pending = list.remove(at);
                self.tidy();
                rec.refused(false);
                self.accept(ctx, pending, None)
            }
            ClusterAnswer::Missed { replay, .. } => {
                let mut pending = list.remove(at);
                self.tidy();
                let session = pending.cluster.take().and_then(|c| c.1);
                let last = replay.as_ref().ok().map(|r| r.1);
                let kept = ctx.catchup_end(self.conn.sid, &nsp, last);
                let restore = match (session, replay) {
                    (Some(s), Ok((mut packets, _))) => {
                        packets.extend(kept);
                        let all: Vec<&Out> = packets.iter().collect();
                        if Restore::fits(&all, ctx.config()) && !ctx.has_socket(&nsp, s.sid) {
                            Some(Restore::from_cluster(s, nsp, packets))
                        } else {
                            rec.refused(true);
                            None
                        }
                    }
                    (_, Err(cap)) => {
                        rec.refused(cap);
                        None
                    }
                    (None, Ok(_)) => {
                        rec.refused(false);
                        None
                    }
                };
                self.accept(ctx, pending, restore)
            }
        }
    }

    /// Makes the socket of a CONNECT (restored from `restore` when given): middlewares
    /// (skipped for a restored socket when so configured), then the missed packets, the
    /// rooms, the CONNECT reply and the connection handler, in one turn of the shard (no
    /// broadcast is delivered in between).
    fn accept(&mut self, ctx: &ShardCtx, pending: Pending, restore: Option<Restore>) -> Flow {
        let Pending { nsp, name, auth, auth_verbatim, .. } = pending;
        let handshake = Handshake { auth, auth_verbatim, info: self.info.clone() };
        let recovery = self.server.recovery();
        let (id, pid) = match &restore {
            Some(r) => (r.session.sid, Some(r.session.pid)),
            // socket.io names an Engine.IO v3 client's sockets after its connection (see
            // `Socket::id`), and they have no private id: that client cannot recover.
            None if self.conn.eio3 => (self.conn.sid, None),
            None => (Sid::generate(ctx.id as u8), recovery.map(|_| Sid::generate(ctx.id as u8))),
        };
        let socket = Socket::new(
            id,
            nsp.clone(),
            self.server.clone(),
            self.conn.clone(),
            handshake,
            pid,
            restore.is_some(),
        );
        let mut restore = restore;
        if let Some(r) = restore.as_mut() {
            socket.set_data_box(r.session.data.take());
        }
        let skip = restore.is_some() && recovery.is_some_and(|r| r.skip_middlewares);
        if !skip {
            match nsp.run_middlewares(&socket) {
                Admission::Now(Ok(())) => {}
                Admission::Now(Err(e)) => {
                    self.refuse(name, e);
                    return Flow::Continue;
                }
                Admission::Later(chain) => {
                    // Awaited on this shard, beside its other work; the verdict comes back
                    // to this session as a message (dropped if the connection is gone).
                    let (server, conn) = (self.server.clone(), self.conn.sid);
                    let key = name.clone();
                    tokio::task::spawn_local(async move {
                        let result = chain.await;
                        let Some(ctx) = server.mesh().and_then(crate::shard::current) else {
                            return;
                        };
                        let msg = Admitted { name: key, result };
                        ctx.transport().send_cmd(&conn, Cmd::Upper(Box::new(msg)));
                    });
                    let admitting = Admitting { socket, name, restore };
                    self.rare.get_or_insert_with(Default::default).admitting.push(admitting);
                    return Flow::Continue;
                }
            }
        }
        self.admit(ctx, socket, name, restore)
    }

    /// Sends the CONNECT_ERROR of a refusal.
    fn refuse(&self, name: String, e: crate::error::ConnectError) {
        let data = if self.conn.eio3 {
            // Protocol v4 (socket.io-client 2.x): the error's data when it has some, else its
            // message, as a string.
            e.data.unwrap_or(Value::String(e.message))
        } else {
            let mut data = json!({"message": e.message});
            if let (Some(d), Value::Object(m)) = (e.data, &mut data) {
                m.insert("data".into(), d);
            }
            data
        };
        let err = sio::Packet::new(PacketType::ConnectError, name, None, Some(data));
        self.conn.send(Out::packet(&err, self.server.encoding(true)));
    }

    /// The verdict of a socket's async middlewares.
    fn on_admitted(&mut self, ctx: &ShardCtx, admitted: Admitted) -> Flow {
        let Some(list) = self.rare.as_mut().map(|r| &mut r.admitting) else {
            return Flow::Continue;
        };
        let Some(at) = list.iter().position(|a| a.name == admitted.name) else {
            return Flow::Continue;
        };
        let Admitting { socket, name, restore } = list.remove(at);
        self.tidy();
        match admitted.result {
            Ok(()) => self.admit(ctx, socket, name, restore),
            Err(e) => {
                self.refuse(name, e);
                Flow::Continue
            }
        }
    }

    /// The rest of [`Client::accept`], once the middlewares accepted the socket.
    fn admit(
        &mut self,
        ctx: &ShardCtx,
        socket: Socket,
        name: String,
        mut restore: Option<Restore>,
    ) -> Flow {
        let nsp = socket.0.nsp.clone();
        let id = socket.sid();
        let pid = socket.pid();
        let recovery = self.server.recovery();
        if let Some(r) = restore.as_mut() {
            if recovery.is_some_and(|r| r.cluster().is_none()) {
                ctx.commit_restore(r);
            }
            // Written before the CONNECT reply, as socket.io does; the client hands them to
            // the application before its `connect` event.
            for p in r.replay.iter().map(|p| &p.packet).chain(r.packets.iter()) {
                self.conn.send(p.clone());
            }
        }
        socket.0.connected.store(true, Ordering::Release);
        ctx.add_socket(socket.clone());
        self.server.socket_added(&nsp);
        ctx.recovery_on_connected(&socket);
        if let Some(r) = &restore {
            for room in r.session.rooms.iter().filter(|r| ***r != *id.as_str()) {
                ctx.join(&nsp.name, id, room.clone());
            }
            if let Some(rec) = recovery {
                rec.note_recovered();
            }
        }
        self.sockets.push(socket.clone());
        let mut reply = serde_json::Map::new();
        reply.insert("sid".into(), Value::String(id.as_str().to_owned()));
        if let Some(pid) = pid {
            reply.insert("pid".into(), Value::String(pid.as_str().to_owned()));
        }
        // Protocol v4 (socket.io-client 2.x): a bare CONNECT, the client makes the id itself.
        let data = (!self.conn.eio3).then_some(Value::Object(reply));
        let ok = sio::Packet::new(PacketType::Connect, name, None, data);
        self.conn.send(Out::packet(&ok, self.server.encoding(true)));
        if let Some(w) = self.server.watcher() {
            w.connected(&socket);
        }
        if let Some(h) = nsp.connect_handler() {
            h(socket.clone());
            socket.compact();
        }
        Flow::Continue
    }

    fn remove(&mut self, ctx: &ShardCtx, socket: &Socket, reason: DisconnectReason) {
        self.sockets.retain(|s| !Arc::ptr_eq(&s.0, &socket.0));
        socket.on_closed(ctx, reason);
    }

    /// Server-side `socket.disconnect()` of socket `sid`: sends DISCONNECT and removes it.
    /// With `close`, does so for every socket of the connection (the session then closes
    /// it). Returns false, doing nothing, when `sid` is no longer connected here (a stale
    /// handle), as socket.io's `disconnect()` on a disconnected socket does nothing.
    pub(crate) fn disconnect(&mut self, ctx: &ShardCtx, sid: Sid, nsp: &str, close: bool) -> bool {
        let is = |s: &Socket| s.sid() == sid && s.ns() == nsp;
        if !self.sockets.iter().any(is) {
            return false;
        }
        let targets: SmallVec<[Socket; 2]> = if close {
            self.sockets.clone()
        } else {
            self.sockets.iter().filter(|s| is(s)).cloned().collect()
        };
        for s in targets {
            let p = sio::Packet::new(PacketType::Disconnect, s.ns(), None, None);
            self.conn.send(Out::packet(&p, self.server.encoding(true)));
            self.remove(ctx, &s, DisconnectReason::ServerNamespaceDisconnect);
        }
        true
    }

    /// The connection is gone: every socket leaves with `reason`.
    pub(crate) fn close(&mut self, ctx: &ShardCtx, reason: DisconnectReason) {
        // A restore still being answered is dropped with the connection.
        if self.rare.take().is_some_and(|r| r.restoring.iter().any(|p| p.cluster.is_some())) {
            ctx.catchup_drop(self.conn.sid);
        }
        for s in std::mem::take(&mut self.sockets) {
            s.on_closed(ctx, reason);
        }
    }
}

/// An Engine.IO v3 client's namespace, as socket.io reads it: a URL path whose query (the
/// 2.x client's namespace `query` option, `40/admin?token=x,`) is a CONNECT's auth, as an
/// object of strings; the query is dropped from every other packet's namespace. The 2.x
/// client sends no CONNECT payload.
fn v3_namespace(packet: &mut sio::Packet) {
    let query = packet.nsp.split_once('?').map(|(path, q)| (path.len(), q.to_owned()));
    if let Some((path_len, _)) = &query {
        packet.nsp.truncate(*path_len);
    }
    if packet.kind == PacketType::Connect {
        packet.data = query.map(|(_, q)| {
            let mut auth = serde_json::Map::new();
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                auth.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            Value::Object(auth)
        });
        packet.verbatim = Default::default();
    }
}

/// The Socket.IO side of a session, as the transport layer sees it.
impl SessionUpper for Client {
    fn on_text(&mut self, ctx: &ShardCtx, text: &[u8]) -> Flow {
        Client::on_text(self, ctx, text)
    }

    fn on_binary(&mut self, ctx: &ShardCtx, bin: Bytes) -> Flow {
        Client::on_binary(self, ctx, bin)
    }

    fn has_sockets(&self) -> bool {
        Client::has_sockets(self)
    }

    fn disconnect(&mut self, ctx: &ShardCtx, sid: Sid, nsp: &str, close: bool) -> bool {
        Client::disconnect(self, ctx, sid, nsp, close)
    }

    fn opened(&mut self, ctx: &ShardCtx) -> Flow {
        if !self.conn.eio3 {
            return Flow::Continue;
        }
        // socket.io connects an Engine.IO v3 client to `/` as soon as it opens (running
        // `/`'s middlewares): socket.io-client 2.x never asks for it.
        let packet = sio::Packet::new(PacketType::Connect, "/".to_owned(), None, None);
        self.connect(ctx, packet)
    }

    fn close(&mut self, ctx: &ShardCtx, reason: DisconnectReason) {
        Client::close(self, ctx, reason)
    }

    fn upgraded(&mut self, _ctx: &ShardCtx) {
        if let Some(w) = self.server.watcher() {
            for s in &self.sockets {
                w.upgraded(s);
            }
        }
    }

    fn on_upper(&mut self, ctx: &ShardCtx, msg: Box<dyn Any + Send>) -> Flow {
        let msg = match msg.downcast::<Answer>() {
            Ok(answer) => return self.on_answer(ctx, *answer),
            Err(other) => other,
        };
        let msg = match msg.downcast::<Admitted>() {
            Ok(admitted) => return self.on_admitted(ctx, *admitted),
            Err(other) => other,
        };
        match msg.downcast::<ClusterAnswer>() {
            Ok(answer) => self.on_cluster_answer(ctx, *answer),
            Err(_) => Flow::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// What every connected client carries stays small (see the transport's budgets too).
    #[test]
    fn per_connection_state_stays_small() {
        for (what, size, budget) in [
            ("Client", size_of::<super::Client>(), 64),
            // 512 + 24: connection state recovery's pid and `recovered` flag, inline (a box
            // would be one more allocation per socket whenever recovery is on).
            ("SocketInner", size_of::<crate::ns::socket::SocketInner>(), 536),
        ] {
            assert!(size <= budget, "{what} is {size} bytes, budget {budget}");
        }
    }
}

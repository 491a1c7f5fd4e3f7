//! Drivers over the real internals for the criterion benches in benches/ (not a public API:
//! hidden from the docs and free to change).
//!
//! Layer: the top (it may drive any layer below, as the benches need).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::broadcast::{deliver_local, BroadcastMsg, Selection};
use crate::config::Config;
use crate::mesh::Mesh;
use crate::ns::args::Args;
use crate::ns::recovery::{Audience, Replayable};
use crate::ns::socket::{Handshake, Socket};
use crate::ns::Room;
use crate::proto::sid::Sid;
use crate::server::Server;
use crate::shard::ShardCtx;
use crate::shard::{ShardMesh, ShardMsg};
use crate::transport::link::Link;
use crate::transport::local::ConnHandle;
use crate::transport::outbox::{Encoding, Out};
use crate::transport::request::HandshakeInfo;
use crate::transport::ws::WsWriter;

/// One shard's state holding `n` connected sockets of `/`, each with a real link (a
/// long-polling one: packets are queued, not written).
pub struct Shard {
    ctx: ShardCtx,
    sockets: Vec<Socket>,
    slots: Vec<usize>,
}

impl Shard {
    /// A shard with `n` sockets, all in room `room`.
    pub fn with_sockets(n: usize, room: &str) -> Shard {
        let server = Server::new(Config::builder().shards(1).build().expect("config"));
        let mesh = Arc::new(Mesh::new(1));
        let ctx = ShardCtx::new(0, mesh, crate::server::shard_locals(&server.0));
        let nsp = server.0.namespace_for("/", &serde_json::Value::Null).expect("root namespace");
        let mut sockets = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, slot) = add_member(&ctx, &server, &nsp, room, None);
            sockets.push(s);
            slots.push(slot);
        }
        Shard { ctx, sockets, slots }
    }

    /// Encodes one event once and queues it on every member of `room`, then empties the
    /// links as a polling GET would. Returns the number of packets delivered.
    pub fn broadcast(&mut self, room: &str, event: &str, args: &Args) -> usize {
        deliver_local(&self.ctx, &plain_broadcast(room, event, args));
        self.slots
            .iter()
            .map(|&slot| self.ctx.transport().with_link(slot, |l| l.take_polled(16).len()))
            .sum()
    }

    /// Socket `i` joins `room` then leaves it.
    pub fn join_leave(&self, i: usize, room: &Room) {
        let s = &self.sockets[i % self.sockets.len()];
        self.ctx.join("/", s.sid(), room.clone());
        self.ctx.leave("/", s.sid(), room);
    }
}

/// One shard's state holding `n` sockets of `/` in one room, each on a real WebSocket link
/// over a loopback TCP connection: a broadcast is queued on every link and written by a
/// flush pass, as in the server (no coalescing window: every pass writes). The peers' ends
/// are drained after each broadcast. Used by the criterion bench and by the instruction
/// count (`scripts/instructions`).
pub struct WsShard {
    rt: tokio::runtime::Runtime,
    ctx: ShardCtx,
    server: Server,
    peers: Vec<std::net::TcpStream>,
    buf: Vec<u8>,
}

impl WsShard {
    /// A shard with `n` WebSocket-linked sockets, all in room `room`.
    pub fn with_sockets(n: usize, room: &str) -> WsShard {
        WsShard::with(n, room, false)
    }

    /// The same, with connection state recovery on when `recovery`: each broadcast is
    /// numbered and carries its offset, and the shard logs it.
    pub fn with(n: usize, room: &str, recovery: bool) -> WsShard {
        use std::time::Duration;
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut config = Config::builder()
            .shards(1)
            .write_coalesce(Duration::ZERO)
            .write_coalesce_max(Duration::ZERO);
        if recovery {
            // A small cap, so every broadcast past it also drops one: the steady state.
            config = config
                .connection_state_recovery(Duration::from_secs(120), true)
                .recovery_max_packets(16);
        }
        let config = config.build().expect("config");
        let server = Server::new(config);
        let ctx = ShardCtx::new(0, Arc::new(Mesh::new(1)), crate::server::shard_locals(&server.0));
        let nsp = server.0.namespace_for("/", &serde_json::Value::Null).expect("root namespace");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _guard = rt.enter();
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let peer = std::net::TcpStream::connect(addr).expect("connect");
            peer.set_nonblocking(true).expect("nonblocking");
            let (ours, _) = listener.accept().expect("accept");
            ours.set_nonblocking(true).expect("nonblocking");
            let _ = ours.set_nodelay(true);
            let (_, write) = tokio::net::TcpStream::from_std(ours).expect("register").into_split();
            add_member(&ctx, &server, &nsp, room, Some(WsWriter::new(write)));
            peers.push(peer);
        }
        drop(_guard);
        // One turn of the I/O driver: the sockets learn they are writable.
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
        WsShard { rt, ctx, server, peers, buf: vec![0; 64 * 1024] }
    }

    /// Encodes one event once, queues it on every member of `room`, runs a flush pass, and
    /// drains the peers. Returns the bytes the peers received.
    pub fn broadcast(&mut self, room: &str, event: &str, args: &Args) -> usize {
        use std::io::Read;
        let mut msg = plain_broadcast(room, event, args);
        if let Some(rec) = self.server.0.recovery() {
            // As `broadcast::encode` does on a shard: numbered, then encoded once.
            let id = self.ctx.next_broadcast_offset();
            let text = rec.tag.format(id);
            let enc = Encoding::default();
            let (values, verbatim, binary) = (args.values(), args.verbatim(), args.binary());
            msg.packet = Out::event_with_offset(
                "/",
                event,
                values,
                verbatim,
                binary.to_vec(),
                None,
                enc,
                Some(&text),
            );
            msg.replay = Some(Arc::new(Replayable {
                id,
                nsp: msg.nsp.clone(),
                to: Audience::Rooms { rooms: msg.sel.rooms.clone(), except: Default::default() },
                packet: msg.packet.clone(),
                at: std::time::Instant::now(),
            }));
        }
        let _guard = self.rt.enter();
        deliver_local(&self.ctx, &msg);
        self.ctx.transport().flush_now();
        let mut got = 0;
        for p in &mut self.peers {
            while let Ok(n) = p.read(&mut self.buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        got
    }
}

/// A connected socket of `/` in `room`, on a new link (a WebSocket one with `ws`, else a
/// long-polling one). Returns it and its link's slot.
fn add_member(
    ctx: &ShardCtx,
    server: &Server,
    nsp: &Arc<crate::ns::NamespaceInner>,
    room: &str,
    ws: Option<WsWriter>,
) -> (Socket, usize) {
    let sid = Sid::generate(0);
    let slot = ctx.transport().add_link(Link::new(sid, ws.map(|w| (w, false)), Default::default()));
    let conn = Arc::new(ConnHandle {
        eio3: false,
        sid,
        shard: 0,
        slot,
        mesh: ctx.mesh.clone(),
        websocket: true.into(),
        upgraded: false.into(),
    });
    let handshake = Handshake {
        auth: serde_json::json!({}),
        auth_verbatim: None,
        info: Arc::new(HandshakeInfo {
            headers: Default::default(),
            query: Default::default(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            issued: SystemTime::now(),
            secure: false,
        }),
    };
    let s =
        Socket::new(Sid::generate(0), nsp.clone(), server.0.clone(), conn, handshake, None, false);
    s.0.connected.store(true, std::sync::atomic::Ordering::Release);
    ctx.add_socket(s.clone());
    ctx.join("/", s.sid(), Room::from(room));
    (s, slot)
}

fn plain_broadcast(room: &str, event: &str, args: &Args) -> BroadcastMsg {
    let enc = Encoding::default();
    let packet =
        Out::event("/", event, args.values(), args.verbatim(), args.binary().to_vec(), None, enc);
    let mut sel = Selection::default();
    sel.rooms.push(Room::from(room));
    BroadcastMsg {
        nsp: Arc::from("/"),
        sel,
        packet,
        volatile: false,
        compress: true,
        event: Arc::from(event),
        args: Arc::new(args.clone()),
        ack: None,
        ack_timeout: None,
        replay: None,
        entry: None,
    }
}

/// A two-shard mesh, to measure one lane.
pub struct Lane(Arc<ShardMesh>);

impl Lane {
    /// A fresh mesh of two shards.
    pub fn new() -> Lane {
        Lane(Arc::new(Mesh::new(2)))
    }

    /// Pushes `n` messages from shard 0 to shard 1 on another thread while this thread
    /// drains them as shard 1; returns how many were received.
    pub fn transfer(&self, n: usize) -> usize {
        let mesh = self.0.clone();
        let producer = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < n {
                if mesh.push(0, 1, ShardMsg::Run(Box::new(|_| {}))).is_ok() {
                    sent += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            got += self.0.drain(1, 256, |_| {});
        }
        let _ = producer.join();
        got
    }
}

impl Default for Lane {
    fn default() -> Self {
        Lane::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::time::Instant;

    /// What one peer has received so far.
    fn drain(peer: &mut std::net::TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = peer.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A flush pass over thousands of links is written in slices, and a broadcast can land
    /// between two slices: links the pass already wrote get it in the next pass, links it
    /// had not reached get both frames in one write. Every peer ends up with both frames,
    /// whole, once each, in order.
    #[test]
    fn a_pass_in_slices_keeps_every_link_whole_and_in_order() {
        let mut shard = WsShard::with_sockets(3000, "r");
        let _guard = shard.rt.enter();
        deliver_local(&shard.ctx, &plain_broadcast("r", "first", &Args::new()));
        assert!(
            shard.ctx.transport().flush_pass(Instant::now()),
            "3,000 writes are more than one slice: the pass stops part-way"
        );
        let reached = shard.peers.iter_mut().map(drain).filter(|got| !got.is_empty()).count();
        assert_eq!(reached, 256, "one slice writes 256 links");
        deliver_local(&shard.ctx, &plain_broadcast("r", "second", &Args::new()));
        shard.ctx.transport().flush_now();
        // The peers the first slice wrote were drained above: they hold the second frame
        // only; the others hold both.
        let first: &[u8] = b"\x81\x0b42[\"first\"]";
        let second: &[u8] = b"\x81\x0c42[\"second\"]";
        let both = [first, second].concat();
        let (mut whole, mut split) = (0, 0);
        for peer in &mut shard.peers {
            let got = drain(peer);
            if got == both {
                whole += 1;
            } else {
                assert_eq!(got, second, "a peer written in the first slice gets the second frame");
                split += 1;
            }
        }
        assert_eq!(split, reached);
        assert_eq!(whole, 3000 - reached);
    }
}

//! # shardcast
//!
//! A Socket.IO v4-compatible real-time server (Engine.IO v4, Socket.IO protocol v5) built as
//! a sharded broadcast engine. The official clients connect to it unchanged.
//!
//! ## The data path, in the order of the modules
//!
//! 1. [`config`]: every option, named as socket.io names it, with its default.
//! 2. `server`: binds the listener; an acceptor thread deals connections round-robin to
//!    the shards (backing off, not spinning, when out of file descriptors).
//! 3. `shard`: N threads, each with a current-thread runtime, running tasks and holding
//!    each layer's per-shard state; `mesh`: the lanes between them.
//! 4. `transport`: the HTTP/1.1 front (polling, WebSocket upgrade, CORS), the Engine.IO
//!    session task of each connection, and its bounded write queue (its link), written by
//!    the shard's flush pass in coalesced batches.
//! 5. [`proto`]: the sans-IO Engine.IO and Socket.IO codecs, JSON as JavaScript reads and
//!    writes it, and session ids.
//! 6. [`ns`]: namespaces, middlewares, sockets, event handlers, acknowledgements, and each
//!    shard's sockets and rooms maps.
//! 7. `operator` → `adapter` → [`broadcast`]: `to(room).emit(...)` builds a selection, goes
//!    through the server's adapter (where a cluster would leave this process), and is
//!    encoded once into shared bytes, one message per shard, fanned out to each matching
//!    socket's link.
//! 8. [`app`]: the demo application of `shardcast serve`; [`admin`]: the admin UI's server
//!    side (`Server::instrument`).
//!
//! Connection state recovery (off by default, [`Config`]'s `connection_state_recovery`)
//! rides on this path: a plain event is numbered once before its one encoding, each shard
//! logs the shared packet as it delivers it, and a client that comes back after a drop gets
//! its socket and what it missed (`ns::recovery`, docs/recovery.md). Across servers, on the
//! Redis Streams adapter, the stream numbers the packets and Redis keeps the sessions
//! (`ns::cluster_recovery`).
//!
//! Beside the server, `emitter` ([`Emitter`]) publishes to a cluster from a process that is
//! not a server, as `@socket.io/redis-emitter` does (`shardcast emit` on the command line).
//!
//! The modules form layers, each using only those below it: docs/architecture.md,
//! "Layers", and `tests/layers.rs`.
//!
//! ## Example
//!
//! ```no_run
//! use shardcast::{Config, Server};
//!
//! let io = Server::new(Config::builder().shards(2).build().expect("valid config"));
//! io.on_connection(|socket| {
//!     socket.on("join", |socket, args, ack| {
//!         if let Some(room) = args.str(0) {
//!             socket.join(room);
//!         }
//!         if let Some(ack) = ack {
//!             let _ = ack.send((true,));
//!         }
//!     });
//!     socket.on("publish", |socket, args, _ack| {
//!         let room = args.str(0).unwrap_or_default().to_owned();
//!         let _ = socket.to(room).emit("news", args.skip(1));
//!     });
//! });
//! let running = io.listen("127.0.0.1:3000".parse().unwrap()).expect("bind");
//! running.wait();
//! ```
#![warn(missing_docs)]

#[doc(hidden)]
#[path = "bench_support.rs"]
pub mod __bench;
#[doc(hidden)]
#[path = "fuzz_support.rs"]
pub mod __fuzz;
mod adapter;
pub mod admin;
pub mod app;
pub mod broadcast;
pub mod config;
mod emitter;
pub mod error;
mod mesh;
mod metrics;
pub mod ns;
mod operator;
pub mod proto;
mod server;
mod shard;
mod transport;

/// The cluster adapters' wire codecs (classic broadcasts and requests, the
/// `ClusterAdapter` messages of the sharded and streams adapters), for the fuzz targets
/// and the interop tests; not a stable API.
#[doc(hidden)]
pub mod __wire {
    pub use crate::adapter::{cluster_wire, request, streams_wire, wire};
    pub use crate::broadcast::Selection;
}
pub use adapter::{RequestError, ServerSideAckError};
pub use admin::{AdminError, AdminMode, AdminUi, BasicAuth};
pub use config::{
    Config, ConfigBuilder, ConfigError, ConnectionStateRecovery, Cookie, Cors, CorsOrigins, Parser,
    SameSite, SubscriptionMode, TlsFiles,
};
pub use emitter::{Emitter, EmitterError, EmitterOperator};
pub use error::{AckError, ConnectError, DisconnectReason, EmitError};
/// The header map the engine's hooks edit (hyper's, i.e. the `http` crate's).
pub use hyper::HeaderMap;
pub use ns::args::{Args, ArgsError, IntoArgs};
pub use ns::recovery::RecoveryStats;
pub use ns::socket::{AckSender, Conn, Handshake, Socket, SocketEmit};
pub use ns::{Namespace, Room, RoomChange, RoomEvent, ServerSideAck};
pub use operator::{
    AckResponses, BroadcastAckError, BroadcastOperator, FetchedSocket, IntoRooms, RemoteSocket,
};
pub use server::{Engine, EngineService, RemoteAddr, RunningServer, Server};
pub use transport::hooks::ConnectionError;
pub use transport::request::{HandshakeInfo, Headers, Pairs};

//! What `fetch_sockets` returns: this server's sockets as full handles, and the sockets of
//! other servers of the cluster as socket.io's `RemoteSocket` describes them (id,
//! handshake, rooms, data), whose operations are broadcasts to the socket's own room
//! through the adapter, as socket.io does them.

use std::sync::Arc;

use serde_json::Value;

use super::{BroadcastOperator, IntoRooms};
use crate::adapter::request::WireSocket;
use crate::error::EmitError;
use crate::ns::args::IntoArgs;
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::{NamespaceInner, Room};

/// A socket of another server of the cluster, as its server described it when fetched.
#[derive(Clone)]
pub struct RemoteSocket {
    server: Arc<ServerShared>,
    nsp: Arc<NamespaceInner>,
    wire: WireSocket,
}

impl std::fmt::Debug for RemoteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSocket")
            .field("id", &self.wire.id)
            .field("nsp", &self.nsp.name)
            .finish()
    }
}

impl RemoteSocket {
    pub(crate) fn new(
        server: Arc<ServerShared>,
        nsp: Arc<NamespaceInner>,
        wire: WireSocket,
    ) -> Self {
        RemoteSocket { server, nsp, wire }
    }

    /// The socket id.
    pub fn id(&self) -> &str {
        &self.wire.id
    }

    /// Its namespace.
    pub fn ns(&self) -> &str {
        &self.nsp.name
    }

    /// Its handshake as socket.io shapes it (`headers`, `time`, `address`, `xdomain`,
    /// `secure`, `issued`, `url`, `query`, `auth`).
    pub fn handshake(&self) -> &Value {
        &self.wire.handshake
    }

    /// Its rooms when fetched (its own id included).
    pub fn rooms(&self) -> &[Room] {
        &self.wire.rooms
    }

    /// Its `data` when fetched.
    pub fn data(&self) -> &Value {
        &self.wire.data
    }

    fn op(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.server.clone(), self.nsp.clone()).to(self.wire.id.as_str())
    }

    /// Emits to this socket (through the cluster).
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.op().emit(event, args)
    }

    /// Makes the socket join `rooms`.
    pub fn join(&self, rooms: impl IntoRooms) {
        self.op().sockets_join(rooms)
    }

    /// Makes the socket leave `rooms`.
    pub fn leave(&self, rooms: impl IntoRooms) {
        self.op().sockets_leave(rooms)
    }

    /// Disconnects the socket (with `close`, its whole connection).
    pub fn disconnect(&self, close: bool) {
        self.op().disconnect_sockets(close)
    }
}

/// One socket `fetch_sockets` found: here, or on another server.
#[derive(Debug, Clone)]
pub enum FetchedSocket {
    /// A socket of this server.
    Local(Socket),
    /// A socket of another server of the cluster.
    Remote(RemoteSocket),
}

impl FetchedSocket {
    /// The socket id.
    pub fn id(&self) -> &str {
        match self {
            FetchedSocket::Local(s) => s.id(),
            FetchedSocket::Remote(r) => r.id(),
        }
    }

    /// Its namespace.
    pub fn ns(&self) -> &str {
        match self {
            FetchedSocket::Local(s) => s.ns(),
            FetchedSocket::Remote(r) => r.ns(),
        }
    }

    /// Its `data` (for a remote socket, as it was when fetched).
    pub fn data(&self) -> Value {
        match self {
            FetchedSocket::Local(s) => s.data(),
            FetchedSocket::Remote(r) => r.data().clone(),
        }
    }

    /// Its rooms, its own id included (for a remote socket, as they were when fetched).
    pub fn rooms(&self) -> Vec<Room> {
        match self {
            FetchedSocket::Local(s) => s.rooms(),
            FetchedSocket::Remote(r) => r.rooms().to_vec(),
        }
    }

    /// Its handshake as socket.io shapes it (see [`crate::Handshake::to_json`]).
    pub fn handshake(&self) -> Value {
        match self {
            FetchedSocket::Local(s) => s.handshake().to_json(),
            FetchedSocket::Remote(r) => r.handshake().clone(),
        }
    }

    /// Still connected: for a socket of this server, now; a remote one was when fetched.
    pub fn connected(&self) -> bool {
        match self {
            FetchedSocket::Local(s) => s.connected(),
            FetchedSocket::Remote(_) => true,
        }
    }

    /// The full handle, for a socket of this server.
    pub fn as_local(&self) -> Option<&Socket> {
        match self {
            FetchedSocket::Local(s) => Some(s),
            FetchedSocket::Remote(_) => None,
        }
    }

    /// Emits to this socket.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        match self {
            FetchedSocket::Local(s) => s.emit(event, args),
            FetchedSocket::Remote(r) => r.emit(event, args),
        }
    }

    /// Makes the socket join `rooms`.
    pub fn join(&self, rooms: impl IntoRooms) {
        match self {
            FetchedSocket::Local(s) => {
                let mut list = smallvec::SmallVec::new();
                rooms.into_rooms(&mut list);
                list.into_iter().for_each(|r| s.join(r));
            }
            FetchedSocket::Remote(r) => r.join(rooms),
        }
    }

    /// Makes the socket leave `rooms`.
    pub fn leave(&self, rooms: impl IntoRooms) {
        match self {
            FetchedSocket::Local(s) => {
                let mut list = smallvec::SmallVec::new();
                rooms.into_rooms(&mut list);
                list.into_iter().for_each(|r| s.leave(r));
            }
            FetchedSocket::Remote(r) => r.leave(rooms),
        }
    }

    /// Disconnects the socket (with `close`, its whole connection).
    pub fn disconnect(&self, close: bool) {
        match self {
            FetchedSocket::Local(s) => s.disconnect(close),
            FetchedSocket::Remote(r) => r.disconnect(close),
        }
    }
}

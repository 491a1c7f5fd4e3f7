//! The broadcast operators on sockets and namespaces: `socket.to(room)`, `socket.broadcast()`,
//! `nsp.to(room).emit(..)` and the server-side operations of a namespace. They belong to this
//! layer (the operators live here), though they are methods of the namespace layer's types.

use std::time::Duration;

use crate::broadcast::{BroadcastOperator, IntoRooms};
use crate::error::EmitError;
use crate::ns::args::IntoArgs;
use crate::ns::socket::Socket;
use crate::ns::Namespace;

impl Namespace {
    fn op(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.server.clone(), self.inner.clone())
    }

    /// A broadcast to the sockets of this namespace in `rooms`.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().to(rooms)
    }

    /// Same as [`Namespace::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().to(rooms)
    }

    /// A broadcast to every socket of this namespace but those in `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.op().except(rooms)
    }

    /// A broadcast to the sockets of this server process only.
    pub fn local(&self) -> BroadcastOperator {
        self.op().local()
    }

    /// A broadcast that may be dropped for recipients not ready to receive it.
    pub fn volatile(&self) -> BroadcastOperator {
        self.op().volatile()
    }

    /// A broadcast with per-message compression allowed or not.
    pub fn compress(&self, compress: bool) -> BroadcastOperator {
        self.op().compress(compress)
    }

    /// A broadcast whose acknowledgements are awaited at most `timeout`.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.op().timeout(timeout)
    }

    /// Emits to every socket of this namespace, on every shard. On a dynamic pattern's
    /// namespace (as every broadcast and operation on it), reaches every namespace it
    /// created.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.op().emit(event, args)
    }

    /// Every socket of this namespace, from every shard.
    pub async fn fetch_sockets(&self) -> Vec<Socket> {
        self.op().fetch_sockets().await
    }

    /// Makes every socket of this namespace join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoRooms) {
        self.op().sockets_join(rooms)
    }

    /// Makes every socket of this namespace leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoRooms) {
        self.op().sockets_leave(rooms)
    }

    /// Disconnects every socket of this namespace (with `close`, their connections).
    pub fn disconnect_sockets(&self, close: bool) {
        self.op().disconnect_sockets(close)
    }
}

impl Socket {
    /// A broadcast from this socket to everyone else in its namespace
    /// (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.0.server.clone(), self.0.nsp.clone()).except(self.room())
    }

    /// A broadcast from this socket to `rooms`: every member but this socket.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// Same as [`Socket::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// A broadcast from this socket to everyone else but the members of `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().except(rooms)
    }
}

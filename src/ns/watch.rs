//! What a layer above watches of every namespace's sockets (the admin UI's development
//! mode): connects, disconnects, transport upgrades and the events each way. Set once per
//! server; while it is off (no admin anywhere) each hook costs one relaxed load.

use crate::error::DisconnectReason;
use crate::ns::args::Args;
use crate::ns::socket::Socket;

/// Told of each socket's life and traffic, on the socket's shard (or, for an emit from
/// another thread, on that thread). Implementations must not block: they queue.
pub(crate) trait Watch: Send + Sync {
    /// The socket was accepted (after the middlewares, before the connection handler);
    /// told even while the watcher is off, as is `upgraded`.
    fn connected(&self, socket: &Socket);
    /// The socket left its namespace.
    fn disconnected(&self, socket: &Socket, reason: DisconnectReason);
    /// The socket's connection went from polling to WebSocket.
    fn upgraded(&self, socket: &Socket);
    /// The client sent `event`.
    fn event_in(&self, socket: &Socket, event: &str, args: &Args);
    /// `event` was queued for the client (its own emit or a broadcast it got).
    fn event_out(&self, socket: &Socket, event: &str, args: &Args);
}

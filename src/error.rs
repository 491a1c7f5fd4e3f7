//! Error and disconnect-reason types shared by the layers, grouped by who is at fault.
//!
//! Layer: the bottom (uses no other module).

use std::fmt;

/// Why a socket left its namespace, named exactly as socket.io names it (the string that
/// socket.io passes to the server-side `disconnect` listener), plus `slow consumer`, which is
/// shardcast's own (see docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The peer closed the connection (or the TCP connection dropped).
    TransportClose,
    /// The connection failed: an I/O error, a WebSocket protocol error, an oversized message,
    /// an overlapping polling request.
    TransportError,
    /// No PONG arrived within `ping_timeout`.
    PingTimeout,
    /// The peer sent an Engine.IO packet that does not decode.
    ParseError,
    /// The peer sent a Socket.IO packet that does not decode (socket.io closes the
    /// connection from its decoder's error handler, hence this name).
    ForcedClose,
    /// The peer sent a packet that is valid but not allowed in the session's state (e.g. an
    /// EVENT for a namespace it has not joined).
    ForcedServerClose,
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server removed the socket from the namespace (`socket.disconnect()`).
    ServerNamespaceDisconnect,
    /// The server is shutting down.
    ServerShuttingDown,
    /// The client did not join any namespace within `connect_timeout`.
    ConnectTimeout,
    /// The connection's outbox was full: it could not keep up with what it was sent.
    SlowConsumer,
}

impl DisconnectReason {
    /// The reason as socket.io spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ConnectTimeout => "connect timeout",
            DisconnectReason::SlowConsumer => "slow consumer",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an emit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The event name is reserved by socket.io (`connect`, `disconnect`, ...).
    #[error("\"{0}\" is a reserved event name")]
    ReservedEvent(String),
    /// The socket is no longer connected.
    #[error("socket is disconnected")]
    Disconnected,
}

/// Why an emit that expected an acknowledgement did not get one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The emit itself was refused.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// No acknowledgement arrived in time.
    #[error("operation has timed out")]
    Timeout,
    /// The socket disconnected before acknowledging.
    #[error("socket disconnected before acknowledging")]
    Disconnected,
}

/// A namespace middleware's refusal, sent to the client as CONNECT_ERROR
/// `{"message": message, "data": data}` (the client's `connect_error` event gets an `Error`
/// whose `message` and `data` are these).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// Shown to the client as `err.message`.
    pub message: String,
    /// Shown to the client as `err.data`, when set.
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError { message: message.into(), data: None }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_spelled_as_socket_io_spells_them() {
        assert_eq!(DisconnectReason::TransportClose.to_string(), "transport close");
        assert_eq!(DisconnectReason::PingTimeout.to_string(), "ping timeout");
        assert_eq!(
            DisconnectReason::ServerNamespaceDisconnect.to_string(),
            "server namespace disconnect"
        );
        assert_eq!(
            DisconnectReason::ClientNamespaceDisconnect.to_string(),
            "client namespace disconnect"
        );
    }
}

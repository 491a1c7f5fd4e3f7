//! Transports: the HTTP/1.1 front (long-polling, WebSocket upgrades, CORS), the Engine.IO
//! session task, the per-connection write side (links and the shard's flush pass) and the
//! encoded packets they carry.
//!
//! Layer: above the shard runtime (it runs on shards and keeps its per-shard state in their
//! context), below the namespaces, which it reaches only through the [`session::SessionUpper`]
//! each new session gets from the factory it was given.

pub(crate) mod compress;
pub(crate) mod counters;
pub(crate) mod files;
pub(crate) mod hooks;
pub(crate) mod http;
pub(crate) mod jsonp;
pub(crate) mod link;
pub(crate) mod local;
pub(crate) mod outbox;
pub(crate) mod request;
pub(crate) mod session;
pub(crate) mod tls;
pub(crate) mod ws;

/// The errors the Engine.IO HTTP front answers with, with the codes and messages of the
/// reference server (`{"code":N,"message":"..."}`, HTTP 400, or 403 for `Forbidden`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EioError {
    TransportUnknown,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
}

impl EioError {
    pub(crate) fn code(self) -> u8 {
        match self {
            EioError::TransportUnknown => 0,
            EioError::UnknownSid => 1,
            EioError::BadHandshakeMethod => 2,
            EioError::BadRequest => 3,
            EioError::Forbidden => 4,
            EioError::UnsupportedProtocolVersion => 5,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            EioError::TransportUnknown => "Transport unknown",
            EioError::UnknownSid => "Session ID unknown",
            EioError::BadHandshakeMethod => "Bad handshake method",
            EioError::BadRequest => "Bad request",
            EioError::Forbidden => "Forbidden",
            EioError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

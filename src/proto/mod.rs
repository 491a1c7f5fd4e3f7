//! Sans-IO protocol core: Engine.IO v4 framing, Socket.IO v5 packets and session ids.

pub mod eio;
pub mod sid;
pub mod sio;

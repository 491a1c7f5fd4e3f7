//! Sans-IO protocol core: Engine.IO v4 framing, Socket.IO v5 packets, JSON as JavaScript
//! reads and writes it, session ids, and the offsets of connection state recovery.
//!
//! Layer: the bottom (no I/O, no other module).

pub mod eio;
pub mod json;
pub mod msgpack;
pub mod offset;
pub mod sid;
pub mod sio;

//! Sans-IO protocol core: Engine.IO v4 framing, Socket.IO v5 packets, JSON as JavaScript
//! reads and writes it, and session ids.
//!
//! Layer: the bottom (no I/O, no other module).

pub mod eio;
pub mod json;
pub mod msgpack;
pub mod sid;
pub mod sio;

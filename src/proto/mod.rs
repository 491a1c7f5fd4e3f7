//! Sans-IO protocol core: Engine.IO v4 framing (and v3's, for `allow_eio3`), Socket.IO v5 packets (the default parser's
//! text and the MessagePack parser's maps), JSON as JavaScript
//! reads and writes it, session ids, and the offsets of connection state recovery.
//!
//! Layer: the bottom (no I/O, no other module).

pub mod eio;
pub mod eio3;
pub mod json;
pub mod msgpack;
pub mod offset;
pub mod sid;
pub mod sio;
pub mod sio_msgpack;

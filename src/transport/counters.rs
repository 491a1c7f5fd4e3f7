//! What the transport does on this thread, counted for the metrics and the admin UI: WebSocket
//! write system calls and the bytes they wrote, the bytes of the messages clients sent, the
//! sessions opened and closed (by reason), and the Engine.IO HTTP requests refused, by reason. Each
//! shard is a thread of its own, so these are per-shard counts, read by the metrics scrape on
//! its shard ([`read`]). Thread-locals rather than the shard context because the writer and
//! the HTTP front do not hold the context: one thread-local access per write system call or
//! refused request, never per delivery.

use std::cell::{Cell, RefCell};

use ahash::AHashMap;

thread_local! {
    // Const-initialised cells with no destructor: an access is a plain thread-local load,
    // with no lazy-initialisation check (the writer bumps these once per system call).
    static WRITES: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    // Once per message the client sent (its payload's bytes), and per session opened.
    static READ_BYTES: Cell<u64> = const { Cell::new(0) };
    static OPENED: Cell<u64> = const { Cell::new(0) };
    // Once per TCP connection closed on this thread (the shard trims memory after some).
    static CONNS_CLOSED: Cell<u64> = const { Cell::new(0) };
    // Only when a session ends.
    static CLOSED: RefCell<AHashMap<&'static str, u64>> = RefCell::new(AHashMap::new());
    // Only on a refused request.
    static REFUSED: RefCell<AHashMap<&'static str, u64>> = RefCell::new(AHashMap::new());
}

/// One write system call took `bytes`.
pub(crate) fn wrote(bytes: usize) {
    WRITES.with(|c| c.set(c.get() + 1));
    BYTES.with(|c| c.set(c.get() + bytes as u64));
}

/// The client sent a message of `bytes` (an Engine.IO message packet's payload).
pub(crate) fn read(bytes: usize) {
    READ_BYTES.with(|c| c.set(c.get() + bytes as u64));
}

/// A TCP connection (of any kind: HTTP, WebSocket, refused garbage) closed on this thread.
pub(crate) fn connection_closed() {
    CONNS_CLOSED.with(|c| c.set(c.get() + 1));
}

/// The TCP connections closed on this thread so far.
pub(crate) fn connections_closed() -> u64 {
    CONNS_CLOSED.with(Cell::get)
}

/// An Engine.IO session opened.
pub(crate) fn opened() {
    OPENED.with(|c| c.set(c.get() + 1));
}

/// An Engine.IO session ended with `reason`.
pub(crate) fn closed(reason: &'static str) {
    CLOSED.with(|c| *c.borrow_mut().entry(reason).or_insert(0) += 1);
}

/// An Engine.IO HTTP request was refused with `reason` (the reference's error message).
pub(crate) fn refused(reason: &'static str) {
    REFUSED.with(|c| *c.borrow_mut().entry(reason).or_insert(0) += 1);
}

/// This thread's counts so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reading {
    pub writes: u64,
    pub bytes: u64,
    pub refused: Vec<(&'static str, u64)>,
    pub read_bytes: u64,
    pub opened: u64,
    pub closed: Vec<(&'static str, u64)>,
}

/// This thread's counts (call it on the shard whose counts are wanted).
pub(crate) fn reading() -> Reading {
    Reading {
        writes: WRITES.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        refused: REFUSED.with(|c| c.borrow().iter().map(|(r, n)| (*r, *n)).collect()),
        read_bytes: READ_BYTES.with(Cell::get),
        opened: OPENED.with(Cell::get),
        closed: CLOSED.with(|c| c.borrow().iter().map(|(r, n)| (*r, *n)).collect()),
    }
}

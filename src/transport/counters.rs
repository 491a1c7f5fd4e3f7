//! What the transport does on this thread, counted for the metrics: WebSocket write system
//! calls and the bytes they wrote, and the Engine.IO HTTP requests refused, by reason. Each
//! shard is a thread of its own, so these are per-shard counts, read by the metrics scrape on
//! its shard ([`read`]). Thread-locals rather than the shard context because the writer and
//! the HTTP front do not hold the context: one thread-local access per write system call or
//! refused request, never per delivery.

use std::cell::{Cell, RefCell};

use ahash::AHashMap;

#[derive(Default)]
struct Counters {
    writes: Cell<u64>,
    bytes: Cell<u64>,
    refused: RefCell<AHashMap<&'static str, u64>>,
}

thread_local! {
    static HERE: Counters = Counters::default();
}

/// One write system call took `bytes`.
pub(crate) fn wrote(bytes: usize) {
    HERE.with(|c| {
        c.writes.set(c.writes.get() + 1);
        c.bytes.set(c.bytes.get() + bytes as u64);
    });
}

/// An Engine.IO HTTP request was refused with `reason` (the reference's error message).
pub(crate) fn refused(reason: &'static str) {
    HERE.with(|c| *c.refused.borrow_mut().entry(reason).or_insert(0) += 1);
}

/// This thread's counts so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reading {
    pub writes: u64,
    pub bytes: u64,
    pub refused: Vec<(&'static str, u64)>,
}

/// This thread's counts (call it on the shard whose counts are wanted).
pub(crate) fn read() -> Reading {
    HERE.with(|c| Reading {
        writes: c.writes.get(),
        bytes: c.bytes.get(),
        refused: c.refused.borrow().iter().map(|(r, n)| (*r, *n)).collect(),
    })
}

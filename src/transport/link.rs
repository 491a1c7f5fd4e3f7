//! The write side of every connection of a shard, and the shard's flush pass.
//!
//! Each session has a [`Link`] in its shard's slab: what is waiting to be written to it (the
//! WebSocket writer's frame queue, or the packets for the next long-polling GET) and the
//! slow-consumer accounting. Anything sent to a connection, from anywhere, ends up in
//! [`TransportLocal::push`] on the owning shard (other threads get there through the mesh, so one
//! emitter's packets keep their order): a packet costs one refcount increment per frame and
//! a push onto that queue, with no channel, no atomic accounting and no task wake-up.
//!
//! ## The write policy
//!
//! A WebSocket link that received frames is marked dirty; the shard's flusher task runs once
//! the current loop turn's work is done (the whole mesh drain, or the handler that emitted)
//! and writes every dirty link with one vectored write: whatever a turn queued for a
//! connection goes out in one system call at the end of that turn, with no added delay (as
//! uWebSockets corks per loop iteration). That is the policy under normal load
//! (`write_coalesce` 0, the default).
//!
//! On loopback one `write` costs about as much as sixteen frames in one write, so when a
//! fan-out is too large for one write per frame (writing takes more than 80% of the shard's
//! time, [`Duty`]) the flusher coalesces across turns: a link flushed less than the window
//! ago waits until that much time has passed since its last flush (or until it has
//! [`BATCH_FRAMES`] frames). The window opens at 1 ms, widens up to `write_coalesce_max`
//! (100 ms by default) while the shard stays saturated, and narrows back, then closes, when
//! the load falls: throughput per core grows with the load instead of collapsing under one
//! syscall per frame. A link whose client just sent something is never held
//! ([`TransportLocal::note_inbound`]): an ack, a reply or a CONNECT reply goes out at the
//! end of the turn, with what was waiting for it, in order.
//!
//! A pass is written in slices of [`PASS_SLICE`] writes (about 1 ms): between two slices the
//! flusher yields, so the shard reads its sockets and runs its handlers while a pass over
//! tens of thousands of links is under way, and a broadcast is not held up by the pass
//! before it (a pass over 10,000 links takes 35-50 ms here).
//!
//! When the kernel refuses part of a write (the client reads slowly), the link is *blocked*:
//! the flusher leaves it alone, and the session task waits for writability and drains it.
//! Frames still queue up to `max_outbox` frames / `max_outbox_bytes` bytes; past that the
//! connection is closed as a slow consumer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::time::{Duration, Instant};

use crate::error::DisconnectReason;
use crate::proto::sid::Sid;
use crate::shard::ShardCtx;
use crate::transport::local::TransportLocal;
use crate::transport::outbox::{Framing, Out};
use crate::transport::session::Cmd;
use crate::transport::ws::{WsError, WsWriter};

/// A link with this many frames queued is flushed in the next pass whatever its window.
pub(crate) const BATCH_FRAMES: usize = 64;

/// The write state of one connection. Owned by the shard (never shared across threads).
pub(crate) struct Link {
    sid: Sid,
    /// The WebSocket writer once the session runs over WebSocket.
    ws: Option<WsWriter>,
    /// Per-message deflate was negotiated on `ws`.
    deflate: bool,
    /// How `ws` frames binary messages (Engine.IO v3 or v4).
    framing: Framing,
    /// Long-polling: packets for the next GET (also held during an upgrade).
    polled: VecDeque<Out>,
    /// Bytes in `polled`.
    polled_bytes: usize,
    /// The session holds a GET open (long-polling is writable).
    get_waiting: bool,
    /// In the shard's dirty list (or its deferred list).
    dirty: bool,
    /// The kernel refused part of a write: the session waits for writability and drains.
    blocked: bool,
    /// When this link was last written to.
    last_flush: Option<Instant>,
    /// The client sent something since the last write: what is queued now answers it and
    /// is written at the end of this loop turn, whatever the window.
    replying: bool,
    /// Set when the write side decided the connection must close.
    fault: Option<DisconnectReason>,
    /// The error behind a write fault, for the close code.
    error: Option<WsError>,
    /// Commands for the session, in order.
    cmds: VecDeque<Cmd>,
    /// The session task, woken for commands, faults, polling data and writability.
    waker: Option<Waker>,
}

/// What a session is told by its link.
pub(crate) enum LinkEvent {
    /// A command (HTTP request, upgrade, server-side disconnect, close).
    Cmd(Cmd),
    /// The connection must close (slow consumer, write error).
    Fault(DisconnectReason, Option<WsError>),
    /// Packets are waiting for the GET the session holds.
    Polled,
    /// A blocked WebSocket writer drained.
    Drained,
}

impl Link {
    pub(crate) fn new(sid: Sid, ws: Option<(WsWriter, bool)>, framing: Framing) -> Link {
        let (ws, deflate) = match ws {
            Some((w, d)) => (Some(w), d),
            None => (None, false),
        };
        Link {
            sid,
            ws,
            deflate,
            framing,
            polled: VecDeque::new(),
            polled_bytes: 0,
            get_waiting: false,
            dirty: false,
            blocked: false,
            last_flush: None,
            replying: false,
            fault: None,
            error: None,
            cmds: VecDeque::new(),
            waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn condemn(&mut self, reason: DisconnectReason) {
        if self.fault.is_none() {
            self.fault = Some(reason);
            self.wake();
        }
    }

    /// Frames and bytes waiting to be written.
    fn backlog(&self) -> (usize, usize) {
        match &self.ws {
            Some(w) => (w.queued_frames(), w.pending_bytes()),
            None => (self.polled.len(), self.polled_bytes),
        }
    }

    /// Can a volatile packet go now? Over WebSocket when the kernel is taking our writes;
    /// over polling when a GET is waiting and nothing is queued for it.
    fn writable(&self) -> bool {
        match &self.ws {
            Some(_) => !self.blocked,
            None => self.get_waiting && self.polled.is_empty(),
        }
    }
}

/// The flusher's lists.
#[derive(Default)]
pub(crate) struct Flush {
    /// Links with frames queued since their last flush.
    dirty: Vec<usize>,
    /// Busy links waiting for their coalescing window: (when, slot).
    deferred: Vec<(Instant, usize)>,
    /// The pass under way: the links it looks at, and how far it got (a pass is written in
    /// slices of at most [`PASS_SLICE`] writes).
    pass: Vec<usize>,
    cursor: usize,
    /// The flusher task, when it waits for work.
    waker: Option<Waker>,
    /// The coalescing window in force (see [`Duty`]).
    duty: Duty,
}

/// Keeps the share of the shard's time spent writing in check. Under a fan-out too large
/// for one write per frame (10,000 connections at 50 messages/s is 500,000 writes/s, more
/// than a core can do on loopback), a fixed window lets the shard saturate: every pass
/// writes one frame per connection and the backlog, and so latency, grows until the
/// batches are big enough. Instead the window widens while writing takes more than
/// [`Duty::HIGH`] of the shard's time and narrows back to `write_coalesce` below
/// [`Duty::LOW`]: more frames per write, fewer writes, and headroom left for the rest of
/// the shard's work.
#[derive(Debug)]
pub(crate) struct Duty {
    /// The window now; never below `write_coalesce`.
    window: Duration,
    /// Time spent in flush passes since `since`.
    busy: Duration,
    since: Option<Instant>,
}

impl Default for Duty {
    fn default() -> Self {
        Duty { window: Duration::ZERO, busy: Duration::ZERO, since: None }
    }
}

impl Duty {
    /// Above this share of time spent writing, the window widens.
    const HIGH: f64 = 0.8;
    /// The first window of a shard that saturates with no base window (the default): from
    /// there it grows by a quarter a period.
    const FIRST: Duration = Duration::from_millis(1);
    /// Below this share, it narrows.
    const LOW: f64 = 0.5;
    /// How often the share is assessed.
    const PERIOD: Duration = Duration::from_millis(50);
    /// The window for a pass starting at `now`: between `base` (`write_coalesce`) and `max`
    /// (`write_coalesce_max`).
    fn window(&mut self, base: Duration, max: Duration, now: Instant) -> Duration {
        let max = max.max(base);
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= Self::PERIOD {
            let share = self.busy.as_secs_f64() / elapsed.as_secs_f64();
            self.window = if share > Self::HIGH && max > base {
                (self.window.max(base).max(Self::FIRST) * 5 / 4).min(max)
            } else if share < Self::LOW && elapsed >= Self::PERIOD * 4 {
                // Quiet for a while: back to the configured window at once.
                base
            } else if share < Self::LOW {
                // Narrower than the first step: closed (back to the base).
                let w = self.window * 4 / 5;
                if w < Self::FIRST {
                    base
                } else {
                    w.max(base)
                }
            } else {
                self.window.clamp(base, max)
            };
            tracing::trace!(share, window_us = self.window.as_micros() as u64, "write window");
            self.busy = Duration::ZERO;
            self.since = Some(now);
        }
        self.window.max(base)
    }

    fn spent(&mut self, d: Duration) {
        self.busy += d;
    }
}

impl Flush {
    fn next_deadline(&self) -> Option<Instant> {
        self.deferred.iter().map(|(t, _)| *t).min()
    }

    /// A pass is under way or links are dirty: the flusher has work now.
    fn has_work(&self) -> bool {
        self.cursor < self.pass.len() || !self.dirty.is_empty()
    }
}

/// How many links the flusher writes before it lets the shard's other tasks run (about a
/// millisecond of system calls on loopback here). A pass over 10,000 links takes tens of
/// milliseconds; written in one go, it would hold up everything else on the shard, the
/// publishers' messages among them, and their latency would grow by the pass. Links a pass
/// has not reached keep their place. Counted in writes rather than time, so the work of a
/// pass does not depend on the clock (the instruction count stays exact).
const PASS_SLICE: usize = 256;

impl TransportLocal {
    /// Registers the write side of a new session; returns its slot.
    pub(crate) fn add_link(&self, link: Link) -> usize {
        self.links.borrow_mut().insert(link)
    }

    /// Forgets a session's link, handing back its WebSocket writer (to close it).
    pub(crate) fn remove_link(&self, slot: usize) -> Option<WsWriter> {
        let mut links = self.links.borrow_mut();
        let link = links.try_remove(slot)?;
        if links.is_empty() {
            links.shrink_to_fit();
        }
        link.ws
    }

    /// Hands a command to session `sid` of this shard. False when there is no such session
    /// (the command is dropped, so a reply channel in it tells the asker).
    pub(crate) fn send_cmd(&self, sid: &Sid, cmd: Cmd) -> bool {
        let Some(slot) = self.sessions.borrow().get(sid).map(|h| h.slot) else {
            return false;
        };
        let mut links = self.links.borrow_mut();
        let Some(link) = links.get_mut(slot).filter(|l| l.sid == *sid) else { return false };
        link.cmds.push_back(cmd);
        link.wake();
        true
    }

    /// The next command for the session in `slot` (the session's closing phase listens
    /// only to these).
    pub(crate) fn poll_cmd(&self, slot: usize, cx: &mut Context<'_>) -> Poll<Cmd> {
        let mut links = self.links.borrow_mut();
        let link = &mut links[slot];
        if let Some(cmd) = link.cmds.pop_front() {
            return Poll::Ready(cmd);
        }
        if !link.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            link.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Queues a packet on the connection in `slot` (if it is still `sid`'s). When the
    /// backlog is at `max_outbox` frames or `max_outbox_bytes` bytes the connection is
    /// closed as a slow consumer; one packet alone is always accepted (`max_payload` bounds
    /// what a client can make us echo). A volatile packet goes only to a writable
    /// connection, and is otherwise dropped and counted. Returns whether it was queued.
    #[inline]
    pub(crate) fn push(&self, slot: usize, sid: Sid, out: &Out, volatile: bool) -> bool {
        let mut links = self.links.borrow_mut();
        let Some(link) = links.get_mut(slot).filter(|l| l.sid == sid) else { return false };
        if link.fault.is_some() {
            return false;
        }
        if volatile && !link.writable() {
            self.shared.volatile_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        let cfg = &self.shared.config;
        let (frames, bytes) = link.backlog();
        if bytes > 0 && (bytes + out.wire_len() > cfg.max_outbox_bytes || frames >= cfg.max_outbox)
        {
            link.condemn(DisconnectReason::SlowConsumer);
            return false;
        }
        match link.ws.as_mut() {
            Some(w) => {
                if link.framing == Framing::V4 {
                    for f in out.frames(link.deflate) {
                        w.queue(f.clone());
                    }
                } else {
                    out.frames_for(link.framing, link.deflate, |f| w.queue(f));
                }
                if !link.dirty && !link.blocked {
                    link.dirty = true;
                    self.mark_dirty(slot);
                }
            }
            None => {
                link.polled_bytes += out.wire_len();
                link.polled.push_back(out.clone());
                if link.get_waiting {
                    link.wake();
                }
            }
        }
        self.packets_sent.set(self.packets_sent.get() + 1);
        true
    }

    /// This shard's open sessions by transport: (WebSocket, long-polling). Walks the links:
    /// for a scrape, not the data path.
    /// The link in `slot` writes to a WebSocket (false for polling, or a free slot).
    pub(crate) fn is_websocket(&self, slot: usize) -> bool {
        self.links.borrow().get(slot).is_some_and(|l| l.ws.is_some())
    }

    /// The sizes of this shard's transport tables, for the metrics
    /// (`shardcast_table_entries`).
    pub(crate) fn table_sizes(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("transport_sessions", self.sessions.borrow().len() as u64));
        out.push(("transport_links", self.links.borrow().len() as u64));
    }

    pub(crate) fn sessions_by_transport(&self) -> (usize, usize) {
        let links = self.links.borrow();
        let ws = links.iter().filter(|(_, l)| l.ws.is_some()).count();
        (ws, links.len() - ws)
    }

    /// The client of the link in `slot` sent a packet: what is queued for it from now on
    /// (an ack, a reply, the CONNECT reply) is written at the end of this loop turn, never
    /// held for the coalescing window, and with it what was waiting, in order. A link
    /// already waiting for its window goes back to the dirty list.
    pub(crate) fn note_inbound(&self, slot: usize) {
        let mut links = self.links.borrow_mut();
        let Some(link) = links.get_mut(slot) else { return };
        if link.replying || link.ws.is_none() {
            return;
        }
        link.replying = true;
        if link.dirty && !link.blocked {
            drop(links);
            self.mark_dirty(slot);
        }
    }

    fn mark_dirty(&self, slot: usize) {
        let mut flush = self.flush.borrow_mut();
        flush.dirty.push(slot);
        if let Some(w) = flush.waker.take() {
            w.wake();
        }
    }

    /// Runs `f` on the link in `slot`. Frames it queues are flushed by the next pass.
    pub(crate) fn with_link<R>(&self, slot: usize, f: impl FnOnce(&mut LinkMut<'_>) -> R) -> R {
        let mut links = self.links.borrow_mut();
        let link = &mut links[slot];
        let r = f(&mut LinkMut(link));
        let queued = link.ws.as_ref().is_some_and(|w| w.queued_frames() > 0);
        if queued && !link.dirty && !link.blocked {
            link.dirty = true;
            drop(links);
            self.mark_dirty(slot);
        }
        r
    }

    /// What the session in `slot` must hear about, if anything: registers the task's waker
    /// otherwise. A blocked writer is flushed here as the socket becomes writable.
    pub(crate) fn poll_link(&self, slot: usize, cx: &mut Context<'_>) -> Poll<LinkEvent> {
        let mut links = self.links.borrow_mut();
        let link = &mut links[slot];
        if let Some(reason) = link.fault.take() {
            return Poll::Ready(LinkEvent::Fault(reason, link.error.take()));
        }
        if let Some(cmd) = link.cmds.pop_front() {
            if link.cmds.is_empty() {
                link.cmds = VecDeque::new();
            }
            return Poll::Ready(LinkEvent::Cmd(cmd));
        }
        if link.get_waiting && !link.polled.is_empty() {
            return Poll::Ready(LinkEvent::Polled);
        }
        if link.blocked {
            if let Some(w) = link.ws.as_mut() {
                match w.poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        link.blocked = false;
                        link.last_flush = Some(Instant::now());
                        return Poll::Ready(LinkEvent::Drained);
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(LinkEvent::Fault(
                            DisconnectReason::TransportError,
                            Some(e),
                        ));
                    }
                    Poll::Pending => {}
                }
            }
        }
        if !link.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            link.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Flushes now until nothing is left to write but deferred links (benchmarks, tests).
    #[doc(hidden)]
    pub(crate) fn flush_now(&self) {
        while self.flush_pass(Instant::now()) || self.flush.borrow().has_work() {}
    }

    /// One slice of a flush pass: writes dirty links whose coalescing window is over and
    /// defers the others, until the pass is done or [`PASS_SLICE`] links were written. A new
    /// pass starts from the dirty links and the deferred ones now due. True when the pass is
    /// not done (the flusher yields, then calls again).
    pub(crate) fn flush_pass(&self, now: Instant) -> bool {
        let mut flush = self.flush.borrow_mut();
        let flush = &mut *flush;
        let cfg = &self.shared.config;
        let window = flush.duty.window(cfg.write_coalesce, cfg.write_coalesce_max, now);
        if flush.cursor >= flush.pass.len() {
            // A new pass; both lists keep their allocations.
            flush.pass.clear();
            flush.cursor = 0;
            std::mem::swap(&mut flush.pass, &mut flush.dirty);
            if !flush.deferred.is_empty() {
                let pass = &mut flush.pass;
                flush.deferred.retain(|&(t, slot)| {
                    if t <= now {
                        pass.push(slot);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        let mut links = self.links.borrow_mut();
        let pass = std::mem::take(&mut flush.pass);
        let mut i = flush.cursor;
        let mut writes = 0;
        while let Some(&slot) = pass.get(i) {
            if writes == PASS_SLICE {
                // The slice is spent: this link is written first next time.
                break;
            }
            i += 1;
            let Some(link) = links.get_mut(slot) else { continue };
            if !link.dirty {
                // A stale entry (the link closed, or a new one took the slot), or one
                // already flushed in this pass.
                continue;
            }
            let Some(w) = link.ws.as_mut() else {
                link.dirty = false;
                continue;
            };
            if link.blocked {
                link.dirty = false;
                continue;
            }
            if let (Some(last), false) = (link.last_flush, link.replying) {
                let due = last + window;
                if due > now && w.queued_frames() < BATCH_FRAMES {
                    flush.deferred.push((due, slot));
                    continue;
                }
            }
            link.dirty = false;
            link.replying = false;
            writes += 1;
            match w.try_flush() {
                Ok(done) => {
                    link.last_flush = Some(now);
                    if !done {
                        link.blocked = true;
                        link.wake();
                    }
                }
                Err(e) => {
                    link.error = Some(e);
                    link.condemn(DisconnectReason::TransportError);
                }
            }
        }
        let more = i < pass.len();
        flush.cursor = i;
        flush.pass = pass;
        flush.duty.spent(now.elapsed());
        more
    }
}

/// Session-side access to its link.
pub(crate) struct LinkMut<'a>(&'a mut Link);

impl LinkMut<'_> {
    /// The WebSocket writer, when the session runs over WebSocket.
    pub(crate) fn ws(&mut self) -> Option<&mut WsWriter> {
        self.0.ws.as_mut()
    }

    /// The session now runs over WebSocket: what was held for polling goes first.
    pub(crate) fn set_ws(&mut self, mut writer: WsWriter, deflate: bool, framing: Framing) {
        for out in self.0.polled.drain(..) {
            out.frames_for(framing, deflate, |f| writer.queue(f));
        }
        self.0.framing = framing;
        self.0.polled_bytes = 0;
        self.0.ws = Some(writer);
        self.0.deflate = deflate;
    }

    /// Takes up to `max` packets held for polling.
    pub(crate) fn take_polled(&mut self, max: usize) -> Vec<Out> {
        let n = self.0.polled.len().min(max);
        let batch: Vec<Out> = self.0.polled.drain(..n).collect();
        self.0.polled_bytes -= batch.iter().map(Out::wire_len).sum::<usize>();
        if self.0.polled.is_empty() {
            self.0.polled = VecDeque::new();
        }
        batch
    }

    /// Whether the session holds a GET open.
    pub(crate) fn set_get_waiting(&mut self, waiting: bool) {
        self.0.get_waiting = waiting;
    }

    /// Frames or packets waiting.
    pub(crate) fn has_backlog(&self) -> bool {
        self.0.backlog().0 > 0
    }
}

/// How often a shard checks whether to give freed memory back (see [`trimmer`]).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Gives the memory freed by closed connections back to the system: glibc keeps what is
/// freed in its arenas (large buffers included, once its mmap threshold has grown), so a
/// burst of connections (a storm of hostile ones, a mass reconnect) would leave the RSS at
/// its peak. Every [`TRIM_EVERY`], when connections closed on this shard since the last
/// look, `malloc_trim` returns the free pages. An idle shard only wakes to look.
pub(crate) async fn trimmer() {
    let mut seen = crate::transport::counters::connections_closed();
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        let now = crate::transport::counters::connections_closed();
        if now != seen {
            seen = now;
            crate::shard::trim_memory();
        }
    }
}

/// How often the flusher releases the write queues of links that went quiet.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl TransportLocal {
    /// Releases the write-queue memory of every link not written to for [`SWEEP_EVERY`]:
    /// busy links keep their queue from write to write, idle ones hold none. True when
    /// some link still holds one (a later sweep is needed).
    fn sweep_idle(&self, now: Instant) -> bool {
        let mut left = false;
        for (_, link) in self.links.borrow_mut().iter_mut() {
            let Some(w) = link.ws.as_mut() else { continue };
            let quiet = link.last_flush.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
            if quiet && !link.dirty && !link.blocked {
                w.release_idle();
            }
            left |= w.holds_queue();
        }
        left
    }
}

/// The shard's flusher: waits for dirty links (or a deferred link's window), then runs a
/// pass. As a task of its own it runs after the work that made links dirty in this turn.
/// Every [`SWEEP_EVERY`] while there is traffic, it also releases the write queues of links
/// that went quiet.
pub(crate) async fn flusher(ctx: Rc<ShardCtx>) {
    let ctx = ctx.transport();
    let far = Duration::from_secs(3600);
    let sleep = tokio::time::sleep(far);
    tokio::pin!(sleep);
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut swept = true;
    loop {
        let mut next = ctx.flush.borrow().next_deadline();
        if !swept {
            next = Some(next.map_or(next_sweep, |n| n.min(next_sweep)));
        }
        let deadline = next.unwrap_or_else(|| Instant::now() + far);
        if next.is_some() || sleep.is_elapsed() {
            sleep.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            () = poll_fn(|cx| {
                let mut flush = ctx.flush.borrow_mut();
                if flush.has_work() {
                    Poll::Ready(())
                } else {
                    flush.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }) => {}
            () = &mut sleep => {}
        }
        let now = Instant::now();
        if ctx.flush_pass(now) {
            // The pass goes on after the shard's other ready tasks (and its I/O) had a turn.
            tokio::task::yield_now().await;
        }
        swept = false;
        if now >= next_sweep {
            // Until the next pass nothing new needs sweeping, unless a link was still busy.
            swept = !ctx.sweep_idle(now);
            next_sweep = now + SWEEP_EVERY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_earliest_deferred() {
        let now = Instant::now();
        let mut f = Flush::default();
        assert_eq!(f.next_deadline(), None);
        f.deferred.push((now + Duration::from_millis(5), 1));
        f.deferred.push((now + Duration::from_millis(2), 2));
        assert_eq!(f.next_deadline(), Some(now + Duration::from_millis(2)));
    }

    const BASE: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(100);

    /// Runs `periods` assessment periods in which writing took `share` of the time.
    fn drive(d: &mut Duty, t: &mut Instant, share: f64, periods: u32) -> Duration {
        let mut w = d.window(BASE, MAX, *t);
        for _ in 0..periods {
            d.spent(Duty::PERIOD.mul_f64(share));
            *t += Duty::PERIOD;
            w = d.window(BASE, MAX, *t);
        }
        w
    }

    #[test]
    fn window_widens_under_load_up_to_the_max_and_narrows_back() {
        let mut d = Duty::default();
        let mut t = Instant::now();
        assert_eq!(drive(&mut d, &mut t, 0.1, 3), BASE, "light load keeps the base window");
        let w1 = drive(&mut d, &mut t, 0.9, 1);
        assert!(w1 > BASE, "heavy load widens ({w1:?})");
        let w2 = drive(&mut d, &mut t, 0.9, 1);
        assert!(w2 > w1);
        assert_eq!(drive(&mut d, &mut t, 0.9, 40), MAX, "bounded by the max");
        assert_eq!(drive(&mut d, &mut t, 0.6, 5), MAX, "between the thresholds it holds");
        let w3 = drive(&mut d, &mut t, 0.1, 1);
        assert!(w3 < MAX && w3 > BASE, "light load narrows step by step ({w3:?})");
        assert_eq!(drive(&mut d, &mut t, 0.1, 40), BASE);
    }

    #[test]
    fn a_quiet_spell_resets_the_window() {
        let mut d = Duty::default();
        let mut t = Instant::now();
        assert_eq!(drive(&mut d, &mut t, 0.9, 40), MAX);
        t += Duration::from_secs(2);
        assert_eq!(d.window(BASE, MAX, t), BASE);
    }

    #[test]
    fn with_no_base_window_saturation_opens_one_and_calm_closes_it() {
        // The default policy: no window until writing saturates the shard.
        let mut d = Duty::default();
        let mut t = Instant::now();
        let w = |d: &mut Duty, t: Instant| d.window(Duration::ZERO, MAX, t);
        assert_eq!(w(&mut d, t), Duration::ZERO);
        for _ in 0..3 {
            d.spent(Duty::PERIOD.mul_f64(0.3));
            t += Duty::PERIOD;
            assert_eq!(w(&mut d, t), Duration::ZERO, "below saturation nothing is held");
        }
        d.spent(Duty::PERIOD.mul_f64(0.95));
        t += Duty::PERIOD;
        let first = w(&mut d, t);
        assert!(first >= Duty::FIRST, "saturated: a window opens ({first:?})");
        for _ in 0..40 {
            d.spent(Duty::PERIOD.mul_f64(0.95));
            t += Duty::PERIOD;
            w(&mut d, t);
        }
        assert_eq!(w(&mut d, t), MAX);
        for _ in 0..40 {
            d.spent(Duty::PERIOD.mul_f64(0.1));
            t += Duty::PERIOD;
            w(&mut d, t);
        }
        assert_eq!(w(&mut d, t), Duration::ZERO, "calm again: closed");
    }

    #[test]
    fn a_max_below_the_base_means_a_fixed_window() {
        let mut d = Duty::default();
        let mut t = Instant::now();
        d.window(BASE, Duration::ZERO, t);
        for _ in 0..10 {
            d.spent(Duty::PERIOD);
            t += Duty::PERIOD;
            assert_eq!(d.window(BASE, Duration::ZERO, t), BASE);
        }
    }
}

//! A per-thread high-resolution timer for the open-loop schedules. tokio's timer wheel has a
//! 1 ms tick and rounds deadlines up, so a publisher woken by it sends 1-2 ms late, which would
//! dominate loopback latencies. One `timerfd` per thread (CLOCK_MONOTONIC, absolute, armed for
//! the earliest deadline) wakes publishers within tens of microseconds instead.
//!
//! Each publisher owns a fixed slot; moving its deadline pushes one heap entry, and entries
//! whose slot has moved on are skipped when they come due, so the heap stays small however
//! often the publisher's `select!` drops and re-creates the wait.
//!
//! Deadlines less than [`EARLY_NS`] ahead are served by the wake that is happening now: on
//! this kind of machine (a VM) arming a timer costs about 9 µs (`timerfd_settime`, measured),
//! and 100 publishers spread over their interval otherwise cost one arm and one wake-up per
//! message (a third of the load generator's CPU at 20,000 messages/s in `cluster-fanout`).
//! A message sent early takes its send time as its latency origin ([`origin_ns`]), so no
//! latency is hidden; one sent late keeps its scheduled time (no coordinated omission).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::io::unix::AsyncFd;

use crate::sys::mono_ns;

/// How far ahead of its deadline a waiter may be woken, to share a wake-up with an earlier one.
pub const EARLY_NS: u64 = 50_000;

/// The latency origin of a message due at `due` and sent at `now`: its deadline when sent
/// late (what it waited counts), its send time when sent early (nothing is counted that did
/// not happen).
pub fn origin_ns(due: u64, now: u64) -> u64 {
    due.min(now)
}

struct Slot {
    due: u64,
    waker: Option<Waker>,
}

/// The timer of one thread. Only used on the thread that created it.
pub struct Pacer {
    fd: AsyncFd<OwnedFd>,
    heap: RefCell<BinaryHeap<Reverse<(u64, usize)>>>,
    slots: RefCell<Vec<Slot>>,
    armed: Cell<u64>,
    /// How many times the timer was armed (tests).
    arms: Cell<u64>,
}

impl Pacer {
    /// Creates the timerfd and spawns its driver on the current `LocalSet`.
    pub fn start() -> std::io::Result<Rc<Pacer>> {
        // SAFETY: timerfd_create returns a new descriptor we then own, or -1.
        let raw = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the descriptor is owned by the AsyncFd and neither replaced nor closed while
        // registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let p = Rc::new(Pacer {
            fd,
            heap: RefCell::new(BinaryHeap::new()),
            slots: RefCell::new(Vec::new()),
            armed: Cell::new(u64::MAX),
            arms: Cell::new(0),
        });
        tokio::task::spawn_local(drive(p.clone()));
        Ok(p)
    }

    /// A new slot for one waiter.
    pub fn slot(&self) -> usize {
        let mut s = self.slots.borrow_mut();
        s.push(Slot { due: u64::MAX, waker: None });
        s.len() - 1
    }

    /// Completes at CLOCK_MONOTONIC time `due` (ns) for slot `slot`.
    pub fn wait(&self, slot: usize, due: u64) -> Wait<'_> {
        Wait { p: self, slot, due }
    }

    fn arm(&self, due: u64) {
        self.armed.set(due);
        self.arms.set(self.arms.get() + 1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (due / 1_000_000_000) as _,
                tv_nsec: (due % 1_000_000_000) as _,
            },
        };
        // SAFETY: settime on our own descriptor with valid structs.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            );
        }
    }

    /// Wakes every slot due by now (or within [`EARLY_NS`]) and arms the timer for the next.
    fn fire(&self) {
        let now = mono_ns() + EARLY_NS;
        let mut heap = self.heap.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        while let Some(&Reverse((due, slot))) = heap.peek() {
            if due > now {
                break;
            }
            heap.pop();
            let s = &mut slots[slot];
            if s.due == due {
                s.due = u64::MAX;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        let next = heap.peek().map_or(u64::MAX, |r| r.0 .0);
        drop((heap, slots));
        if next != u64::MAX {
            self.arm(next);
        } else {
            self.armed.set(u64::MAX);
        }
    }
}

async fn drive(p: Rc<Pacer>) {
    loop {
        let Ok(mut guard) = p.fd.readable().await else { return };
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into our buffer from our descriptor.
        let n = unsafe { libc::read(p.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        if n < 0 {
            // Not expired (the readiness was stale): firing now would arm the timer again
            // for the deadline it already holds, a second arm per wake.
            guard.clear_ready();
            continue;
        }
        p.fire();
    }
}

/// See [`Pacer::wait`].
pub struct Wait<'a> {
    p: &'a Pacer,
    slot: usize,
    due: u64,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if mono_ns() + EARLY_NS >= self.due {
            return Poll::Ready(());
        }
        let mut slots = self.p.slots.borrow_mut();
        let s = &mut slots[self.slot];
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        if s.due != self.due {
            s.due = self.due;
            drop(slots);
            self.p.heap.borrow_mut().push(Reverse((self.due, self.slot)));
            if self.due < self.p.armed.get() {
                self.p.arm(self.due);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_wakes_early_and_forgets_dropped_waits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let p = Pacer::start().unwrap();
            let (a, b) = (p.slot(), p.slot());
            // How late a wake is depends on the machine's load: not asserted here (a timed
            // unit test fails on a busy machine); a late send keeps its scheduled time as its
            // latency origin, so lateness shows in what a run measures.
            for i in 0..20u64 {
                let due = mono_ns() + 700_000 + i * 10_000;
                // A wait dropped before its deadline must not break later ones.
                let _ = tokio::time::timeout(
                    std::time::Duration::from_micros(100),
                    p.wait(b, due + 5_000_000),
                )
                .await;
                p.wait(a, due).await;
                let woke = mono_ns();
                assert!(woke + EARLY_NS >= due, "woke {} ns early", due - woke);
            }
            assert!(p.heap.borrow().len() <= 40);
        });
    }

    #[test]
    fn deadlines_close_together_share_one_wake() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let p = Pacer::start().unwrap();
            let slots: Vec<usize> = (0..4).map(|_| p.slot()).collect();
            for round in 0..10u64 {
                // Four waiters 10 µs apart, within EARLY_NS of the first: one arm serves them all.
                let first = mono_ns() + 2_000_000;
                let before = p.arms.get();
                let waits = slots.iter().enumerate().map(|(i, &s)| {
                    let due = first + i as u64 * 10_000;
                    let p = &p;
                    async move {
                        p.wait(s, due).await;
                        (due, mono_ns())
                    }
                });
                let woke = futures_util::future::join_all(waits).await;
                for (due, at) in woke {
                    assert!(at + EARLY_NS >= due, "round {round}: woke {} ns early", due - at);
                }
                assert_eq!(p.arms.get() - before, 1, "round {round}: one arm for four deadlines");
            }
            // Deadlines further apart than EARLY_NS each get their own: 20 ms apart, so that
            // a slow machine (AddressSanitizer, a loaded CI) waking the first late does not
            // find the second due already.
            let before = p.arms.get();
            let first = mono_ns() + 1_000_000;
            let (a, b) = (slots[0], slots[1]);
            let (pa, pb) = (&p, &p);
            futures_util::future::join(pa.wait(a, first), pb.wait(b, first + 20_000_000)).await;
            assert_eq!(p.arms.get() - before, 2);
        });
    }

    #[test]
    fn early_sends_take_their_send_time_late_ones_their_deadline() {
        assert_eq!(origin_ns(1_000, 990), 990);
        assert_eq!(origin_ns(1_000, 1_500), 1_000);
    }
}

//! What the client threads are told to do (`Control`, with the spec of a phase), and the copy of
//! it the tasks of one thread share without a lock (`LocalControl`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// What the threads are told to do.
#[derive(Debug, Clone)]
pub(super) enum Control {
    Setup,
    Run(Arc<PhaseSpec>),
    End(u32),
    Stop,
}

#[derive(Debug)]
pub(super) struct PhaseSpec {
    pub(super) phase: u32,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    pub(super) rate: f64,
    pub(super) room_joined: Vec<u32>,
}

/// The control value as the tasks of one thread see it: a copy of the watch value and a wake of
/// every waiting task when it changes. Lock-free and allocation-free per poll (a tokio `watch`
/// takes a lock each time its `changed()` is polled, i.e. per delivery).
pub(super) struct LocalControl {
    pub(super) gen: Cell<u64>,
    pub(super) value: RefCell<Control>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl LocalControl {
    pub(super) fn new() -> LocalControl {
        LocalControl {
            gen: Cell::new(0),
            value: RefCell::new(Control::Setup),
            wakers: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn slot(&self) -> usize {
        if let Some(i) = self.free.borrow_mut().pop() {
            return i;
        }
        let mut w = self.wakers.borrow_mut();
        w.push(None);
        w.len() - 1
    }

    pub(super) fn release(&self, slot: usize) {
        self.wakers.borrow_mut()[slot] = None;
        self.free.borrow_mut().push(slot);
    }

    pub(super) fn get(&self) -> Control {
        self.value.borrow().clone()
    }

    pub(super) fn set(&self, c: Control) {
        *self.value.borrow_mut() = c;
        self.gen.set(self.gen.get() + 1);
        let wakers: Vec<Waker> =
            self.wakers.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Completes with the new generation once it differs from `seen`.
    pub(super) fn changed(&self, slot: usize, seen: u64) -> impl Future<Output = u64> + '_ {
        std::future::poll_fn(move |cx| {
            let g = self.gen.get();
            if g != seen {
                return Poll::Ready(g);
            }
            let mut w = self.wakers.borrow_mut();
            match &w[slot] {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => w[slot] = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

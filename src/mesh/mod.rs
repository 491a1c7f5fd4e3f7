//! Shard-to-shard lanes: an N×N mesh of bounded single-producer / single-consumer queues,
//! plus one unbounded injector per shard for threads that are not shards (the acceptor,
//! user code running elsewhere). Generic over the message it carries: the shard layer
//! above defines what travels (connections, broadcasts, closures); this layer only moves
//! and wakes.
//!
//! Ownership: lane `(from, to)` is pushed only by shard `from` and popped only by shard `to`,
//! so `ArrayQueue` (lock-free, bounded) is used as an SPSC ring. A sender wakes the receiving
//! shard only when that shard has said it is about to sleep (`parked`), so a busy shard is
//! never woken per message.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_queue::{ArrayQueue, SegQueue};
use tokio::sync::Notify;

/// Capacity of one lane. A full lane never blocks: the sender keeps the message in its
/// per-destination overflow queue and retries on its next loop turn.
pub(crate) const LANE_CAPACITY: usize = 4096;

struct Waker {
    notify: Notify,
    parked: AtomicBool,
}

/// The mesh shared by every shard of one server, carrying messages of type `M`.
pub(crate) struct Mesh<M> {
    n: usize,
    lanes: Box<[ArrayQueue<M>]>,
    injectors: Box<[SegQueue<M>]>,
    wakers: Box<[Waker]>,
}

impl<M> Mesh<M> {
    pub(crate) fn new(n: usize) -> Self {
        Mesh {
            n,
            lanes: (0..n * n).map(|_| ArrayQueue::new(LANE_CAPACITY)).collect(),
            injectors: (0..n).map(|_| SegQueue::new()).collect(),
            wakers: (0..n)
                .map(|_| Waker { notify: Notify::new(), parked: AtomicBool::new(false) })
                .collect(),
        }
    }

    /// Number of shards.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Pushes onto lane `(from, to)`. Only called on shard `from`. Gives the message back
    /// when the lane is full.
    pub(crate) fn push(&self, from: usize, to: usize, msg: M) -> Result<(), M> {
        self.lanes[from * self.n + to].push(msg)?;
        self.wake(to);
        Ok(())
    }

    /// Pushes from a thread that is not a shard. Unbounded: used for accepted connections and
    /// for control messages, whose rate the caller bounds.
    pub(crate) fn inject(&self, to: usize, msg: M) {
        self.injectors[to].push(msg);
        self.wake(to);
    }

    /// Drops every message still queued anywhere. Called once every shard has stopped: a
    /// message may hold the mesh itself (a closure that runs on a shard captures it), and
    /// left in a lane it would keep the mesh alive for good, a cycle that leaked the whole
    /// mesh (its lanes are 1.5 MB with two shards) on every server stop (found by
    /// LeakSanitizer, scripts/asan).
    pub(crate) fn clear(&self) {
        for q in self.lanes.iter() {
            while q.pop().is_some() {}
        }
        for q in self.injectors.iter() {
            while q.pop().is_some() {}
        }
    }

    /// Wakes shard `me`'s own loop (used when it has overflow to retry).
    pub(crate) fn wake_self(&self, me: usize) {
        self.wakers[me].notify.notify_one();
    }

    fn wake(&self, to: usize) {
        let w = &self.wakers[to];
        if w.parked.load(Ordering::SeqCst) {
            w.notify.notify_one();
        }
    }

    /// Pops up to `budget` messages addressed to shard `me`, calling `f` on each. Returns
    /// how many were handled. Only called on shard `me`.
    pub(crate) fn drain(&self, me: usize, budget: usize, mut f: impl FnMut(M)) -> usize {
        let mut done = 0;
        while done < budget {
            let mut progressed = false;
            if let Some(m) = self.injectors[me].pop() {
                f(m);
                done += 1;
                progressed = true;
            }
            for from in 0..self.n {
                if let Some(m) = self.lanes[from * self.n + me].pop() {
                    f(m);
                    done += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        done
    }

    fn has_work(&self, me: usize) -> bool {
        !self.injectors[me].is_empty()
            || (0..self.n).any(|from| !self.lanes[from * self.n + me].is_empty())
    }

    /// Sleeps until a message for `me` may be waiting. Only called on shard `me`.
    pub(crate) async fn park(&self, me: usize) {
        let w = &self.wakers[me];
        let notified = w.notify.notified();
        w.parked.store(true, Ordering::SeqCst);
        // Re-check after announcing the park: a sender that pushed before it saw `parked`
        // is caught here; one that pushes after it sees `parked` and notifies.
        if !self.has_work(me) {
            notified.await;
        }
        w.parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What the tests carry: closures, as `submit_to` does, and a stop.
    enum ShardMsg {
        Run(Box<dyn FnOnce() + Send>),
        Shutdown,
    }

    fn run_msg(tag: u32, out: &Arc<std::sync::Mutex<Vec<u32>>>) -> ShardMsg {
        let out = out.clone();
        ShardMsg::Run(Box::new(move || out.lock().unwrap().push(tag)))
    }

    #[test]
    fn lanes_are_fifo_per_sender_and_bounded() {
        let mesh = Mesh::new(2);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..LANE_CAPACITY as u32 {
            assert!(mesh.push(0, 1, run_msg(i, &seen)).is_ok());
        }
        assert!(mesh.push(0, 1, run_msg(9999, &seen)).is_err(), "a full lane refuses");
        let n = mesh.drain(1, usize::MAX, |m| match m {
            ShardMsg::Run(f) => f(),
            ShardMsg::Shutdown => {}
        });
        assert_eq!(n, LANE_CAPACITY);
        let seen = seen.lock().unwrap();
        assert!(seen.windows(2).all(|w| w[0] + 1 == w[1]), "order kept");
    }

    #[test]
    fn park_returns_when_work_arrives_from_another_thread() {
        let mesh = Arc::new(Mesh::new(2));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let m2 = mesh.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            m2.inject(0, ShardMsg::Shutdown);
        });
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), mesh.park(0))
                .await
                .expect("woken");
        });
        t.join().unwrap();
        assert_eq!(mesh.drain(0, 10, |_| {}), 1);
    }
}

//! One client thread: a current-thread runtime and the state its tasks share (`Local`), the
//! setup, phase and stop stages it runs on the aggregator's `Control`, the per-second latency
//! ticks, and the reports it sends up (`ThreadMsg`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::sleep_until;

use super::client::client;
use super::connect::connect_schedule;
use super::control::{Control, LocalControl};
use super::hot::{hot_loop, Hot};
use super::measure::{Gauge, Stats};
use crate::conn::Endpoint;
use crate::link::StageReport;
use crate::pacer::Pacer;
use crate::plan::{Plan, Scenario};
use crate::proto;
use crate::sys::{instant_at, mono_ns};

pub(super) enum ThreadMsg {
    Setup(StageReport),
    Tick(u64, Histogram<u64>),
    Phase(u32, StageReport),
    Final(StageReport),
    Panic(String),
}

/// State shared by the tasks of one thread.
pub(super) struct Local {
    pub(super) plan: Arc<Plan>,
    /// One per server, in `plan.servers` order.
    eps: Vec<Endpoint>,
    pub(super) gauge: Arc<Gauge>,
    pub(super) st: RefCell<Stats>,
    pub(super) ctl: LocalControl,
    pub(super) sem: Semaphore,
    setup_pending: Cell<usize>,
    pub(super) live: Cell<usize>,
    changed: Notify,
    pub(super) prefix: Vec<u8>,
    pub(super) padding: Bytes,
    /// The event loop's sockets: receive-only connections once set up.
    pub(super) hot: Hot,
    first_start: Cell<Option<u64>>,
    pub(super) pacer: Rc<Pacer>,
}

impl Local {
    pub(super) fn error(&self, reason: &str) {
        let mut st = self.st.borrow_mut();
        if let Some(n) = st.errors.get_mut(reason) {
            *n += 1;
        } else if st.errors.len() < 200 {
            st.errors.insert(reason.to_owned(), 1);
        } else {
            *st.errors.entry("(other reasons)".into()).or_default() += 1;
        }
        Gauge::bump(&self.gauge.errors, 1);
    }

    pub(super) fn malformed(&self, m: proto::Malformed) {
        self.st.borrow_mut().c.malformed += 1;
        self.error(&format!("malformed: {}", m.0));
    }

    pub(super) fn stopping(&self) -> bool {
        matches!(*self.ctl.value.borrow(), Control::Stop)
    }

    pub(super) fn setup_finished(&self) {
        self.setup_pending.set(self.setup_pending.get().saturating_sub(1));
        self.changed.notify_waiters();
    }

    pub(super) fn task_done(&self) {
        self.live.set(self.live.get() - 1);
        self.changed.notify_waiters();
    }

    /// Where connection `g` connects.
    pub(super) fn endpoint(&self, g: u32) -> &Endpoint {
        self.server_endpoint(self.plan.server_of(g))
    }

    /// Server `s` (an index into `plan.servers`).
    pub(super) fn server_endpoint(&self, s: usize) -> &Endpoint {
        &self.eps[s]
    }

    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.plan.connect_timeout_s)
    }
}

pub(super) fn thread_main(
    plan: Arc<Plan>,
    gs: Vec<u32>,
    gauge: Arc<Gauge>,
    ctl: watch::Receiver<Control>,
    tx: UnboundedSender<ThreadMsg>,
) {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let per_thread_conc = (plan.connect_concurrency / plan.threads.max(1)).max(1) as usize;
        let mut padding = BytesMut::new();
        proto::write_json_str(&mut padding, &"x".repeat(plan.payload));
        let l = Rc::new(Local {
            eps: (0..plan.servers.len()).map(|s| Endpoint::of(&plan, s)).collect(),
            gauge,
            st: RefCell::new(Stats::new(&plan)),
            ctl: LocalControl::new(),
            sem: Semaphore::new(per_thread_conc),
            setup_pending: Cell::new(0),
            live: Cell::new(0),
            changed: Notify::new(),
            prefix: proto::event_prefix(&plan.event),
            padding: padding.freeze(),
            first_start: Cell::new(None),
            pacer: Pacer::start().expect("timerfd"),
            hot: Hot::new().expect("epoll"),
            plan,
        });
        if l.plan.shape != Scenario::Connect {
            tokio::task::spawn_local(hot_loop(l.clone()));
            l.setup_pending.set(gs.len());
            for &g in &gs {
                l.live.set(l.live.get() + 1);
                tokio::task::spawn_local(client(l.clone(), g));
            }
        }
        while l.setup_pending.get() > 0 {
            let notified = l.changed.notified();
            if l.setup_pending.get() == 0 {
                break;
            }
            notified.await;
        }
        let _ = tx.send(ThreadMsg::Setup(l.st.borrow_mut().take()));

        let mut ctl = ctl;
        let mut ticker: Option<tokio::task::JoinHandle<()>> = None;
        let mut attempts: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if ctl.changed().await.is_err() {
                break;
            }
            let c = ctl.borrow_and_update().clone();
            l.ctl.set(c.clone());
            match c {
                Control::Setup => {}
                Control::Run(spec) => {
                    let first = *l.first_start.get().get_or_insert(spec.start_ns);
                    l.first_start.set(Some(first));
                    ticker = Some(tokio::task::spawn_local(tick_loop(
                        l.clone(),
                        tx.clone(),
                        first,
                        spec.start_ns,
                    )));
                    if l.plan.shape == Scenario::Connect {
                        attempts = Some(tokio::task::spawn_local(connect_schedule(
                            l.clone(),
                            gs.clone(),
                            spec,
                        )));
                    }
                }
                Control::End(phase) => {
                    if let Some(t) = ticker.take() {
                        t.abort();
                    }
                    if let Some(a) = attempts.take() {
                        a.abort();
                    }
                    // Let client tasks see End first (stop publishing) before the snapshot.
                    tokio::task::yield_now().await;
                    let first = l.first_start.get().unwrap_or_else(mono_ns);
                    let h = {
                        let mut st = l.st.borrow_mut();
                        st.c.held_at_end = l.gauge.connected.load(Relaxed).max(0) as u64;
                        st.fold_interval()
                    };
                    let _ = tx
                        .send(ThreadMsg::Tick(mono_ns().saturating_sub(first) / 1_000_000_000, h));
                    let _ = tx.send(ThreadMsg::Phase(phase, l.st.borrow_mut().take()));
                }
                Control::Stop => break,
            }
        }
        if let Some(t) = ticker.take() {
            t.abort();
        }
        if let Some(a) = attempts.take() {
            a.abort();
        }
        // Give the client tasks a bounded time to close politely.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while l.live.get() > 0 {
            let notified = l.changed.notified();
            if l.live.get() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let _ = tx.send(ThreadMsg::Final(l.st.borrow_mut().take()));
    });
}

/// Sends the latency histogram of every second of the run, aligned on the first phase start.
async fn tick_loop(l: Rc<Local>, tx: UnboundedSender<ThreadMsg>, first: u64, start: u64) {
    const SEC: u64 = 1_000_000_000;
    let mut next = first + ((start.saturating_sub(first)) / SEC + 1) * SEC;
    loop {
        sleep_until(instant_at(next)).await;
        let h = l.st.borrow_mut().fold_interval();
        let _ = tx.send(ThreadMsg::Tick((next - first) / SEC - 1, h));
        next += SEC;
    }
}

//! The clients of one process: T threads, each a current-thread tokio runtime that owns its
//! connections and its measurements with no lock (`Rc<RefCell<_>>`), plus the process-level
//! aggregator that turns the threads' reports into [`FromWorker`] messages.
//!
//! Per connection, one task: connect, join with ack, then a loop that answers pings, scans
//! deliveries (no JSON values on the hot path) and sends on an open-loop schedule.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::sleep_until;

use crate::conn::{Conn, ConnError, Endpoint, Incoming, Payload};
use crate::link::{FromWorker, Gauges, Hists, StageReport, ToWorker};
use crate::pacer::Pacer;
use crate::plan::{Plan, Publish, Scenario};
use crate::proto::{self, Eio, Kind, Scan};
use crate::stats::{
    hist_to_b64, new_hist, record_ns, Counters, Errors, PubCounts, Seen, SeqWindow,
};
use crate::sys::{instant_at, mono_ns};

/// What the threads are told to do.
#[derive(Debug, Clone)]
enum Control {
    Setup,
    Run(Arc<PhaseSpec>),
    End(u32),
    Stop,
}

#[derive(Debug)]
struct PhaseSpec {
    phase: u32,
    start_ns: u64,
    end_ns: u64,
    rate: f64,
    room_joined: Vec<u32>,
}

/// The control value as the tasks of one thread see it: a copy of the watch value and a wake of
/// every waiting task when it changes. Lock-free and allocation-free per poll (a tokio `watch`
/// takes a lock each time its `changed()` is polled, i.e. per delivery).
struct LocalControl {
    gen: Cell<u64>,
    value: RefCell<Control>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl LocalControl {
    fn new() -> LocalControl {
        LocalControl {
            gen: Cell::new(0),
            value: RefCell::new(Control::Setup),
            wakers: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        }
    }

    fn slot(&self) -> usize {
        if let Some(i) = self.free.borrow_mut().pop() {
            return i;
        }
        let mut w = self.wakers.borrow_mut();
        w.push(None);
        w.len() - 1
    }

    fn release(&self, slot: usize) {
        self.wakers.borrow_mut()[slot] = None;
        self.free.borrow_mut().push(slot);
    }

    fn get(&self) -> Control {
        self.value.borrow().clone()
    }

    fn set(&self, c: Control) {
        *self.value.borrow_mut() = c;
        self.gen.set(self.gen.get() + 1);
        let wakers: Vec<Waker> =
            self.wakers.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Completes with the new generation once it differs from `seen`.
    fn changed(&self, slot: usize, seen: u64) -> impl Future<Output = u64> + '_ {
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

/// One thread's live counters, read by the aggregator. Only the owning thread writes.
#[derive(Default)]
#[repr(align(128))]
struct Gauge {
    connected: AtomicI64,
    scheduled: AtomicU64,
    sent: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

impl Gauge {
    fn bump(a: &AtomicU64, n: u64) {
        a.store(a.load(Relaxed) + n, Relaxed);
    }
}

enum ThreadMsg {
    Setup(StageReport),
    Tick(u64, Histogram<u64>),
    Phase(u32, StageReport),
    Final(StageReport),
    Panic(String),
}

/// A thread's measurements of the current stage.
struct Stats {
    c: Counters,
    errors: Errors,
    latency: Histogram<u64>,
    interval: Histogram<u64>,
    lag: Histogram<u64>,
    transit: Histogram<u64>,
    connect: Histogram<u64>,
    eio_open: Histogram<u64>,
    ns_connect: Histogram<u64>,
    pubs: Vec<PubCounts>,
    joined: Vec<u32>,
}

impl Stats {
    fn new(plan: &Plan) -> Stats {
        Stats {
            c: Counters::default(),
            errors: Errors::new(),
            latency: new_hist(),
            interval: new_hist(),
            lag: new_hist(),
            transit: new_hist(),
            connect: new_hist(),
            eio_open: new_hist(),
            ns_connect: new_hist(),
            pubs: vec![PubCounts::default(); plan.publisher_count() as usize],
            joined: vec![0; plan.rooms as usize],
        }
    }

    /// Takes the stage's report and starts a new stage.
    fn take(&mut self) -> StageReport {
        let pubs = self
            .pubs
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| **p != PubCounts::default())
            .map(|(i, p)| (i as u32, std::mem::take(p)))
            .collect();
        let h = |h: &mut Histogram<u64>| {
            let s = hist_to_b64(h);
            h.reset();
            s
        };
        StageReport {
            counters: std::mem::take(&mut self.c),
            errors: std::mem::take(&mut self.errors),
            hists: Hists {
                latency: h(&mut self.latency),
                lag: h(&mut self.lag),
                transit: h(&mut self.transit),
                connect: h(&mut self.connect),
                eio_open: h(&mut self.eio_open),
                ns_connect: h(&mut self.ns_connect),
            },
            pubs,
            joined: {
                let n = self.joined.len();
                std::mem::replace(&mut self.joined, vec![0; n])
            },
            cpu_us: 0,
        }
    }
}

/// State shared by the tasks of one thread.
struct Local {
    plan: Arc<Plan>,
    ep: Endpoint,
    gauge: Arc<Gauge>,
    st: RefCell<Stats>,
    ctl: LocalControl,
    sem: Semaphore,
    setup_pending: Cell<usize>,
    live: Cell<usize>,
    changed: Notify,
    prefix: Vec<u8>,
    padding: Bytes,
    first_start: Cell<Option<u64>>,
    pacer: Rc<Pacer>,
}

impl Local {
    fn error(&self, reason: &str) {
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

    fn malformed(&self, m: proto::Malformed) {
        self.st.borrow_mut().c.malformed += 1;
        self.error(&format!("malformed: {}", m.0));
    }

    fn stopping(&self) -> bool {
        matches!(*self.ctl.value.borrow(), Control::Stop)
    }

    fn setup_finished(&self) {
        self.setup_pending.set(self.setup_pending.get().saturating_sub(1));
        self.changed.notify_waiters();
    }

    fn task_done(&self) {
        self.live.set(self.live.get() - 1);
        self.changed.notify_waiters();
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.plan.connect_timeout_s)
    }
}

/// Runs the clients of worker `worker` until told to stop.
pub async fn run_process(
    plan: Arc<Plan>,
    worker: u32,
    mut cmd_rx: UnboundedReceiver<ToWorker>,
    out: UnboundedSender<FromWorker>,
) -> anyhow::Result<()> {
    let client_threads = plan.threads.max(1) as usize;
    let items = match plan.shape {
        Scenario::Connect => plan.clients,
        _ => plan.connections(),
    };
    let mut per_thread: Vec<Vec<u32>> = vec![Vec::new(); client_threads];
    // Fanout publishers get a thread of their own: behind a thread busy with a burst of
    // deliveries they would send late, and the harness would measure itself.
    let mut publishers = Vec::new();
    let mine = (0..items).filter(|&g| plan.worker_of(g) == worker);
    for (i, g) in mine.enumerate() {
        if plan.shape == Scenario::Fanout && g >= plan.clients {
            publishers.push(g);
        } else {
            per_thread[i % client_threads].push(g);
        }
    }
    let publisher_thread = (!publishers.is_empty()).then_some(per_thread.len());
    if !publishers.is_empty() {
        per_thread.push(publishers);
    }
    let threads = per_thread.len();
    let (ctl_tx, ctl_rx) = watch::channel(Control::Setup);
    let (ttx, mut trx) = unbounded_channel::<ThreadMsg>();
    let gauges: Vec<Arc<Gauge>> = (0..threads).map(|_| Arc::new(Gauge::default())).collect();
    let mut handles = Vec::new();
    for (t, gs) in per_thread.into_iter().enumerate() {
        let (plan, ctl, tx, gauge) = (plan.clone(), ctl_rx.clone(), ttx.clone(), gauges[t].clone());
        let publisher = publisher_thread == Some(t);
        let h = std::thread::Builder::new().name(format!("client-{t}")).spawn(move || {
            if publisher {
                // On a core shared with the receiving threads, the publisher would otherwise
                // send late whenever they are busy, and latency would measure the harness.
                crate::sys::prioritize_current_thread();
            }
            let tx2 = tx.clone();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                thread_main(plan, gs, gauge, ctl, tx)
            }));
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned());
                let _ = tx2.send(ThreadMsg::Panic(msg.unwrap_or_else(|| "panic".into())));
            }
        })?;
        handles.push(h);
    }
    drop(ttx);

    let cpu = || crate::sys::cpu_us(false);
    let mut stage_cpu0 = cpu();
    let mut setup: Vec<StageReport> = Vec::new();
    let mut phase: Vec<StageReport> = Vec::new();
    let mut finals: Vec<StageReport> = Vec::new();
    let mut ticks: BTreeMap<u64, (Histogram<u64>, usize)> = BTreeMap::new();
    let mut gauge_timer = tokio::time::interval(Duration::from_millis(250));
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    let mut cmds_open = true;
    let merge = |parts: &mut Vec<StageReport>, cpu_us: u64| -> anyhow::Result<StageReport> {
        let mut r = crate::link::merge_reports(std::mem::take(parts))?;
        r.cpu_us = cpu_us;
        Ok(r)
    };
    loop {
        tokio::select! {
            m = trx.recv() => {
                let Some(m) = m else { break };
                match m {
                    ThreadMsg::Setup(r) => {
                        setup.push(r);
                        if setup.len() == threads {
                            let r = merge(&mut setup, cpu() - stage_cpu0)?;
                            let _ = out.send(FromWorker::Ready(r));
                        }
                    }
                    ThreadMsg::Tick(sec, h) => {
                        let e = ticks.entry(sec).or_insert_with(|| (new_hist(), 0));
                        let _ = e.0.add(&h);
                        e.1 += 1;
                        if e.1 == threads {
                            let (h, _) = ticks.remove(&sec).expect("present");
                            let _ = out.send(FromWorker::Tick { sec, hist: hist_to_b64(&h) });
                        }
                    }
                    ThreadMsg::Phase(n, r) => {
                        phase.push(r);
                        if phase.len() == threads {
                            for (sec, (h, _)) in std::mem::take(&mut ticks) {
                                let _ = out.send(FromWorker::Tick { sec, hist: hist_to_b64(&h) });
                            }
                            let r = merge(&mut phase, cpu() - stage_cpu0)?;
                            let _ = out.send(FromWorker::PhaseDone { phase: n, report: r });
                        }
                    }
                    ThreadMsg::Final(r) => {
                        finals.push(r);
                        if finals.len() == threads {
                            let r = merge(&mut finals, cpu() - stage_cpu0)?;
                            let _ = out.send(FromWorker::Final(r));
                            break;
                        }
                    }
                    ThreadMsg::Panic(p) => anyhow::bail!("client thread panicked: {p}"),
                }
            }
            c = cmd_rx.recv(), if cmds_open => {
                match c {
                    Some(ToWorker::Start { phase, start_ns, rate, room_joined }) => {
                        stage_cpu0 = cpu();
                        let end_ns = start_ns + (plan.duration_s * 1e9) as u64;
                        let spec = PhaseSpec { phase, start_ns, end_ns, rate, room_joined };
                        let _ = ctl_tx.send(Control::Run(Arc::new(spec)));
                    }
                    Some(ToWorker::End { phase }) => {
                        let _ = ctl_tx.send(Control::End(phase));
                    }
                    Some(ToWorker::Stop) | None => {
                        cmds_open = false;
                        stage_cpu0 = cpu();
                        let _ = ctl_tx.send(Control::Stop);
                        stop_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(8));
                    }
                }
            }
            _ = gauge_timer.tick() => {
                let mut g = Gauges { at_ns: mono_ns(), ..Default::default() };
                for t in &gauges {
                    g.connected += t.connected.load(Relaxed);
                    g.scheduled += t.scheduled.load(Relaxed);
                    g.sent += t.sent.load(Relaxed);
                    g.expected += t.expected.load(Relaxed);
                    g.received += t.received.load(Relaxed);
                    g.done += t.done.load(Relaxed);
                    g.errors += t.errors.load(Relaxed);
                }
                let _ = out.send(FromWorker::Gauges(g));
                if stop_deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
                    anyhow::bail!("client threads did not stop within 8 s");
                }
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn thread_main(
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
            ep: Endpoint::of(&plan),
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
            plan,
        });
        if l.plan.shape != Scenario::Connect {
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
                        std::mem::replace(&mut st.interval, new_hist())
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
        let h = std::mem::replace(&mut l.st.borrow_mut().interval, new_hist());
        let _ = tx.send(ThreadMsg::Tick((next - first) / SEC - 1, h));
        next += SEC;
    }
}

enum End {
    Stop,
    Lost(ConnError),
}

/// One connection of fanout, lobby, echo or idle, for the whole run.
async fn client(l: Rc<Local>, g: u32) {
    let plan = l.plan.clone();
    let role = plan.role(g);
    let polling = plan.is_polling(g);
    let bind = plan.source_ip(g);
    let mut setup_done = false;
    let mut rx =
        Receiver { trackers: Vec::new(), room: role.join, own: role.publish.map(|p| p.id) };
    let mut publ = role.publish.map(|p| Publisher::new(&l, p));
    let slot = l.ctl.slot();
    let mut backoff = Duration::from_millis(100);
    loop {
        if l.stopping() {
            break;
        }
        let opened = {
            let _permit = l.sem.acquire().await;
            tokio::time::timeout(l.connect_timeout(), Conn::open(&l.ep, polling, bind)).await
        };
        let mut conn = match opened {
            Ok(Ok((conn, hs))) => {
                let mut st = l.st.borrow_mut();
                st.c.connects_ok += 1;
                record_ns(&mut st.connect, hs.ns_connect_ns);
                record_ns(&mut st.eio_open, hs.eio_open_ns);
                record_ns(&mut st.ns_connect, hs.ns_connect_ns - hs.eio_open_ns);
                conn
            }
            failed => {
                l.st.borrow_mut().c.connect_failures += 1;
                match failed {
                    Ok(Err(e)) => l.error(&e.0),
                    _ => l.error("connect: timed out"),
                }
                if !setup_done {
                    setup_done = true;
                    l.setup_finished();
                }
                if plan.reconnect && !l.stopping() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    l.st.borrow_mut().c.reconnects += 1;
                    continue;
                }
                break;
            }
        };
        backoff = Duration::from_millis(100);
        l.gauge.connected.store(l.gauge.connected.load(Relaxed) + 1, Relaxed);
        let mut end = None;
        if let Some(room) = role.join {
            match tokio::time::timeout(l.connect_timeout(), join(&l, &mut conn, room)).await {
                Ok(Ok(())) => {
                    let mut st = l.st.borrow_mut();
                    st.c.joins_ok += 1;
                    if !setup_done {
                        st.joined[room as usize] += 1;
                    }
                }
                r => {
                    l.st.borrow_mut().c.join_failures += 1;
                    let e = match r {
                        Ok(Err(e)) => e,
                        _ => ConnError("join: no ack".into()),
                    };
                    l.error(&e.0);
                    if !matches!(e.0.as_str(), s if s.starts_with("join")) {
                        end = Some(End::Lost(e));
                    }
                }
            }
        }
        if !setup_done {
            setup_done = true;
            l.setup_finished();
        }
        let end = match end {
            Some(e) => e,
            None => run_conn(&l, &mut conn, slot, &mut rx, &mut publ).await,
        };
        l.gauge.connected.store(l.gauge.connected.load(Relaxed) - 1, Relaxed);
        match end {
            End::Stop => {
                conn.close(&plan.namespace).await;
                l.st.borrow_mut().c.closed_by_harness += 1;
                break;
            }
            End::Lost(e) => {
                l.st.borrow_mut().c.disconnects += 1;
                l.error(&format!("lost: {}", e.0));
                if plan.reconnect && !l.stopping() {
                    l.st.borrow_mut().c.reconnects += 1;
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                break;
            }
        }
    }
    if !setup_done {
        l.setup_finished();
    }
    l.ctl.release(slot);
    l.task_done();
}

/// Emits the join event with an ack and waits for `true`.
async fn join(l: &Local, conn: &mut Conn, room: u32) -> Result<(), ConnError> {
    let mut args = BytesMut::new();
    proto::write_json_str(&mut args, &l.plan.room_name(room));
    conn.queue(proto::event_packet(&l.plan.namespace, Some(0), &l.plan.join_event, &args).freeze());
    conn.flush().await?;
    loop {
        let Incoming::Text(payload) = conn.recv().await? else { continue };
        let mut result = None;
        for p in payload.packets() {
            match proto::eio(p) {
                Ok(Eio::Ping(d)) => {
                    conn.queue_pong(d);
                    l.st.borrow_mut().c.pings += 1;
                }
                Ok(Eio::Close) => {
                    return Err(ConnError("closed by server (engine.io close)".into()))
                }
                Ok(Eio::Message(m)) => match proto::sio(m, &l.plan.namespace) {
                    Ok(Some(s)) if s.kind == Kind::Ack && s.ack == Some(0) => {
                        result = Some(if s.data == b"[true]" {
                            Ok(())
                        } else {
                            Err(ConnError(format!(
                                "join refused: {}",
                                String::from_utf8_lossy(&s.data[..s.data.len().min(40)])
                            )))
                        });
                    }
                    Ok(Some(s)) if s.kind == Kind::Disconnect => {
                        return Err(ConnError("namespace disconnect by server".into()))
                    }
                    Ok(_) => l.st.borrow_mut().c.other_packets += 1,
                    Err(m) => l.malformed(m),
                },
                Ok(_) => {}
                Err(m) => l.malformed(m),
            }
        }
        conn.flush().await?;
        if let Some(r) = result {
            return r;
        }
    }
}

/// The receive and publish loop of an established connection.
async fn run_conn(
    l: &Rc<Local>,
    conn: &mut Conn,
    ctl_slot: usize,
    rx: &mut Receiver,
    publ: &mut Option<Publisher>,
) -> End {
    // A client that (re)connects mid-phase picks the phase up where its schedule stands.
    let mut seen = l.ctl.gen.get();
    let current = l.ctl.get();
    match current {
        Control::Run(spec) => {
            if let Some(p) = publ {
                p.start(l, &spec);
            }
        }
        Control::Stop => return End::Stop,
        _ => {}
    }
    loop {
        let due = publ.as_ref().and_then(Publisher::next_due);
        let slot = publ.as_ref().map_or(0, |p| p.slot);
        tokio::select! {
            biased;
            g = l.ctl.changed(ctl_slot, seen) => {
                seen = g;
                match l.ctl.get() {
                    Control::Run(spec) => {
                        if let Some(p) = publ {
                            p.start(l, &spec);
                        }
                    }
                    Control::End(_) => {
                        if let Some(p) = publ {
                            p.active = false;
                        }
                    }
                    Control::Stop => return End::Stop,
                    Control::Setup => {}
                }
            }
            r = conn.recv() => {
                // Every message of this read is handled here, with one arrival time, before
                // going back to waiting (the select and a clock read per message cost more
                // than the message once a server writes several per segment).
                let now = mono_ns();
                let mut next = r.map(Some);
                loop {
                    match next {
                        Ok(Some(Incoming::Text(payload))) => {
                            if let Err(e) = rx.handle(l, conn, &payload, now) {
                                return End::Lost(e);
                            }
                        }
                        Ok(Some(Incoming::Binary)) => l.st.borrow_mut().c.binary_frames += 1,
                        Ok(None) => break,
                        Err(e) => return End::Lost(e),
                    }
                    next = conn.try_recv();
                }
                if conn.has_pending() {
                    if let Err(e) = conn.flush().await {
                        return End::Lost(e);
                    }
                }
            }
            _ = l.pacer.wait(slot, due.unwrap_or(u64::MAX)), if due.is_some() => {
                if let Some(p) = publ {
                    p.send_due(l, conn);
                }
                if let Err(e) = conn.flush().await {
                    return End::Lost(e);
                }
            }
        }
    }
}

/// The receiving side of a connection: one sequence window per publisher heard.
struct Receiver {
    trackers: Vec<(u32, SeqWindow)>,
    room: Option<u32>,
    own: Option<u32>,
}

impl Receiver {
    /// Handles one received message (`now`: when it arrived, in ns).
    fn handle(
        &mut self,
        l: &Local,
        conn: &mut Conn,
        payload: &Payload,
        now: u64,
    ) -> Result<(), ConnError> {
        for p in payload.packets() {
            match proto::eio(p) {
                Ok(Eio::Message(m)) => self.sio(l, m, now)?,
                Ok(Eio::Ping(d)) => {
                    conn.queue_pong(d);
                    l.st.borrow_mut().c.pings += 1;
                }
                Ok(Eio::Close) => {
                    return Err(ConnError("closed by server (engine.io close)".into()))
                }
                Ok(Eio::Binary) => l.st.borrow_mut().c.binary_frames += 1,
                Ok(Eio::Open(_)) => l.malformed(proto::Malformed("OPEN after the handshake")),
                Ok(_) => {}
                Err(m) => l.malformed(m),
            }
        }
        Ok(())
    }

    fn sio(&mut self, l: &Local, m: &[u8], now: u64) -> Result<(), ConnError> {
        let s = match proto::sio(m, &l.plan.namespace) {
            Ok(Some(s)) => s,
            Ok(None) => {
                l.st.borrow_mut().c.other_packets += 1;
                return Ok(());
            }
            Err(e) => {
                l.malformed(e);
                return Ok(());
            }
        };
        let echo = l.plan.shape == Scenario::Echo;
        match s.kind {
            Kind::Event if !echo => match proto::scan_event::<4>(s.data, &l.prefix) {
                Ok(Scan::Hit([id, seq, at, sent])) => {
                    self.deliver(l, id, seq, at, sent, false, now)
                }
                Ok(Scan::SlowHit([id, seq, at, sent])) => {
                    self.deliver(l, id, seq, at, sent, true, now)
                }
                Ok(Scan::Other) => l.st.borrow_mut().c.other_packets += 1,
                Err(e) => l.malformed(e),
            },
            Kind::Ack if echo && s.ack != Some(0) => match proto::scan_ack::<3>(s.data) {
                Ok(Scan::Hit([seq, at, sent])) => {
                    self.deliver(l, u64::from(self.own.unwrap_or(0)), seq, at, sent, false, now)
                }
                Ok(Scan::SlowHit([seq, at, sent])) => {
                    self.deliver(l, u64::from(self.own.unwrap_or(0)), seq, at, sent, true, now)
                }
                Ok(Scan::Other) => l.st.borrow_mut().c.other_packets += 1,
                Err(e) => l.malformed(e),
            },
            Kind::Disconnect => return Err(ConnError("namespace disconnect by server".into())),
            Kind::ConnectError => return Err(ConnError("connect_error after connect".into())),
            Kind::BinaryEvent | Kind::BinaryAck => l.st.borrow_mut().c.binary_frames += 1,
            _ => l.st.borrow_mut().c.other_packets += 1,
        }
        Ok(())
    }

    /// One delivery from publisher `id`, sequence `seq`, scheduled `at` and written `sent` ns
    /// after the epoch, arriving at `now`.
    #[allow(clippy::too_many_arguments)]
    fn deliver(&mut self, l: &Local, id: u64, seq: u64, at: u64, sent: u64, slow: bool, now: u64) {
        let plan = &l.plan;
        let mut st = l.st.borrow_mut();
        if slow {
            st.c.slow_path_parses += 1;
        }
        if id >= st.pubs.len() as u64 {
            drop(st);
            l.malformed(proto::Malformed("delivery from an unknown publisher id"));
            return;
        }
        let id = id as u32;
        // A delivery from another room than ours would make the counts lie: it is an error.
        let ok = match plan.shape {
            Scenario::Fanout => self.room == Some(id / plan.publishers),
            Scenario::Lobby => self.room == Some(id % plan.rooms),
            _ => self.own == Some(id),
        };
        if !ok {
            drop(st);
            l.error("delivery for another room or client");
            return;
        }
        let w = match self.trackers.iter_mut().find(|(p, _)| *p == id) {
            Some((_, w)) => w,
            None => {
                self.trackers.push((id, SeqWindow::default()));
                &mut self.trackers.last_mut().expect("just pushed").1
            }
        };
        let seen = w.see(seq);
        let latency = now.saturating_sub(plan.epoch_ns.saturating_add(at));
        let transit = now.saturating_sub(plan.epoch_ns.saturating_add(sent));
        let st = &mut *st;
        let pc = &mut st.pubs[id as usize];
        match seen {
            Seen::Duplicate => {
                st.c.duplicates += 1;
                pc.duplicates += 1;
                return;
            }
            Seen::New => {}
            Seen::Reordered | Seen::TooOld => {
                st.c.reordered += 1;
                pc.reordered += 1;
                if seen == Seen::TooOld {
                    st.c.unchecked_late += 1;
                }
            }
        }
        st.c.received += 1;
        pc.received += 1;
        record_ns(&mut st.latency, latency);
        record_ns(&mut st.interval, latency);
        record_ns(&mut st.transit, transit);
        Gauge::bump(&l.gauge.received, 1);
    }
}

/// An open-loop sender: message k of a phase is due at start + offset + k / rate, whether or not
/// earlier ones went out in time; lateness is measured, never hidden.
struct Publisher {
    p: Publish,
    seq: u64,
    phase: Option<u32>,
    active: bool,
    start_ns: u64,
    offset_ns: f64,
    interval_ns: f64,
    k: u64,
    n: u64,
    per_msg: u64,
    head: Bytes,
    buf: BytesMut,
    next_ack: u64,
    slot: usize,
}

impl Publisher {
    fn new(l: &Local, p: Publish) -> Publisher {
        let plan = &l.plan;
        let mut head = BytesMut::new();
        if plan.shape == Scenario::Echo {
            // `42[/nsp,]` then the ack id, then `["event",` : built per message.
            proto::write_json_str(&mut head, &plan.event);
        } else {
            head.put_u8(b'[');
            proto::write_json_str(&mut head, &plan.publish_event);
            head.put_u8(b',');
            proto::write_json_str(&mut head, &plan.room_name(p.room));
            head.put_u8(b',');
            proto::write_json_str(&mut head, &plan.event);
            let _ = write!(head, ",{},", p.id);
        }
        Publisher {
            p,
            seq: 0,
            phase: None,
            active: false,
            start_ns: 0,
            offset_ns: 0.0,
            interval_ns: 0.0,
            k: 0,
            n: 0,
            per_msg: 0,
            head: head.freeze(),
            buf: BytesMut::with_capacity(256),
            next_ack: 1,
            slot: l.pacer.slot(),
        }
    }

    fn start(&mut self, l: &Local, spec: &PhaseSpec) {
        if self.phase == Some(spec.phase) {
            self.active = self.k < self.n;
            return;
        }
        let plan = &l.plan;
        let rate = plan.publisher_rate(&self.p, spec.rate);
        self.phase = Some(spec.phase);
        self.start_ns = spec.start_ns;
        self.interval_ns = 1e9 / rate;
        self.n = (rate * plan.duration_s + 1e-6).floor() as u64;
        // Spread publishers over the first interval (golden-ratio sequence) so that they do
        // not all fire at the same instant.
        self.offset_ns = (f64::from(self.p.id) * 0.618_033_988_749_895).fract() * self.interval_ns;
        self.k = 0;
        self.active = self.n > 0;
        self.per_msg = match plan.shape {
            Scenario::Echo => 1,
            _ => u64::from(spec.room_joined.get(self.p.room as usize).copied().unwrap_or(0)),
        };
        l.st.borrow_mut().c.scheduled += self.n;
        Gauge::bump(&l.gauge.scheduled, self.n);
        let _ = spec.end_ns;
    }

    fn next_due(&self) -> Option<u64> {
        (self.active && self.k < self.n)
            .then(|| self.start_ns + (self.offset_ns + self.k as f64 * self.interval_ns) as u64)
    }

    /// Queues every message that is due by now.
    fn send_due(&mut self, l: &Local, conn: &mut Conn) {
        let now = mono_ns();
        let plan = &l.plan;
        let mut st = l.st.borrow_mut();
        let mut sent = 0;
        while let Some(due) = self.next_due() {
            if due > now {
                break;
            }
            let at = due.saturating_sub(plan.epoch_ns);
            let written = now.saturating_sub(plan.epoch_ns);
            let b = &mut self.buf;
            b.reserve(self.head.len() + l.padding.len() + 64);
            if plan.shape == Scenario::Echo {
                proto::write_header(b, b'2', &plan.namespace, Some(self.next_ack));
                self.next_ack += 1;
                b.put_u8(b'[');
                b.put_slice(&self.head);
                let _ = write!(b, ",{},{at},{written},", self.seq);
            } else {
                proto::write_header(b, b'2', &plan.namespace, None);
                b.put_slice(&self.head);
                let _ = write!(b, "{},{at},{written},", self.seq);
            }
            b.put_slice(&l.padding);
            b.put_u8(b']');
            conn.queue(b.split().freeze());
            let lag = now - due;
            record_ns(&mut st.lag, lag);
            if lag > 1_000_000 {
                st.c.late_sends += 1;
            }
            st.c.sent += 1;
            st.c.expected += self.per_msg;
            let pc = &mut st.pubs[self.p.id as usize];
            pc.sent += 1;
            pc.expected += self.per_msg;
            self.k += 1;
            self.seq += 1;
            sent += 1;
        }
        Gauge::bump(&l.gauge.sent, sent);
        Gauge::bump(&l.gauge.expected, sent * self.per_msg);
        if self.k >= self.n {
            self.active = false;
        }
    }
}

/// `connect`: this thread's share of the attempts, on the open-loop schedule.
async fn connect_schedule(l: Rc<Local>, gs: Vec<u32>, spec: Arc<PhaseSpec>) {
    let plan = l.plan.clone();
    Gauge::bump(&l.gauge.scheduled, gs.len() as u64);
    for (i, &g) in gs.iter().enumerate() {
        let due = match plan.connect_rate {
            Some(r) => spec.start_ns + (f64::from(g) / r * 1e9) as u64,
            None => spec.start_ns,
        };
        if due >= spec.end_ns {
            let rest = (gs.len() - i) as u64;
            l.st.borrow_mut().c.not_started += rest;
            Gauge::bump(&l.gauge.done, rest);
            return;
        }
        sleep_until(instant_at(due)).await;
        l.st.borrow_mut().c.attempts += 1;
        l.live.set(l.live.get() + 1);
        tokio::task::spawn_local(attempt(l.clone(), g, due, spec.end_ns));
    }
}

/// One `connect` attempt: connect, hold (answering pings), close.
async fn attempt(l: Rc<Local>, g: u32, due: u64, end_ns: u64) {
    let plan = l.plan.clone();
    let opened = {
        let _permit = l.sem.acquire().await;
        tokio::time::timeout(
            l.connect_timeout(),
            Conn::open(&l.ep, plan.is_polling(g), plan.source_ip(g)),
        )
        .await
    };
    Gauge::bump(&l.gauge.done, 1);
    let mut conn = match opened {
        Ok(Ok((conn, hs))) => {
            let mut st = l.st.borrow_mut();
            st.c.connects_ok += 1;
            st.c.received += 1;
            let from_schedule = mono_ns().saturating_sub(due);
            record_ns(&mut st.latency, from_schedule);
            record_ns(&mut st.interval, from_schedule);
            record_ns(&mut st.connect, hs.ns_connect_ns);
            record_ns(&mut st.eio_open, hs.eio_open_ns);
            record_ns(&mut st.ns_connect, hs.ns_connect_ns - hs.eio_open_ns);
            Gauge::bump(&l.gauge.received, 1);
            conn
        }
        failed => {
            l.st.borrow_mut().c.connect_failures += 1;
            match failed {
                Ok(Err(e)) => l.error(&e.0),
                _ => l.error("connect: timed out"),
            }
            l.task_done();
            return;
        }
    };
    l.gauge.connected.store(l.gauge.connected.load(Relaxed) + 1, Relaxed);
    let hold_end = (mono_ns() + (plan.hold_s * 1e9) as u64).min(end_ns.max(mono_ns()));
    let slot = l.ctl.slot();
    let mut seen = l.ctl.gen.get();
    let mut lost = None;
    loop {
        tokio::select! {
            _ = sleep_until(instant_at(hold_end)) => break,
            g = l.ctl.changed(slot, seen) => {
                seen = g;
                if matches!(l.ctl.get(), Control::End(_) | Control::Stop) {
                    break;
                }
            }
            r = conn.recv() => match r {
                Ok(Incoming::Text(p)) => {
                    for pkt in p.packets() {
                        if let Ok(Eio::Ping(d)) = proto::eio(pkt) {
                            conn.queue_pong(d);
                            l.st.borrow_mut().c.pings += 1;
                        }
                    }
                    if conn.flush().await.is_err() {
                        lost = Some("lost: write failed during hold".to_owned());
                        break;
                    }
                }
                Ok(Incoming::Binary) => {}
                Err(e) => {
                    lost = Some(format!("lost: {}", e.0));
                    break;
                }
            }
        }
    }
    l.ctl.release(slot);
    l.gauge.connected.store(l.gauge.connected.load(Relaxed) - 1, Relaxed);
    match lost {
        Some(e) => {
            l.st.borrow_mut().c.disconnects += 1;
            l.error(&e);
        }
        None => {
            conn.close(&plan.namespace).await;
            l.st.borrow_mut().c.closed_by_harness += 1;
        }
    }
    l.task_done();
}

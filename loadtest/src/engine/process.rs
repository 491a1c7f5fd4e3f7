//! The process level of the engine: splits this worker's connections over the client threads
//! (fanout publishers on a thread of their own), starts them, passes the coordinator's commands
//! on as `Control`, and merges the threads' reports, ticks and gauges into `FromWorker`
//! messages.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use super::control::{Control, PhaseSpec};
use super::measure::Gauge;
use super::thread::{thread_main, ThreadMsg};
use crate::link::{FromWorker, Gauges, StageReport, ToWorker};
use crate::plan::{Plan, Scenario};
use crate::stats::{hist_to_b64, new_hist};
use crate::sys::mono_ns;

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
                    Some(ToWorker::Start { phase, start_ns, end_ns, rate, room_joined }) => {
                        stage_cpu0 = cpu();
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

//! The `connect` scenario: a thread's share of the attempts on the open-loop schedule, and one
//! attempt (connect, hold while answering pings, close).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::sleep_until;

use super::control::{Control, PhaseSpec};
use super::measure::Gauge;
use super::thread::Local;
use crate::conn::{Conn, Incoming};
use crate::proto::{self, Eio};
use crate::stats::record_ns;
use crate::sys::{instant_at, mono_ns};

/// `connect`: this thread's share of the attempts, on the open-loop schedule.
pub(super) async fn connect_schedule(l: Rc<Local>, gs: Vec<u32>, spec: Arc<PhaseSpec>) {
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
            Conn::open(l.endpoint(g), plan.is_polling(g), plan.source_ip(g)),
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

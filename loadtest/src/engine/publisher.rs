//! The sending side of a connection: the open-loop `Publisher` (fanout, lobby) or requester
//! (echo), its schedule per phase and the messages it writes.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::control::PhaseSpec;
use super::measure::Gauge;
use super::thread::Local;
use crate::conn::Conn;
use crate::pacer::{origin_ns, EARLY_NS};
use crate::plan::{Publish, Scenario};
use crate::proto;
use crate::stats::record_ns;
use crate::sys::mono_ns;

/// An open-loop sender: message k of a phase is due at start + offset + k / rate, whether or not
/// earlier ones went out in time; lateness is measured, never hidden.
pub(super) struct Publisher {
    p: Publish,
    seq: u64,
    phase: Option<u32>,
    pub(super) active: bool,
    start_ns: u64,
    offset_ns: f64,
    interval_ns: f64,
    k: u64,
    n: u64,
    per_msg: u64,
    head: Bytes,
    buf: BytesMut,
    next_ack: u64,
    pub(super) slot: usize,
}

impl Publisher {
    pub(super) fn new(l: &Local, p: Publish) -> Publisher {
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

    pub(super) fn start(&mut self, l: &Local, spec: &PhaseSpec) {
        if self.phase == Some(spec.phase) {
            self.active = self.k < self.n;
            return;
        }
        let plan = &l.plan;
        let rate = plan.publisher_rate(&self.p, spec.rate);
        self.phase = Some(spec.phase);
        self.start_ns = spec.start_ns;
        self.interval_ns = 1e9 / rate;
        let duration_s = spec.end_ns.saturating_sub(spec.start_ns) as f64 / 1e9;
        self.n = (rate * duration_s + 1e-6).floor() as u64;
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
    }

    pub(super) fn next_due(&self) -> Option<u64> {
        (self.active && self.k < self.n)
            .then(|| self.start_ns + (self.offset_ns + self.k as f64 * self.interval_ns) as u64)
    }

    /// Queues every message that is due by now, or within [`EARLY_NS`] (the pacer's grouping:
    /// those take their send time as latency origin).
    pub(super) fn send_due(&mut self, l: &Local, conn: &mut Conn) {
        let now = mono_ns();
        let plan = &l.plan;
        let mut st = l.st.borrow_mut();
        let mut sent = 0;
        while let Some(due) = self.next_due() {
            if due > now + EARLY_NS {
                break;
            }
            let at = origin_ns(due, now).saturating_sub(plan.epoch_ns);
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
            let lag = now.saturating_sub(due);
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

//! The receiving side of a connection: pings answered, deliveries scanned on the hot path (no
//! JSON values), checked against the connection's room and counted per publisher through a
//! sequence window (duplicates, reordering, latency and transit), and per server in a cluster.

use super::measure::Gauge;
use super::thread::Local;
use crate::conn::{Conn, ConnError, Payload};
use crate::plan::Scenario;
use crate::proto::{self, Eio, Kind, Scan};
use crate::stats::{record_ns, Seen, SeqWindow};

/// The receiving side of a connection: one sequence window per publisher heard.
pub(super) struct Receiver {
    pub(super) trackers: Vec<(u32, SeqWindow)>,
    pub(super) room: Option<u32>,
    pub(super) own: Option<u32>,
    /// The server this connection is on, in a cluster (its deliveries are counted apart).
    pub(super) server: Option<usize>,
    /// `recover`: the last offset received (an event's last argument when it is a string,
    /// as socket.io-client keeps it).
    pub(super) offset: Option<String>,
}

impl Receiver {
    /// Handles one received message (`now`: when it arrived, in ns).
    pub(super) fn handle(
        &mut self,
        l: &Local,
        conn: &mut Conn,
        payload: &Payload,
        now: u64,
    ) -> Result<(), ConnError> {
        for p in payload.packets() {
            self.packet(l, p, now, &mut |d| conn.queue_pong(d))?;
        }
        Ok(())
    }

    /// Handles one Engine.IO packet; `pong` queues the answer to a PING with its data.
    pub(super) fn packet(
        &mut self,
        l: &Local,
        p: &[u8],
        now: u64,
        pong: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ConnError> {
        match proto::eio(p) {
            Ok(Eio::Message(m)) => self.sio(l, m, now)?,
            Ok(Eio::Ping(d)) => {
                pong(d);
                l.st.borrow_mut().c.pings += 1;
            }
            Ok(Eio::Close) => return Err(ConnError("closed by server (engine.io close)".into())),
            Ok(Eio::Binary) => l.st.borrow_mut().c.binary_frames += 1,
            Ok(Eio::Open(_)) => l.malformed(proto::Malformed("OPEN after the handshake")),
            Ok(_) => {}
            Err(m) => l.malformed(m),
        }
        Ok(())
    }

    /// A Socket.IO packet that came before the CONNECT reply of a comeback (a missed one).
    pub(super) fn early(&mut self, l: &Local, m: &[u8], now: u64) -> Result<(), ConnError> {
        self.sio(l, m, now)
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
        if l.plan.recover.is_some() && s.kind == Kind::Event && s.ack.is_none() {
            if let Some(o) = proto::trailing_string(s.data) {
                self.offset = Some(o.to_owned());
            }
        }
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
        let mut srv = self.server.map(|s| &mut st.servers[s]);
        match seen {
            Seen::Duplicate => {
                st.c.duplicates += 1;
                pc.duplicates += 1;
                if let Some(s) = srv {
                    s.counts.duplicates += 1;
                }
                return;
            }
            Seen::New => {}
            Seen::Reordered | Seen::TooOld => {
                st.c.reordered += 1;
                pc.reordered += 1;
                if let Some(s) = srv.as_mut() {
                    s.counts.reordered += 1;
                }
                if seen == Seen::TooOld {
                    st.c.unchecked_late += 1;
                }
            }
        }
        st.c.received += 1;
        pc.received += 1;
        if let Some(s) = srv {
            s.counts.received += 1;
            record_ns(&mut s.latency, latency);
        }
        // Into this second's histogram only: it is folded into the stage's at each tick.
        record_ns(&mut st.interval, latency);
        record_ns(&mut st.transit, transit);
        Gauge::bump(&l.gauge.received, 1);
    }
}

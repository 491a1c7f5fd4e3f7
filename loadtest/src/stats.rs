//! Measurements: counters (mergeable across threads and worker processes), latency histograms
//! (HDR, microseconds, shipped between processes as V2-deflate base64), per-publisher sequence
//! tracking (deliveries, duplicates, reordering) and errors by reason.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram holds exactly: one hour, in microseconds. Larger values saturate.
pub const HIST_MAX_US: u64 = 3_600_000_000;

/// A new latency histogram (1 µs .. 1 h, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Records a latency given in nanoseconds (at least 1 µs, saturating at [`HIST_MAX_US`]).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).clamp(1, HIST_MAX_US));
}

/// A histogram as it travels in JSON: V2-deflate, base64.
pub fn hist_to_b64(h: &Histogram<u64>) -> String {
    let mut out = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut out).expect("serializing into a Vec cannot fail");
    crate::b64::encode(&out)
}

/// The inverse of [`hist_to_b64`].
pub fn hist_from_b64(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = crate::b64::decode(s).ok_or_else(|| anyhow::anyhow!("bad base64 histogram"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
    // Normalise the bounds so that adding never fails.
    let mut out = new_hist();
    out.add(&h).map_err(|e| anyhow::anyhow!("histogram out of range: {e:?}"))?;
    Ok(out)
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// 99.99th.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Every counter of a run. Each is a plain sum, so merging threads and workers is `+`.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* #[serde(default)] pub $name: u64, )*
        }
        impl Counters {
            /// Adds `o` into `self`.
            pub fn merge(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }
        }
    };
}

counters! {
    /// Connections fully established (Engine.IO open and namespace connect), reconnects included.
    connects_ok,
    /// Connection attempts that failed (the reason is in `errors`).
    connect_failures,
    /// Joins acknowledged with `true`.
    joins_ok,
    /// Joins refused, unanswered or failed.
    join_failures,
    /// Messages due on the publishers' open-loop schedule in the measured phases.
    scheduled,
    /// Messages written by publishers (or echo requests).
    sent,
    /// Deliveries that should arrive for what was sent (sent x subscribers joined in the room).
    expected,
    /// Distinct deliveries received (duplicates not included).
    received,
    /// Deliveries received again with a sequence number already seen.
    duplicates,
    /// Deliveries that arrived after a later one of the same publisher.
    reordered,
    /// Deliveries too far behind the newest one to be checked for duplication.
    unchecked_late,
    /// Publishes sent more than 1 ms after their scheduled time (the harness fell behind).
    late_sends,
    /// Deliveries read with the JSON fallback because the fast scanner did not fit.
    slow_path_parses,
    /// Engine.IO pings answered.
    pings,
    /// Socket.IO packets of other events or other namespaces (e.g. the demo app's `auth`).
    other_packets,
    /// Binary frames or attachments (ignored).
    binary_frames,
    /// Malformed packets from the server (the reason is in `errors`).
    malformed,
    /// Reconnections after a lost connection (only with `--reconnect`).
    reconnects,
    /// Connections lost during the run, not closed by the harness.
    disconnects,
    /// Connections the harness closed itself at the end or after `--hold`.
    closed_by_harness,
    /// `recover`: connections cut on purpose (to come back and recover).
    cuts,
    /// `recover`: comebacks that sent a `pid` (and offset).
    recover_attempts,
    /// `recover`: comebacks that got their socket back (the same id).
    recovered,
    /// `recover`: comebacks that got a new session instead.
    recover_refused,
    /// `recover`: comebacks that connected to another server than the one they were cut
    /// from (in a cluster, every one: each comes back on the next server).
    recover_other_server,
    /// `recover`: of those, the ones that got their socket back.
    recovered_other_server,
    /// `connect`: attempts scheduled.
    attempts,
    /// `connect`: attempts not started because `--duration` ran out.
    not_started,
    /// Connections still open when the measurement ended (`idle`: held to the end).
    held_at_end,
}

/// Errors by reason, e.g. `"connect: connection refused": 3`.
pub type Errors = BTreeMap<String, u64>;

/// Adds `o` into `e`.
pub fn merge_errors(e: &mut Errors, o: &Errors) {
    for (k, v) in o {
        *e.entry(k.clone()).or_default() += v;
    }
}

/// Counts of one publisher as seen by all its receivers; also of the deliveries to the
/// subscribers of one server of a cluster (there `sent` stays 0, and `expected` is worked out
/// by the report from what the publishers sent and who joined).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PubCounts {
    /// Messages it sent.
    pub sent: u64,
    /// Deliveries that should arrive.
    pub expected: u64,
    /// Distinct deliveries.
    pub received: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reordered deliveries.
    pub reordered: u64,
}

impl PubCounts {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &PubCounts) {
        self.sent += o.sent;
        self.expected += o.expected;
        self.received += o.received;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
    }
}

/// How many sequence numbers behind the newest one a receiver still checks for duplicates.
const WINDOW: u64 = 1024;

/// One receiver's view of one publisher: the newest sequence number and a bitmap of the
/// [`WINDOW`] before it. Fixed size, no allocation per message.
#[derive(Debug, Clone)]
pub struct SeqWindow {
    newest: Option<u64>,
    bits: [u64; (WINDOW / 64) as usize],
}

/// What one delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time, in order.
    New,
    /// First time, after a later one.
    Reordered,
    /// Already seen.
    Duplicate,
    /// Older than the window: counted as received and reordered, not checked for duplication.
    TooOld,
}

impl Default for SeqWindow {
    fn default() -> Self {
        SeqWindow { newest: None, bits: [0; (WINDOW / 64) as usize] }
    }
}

impl SeqWindow {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = (seq % WINDOW) as usize;
        (&mut self.bits[i / 64], 1u64 << (i % 64))
    }

    /// Records sequence number `seq`.
    pub fn see(&mut self, seq: u64) -> Seen {
        match self.newest {
            Some(n) if seq <= n => {
                if n - seq >= WINDOW {
                    return Seen::TooOld;
                }
                let (word, mask) = self.bit(seq);
                if *word & mask != 0 {
                    Seen::Duplicate
                } else {
                    *word |= mask;
                    Seen::Reordered
                }
            }
            newest => {
                // Clear the slots between the old newest and seq: they now stand for new numbers.
                let from = newest.map_or(seq, |n| n + 1);
                if seq - from >= WINDOW {
                    self.bits = [0; (WINDOW / 64) as usize];
                } else {
                    for s in from..seq {
                        let (word, mask) = self.bit(s);
                        *word &= !mask;
                    }
                }
                let (word, mask) = self.bit(seq);
                *word |= mask;
                self.newest = Some(seq);
                Seen::New
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_classifies() {
        let mut w = SeqWindow::default();
        assert_eq!(w.see(0), Seen::New);
        assert_eq!(w.see(1), Seen::New);
        assert_eq!(w.see(1), Seen::Duplicate);
        assert_eq!(w.see(3), Seen::New);
        assert_eq!(w.see(2), Seen::Reordered);
        assert_eq!(w.see(2), Seen::Duplicate);
        assert_eq!(w.see(3000), Seen::New);
        assert_eq!(w.see(3), Seen::TooOld);
        assert_eq!(w.see(2999), Seen::Reordered);
        assert_eq!(w.see(2999), Seen::Duplicate);
        // A slot reused for a new number is cleared.
        assert_eq!(w.see(3000 + WINDOW - 1), Seen::New);
        assert_eq!(w.see(3000 + WINDOW - 2), Seen::Reordered);
        let mut w = SeqWindow::default();
        assert_eq!(w.see(5000), Seen::New);
        assert_eq!(w.see(4999), Seen::Reordered);
    }

    #[test]
    fn window_exact_over_many() {
        let mut w = SeqWindow::default();
        for s in 0..10_000 {
            assert_eq!(w.see(s), Seen::New);
            if s % 7 == 0 {
                assert_eq!(w.see(s), Seen::Duplicate);
            }
        }
    }

    #[test]
    fn histograms_travel() {
        let mut h = new_hist();
        for v in [1u64, 10, 100, 1000, 10_000_000] {
            record_ns(&mut h, v * 1000);
        }
        record_ns(&mut h, 0);
        record_ns(&mut h, u64::MAX);
        let back = hist_from_b64(&hist_to_b64(&h)).unwrap();
        assert_eq!(back.len(), 7);
        assert_eq!(Percentiles::of(&back).max, Percentiles::of(&h).max);
        assert!(hist_from_b64("Zm9v").is_err());
        assert!(hist_from_b64("!!").is_err());
    }

    #[test]
    fn counters_merge() {
        let mut a = Counters { sent: 1, received: 2, ..Default::default() };
        a.merge(&Counters { sent: 3, duplicates: 1, ..Default::default() });
        assert_eq!((a.sent, a.received, a.duplicates), (4, 2, 1));
    }
}

//! A client thread's measurements: the live counters the aggregator reads (`Gauge`) and the
//! counters and histograms of the current stage (`Stats`), taken as a `StageReport`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

use crate::link::{Hists, ServerStage, StageReport};
use crate::plan::Plan;
use crate::stats::{hist_to_b64, new_hist, Counters, Errors, PubCounts};

/// One thread's live counters, read by the aggregator. Only the owning thread writes.
#[derive(Default)]
#[repr(align(128))]
pub(super) struct Gauge {
    pub(super) connected: AtomicI64,
    pub(super) scheduled: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) expected: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) done: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Gauge {
    pub(super) fn bump(a: &AtomicU64, n: u64) {
        a.store(a.load(Relaxed) + n, Relaxed);
    }
}

/// A thread's measurements of the current stage.
pub(super) struct Stats {
    pub(super) c: Counters,
    pub(super) errors: Errors,
    /// The stage's latencies, but for the current second's (`interval`, folded in at each
    /// tick and when the stage is taken): one record per delivery, not two.
    pub(super) latency: Histogram<u64>,
    pub(super) interval: Histogram<u64>,
    pub(super) lag: Histogram<u64>,
    pub(super) transit: Histogram<u64>,
    pub(super) connect: Histogram<u64>,
    pub(super) eio_open: Histogram<u64>,
    pub(super) ns_connect: Histogram<u64>,
    /// `recover`: from the comeback's first byte to its CONNECT reply, the replay included.
    pub(super) recover: Histogram<u64>,
    pub(super) pubs: Vec<PubCounts>,
    pub(super) joined: Vec<u32>,
    /// Per server of a cluster (empty otherwise).
    pub(super) servers: Vec<ServerStats>,
}

/// What the subscribers on one server of a cluster measured (see `ServerStage`).
pub(super) struct ServerStats {
    pub(super) counts: PubCounts,
    pub(super) latency: Histogram<u64>,
    pub(super) joined: Vec<u32>,
    /// `recover`: the comebacks that connected to this server, those that recovered, and
    /// the time they took.
    pub(super) comebacks: u64,
    pub(super) recovered: u64,
    pub(super) recover: Histogram<u64>,
}

impl Stats {
    pub(super) fn new(plan: &Plan) -> Stats {
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
            recover: new_hist(),
            pubs: vec![PubCounts::default(); plan.publisher_count() as usize],
            joined: vec![0; plan.rooms as usize],
            servers: if plan.is_cluster() {
                (0..plan.servers.len())
                    .map(|_| ServerStats {
                        counts: PubCounts::default(),
                        latency: new_hist(),
                        joined: vec![0; plan.rooms as usize],
                        comebacks: 0,
                        recovered: 0,
                        recover: new_hist(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The current second's latencies, folded into the stage's; a new second starts.
    pub(super) fn fold_interval(&mut self) -> Histogram<u64> {
        let h = std::mem::replace(&mut self.interval, new_hist());
        // Same bounds and precision (`new_hist`): adding cannot fail.
        let _ = self.latency.add(&h);
        h
    }

    /// Takes the stage's report and starts a new stage.
    pub(super) fn take(&mut self) -> StageReport {
        let _ = self.fold_interval();
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
        let take_joined = |j: &mut Vec<u32>| {
            let n = j.len();
            std::mem::replace(j, vec![0; n])
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
                recover: h(&mut self.recover),
            },
            pubs,
            joined: take_joined(&mut self.joined),
            servers: self
                .servers
                .iter_mut()
                .map(|s| ServerStage {
                    counts: std::mem::take(&mut s.counts),
                    latency: h(&mut s.latency),
                    joined: take_joined(&mut s.joined),
                    comebacks: std::mem::take(&mut s.comebacks),
                    recovered: std::mem::take(&mut s.recovered),
                    recover: h(&mut s.recover),
                })
                .collect(),
            cpu_us: 0,
        }
    }
}

//! From a coordinator outcome to the [`Report`]: the phases merged, the per-publisher,
//! room, timeline, ramp, connect, server, cluster and harness accounting, the notes and the
//! verdict.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::document::{
    ClusterReport, ClusterServer, ConnectReport, Connections, Environment, GroupReport,
    HarnessReport, Hop, PubRow, Publishers, RampReport, RecoveryReport, RecoveryServer, Report,
    Rooms, ServerReport, StepRow, TimelineRow,
};
use crate::coord::{fmt_us, step_holds, tally, Outcome, PhaseOutcome};
use crate::link::StageReport;
use crate::plan::Scenario;
use crate::stats::{hist_from_b64, merge_errors, new_hist, Percentiles, PubCounts};
use crate::sys;

/// Harness CPU at or above this share of its cores means the harness was the bottleneck.
pub const BOTTLENECK_CPU_SHARE: f64 = 0.90;

fn hist(s: &str) -> Histogram<u64> {
    hist_from_b64(s).unwrap_or_else(|_| new_hist())
}

/// Builds the report of an outcome.
pub fn build(o: &Outcome) -> Report {
    let plan = &*o.plan;
    let mut measured = StageReport::default();
    let mut latency = new_hist();
    let mut lag = new_hist();
    let mut transit = new_hist();
    let mut connect = hist(&o.setup.hists.connect);
    let mut eio = hist(&o.setup.hists.eio_open);
    let mut ns = hist(&o.setup.hists.ns_connect);
    let mut pubs: BTreeMap<u32, PubCounts> = BTreeMap::new();
    let (mut measured_s, mut cpu_wall_s, mut harness_cpu, mut server_cpu) =
        (0.0, 0.0, 0u64, None::<u64>);
    let mut steps = Vec::new();
    let cores = o.cores_available.max(1) as f64;
    for p in &o.phases {
        let r = &p.report;
        measured.counters.merge(&r.counters);
        merge_errors(&mut measured.errors, &r.errors);
        let l = hist(&r.hists.latency);
        let _ = latency.add(&l);
        let _ = lag.add(hist(&r.hists.lag));
        let _ = transit.add(hist(&r.hists.transit));
        let _ = connect.add(hist(&r.hists.connect));
        let _ = eio.add(hist(&r.hists.eio_open));
        let _ = ns.add(hist(&r.hists.ns_connect));
        for (id, c) in &r.pubs {
            pubs.entry(*id).or_default().merge(c);
        }
        measured_s += p.wall_s;
        cpu_wall_s += p.cpu_wall_s;
        harness_cpu += p.harness_cpu_us;
        if let Some(&Some(c)) = p.server_cpu_us.first() {
            server_cpu = Some(server_cpu.unwrap_or(0) + c);
        }
        if let Some(rp) = &plan.ramp {
            let (expected, received) = tally(plan, r);
            steps.push(StepRow {
                rate: p.rate,
                expected,
                received,
                lost: expected.saturating_sub(received),
                deliveries_per_sec: round2(received as f64 / plan.duration_s),
                latency_us: Percentiles::of(&l),
                harness_cpu_share: round3(p.harness_cpu_us as f64 / (p.cpu_wall_s * 1e6 * cores)),
                held: step_holds(plan, r, rp.p99_ms, rp.max_loss),
                cluster: plan.is_cluster().then(|| cluster(o, std::slice::from_ref(p))),
            });
        }
    }
    let (expected, received) = tally(plan, &measured);
    let c = &measured.counters;
    let scheduled_s = plan.duration_s * o.phases.len().max(1) as f64;
    let mut errors = o.setup.errors.clone();
    merge_errors(&mut errors, &measured.errors);
    merge_errors(&mut errors, &o.finish.errors);

    let pub_room = |id: u32| match plan.shape {
        Scenario::Fanout => id / plan.publishers.max(1),
        Scenario::Lobby => id % plan.rooms.max(1),
        _ => 0,
    };
    let mut list = Vec::new();
    let (mut with_loss, mut with_anomalies) = (0, 0);
    for (id, c) in &pubs {
        let lost = c.expected.saturating_sub(c.received);
        with_loss += u32::from(lost > 0);
        with_anomalies += u32::from(c.duplicates + c.reordered > 0);
        if list.len() < 10_000 {
            list.push(PubRow { id: *id, room: pub_room(*id), counts: *c, lost });
        }
    }
    let joined = &o.setup.joined;

    let mut notes = Vec::new();
    let harness_share =
        if cpu_wall_s > 0.0 { harness_cpu as f64 / (cpu_wall_s * 1e6 * cores) } else { 0.0 };
    let mut bottleneck = false;
    if harness_share >= BOTTLENECK_CPU_SHARE {
        bottleneck = true;
        notes.push(format!(
            "the harness used {:.0}% of its {} core(s): IT was the bottleneck, not necessarily the server; \
             give it more cores, fewer clients per process, or pin it apart from the server",
            harness_share * 100.0,
            o.cores_available
        ));
    }
    if c.sent < c.scheduled {
        bottleneck = true;
        notes.push(format!(
            "{} of {} scheduled messages were never sent: the harness could not keep its schedule",
            c.scheduled - c.sent,
            c.scheduled
        ));
    }
    let lagp = Percentiles::of(&lag);
    if c.sent > 0 && c.late_sends * 100 > c.sent {
        notes.push(format!(
            "{} sends ({:.1}%) left more than 1 ms after their scheduled time (lag p99 {}): the \
             harness or the socket's write side fell behind; latencies include that lag",
            c.late_sends,
            c.late_sends as f64 * 100.0 / c.sent as f64,
            fmt_us(lagp.p99)
        ));
    }
    if c.slow_path_parses > 0 {
        notes.push(format!("{} deliveries needed the JSON fallback parser", c.slow_path_parses));
    }
    let server = o.servers.first().map(|s| {
        let base = s.baseline.map_or(0, |x| x.rss_bytes);
        let conn = s.connected.map_or(0, |x| x.rss_bytes);
        let conns = o.connected.max(1) as f64;
        let cpu = server_cpu.unwrap_or(0);
        ServerReport {
            pid: plan.server_pids[0],
            rss_baseline_bytes: base,
            rss_connected_bytes: conn,
            rss_peak_bytes: s.peak_rss,
            rss_end_bytes: s.end.map_or(0, |x| x.rss_bytes),
            bytes_per_connection: round2(conn.saturating_sub(base) as f64 / conns),
            cpu_us: cpu,
            cpu_share_of_one_core: share_of_one_core(cpu, cpu_wall_s),
            cpu_us_per_delivery: per(cpu, received),
            cpu_us_per_broadcast: per(cpu, c.sent),
            vanished: s.vanished,
        }
    });
    if let Some(s) = &server {
        if s.vanished {
            notes.push("the server process went away during the run".into());
        }
    }
    let mut timeline = Vec::new();
    let rate_at: BTreeMap<u64, (u64, u64)> = o.rates.iter().map(|&(s, a, b)| (s, (a, b))).collect();
    for (&t, h) in &o.timeline {
        let p = Percentiles::of(h);
        let diff = |f: fn(&(u64, u64)) -> u64| match (rate_at.get(&t), rate_at.get(&(t + 1))) {
            (Some(a), Some(b)) => f(b).saturating_sub(f(a)),
            _ => 0,
        };
        timeline.push(TimelineRow {
            t,
            count: p.count,
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
            p999: p.p999,
            max: p.max,
            sent: diff(|x| x.0),
            received: diff(|x| x.1),
        });
    }
    let u = sys::uname();
    let lost = expected.saturating_sub(received);
    // Throughput over the scheduled time; a connect storm over the time it really took.
    let per_sec = |n: u64| match plan.shape {
        Scenario::Connect if measured_s > 0.0 => round2(n as f64 / measured_s),
        Scenario::Idle => 0.0,
        _ => round2(n as f64 / scheduled_s),
    };
    let connect_report = (plan.shape == Scenario::Connect).then(|| {
        let closed = c.closed_by_harness + o.finish.counters.closed_by_harness;
        ConnectReport {
            planned: plan.clients,
            attempts: c.attempts,
            succeeded: c.connects_ok,
            failed: c.connect_failures,
            not_started: c.not_started,
            connects_per_sec: per_sec(c.connects_ok),
            closed_by_harness: closed,
            lost_while_held: c.disconnects + o.finish.counters.disconnects,
            disconnects_per_sec: per_sec(closed),
            hold_s: plan.hold_s,
        }
    });
    let recovery = plan.recover.map(|rp| {
        let mut h = new_hist();
        for p in &o.phases {
            let _ = h.add(hist(&p.report.hists.recover));
        }
        RecoveryReport {
            cuts: c.cuts,
            attempts: c.recover_attempts,
            recovered: c.recovered,
            refused: c.recover_refused,
            missing: c.cuts.saturating_sub(c.recover_attempts),
            time_to_recover_us: Percentiles::of(&h),
            down_ms: rp.down_s * 1000.0,
            other_server: c.recover_other_server,
            recovered_on_other_server: c.recovered_other_server,
            servers: recovery_servers(o),
        }
    });
    let every_one_back = recovery.as_ref().is_none_or(|r| r.cuts > 0 && r.recovered == r.cuts);
    let clean = lost == 0
        && every_one_back
        && c.duplicates == 0
        && c.reordered == 0
        && errors.is_empty()
        && !bottleneck
        && expected > 0;
    Report {
        scenario: plan.scenario.name().into(),
        expected,
        received,
        lost,
        duplicates: c.duplicates,
        reordered: c.reordered,
        deliveries_per_sec: per_sec(received),
        latency_us: Percentiles::of(&latency),
        clean,
        scheduled: c.scheduled,
        sent: c.sent,
        sent_per_sec: per_sec(c.sent),
        measured_s: round3(measured_s),
        setup_s: round3(o.setup_s),
        wall_s: round3(o.wall_s),
        connections: Connections {
            planned: plan.connections(),
            connected: o.connected,
            polling: (0..plan.connections()).filter(|&g| plan.is_polling(g)).count() as u32,
        },
        connect_us: Percentiles::of(&connect),
        eio_open_us: Percentiles::of(&eio),
        ns_connect_us: Percentiles::of(&ns),
        publish_lag_us: lagp,
        transit_us: Percentiles::of(&transit),
        counters: measured.counters.clone(),
        setup_counters: o.setup.counters.clone(),
        closing_counters: o.finish.counters.clone(),
        errors,
        publishers: Publishers {
            count: plan.publisher_count(),
            with_loss,
            with_anomalies,
            truncated: pubs.len() > list.len(),
            list,
        },
        rooms: Rooms {
            count: plan.rooms,
            joined_total: joined.iter().map(|&x| u64::from(x)).sum(),
            joined_min: joined.iter().copied().min().unwrap_or(0),
            joined_max: joined.iter().copied().max().unwrap_or(0),
        },
        timeline,
        ramp: plan.ramp.as_ref().map(|r| RampReport {
            shape: plan.shape_name().into(),
            p99_objective_ms: r.p99_ms,
            max_loss: r.max_loss,
            // The steps run in order until one broke, then (with --refine) between the two:
            // the highest that held is the highest of any step.
            highest_rate_held: steps.iter().filter(|s| s.held).map(|s| s.rate).reduce(f64::max),
            steps,
        }),
        connect: connect_report,
        recovery,
        server,
        cluster: plan.is_cluster().then(|| cluster(o, &o.phases)),
        harness: HarnessReport {
            cpu_us: harness_cpu,
            cpu_share_of_available: round3(harness_share),
            cpu_us_per_delivery: per(harness_cpu, received),
            cores_available: o.cores_available,
            workers: plan.workers,
            threads_per_process: plan.threads,
            total_cpu_us: sys::cpu_us(false) + sys::cpu_us(true),
            bottleneck,
            notes,
        },
        config: plan.clone(),
        environment: Environment {
            cores: sys::cores_online(),
            cores_available: o.cores_available,
            kernel: u.release,
            kernel_version: u.version,
            os: u.sysname,
            machine: u.machine,
            hostname: u.nodename,
            fd_limit: o.fd_limit,
            ephemeral_ports: std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
                .unwrap_or_default(),
            harness_version: env!("CARGO_PKG_VERSION").into(),
        },
    }
}

/// The cluster accounting of `phases` (a run's, or one ramp step): each server's subscribers
/// (expected = what each publisher sent x its room's subscribers on that server), local and
/// remote, their difference, and each server's CPU per broadcast.
fn cluster(o: &Outcome, phases: &[PhaseOutcome]) -> ClusterReport {
    let plan = &*o.plan;
    let n = plan.servers.len();
    let no_joins = Vec::new();
    let joined: Vec<&Vec<u32>> =
        (0..n).map(|s| o.setup.servers.get(s).map_or(&no_joins, |x| &x.joined)).collect();
    let mut counts = vec![PubCounts::default(); n];
    let latency = server_latencies(n, phases);
    let mut cpu: Vec<Option<u64>> = vec![None; n];
    let (mut broadcasts, mut cpu_wall_s) = (0, 0.0);
    for p in phases {
        let r = &p.report;
        broadcasts += r.counters.sent;
        cpu_wall_s += p.cpu_wall_s;
        for (id, pc) in &r.pubs {
            let room = (id / plan.publishers.max(1)) as usize;
            for (c, j) in counts.iter_mut().zip(&joined) {
                c.expected += pc.sent * u64::from(j.get(room).copied().unwrap_or(0));
            }
        }
        for (c, st) in counts.iter_mut().zip(&r.servers) {
            c.merge(&st.counts);
        }
        for (total, c) in cpu.iter_mut().zip(&p.server_cpu_us) {
            if let Some(c) = c {
                *total = Some(total.unwrap_or(0) + c);
            }
        }
    }
    let subscribers = |s: usize| joined[s].iter().map(|&x| u64::from(x)).sum::<u64>();
    let group = |subscribers: u64, c: &PubCounts, h: &Histogram<u64>| GroupReport {
        subscribers,
        expected: c.expected,
        received: c.received,
        lost: c.expected.saturating_sub(c.received),
        duplicates: c.duplicates,
        reordered: c.reordered,
        latency_us: Percentiles::of(h),
    };
    let mut remote_counts = PubCounts::default();
    for c in &counts[1..] {
        remote_counts.merge(c);
    }
    let (local_latency, remote_latency) = local_and_remote(&latency);
    let local = group(subscribers(0), &counts[0], &local_latency);
    let remote = group((1..n).map(subscribers).sum(), &remote_counts, &remote_latency);
    let diff =
        |f: fn(&Percentiles) -> u64| f(&remote.latency_us) as i64 - f(&local.latency_us) as i64;
    let redis_hop_us = Hop { p50: diff(|p| p.p50), p99: diff(|p| p.p99) };
    let servers = (0..n)
        .map(|s| ClusterServer {
            url: plan.servers[s].url.clone(),
            publishers: s == 0,
            deliveries: group(subscribers(s), &counts[s], &latency[s]),
            cpu_us: cpu[s],
            cpu_share_of_one_core: cpu[s].map(|c| share_of_one_core(c, cpu_wall_s)),
            cpu_us_per_broadcast: cpu[s].map(|c| per(c, broadcasts)),
        })
        .collect();
    ClusterReport {
        broadcasts,
        broadcasts_per_sec: round2(broadcasts as f64 / (plan.duration_s * phases.len() as f64)),
        local,
        remote,
        redis_hop_us,
        servers,
    }
}

/// `recover` in a cluster: each server as the destination of the comebacks (none when the
/// plan is not a cluster).
fn recovery_servers(o: &Outcome) -> Vec<RecoveryServer> {
    let plan = &*o.plan;
    if !plan.is_cluster() {
        return Vec::new();
    }
    let n = plan.servers.len();
    let mut out: Vec<RecoveryServer> = (0..n)
        .map(|s| RecoveryServer {
            url: plan.servers[s].url.clone(),
            from: (0..n)
                .find(|&f| plan.comeback_server(f) == s)
                .map_or_else(String::new, |f| plan.servers[f].url.clone()),
            attempts: 0,
            recovered: 0,
            refused: 0,
            time_to_recover_us: Percentiles::default(),
        })
        .collect();
    let mut hs = vec![new_hist(); n];
    for p in &o.phases {
        for ((r, h), st) in out.iter_mut().zip(&mut hs).zip(&p.report.servers) {
            r.attempts += st.comebacks;
            r.recovered += st.recovered;
            let _ = h.add(hist(&st.recover));
        }
    }
    for (r, h) in out.iter_mut().zip(&hs) {
        r.refused = r.attempts.saturating_sub(r.recovered);
        r.time_to_recover_us = Percentiles::of(h);
    }
    out
}

/// The latency of each server's subscribers over `phases` (empty histograms when the plan is
/// not a cluster).
fn server_latencies(n: usize, phases: &[PhaseOutcome]) -> Vec<Histogram<u64>> {
    let mut out = vec![new_hist(); n];
    for p in phases {
        for (h, st) in out.iter_mut().zip(&p.report.servers) {
            let _ = h.add(hist(&st.latency));
        }
    }
    out
}

/// The first server's histogram, and the others' merged.
fn local_and_remote(each: &[Histogram<u64>]) -> (Histogram<u64>, Histogram<u64>) {
    let mut remote = new_hist();
    for h in each.iter().skip(1) {
        let _ = remote.add(h);
    }
    (each.first().cloned().unwrap_or_else(new_hist), remote)
}

/// `n / d`, rounded (0 when `d` is 0).
fn per(n: u64, d: u64) -> f64 {
    if d > 0 {
        round3(n as f64 / d as f64)
    } else {
        0.0
    }
}

/// CPU µs over `wall_s` seconds as a share of one core.
fn share_of_one_core(cpu_us: u64, wall_s: f64) -> f64 {
    if wall_s > 0.0 {
        round3(cpu_us as f64 / (wall_s * 1e6))
    } else {
        0.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The merged latency histograms of all phases of an outcome, named: every delivery
/// (`latency`), then in a cluster those to the publishers' server (`local`) and to the others
/// (`remote`).
pub fn run_latencies(o: &Outcome) -> Vec<(&'static str, Histogram<u64>)> {
    let mut all = new_hist();
    for p in &o.phases {
        let _ = all.add(hist(&p.report.hists.latency));
    }
    let mut out = vec![("latency", all)];
    if o.plan.is_cluster() {
        let (local, remote) = local_and_remote(&server_latencies(o.plan.servers.len(), &o.phases));
        out.push(("local", local));
        out.push(("remote", remote));
    }
    out
}

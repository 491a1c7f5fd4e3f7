//! The results: the JSON document (`--json`), the human table, and the self-contained HTML
//! report with inline SVG charts (`--report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::coord::{fmt_us, step_holds, tally, Outcome};
use crate::link::StageReport;
use crate::plan::{Plan, Scenario};
use crate::stats::{
    hist_from_b64, merge_errors, new_hist, Counters, Errors, Percentiles, PubCounts,
};
use crate::sys;

/// Harness CPU at or above this share of its cores means the harness was the bottleneck.
pub const BOTTLENECK_CPU_SHARE: f64 = 0.90;

/// The JSON document. The first fields are the fixed interface; the rest is everything else.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Deliveries that should arrive (fanout, lobby: sent x subscribers joined; echo: requests
    /// sent; connect: attempts; idle: connections).
    pub expected: u64,
    /// Distinct deliveries received (echo: acks; connect: connections made; idle: held).
    pub received: u64,
    /// expected - received, after the drain.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Deliveries that arrived after a later one of the same publisher.
    pub reordered: u64,
    /// received / measured seconds.
    pub deliveries_per_sec: f64,
    /// Latency from the scheduled send time (echo: RTT; connect: from scheduled attempt to
    /// namespace connected), microseconds.
    pub latency_us: Percentiles,
    /// Whether the run is clean: nothing lost, duplicated or reordered, no errors, and the
    /// harness was not the bottleneck.
    pub clean: bool,
    /// Messages due on the open-loop schedule.
    pub scheduled: u64,
    /// Messages sent.
    pub sent: u64,
    /// sent / measured seconds.
    pub sent_per_sec: f64,
    /// Measured seconds (schedule plus drain, summed over phases).
    pub measured_s: f64,
    /// Seconds to connect and join everyone.
    pub setup_s: f64,
    /// Seconds of the whole run.
    pub wall_s: f64,
    /// Connections.
    pub connections: Connections,
    /// Handshake latencies (µs): whole, Engine.IO OPEN, namespace CONNECT, publisher lag.
    pub connect_us: Percentiles,
    /// Until the Engine.IO OPEN packet.
    pub eio_open_us: Percentiles,
    /// From OPEN to namespace CONNECT.
    pub ns_connect_us: Percentiles,
    /// How late publishers sent behind their schedule.
    pub publish_lag_us: Percentiles,
    /// From the actual write to the receive: `latency_us` without the sender's lag (timer
    /// granularity, harness saturation). Not free of coordinated omission: read latency_us.
    pub transit_us: Percentiles,
    /// Counters of the measured phases.
    pub counters: Counters,
    /// Counters of the connect-and-join stage.
    pub setup_counters: Counters,
    /// Counters of the closing stage.
    pub closing_counters: Counters,
    /// Errors by reason, all stages.
    pub errors: Errors,
    /// Publishers.
    pub publishers: Publishers,
    /// Rooms.
    pub rooms: Rooms,
    /// Latency percentiles and rates per second of the measured phases.
    pub timeline: Vec<TimelineRow>,
    /// Ramp steps.
    pub ramp: Option<RampReport>,
    /// `connect` scenario details.
    pub connect: Option<ConnectReport>,
    /// Server process, with `--server-pid`.
    pub server: Option<ServerReport>,
    /// The harness itself.
    pub harness: HarnessReport,
    /// The full configuration.
    pub config: Plan,
    /// The machine.
    pub environment: Environment,
}

/// Connections.
#[derive(Debug, Serialize)]
pub struct Connections {
    /// Planned (subscribers plus separate publishers; connect: attempts).
    pub planned: u32,
    /// Established at the end of setup.
    pub connected: i64,
    /// Of the planned ones, on long-polling.
    pub polling: u32,
}

/// Per-publisher accounting.
#[derive(Debug, Serialize)]
pub struct Publishers {
    /// Publishers.
    pub count: u32,
    /// Publishers with at least one lost delivery.
    pub with_loss: u32,
    /// Publishers with duplicates or reordering.
    pub with_anomalies: u32,
    /// Per publisher (the first 10,000).
    pub list: Vec<PubRow>,
    /// Whether `list` was cut.
    pub truncated: bool,
}

/// One publisher.
#[derive(Debug, Serialize)]
pub struct PubRow {
    /// Id.
    pub id: u32,
    /// Room.
    pub room: u32,
    /// Counts.
    #[serde(flatten)]
    pub counts: PubCounts,
    /// expected - received.
    pub lost: u64,
}

/// Rooms.
#[derive(Debug, Serialize)]
pub struct Rooms {
    /// Rooms.
    pub count: u32,
    /// Subscribers joined, all rooms.
    pub joined_total: u64,
    /// Fewest joined in a room.
    pub joined_min: u32,
    /// Most joined in a room.
    pub joined_max: u32,
}

/// One second.
#[derive(Debug, Serialize)]
pub struct TimelineRow {
    /// Seconds since the first phase started.
    pub t: u64,
    /// Deliveries recorded in that second.
    pub count: u64,
    /// Median (µs).
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Max.
    pub max: u64,
    /// Sent in that second.
    pub sent: u64,
    /// Received in that second.
    pub received: u64,
}

/// Ramp result.
#[derive(Debug, Serialize)]
pub struct RampReport {
    /// Shape stepped up.
    pub shape: String,
    /// Objective.
    pub p99_objective_ms: f64,
    /// Allowed loss fraction.
    pub max_loss: f64,
    /// Highest rate (per room) whose step held; null when the first step failed.
    pub highest_rate_held: Option<f64>,
    /// Steps run.
    pub steps: Vec<StepRow>,
}

/// One ramp step.
#[derive(Debug, Serialize)]
pub struct StepRow {
    /// Rate per room.
    pub rate: f64,
    /// Expected.
    pub expected: u64,
    /// Received.
    pub received: u64,
    /// Lost.
    pub lost: u64,
    /// deliveries per second.
    pub deliveries_per_sec: f64,
    /// Latency.
    pub latency_us: Percentiles,
    /// Harness CPU share of its cores in the step.
    pub harness_cpu_share: f64,
    /// Whether the step met the objective.
    pub held: bool,
}

/// `connect`: the storm / churn.
#[derive(Debug, Serialize)]
pub struct ConnectReport {
    /// Attempts planned (`--clients`).
    pub planned: u32,
    /// Attempts started.
    pub attempts: u64,
    /// Connections established (Engine.IO open and namespace connect).
    pub succeeded: u64,
    /// Attempts that failed (reasons in `errors`).
    pub failed: u64,
    /// Attempts not started before `--duration` ran out.
    pub not_started: u64,
    /// Successful connects per second over the measured time.
    pub connects_per_sec: f64,
    /// Connections the harness closed after `--hold`.
    pub closed_by_harness: u64,
    /// Connections lost while held.
    pub lost_while_held: u64,
    /// Closes per second over the measured time.
    pub disconnects_per_sec: f64,
    /// Seconds each connection was to be held.
    pub hold_s: f64,
}

/// The server process.
#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// PID.
    pub pid: u32,
    /// RSS before the harness connected.
    pub rss_baseline_bytes: u64,
    /// RSS once everyone connected and joined.
    pub rss_connected_bytes: u64,
    /// Highest RSS seen.
    pub rss_peak_bytes: u64,
    /// RSS at the end of the last phase.
    pub rss_end_bytes: u64,
    /// (connected - baseline) / connections.
    pub bytes_per_connection: f64,
    /// Server CPU during the measured phases, µs.
    pub cpu_us: u64,
    /// Server CPU as a share of one core during the phases.
    pub cpu_share_of_one_core: f64,
    /// Server CPU µs per delivery received.
    pub cpu_us_per_delivery: f64,
    /// Whether the process disappeared during the run.
    pub vanished: bool,
}

/// The harness's own CPU.
#[derive(Debug, Serialize)]
pub struct HarnessReport {
    /// CPU time of coordinator and workers during the measured phases, µs.
    pub cpu_us: u64,
    /// cpu_us / (measured seconds x cores available).
    pub cpu_share_of_available: f64,
    /// µs of harness CPU per delivery.
    pub cpu_us_per_delivery: f64,
    /// Cores the harness could use (affinity).
    pub cores_available: usize,
    /// Worker processes (0 = in-process).
    pub workers: u32,
    /// Client threads per process.
    pub threads_per_process: u32,
    /// CPU time of the whole run, self + waited-for children, µs.
    pub total_cpu_us: u64,
    /// True when the harness, not the server, was the bottleneck.
    pub bottleneck: bool,
    /// Plain-language warnings.
    pub notes: Vec<String>,
}

/// The machine.
#[derive(Debug, Serialize)]
pub struct Environment {
    /// Online cores.
    pub cores: usize,
    /// Cores the harness may use.
    pub cores_available: usize,
    /// Kernel release (uname -r).
    pub kernel: String,
    /// Kernel version string (uname -v).
    pub kernel_version: String,
    /// OS (uname -s).
    pub os: String,
    /// Machine (uname -m).
    pub machine: String,
    /// Host name.
    pub hostname: String,
    /// Open-files limit per process.
    pub fd_limit: u64,
    /// Ephemeral port range.
    pub ephemeral_ports: String,
    /// Harness version.
    pub harness_version: String,
}

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
        if let Some(c) = p.server_cpu_us {
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
    let server = o.server.as_ref().map(|s| {
        let base = s.baseline.map_or(0, |x| x.rss_bytes);
        let conn = s.connected.map_or(0, |x| x.rss_bytes);
        let conns = o.connected.max(1) as f64;
        let cpu = server_cpu.unwrap_or(0);
        ServerReport {
            pid: plan.server_pid.unwrap_or(0),
            rss_baseline_bytes: base,
            rss_connected_bytes: conn,
            rss_peak_bytes: s.peak_rss,
            rss_end_bytes: s.end.map_or(0, |x| x.rss_bytes),
            bytes_per_connection: round2(conn.saturating_sub(base) as f64 / conns),
            cpu_us: cpu,
            cpu_share_of_one_core: if cpu_wall_s > 0.0 {
                round3(cpu as f64 / (cpu_wall_s * 1e6))
            } else {
                0.0
            },
            cpu_us_per_delivery: if received > 0 {
                round3(cpu as f64 / received as f64)
            } else {
                0.0
            },
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
    let clean = lost == 0
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
            shape: plan.shape.name().into(),
            p99_objective_ms: r.p99_ms,
            max_loss: r.max_loss,
            highest_rate_held: steps.iter().take_while(|s| s.held).last().map(|s| s.rate),
            steps,
        }),
        connect: connect_report,
        server,
        harness: HarnessReport {
            cpu_us: harness_cpu,
            cpu_share_of_available: round3(harness_share),
            cpu_us_per_delivery: if received > 0 {
                round3(harness_cpu as f64 / received as f64)
            } else {
                0.0
            },
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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn lat_line(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (n={})",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.p9999),
        fmt_us(p.max),
        p.count
    )
}

/// The human table.
pub fn table(r: &Report) -> String {
    let p = &r.config;
    let mut s = String::new();
    let what = match p.shape {
        Scenario::Fanout => format!(
            "{} subscribers, {} room(s), {} publisher(s)/room, {} msg/s per room, payload {} B",
            p.clients, p.rooms, p.publishers, p.rate, p.payload
        ),
        Scenario::Lobby => format!(
            "{} clients in {} rooms, {} msg/s per room, payload {} B",
            p.clients, p.rooms, p.rate, p.payload
        ),
        Scenario::Echo => {
            format!("{} clients, {} round trips/s each, payload {} B", p.clients, p.rate, p.payload)
        }
        Scenario::Connect => format!(
            "{} attempts, {}, hold {} s",
            p.clients,
            p.connect_rate.map_or("all at once".to_owned(), |r| format!("{r}/s")),
            p.hold_s
        ),
        _ => format!("{} connections", p.clients),
    };
    let _ = writeln!(s, "shardcast-loadtest {}  {}  {}", r.scenario, p.url, what);
    let _ = writeln!(
        s,
        "  duration {} s{}, workers {}, threads/process {}, cores available {}",
        p.duration_s,
        if r.ramp.is_some() { " per step" } else { "" },
        p.workers,
        p.threads,
        r.harness.cores_available
    );
    let row = |s: &mut String, k: &str, v: String| {
        let _ = writeln!(s, "  {k:<14} {v}");
    };
    if let Some(cr) = &r.connect {
        row(
            &mut s,
            "attempts",
            format!(
                "{} of {} started ({} polling planned), {} succeeded, {} failed, {} not started",
                cr.attempts,
                cr.planned,
                r.connections.polling,
                cr.succeeded,
                cr.failed,
                cr.not_started
            ),
        );
        row(&mut s, "connects/s", format!("{:.1}", cr.connects_per_sec));
        row(
            &mut s,
            "closes",
            format!(
                "{} by the harness after --hold {} s ({:.1}/s), {} lost while held",
                cr.closed_by_harness, cr.hold_s, cr.disconnects_per_sec, cr.lost_while_held
            ),
        );
    } else {
        row(
            &mut s,
            "connections",
            format!(
                "{} of {} connected ({} polling), setup {:.2} s",
                r.connections.connected, r.connections.planned, r.connections.polling, r.setup_s
            ),
        );
    }
    if matches!(p.shape, Scenario::Fanout | Scenario::Lobby | Scenario::Echo) {
        row(
            &mut s,
            "sent",
            format!(
                "{} of {} scheduled ({:.1}/s), late sends {}",
                r.sent, r.scheduled, r.sent_per_sec, r.counters.late_sends
            ),
        );
    }
    row(&mut s, "expected", r.expected.to_string());
    if p.shape == Scenario::Idle {
        row(
            &mut s,
            "held",
            format!("{} to the end ({} pings answered)", r.received, r.counters.pings),
        );
    } else {
        row(&mut s, "received", format!("{} ({:.1}/s)", r.received, r.deliveries_per_sec));
    }
    row(&mut s, "lost", r.lost.to_string());
    row(&mut s, "duplicates", r.duplicates.to_string());
    row(&mut s, "reordered", r.reordered.to_string());
    let lat_name = match p.shape {
        Scenario::Echo => "rtt",
        Scenario::Connect => "from schedule",
        _ => "latency",
    };
    if p.shape != Scenario::Idle {
        row(&mut s, lat_name, lat_line(&r.latency_us));
    }
    row(&mut s, "handshake", lat_line(&r.connect_us));
    row(&mut s, "  eio open", lat_line(&r.eio_open_us));
    row(&mut s, "  ns connect", lat_line(&r.ns_connect_us));
    if r.publish_lag_us.count > 0 {
        row(&mut s, "publish lag", lat_line(&r.publish_lag_us));
        row(&mut s, "transit", lat_line(&r.transit_us));
    }
    if r.errors.is_empty() {
        row(&mut s, "errors", "none".into());
    } else {
        for (i, (k, v)) in r.errors.iter().enumerate() {
            row(&mut s, if i == 0 { "errors" } else { "" }, format!("{v} x {k}"));
        }
    }
    if let Some(rp) = &r.ramp {
        let _ = writeln!(
            s,
            "  ramp ({}; holds while p99 <= {} ms and loss <= {}):",
            rp.shape, rp.p99_objective_ms, rp.max_loss
        );
        for st in &rp.steps {
            let _ = writeln!(
                s,
                "    rate {:>10.1}/s  recv {:>10}/{:<10} lost {:<8} p50 {:>9} p99 {:>9}  harness cpu {:>3.0}%  {}",
                st.rate,
                st.received,
                st.expected,
                st.lost,
                fmt_us(st.latency_us.p50),
                fmt_us(st.latency_us.p99),
                st.harness_cpu_share * 100.0,
                if st.held { "held" } else { "BROKE" }
            );
        }
        row(
            &mut s,
            "highest rate",
            rp.highest_rate_held
                .map_or("none held".to_owned(), |r| format!("{r} msg/s per room held")),
        );
    }
    if let Some(sv) = &r.server {
        row(
            &mut s,
            "server",
            format!(
                "rss {} -> {} connected (peak {}), {:.0} B/connection; cpu {:.0}% of a core, {:.2} µs/delivery",
                mb(sv.rss_baseline_bytes),
                mb(sv.rss_connected_bytes),
                mb(sv.rss_peak_bytes),
                sv.bytes_per_connection,
                sv.cpu_share_of_one_core * 100.0,
                sv.cpu_us_per_delivery
            ),
        );
    }
    row(
        &mut s,
        "harness",
        format!(
            "cpu {:.0}% of {} core(s), {:.2} µs/delivery{}",
            r.harness.cpu_share_of_available * 100.0,
            r.harness.cores_available,
            r.harness.cpu_us_per_delivery,
            if r.harness.bottleneck { "  ** HARNESS WAS THE BOTTLENECK **" } else { "" }
        ),
    );
    for n in &r.harness.notes {
        row(&mut s, "note", n.clone());
    }
    row(&mut s, "verdict", if r.clean { "clean".into() } else { "NOT clean (see above)".into() });
    s
}

// ---- HTML ----

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart; `log_y` uses decades; `nines_x` labels x as percentiles (x = -log10(1-q)).
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    nines_x: bool,
    y_fmt: fn(f64) -> String,
) -> String {
    let (w, h, ml, mr, mt, mb) = (760.0, 320.0, 70.0, 130.0, 30.0, 45.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        ml,
        esc(title)
    );
    if pts.is_empty() {
        let _ =
            write!(svg, r#"<text x="{}" y="{}">no data</text></svg>"#, ml + 20.0, mt + ph / 2.0);
        return svg;
    }
    let ty = |v: f64| if log_y { v.max(1.0).log10() } else { v };
    let (mut x0, mut x1) =
        pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) =
        pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(ty(p.1)), b.max(ty(p.1))));
    if log_y {
        y0 = y0.floor();
        y1 = y1.ceil().max(y0 + 1.0);
    } else {
        y0 = 0.0;
        let step = nice_step(y1.max(1.0) / 5.0);
        y1 = ((y1 / step).ceil() * step).max(step);
    }
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| mt + ph - (ty(y) - y0) / (y1 - y0) * ph;
    let _ = write!(
        svg,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>"##
    );
    // Y grid.
    let yticks: Vec<f64> = if log_y {
        (y0 as i32..=y1 as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        let step = nice_step(y1 / 5.0);
        (0..=(y1 / step).round() as i32).map(|i| f64::from(i) * step).collect()
    };
    for v in yticks {
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 5.0,
            y + 4.0,
            esc(&y_fmt(v))
        );
    }
    // X grid.
    let xticks: Vec<(f64, String)> = if nines_x {
        (0..=x1.ceil() as i32)
            .map(|n| {
                let q = 100.0 * (1.0 - 10f64.powi(-n));
                (f64::from(n), format!("{}%", trim_float(q)))
            })
            .collect()
    } else {
        let step = nice_step((x1 - x0) / 8.0);
        let mut v = (x0 / step).ceil() * step;
        let mut out = Vec::new();
        while v <= x1 + 1e-9 {
            out.push((v, trim_float(v)));
            v += step;
        }
        out
    };
    for (v, label) in xticks {
        let x = sx(v);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 15.0,
            esc(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 8.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let d: Vec<String> =
            s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            d.join(" ")
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                sx(x),
                sy(y),
                s.color
            );
        }
        let ly = mt + 10.0 + i as f64 * 16.0;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ml + pw + 10.0,
            ly - 3.0,
            s.color,
            ml + pw + 27.0,
            ly + 1.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    (m * mag).max(1.0)
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn us_label(v: f64) -> String {
    fmt_us(v as u64)
}

fn count_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The self-contained HTML report. `latency` is the merged latency histogram of the run.
pub fn html(r: &Report, latency: &Histogram<u64>) -> String {
    const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#7f3c8d"];
    let tl = &r.timeline;
    let pick = |f: fn(&TimelineRow) -> u64| -> Vec<(f64, f64)> {
        tl.iter().filter(|t| t.count > 0).map(|t| (t.t as f64, f(t) as f64)).collect()
    };
    let over_time = chart(
        "Latency percentiles per second",
        "seconds since the first phase started",
        "latency",
        &[
            Series { name: "p50", color: COLORS[0], points: pick(|t| t.p50) },
            Series { name: "p90", color: COLORS[1], points: pick(|t| t.p90) },
            Series { name: "p99", color: COLORS[2], points: pick(|t| t.p99) },
            Series { name: "p99.9", color: COLORS[3], points: pick(|t| t.p999) },
            Series { name: "max", color: COLORS[4], points: pick(|t| t.max) },
        ],
        true,
        false,
        us_label,
    );
    let mut spectrum = Vec::new();
    if !latency.is_empty() {
        for i in 0..=50 {
            let nines = f64::from(i) / 10.0;
            let q = 1.0 - 10f64.powf(-nines);
            spectrum.push((nines, latency.value_at_quantile(q) as f64));
        }
    }
    let distribution = chart(
        "Latency distribution (percentile spectrum, whole run)",
        "percentile",
        "latency",
        &[Series { name: "latency", color: COLORS[0], points: spectrum }],
        true,
        true,
        us_label,
    );
    let throughput = chart(
        "Messages per second",
        "seconds since the first phase started",
        "per second",
        &[
            Series {
                name: "sent",
                color: COLORS[1],
                points: tl.iter().map(|t| (t.t as f64, t.sent as f64)).collect(),
            },
            Series {
                name: "received",
                color: COLORS[0],
                points: tl.iter().map(|t| (t.t as f64, t.received as f64)).collect(),
            },
        ],
        false,
        false,
        count_label,
    );
    let ramp_chart = r.ramp.as_ref().map(|rp| {
        chart(
            "Ramp: p99 per step",
            "rate per room (msg/s)",
            "p99 latency",
            &[Series {
                name: "p99",
                color: COLORS[2],
                points: rp.steps.iter().map(|s| (s.rate, s.latency_us.p99 as f64)).collect(),
            }],
            true,
            false,
            us_label,
        )
    });
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shardcast-loadtest {scenario}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 980px; }}
pre {{ background: #f4f4f4; padding: 12px; overflow-x: auto; font-size: 12px; }}
.bad {{ color: #b00; font-weight: bold; }} .good {{ color: #070; font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>shardcast-loadtest: {scenario}</h1>
<p>Target <code>{url}</code>. Verdict: {verdict}</p>
<h2>Summary</h2>
<pre>{table}</pre>
<h2>Charts</h2>
{over_time}
{distribution}
{throughput}
{ramp}
<h2>Full result (the same JSON as --json)</h2>
<details><summary>show</summary><pre>{json}</pre></details>
</body></html>
"#,
        scenario = esc(&r.scenario),
        url = esc(&r.config.url),
        verdict = if r.clean {
            "<span class=\"good\">clean</span>"
        } else {
            "<span class=\"bad\">not clean</span>"
        },
        table = esc(&table(r)),
        ramp = ramp_chart.unwrap_or_default(),
        json = esc(&json),
    );
    h
}

/// The merged latency histogram of all phases of an outcome.
pub fn run_latency(o: &Outcome) -> Histogram<u64> {
    let mut h = new_hist();
    for p in &o.phases {
        let _ = h.add(hist(&p.report.hists.latency));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let s = chart(
            "t",
            "x",
            "y",
            &[Series { name: "a<b", color: "#000", points: vec![(0.0, 10.0), (1.0, 1000.0)] }],
            true,
            false,
            us_label,
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a&lt;b"));
        let e = chart("t", "x", "y", &[], true, true, us_label);
        assert!(e.contains("no data"));
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
    }
}

//! `soak`: for a bounded time, `--clients` clients live and die against one server: each
//! connects (WebSocket or long-polling), joins rooms, publishes, publishes with acks that the
//! other members answer, echoes with acks, joins and leaves, and after a few seconds ends its
//! connection one of three ways (a clean disconnect, the TCP connection dropped without a
//! word, or `disconnect-me`), then comes back; with `--recovery` one whose connection was
//! dropped comes back with its `pid` and last offset, as socket.io-client does, and must get
//! its socket back. Meanwhile the server's RSS, open descriptors and (with `--metrics`, a
//! shardcast server) the sizes of its internal tables are sampled every `--sample` seconds.
//!
//! It passes when every handshake was answered, every acknowledgement came, no healthy
//! connection was dropped by the server, every dropped client that came back was recovered
//! (with `--recovery`), RSS, descriptors and every table are flat after the warm-up (the
//! slope of a least-squares line, times the time after the warm-up, within a bound), and
//! after the clients left and `--settle` seconds passed, every table is back to its size
//! before the run.
//!
//! Any Socket.IO v4 server running the demo app (`join`, `leave`, `publish`,
//! `publish-with-ack`, `message-with-ack`, `whoami`, `disconnect-me`) can be the target;
//! without `--metrics` the table checks are left out. Seeded: `--seed` replays the choices.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use crate::conn::{Conn, Endpoint, Http, Incoming, Resume};
use crate::plan::SoakArgs;
use crate::proto::{self, Eio, Kind};
use crate::rng::Rng;

/// How long a handshake (Engine.IO OPEN and namespace CONNECT) may take before it counts as
/// unanswered.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an acknowledgement may take before it counts as lost (`publish-with-ack` waits
/// up to 2 s for the members).
const ACK_TIMEOUT: Duration = Duration::from_secs(8);
/// How long `disconnect-me` may take to end the connection.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The namespace.
const NSP: &str = "/";

/// The report (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The seed (give it again to replay).
    pub seed: u64,
    /// Seconds of churn, and of warm-up within them.
    pub duration_s: f64,
    /// Seconds of warm-up (left out of the slopes).
    pub warmup_s: f64,
    /// Clients alive at once.
    pub clients: u32,
    /// Rooms they join.
    pub rooms: u32,
    /// Handshakes tried, and how long the answered ones took (ms).
    pub handshakes: u64,
    /// Handshake time percentiles (ms): p50, p99, max.
    pub handshake_ms: (f64, f64, f64),
    /// Handshakes not answered, by reason.
    pub handshake_failures: BTreeMap<String, u64>,
    /// How sessions ended: `clean`, `dropped`, `disconnect-me`.
    pub endings: BTreeMap<String, u64>,
    /// Sessions over long-polling (the rest over WebSocket).
    pub polling_sessions: u64,
    /// Dropped clients that came back with their pid, and those that got their socket back.
    pub recovery_tried: u64,
    /// See `recovery_tried`.
    pub recovered: u64,
    /// Recovered sockets whose rooms (by `whoami`) were not the ones they had.
    pub recovery_mismatches: u64,
    /// Requests sent by kind (`publish`, `publish-with-ack`, `message-with-ack`, `join`,
    /// `leave`).
    pub requests: BTreeMap<String, u64>,
    /// Acknowledgements awaited, received, and lost (not received within 8 s, or before a
    /// clean end).
    pub acks_awaited: u64,
    /// See `acks_awaited`.
    pub acks_received: u64,
    /// See `acks_awaited`.
    pub acks_lost: u64,
    /// `publish-with-ack` answers whose error was set (a member that left mid-way: not a
    /// failure).
    pub broadcast_ack_errors: u64,
    /// Events received, and acks the clients sent for them.
    pub events_received: u64,
    /// See `events_received`.
    pub acks_sent: u64,
    /// Connections the server ended that the client had not asked it to.
    pub dropped_by_server: u64,
    /// `disconnect-me` requests that did not end the connection in time.
    pub disconnect_unanswered: u64,
    /// The samples.
    pub samples: Vec<Sample>,
    /// Least-squares slopes after the warm-up, per minute: RSS (KiB), descriptors, and each
    /// table (entries).
    pub rss_kib_per_min: Option<f64>,
    /// See `rss_kib_per_min`.
    pub fds_per_min: Option<f64>,
    /// See `rss_kib_per_min`.
    pub table_slopes_per_min: BTreeMap<String, f64>,
    /// The tables before the run, and after the clients left and `--settle` passed.
    pub tables_before: BTreeMap<String, u64>,
    /// See `tables_before`.
    pub tables_after: BTreeMap<String, u64>,
    /// The server's RSS (KiB) and descriptors before and after.
    pub rss_kib: Option<(u64, u64)>,
    /// See `rss_kib`.
    pub fds: Option<(u64, u64)>,
    /// Every check held.
    pub pass: bool,
    /// What did not hold.
    pub failures: Vec<String>,
}

/// One sample of the server.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// RSS (KiB), with --server-pid.
    pub rss_kib: Option<u64>,
    /// Open descriptors, with --server-pid.
    pub fds: Option<u64>,
    /// Clients connected at that moment.
    pub connected: u64,
    /// Handshakes answered so far.
    pub handshakes: u64,
    /// The server's tables, with --metrics.
    pub tables: BTreeMap<String, u64>,
}

/// What the clients count, shared by all of them.
#[derive(Default)]
struct Counts {
    handshakes: AtomicU64,
    answered: AtomicU64,
    polling: AtomicU64,
    connected: AtomicU64,
    recovery_tried: AtomicU64,
    recovered: AtomicU64,
    recovery_mismatches: AtomicU64,
    acks_awaited: AtomicU64,
    acks_received: AtomicU64,
    acks_lost: AtomicU64,
    broadcast_ack_errors: AtomicU64,
    events: AtomicU64,
    acks_sent: AtomicU64,
    dropped_by_server: AtomicU64,
    disconnect_unanswered: AtomicU64,
    /// Requests by kind, endings by kind, handshake failures by reason, handshake times (µs).
    requests: Mutex<BTreeMap<&'static str, u64>>,
    endings: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    handshake_us: Mutex<Vec<u32>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    *m.lock().unwrap_or_else(|p| p.into_inner()).entry(k).or_insert(0) += 1;
}

struct Shared {
    ep: Endpoint,
    rooms: u32,
    polling_share: f64,
    recovery: bool,
    stopping: AtomicBool,
    counts: Counts,
}

/// Runs the scenario; the report, or an error when it could not run at all.
pub fn run(args: &SoakArgs) -> anyhow::Result<Report> {
    let target = crate::target::parse(&args.url, None)?;
    if !(5.0..=86_400.0).contains(&args.duration) {
        bail!("--duration must be between 5 and 86400 seconds");
    }
    if args.clients == 0 || args.clients > 5000 || args.rooms == 0 || args.rooms > 10_000 {
        bail!("--clients must be 1 to 5000 and --rooms 1 to 10000");
    }
    if !(0.0..=1.0).contains(&args.polling) {
        bail!("--polling is a share, 0 to 1");
    }
    let warmup = args.warmup.unwrap_or((args.duration * 0.25).min(120.0));
    if warmup < 0.0 || warmup > args.duration * 0.8 {
        bail!("--warmup must leave at least a fifth of --duration to measure");
    }
    let metrics = match &args.metrics {
        Some(u) => Some(metrics_target(u)?),
        None => None,
    };
    let seed = crate::rng::seed_or_clock(args.seed);
    eprintln!("soak: seed {seed} (give --seed {seed} to replay)");
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    let ep = Endpoint {
        addr: target.addr,
        host: target.host_header(),
        path: "/socket.io/".into(),
        nsp: NSP.into(),
        auth: None,
        read_buffer: 16 * 1024,
    };
    let report = rt.block_on(soak(args, ep, metrics, seed, warmup))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The report as JSON without its samples (those go to `--json`), for the terminal.
pub fn summary(report: &Report) -> String {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        let n = o.remove("samples").and_then(|s| s.as_array().map(Vec::len)).unwrap_or(0);
        o.insert("samples_taken".into(), n.into());
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// `http://HOST:PORT/PATH` of the metrics: the address and the request target.
fn metrics_target(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let t = crate::target::parse(url, None).with_context(|| format!("--metrics {url:?}"))?;
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let path = rest.find('/').map_or("/metrics", |i| &rest[i..]);
    Ok((t.addr, t.host_header(), path.to_owned()))
}

async fn soak(
    args: &SoakArgs,
    ep: Endpoint,
    metrics: Option<(SocketAddr, String, String)>,
    seed: u64,
    warmup: f64,
) -> anyhow::Result<Report> {
    let pid = args.server_pid;
    // One client first, so that what a first connection creates for good (the namespace)
    // is in the sizes before the run; and the server must answer it.
    let (probe, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, Conn::open(&ep, false, None))
        .await
        .map_err(|_| anyhow::anyhow!("the first handshake timed out"))?
        .map_err(|e| anyhow::anyhow!("the first handshake failed: {}", e.0))?;
    probe.close(NSP).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut scraper = metrics.map(|(addr, host, path)| (Http::new(addr, None, host), path));
    let tables_before = match &mut scraper {
        Some((http, path)) => scrape(http, path).await.context("reading --metrics")?,
        None => BTreeMap::new(),
    };
    let before = pid.and_then(crate::sys::rss_and_fds);
    if pid.is_some() && before.is_none() {
        bail!("--server-pid {}: no such process", pid.unwrap_or(0));
    }
    let shared = Arc::new(Shared {
        ep,
        rooms: args.rooms,
        polling_share: args.polling,
        recovery: args.recovery,
        stopping: AtomicBool::new(false),
        counts: Counts::default(),
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let shared = shared.clone();
        let mut rng = Rng::stream(seed, u64::from(i));
        // Spread the first connections over the first second.
        let delay = Duration::from_millis(rng.below(1000));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client(&shared, &mut rng).await;
        }));
    }
    let end = start + Duration::from_secs_f64(args.duration);
    let every = Duration::from_secs_f64(args.sample.max(0.2));
    let mut samples = Vec::new();
    let mut next = start;
    while next < end {
        tokio::time::sleep_until(next).await;
        let tables = match &mut scraper {
            Some((http, path)) => scrape(http, path).await.unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let proc = pid.and_then(crate::sys::rss_and_fds);
        let c = &shared.counts;
        samples.push(Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kib: proc.map(|p| p.0),
            fds: proc.map(|p| p.1),
            connected: c.connected.load(Ordering::Relaxed),
            handshakes: c.answered.load(Ordering::Relaxed),
            tables,
        });
        if let Some(s) = samples.last() {
            if s.t > 0.0 && samples.len() % 10 == 1 {
                eprintln!(
                    "soak: {:.0} s, {} connected, {} handshakes, rss {} KiB, fds {}",
                    s.t,
                    s.connected,
                    s.handshakes,
                    s.rss_kib.map_or("-".into(), |v| v.to_string()),
                    s.fds.map_or("-".into(), |v| v.to_string()),
                );
            }
        }
        next += every;
    }
    tokio::time::sleep_until(end).await;
    shared.stopping.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let tables_after = match &mut scraper {
        Some((http, path)) => scrape(http, path).await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let after = pid.and_then(crate::sys::rss_and_fds);
    Ok(judge(
        args,
        seed,
        warmup,
        &shared.counts,
        samples,
        tables_before,
        tables_after,
        before,
        after,
    ))
}

/// The checks, and the report.
#[allow(clippy::too_many_arguments)]
fn judge(
    args: &SoakArgs,
    seed: u64,
    warmup: f64,
    c: &Counts,
    samples: Vec<Sample>,
    tables_before: BTreeMap<String, u64>,
    tables_after: BTreeMap<String, u64>,
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
) -> Report {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let take = |m: &Mutex<BTreeMap<&'static str, u64>>| -> BTreeMap<String, u64> {
        m.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    };
    let handshake_failures = c.failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut us = c.handshake_us.lock().unwrap_or_else(|p| p.into_inner()).clone();
    us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if us.is_empty() {
            return 0.0;
        }
        let i = ((us.len() - 1) as f64 * q).round() as usize;
        f64::from(us[i.min(us.len() - 1)]) / 1000.0
    };
    let handshake_ms = (pct(0.5), pct(0.99), pct(1.0));
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup).collect();
    let window_min = measured.last().zip(measured.first()).map_or(0.0, |(l, f)| (l.t - f.t) / 60.0);
    let slope_of = |f: &dyn Fn(&Sample) -> Option<u64>| -> Option<f64> {
        let pts: Vec<(f64, f64)> =
            measured.iter().filter_map(|s| f(s).map(|v| (s.t / 60.0, v as f64))).collect();
        least_squares(&pts)
    };
    let mean_of = |f: &dyn Fn(&Sample) -> Option<u64>| -> f64 {
        let v: Vec<f64> = measured.iter().filter_map(|s| f(s).map(|v| v as f64)).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let rss_kib_per_min = slope_of(&|s| s.rss_kib);
    let fds_per_min = slope_of(&|s| s.fds);
    let mut failures = Vec::new();
    let handshakes = load(&c.handshakes);
    let failed: u64 = handshake_failures.values().sum();
    if failed > 0 {
        failures.push(format!("{failed} of {handshakes} handshakes not answered"));
    }
    if load(&c.answered) == 0 {
        failures.push("no handshake was answered".into());
    }
    let acks_lost = load(&c.acks_lost);
    if acks_lost > 0 {
        failures.push(format!("{acks_lost} acknowledgements never came"));
    }
    let dropped = load(&c.dropped_by_server);
    if dropped > 0 {
        failures.push(format!("the server ended {dropped} connections nobody asked it to"));
    }
    let unanswered = load(&c.disconnect_unanswered);
    if unanswered > 0 {
        failures.push(format!("{unanswered} disconnect-me requests did not end the connection"));
    }
    let (tried, recovered) = (load(&c.recovery_tried), load(&c.recovered));
    if args.recovery && recovered < tried {
        failures
            .push(format!("{} of {tried} dropped clients were not recovered", tried - recovered));
    }
    let mismatches = load(&c.recovery_mismatches);
    if mismatches > 0 {
        failures.push(format!("{mismatches} recovered sockets had other rooms than before"));
    }
    // Flat after the warm-up: what the slope adds over the measured window stays within
    // a bound (allocator and scheduling noise on top of the level).
    if let Some(slope) = rss_kib_per_min {
        let rise = slope * window_min;
        let bound = 4096.0 + 0.05 * mean_of(&|s| s.rss_kib);
        if rise > bound {
            failures.push(format!(
                "RSS grows {slope:.0} KiB/min after the warm-up: {rise:.0} KiB over the run \
                 (bound {bound:.0})"
            ));
        }
    }
    if let Some(slope) = fds_per_min {
        let rise = slope * window_min;
        let peak = measured.iter().filter_map(|s| s.fds).max().unwrap_or(0) as f64;
        let bound = 16.0 + 0.1 * peak;
        if rise > bound {
            failures.push(format!("open descriptors grow {slope:.1}/min after the warm-up"));
        }
    }
    let names: Vec<String> = tables_before.keys().cloned().collect();
    let mut table_slopes_per_min = BTreeMap::new();
    for name in &names {
        let get = |s: &Sample| s.tables.get(name).copied();
        if let Some(slope) = slope_of(&get) {
            let rise = slope * window_min;
            let peak = measured.iter().filter_map(|s| get(s)).max().unwrap_or(0) as f64;
            let bound = 16.0 + 0.1 * peak;
            if rise > bound {
                failures.push(format!(
                    "table {name} grows {slope:.1} entries/min after the warm-up (peak {peak})"
                ));
            }
            table_slopes_per_min.insert(name.clone(), slope);
        }
        let (b, a) = (tables_before.get(name).copied(), tables_after.get(name).copied());
        match (b, a) {
            (Some(b), Some(a)) if a > b => failures
                .push(format!("table {name} holds {a} entries after the clients left, {b} before")),
            (Some(_), None) => failures.push(format!("table {name} was not read after the run")),
            _ => {}
        }
    }
    let rss_kib = before.zip(after).map(|(b, a)| (b.0, a.0));
    let fds = before.zip(after).map(|(b, a)| (b.1, a.1));
    if let Some((b, a)) = fds {
        if a > b + 16 {
            failures.push(format!("open descriptors after the run {a}, before {b}"));
        }
    }
    if args.server_pid.is_some() && after.is_none() {
        failures.push("the server process is gone".into());
    }
    Report {
        seed,
        duration_s: args.duration,
        warmup_s: warmup,
        clients: args.clients,
        rooms: args.rooms,
        handshakes,
        handshake_ms,
        handshake_failures,
        endings: take(&c.endings),
        polling_sessions: load(&c.polling),
        recovery_tried: tried,
        recovered,
        recovery_mismatches: mismatches,
        requests: take(&c.requests),
        acks_awaited: load(&c.acks_awaited),
        acks_received: load(&c.acks_received),
        acks_lost,
        broadcast_ack_errors: load(&c.broadcast_ack_errors),
        events_received: load(&c.events),
        acks_sent: load(&c.acks_sent),
        dropped_by_server: dropped,
        disconnect_unanswered: unanswered,
        samples,
        rss_kib_per_min,
        fds_per_min,
        table_slopes_per_min,
        tables_before,
        tables_after,
        rss_kib,
        fds,
        pass: failures.is_empty(),
        failures,
    }
}

/// The slope of the least-squares line through `pts` (x, y); `None` with fewer than 3
/// points or no spread in x.
pub fn least_squares(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The `shardcast_table_entries` series of one scrape, by table.
async fn scrape(http: &mut Http, path: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let body = http.expect_ok("GET", path, b"").await.map_err(|e| anyhow::anyhow!(e.0))?;
    Ok(parse_tables(&String::from_utf8_lossy(&body)))
}

/// Reads `shardcast_table_entries{table="NAME"} VALUE` lines.
pub fn parse_tables(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("shardcast_table_entries{table=\"")?;
            let (name, rest) = rest.split_once("\"}")?;
            let v: f64 = rest.trim().parse().ok()?;
            Some((name.to_owned(), v as u64))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// One client's lives
// ---------------------------------------------------------------------------------------

/// How a session ended.
enum Ending {
    /// To be closed cleanly (a DISCONNECT, then the transport closed).
    Clean,
    /// Left with `disconnect-me`: the server closed it.
    Left,
    /// The connection was dropped: come back with this if any.
    Dropped(Option<Back>),
    /// The server ended it unasked, or it broke: start afresh.
    Broken,
}

/// What a dropped client comes back with: its pid and last offset, its socket id, and the
/// rooms it was in (`None` when a join or leave was unanswered: then it cannot know).
type Back = (Resume, String, Option<Vec<String>>);

async fn client(shared: &Shared, rng: &mut Rng) {
    let c = &shared.counts;
    let mut resume: Option<Back> = None;
    while !shared.stopping.load(Ordering::Relaxed) {
        let polling = rng.chance(shared.polling_share);
        let back = resume.take();
        c.handshakes.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let opened = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            Conn::open_resuming(&shared.ep, polling, None, back.as_ref().map(|b| &b.0)),
        )
        .await;
        let (conn, hs) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                bump(&c.failures, e.0);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                bump(&c.failures, "timed out".to_owned());
                continue;
            }
        };
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        c.handshake_us.lock().unwrap_or_else(|p| p.into_inner()).push(us);
        c.answered.fetch_add(1, Ordering::Relaxed);
        if polling {
            c.polling.fetch_add(1, Ordering::Relaxed);
        }
        let mut rooms = Vec::new();
        let mut whoami = None;
        let recovered = match back {
            Some((_, old_sid, old_rooms)) => {
                c.recovery_tried.fetch_add(1, Ordering::Relaxed);
                let same = hs.sid.as_deref() == Some(old_sid.as_str());
                if same {
                    c.recovered.fetch_add(1, Ordering::Relaxed);
                    if let Some(mut r) = old_rooms {
                        rooms = r.clone();
                        r.sort();
                        whoami = Some(r);
                    }
                }
                same
            }
            None => false,
        };
        c.connected.fetch_add(1, Ordering::Relaxed);
        let mut s = Session {
            conn,
            shared,
            next_ack: 1,
            awaiting: HashMap::new(),
            rooms,
            pid: hs.pid.clone(),
            sid: hs.sid.clone().unwrap_or_default(),
            offset: None,
            whoami,
            disconnecting: false,
            closed: false,
        };
        for p in &hs.early {
            s.on_packet_sio(p);
        }
        let ending = s.live(rng, recovered).await;
        match ending {
            Ending::Clean => s.conn.close(NSP).await,
            Ending::Dropped(r) => resume = r.filter(|_| shared.recovery),
            Ending::Left | Ending::Broken => {}
        }
        c.connected.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
    }
}

/// What an acknowledgement answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    Publish,
    PublishWithAck,
    Echo,
    Join,
    Leave,
    Whoami,
}

struct Session<'a> {
    conn: Conn,
    shared: &'a Shared,
    next_ack: u64,
    awaiting: HashMap<u64, (Instant, Asked, String)>,
    rooms: Vec<String>,
    pid: Option<String>,
    sid: String,
    offset: Option<String>,
    /// The rooms a recovered socket should have, while its `whoami` is awaited.
    whoami: Option<Vec<String>>,
    disconnecting: bool,
    closed: bool,
}

impl Session<'_> {
    /// The session from its CONNECT to its end.
    async fn live(&mut self, rng: &mut Rng, recovered: bool) -> Ending {
        let c = &self.shared.counts;
        if recovered {
            if self.whoami.is_some() {
                self.ask(Asked::Whoami, "whoami", "", String::new());
            }
        } else {
            for _ in 0..=rng.below(3) {
                let room = self.pick_room(rng);
                self.ask(Asked::Join, "join", &json_str(&room), room);
            }
        }
        if self.flush().await.is_err() {
            return self.broke();
        }
        let lifetime = Duration::from_millis(1000 + rng.below(7000));
        let end = Instant::now() + lifetime;
        let mut next = Instant::now() + gap(rng);
        loop {
            if self.closed {
                return self.broke();
            }
            tokio::select! {
                r = self.conn.recv() => match r {
                    Ok(m) => self.on_incoming(m),
                    Err(_) => return self.broke(),
                },
                _ = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    if now >= end || self.shared.stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    self.expire_acks(now);
                    self.act(rng);
                    next = now + gap(rng);
                }
            }
            if self.flush().await.is_err() {
                return self.broke();
            }
        }
        // The end of this life: when stopping always a clean one, so that the server's
        // tables can be compared with their size before the run.
        let stopping = self.shared.stopping.load(Ordering::Relaxed);
        let how = if stopping { 0 } else { rng.below(100) };
        if how < 45 {
            bump(&c.endings, "clean");
            self.drain_acks().await;
            Ending::Clean
        } else if how < 80 {
            bump(&c.endings, "dropped");
            let unsure = self.awaiting.values().any(|a| matches!(a.1, Asked::Join | Asked::Leave));
            let rooms = (!unsure).then(|| self.rooms.clone());
            let resume = self
                .pid
                .clone()
                .map(|pid| (Resume { pid, offset: self.offset.clone() }, self.sid.clone(), rooms));
            Ending::Dropped(resume)
        } else {
            bump(&c.endings, "disconnect-me");
            self.drain_acks().await;
            self.disconnecting = true;
            self.conn.queue(event(None, "disconnect-me", ""));
            if self.flush().await.is_ok() {
                let ended = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
                    while !self.closed {
                        match self.conn.recv().await {
                            Ok(m) => self.on_incoming(m),
                            Err(_) => break,
                        }
                        let _ = self.flush().await;
                    }
                })
                .await;
                if ended.is_err() {
                    c.disconnect_unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ending::Left
        }
    }

    fn broke(&mut self) -> Ending {
        if !self.disconnecting {
            self.shared.counts.dropped_by_server.fetch_add(1, Ordering::Relaxed);
        }
        Ending::Broken
    }

    fn pick_room(&self, rng: &mut Rng) -> String {
        format!("soak-{}", rng.below(u64::from(self.shared.rooms)))
    }

    /// One request, chosen at random.
    fn act(&mut self, rng: &mut Rng) {
        let n = rng.below(1_000_000);
        let roll = rng.below(100);
        let room = if self.rooms.is_empty() || roll >= 85 {
            self.pick_room(rng)
        } else {
            self.rooms[rng.below(self.rooms.len() as u64) as usize].clone()
        };
        let r = json_str(&room);
        match roll {
            0..=39 => self.ask(Asked::Publish, "publish", &format!("{r},\"soak\",{n}"), room),
            40..=54 => self.ask(
                Asked::PublishWithAck,
                "publish-with-ack",
                &format!("{r},\"soak-ack\",{n}"),
                room,
            ),
            55..=69 => self.ask(Asked::Echo, "message-with-ack", &n.to_string(), room),
            70..=84 if self.rooms.len() > 1 => self.ask(Asked::Leave, "leave", &r, room),
            _ => self.ask(Asked::Join, "join", &r, room),
        }
    }

    /// Queues `event` with `args` (JSON, comma-separated) and an ack id.
    fn ask(&mut self, what: Asked, name: &'static str, args: &str, room: String) {
        let c = &self.shared.counts;
        let id = self.next_ack;
        self.next_ack += 1;
        self.conn.queue(event(Some(id), name, args));
        self.awaiting.insert(id, (Instant::now(), what, room));
        c.acks_awaited.fetch_add(1, Ordering::Relaxed);
        bump(&c.requests, name);
    }

    async fn flush(&mut self) -> Result<(), ()> {
        self.conn.flush().await.map_err(|_| ())
    }

    fn expire_acks(&mut self, now: Instant) {
        let before = self.awaiting.len();
        self.awaiting.retain(|_, (at, ..)| now.duration_since(*at) < ACK_TIMEOUT);
        let lost = (before - self.awaiting.len()) as u64;
        self.shared.counts.acks_lost.fetch_add(lost, Ordering::Relaxed);
    }

    /// Waits for the acknowledgements still awaited; what does not come counts as lost.
    async fn drain_acks(&mut self) {
        let deadline = Instant::now() + ACK_TIMEOUT;
        while !self.awaiting.is_empty() && !self.closed {
            match tokio::time::timeout_at(deadline, self.conn.recv()).await {
                Ok(Ok(m)) => self.on_incoming(m),
                _ => break,
            }
            if self.flush().await.is_err() {
                break;
            }
        }
        let lost = self.awaiting.len() as u64;
        self.awaiting.clear();
        self.shared.counts.acks_lost.fetch_add(lost, Ordering::Relaxed);
    }

    fn on_incoming(&mut self, m: Incoming) {
        let Incoming::Text(payload) = m else { return };
        let packets: Vec<Vec<u8>> = payload.packets().map(<[u8]>::to_vec).collect();
        for p in packets {
            match proto::eio(&p) {
                Ok(Eio::Ping(data)) => self.conn.queue_pong(data),
                Ok(Eio::Close) => self.closed = true,
                Ok(Eio::Message(m)) => self.on_packet_sio(m),
                _ => {}
            }
        }
    }

    /// One Socket.IO packet (after the Engine.IO `4`).
    fn on_packet_sio(&mut self, m: &[u8]) {
        let c = &self.shared.counts;
        let Ok(Some(sio)) = proto::sio(m, NSP) else { return };
        match sio.kind {
            Kind::Event => {
                c.events.fetch_add(1, Ordering::Relaxed);
                let args: Option<Vec<serde_json::Value>> = serde_json::from_slice(sio.data).ok();
                // With recovery on, each event's last argument is its offset.
                if self.pid.is_some() && sio.ack.is_none() {
                    if let Some(serde_json::Value::String(o)) = args.as_ref().and_then(|a| a.last())
                    {
                        self.offset = Some(o.clone());
                    }
                }
                if let Some(id) = sio.ack {
                    c.acks_sent.fetch_add(1, Ordering::Relaxed);
                    self.conn.queue(Bytes::from(format!("43{id}[\"ok\"]")));
                }
            }
            Kind::Ack => {
                let Some((_, what, room)) = sio.ack.and_then(|id| self.awaiting.remove(&id)) else {
                    return;
                };
                c.acks_received.fetch_add(1, Ordering::Relaxed);
                let reply: Option<Vec<serde_json::Value>> = serde_json::from_slice(sio.data).ok();
                let first = reply.as_ref().and_then(|r| r.first());
                match what {
                    Asked::Join => {
                        if !self.rooms.contains(&room) {
                            self.rooms.push(room);
                        }
                    }
                    Asked::Leave => self.rooms.retain(|r| *r != room),
                    Asked::PublishWithAck => {
                        if first.is_some_and(|v| !v["error"].is_null()) {
                            c.broadcast_ack_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Asked::Whoami => {
                        let got: Option<Vec<String>> =
                            first.and_then(|v| v["rooms"].as_array()).map(|a| {
                                a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect()
                            });
                        if let Some(expect) = self.whoami.take() {
                            if got.as_ref() != Some(&expect) {
                                c.recovery_mismatches.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Asked::Publish | Asked::Echo => {}
                }
            }
            Kind::Disconnect => self.closed = true,
            _ => {}
        }
    }
}

/// `42[id]["name",args]` as an Engine.IO packet.
fn event(ack: Option<u64>, name: &str, args: &str) -> Bytes {
    let id = ack.map_or(String::new(), |a| a.to_string());
    let sep = if args.is_empty() { "" } else { "," };
    Bytes::from(format!("42{id}[\"{name}\"{sep}{args}]"))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The time to the next request: 100 to 400 ms.
fn gap(rng: &mut Rng) -> Duration {
    Duration::from_millis(100 + rng.below(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_slope() {
        let pts: Vec<(f64, f64)> =
            (0..10).map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0)).collect();
        assert!((least_squares(&pts).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 5.0)).collect();
        assert_eq!(least_squares(&flat), Some(0.0));
        assert_eq!(least_squares(&pts[..2]), None);
        assert_eq!(least_squares(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn the_table_series_are_read_from_a_scrape() {
        let text = "# HELP shardcast_table_entries x\n# TYPE shardcast_table_entries gauge\n\
                    shardcast_table_entries{table=\"sockets\"} 12\n\
                    shardcast_table_entries{table=\"rooms\"} 3\n\
                    shardcast_sockets{namespace=\"/\"} 12\n# EOF\n";
        let t = parse_tables(text);
        assert_eq!(t.len(), 2);
        assert_eq!(t["sockets"], 12);
        assert_eq!(t["rooms"], 3);
    }

    #[test]
    fn events_are_written_as_socket_io_packets() {
        assert_eq!(&event(Some(4), "join", "\"r\"")[..], b"424[\"join\",\"r\"]");
        assert_eq!(&event(None, "disconnect-me", "")[..], b"42[\"disconnect-me\"]");
        assert_eq!(json_str("a\"b"), "\"a\\\"b\"");
    }
}

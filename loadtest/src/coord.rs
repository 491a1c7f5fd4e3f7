//! The coordinator: pre-flight checks (fd limit, ephemeral ports), starting the workers, the
//! setup barrier (every client connected and joined before measuring), the phases (one, or the
//! ramp's steps) with their drain, sampling the server process, the live progress line, and
//! the merged [`Outcome`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::link::{merge_reports, FromWorker, Gauges, StageReport, ToWorker, Workers};
use crate::plan::{Output, Plan, Scenario, Step, Steps};
use crate::stats::{hist_from_b64, new_hist, Percentiles};
use crate::sys::{self, mono_ns, ProcSample};

/// One measured phase, merged over all workers.
pub struct PhaseOutcome {
    /// Phase number.
    pub phase: u32,
    /// Rate of the phase.
    pub rate: f64,
    /// Merged report.
    pub report: StageReport,
    /// Seconds from the schedule start to the end of the drain.
    pub wall_s: f64,
    /// CPU time of each `--server-pid` during the phase (µs; `None` when it could not be read).
    pub server_cpu_us: Vec<Option<u64>>,
    /// Harness CPU time during the phase (µs): workers plus coordinator.
    pub harness_cpu_us: u64,
    /// Seconds over which CPU times were taken (Start sent to phase reported).
    pub cpu_wall_s: f64,
}

/// Server samples.
#[derive(Debug, Clone, Default)]
pub struct ServerSamples {
    /// Before any client connected.
    pub baseline: Option<ProcSample>,
    /// Once every client connected (and joined).
    pub connected: Option<ProcSample>,
    /// At the end of the last phase.
    pub end: Option<ProcSample>,
    /// Highest RSS seen.
    pub peak_rss: u64,
    /// Whether the process went away during the run.
    pub vanished: bool,
}

/// Everything measured by a run.
pub struct Outcome {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Connect-and-join stage.
    pub setup: StageReport,
    /// The phases.
    pub phases: Vec<PhaseOutcome>,
    /// After the last phase (closing).
    pub finish: StageReport,
    /// Latency per second since the first phase started.
    pub timeline: BTreeMap<u64, Histogram<u64>>,
    /// Sent and received totals at each whole second since the first phase started.
    pub rates: Vec<(u64, u64, u64)>,
    /// Samples of each `--server-pid`, in order.
    pub servers: Vec<ServerSamples>,
    /// Connections established at the end of setup.
    pub connected: i64,
    /// Cores the harness could use.
    pub cores_available: usize,
    /// Seconds of the whole run.
    pub wall_s: f64,
    /// Seconds of the setup stage.
    pub setup_s: f64,
    /// Open-files limit per process.
    pub fd_limit: u64,
}

/// Checks what would make the run fail for the harness's own reasons.
pub fn preflight(plan: &Plan) -> anyhow::Result<u64> {
    let limit = sys::raise_fd_limit();
    let conns = u64::from(plan.connections());
    let per_proc = conns.div_ceil(u64::from(plan.worker_slots()));
    let polling = (0..plan.connections()).filter(|&g| plan.is_polling(g)).count() as u64;
    let fds = per_proc + polling.div_ceil(u64::from(plan.worker_slots())) + 64;
    if fds > limit {
        bail!(
            "{per_proc} connections per process need about {fds} file descriptors but the limit is \
             {limit}: use --workers {} (each worker is a process with its own limit)",
            (conns * 11 / 10).div_ceil(limit.saturating_sub(64).max(1)).max(2)
        );
    }
    // Connections from one source address to one server address share the ephemeral range.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map(|r| r.end() - r.start() + 1)
        .unwrap_or(28_000);
    let sockets = conns + polling;
    let sources = u64::from(plan.source_ips.max(1));
    if plan.scenario != Scenario::Connect && sockets.div_ceil(sources) > range * 9 / 10 {
        bail!(
            "{sockets} sockets to one server address from {sources} source address(es) would exhaust \
             the {range} ephemeral ports: use --source-ips {}",
            (sockets * 10 / 9).div_ceil(range).max(2)
        );
    }
    Ok(limit)
}

struct Progress {
    bar: ProgressBar,
    last: (u64, u64, u64),
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            None,
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr_with_hz(4)
            },
        );
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar, last: (0, 0, 0) }
    }

    fn update(&mut self, stage: &str, elapsed: f64, g: &Gauges, current: Option<&Histogram<u64>>) {
        let now = mono_ns();
        let dt = (now.saturating_sub(self.last.0)) as f64 / 1e9;
        let rate = |n: u64, o: u64| if dt > 0.0 { n.saturating_sub(o) as f64 / dt } else { 0.0 };
        let (sent_rate, recv_rate) = (rate(g.sent, self.last.1), rate(g.received, self.last.2));
        self.last = (now, g.sent, g.received);
        let lat = match current {
            Some(h) if !h.is_empty() => format!(
                " p50 {} p99 {}",
                fmt_us(h.value_at_quantile(0.5)),
                fmt_us(h.value_at_quantile(0.99))
            ),
            _ => String::new(),
        };
        self.bar.set_message(format!(
            "{stage} {elapsed:>6.1}s | connected {} | sent {:.0}/s recv {:.0}/s{lat} | errors {}",
            g.connected, sent_rate, recv_rate, g.errors
        ));
    }
}

/// `1234` µs as `1.23ms`.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

struct Sampler {
    pid: u32,
    samples: Arc<Mutex<ServerSamples>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> anyhow::Result<Sampler> {
        let first = sys::sample_proc(pid).with_context(|| {
            format!("--server-pid {pid}: cannot read /proc/{pid}/status and stat")
        })?;
        let samples = Arc::new(Mutex::new(ServerSamples {
            baseline: Some(first),
            peak_rss: first.rss_bytes,
            ..Default::default()
        }));
        let s = samples.clone();
        let task = tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(200));
            loop {
                t.tick().await;
                let mut g = s.lock().expect("sampler lock");
                match sys::sample_proc(pid) {
                    Some(x) => g.peak_rss = g.peak_rss.max(x.rss_bytes),
                    None => {
                        g.vanished = true;
                        return;
                    }
                }
            }
        });
        Ok(Sampler { pid, samples, task })
    }

    fn now(&self) -> Option<ProcSample> {
        let x = sys::sample_proc(self.pid);
        if let Some(x) = x {
            let mut g = self.samples.lock().expect("sampler lock");
            g.peak_rss = g.peak_rss.max(x.rss_bytes);
        }
        x
    }
}

struct Live {
    gauges: Vec<Gauges>,
    timeline: BTreeMap<u64, Histogram<u64>>,
    rates: Vec<(u64, u64, u64)>,
    first_start: Option<u64>,
}

impl Live {
    fn sum(&self) -> Gauges {
        let mut s = Gauges::default();
        for g in &self.gauges {
            s.add(g);
        }
        s
    }

    /// Handles a message that may come at any time; returns the rest.
    fn absorb(&mut self, w: u32, m: FromWorker) -> anyhow::Result<Option<FromWorker>> {
        match m {
            FromWorker::Gauges(g) => {
                self.gauges[w as usize] = g;
                Ok(None)
            }
            FromWorker::Tick { sec, hist } => {
                let h = hist_from_b64(&hist)?;
                let e = self.timeline.entry(sec).or_insert_with(new_hist);
                e.add(&h).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(None)
            }
            FromWorker::Fatal { error } => bail!("worker {w}: {error}"),
            other => Ok(Some(other)),
        }
    }

    fn sample_rates(&mut self, now: u64) {
        if let Some(first) = self.first_start {
            if now >= first {
                let sec = (now - first) / 1_000_000_000;
                if self.rates.last().is_none_or(|&(s, _, _)| s < sec) {
                    let g = self.sum();
                    self.rates.push((sec, g.sent, g.received));
                }
            }
        }
    }
}

/// Runs the plan.
pub async fn run(mut plan: Plan, out: &Output) -> anyhow::Result<Outcome> {
    let fd_limit = preflight(&plan)?;
    plan.epoch_ns = mono_ns();
    let plan = Arc::new(plan);
    let samplers = plan
        .server_pids
        .iter()
        .map(|&pid| Sampler::start(pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t0 = mono_ns();
    let coord_cpu = || sys::cpu_us(false);
    let mut workers = Workers::start(&plan)?;
    let n = plan.worker_slots() as usize;
    let mut live = Live {
        gauges: vec![Gauges::default(); n],
        timeline: BTreeMap::new(),
        rates: Vec::new(),
        first_start: None,
    };
    let mut progress = Progress::new(out.quiet);
    let result =
        drive(&plan, &mut workers, &mut live, &mut progress, &samplers, t0, coord_cpu).await;
    progress.bar.finish_and_clear();
    if result.is_err() {
        workers.broadcast(&ToWorker::Stop);
    }
    workers.reap().await;
    let (setup, phases, finish, connected, setup_s) = result?;
    let servers = samplers
        .into_iter()
        .map(|s| {
            s.task.abort();
            let mut g = s.samples.lock().expect("sampler lock").clone();
            g.end = sys::sample_proc(s.pid).or(g.end);
            if g.connected.is_none() {
                g.connected = g.baseline;
            }
            g
        })
        .collect();
    Ok(Outcome {
        plan: plan.clone(),
        setup,
        phases,
        finish,
        timeline: live.timeline,
        rates: live.rates,
        servers,
        connected,
        cores_available: sys::cores_available(),
        wall_s: (mono_ns() - t0) as f64 / 1e9,
        setup_s,
        fd_limit,
    })
}

type Driven = (StageReport, Vec<PhaseOutcome>, StageReport, i64, f64);

async fn drive(
    plan: &Arc<Plan>,
    workers: &mut Workers,
    live: &mut Live,
    progress: &mut Progress,
    samplers: &[Sampler],
    t0: u64,
    coord_cpu: impl Fn() -> u64,
) -> anyhow::Result<Driven> {
    let n = plan.worker_slots() as usize;
    let stage_name = plan.scenario.name();
    // Setup: every client connected and joined (or failed) in every worker.
    let setup_deadline =
        tokio::time::Instant::now() + Duration::from_secs_f64(plan.setup_timeout_s);
    let mut readies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while readies.len() < n {
        tokio::select! {
            m = workers.rx.recv() => {
                let (w, m) = m.context("workers went away during setup")?;
                if let Some(FromWorker::Ready(r)) = live.absorb(w, m)? {
                    readies.push(r);
                }
            }
            _ = tick.tick() => {
                if tokio::time::Instant::now() > setup_deadline {
                    bail!("connecting and joining did not finish within --setup-timeout {} s", plan.setup_timeout_s);
                }
                let g = live.sum();
                progress.update(&format!("[{stage_name} setup {}/{}]", g.connected, plan.connections()), (mono_ns() - t0) as f64 / 1e9, &g, None);
            }
        }
    }
    let setup = merge_reports(readies)?;
    let setup_s = (mono_ns() - t0) as f64 / 1e9;
    // The gauges lag by up to 250 ms: count the connections from the setup reports.
    let connected = setup.counters.connects_ok as i64;
    for s in samplers {
        let x = s.now();
        s.samples.lock().expect("sampler lock").connected = x;
    }
    let mut room_joined = setup.joined.clone();
    room_joined.resize(plan.rooms as usize, 0);

    // A warm-up, when asked for, runs first at the first rate and is thrown away; then the
    // measured phases, in the order `Steps` gives (ramp steps, then any refinement).
    let warmup = plan.warmup_s > 0.0 && !matches!(plan.shape, Scenario::Idle | Scenario::Connect);
    let mut order = Steps::new(plan.rate, plan.ramp.as_ref(), warmup);
    let mut phases = Vec::new();
    let mut held = None;
    while let Some(Step { phase, rate, warming }) = order.next(held) {
        let start_ns = mono_ns() + 200_000_000;
        live.first_start.get_or_insert(start_ns);
        let base = live.sum();
        let cpu0 = coord_cpu();
        let t_cpu0 = mono_ns();
        let srv0: Vec<_> = samplers.iter().map(Sampler::now).collect();
        let dur_ns = (if warming { plan.warmup_s } else { plan.duration_s } * 1e9) as u64;
        let sched_end = start_ns + dur_ns;
        workers.broadcast(&ToWorker::Start {
            phase,
            start_ns,
            end_ns: sched_end,
            rate,
            room_joined: room_joined.clone(),
        });
        let hard_end = match plan.shape {
            Scenario::Idle | Scenario::Connect => sched_end,
            _ => sched_end + (plan.drain_s * 1e9) as u64,
        };
        let label = match &plan.ramp {
            _ if warming => format!("[warm-up @{rate:.0}/s]"),
            Some(r) if phase > r.steps => {
                format!("[refine {}/{} @{rate:.0}/s]", phase - r.steps, r.refine)
            }
            Some(r) => format!("[ramp {}/{} @{rate:.0}/s]", phase + 1, r.steps),
            None => format!("[{stage_name}]"),
        };
        loop {
            tokio::select! {
                m = workers.rx.recv() => {
                    let (w, m) = m.context("workers went away")?;
                    if let Some(other) = live.absorb(w, m)? {
                        bail!("unexpected message during a phase: {other:?}");
                    }
                }
                _ = tick.tick() => {
                    let now = mono_ns();
                    live.sample_rates(now);
                    let sum = live.sum();
                    let cur = live.timeline.last_key_value().map(|(_, h)| h);
                    let elapsed = now.saturating_sub(start_ns) as f64 / 1e9;
                    progress.update(&label, elapsed, &sum, cur);
                    if now >= hard_end || phase_complete(plan, &sum, &base, now, start_ns, sched_end, &live.gauges) {
                        break;
                    }
                }
            }
        }
        let wall_s = (mono_ns() - start_ns) as f64 / 1e9;
        let srv1: Vec<_> = samplers.iter().map(Sampler::now).collect();
        workers.broadcast(&ToWorker::End { phase });
        let mut parts = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while parts.len() < n {
            let (w, m) = tokio::time::timeout_at(deadline, workers.rx.recv())
                .await
                .context("workers did not report the phase within 20 s")?
                .context("workers went away")?;
            match live.absorb(w, m)? {
                Some(FromWorker::PhaseDone { report, .. }) => parts.push(report),
                Some(other) => bail!("unexpected message at the end of a phase: {other:?}"),
                None => {}
            }
        }
        if warming {
            // Thrown away: each measured phase samples the servers' CPU itself.
            drop(srv1);
            held = None;
            continue;
        }
        let mut report = merge_reports(parts)?;
        let cpu_wall_s = (mono_ns() - t_cpu0) as f64 / 1e9;
        // In-process, the engine's figure is this whole process already.
        let harness_cpu_us =
            if plan.workers == 0 { report.cpu_us } else { report.cpu_us + (coord_cpu() - cpu0) };
        report.cpu_us = harness_cpu_us;
        let server_cpu_us = srv0
            .iter()
            .zip(&srv1)
            .map(|(a, b)| Some(b.as_ref()?.cpu_us.saturating_sub(a.as_ref()?.cpu_us)))
            .collect();
        for (s, x) in samplers.iter().zip(srv1) {
            if x.is_some() {
                s.samples.lock().expect("sampler lock").end = x;
            }
        }
        held = plan.ramp.as_ref().map(|r| step_holds(plan, &report, r.p99_ms, r.max_loss));
        phases.push(PhaseOutcome {
            phase,
            rate,
            report,
            wall_s,
            server_cpu_us,
            harness_cpu_us,
            cpu_wall_s,
        });
    }

    workers.broadcast(&ToWorker::Stop);
    let mut finals = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while finals.len() < n {
        let Ok(Some((w, m))) = tokio::time::timeout_at(deadline, workers.rx.recv()).await else {
            bail!("workers did not stop within 15 s");
        };
        if let Some(FromWorker::Final(r)) = live.absorb(w, m)? {
            finals.push(r);
        }
    }
    let finish = merge_reports(finals)?;
    Ok((setup, phases, finish, connected, setup_s))
}

/// Whether a phase can end before its hard bound: the schedule is over, everything scheduled was
/// sent, and every expected delivery arrived (or every connection attempt resolved).
fn phase_complete(
    plan: &Plan,
    sum: &Gauges,
    base: &Gauges,
    now: u64,
    start: u64,
    sched_end: u64,
    each: &[Gauges],
) -> bool {
    let fresh = |t: u64| each.iter().all(|g| g.at_ns >= t);
    match plan.shape {
        Scenario::Idle => false,
        Scenario::Connect => {
            now > start
                && fresh(start)
                && sum.scheduled - base.scheduled >= u64::from(plan.clients)
                && sum.done - base.done >= sum.scheduled - base.scheduled
                && sum.connected == 0
        }
        _ => {
            now >= sched_end
                && fresh(sched_end)
                && sum.sent - base.sent >= sum.scheduled - base.scheduled
                && sum.received - base.received >= sum.expected - base.expected
        }
    }
}

/// Expected, received, lost of a phase report as the scenario defines them.
pub fn tally(plan: &Plan, r: &StageReport) -> (u64, u64) {
    let c = &r.counters;
    match plan.shape {
        Scenario::Connect => (u64::from(plan.clients), c.connects_ok),
        Scenario::Idle => (u64::from(plan.connections()), c.held_at_end),
        _ => (c.expected, c.received),
    }
}

/// A ramp step holds when its p99 meets the objective and its loss is within bounds.
pub fn step_holds(plan: &Plan, r: &StageReport, p99_ms: f64, max_loss: f64) -> bool {
    let (expected, received) = tally(plan, r);
    if expected == 0 {
        return false;
    }
    let lost = expected.saturating_sub(received) as f64 / expected as f64;
    let p99 = hist_from_b64(&r.hists.latency).map(|h| Percentiles::of(&h).p99).unwrap_or(u64::MAX);
    lost <= max_loss && (p99 as f64) <= p99_ms * 1000.0
}

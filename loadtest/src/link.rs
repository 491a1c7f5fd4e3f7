//! Coordinator <-> worker messages, and the two ways to carry them: a channel to an in-process
//! engine, or JSON lines over the stdin/stdout of a worker process (`shardcast-loadtest worker`,
//! the same binary re-executed).

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::plan::Plan;
use std::collections::BTreeMap;

use crate::stats::{self, hist_to_b64, new_hist, Counters, Errors, PubCounts};

/// Coordinator to worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ToWorker {
    /// Start measuring phase `phase` at `start_ns` (CLOCK_MONOTONIC) at `rate`.
    Start {
        /// Phase number (ramp step).
        phase: u32,
        /// When the schedule starts.
        start_ns: u64,
        /// When it ends (a warm-up is shorter or longer than a measured phase).
        end_ns: u64,
        /// Rate per room (or per client for echo).
        rate: f64,
        /// Subscribers that joined each room, over all workers.
        room_joined: Vec<u32>,
    },
    /// End the phase and report.
    End {
        /// Phase number.
        phase: u32,
    },
    /// Close everything and exit.
    Stop,
}

/// Live counters of a process, sent four times a second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Gauges {
    /// When sampled (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
    /// Connections open now.
    pub connected: i64,
    /// Messages (or connection attempts) scheduled so far.
    pub scheduled: u64,
    /// Sent so far.
    pub sent: u64,
    /// Deliveries expected for what was sent.
    pub expected: u64,
    /// Distinct deliveries received (or connects succeeded).
    pub received: u64,
    /// Attempts resolved (connect).
    pub done: u64,
    /// Errors so far.
    pub errors: u64,
}

impl Gauges {
    /// Adds `o` (not `at_ns`, which becomes the oldest of the two).
    pub fn add(&mut self, o: &Gauges) {
        self.at_ns = if self.at_ns == 0 { o.at_ns } else { self.at_ns.min(o.at_ns) };
        self.connected += o.connected;
        self.scheduled += o.scheduled;
        self.sent += o.sent;
        self.expected += o.expected;
        self.received += o.received;
        self.done += o.done;
        self.errors += o.errors;
    }
}

/// Histograms of a stage, each V2-deflate base64.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hists {
    /// Delivery (or RTT, or connect) latency from the scheduled time.
    pub latency: String,
    /// Publisher lag behind schedule.
    pub lag: String,
    /// From the actual write to the receive (excludes the sender's timer slack).
    #[serde(default)]
    pub transit: String,
    /// Whole connection handshake (TCP to namespace connected).
    pub connect: String,
    /// Until Engine.IO OPEN.
    pub eio_open: String,
    /// Until namespace CONNECT.
    pub ns_connect: String,
    /// `recover`: a comeback until its CONNECT reply (the replay included).
    #[serde(default)]
    pub recover: String,
}

/// What one stage (setup, or a phase) measured in one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageReport {
    /// Counters.
    pub counters: Counters,
    /// Errors by reason.
    pub errors: Errors,
    /// Histograms.
    pub hists: Hists,
    /// Per publisher id (only those with something to say).
    pub pubs: Vec<(u32, PubCounts)>,
    /// Subscribers joined per room (setup only).
    pub joined: Vec<u32>,
    /// Per server in `--url` order, what its subscribers received (cluster plans only).
    #[serde(default)]
    pub servers: Vec<ServerStage>,
    /// CPU time of the process during the stage, microseconds.
    pub cpu_us: u64,
}

/// What the subscribers of one server of a cluster measured in one stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerStage {
    /// Deliveries received, duplicates and reordered (`sent` and `expected` stay 0).
    pub counts: PubCounts,
    /// Latency from the scheduled send time (V2-deflate base64).
    pub latency: String,
    /// Subscribers joined per room (setup only).
    pub joined: Vec<u32>,
    /// `recover`: comebacks that connected to this server.
    #[serde(default)]
    pub comebacks: u64,
    /// `recover`: of those, the ones that got their socket back.
    #[serde(default)]
    pub recovered: u64,
    /// `recover`: the time those took to recover (V2-deflate base64; see `Hists::recover`).
    #[serde(default)]
    pub recover: String,
}

/// Worker to coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// Every client connected (and joined) or failed.
    Ready(StageReport),
    /// Live counters.
    Gauges(Gauges),
    /// Latency histogram of one second of the run (seconds since the first phase started).
    Tick {
        /// Second index.
        sec: u64,
        /// Histogram.
        hist: String,
    },
    /// A phase's results.
    PhaseDone {
        /// Phase number.
        phase: u32,
        /// Results.
        report: StageReport,
    },
    /// The process closed its clients; what happened after the last phase.
    Final(StageReport),
    /// The process cannot go on.
    Fatal {
        /// Why.
        error: String,
    },
}

/// First line a worker process reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInit {
    /// The plan.
    pub plan: Plan,
    /// This worker's index.
    pub worker: u32,
}

/// The coordinator's handle on all workers.
pub struct Workers {
    /// One sender per worker.
    pub senders: Vec<UnboundedSender<ToWorker>>,
    /// Messages from all workers, tagged with the worker index.
    pub rx: UnboundedReceiver<(u32, FromWorker)>,
    children: Vec<tokio::process::Child>,
}

impl Workers {
    /// Starts the engine in this process (`plan.workers == 0`) or `plan.workers` processes.
    pub fn start(plan: &Arc<Plan>) -> anyhow::Result<Workers> {
        let (all_tx, rx) = unbounded_channel();
        let mut senders = Vec::new();
        let mut children = Vec::new();
        if plan.workers == 0 {
            let (cmd_tx, cmd_rx) = unbounded_channel();
            let (out_tx, mut out_rx) = unbounded_channel();
            let plan = plan.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::engine::run_process(plan, 0, cmd_rx, out_tx.clone()).await {
                    let _ = out_tx.send(FromWorker::Fatal { error: format!("{e:#}") });
                }
            });
            let fwd = all_tx.clone();
            tokio::spawn(async move {
                while let Some(m) = out_rx.recv().await {
                    if fwd.send((0, m)).is_err() {
                        return;
                    }
                }
            });
            senders.push(cmd_tx);
        } else {
            let exe = std::env::current_exe().context("cannot find the harness's own binary")?;
            for w in 0..plan.workers {
                let mut child = tokio::process::Command::new(&exe)
                    .arg("worker")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot start worker {w} ({})", exe.display()))?;
                let mut stdin = child.stdin.take().expect("piped");
                let stdout = child.stdout.take().expect("piped");
                let init =
                    serde_json::to_string(&WorkerInit { plan: (**plan).clone(), worker: w })?;
                let (cmd_tx, mut cmd_rx) = unbounded_channel::<ToWorker>();
                tokio::spawn(async move {
                    let mut line = init;
                    line.push('\n');
                    if stdin.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    while let Some(cmd) = cmd_rx.recv().await {
                        let mut line = serde_json::to_string(&cmd).expect("commands serialize");
                        line.push('\n');
                        if stdin.write_all(line.as_bytes()).await.is_err()
                            || stdin.flush().await.is_err()
                        {
                            return;
                        }
                    }
                });
                let fwd = all_tx.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stdout).lines();
                    let mut finished = false;
                    loop {
                        match lines.next_line().await {
                            Ok(Some(l)) => {
                                let msg =
                                    serde_json::from_str::<FromWorker>(&l).unwrap_or_else(|e| {
                                        FromWorker::Fatal {
                                            error: format!("unreadable line from worker {w}: {e}"),
                                        }
                                    });
                                finished |=
                                    matches!(msg, FromWorker::Final(_) | FromWorker::Fatal { .. });
                                if fwd.send((w, msg)).is_err() {
                                    return;
                                }
                            }
                            _ => {
                                if !finished {
                                    let _ = fwd.send((
                                        w,
                                        FromWorker::Fatal {
                                            error: format!("worker {w} exited early"),
                                        },
                                    ));
                                }
                                return;
                            }
                        }
                    }
                });
                senders.push(cmd_tx);
                children.push(child);
            }
        }
        Ok(Workers { senders, rx, children })
    }

    /// Sends `cmd` to every worker.
    pub fn broadcast(&self, cmd: &ToWorker) {
        for s in &self.senders {
            let _ = s.send(cmd.clone());
        }
    }

    /// Waits (bounded) for the worker processes to exit, then kills what is left.
    pub async fn reap(&mut self) {
        for c in &mut self.children {
            if tokio::time::timeout(std::time::Duration::from_secs(5), c.wait()).await.is_err() {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
    }
}

/// Main of `shardcast-loadtest worker`: plan from the first stdin line, commands from the next
/// ones (EOF = stop), reports as JSON lines on stdout. Hard-bounded by the plan's wall time.
pub fn worker_main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let first = lines.next_line().await?.context("worker: no plan on stdin")?;
        let init: WorkerInit = serde_json::from_str(&first).context("worker: bad plan")?;
        let plan = Arc::new(init.plan);
        crate::sys::raise_fd_limit();
        let (cmd_tx, cmd_rx) = unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                match serde_json::from_str::<ToWorker>(&l) {
                    Ok(c) => {
                        let _ = cmd_tx.send(c);
                    }
                    Err(e) => eprintln!("worker: bad command {l:?}: {e}"),
                }
            }
            let _ = cmd_tx.send(ToWorker::Stop);
        });
        let (out_tx, mut out_rx) = unbounded_channel::<FromWorker>();
        let writer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(m) = out_rx.recv().await {
                let mut line = serde_json::to_string(&m).expect("reports serialize");
                line.push('\n');
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err()
                {
                    return;
                }
            }
        });
        let bound = std::time::Duration::from_secs_f64(plan.max_wall_s());
        let run = crate::engine::run_process(plan, init.worker, cmd_rx, out_tx.clone());
        let r = match tokio::time::timeout(bound, run).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("worker {} exceeded its time bound", init.worker)),
        };
        if let Err(e) = &r {
            let _ = out_tx.send(FromWorker::Fatal { error: format!("{e:#}") });
        }
        drop(out_tx);
        let _ = writer.await;
        r
    })
}

/// Merges stage reports of threads or workers: counters, errors, per-publisher and per-server
/// counts and joins add up, histograms merge exactly, CPU times add up.
pub fn merge_reports(parts: Vec<StageReport>) -> anyhow::Result<StageReport> {
    let mut all = StageReport::default();
    let mut hs =
        [new_hist(), new_hist(), new_hist(), new_hist(), new_hist(), new_hist(), new_hist()];
    let mut pubs: BTreeMap<u32, PubCounts> = BTreeMap::new();
    let mut servers: Vec<(ServerStage, Histogram<u64>, Histogram<u64>)> = Vec::new();
    for p in parts {
        all.counters.merge(&p.counters);
        stats::merge_errors(&mut all.errors, &p.errors);
        all.cpu_us += p.cpu_us;
        let src = [
            &p.hists.latency,
            &p.hists.lag,
            &p.hists.connect,
            &p.hists.eio_open,
            &p.hists.ns_connect,
            &p.hists.transit,
            &p.hists.recover,
        ];
        for (h, s) in hs.iter_mut().zip(src) {
            if !s.is_empty() {
                h.add(stats::hist_from_b64(s)?).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            }
        }
        for (id, c) in p.pubs {
            pubs.entry(id).or_default().merge(&c);
        }
        add_joined(&mut all.joined, &p.joined);
        if servers.len() < p.servers.len() {
            servers
                .resize_with(p.servers.len(), || (ServerStage::default(), new_hist(), new_hist()));
        }
        for ((sum, latency, recover), s) in servers.iter_mut().zip(&p.servers) {
            sum.counts.merge(&s.counts);
            add_joined(&mut sum.joined, &s.joined);
            sum.comebacks += s.comebacks;
            sum.recovered += s.recovered;
            for (h, s) in [(&mut *latency, &s.latency), (&mut *recover, &s.recover)] {
                if !s.is_empty() {
                    h.add(stats::hist_from_b64(s)?).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
            }
        }
    }
    all.servers = servers
        .into_iter()
        .map(|(sum, latency, recover)| ServerStage {
            latency: hist_to_b64(&latency),
            recover: hist_to_b64(&recover),
            ..sum
        })
        .collect();
    let [l, g, c, e, n, t, r] = hs;
    all.hists = Hists {
        latency: hist_to_b64(&l),
        lag: hist_to_b64(&g),
        transit: hist_to_b64(&t),
        connect: hist_to_b64(&c),
        eio_open: hist_to_b64(&e),
        ns_connect: hist_to_b64(&n),
        recover: hist_to_b64(&r),
    };
    all.pubs = pubs.into_iter().collect();
    Ok(all)
}

/// Adds joins per room `b` into `a`.
fn add_joined(a: &mut Vec<u32>, b: &[u32]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

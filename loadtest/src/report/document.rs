//! The JSON document (`--json`): [`Report`] and the parts it is made of. The first fields are
//! the fixed interface.

use serde::Serialize;

use crate::plan::Plan;
use crate::stats::{Counters, Errors, Percentiles, PubCounts};

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
    /// `recover`: the cut connections and how they came back.
    pub recovery: Option<RecoveryReport>,
    /// Server process, with `--server-pid` (in a cluster, the first server's).
    pub server: Option<ServerReport>,
    /// `cluster-fanout` (and `ramp --shape cluster-fanout`): local and remote subscribers,
    /// the Redis hop, and each server.
    pub cluster: Option<ClusterReport>,
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
    /// The cluster accounting of the step (`--shape cluster-fanout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
}

/// A fan-out across a cluster: subscribers on the publishers' server ("local", the first
/// `--url`) and on the others ("remote"), and what the trip through the adapter adds.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    /// Messages published, each one broadcast to a room with subscribers on every server.
    pub broadcasts: u64,
    /// broadcasts / scheduled seconds.
    pub broadcasts_per_sec: f64,
    /// Subscribers on the publishers' server.
    pub local: GroupReport,
    /// Subscribers on the other servers.
    pub remote: GroupReport,
    /// Remote minus local latency (µs; negative when remote was faster).
    pub redis_hop_us: Hop,
    /// Each server, in `--url` order.
    pub servers: Vec<ClusterServer>,
}

/// The deliveries to a set of subscribers.
#[derive(Debug, Serialize)]
pub struct GroupReport {
    /// Subscribers joined.
    pub subscribers: u64,
    /// Deliveries that should arrive (sent x their subscribers joined in the room).
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// expected - received.
    pub lost: u64,
    /// Received again.
    pub duplicates: u64,
    /// Arrived after a later one of the same publisher.
    pub reordered: u64,
    /// Latency from the scheduled send time.
    pub latency_us: Percentiles,
}

/// Differences of two latency distributions, µs.
#[derive(Debug, Serialize)]
pub struct Hop {
    /// Of the medians.
    pub p50: i64,
    /// Of the 99th percentiles.
    pub p99: i64,
}

/// One server of a cluster run.
#[derive(Debug, Serialize)]
pub struct ClusterServer {
    /// `--url`.
    pub url: String,
    /// Whether the publishers are connected to it (the first).
    pub publishers: bool,
    /// Its subscribers' deliveries.
    #[serde(flatten)]
    pub deliveries: GroupReport,
    /// `--server-pid`: its CPU during the measured phases, µs.
    pub cpu_us: Option<u64>,
    /// Its CPU as a share of one core.
    pub cpu_share_of_one_core: Option<f64>,
    /// Its CPU µs per broadcast published (on the publishers' server: taking the publish,
    /// local fan-out and handing it to the adapter; on the others: the adapter's side and
    /// their fan-out).
    pub cpu_us_per_broadcast: Option<f64>,
}

/// `recover`: every subscriber's connection cut once and brought back with its session.
#[derive(Debug, Serialize)]
pub struct RecoveryReport {
    /// Connections cut.
    pub cuts: u64,
    /// Comebacks connected again (with their `pid` and last offset when the server gave a
    /// pid).
    pub attempts: u64,
    /// Comebacks that got their socket back (the same id).
    pub recovered: u64,
    /// Comebacks that got a new session instead (what they missed is lost).
    pub refused: u64,
    /// Comebacks that did not get through at all (`cuts - attempts`: still away at the end,
    /// or whose reconnection failed; reasons in `errors`).
    pub missing: u64,
    /// From a comeback's first byte to its CONNECT reply, the replay of what it missed
    /// included (the missed packets come before the reply).
    pub time_to_recover_us: Percentiles,
    /// How long each connection stayed away, in ms (`--down`).
    pub down_ms: f64,
    /// Comebacks that connected to another server than the one they were cut from (in a
    /// cluster every comeback goes to the next `--url`; 0 with one server).
    pub other_server: u64,
    /// Of those, the ones that got their socket back: sessions recovered across servers.
    pub recovered_on_other_server: u64,
    /// In a cluster, each server in `--url` order as a destination: the comebacks that
    /// connected to it (those cut from the one before it) and their time to recover. Absent
    /// with one server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<RecoveryServer>,
}

/// The comebacks that connected to one server of a cluster in `recover`.
#[derive(Debug, Serialize)]
pub struct RecoveryServer {
    /// `--url`.
    pub url: String,
    /// The `--url` they were cut from (the one before it).
    pub from: String,
    /// Comebacks connected to it.
    pub attempts: u64,
    /// Of those, the ones that got their socket back.
    pub recovered: u64,
    /// Of those, the ones that got a new session instead.
    pub refused: u64,
    /// Their time to recover (see [`RecoveryReport::time_to_recover_us`]).
    pub time_to_recover_us: Percentiles,
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
    /// Server CPU µs per message published (fanout, lobby: one broadcast each).
    pub cpu_us_per_broadcast: f64,
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

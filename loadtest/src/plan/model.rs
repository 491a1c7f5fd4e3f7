//! The validated plan of a run, shared by the coordinator and every worker process (and written
//! into the JSON): [`Plan`], its [`Scenario`] and [`RampPlan`], and the [`Output`] options that
//! stay in the coordinator.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::Command;

/// The scenario of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// See [`Command::Fanout`].
    Fanout,
    /// See [`Command::ClusterFanout`].
    #[serde(rename = "cluster-fanout")]
    ClusterFanout,
    /// See [`Command::Lobby`].
    Lobby,
    /// See [`Command::Echo`].
    Echo,
    /// See [`Command::Connect`].
    Connect,
    /// See [`Command::Idle`].
    Idle,
    /// See [`Command::Ramp`].
    Ramp,
    /// See [`Command::Recover`].
    Recover,
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::ClusterFanout => "cluster-fanout",
            Scenario::Lobby => "lobby",
            Scenario::Echo => "echo",
            Scenario::Connect => "connect",
            Scenario::Idle => "idle",
            Scenario::Ramp => "ramp",
            Scenario::Recover => "recover",
        }
    }
}

/// Ramp settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RampPlan {
    /// Rate multiplier per step.
    pub step_factor: f64,
    /// Most steps.
    pub steps: u32,
    /// p99 objective in ms.
    pub p99_ms: f64,
    /// Allowed loss fraction.
    pub max_loss: f64,
    /// Steps between the highest rate that held and the lowest that broke, after the break.
    #[serde(default)]
    pub refine: u32,
}

/// Everything a run needs, validated. Serialized to the worker processes and into the JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// The traffic shape the clients run (`ramp`'s is fanout or lobby; `cluster-fanout`'s is
    /// fanout over several servers; otherwise = scenario).
    pub shape: Scenario,
    /// The first `--url` as given (the publishers' server).
    pub url: String,
    /// Every server, in `--url` order: one, or a cluster (`cluster-fanout`).
    pub servers: Vec<ServerAddr>,
    /// Engine.IO path, with leading and trailing `/`.
    pub path: String,
    /// Namespace.
    pub namespace: String,
    /// Raw JSON auth object.
    pub auth: Option<String>,
    /// Share of long-polling connections.
    pub polling_share: f64,
    /// `--clients`.
    pub clients: u32,
    /// Rooms (fanout, lobby).
    pub rooms: u32,
    /// Publishers per room (fanout).
    pub publishers: u32,
    /// Rate (see `--rate`); for ramp, the first step's.
    pub rate: f64,
    /// `connect`: attempts per second, `None` = all at once.
    pub connect_rate: Option<f64>,
    /// `connect`: seconds each connection is held.
    pub hold_s: f64,
    /// Padding bytes.
    pub payload: usize,
    /// Delivered (or echoed) event.
    pub event: String,
    /// Join event.
    pub join_event: String,
    /// Publish event.
    pub publish_event: String,
    /// Room name prefix.
    pub room_prefix: String,
    /// Measured duration (per step for ramp).
    pub duration_s: f64,
    /// Longest drain.
    pub drain_s: f64,
    /// Unmeasured warm-up before the first phase, at its rate (0 = none).
    #[serde(default)]
    pub warmup_s: f64,
    /// Worker processes (0 = in-process).
    pub workers: u32,
    /// Client threads per process.
    pub threads: u32,
    /// Source addresses (0 = kernel's choice).
    pub source_ips: u32,
    /// Reconnect lost clients.
    pub reconnect: bool,
    /// Handshakes in flight per process.
    pub connect_concurrency: u32,
    /// Handshake and join timeout.
    pub connect_timeout_s: f64,
    /// Bound of the connect-and-join stage.
    pub setup_timeout_s: f64,
    /// Ramp settings.
    pub ramp: Option<RampPlan>,
    /// `recover`: when every subscriber's connection is cut, and for how long.
    #[serde(default)]
    pub recover: Option<RecoverPlan>,
    /// `--server-pid`: none, or one per server in `servers` order.
    pub server_pids: Vec<u32>,
    /// CLOCK_MONOTONIC origin of the scheduled timestamps carried in messages (kept small so
    /// they survive a JavaScript server's doubles exactly).
    pub epoch_ns: u64,
}

/// `recover` settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RecoverPlan {
    /// Seconds after the measured phase starts.
    pub drop_at_s: f64,
    /// Seconds away.
    pub down_s: f64,
}

/// One server of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerAddr {
    /// `--url` as given.
    pub url: String,
    /// Host for the `Host` header.
    pub host_header: String,
    /// Address connected to.
    pub addr: SocketAddr,
}

/// Output options that stay in the coordinator.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `--json`
    pub json: Option<PathBuf>,
    /// `--report`
    pub report: Option<PathBuf>,
    /// `--quiet`
    pub quiet: bool,
}

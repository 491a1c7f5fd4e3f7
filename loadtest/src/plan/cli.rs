//! The command line (clap): the scenarios and the flags of each, as given, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// Load-test any Engine.IO v4 / Socket.IO v5 server (the defaults drive the demo app of
/// `shardcast serve`). Every run is bounded in time and count, and targets loopback only unless
/// --allow-remote names the host.
#[derive(Parser, Debug)]
#[command(name = "shardcast-loadtest", version, about, long_about = None)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// C subscribers over R rooms, P publishers per room publishing at --rate msg/s per room
    /// (open loop); latency from the scheduled send time, losses, duplicates, reordering.
    Fanout(FanoutArgs),
    /// `fanout` across a cluster: --url once per server (two or more), subscribers split evenly
    /// over the servers, publishers on the first; latency of local and remote subscribers apart
    /// and their difference (the Redis hop), server CPU per broadcast with --server-pid each.
    ClusterFanout(FanoutArgs),
    /// Many small rooms (--room-size members each), every member publishing to its own room;
    /// each room gets --rate msg/s in total: the game-lobby shape.
    Lobby(LobbyArgs),
    /// Acked round trips (`message-with-ack`) at --rate per client: the RTT distribution.
    Echo(EchoArgs),
    /// Connection storm and churn: --clients connections opened at --rate per second (all at
    /// once without --rate), each held --hold seconds; handshake latencies, failures by reason.
    Connect(ConnectArgs),
    /// Hold --clients connections open for --duration, answering pings.
    Idle(IdleArgs),
    /// Step the rate of `fanout` (or `lobby`, or `cluster-fanout`) up by --step-factor every --duration seconds until
    /// the p99 objective or zero loss breaks; report the highest rate that held.
    Ramp(RampArgs),
    /// `fanout` with connection state recovery: at --drop-at seconds every subscriber's
    /// connection is cut (the TCP connection dropped, no close), and after --down ms it comes
    /// back with its `pid` and last offset as socket.io-client does; counts the sockets
    /// recovered (same id), the time each took (reconnect to CONNECT reply, the replay
    /// included), and checks every missed packet arrived once and in order. WebSocket only.
    /// With --url once per server of a cluster: subscribers spread as in cluster-fanout,
    /// publishers on the first, and each subscriber comes back on the next server.
    Recover(RecoverArgs),
    /// For --duration seconds, --attackers tasks throw what a stranger can send at one server
    /// (garbage instead of HTTP, oversized and endless headers and bodies, malformed WebSocket
    /// frames, mutated Engine.IO and Socket.IO packets, deep JSON, connection floods that
    /// vanish) while --clients healthy subscribers get an acknowledged stream at --rate.
    /// Passes (exit 0) when they got every acknowledged message in order, a handshake is
    /// answered at once afterwards, and (with --server-pid) the server's memory and
    /// descriptors come back. Seeded: --seed replays a run.
    Hostile(HostileArgs),
    /// For --duration seconds, --clients clients live short lives against one server
    /// (WebSocket and long-polling mixed): they connect, join and leave rooms, publish,
    /// publish with acks the other members answer, echo with acks, then end cleanly, drop the
    /// connection without a word, or ask `disconnect-me`, and come back (with --recovery,
    /// a dropped one with its pid and offset, and must get its socket back). Samples the
    /// server's RSS and descriptors (--server-pid) and its internal tables (--metrics, a
    /// shardcast server). Passes (exit 0) when every handshake and ack was answered, RSS,
    /// descriptors and tables are flat after the warm-up, and the tables are back to their
    /// size once the clients left. Seeded: --seed replays the choices.
    Soak(SoakArgs),
    /// Internal: one worker process of `--workers N` (reads its plan on stdin).
    #[command(hide = true)]
    Worker,
}

/// `hostile`'s flags (a scenario of its own: no workers, no rooms).
#[derive(Args, Debug, Clone)]
pub struct HostileArgs {
    /// Server URL, http://HOST:PORT (loopback only).
    #[arg(long)]
    pub url: String,
    /// Seconds of attack (1 to 3600).
    #[arg(long, short = 'd')]
    pub duration: f64,
    /// The seed of the attacks (default: from the clock; printed, and in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent attackers.
    #[arg(long, default_value_t = 32)]
    pub attackers: u32,
    /// Healthy subscribers in the room.
    #[arg(long, short = 'c', default_value_t = 20)]
    pub clients: u32,
    /// The healthy stream's messages per second.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// The server's PID: its RSS and descriptors before, during and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Only these attack kinds (repeatable; default all): garbage, huge-header,
    /// endless-headers, huge-body, bad-frame, bad-packet, flood, deep-json.
    #[arg(long = "only", value_name = "KIND")]
    pub only: Vec<String>,
    /// Seconds to wait after the storm before measuring memory again.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `soak`'s flags (a scenario of its own, as `hostile`).
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Server URL, http://HOST:PORT (loopback only).
    #[arg(long)]
    pub url: String,
    /// Seconds of churn (5 to 86400).
    #[arg(long, short = 'd')]
    pub duration: f64,
    /// Clients alive at once (1 to 5000).
    #[arg(long, short = 'c', default_value_t = 200)]
    pub clients: u32,
    /// Rooms they join (`soak-0` ...).
    #[arg(long, default_value_t = 20)]
    pub rooms: u32,
    /// The share of sessions over long-polling (0 to 1).
    #[arg(long, default_value_t = 0.3)]
    pub polling: f64,
    /// A client whose connection was dropped comes back with its pid and last offset and
    /// must be recovered (run the server with connection state recovery on).
    #[arg(long)]
    pub recovery: bool,
    /// The seed (default: from the clock; printed, and in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The server's PID: its RSS and open descriptors, sampled.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's Prometheus endpoint, http://HOST:PORT/metrics: the sizes of its internal
    /// tables (`shardcast_table_entries`), sampled.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Seconds left out of the slopes at the start (default: a quarter of --duration, at
    /// most 120).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0)]
    pub sample: f64,
    /// Seconds to wait after the clients left before reading the tables again (longer than
    /// the server's recovery window, so that the sessions kept for dropped clients expire).
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Write the report (with every sample) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Flags every scenario has.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Server URL, http://HOST:PORT. Loopback only unless --allow-remote names HOST.
    /// cluster-fanout (and ramp --shape cluster-fanout): one per server, the flag repeated or
    /// the URLs separated by commas; the publishers connect to the first. recover: one, or
    /// one per server of a cluster as for cluster-fanout.
    #[arg(long, required = true, value_delimiter = ',')]
    pub url: Vec<String>,
    /// Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    pub path: String,
    /// Socket.IO namespace.
    #[arg(long, default_value = "/")]
    pub namespace: String,
    /// Auth payload sent with the namespace CONNECT (a JSON object).
    #[arg(long, value_name = "JSON")]
    pub auth: Option<String>,
    /// Share of connections on HTTP long-polling instead of WebSocket (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub polling_share: f64,
    /// Number of clients (subscribers in fanout; connections in the other scenarios).
    #[arg(long, short = 'c')]
    pub clients: u32,
    /// Measured duration in seconds (per step for ramp). Required: every run is bounded.
    #[arg(long, short = 'd')]
    pub duration: f64,
    /// Longest wait after the schedule ends for deliveries in flight, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Before measuring, run the traffic at the (first) rate for this many seconds and
    /// discard what it measured: the cold start of a JIT-compiled server, its caches and
    /// pools, the first connections' buffers. 0 = none. Ignored by idle and connect.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Write the full result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Run the clients in N worker processes (0 = in this process).
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// Client threads per process [default: cores available / max(workers, 1)].
    #[arg(long)]
    pub threads: Option<u32>,
    /// Bind clients to N source addresses 127.0.0.1, 127.0.0.2, ... (past the ephemeral port
    /// range; IPv4 loopback targets only). 0 = let the kernel choose.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u32,
    /// Sample this server process's RSS and CPU during the run; in a cluster, one per --url
    /// in the same order (repeated, or separated by commas).
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Reconnect (and rejoin) a client whose connection is lost; off by default.
    #[arg(long)]
    pub reconnect: bool,
    /// Allow this exact non-loopback host as a target.
    #[arg(long, value_name = "HOST")]
    pub allow_remote: Option<String>,
    /// Connection handshakes in flight at once, per process.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: u32,
    /// Timeout of one connection handshake (and of a join), in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Longest time to connect and join every client before measuring, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub setup_timeout: f64,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Flags of scenarios that send messages.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Messages per second per room (fanout, lobby, ramp start) or per client (echo).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Padding bytes carried by every message (an ASCII string argument).
    #[arg(long, default_value_t = 16)]
    pub payload: usize,
    /// Event name delivered to subscribers [fanout/lobby: news] or round-tripped [echo:
    /// message-with-ack].
    #[arg(long)]
    pub event: Option<String>,
}

/// Flags of room scenarios.
#[derive(Args, Debug, Clone)]
pub struct RoomArgs {
    /// Number of rooms (fanout: default 1; lobby: default clients / room-size).
    #[arg(long)]
    pub rooms: Option<u32>,
    /// Publishers per room (fanout), each at rate / publishers.
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    /// Event a client emits, with an ack, to join a room: EVENT(room) -> ack true.
    #[arg(long, default_value = "join")]
    pub join_event: String,
    /// Event a publisher emits: EVENT(room, event, pubId, seq, scheduledNs, sentNs, padding); the server
    /// must emit `event` with the remaining arguments to the room.
    #[arg(long, default_value = "publish")]
    pub publish_event: String,
    /// Room names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "room-")]
    pub room_prefix: String,
}

/// `fanout` and `cluster-fanout`
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub rooms: RoomArgs,
}

/// `recover`
#[derive(Args, Debug, Clone)]
pub struct RecoverArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub fanout: FanoutArgs,
    /// When the connections are cut, in seconds after the measured phase starts [default:
    /// half of --duration].
    #[arg(long)]
    pub drop_at: Option<f64>,
    /// How long a cut connection stays away before coming back, in ms.
    #[arg(long, default_value_t = 500)]
    pub down: u64,
}

/// `lobby`
#[derive(Args, Debug, Clone)]
pub struct LobbyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub rooms: RoomArgs,
    /// Members per room when --rooms is not given.
    #[arg(long, default_value_t = 10)]
    pub room_size: u32,
}

/// `echo`
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: TrafficArgs,
}

/// `connect`
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    /// Connection attempts per second (open loop); all at once when not given (a storm).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Seconds each connection is held before the harness closes it.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

/// `idle`
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// Which traffic shape `ramp` steps up.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// `fanout`
    Fanout,
    /// `lobby`
    Lobby,
    /// `cluster-fanout` (--url once per server)
    ClusterFanout,
}

/// `ramp`
#[derive(Args, Debug, Clone)]
pub struct RampArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub rooms: RoomArgs,
    /// Traffic shape to step up.
    #[arg(long, value_enum, default_value_t = Shape::Fanout)]
    pub shape: Shape,
    /// Members per room for --shape lobby when --rooms is not given.
    #[arg(long, default_value_t = 10)]
    pub room_size: u32,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 2.0)]
    pub step_factor: f64,
    /// Most steps.
    #[arg(long, default_value_t = 8)]
    pub steps: u32,
    /// Latency objective: a step holds while its p99 is at most this many milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub p99_ms: f64,
    /// Loss allowed in a step that holds, as a fraction of expected deliveries (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// After the step that breaks, this many more steps between the highest rate that held
    /// and the lowest that broke, each at their geometric middle (3 narrow a x1.25 grid to
    /// 3%); the highest rate held is then the highest of any step.
    #[arg(long, default_value_t = 0)]
    pub refine: u32,
}

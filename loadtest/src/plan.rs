//! The plan of a run: the command line (clap), validated and bounded into a [`Plan`] that the
//! coordinator and every worker process share, and the deterministic roster that says which
//! connection does what, in which worker and thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// Hard bounds: every run is bounded in count and time.
pub mod limits {
    /// Longest `--duration` (seconds), and longest ramp in total.
    pub const MAX_DURATION_S: f64 = 3600.0;
    /// Most connections in one run (all workers together).
    pub const MAX_CLIENTS: u32 = 200_000;
    /// Most deliveries scheduled per second (rate x rooms x subscribers per room is not bounded
    /// here; this bounds what is *sent*).
    pub const MAX_SEND_RATE: f64 = 2_000_000.0;
    /// Largest `--payload`.
    pub const MAX_PAYLOAD: usize = 1 << 20;
    /// Most worker processes.
    pub const MAX_WORKERS: u32 = 64;
    /// Most source addresses.
    pub const MAX_SOURCE_IPS: u32 = 65_536;
    /// Most ramp steps.
    pub const MAX_STEPS: u32 = 40;
}

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
    /// Step the rate of `fanout` (or `lobby`) up by --step-factor every --duration seconds until
    /// the p99 objective or zero loss breaks; report the highest rate that held.
    Ramp(RampArgs),
    /// Internal: one worker process of `--workers N` (reads its plan on stdin).
    #[command(hide = true)]
    Worker,
}

/// Flags every scenario has.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Server URL, http://HOST:PORT. Loopback only unless --allow-remote names HOST.
    #[arg(long)]
    pub url: String,
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
    /// Sample this server process's RSS and CPU during the run.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
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

/// `fanout`
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
}

/// The scenario of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// See [`Command::Fanout`].
    Fanout,
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
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Lobby => "lobby",
            Scenario::Echo => "echo",
            Scenario::Connect => "connect",
            Scenario::Idle => "idle",
            Scenario::Ramp => "ramp",
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
}

/// Everything a run needs, validated. Serialized to the worker processes and into the JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// The traffic shape the clients run (`ramp`'s is fanout or lobby; otherwise = scenario).
    pub shape: Scenario,
    /// `--url` as given.
    pub url: String,
    /// Host for the `Host` header.
    pub host_header: String,
    /// Address connected to.
    pub addr: SocketAddr,
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
    /// `--server-pid`.
    pub server_pid: Option<u32>,
    /// CLOCK_MONOTONIC origin of the scheduled timestamps carried in messages (kept small so
    /// they survive a JavaScript server's doubles exactly).
    pub epoch_ns: u64,
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

fn check_positive(name: &str, v: f64, max: f64) -> anyhow::Result<()> {
    if !v.is_finite() || v <= 0.0 || v > max {
        bail!("{name} must be > 0 and at most {max} (got {v})");
    }
    Ok(())
}

impl Plan {
    /// Validates the command line of a scenario into a plan.
    pub fn from_command(cmd: &Command) -> anyhow::Result<(Plan, Output)> {
        let (scenario, common) = match cmd {
            Command::Fanout(a) => (Scenario::Fanout, &a.common),
            Command::Lobby(a) => (Scenario::Lobby, &a.common),
            Command::Echo(a) => (Scenario::Echo, &a.common),
            Command::Connect(a) => (Scenario::Connect, &a.common),
            Command::Idle(a) => (Scenario::Idle, &a.common),
            Command::Ramp(a) => (Scenario::Ramp, &a.common),
            Command::Worker => bail!("`worker` is internal"),
        };
        let c = common;
        let target = crate::target::parse(&c.url, c.allow_remote.as_deref())?;
        check_positive("--duration", c.duration, limits::MAX_DURATION_S)?;
        if !(0.0..=60.0).contains(&c.drain) {
            bail!("--drain must be between 0 and 60 seconds");
        }
        if c.clients == 0 || c.clients > limits::MAX_CLIENTS {
            bail!("--clients must be between 1 and {}", limits::MAX_CLIENTS);
        }
        if !(0.0..=1.0).contains(&c.polling_share) {
            bail!("--polling-share must be between 0.0 and 1.0");
        }
        if c.workers > limits::MAX_WORKERS {
            bail!("--workers is at most {}", limits::MAX_WORKERS);
        }
        if c.source_ips > limits::MAX_SOURCE_IPS {
            bail!("--source-ips is at most {}", limits::MAX_SOURCE_IPS);
        }
        if c.source_ips > 0 && !matches!(target.addr.ip(), IpAddr::V4(ip) if ip.octets()[0] == 127)
        {
            bail!("--source-ips needs an IPv4 loopback target (127.0.0.0/8)");
        }
        check_positive("--connect-timeout", c.connect_timeout, 600.0)?;
        check_positive("--setup-timeout", c.setup_timeout, 3600.0)?;
        if c.connect_concurrency == 0 || c.connect_concurrency > 100_000 {
            bail!("--connect-concurrency must be between 1 and 100000");
        }
        let mut path = c.path.clone();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        if path.bytes().any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#') {
            bail!("--path {path:?} is not a plain path");
        }
        if !c.namespace.starts_with('/') || c.namespace.contains(',') {
            bail!("--namespace must start with '/' and hold no ','");
        }
        let auth = match &c.auth {
            Some(a) => {
                let v: serde_json::Value =
                    serde_json::from_str(a).context("--auth is not valid JSON")?;
                if !v.is_object() {
                    bail!("--auth must be a JSON object");
                }
                Some(serde_json::to_string(&v)?)
            }
            None => None,
        };
        let workers_eff = c.workers.max(1);
        let threads = match c.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(t) => t.min(256),
            None => (crate::sys::cores_available() as u32 / workers_eff).max(1),
        };
        let mut plan = Plan {
            scenario,
            shape: scenario,
            url: c.url.clone(),
            host_header: target.host_header(),
            addr: target.addr,
            path,
            namespace: c.namespace.clone(),
            auth,
            polling_share: c.polling_share,
            clients: c.clients,
            rooms: 0,
            publishers: 0,
            rate: 0.0,
            connect_rate: None,
            hold_s: 0.0,
            payload: 0,
            event: String::new(),
            join_event: "join".into(),
            publish_event: "publish".into(),
            room_prefix: "room-".into(),
            duration_s: c.duration,
            drain_s: c.drain,
            workers: c.workers,
            threads,
            source_ips: c.source_ips,
            reconnect: c.reconnect,
            connect_concurrency: c.connect_concurrency,
            connect_timeout_s: c.connect_timeout,
            setup_timeout_s: c.setup_timeout,
            ramp: None,
            server_pid: c.server_pid,
            epoch_ns: 0,
        };
        let traffic = |plan: &mut Plan, t: &TrafficArgs, default_rate: f64, default_event: &str| {
            plan.rate = t.rate.unwrap_or(default_rate);
            plan.payload = t.payload;
            plan.event = t.event.clone().unwrap_or_else(|| default_event.to_owned());
        };
        let rooms = |plan: &mut Plan, r: &RoomArgs, default_rooms: u32| {
            plan.rooms = r.rooms.unwrap_or(default_rooms);
            plan.publishers = r.publishers;
            plan.join_event = r.join_event.clone();
            plan.publish_event = r.publish_event.clone();
            plan.room_prefix = r.room_prefix.clone();
        };
        let lobby_rooms = |clients: u32, size: u32| clients.div_ceil(size.max(1));
        match cmd {
            Command::Fanout(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, 1);
            }
            Command::Lobby(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, lobby_rooms(c.clients, a.room_size));
                plan.publishers = 0;
            }
            Command::Echo(a) => traffic(&mut plan, &a.traffic, 1.0, "message-with-ack"),
            Command::Connect(a) => {
                if let Some(r) = a.rate {
                    check_positive("--rate", r, 1_000_000.0)?;
                }
                if !(0.0..=limits::MAX_DURATION_S).contains(&a.hold) {
                    bail!("--hold must be between 0 and {} seconds", limits::MAX_DURATION_S);
                }
                plan.connect_rate = a.rate;
                plan.hold_s = a.hold;
            }
            Command::Idle(_) => {}
            Command::Ramp(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                plan.shape = match a.shape {
                    Shape::Fanout => {
                        rooms(&mut plan, &a.rooms, 1);
                        Scenario::Fanout
                    }
                    Shape::Lobby => {
                        rooms(&mut plan, &a.rooms, lobby_rooms(c.clients, a.room_size));
                        plan.publishers = 0;
                        Scenario::Lobby
                    }
                };
                if !(a.step_factor.is_finite() && a.step_factor > 1.0 && a.step_factor <= 100.0) {
                    bail!("--step-factor must be > 1 and at most 100");
                }
                if a.steps == 0 || a.steps > limits::MAX_STEPS {
                    bail!("--steps must be between 1 and {}", limits::MAX_STEPS);
                }
                check_positive("--p99-ms", a.p99_ms, 3_600_000.0)?;
                if !(0.0..=1.0).contains(&a.max_loss) {
                    bail!("--max-loss must be between 0.0 and 1.0");
                }
                if f64::from(a.steps) * (c.duration + c.drain) > limits::MAX_DURATION_S {
                    bail!(
                        "a ramp of {} steps of {} s (+{} s drain) exceeds {} s in total",
                        a.steps,
                        c.duration,
                        c.drain,
                        limits::MAX_DURATION_S
                    );
                }
                plan.ramp = Some(RampPlan {
                    step_factor: a.step_factor,
                    steps: a.steps,
                    p99_ms: a.p99_ms,
                    max_loss: a.max_loss,
                });
            }
            Command::Worker => unreachable!(),
        }
        plan.validate_traffic()?;
        let out = Output { json: c.json.clone(), report: c.report.clone(), quiet: c.quiet };
        Ok((plan, out))
    }

    fn validate_traffic(&self) -> anyhow::Result<()> {
        if matches!(self.shape, Scenario::Fanout | Scenario::Lobby | Scenario::Echo) {
            check_positive("--rate", self.rate, 1_000_000.0)?;
            if self.payload > limits::MAX_PAYLOAD {
                bail!("--payload is at most {} bytes", limits::MAX_PAYLOAD);
            }
            if self.event.is_empty() {
                bail!("--event must not be empty");
            }
        }
        if matches!(self.shape, Scenario::Fanout | Scenario::Lobby) {
            if self.rooms == 0 || self.rooms > self.clients {
                bail!("--rooms must be between 1 and --clients ({})", self.clients);
            }
            if self.shape == Scenario::Fanout
                && (self.publishers == 0
                    || u64::from(self.publishers) * u64::from(self.rooms) > 100_000)
            {
                bail!("--publishers must be at least 1, and rooms x publishers at most 100000");
            }
            if self.connections() > limits::MAX_CLIENTS {
                bail!("{} connections in all: at most {}", self.connections(), limits::MAX_CLIENTS);
            }
        }
        let peak = self.peak_rate();
        let sends = match self.shape {
            Scenario::Fanout | Scenario::Lobby => peak * f64::from(self.rooms),
            Scenario::Echo => peak * f64::from(self.clients),
            _ => 0.0,
        };
        if sends > limits::MAX_SEND_RATE {
            bail!(
                "{sends:.0} messages sent per second (rate x rooms, or rate x clients for echo) \
                 exceeds the bound of {}",
                limits::MAX_SEND_RATE
            );
        }
        Ok(())
    }

    /// The highest rate the run reaches (the last ramp step's).
    pub fn peak_rate(&self) -> f64 {
        match &self.ramp {
            Some(r) => self.rate * r.step_factor.powi(r.steps as i32 - 1),
            None => self.rate,
        }
    }

    /// Number of connections (subscribers plus separate publishers).
    pub fn connections(&self) -> u32 {
        match self.shape {
            Scenario::Fanout => self.clients + self.rooms * self.publishers,
            _ => self.clients,
        }
    }

    /// Number of distinct publishers (publisher ids are `0..publisher_count()`).
    pub fn publisher_count(&self) -> u32 {
        match self.shape {
            Scenario::Fanout => self.rooms * self.publishers,
            Scenario::Lobby | Scenario::Echo => self.clients,
            _ => 0,
        }
    }

    /// Worker processes the clients are spread over (in-process counts as one).
    pub fn worker_slots(&self) -> u32 {
        self.workers.max(1)
    }

    /// The name of room `r`.
    pub fn room_name(&self, r: u32) -> String {
        format!("{}{r}", self.room_prefix)
    }

    /// Members of room `r` in lobby (clients spread round-robin over rooms).
    pub fn lobby_members(&self, r: u32) -> u32 {
        self.clients / self.rooms + u32::from(r < self.clients % self.rooms)
    }

    /// What connection `g` (0-based, over all workers) does.
    pub fn role(&self, g: u32) -> Role {
        match self.shape {
            Scenario::Fanout if g < self.clients => {
                Role { join: Some(g % self.rooms), publish: None }
            }
            Scenario::Fanout => {
                let p = g - self.clients;
                Role { join: None, publish: Some(Publish { id: p, room: p / self.publishers }) }
            }
            Scenario::Lobby => {
                let room = g % self.rooms;
                Role { join: Some(room), publish: Some(Publish { id: g, room }) }
            }
            Scenario::Echo => Role { join: None, publish: Some(Publish { id: g, room: 0 }) },
            _ => Role { join: None, publish: None },
        }
    }

    /// Messages per second of one publisher at room rate `rate`.
    pub fn publisher_rate(&self, p: &Publish, rate: f64) -> f64 {
        match self.shape {
            Scenario::Fanout => rate / f64::from(self.publishers),
            Scenario::Lobby => rate / f64::from(self.lobby_members(p.room)),
            _ => rate,
        }
    }

    /// Which worker runs connection `g`.
    pub fn worker_of(&self, g: u32) -> u32 {
        g % self.worker_slots()
    }

    /// Whether connection `g` uses long-polling: exactly `polling_share` of them, spread evenly.
    pub fn is_polling(&self, g: u32) -> bool {
        let s = self.polling_share;
        ((f64::from(g) + 1.0) * s + 1e-9).floor() > (f64::from(g) * s + 1e-9).floor()
    }

    /// The source address connection `g` binds, if any.
    pub fn source_ip(&self, g: u32) -> Option<IpAddr> {
        if self.source_ips == 0 {
            return None;
        }
        let n = u32::from(Ipv4Addr::new(127, 0, 0, 1)) + g % self.source_ips;
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    /// Longest the whole run may take, setup included: the hard bound of a worker's life.
    pub fn max_wall_s(&self) -> f64 {
        let steps = self.ramp.as_ref().map_or(1, |r| r.steps);
        self.setup_timeout_s
            + f64::from(steps) * (self.duration_s + self.drain_s + self.connect_timeout_s + 5.0)
            + 30.0
    }
}

/// One connection's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Room to join before measuring.
    pub join: Option<u32>,
    /// Publishing (or echo) job.
    pub publish: Option<Publish>,
}

/// A publisher: its id and the room it publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Publisher id, carried in every message.
    pub id: u32,
    /// Target room.
    pub room: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let mut v = vec!["shardcast-loadtest"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        Ok(Plan::from_command(&cli.command)?.0)
    }

    #[test]
    fn fanout_roster() {
        let p = plan(&[
            "fanout",
            "--url",
            "http://127.0.0.1:3000",
            "--clients",
            "10",
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--rate",
            "10",
            "--duration",
            "1",
        ])
        .unwrap();
        assert_eq!(p.connections(), 14);
        assert_eq!(p.role(3), Role { join: Some(1), publish: None });
        assert_eq!(p.role(13), Role { join: None, publish: Some(Publish { id: 3, room: 1 }) });
        assert_eq!(p.publisher_rate(&Publish { id: 3, room: 1 }, 10.0), 5.0);
    }

    #[test]
    fn polling_share_is_exact() {
        let mut p = plan(&["idle", "--url", "http://localhost:1", "-c", "100", "-d", "1"]).unwrap();
        for (share, want) in [(0.0, 0), (0.5, 50), (0.25, 25), (1.0, 100), (0.333, 33)] {
            p.polling_share = share;
            assert_eq!((0..100).filter(|&g| p.is_polling(g)).count(), want, "{share}");
        }
    }

    #[test]
    fn bounds_and_safety() {
        assert!(plan(&["fanout", "--url", "http://10.1.2.3:3000", "-c", "1", "-d", "1"]).is_err());
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1", "-d", "0"]).is_err());
        assert!(
            plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1", "-d", "99999"]).is_err()
        );
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "9999999", "-d", "1"])
            .is_err());
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1"]).is_err());
        assert!(plan(&[
            "fanout",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "2",
            "--rooms",
            "3",
            "-d",
            "1"
        ])
        .is_err());
        assert!(plan(&[
            "echo",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "1",
            "-d",
            "1",
            "--auth",
            "[1]"
        ])
        .is_err());
        assert!(plan(&[
            "ramp",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "1",
            "-d",
            "1000",
            "--steps",
            "8"
        ])
        .is_err());
        let p = plan(&["lobby", "--url", "http://127.0.0.1:3000", "-c", "25", "-d", "1"]).unwrap();
        assert_eq!(p.rooms, 3);
        assert_eq!((0..3).map(|r| p.lobby_members(r)).sum::<u32>(), 25);
        let p = plan(&[
            "idle",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "3",
            "-d",
            "1",
            "--source-ips",
            "300",
        ])
        .unwrap();
        assert_eq!(p.source_ip(256), Some("127.0.1.1".parse().unwrap()));
    }
}

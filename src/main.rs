//! `shardcast`: the command line. `serve`: flags → [`Config`] → [`Server`] running the demo
//! app; `emit`: flags → one [`Emitter`] operation published on Redis.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shardcast::{
    AdminMode, AdminUi, Args as EventArgs, BasicAuth, Config, Cors, CorsOrigins, Emitter,
    EmitterError, Server, SubscriptionMode,
};

/// A Socket.IO v4-compatible real-time server on per-core shards.
#[derive(Parser)]
#[command(name = "shardcast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with the built-in demo app (namespaces `/` and `/custom`).
    Serve(Box<ServeArgs>),
    /// Publish one event to a cluster on Redis, as @socket.io/redis-emitter does: the servers
    /// of the cluster (shardcast or Node, classic Redis adapter) deliver it to their sockets.
    /// Prints nothing on success.
    #[command(allow_negative_numbers = true)]
    Emit(EmitArgs),
}

#[derive(Args)]
struct EmitArgs {
    /// The cluster's Redis (redis://HOST:PORT).
    #[arg(long, env = "SHARDCAST_REDIS", value_name = "URL")]
    redis: String,
    /// The cluster's channel prefix (the adapter's `key`).
    #[arg(long, env = "SHARDCAST_REDIS_KEY", value_name = "PREFIX", default_value = "socket.io")]
    redis_key: String,
    /// The namespace (`/` is prefixed when missing).
    #[arg(long, value_name = "NSP", default_value = "/")]
    nsp: String,
    /// Only the sockets in this room (repeat for several: the sockets in any of them).
    #[arg(long = "to", value_name = "ROOM", conflicts_with = "server_side")]
    to: Vec<String>,
    /// Not the sockets in this room (repeatable; a socket id excludes that socket).
    #[arg(long = "except", value_name = "ROOM", conflicts_with = "server_side")]
    except: Vec<String>,
    /// The event may be dropped for a socket not ready to receive it.
    #[arg(long, conflicts_with = "server_side")]
    volatile: bool,
    /// Send EVENT to the servers themselves (their server-side listeners, `serverSideEmit`
    /// in socket.io) instead of to sockets; no acknowledgement.
    #[arg(long)]
    server_side: bool,
    /// The event name.
    #[arg(value_name = "EVENT")]
    event: String,
    /// The event's arguments, each one JSON value (`'{"a":1}'`, `2`, `'"text"'`, `null`),
    /// read as JavaScript's JSON.parse reads it.
    #[arg(value_name = "JSON_ARG")]
    args: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SHARDCAST_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "SHARDCAST_PORT", default_value_t = 3000)]
    port: u16,
    /// Number of shard threads [default: number of cores].
    #[arg(long, env = "SHARDCAST_SHARDS")]
    shards: Option<usize>,
    /// Interval between server PINGs, in milliseconds.
    #[arg(long, env = "SHARDCAST_PING_INTERVAL", default_value_t = 25_000)]
    ping_interval: u64,
    /// How long to wait for a PONG before closing, in milliseconds.
    #[arg(long, env = "SHARDCAST_PING_TIMEOUT", default_value_t = 20_000)]
    ping_timeout: u64,
    /// Largest accepted message or polling body, in bytes.
    #[arg(long, env = "SHARDCAST_MAX_PAYLOAD", default_value_t = 1_000_000)]
    max_payload: usize,
    /// Coalescing window of a busy connection's writes under normal load, in milliseconds
    /// (0: what a loop turn queued goes out at the end of the turn; replies to a client
    /// are never held).
    #[arg(long, env = "SHARDCAST_WRITE_COALESCE", default_value_t = 0)]
    write_coalesce: u64,
    /// The widest the coalescing window grows while writing saturates a shard, in
    /// milliseconds (never below --write-coalesce; equal to it: a fixed window).
    #[arg(long, env = "SHARDCAST_WRITE_COALESCE_MAX", default_value_t = 100)]
    write_coalesce_max: u64,
    /// Deepest nesting of arrays and objects a client's JSON may have (2 to 100000); deeper
    /// packets close that connection.
    #[arg(long, env = "SHARDCAST_MAX_JSON_DEPTH", default_value_t = 1000)]
    max_json_depth: usize,
    /// The transports clients may use, as socket.io's `transports` option: polling,
    /// websocket, or both (comma-separated; `websocket` alone refuses polling handshakes).
    #[arg(long, env = "SHARDCAST_TRANSPORTS", value_name = "LIST", default_value = "polling,websocket", value_parser = parse_transports)]
    transports: (bool, bool),
    /// Accept Engine.IO protocol 3 clients (socket.io-client 2.x), as socket.io's
    /// `allowEIO3`; off by default, as there.
    #[arg(long, env = "SHARDCAST_ALLOW_EIO3")]
    allow_eio3: bool,
    /// The Socket.IO parser, as socket.io's `parser` option: default (socket.io-parser's
    /// text packets) or msgpack (socket.io-msgpack-parser: each packet one binary
    /// MessagePack message). Every client must use the same.
    #[arg(long, env = "SHARDCAST_PARSER", value_name = "NAME", default_value = "default", value_parser = parse_parser)]
    parser: shardcast::Parser,
    /// Join the cluster on this Redis (redis://HOST:PORT), as @socket.io/redis-adapter does.
    #[arg(long, env = "SHARDCAST_REDIS", value_name = "URL")]
    redis: Option<String>,
    /// The cluster's channel prefix (the adapter's `key`).
    #[arg(long, env = "SHARDCAST_REDIS_KEY", value_name = "PREFIX", default_value = "socket.io")]
    redis_key: String,
    /// With --redis: speak createShardedAdapter's protocol (Redis 7 sharded pub/sub;
    /// --redis-key is its channelPrefix), on a single Redis or a Redis Cluster.
    // What it needs and excludes is checked in `serve`: clap counts a switch set to `false`
    // in its variable as given, so `requires` would refuse SHARDCAST_REDIS_SHARDED=false.
    #[arg(long, env = "SHARDCAST_REDIS_SHARDED")]
    redis_sharded: bool,
    /// With --redis-sharded: which broadcasts go on a room's own channel (the sharded
    /// adapter's subscriptionMode): static (none: all on the namespace channel), dynamic (a
    /// broadcast to one public room) or dynamic-private (to one room, socket ids included).
    /// Every server of the cluster must use the same.
    #[arg(long, env = "SHARDCAST_REDIS_SUBSCRIPTION_MODE", value_name = "MODE", default_value = "dynamic", requires = "redis_sharded",
          value_parser = parse_subscription_mode)]
    redis_subscription_mode: SubscriptionMode,
    /// With --redis: speak @socket.io/redis-streams-adapter's protocol (the stream and the
    /// channel prefix are --redis-key; sessions under sio:session:), the one that supports
    /// connection state recovery across servers; a single Redis.
    #[arg(long, env = "SHARDCAST_REDIS_STREAMS")]
    redis_streams: bool,
    /// With --redis-streams: the stream's approximate length bound (XADD ... MAXLEN ~ N, the
    /// adapter's maxLen). With --recovery it bounds what can be replayed: every broadcast
    /// and socket emit of the cluster is an entry.
    #[arg(long, env = "SHARDCAST_REDIS_STREAM_MAX_LEN", value_name = "N", default_value_t = 10_000, requires = "redis_streams",
          value_parser = clap::value_parser!(u64).range(1..))]
    redis_stream_max_len: u64,
    /// Turn on connection state recovery: a client whose connection dropped and that comes
    /// back within MS milliseconds gets its socket id, rooms, data and missed packets back
    /// (socket.io's maxDisconnectionDuration; middlewares are skipped for it).
    #[arg(long, env = "SHARDCAST_RECOVERY", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    recovery: Option<u64>,
    /// With --recovery and --redis-streams: keep each socket's session in Redis while it is
    /// connected too, so that the clients of a server that crashed are recovered by the
    /// others (a Redis write per socket at connect, on room changes and every half window).
    #[arg(long, env = "SHARDCAST_RECOVERY_LIVE_SESSIONS", requires_all = ["recovery", "redis_streams"])]
    recovery_live_sessions: bool,
    /// Serve Prometheus metrics (GET /metrics) on this address, a listener of its own
    /// (127.0.0.1:9464, say; port 0 picks a free one). Off without the flag.
    #[arg(long, env = "SHARDCAST_METRICS", value_name = "HOST:PORT", value_parser = parse_addr)]
    metrics: Option<SocketAddr>,
    /// Serve the files of DIR on the main port, beside /socket.io/ (GET / serves
    /// DIR/index.html): a demo page and the server on one origin.
    #[arg(long = "static", env = "SHARDCAST_STATIC", value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// Largest HTTP request head (request line and headers) accepted, in bytes; a larger one
    /// gets 431 (Node's maxHttpHeaderSize; at least 8192).
    #[arg(long, env = "SHARDCAST_MAX_HTTP_HEADER_SIZE", value_name = "BYTES", default_value_t = 16 * 1024)]
    max_http_header_size: usize,
    /// On SIGTERM or SIGINT, how long to drain, in milliseconds: accepting stops at once;
    /// each client gets what was queued for it, then its connection closes (it reconnects,
    /// to another server of the cluster when there is one); the process exits 0.
    #[arg(long, env = "SHARDCAST_SHUTDOWN_TIMEOUT", value_name = "MS", default_value_t = 10_000)]
    shutdown_timeout: u64,
    /// Serve HTTPS and WSS with this certificate chain (PEM, leaf first); with --tls-key.
    /// SIGHUP reads both files again (new connections get the new pair).
    #[arg(long, env = "SHARDCAST_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SHARDCAST_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Allow this origin to connect from a browser page of another origin (CORS, with
    /// credentials, as a UI served elsewhere needs for polling); repeatable, or `*` for any
    /// origin. Several in the variable: separated by commas.
    #[arg(long = "cors", env = "SHARDCAST_CORS", value_name = "ORIGIN", value_delimiter = ',')]
    cors: Vec<String>,
    /// Instrument the server for the Socket.IO admin UI (@socket.io/admin-ui): the
    /// `/admin` namespace, in development mode and without authentication unless the
    /// --admin-ui-* options say otherwise.
    #[arg(long, env = "SHARDCAST_ADMIN_UI")]
    admin_ui: bool,
    /// With --admin-ui: the user name of its basic authentication (with
    /// --admin-ui-password-hash).
    #[arg(long, env = "SHARDCAST_ADMIN_UI_USERNAME", value_name = "NAME")]
    admin_ui_username: Option<String>,
    /// With --admin-ui-username: the bcrypt hash of the password (`$2b$10$...`).
    #[arg(long, env = "SHARDCAST_ADMIN_UI_PASSWORD_HASH", value_name = "HASH")]
    admin_ui_password_hash: Option<String>,
    /// With --admin-ui: the UI only shows (no emit, join, leave or disconnect).
    #[arg(long, env = "SHARDCAST_ADMIN_UI_READONLY")]
    admin_ui_readonly: bool,
    /// With --admin-ui: development (every socket, room change and event) or production
    /// (only the aggregated stats).
    #[arg(long, env = "SHARDCAST_ADMIN_UI_MODE", value_name = "MODE", default_value = "development",
          value_parser = parse_admin_mode)]
    admin_ui_mode: AdminMode,
    /// With --admin-ui: how the UI names this server (default: the host name).
    #[arg(long, env = "SHARDCAST_ADMIN_UI_SERVER_ID", value_name = "ID")]
    admin_ui_server_id: Option<String>,
    /// How log lines are written on stderr: text, or one JSON object per line (for log
    /// collectors). Which lines: RUST_LOG (default warn).
    #[arg(long, env = "SHARDCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `tracing`'s human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields (message included).
    Json,
}

/// Logs to stderr in `format`, at the level RUST_LOG says (default warn).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli_error(e),
    };
    init_logs(match &cli.command {
        Command::Serve(args) => args.log_format,
        Command::Emit(_) => LogFormat::Text,
    });
    match cli.command {
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shardcast: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Emit(args) => match emit(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, e)) => {
                eprintln!("shardcast: {e}");
                ExitCode::from(code)
            }
        },
    }
}

/// `--help` and `--version` print as usual; a usage error is one line and exit code 2.
fn cli_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap's first paragraph (a missing argument is named on the next line), in one.
            let text = e.to_string();
            let first: Vec<&str> =
                text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let first = if first.is_empty() { "invalid arguments".into() } else { first.join(" ") };
            eprintln!("shardcast: {} (see --help)", first.trim_start_matches("error: "));
            ExitCode::from(2)
        }
    }
}

/// `--metrics HOST:PORT`: the first address it resolves to.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// `--redis-subscription-mode`: the names the sharded adapter's option takes.
/// `--transports`: (polling, websocket).
fn parse_transports(s: &str) -> Result<(bool, bool), String> {
    let (mut polling, mut websocket) = (false, false);
    for t in s.split(',').map(str::trim) {
        match t {
            "polling" => polling = true,
            "websocket" => websocket = true,
            _ => return Err(format!("{t:?} is not a transport (polling, websocket)")),
        }
    }
    if !(polling || websocket) {
        return Err("no transport given (polling, websocket)".into());
    }
    Ok((polling, websocket))
}

/// `--parser`.
fn parse_parser(s: &str) -> Result<shardcast::Parser, String> {
    shardcast::Parser::from_name(s)
        .ok_or_else(|| format!("{s:?} is not a parser (default, msgpack)"))
}

fn parse_subscription_mode(s: &str) -> Result<SubscriptionMode, String> {
    SubscriptionMode::from_name(s).ok_or_else(|| {
        format!("{s:?} is not a subscription mode (static, dynamic, dynamic-private)")
    })
}

/// `--admin-ui-mode`.
fn parse_admin_mode(s: &str) -> Result<AdminMode, String> {
    AdminMode::from_name(s)
        .ok_or_else(|| format!("{s:?} is not an admin UI mode (development, production)"))
}

/// `--admin-ui` and its options.
fn admin_ui(args: &ServeArgs) -> Result<Option<AdminUi>, String> {
    let auth = match (&args.admin_ui_username, &args.admin_ui_password_hash) {
        (Some(username), Some(password)) => {
            Some(BasicAuth { username: username.clone(), password: password.clone() })
        }
        (None, None) => None,
        _ => return Err("--admin-ui-username and --admin-ui-password-hash go together".into()),
    };
    let tuned = auth.is_some()
        || args.admin_ui_readonly
        || args.admin_ui_server_id.is_some()
        || args.admin_ui_mode != AdminMode::Development;
    if !args.admin_ui {
        return if tuned {
            Err("the --admin-ui-* options need --admin-ui".into())
        } else {
            Ok(None)
        };
    }
    Ok(Some(AdminUi {
        auth,
        readonly: args.admin_ui_readonly,
        server_id: args.admin_ui_server_id.clone(),
        mode: args.admin_ui_mode,
        ..AdminUi::default()
    }))
}

fn serve(args: ServeArgs) -> Result<(), String> {
    for (on, flag) in
        [(args.redis_sharded, "--redis-sharded"), (args.redis_streams, "--redis-streams")]
    {
        if on && args.redis.is_none() {
            return Err(format!("{flag} needs --redis URL"));
        }
    }
    let mut builder = Config::builder()
        .ping_interval(Duration::from_millis(args.ping_interval))
        .ping_timeout(Duration::from_millis(args.ping_timeout))
        .max_payload(args.max_payload)
        .max_http_header_size(args.max_http_header_size)
        .max_json_depth(args.max_json_depth)
        .parser(args.parser)
        .polling(args.transports.0)
        .websocket(args.transports.1)
        .allow_eio3(args.allow_eio3)
        .redis_key(args.redis_key.clone())
        .redis_sharded(args.redis_sharded)
        .redis_subscription_mode(args.redis_subscription_mode)
        .redis_streams(args.redis_streams)
        .redis_stream_max_len(args.redis_stream_max_len)
        .write_coalesce(Duration::from_millis(args.write_coalesce))
        .write_coalesce_max(Duration::from_millis(args.write_coalesce_max))
        .shutdown_timeout(Duration::from_millis(args.shutdown_timeout));
    if let Some(n) = args.shards {
        builder = builder.shards(n);
    }
    if let Some(url) = &args.redis {
        builder = builder.redis(url.clone());
    }
    if let Some(addr) = args.metrics {
        builder = builder.metrics(addr);
    }
    if let Some(ms) = args.recovery {
        builder = builder
            .connection_state_recovery(Duration::from_millis(ms), true)
            .recovery_live_sessions(args.recovery_live_sessions);
    }
    if let Some(dir) = &args.static_dir {
        if !dir.is_dir() {
            return Err(format!("--static {}: not a directory", dir.display()));
        }
        builder = builder.static_dir(dir.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.tls(cert.clone(), key.clone());
    }
    if !args.cors.is_empty() {
        let origins = if args.cors.iter().any(|o| o == "*") {
            CorsOrigins::Any
        } else {
            CorsOrigins::List(args.cors.clone())
        };
        builder = builder.cors(Cors { origins, credentials: true });
    }
    let admin = admin_ui(&args)?;
    let config = builder.build().map_err(|e| format!("invalid option: {e}"))?;
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.host))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", args.host))?;
    // Signal handlers first: installing them needs descriptors, which clients connecting as
    // soon as we listen could otherwise exhaust.
    let mut signals =
        Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let io = Server::new(config);
    shardcast::app::install(&io);
    if let Some(ui) = admin {
        io.instrument(ui).map_err(|e| format!("--admin-ui: {e}"))?;
    }
    // Listening waits for the cluster adapter to subscribe (retrying while Redis is away):
    // a signal meanwhile ends the process.
    let (tx, rx) = std::sync::mpsc::channel();
    let starting = io.clone();
    std::thread::spawn(move || drop(tx.send(starting.listen(addr))));
    let Some(listened) = signals.wait_for(rx) else { return Ok(()) };
    let running = listened.map_err(|e| match e.kind() {
        // The cluster adapter could not start: its message names Redis.
        std::io::ErrorKind::NotConnected => e.to_string(),
        // The metrics listener's: its message names its address.
        _ if e.to_string().starts_with("cannot serve metrics") => e.to_string(),
        // A TLS file's: its message names the file.
        std::io::ErrorKind::InvalidInput if args.tls_cert.is_some() => format!("TLS: {e}"),
        _ => format!("cannot listen on {addr}: {e}"),
    })?;
    let bound = running.local_addr();
    if let Some(m) = running.metrics_addr() {
        // On stderr: stdout's one line is fixed (spec/demo-app.md). With `--metrics
        // 127.0.0.1:0` this says which port was taken.
        eprintln!("shardcast: metrics on {m}");
    }
    println!("listening on {}:{}", args.host, bound.port());
    let _ = std::io::stdout().flush();
    signals.wait(|| match running.reload_tls() {
        Ok(()) => eprintln!("shardcast: SIGHUP: TLS certificate and key read again"),
        Err(e) => eprintln!("shardcast: SIGHUP: TLS reload failed, the old pair stays: {e}"),
    });
    running.shutdown();
    Ok(())
}

/// `shardcast emit`: the arguments read (exit code 2 when they cannot be), then one
/// operation published (exit code 1 when Redis cannot be reached or does not take it).
fn emit(args: EmitArgs) -> Result<(), (u8, String)> {
    if shardcast::proto::sio::is_reserved_event(&args.event) {
        return Err((2, EmitterError::ReservedEvent(args.event).to_string()));
    }
    let mut event_args = EventArgs::new();
    for (i, text) in args.args.iter().enumerate() {
        let parsed = shardcast::proto::json::parse(text, MAX_ARG_DEPTH)
            .map_err(|e| (2, format!("argument {} is not JSON: {e}", i + 1)))?;
        event_args = event_args.arg(parsed.value);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start: {e}")))?;
    let url = &args.redis;
    rt.block_on(async {
        let emitter = match Emitter::connect(url).await {
            Ok(e) => e.key(args.redis_key.as_str()).of(&args.nsp),
            Err(e @ EmitterError::InvalidUrl(_)) => {
                return Err((2, format!("invalid Redis URL {url}: {}", reason(&e))))
            }
            Err(e) => return Err((1, format!("cannot reach Redis at {url}: {}", reason(&e)))),
        };
        let sent = if args.server_side {
            emitter.server_side_emit(&args.event, event_args).await
        } else {
            let mut op = emitter.to(args.to).except(args.except);
            if args.volatile {
                op = op.volatile();
            }
            op.emit(&args.event, event_args).await
        };
        sent.map_err(|e| match e {
            EmitterError::Redis(_) => {
                (1, format!("cannot publish to Redis at {url}: {}", reason(&e)))
            }
            e => (2, e.to_string()),
        })
    })
}

/// The deepest nesting of arrays and objects a JSON argument of `emit` may have (as the
/// server's default `--max-json-depth`).
const MAX_ARG_DEPTH: usize = 1000;

/// An error's message without the variant's prefix, and on one line.
fn reason(e: &EmitterError) -> String {
    let text = match e {
        EmitterError::Redis(m) | EmitterError::InvalidUrl(m) | EmitterError::ReservedEvent(m) => m,
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SIGINT and SIGTERM, registered on a small runtime of their own.
struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (term, int, hup) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        Ok(Signals { rt, term, int, hup })
    }

    /// Blocks until `rx` yields (`Some`) or SIGINT or SIGTERM comes (`None`).
    fn wait_for<T: Send + 'static>(&mut self, rx: std::sync::mpsc::Receiver<T>) -> Option<T> {
        // A detached thread, not `spawn_blocking`: the runtime would wait for it on drop.
        let (tx, waiting) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || drop(rx.recv().map(|v| tx.send(v))));
        self.rt.block_on(async {
            tokio::select! {
                _ = self.term.recv() => None,
                _ = self.int.recv() => None,
                got = waiting => got.ok(),
            }
        })
    }

    /// Blocks until SIGINT or SIGTERM, calling `on_hup` on each SIGHUP meanwhile.
    fn wait(mut self, on_hup: impl Fn()) {
        self.rt.block_on(async {
            loop {
                tokio::select! {
                    _ = self.term.recv() => return,
                    _ = self.int.recv() => return,
                    _ = self.hup.recv() => on_hup(),
                }
            }
        });
    }
}

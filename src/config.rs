//! Server configuration: every option with its default, a builder, and validation.
//!
//! Option names follow socket.io's (`ping_interval`, `ping_timeout`, `max_payload`,
//! `connect_timeout`, ...) so that a socket.io user finds them where they expect.
//!
//! Layer: the bottom (uses no other module).

use std::time::Duration;

/// Which origins the CORS layer accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin: `Access-Control-Allow-Origin` echoes the request's `Origin` (or `*` when
    /// credentials are off and no origin was sent).
    Any,
    /// Only these exact origins (e.g. `https://example.com`).
    List(Vec<String>),
}

/// The certificate chain and private key files (PEM) of [`Config::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: std::path::PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// Cross-origin settings. CORS is off by default, as in socket.io v4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins.
    pub origins: CorsOrigins,
    /// Send `Access-Control-Allow-Credentials: true`. Default `false`.
    pub credentials: bool,
}

/// Connection state recovery (socket.io's `connectionStateRecovery`): a client whose
/// connection dropped and that comes back within `max_disconnection_duration` gets its socket
/// id, rooms and `data` back, and every packet it missed (docs/recovery.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStateRecovery {
    /// How long a dropped client's session, and the packets it may miss, are kept
    /// (`maxDisconnectionDuration`). socket.io's default: 2 minutes.
    pub max_disconnection_duration: Duration,
    /// A recovered socket skips the namespace's middlewares (`skipMiddlewares`). socket.io's
    /// default: `true`.
    pub skip_middlewares: bool,
    /// Across servers (`redis_streams`): keep each connected socket's session in Redis
    /// while it is connected too, not only once it dropped, so that the clients of a server
    /// that crashed (killed, its host gone) are recovered by the others. Costs a Redis write
    /// per socket at connect, after its rooms or data change (coalesced, once a second at
    /// most) and every `max_disconnection_duration / 2` (at most every 60 s). Off by default:
    /// socket.io keeps a session only when its connection drops (docs/recovery.md).
    pub live_sessions: bool,
}

impl Default for ConnectionStateRecovery {
    fn default() -> Self {
        ConnectionStateRecovery {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            live_sessions: false,
        }
    }
}

/// All server options. Build one with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP path the server answers on, as a prefix. Default `/socket.io/`; one trailing `/`
    /// is added unless [`Config::add_trailing_slash`] is off.
    pub path: String,
    /// How often the server sends a PING. Default 25 s.
    pub ping_interval: Duration,
    /// How long the server waits for the PONG before closing with `ping timeout`. Default 20 s.
    pub ping_timeout: Duration,
    /// Largest message (WebSocket) or HTTP body (polling) accepted, in bytes. Default 1,000,000.
    pub max_payload: usize,
    /// Largest HTTP request head (request line and headers) accepted, in bytes; a larger one
    /// is answered 431 and the connection closed. Default 16 KiB, Node's `maxHttpHeaderSize`;
    /// at least 8 KiB. It also bounds each connection's HTTP read buffer, which a client
    /// sending endless headers would otherwise grow.
    pub max_http_header_size: usize,
    /// A client that has not joined any namespace after this long is closed. Default 45 s.
    pub connect_timeout: Duration,
    /// How long a polling → WebSocket upgrade may take before the probe socket is dropped.
    /// Default 10 s.
    pub upgrade_timeout: Duration,
    /// How long a shutdown ([`crate::RunningServer::shutdown`], SIGTERM for `serve`) may
    /// drain: accepting stops at once; what was queued for each client is written and its
    /// connection closed (reason `server shutting down`; clients reconnect, to another
    /// server of the cluster when there is one); past this the rest are dropped. Default
    /// 10 s.
    pub shutdown_timeout: Duration,
    /// Accept HTTP long-polling. Default `true`.
    pub polling: bool,
    /// Accept WebSocket. Default `true`.
    pub websocket: bool,
    /// Offer the polling → WebSocket upgrade. Default `true`.
    pub allow_upgrades: bool,
    /// Accept Engine.IO protocol 3 clients (socket.io-client 2.x and the mobile clients of
    /// that era), as socket.io's `allowEIO3`: a handshake whose `EIO` is not `4` opens a
    /// protocol 3 session (client pings, `<length>:<packet>` polling payloads, the implicit
    /// `/` namespace, `/nsp#sid` socket ids) instead of being refused with code 5
    /// `Unsupported protocol version`. Default `false`, as the reference. See
    /// docs/protocol.md, "Engine.IO v3 clients".
    pub allow_eio3: bool,
    /// CORS settings; `None` (the default) sends no CORS headers.
    pub cors: Option<Cors>,
    /// Number of shard threads. Default: the number of cores. At most 255.
    pub shards: usize,
    /// WebSocket frames (over long-polling: packets) a connection may have waiting to be
    /// written before the slow-consumer policy applies (the connection is closed with
    /// `slow consumer`). Default 4096.
    pub max_outbox: usize,
    /// Bytes a connection may have waiting to be written before the slow-consumer policy
    /// applies: what one stalled client can pin. One packet alone is always accepted.
    /// Default 8 MiB.
    pub max_outbox_bytes: usize,
    /// Write coalescing window under normal load. Zero (the default): what a loop turn of
    /// the shard queued for a connection goes out at the end of that turn, in one write.
    /// Above zero, a connection written to less than this long ago gets its next frames in
    /// one write when the window ends (a busy connection at most one write per window).
    /// Either way, what answers a client that just sent something (an ack, a reply, the
    /// CONNECT reply) is written at the end of the turn, never held. Default 0.
    pub write_coalesce: Duration,
    /// The widest the coalescing window gets under load. When writing takes more than 80% of
    /// a shard's time (near saturation: a fan-out too large for one write per frame), the
    /// window widens (from `write_coalesce`, or 1 ms when that is zero) up to this, trading
    /// latency for fewer, fuller writes; it narrows back when the load falls. Not above
    /// `write_coalesce`: a fixed window. Default 100 ms.
    pub write_coalesce_max: Duration,
    /// Most binary attachments one packet may announce (socket.io-parser's `maxAttachments`). Default 10.
    pub max_attachments: usize,
    /// Deepest nesting of arrays and objects a client's JSON may have (the arguments array of
    /// an event is level 1; an argument `[[1]]` in it is 3 deep). A deeper packet closes that
    /// connection (`forced close`, logged as "nested deeper than max_json_depth"); the parser
    /// does not recurse, and the shard threads' stacks are sized for handling values this
    /// deep. From 2 to 100,000. Default 1,000.
    pub max_json_depth: usize,
    /// Redis URL of the cluster this server joins (`redis://127.0.0.1:6379`), speaking the
    /// protocol of `@socket.io/redis-adapter` 8.x (`createAdapter`). `None` (the default): no
    /// cluster, this process alone.
    pub redis: Option<String>,
    /// Where to serve Prometheus metrics (`GET /metrics`, on a listener of its own; port 0
    /// picks a free one, see [`crate::RunningServer::metrics_addr`]). `None` (the default):
    /// no metrics listener. The series are in docs/operations.md.
    pub metrics: Option<std::net::SocketAddr>,
    /// A directory whose files are served on the main port, outside [`Config::path`]
    /// (`GET /` serves its `index.html`; `serve --static DIR`). `None` (the default):
    /// those paths answer 404.
    pub static_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS and WSS with this certificate and key (`serve --tls-cert --tls-key`),
    /// read when the server starts and again on [`crate::RunningServer::reload_tls`].
    /// `None` (the default): plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Channel prefix of the cluster (the adapter's `key`). Default `socket.io`.
    pub redis_key: String,
    /// Speak `createShardedAdapter`'s protocol (Redis 7 sharded pub/sub, `channelPrefix`
    /// = `redis_key`, subscription mode `dynamic`) instead of `createAdapter`'s; works on a
    /// single Redis and on a Redis Cluster (detected). Default `false`.
    pub redis_sharded: bool,
    /// With `redis_sharded`: which broadcasts go on a room's own channel (the sharded
    /// adapter's `subscriptionMode`), and so which room channels each server subscribes to.
    /// Every server of a cluster must use the same. Default [`SubscriptionMode::Dynamic`].
    pub redis_subscription_mode: SubscriptionMode,
    /// Speak `@socket.io/redis-streams-adapter`'s protocol (0.3: broadcasts and the
    /// operations on sockets appended to the stream `redis_key` with XADD and read back by
    /// one XREAD reader per server; requests and answers over PUBLISH / SUBSCRIBE on
    /// `redis_key`-prefixed channels), the adapter that supports connection state recovery
    /// across servers; single Redis only. Not with `redis_sharded`. Default `false`.
    pub redis_streams: bool,
    /// The approximate bound of the stream's length (`XADD ... MAXLEN ~ n`, the adapter's
    /// `maxLen`). Default 10,000.
    pub redis_stream_max_len: u64,
    /// How long a request to the other servers of the cluster (`fetch_sockets`,
    /// `all_rooms`, `server_side_emit_with_ack`, the remote part of a broadcast with acks
    /// that has no timeout of its own) waits for their answers (the adapter's
    /// `requestsTimeout`). Default 5 s.
    pub requests_timeout: Duration,
    /// Most messages waiting to be published to the cluster's broker; past it (a broker too
    /// slow, or away) further ones are dropped and counted, and local delivery goes on.
    /// Default 65,536.
    pub redis_max_queued: usize,
    /// Most open TCP connections; further ones are accepted and closed at once. Default 100,000.
    pub max_connections: usize,
    /// Set `TCP_NODELAY` on accepted sockets. Default `true`.
    pub tcp_nodelay: bool,
    /// Offer WebSocket per-message deflate (RFC 7692) to clients that ask for it. Off by
    /// default, as in socket.io. Negotiated without context takeover in both directions, so
    /// a broadcast is compressed once for all its recipients. Default `false`.
    pub per_message_deflate: bool,
    /// Text packets shorter than this are never compressed (socket.io's `threshold`).
    /// Default 1024 bytes.
    pub deflate_threshold: usize,
    /// The `io` cookie on the handshake's response (engine.io's `cookie` option); `None`
    /// (the default, as engine.io's since v4): no cookie.
    pub cookie: Option<Cookie>,
    /// Whether [`Config::path`] ends with a `/` (socket.io's `addTrailingSlash`, default
    /// `true`): with `false`, `/socket.io` is the prefix matched, as a client with
    /// `addTrailingSlash: false` asks for `/socket.io?EIO=4...`.
    pub add_trailing_slash: bool,
    /// Remove a namespace a dynamic pattern created ([`crate::Server::of_dynamic`],
    /// `of_regex`) once its last socket left, on every shard (socket.io's
    /// `cleanupEmptyChildNamespaces`): a cluster adapter unsubscribes from its channels,
    /// and a later connection to that name makes a new one. Default `false`.
    pub cleanup_empty_child_namespaces: bool,
    /// Compress long-polling responses (engine.io's `httpCompression`, on by default):
    /// gzip or deflate as the client's `Accept-Encoding` prefers, for a response of at least
    /// `http_compression_threshold` bytes holding a packet that allows compression (an emit
    /// without `compress(false)`). Default `true`.
    pub http_compression: bool,
    /// Polling responses shorter than this are sent as they are (`httpCompression`'s
    /// `threshold`). Default 1024 bytes.
    pub http_compression_threshold: usize,
    /// Connection state recovery; `None` (the default, as in socket.io): off. With it on,
    /// the CONNECT reply carries a private session id, every plain event the server sends
    /// (not volatile, not awaiting an ack) carries its offset as its last argument, and each
    /// shard keeps a replay log of those packets (docs/recovery.md). With `redis_streams`
    /// it works across the cluster instead: the stream is the log (its entry ids are the
    /// offsets) and Redis keeps the sessions, as `@socket.io/redis-streams-adapter` does.
    /// With the other Redis adapters it is refused
    /// ([`ConfigError::RecoveryNeedsPersistence`]).
    pub connection_state_recovery: Option<ConnectionStateRecovery>,
    /// Most packets each shard's replay log keeps (recovery on). Past it the oldest are
    /// dropped, and a client that missed one of them is not recovered (it gets a new
    /// session; counted in `Server::recovery_stats`). Across servers (`redis_streams`): the
    /// most missed packets one restore replays (more: a new session). Default 100,000.
    pub recovery_max_packets: usize,
    /// Most bytes of packets each shard's replay log keeps (their wire size; the bytes are
    /// shared with the broadcast, not copied). Default 64 MiB.
    pub recovery_max_bytes: usize,
    /// How Socket.IO packets are written on the wire, as socket.io's `parser` option: the
    /// default parser's text, or `socket.io-msgpack-parser`'s MessagePack. Every client of
    /// the server must use the same one. Default [`Parser::Default`].
    pub parser: Parser,
}

/// The `io` cookie (engine.io's `cookie` option): set on the handshake's polling response,
/// named and valued by the session id, for sticky sessions at a load balancer.
/// [`Cookie::default`] is the reference's: `io`, `Path=/`, `HttpOnly`, `SameSite=Lax`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The cookie's name. Default `io`.
    pub name: String,
    /// `Path`. Default `/`.
    pub path: Option<String>,
    /// `Domain`. Default none.
    pub domain: Option<String>,
    /// `Max-Age`, in seconds. Default none (a session cookie).
    pub max_age: Option<u64>,
    /// `HttpOnly`. Default on.
    pub http_only: bool,
    /// `Secure`. Default off.
    pub secure: bool,
    /// `Partitioned`. Default off.
    pub partitioned: bool,
    /// `SameSite`. Default `Lax`.
    pub same_site: Option<SameSite>,
}

/// A cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (needs `secure`).
    None,
}

impl Default for Cookie {
    fn default() -> Self {
        Cookie {
            name: "io".into(),
            path: Some("/".into()),
            domain: None,
            max_age: None,
            http_only: true,
            secure: false,
            partitioned: false,
            same_site: Some(SameSite::Lax),
        }
    }
}

impl Cookie {
    /// The `Set-Cookie` value for session `sid`, attributes in the order of the `cookie`
    /// package engine.io uses.
    pub fn serialize(&self, sid: &str) -> String {
        let value: String = form_urlencoded::byte_serialize(sid.as_bytes()).collect();
        let mut s = format!("{}={value}", self.name);
        if let Some(age) = self.max_age {
            s.push_str(&format!("; Max-Age={age}"));
        }
        if let Some(d) = &self.domain {
            s.push_str(&format!("; Domain={d}"));
        }
        if let Some(p) = &self.path {
            s.push_str(&format!("; Path={p}"));
        }
        if self.http_only {
            s.push_str("; HttpOnly");
        }
        if self.secure {
            s.push_str("; Secure");
        }
        if self.partitioned {
            s.push_str("; Partitioned");
        }
        match self.same_site {
            Some(SameSite::Strict) => s.push_str("; SameSite=Strict"),
            Some(SameSite::Lax) => s.push_str("; SameSite=Lax"),
            Some(SameSite::None) => s.push_str("; SameSite=None"),
            None => {}
        }
        s
    }
}

/// The Socket.IO packet encoding (socket.io's `parser` option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parser {
    /// socket.io-parser: a text packet (`2["ev",1]`), binary as attachments after it.
    #[default]
    Default,
    /// socket.io-msgpack-parser: each packet one binary MessagePack message, binary inside
    /// it. Clients are configured with `parser: require("socket.io-msgpack-parser")`.
    MsgPack,
}

impl Parser {
    /// The parser for a name: `default` or `msgpack`.
    pub fn from_name(name: &str) -> Option<Parser> {
        match name {
            "default" => Some(Parser::Default),
            "msgpack" => Some(Parser::MsgPack),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_http_header_size: 16 * 1024,
            connect_timeout: Duration::from_millis(45_000),
            upgrade_timeout: Duration::from_millis(10_000),
            shutdown_timeout: Duration::from_secs(10),
            polling: true,
            websocket: true,
            allow_upgrades: true,
            allow_eio3: false,
            cors: None,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_outbox: 4096,
            max_outbox_bytes: 8 * 1024 * 1024,
            write_coalesce: Duration::ZERO,
            write_coalesce_max: Duration::from_millis(100),
            max_attachments: 10,
            max_json_depth: 1000,
            redis: None,
            metrics: None,
            static_dir: None,
            tls: None,
            redis_key: "socket.io".into(),
            redis_sharded: false,
            redis_subscription_mode: SubscriptionMode::Dynamic,
            redis_streams: false,
            redis_stream_max_len: 10_000,
            requests_timeout: Duration::from_millis(5000),
            redis_max_queued: 65_536,
            max_connections: 100_000,
            tcp_nodelay: true,
            per_message_deflate: false,
            deflate_threshold: 1024,
            http_compression: true,
            http_compression_threshold: 1024,
            cookie: None,
            add_trailing_slash: true,
            cleanup_empty_child_namespaces: false,
            connection_state_recovery: None,
            recovery_max_packets: 100_000,
            recovery_max_bytes: 64 * 1024 * 1024,
            parser: Parser::Default,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }
}

/// A configuration that [`ConfigBuilder::build`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `shards` must be 1..=255 (a session id carries its shard in one byte).
    #[error("shards must be between 1 and 255, got {0}")]
    Shards(usize),
    /// `path` must start with `/` and name something (`/` alone needs the trailing slash).
    #[error("path must start with '/' and not be empty, got {0:?}")]
    Path(String),
    /// A duration or size that must be positive was zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Both transports were disabled.
    #[error("at least one transport (polling, websocket) must be enabled")]
    NoTransport,
    /// Connection state recovery needs an adapter that keeps packets: the classic and
    /// sharded Redis pub/sub adapters cannot (as in socket.io).
    #[error("connection state recovery cannot work with the Redis pub/sub adapters (they keep no packets to replay)")]
    RecoveryNeedsPersistence,
    /// Live sessions ([`ConnectionStateRecovery::live_sessions`]) keep sessions in Redis:
    /// they need recovery on across servers (`redis_streams`).
    #[error("live recovery sessions need connection state recovery on the Redis Streams adapter")]
    LiveSessionsNeedStreams,
    /// `max_http_header_size` must be 8 KiB to 16 MiB (hyper's read buffer bounds).
    #[error("max_http_header_size must be between 8192 and 16777216 bytes, got {0}")]
    HeaderSize(usize),
    /// `max_json_depth` must be 2..=100,000.
    #[error("max_json_depth must be between 2 and {MAX_JSON_DEPTH}, got {0}")]
    JsonDepth(usize),
    /// `redis_sharded` and `redis_streams` are two protocols: a cluster speaks one.
    #[error("redis_sharded and redis_streams are two cluster protocols: choose one")]
    RedisProtocols,
    /// `redis_subscription_mode` is an option of the sharded protocol only.
    #[error("redis_subscription_mode {0} needs redis_sharded (the other protocols have no room channels)")]
    SubscriptionModeNeedsSharded(&'static str),
}

/// Which broadcasts the sharded adapter sends on a room's own channel (its
/// `subscriptionMode` option), and so which room channels a server subscribes to
/// ([`Config::redis_subscription_mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SubscriptionMode {
    /// `"static"`: every message on the namespace channel.
    Static,
    /// `"dynamic"` (the default): a broadcast to one public room (not a socket id) on the
    /// room's channel.
    #[default]
    Dynamic,
    /// `"dynamic-private"`: a broadcast to any one room, socket ids included, on its channel.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// The mode named as the adapter's option names it.
    pub fn from_name(name: &str) -> Option<SubscriptionMode> {
        match name {
            "static" => Some(SubscriptionMode::Static),
            "dynamic" => Some(SubscriptionMode::Dynamic),
            "dynamic-private" => Some(SubscriptionMode::DynamicPrivate),
            _ => None,
        }
    }

    /// The option's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SubscriptionMode::Static => "static",
            SubscriptionMode::Dynamic => "dynamic",
            SubscriptionMode::DynamicPrivate => "dynamic-private",
        }
    }
}

/// The largest `max_json_depth` accepted (what the shard stack sizing is planned for).
pub const MAX_JSON_DEPTH: usize = 100_000;

/// Builder for [`Config`]; each setter documents nothing new: see the field of the same name.
#[derive(Debug, Clone)]
pub struct ConfigBuilder(Config);

macro_rules! setter {
    ($(#[$m:meta])* $name:ident: $ty:ty) => {
        $(#[$m])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.0.$name = v;
            self
        }
    };
}

impl ConfigBuilder {
    /// See [`Config::path`].
    pub fn path(mut self, v: impl Into<String>) -> Self {
        self.0.path = v.into();
        self
    }
    setter!(/// See [`Config::ping_interval`].
        ping_interval: Duration);
    setter!(/// See [`Config::ping_timeout`].
        ping_timeout: Duration);
    setter!(/// See [`Config::max_payload`].
        max_payload: usize);
    setter!(/// See [`Config::max_http_header_size`].
        max_http_header_size: usize);
    setter!(/// See [`Config::connect_timeout`].
        connect_timeout: Duration);
    setter!(/// See [`Config::upgrade_timeout`].
        upgrade_timeout: Duration);
    setter!(/// See [`Config::shutdown_timeout`].
        shutdown_timeout: Duration);
    setter!(/// See [`Config::polling`].
        polling: bool);
    setter!(/// See [`Config::websocket`].
        websocket: bool);
    setter!(/// See [`Config::allow_upgrades`].
        allow_upgrades: bool);
    setter!(/// See [`Config::allow_eio3`].
        allow_eio3: bool);
    setter!(/// See [`Config::shards`].
        shards: usize);
    setter!(/// See [`Config::max_outbox`].
        max_outbox: usize);
    setter!(/// See [`Config::max_outbox_bytes`].
        max_outbox_bytes: usize);
    setter!(/// See [`Config::write_coalesce`].
        write_coalesce: Duration);
    setter!(/// See [`Config::write_coalesce_max`].
        write_coalesce_max: Duration);
    setter!(/// See [`Config::max_attachments`].
        max_attachments: usize);
    setter!(/// See [`Config::max_json_depth`].
        max_json_depth: usize);
    setter!(/// See [`Config::redis_sharded`].
        redis_sharded: bool);
    setter!(/// See [`Config::redis_subscription_mode`].
        redis_subscription_mode: SubscriptionMode);
    setter!(/// See [`Config::redis_streams`].
        redis_streams: bool);
    setter!(/// See [`Config::redis_stream_max_len`].
        redis_stream_max_len: u64);
    setter!(/// See [`Config::requests_timeout`].
        requests_timeout: Duration);
    setter!(/// See [`Config::redis_max_queued`].
        redis_max_queued: usize);
    setter!(/// See [`Config::max_connections`].
        max_connections: usize);
    setter!(/// See [`Config::tcp_nodelay`].
        tcp_nodelay: bool);
    setter!(/// See [`Config::per_message_deflate`].
        per_message_deflate: bool);
    setter!(/// See [`Config::deflate_threshold`].
        deflate_threshold: usize);
    setter!(/// See [`Config::add_trailing_slash`].
        add_trailing_slash: bool);
    setter!(/// See [`Config::cleanup_empty_child_namespaces`].
        cleanup_empty_child_namespaces: bool);
    /// Sets the `io` cookie (see [`Config::cookie`]); `Cookie::default()` is the
    /// reference's `cookie: true`.
    pub fn cookie(mut self, v: Cookie) -> Self {
        self.0.cookie = Some(v);
        self
    }
    setter!(/// See [`Config::http_compression`].
        http_compression: bool);
    setter!(/// See [`Config::http_compression_threshold`].
        http_compression_threshold: usize);
    setter!(/// See [`Config::recovery_max_packets`].
        recovery_max_packets: usize);
    setter!(/// See [`Config::recovery_max_bytes`].
        recovery_max_bytes: usize);
    setter!(/// See [`Config::parser`].
        parser: Parser);
    /// Turns connection state recovery on (see [`Config::connection_state_recovery`]), as
    /// socket.io's `connectionStateRecovery: { maxDisconnectionDuration, skipMiddlewares }`;
    /// [`ConnectionStateRecovery::default`] has socket.io's defaults (2 minutes, `true`).
    pub fn connection_state_recovery(
        mut self,
        max_disconnection_duration: Duration,
        skip_middlewares: bool,
    ) -> Self {
        let live_sessions = self.0.connection_state_recovery.is_some_and(|r| r.live_sessions);
        self.0.connection_state_recovery = Some(ConnectionStateRecovery {
            max_disconnection_duration,
            skip_middlewares,
            live_sessions,
        });
        self
    }
    /// See [`ConnectionStateRecovery::live_sessions`]. Call it after
    /// [`ConfigBuilder::connection_state_recovery`]: without recovery on there is nothing to
    /// keep, and it does nothing.
    pub fn recovery_live_sessions(mut self, on: bool) -> Self {
        if let Some(r) = &mut self.0.connection_state_recovery {
            r.live_sessions = on;
        }
        self
    }
    /// See [`Config::redis`].
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.0.redis = Some(url.into());
        self
    }
    /// See [`Config::metrics`].
    pub fn metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.0.metrics = Some(addr);
        self
    }
    /// See [`Config::static_dir`].
    pub fn static_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.0.static_dir = Some(dir.into());
        self
    }
    /// See [`Config::tls`].
    pub fn tls(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.0.tls = Some(TlsFiles { cert: cert.into(), key: key.into() });
        self
    }
    /// See [`Config::redis_key`].
    pub fn redis_key(mut self, key: impl Into<String>) -> Self {
        self.0.redis_key = key.into();
        self
    }
    /// See [`Config::cors`].
    pub fn cors(mut self, v: Cors) -> Self {
        self.0.cors = Some(v);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.0;
        // As engine.io's path: one trailing slash dropped, then one added unless
        // `add_trailing_slash` is off.
        if c.path.len() > 1 {
            if let Some(p) = c.path.strip_suffix('/') {
                c.path = p.to_owned();
            }
        }
        if c.add_trailing_slash && !c.path.ends_with('/') {
            c.path.push('/');
        }
        if c.shards == 0 || c.shards > 255 {
            return Err(ConfigError::Shards(c.shards));
        }
        if !c.path.starts_with('/') || c.path.len() < 2 && !c.add_trailing_slash {
            return Err(ConfigError::Path(c.path));
        }
        if !(8192..=16 << 20).contains(&c.max_http_header_size) {
            return Err(ConfigError::HeaderSize(c.max_http_header_size));
        }
        for (name, zero) in [
            ("ping_interval", c.ping_interval.is_zero()),
            ("ping_timeout", c.ping_timeout.is_zero()),
            ("connect_timeout", c.connect_timeout.is_zero()),
            ("upgrade_timeout", c.upgrade_timeout.is_zero()),
            ("max_payload", c.max_payload == 0),
            ("max_outbox", c.max_outbox == 0),
            ("max_outbox_bytes", c.max_outbox_bytes == 0),
            ("max_connections", c.max_connections == 0),
            ("requests_timeout", c.requests_timeout.is_zero()),
            ("redis_max_queued", c.redis_max_queued == 0),
            ("redis_stream_max_len", c.redis_stream_max_len == 0),
            ("recovery_max_packets", c.recovery_max_packets == 0),
            ("recovery_max_bytes", c.recovery_max_bytes == 0),
            (
                "max_disconnection_duration",
                c.connection_state_recovery.is_some_and(|r| r.max_disconnection_duration.is_zero()),
            ),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        if !c.polling && !c.websocket {
            return Err(ConfigError::NoTransport);
        }
        if !(2..=MAX_JSON_DEPTH).contains(&c.max_json_depth) {
            return Err(ConfigError::JsonDepth(c.max_json_depth));
        }
        if c.redis_sharded && c.redis_streams {
            return Err(ConfigError::RedisProtocols);
        }
        if !c.redis_sharded && c.redis_subscription_mode != SubscriptionMode::Dynamic {
            return Err(ConfigError::SubscriptionModeNeedsSharded(
                c.redis_subscription_mode.name(),
            ));
        }
        if c.connection_state_recovery.is_some() && c.redis.is_some() && !c.redis_streams {
            return Err(ConfigError::RecoveryNeedsPersistence);
        }
        if c.connection_state_recovery.is_some_and(|r| r.live_sessions)
            && !(c.redis.is_some() && c.redis_streams)
        {
            return Err(ConfigError::LiveSessionsNeedStreams);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_socket_io() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.ping_timeout, Duration::from_secs(20));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.connect_timeout, Duration::from_secs(45));
        assert_eq!(c.path, "/socket.io/");
        assert!(c.cors.is_none());
        assert_eq!(c.connection_state_recovery, None, "recovery is off by default");
        let d = ConnectionStateRecovery::default();
        assert_eq!(
            (d.max_disconnection_duration, d.skip_middlewares),
            (Duration::from_secs(120), true)
        );
    }

    #[test]
    fn recovery_is_checked() {
        let c = Config::builder()
            .connection_state_recovery(Duration::from_secs(5), false)
            .build()
            .unwrap();
        assert_eq!(
            c.connection_state_recovery,
            Some(ConnectionStateRecovery {
                max_disconnection_duration: Duration::from_secs(5),
                skip_middlewares: false,
                live_sessions: false,
            })
        );
        // Live sessions: across servers only.
        assert_eq!(
            Config::builder()
                .connection_state_recovery(Duration::from_secs(5), true)
                .recovery_live_sessions(true)
                .build()
                .unwrap_err(),
            ConfigError::LiveSessionsNeedStreams
        );
        assert_eq!(
            Config::builder()
                .recovery_live_sessions(true)
                .build()
                .unwrap()
                .connection_state_recovery,
            None
        );
        let c = Config::builder()
            .redis("redis://127.0.0.1:6379")
            .redis_streams(true)
            .connection_state_recovery(Duration::from_secs(5), true)
            .recovery_live_sessions(true)
            .build()
            .unwrap();
        assert!(c.connection_state_recovery.is_some_and(|r| r.live_sessions));
        assert_eq!(
            Config::builder().connection_state_recovery(Duration::ZERO, true).build().unwrap_err(),
            ConfigError::Zero("max_disconnection_duration")
        );
        assert_eq!(
            Config::builder().recovery_max_packets(0).build().unwrap_err(),
            ConfigError::Zero("recovery_max_packets")
        );
        assert_eq!(
            Config::builder()
                .redis("redis://127.0.0.1:6379")
                .connection_state_recovery(Duration::from_secs(1), true)
                .build()
                .unwrap_err(),
            ConfigError::RecoveryNeedsPersistence
        );
        // The Redis Streams adapter keeps packets: recovery goes across servers.
        assert!(Config::builder()
            .redis("redis://127.0.0.1:6379")
            .redis_streams(true)
            .connection_state_recovery(Duration::from_secs(1), true)
            .build()
            .is_ok());
    }

    #[test]
    fn build_rejects_bad_values() {
        assert_eq!(Config::builder().shards(0).build().unwrap_err(), ConfigError::Shards(0));
        assert_eq!(Config::builder().shards(256).build().unwrap_err(), ConfigError::Shards(256));
        assert!(matches!(Config::builder().path("x").build(), Err(ConfigError::Path(_))));
        assert_eq!(
            Config::builder().ping_interval(Duration::ZERO).build().unwrap_err(),
            ConfigError::Zero("ping_interval")
        );
        assert_eq!(
            Config::builder().polling(false).websocket(false).build().unwrap_err(),
            ConfigError::NoTransport
        );
        for bad in [0, 1, MAX_JSON_DEPTH + 1] {
            assert_eq!(
                Config::builder().max_json_depth(bad).build().unwrap_err(),
                ConfigError::JsonDepth(bad)
            );
        }
        assert_eq!(Config::builder().build().unwrap().max_json_depth, 1000);
    }

    #[test]
    fn the_subscription_mode_is_an_option_of_the_sharded_protocol() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.redis_subscription_mode, SubscriptionMode::Dynamic);
        for mode in [SubscriptionMode::Static, SubscriptionMode::DynamicPrivate] {
            let c = Config::builder()
                .redis_sharded(true)
                .redis_subscription_mode(mode)
                .build()
                .unwrap();
            assert_eq!(c.redis_subscription_mode, mode);
            assert_eq!(
                Config::builder().redis_subscription_mode(mode).build().unwrap_err(),
                ConfigError::SubscriptionModeNeedsSharded(mode.name())
            );
        }
    }
}

//! The admin UI: what `@socket.io/admin-ui`'s server-side `instrument()` does, so the
//! official UI (its hosted page, or the `ui/dist` its npm package ships) shows this server,
//! and every server of its cluster, with its sockets, rooms, events and stats, and its
//! emit / join / leave / disconnect actions work ([`Server::instrument`]).
//!
//! The UI is a Socket.IO client of the `/admin` namespace. It gets `config` (the features
//! it may offer), `server_stats` every 2 s from each server (through the adapter, so one
//! connection sees the whole cluster), and in development mode `all_sockets` once, then
//! `socket_connected` / `socket_updated` / `socket_disconnected`, `room_joined` /
//! `room_left` and `event_received` / `event_sent` as they happen.
//!
//! Cost: in production mode nothing is added to any socket; the stats are read from the
//! per-shard counters every 2 s. In development mode a socket's connect and upgrade record
//! its engine id and transport in `data._admin` (as the reference does, so servers of a
//! mixed cluster read each other's), and its events are reported only while an admin is
//! connected somewhere in the cluster: otherwise each hook is one relaxed load.
//!
//! Layer: above the server (an application of the public API, plus the namespace layer's
//! watch hook).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::error::{ConnectError, DisconnectReason};
use crate::metrics;
use crate::ns::args::Args;
use crate::ns::shared::ServerShared;
use crate::ns::socket::Socket;
use crate::ns::watch::Watch;
use crate::ns::{Namespace, NamespaceInner, RoomChange};
use crate::server::Server;

/// How often each server sends its `server_stats` (the reference's interval).
const STATS_EVERY: Duration = Duration::from_secs(2);

/// What [`Server::instrument`] sets up, named as `instrument(io, options)` names them.
#[derive(Debug, Clone)]
pub struct AdminUi {
    /// Basic authentication (`auth: { type: "basic", username, password }`, the password a
    /// bcrypt hash); `None` is the reference's `auth: false`: anyone reaching the server
    /// may administer it.
    pub auth: Option<BasicAuth>,
    /// Only show: the UI's emit, join, leave and disconnect actions are refused. Default
    /// `false`.
    pub readonly: bool,
    /// How the UI names this server. Default: the host name.
    pub server_id: Option<String>,
    /// [`AdminMode::Development`] (the reference's default) or [`AdminMode::Production`].
    pub mode: AdminMode,
    /// The admin namespace (`namespaceName`). Default `/admin`.
    pub namespace: String,
}

impl Default for AdminUi {
    fn default() -> Self {
        AdminUi {
            auth: None,
            readonly: false,
            server_id: None,
            mode: AdminMode::Development,
            namespace: "/admin".into(),
        }
    }
}

/// The UI's login: `username`, and `password` as a bcrypt hash (e.g. from
/// `htpasswd -bnBC 10 "" secret` or bcrypt's `hash`).
#[derive(Clone)]
pub struct BasicAuth {
    /// The user name the UI must send.
    pub username: String,
    /// The bcrypt hash of the password (`$2a$`, `$2b$` or `$2y$`).
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth").field("username", &self.username).finish_non_exhaustive()
    }
}

/// How much the UI is told (the reference's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminMode {
    /// Every socket, room change and event, as it happens (and the aggregated stats).
    Development,
    /// Only the aggregated stats: nothing is added to the sockets' paths.
    Production,
}

impl AdminMode {
    /// `development` or `production`.
    pub fn from_name(name: &str) -> Option<AdminMode> {
        match name {
            "development" => Some(AdminMode::Development),
            "production" => Some(AdminMode::Production),
            _ => None,
        }
    }
}

/// Why [`Server::instrument`] refused its options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The password is not a bcrypt hash (the reference: "the `password` field must be a
    /// valid bcrypt hash").
    #[error("the password must be a valid bcrypt hash")]
    InvalidHash,
    /// The server was instrumented already.
    #[error("the server is instrumented already")]
    Instrumented,
    /// The stats thread could not be started.
    #[error("cannot start the admin UI's stats thread: {0}")]
    Thread(String),
}

impl Server {
    /// Instruments the server for the admin UI, as `instrument(io, options)` does. Call it
    /// before `listen`, once.
    pub fn instrument(&self, ui: AdminUi) -> Result<(), AdminError> {
        if let Some(auth) = &ui.auth {
            if auth.password.parse::<bcrypt::HashParts>().is_err() {
                return Err(AdminError::InvalidHash);
            }
        } else {
            tracing::warn!("admin UI authentication is disabled, please use with caution");
        }
        let name = if ui.namespace.starts_with('/') {
            ui.namespace.clone()
        } else {
            format!("/{}", ui.namespace)
        };
        if self.0.existing(&name).is_some_and(|_| self.0.watcher().is_some()) {
            return Err(AdminError::Instrumented);
        }
        let admin_ns = self.of(&name);
        let state = Arc::new(Admin {
            server: Arc::downgrade(&self.0),
            nsp: admin_ns.inner.clone(),
            mode: ui.mode,
            local_admins: AtomicUsize::new(0),
            sessions: Mutex::new(HashSet::new()),
            pending_sessions: Mutex::new(HashMap::new()),
            started: Instant::now(),
            server_id: ui.server_id.clone().unwrap_or_else(hostname),
            hostname: hostname(),
        });
        if ui.mode == AdminMode::Development {
            self.0.set_watch(state.clone());
            let rooms = state.clone();
            let existing = self.0.watch_namespaces(Box::new(move |ns, created| {
                if created {
                    rooms.watch_rooms(ns);
                }
            }));
            for n in existing.iter().filter_map(|n| self.0.existing(n)) {
                state.watch_rooms(&n);
            }
        }
        if let Some(auth) = ui.auth.clone() {
            let st = state.clone();
            admin_ns.use_middleware(move |socket| st.authenticate(socket, &auth));
        }
        let features = features(&ui);
        let st = state.clone();
        admin_ns.on_connection(move |socket| st.on_admin(socket, &features, ui.readonly));
        let st = state.clone();
        std::thread::Builder::new()
            .name("shardcast-admin".into())
            .spawn(move || st.stats_loop())
            .map_err(|e| AdminError::Thread(e.to_string()))?;
        Ok(())
    }
}

/// The features the UI is told of (`config.supportedFeatures`).
fn features(ui: &AdminUi) -> Vec<&'static str> {
    let mut f = if ui.readonly {
        Vec::new()
    } else {
        vec!["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]
    };
    f.push("AGGREGATED_EVENTS");
    if ui.mode == AdminMode::Development {
        f.push("ALL_EVENTS");
    }
    f
}

/// One instrumented server's admin state. Holds the server weakly: the server holds it
/// (as its watcher), and the stats thread ends when the server is gone.
struct Admin {
    server: Weak<ServerShared>,
    nsp: Arc<NamespaceInner>,
    mode: AdminMode,
    /// Admin sockets connected to this server.
    local_admins: AtomicUsize,
    /// Session ids handed out after a login (the reference's in-memory store).
    sessions: Mutex<HashSet<String>>,
    /// Socket id → the session id its login created, sent once it is connected.
    pending_sessions: Mutex<HashMap<String, String>>,
    started: Instant,
    server_id: String,
    /// Read once: the stats repeat it every 2 s.
    hostname: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admin {
    fn namespace(&self) -> Option<Namespace> {
        let server = self.server.upgrade()?;
        Some(Namespace { inner: self.nsp.clone(), server })
    }

    /// Sends `event` to every admin socket of the cluster.
    fn tell(&self, event: &str, args: Args) {
        if let Some(ns) = self.namespace() {
            let _ = ns.emit(event, args);
        }
    }

    fn watching(&self) -> bool {
        self.nsp.watched()
    }

    /// The login middleware: a session id from an earlier login, or the username and the
    /// password matching the hash. bcrypt runs here, on the shard, once per login (about
    /// 70 ms at cost 10); the UI logs in once and reconnects with its session id.
    fn authenticate(&self, socket: &Socket, auth: &BasicAuth) -> Result<(), ConnectError> {
        let hs = &socket.handshake().auth;
        if let Some(id) = hs.get("sessionId").and_then(Value::as_str) {
            if lock(&self.sessions).contains(id) {
                return Ok(());
            }
        }
        let user = hs.get("username").and_then(Value::as_str);
        let pass = hs.get("password").and_then(Value::as_str);
        if let (Some(user), Some(pass)) = (user, pass) {
            if user == auth.username && bcrypt::verify(pass, &auth.password).unwrap_or(false) {
                let session = format!("{:016x}", rand::random::<u64>());
                lock(&self.sessions).insert(session.clone());
                lock(&self.pending_sessions).insert(socket.id().to_owned(), session);
                return Ok(());
            }
        }
        Err(ConnectError::new("invalid credentials"))
    }

    /// An admin socket connected: its actions, `config`, and in development mode every
    /// socket of the cluster.
    fn on_admin(self: &Arc<Self>, socket: Socket, features: &[&'static str], readonly: bool) {
        self.local_admins.fetch_add(1, Ordering::Relaxed);
        if let Some(server) = self.server.upgrade() {
            server.set_watching(self.mode == AdminMode::Development);
        }
        let st = self.clone();
        socket.on_disconnect(move |_, _| {
            st.local_admins.fetch_sub(1, Ordering::Relaxed);
        });
        if let Some(session) = lock(&self.pending_sessions).remove(socket.id()) {
            let _ = socket.emit("session", (session,));
        }
        if !readonly {
            self.actions(&socket);
        }
        let _ = socket.emit("config", (json!({ "supportedFeatures": features }),));
        if self.mode == AdminMode::Development {
            let st = self.clone();
            tokio::task::spawn_local(async move {
                let all = st.all_sockets().await;
                let _ = socket.emit("all_sockets", (Value::Array(all),));
            });
        }
    }

    /// The UI's actions: `emit (nsp, room?, event, ...args)`, `join (nsp, room, filter?)`,
    /// `leave (nsp, room, filter?)`, `_disconnect (nsp, close, filter?)`, each on every
    /// socket of the cluster in namespace `nsp` (and room `filter` when given). A namespace
    /// this server does not have is ignored (the reference would create it).
    fn actions(self: &Arc<Self>, socket: &Socket) {
        let st = self.clone();
        socket.on("emit", move |_s, args, _ack| {
            let (Some(ns), Some(ev)) = (st.target(&args), args.str(2).map(str::to_owned)) else {
                return;
            };
            let filter = args.str(1).filter(|f| !f.is_empty()).map(str::to_owned);
            let rest = args.skip(3);
            let _ = match filter {
                Some(room) => ns.to(room).emit(&ev, rest),
                None => ns.emit(&ev, rest),
            };
        });
        for action in ["join", "leave"] {
            let st = self.clone();
            socket.on(action, move |_s, args, _ack| {
                let (Some(ns), Some(room)) = (st.target(&args), args.str(1)) else { return };
                let room = room.to_owned();
                match (args.str(2).filter(|f| !f.is_empty()), action) {
                    (Some(filter), "join") => ns.in_(filter.to_owned()).sockets_join(room),
                    (Some(filter), _) => ns.in_(filter.to_owned()).sockets_leave(room),
                    (None, "join") => ns.sockets_join(room),
                    (None, _) => ns.sockets_leave(room),
                }
            });
        }
        let st = self.clone();
        socket.on("_disconnect", move |_s, args, _ack| {
            let Some(ns) = st.target(&args) else { return };
            let close = args.values().get(1).and_then(Value::as_bool).unwrap_or(false);
            match args.str(2).filter(|f| !f.is_empty()) {
                Some(filter) => ns.in_(filter.to_owned()).disconnect_sockets(close),
                None => ns.disconnect_sockets(close),
            }
        });
    }

    /// The namespace an action names (its first argument), when this server has it.
    fn target(&self, args: &Args) -> Option<Namespace> {
        let server = self.server.upgrade()?;
        let inner = server.existing(args.str(0)?)?;
        Some(Namespace { inner, server })
    }

    /// Every socket of every namespace, across the cluster, as the UI shows them.
    async fn all_sockets(&self) -> Vec<Value> {
        let Some(server) = self.server.upgrade() else { return Vec::new() };
        let mut out = Vec::new();
        for name in server.namespace_names() {
            let Some(inner) = server.existing(&name) else { continue };
            let ns = Namespace { inner, server: server.clone() };
            match ns.fetch_sockets().await {
                Ok(sockets) => {
                    for s in sockets {
                        out.push(serialize(s.id(), &name, s.data(), s.handshake(), &s.rooms()));
                    }
                }
                Err(e) => tracing::warn!(nsp = %name, error = %e, "admin UI: fetching sockets"),
            }
        }
        out
    }

    /// Tells the UI of the joins and leaves of namespace `ns` (and, for a dynamic
    /// pattern's, of each namespace it creates).
    fn watch_rooms(self: &Arc<Self>, ns: &Arc<NamespaceInner>) {
        let st = Arc::downgrade(self);
        ns.add_room_watcher(
            "admin-ui",
            Arc::new(move |nsp, ev| {
                let Some(st) = st.upgrade() else { return };
                if !st.watching() {
                    return;
                }
                let (event, room, id) = match ev {
                    RoomChange::JoinRoom(room, id) => ("room_joined", room, id),
                    RoomChange::LeaveRoom(room, id) => ("room_left", room, id),
                    _ => return,
                };
                st.tell(event, args(vec![json!(&**nsp), json!(&**room), json!(id), now()]));
            }),
        );
    }

    /// Every [`STATS_EVERY`]: this server's `server_stats` to every admin of the cluster,
    /// and whether any admin is connected anywhere (which turns the watch hooks on or off).
    /// Ends when the server is gone.
    fn stats_loop(self: Arc<Self>) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            tracing::error!("admin UI: cannot start its stats runtime");
            return;
        };
        rt.block_on(async move {
            let mut last = Totals::default();
            loop {
                let Some(server) = self.server.upgrade() else { return };
                let snap = metrics::snapshot(&server).await;
                let totals = Totals::of(&snap);
                let stats = self.stats(&server, &snap, &totals, &last);
                last = totals;
                if self.mode == AdminMode::Development {
                    let admins = self.admins_anywhere(&server).await;
                    server.set_watching(admins);
                }
                drop(server);
                self.tell("server_stats", args(vec![stats]));
                tokio::time::sleep(STATS_EVERY).await;
            }
        });
    }

    /// An admin socket is connected to this server or, through the adapter, to another.
    async fn admins_anywhere(&self, server: &Arc<ServerShared>) -> bool {
        if self.local_admins.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let ns = Namespace { inner: self.nsp.clone(), server: server.clone() };
        ns.fetch_sockets().await.map(|s| !s.is_empty()).unwrap_or(false)
    }

    fn stats(
        &self,
        server: &Arc<ServerShared>,
        snap: &metrics::Snapshot,
        now: &Totals,
        last: &Totals,
    ) -> Value {
        let by_ns = snap.sockets_by_namespace();
        let namespaces: Vec<Value> = server
            .namespace_names()
            .iter()
            .map(|n| json!({ "name": &**n, "socketsCount": by_ns.get(&**n).copied().unwrap_or(0) }))
            .collect();
        // The reference counts per second as things happen; the counters are read every
        // 2 s, so each interval's growth is one entry stamped with the current second.
        let second = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() * 1000)
            .unwrap_or(0);
        let mut events = Vec::new();
        let mut push = |kind: &str, sub: Option<&str>, count: u64| {
            if count > 0 {
                let mut e = json!({ "timestamp": second, "type": kind, "count": count });
                if let (Some(sub), Value::Object(m)) = (sub, &mut e) {
                    m.insert("subType".into(), json!(sub));
                }
                events.push(e);
            }
        };
        push("rawConnection", None, now.opened.saturating_sub(last.opened));
        for (reason, n) in &now.closed {
            let before = last.closed.get(reason).copied().unwrap_or(0);
            push("rawDisconnection", Some(reason), n.saturating_sub(before));
        }
        push("packetsIn", None, now.packets_in.saturating_sub(last.packets_in));
        push("packetsOut", None, now.packets_out.saturating_sub(last.packets_out));
        push("bytesIn", None, now.bytes_in.saturating_sub(last.bytes_in));
        push("bytesOut", None, now.bytes_out.saturating_sub(last.bytes_out));
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": snap.clients(),
            "pollingClientsCount": snap.polling_clients(),
            "aggregatedEvents": events,
            "namespaces": namespaces,
        })
    }

    fn set_admin_data(&self, socket: &Socket, transport: Option<&str>) {
        let mut data = match socket.data() {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            // Data that is not an object has no room for `_admin`: left as it is.
            _ => return,
        };
        let entry = data.entry("_admin").or_insert_with(|| json!({}));
        if let Value::Object(a) = entry {
            let id = socket.0.conn.sid;
            a.insert("clientId".into(), json!(&id.as_str()[..id.as_str().len().min(12)]));
            if let Some(t) = transport {
                a.insert("transport".into(), json!(t));
            }
        }
        socket.set_data(Value::Object(data));
    }

    fn is_admin(&self, socket: &Socket) -> bool {
        Arc::ptr_eq(&socket.0.nsp, &self.nsp)
    }
}

impl Watch for Admin {
    fn connected(&self, socket: &Socket) {
        self.set_admin_data(socket, socket.transport_name());
        if self.watching() {
            let s = serialize_local(socket);
            self.tell("socket_connected", args(vec![s, now()]));
        }
    }

    fn upgraded(&self, socket: &Socket) {
        self.set_admin_data(socket, Some("websocket"));
        if self.watching() {
            let update = json!({ "id": socket.id(), "nsp": socket.ns(), "transport": "websocket" });
            self.tell("socket_updated", args(vec![update]));
        }
    }

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        let fields = vec![json!(socket.ns()), json!(socket.id()), json!(reason.as_str()), now()];
        self.tell("socket_disconnected", args(fields));
    }

    fn event_in(&self, socket: &Socket, event: &str, a: &Args) {
        if !self.is_admin(socket) {
            self.tell("event_received", traffic(socket, event, a));
        }
    }

    fn event_out(&self, socket: &Socket, event: &str, a: &Args) {
        if !self.is_admin(socket) {
            self.tell("event_sent", traffic(socket, event, a));
        }
    }
}

/// `(nsp, id, [event, ...args], timestamp)`.
fn traffic(socket: &Socket, event: &str, a: &Args) -> Args {
    let mut list = Vec::with_capacity(a.len() + 1);
    list.push(json!(event));
    list.extend(a.values().iter().cloned());
    args(vec![json!(socket.ns()), json!(socket.id()), Value::Array(list), now()])
}

fn args(values: Vec<Value>) -> Args {
    Args::from_parts(values, Vec::new(), Default::default())
}

/// The counters the aggregated events are the growth of.
#[derive(Default)]
struct Totals {
    opened: u64,
    closed: HashMap<String, u64>,
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Totals {
    fn of(snap: &metrics::Snapshot) -> Totals {
        let t = snap.traffic();
        Totals {
            opened: t.opened,
            closed: t.closed.into_iter().map(|(r, n)| (r.to_owned(), n)).collect(),
            packets_in: t.packets_in,
            packets_out: t.packets_out,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
        }
    }
}

/// A socket of this server, on its shard, as the UI shows it.
fn serialize_local(socket: &Socket) -> Value {
    let rooms = socket.rooms();
    serialize(socket.id(), socket.ns(), socket.data(), socket.handshake().to_json(), &rooms)
}

/// A socket as the reference's `serialize` shapes it: `_admin` taken out of its data into
/// `clientId` and `transport`, and the handshake without its `auth`.
fn serialize(id: &str, nsp: &str, data: Value, handshake: Value, rooms: &[Arc<str>]) -> Value {
    let mut data = data;
    let admin = match &mut data {
        Value::Object(m) => m.remove("_admin"),
        _ => None,
    };
    let data = if data.is_null() { json!({}) } else { data };
    let field = |k: &str| admin.as_ref().and_then(|a| a.get(k)).cloned().unwrap_or(Value::Null);
    let h = |k: &str| handshake.get(k).cloned().unwrap_or(Value::Null);
    let headers = h("headers");
    let header = |name: &str| headers.get(name).filter(|v| v.is_string()).cloned();
    let address = header("cf-connecting-ip")
        .or_else(|| header("x-forwarded-for"))
        .unwrap_or_else(|| h("address"));
    json!({
        "id": id,
        "clientId": field("clientId"),
        "transport": field("transport"),
        "nsp": nsp,
        "data": data,
        "handshake": {
            "address": address,
            "headers": headers,
            "query": h("query"),
            "issued": h("issued"),
            "secure": h("secure"),
            "time": h("time"),
            "url": h("url"),
            "xdomain": h("xdomain"),
        },
        "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
    })
}

/// Now, as JavaScript's `JSON.stringify(new Date())` writes it.
fn now() -> Value {
    let t = time::OffsetDateTime::from(SystemTime::now());
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    Value::String(t.format(&f).unwrap_or_default())
}

/// The machine's host name (`os.hostname()`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialize_moves_admin_fields_out_of_data_and_prefers_forwarded_addresses() {
        let data = json!({"user": "ann", "_admin": {"clientId": "abc", "transport": "polling"}});
        let hs = json!({
            "address": "127.0.0.1",
            "headers": {"x-forwarded-for": "10.0.0.9", "host": "h"},
            "auth": {"token": "secret"},
            "secure": false,
        });
        let s = serialize("s1", "/chat", data, hs, &[Arc::from("s1"), Arc::from("lobby")]);
        assert_eq!(s["clientId"], "abc");
        assert_eq!(s["transport"], "polling");
        assert_eq!(s["data"], json!({"user": "ann"}));
        assert_eq!(s["handshake"]["address"], "10.0.0.9");
        assert!(s["handshake"].get("auth").is_none());
        assert_eq!(s["rooms"], json!(["s1", "lobby"]));
    }

    #[test]
    fn timestamps_read_as_javascript_dates() {
        let Value::String(t) = now() else { panic!("not a string") };
        assert_eq!(t.len(), "2026-12-02T04:50:00.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn readonly_offers_no_action_and_production_no_event_log() {
        let ui = AdminUi { readonly: true, mode: AdminMode::Production, ..AdminUi::default() };
        assert_eq!(features(&ui), vec!["AGGREGATED_EVENTS"]);
        assert!(features(&AdminUi::default()).contains(&"ALL_EVENTS"));
    }

    #[test]
    fn a_password_that_is_not_a_bcrypt_hash_is_refused() {
        let io = Server::new(crate::config::Config::builder().shards(1).build().expect("config"));
        let ui = AdminUi {
            auth: Some(BasicAuth { username: "admin".into(), password: "plain".into() }),
            ..AdminUi::default()
        };
        assert_eq!(io.instrument(ui), Err(AdminError::InvalidHash));
    }
}

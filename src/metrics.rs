//! Prometheus metrics: `GET /metrics` on a listener of its own (`Config::metrics`,
//! `serve --metrics HOST:PORT`), in the text format `prometheus-client` writes (OpenMetrics).
//!
//! Counting costs the data path a plain `Cell` increment on the shard that does the work
//! (packets received and queued, broadcasts issued, disconnects by reason): no shared atomic
//! per delivery. A scrape asks every shard for its counters over the mesh (one message per
//! shard), sums them and encodes them; the gauges (connections by transport, sockets by
//! namespace) are counted by the shard from its own maps at that moment.
//!
//! `prometheus-client` (the Prometheus project's Rust client) writes the format: with a
//! [`Collector`] the values are read at scrape time, which is the shape per-shard counters
//! need (its registered metric types would be shared atomics on the data path).
//!
//! Layer: above the operators (it reads the adapter's counters and every shard's layers),
//! below `server`, which starts it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::adapter::{self, AdapterCounters};
use crate::ns::shared::ServerShared;
use crate::shard;

/// How a failure to bind the metrics address begins (`serve` shows it as it is).
pub(crate) const METRICS_LISTENER: &str = "cannot serve metrics";

/// How long a scrape waits for each shard's counters.
const SHARD_WAIT: Duration = Duration::from_secs(1);

/// The content type of what `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One shard's counters and gauges, read on that shard.
#[derive(Debug, Default)]
struct ShardReading {
    websocket: u64,
    polling: u64,
    sockets: Vec<(Arc<str>, u64)>,
    packets_received: u64,
    packets_sent: u64,
    broadcasts: u64,
    disconnects: Vec<(&'static str, u64)>,
    /// The shard's runtime busy time (tokio's `worker_total_busy_duration`).
    busy_seconds: f64,
    transport: crate::transport::counters::Reading,
    /// Replay log packets and bytes, sessions kept (all 0 with recovery off).
    recovery: (u64, u64, u64),
    /// The entries of each of the shard's tables (sessions, rooms, pending acks, the
    /// replay log's indexes...), by table name.
    tables: Vec<(&'static str, u64)>,
}

impl ShardReading {
    fn read(ctx: &shard::ShardCtx) -> ShardReading {
        let (ws, polling) = ctx.transport().sessions_by_transport();
        let ns = ctx.ns();
        let sockets = ns
            .nsps
            .borrow()
            .iter()
            .map(|(name, n)| (name.clone(), n.sockets.len() as u64))
            .collect();
        let c = &ns.counters;
        let mut tables = Vec::with_capacity(20);
        ctx.transport().table_sizes(&mut tables);
        ns.table_sizes(&mut tables);
        ShardReading {
            websocket: ws as u64,
            polling: polling as u64,
            sockets,
            packets_received: c.packets_received.get(),
            packets_sent: ctx.transport().packets_sent.get(),
            broadcasts: c.broadcasts.get(),
            disconnects: c.disconnects.borrow().iter().map(|(r, n)| (*r, *n)).collect(),
            busy_seconds: tokio::runtime::Handle::try_current()
                .map_or(0.0, |h| h.metrics().worker_total_busy_duration(0).as_secs_f64()),
            transport: crate::transport::counters::reading(),
            recovery: ctx.recovery_sizes(),
            tables,
        }
    }
}

/// Everything one scrape shows.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// By shard; `None` for a shard that did not answer within [`SHARD_WAIT`].
    shards: Vec<Option<ShardReading>>,
    volatile_dropped: u64,
    broadcasts_off_shard: u64,
    adapter: Option<AdapterCounters>,
    recovery_on: bool,
}

/// Totals of what the clients sent and got ([`Snapshot::traffic`]).
pub(crate) struct Traffic<'a> {
    /// Engine.IO sessions opened.
    pub opened: u64,
    /// Engine.IO sessions closed, by reason.
    pub closed: BTreeMap<&'a str, u64>,
    /// Socket.IO packets from clients.
    pub packets_in: u64,
    /// Socket.IO packets delivered.
    pub packets_out: u64,
    /// Bytes of the messages clients sent.
    pub bytes_in: u64,
    /// Bytes written to WebSockets.
    pub bytes_out: u64,
}

/// Reads every shard's counters (over the mesh) and the server-wide ones.
pub(crate) async fn snapshot(server: &Arc<ServerShared>) -> Snapshot {
    let mut snap = Snapshot {
        volatile_dropped: server
            .transport
            .volatile_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        broadcasts_off_shard: server.broadcasts_off_shard(),
        adapter: adapter::of(server).counters(),
        recovery_on: server.recovery().is_some(),
        shards: Vec::new(),
    };
    let Some(mesh) = server.mesh().cloned() else { return snap };
    let mut waits = Vec::with_capacity(mesh.len());
    for id in 0..mesh.len() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let m = mesh.clone();
        shard::submit_to(&mesh, id, move || {
            if let Some(ctx) = shard::current(&m) {
                let _ = tx.send(ShardReading::read(&ctx));
            }
        });
        waits.push(rx);
    }
    let deadline = tokio::time::Instant::now() + SHARD_WAIT;
    for rx in waits {
        snap.shards.push(tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok));
    }
    snap
}

impl Snapshot {
    /// The exposition text of this snapshot.
    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Engine.IO connections (the admin UI's `clientsCount`).
    pub(crate) fn clients(&self) -> u64 {
        self.sum(|r| r.websocket + r.polling)
    }

    /// Those of them on long-polling (`pollingClientsCount`).
    pub(crate) fn polling_clients(&self) -> u64 {
        self.sum(|r| r.polling)
    }

    /// Connected sockets by namespace.
    pub(crate) fn sockets_by_namespace(&self) -> BTreeMap<&str, u64> {
        self.sum_by(|r| &r.sockets)
    }

    /// What the clients sent and got so far, summed over the shards (the admin UI's
    /// aggregated events are its growth).
    pub(crate) fn traffic(&self) -> Traffic<'_> {
        Traffic {
            opened: self.sum(|r| r.transport.opened),
            closed: self.sum_by(|r| &r.transport.closed),
            packets_in: self.sum(|r| r.packets_received),
            packets_out: self.sum(|r| r.packets_sent),
            bytes_in: self.sum(|r| r.transport.read_bytes),
            bytes_out: self.sum(|r| r.transport.bytes),
        }
    }

    fn readings(&self) -> impl Iterator<Item = &ShardReading> {
        self.shards.iter().flatten()
    }

    fn sum(&self, f: impl Fn(&ShardReading) -> u64) -> u64 {
        self.readings().map(f).sum()
    }

    /// A labelled count summed over the shards (sockets by namespace, disconnects by
    /// reason, ...), in label order.
    fn sum_by<'s, K: AsRef<str> + 's>(
        &'s self,
        f: impl Fn(&'s ShardReading) -> &'s [(K, u64)],
    ) -> BTreeMap<&'s str, u64> {
        let mut out = BTreeMap::new();
        for r in self.readings() {
            for (k, n) in f(r) {
                *out.entry(k.as_ref()).or_insert(0) += n;
            }
        }
        out
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A family with one label: `name{label="k"} v` for each (k, v).
fn labelled<'a, M: EncodeMetric + 'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, M)>,
    kind: prometheus_client::metrics::MetricType,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, None, kind)?;
    for (k, m) in values {
        let labels = [(label, k)];
        m.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let ws = self.sum(|r| r.websocket) as i64;
        let polling = self.sum(|r| r.polling) as i64;
        labelled(
            &mut e,
            "shardcast_connections",
            "Open Engine.IO connections, by transport.",
            "transport",
            [("websocket", ConstGauge::new(ws)), ("polling", ConstGauge::new(polling))],
            MetricType::Gauge,
        )?;
        labelled(
            &mut e,
            "shardcast_sockets",
            "Connected sockets, by namespace.",
            "namespace",
            self.sum_by(|r| &r.sockets).into_iter().map(|(k, v)| (k, ConstGauge::new(v as i64))),
            MetricType::Gauge,
        )?;
        counter(
            &mut e,
            "shardcast_packets_received",
            "Socket.IO packets received from clients.",
            self.sum(|r| r.packets_received),
        )?;
        counter(
            &mut e,
            "shardcast_packets_sent",
            "Socket.IO packets queued for clients (a broadcast counts once per recipient).",
            self.sum(|r| r.packets_sent),
        )?;
        counter(
            &mut e,
            "shardcast_broadcasts",
            "Broadcasts issued on this server (one per namespace a broadcast targets).",
            self.sum(|r| r.broadcasts) + self.broadcasts_off_shard,
        )?;
        labelled(
            &mut e,
            "shardcast_disconnects",
            "Sockets disconnected, by disconnect reason.",
            "reason",
            self.sum_by(|r| &r.disconnects).into_iter().map(|(k, v)| (k, ConstCounter::new(v))),
            MetricType::Counter,
        )?;
        counter(
            &mut e,
            "shardcast_volatile_dropped",
            "Volatile packets dropped because their recipient was not ready.",
            self.volatile_dropped,
        )?;
        let shard_names: Vec<String> = (0..self.shards.len()).map(|i| i.to_string()).collect();
        labelled(
            &mut e,
            "shardcast_shard_connections",
            "Open Engine.IO connections, by shard.",
            "shard",
            self.shards.iter().zip(&shard_names).filter_map(|(r, id)| {
                r.as_ref().map(|r| (id.as_str(), ConstGauge::new((r.websocket + r.polling) as i64)))
            }),
            MetricType::Gauge,
        )?;
        labelled(
            &mut e,
            "shardcast_shard_busy_seconds",
            "Time each shard's runtime spent busy (not parked); its rate is the shard's busy ratio.",
            "shard",
            self.shards.iter().zip(&shard_names).filter_map(|(r, id)| {
                r.as_ref().map(|r| (id.as_str(), ConstCounter::new(r.busy_seconds)))
            }),
            MetricType::Counter,
        )?;
        counter(
            &mut e,
            "shardcast_write_syscalls",
            "WebSocket write system calls (send / sendmsg / writev); one may carry many frames.",
            self.sum(|r| r.transport.writes),
        )?;
        counter(
            &mut e,
            "shardcast_written_bytes",
            "Bytes those write system calls wrote.",
            self.sum(|r| r.transport.bytes),
        )?;
        labelled(
            &mut e,
            "shardcast_http_refused",
            "Engine.IO HTTP requests refused (handshakes included), by the reference's error \
             message (`Transport unknown`, `Session ID unknown`, `Bad handshake method`, \
             `Bad request`, `Forbidden`, `Unsupported protocol version`).",
            "reason",
            self.sum_by(|r| &r.transport.refused)
                .into_iter()
                .map(|(k, v)| (k, ConstCounter::new(v))),
            MetricType::Counter,
        )?;
        if self.recovery_on {
            // Per shard: every shard logs every broadcast (the packets' bytes are shared
            // between the logs, so a sum would overstate the memory).
            let per_shard = |f: fn(&(u64, u64, u64)) -> u64| {
                self.shards.iter().zip(&shard_names).filter_map(move |(r, id)| {
                    r.as_ref().map(|r| (id.as_str(), ConstGauge::new(f(&r.recovery) as i64)))
                })
            };
            labelled(
                &mut e,
                "shardcast_recovery_log_packets",
                "Packets in each shard's replay log (connection state recovery).",
                "shard",
                per_shard(|r| r.0),
                MetricType::Gauge,
            )?;
            labelled(
                &mut e,
                "shardcast_recovery_log_bytes",
                "Wire bytes of the packets in each shard's replay log.",
                "shard",
                per_shard(|r| r.1),
                MetricType::Gauge,
            )?;
            gauge(
                &mut e,
                "shardcast_recovery_sessions",
                "Sessions kept for clients that may come back.",
                self.sum(|r| r.recovery.2) as i64,
            )?;
        }
        let mut tables = self.sum_by(|r| &r.tables);
        if let Some(a) = self.adapter {
            tables.insert("adapter_requests", a.requests_pending);
        }
        labelled(
            &mut e,
            "shardcast_table_entries",
            "Entries of the server's internal tables, summed over the shards: sessions, links, \
             sockets, rooms and their members, acknowledgements awaited from clients, the \
             replay log and its indexes, recovery sessions, requests awaiting other servers. \
             For leak checks (a soak's tables stay flat); the names may change between \
             versions.",
            "table",
            tables.into_iter().map(|(k, v)| (k, ConstGauge::new(v as i64))),
            MetricType::Gauge,
        )?;
        gauge(
            &mut e,
            "shardcast_scrape_shards_missing",
            "Shards that did not answer this scrape within 1 s (their counts are left out).",
            self.shards.iter().filter(|r| r.is_none()).count() as i64,
        )?;
        if let Some(a) = self.adapter {
            gauge(
                &mut e,
                "shardcast_adapter_connected",
                "1 while the cluster adapter is connected to its broker.",
                i64::from(a.connected),
            )?;
            labelled(
                &mut e,
                "shardcast_adapter_messages",
                "Cluster adapter messages: published, dropped (queue full or broker away), \
                 received from other servers, and malformed (ignored).",
                "kind",
                [
                    ("published", ConstCounter::new(a.published)),
                    ("dropped", ConstCounter::new(a.dropped)),
                    ("received", ConstCounter::new(a.received)),
                    ("malformed", ConstCounter::new(a.malformed)),
                ],
                MetricType::Counter,
            )?;
            counter(
                &mut e,
                "shardcast_adapter_redis_round_trips",
                "Publishing round trips to Redis (a pipeline written and all its replies read).",
                a.round_trips,
            )?;
            let c = ConstCounter::new(a.round_trip_ns as f64 / 1e9);
            c.encode(e.encode_descriptor(
                "shardcast_adapter_redis_round_trip_seconds",
                "Their total time: over shardcast_adapter_redis_round_trips, the mean round trip.",
                None,
                c.metric_type(),
            )?)?;
            let g = ConstGauge::new(a.last_round_trip_ns as f64 / 1e9);
            g.encode(e.encode_descriptor(
                "shardcast_adapter_redis_last_round_trip_seconds",
                "The last publishing round trip to Redis.",
                None,
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The metrics listener's thread, stopped with the server.
pub(crate) struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// The bound address (useful with port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listener and waits for its thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Binds `addr` (an error here is the caller's: the address is taken or not ours) and
/// serves `/metrics` there on a thread of its own, off the shards.
pub(crate) fn start(server: &Arc<ServerShared>, addr: SocketAddr) -> std::io::Result<Running> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{METRICS_LISTENER} on {addr}: {e}"))
    };
    let listener = std::net::TcpListener::bind(addr).map_err(named)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let server = server.clone();
    let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::warn!(error = %e, "metrics listener"),
            };
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of descriptors, most likely: back off instead of spinning.
                            tracing::debug!(error = %e, "metrics accept");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(server.clone(), req));
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "metrics connection");
                    }
                });
            }
        });
    })?;
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(Running { addr, stop, thread })
}

async fn answer(
    server: Arc<ServerShared>,
    req: Request<Incoming>,
) -> Result<Response<Full<bytes::Bytes>>, std::convert::Infallible> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        let mut r = Response::new(Full::new(bytes::Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            reply(StatusCode::OK, CONTENT_TYPE, snapshot(&server).await.encode())
        }
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n".into()),
    })
}

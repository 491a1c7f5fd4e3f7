//! The Redis side of one server (a task on its shard 0): its connections (one subscriber, one publisher), kept up
//! across Redis restarts (reconnect with backoff, resubscribe every channel), the pipelined
//! publisher, and the dispatch of what arrives: broadcasts into the local fan-out, requests
//! to [`super::serve`], answers to the table of [`super::ask`].
//!
//! While Redis is away nothing waits on it: what is queued for publishing is dropped and
//! counted (logged once a second, not per message), requests in flight end with their
//! timeout, new ones fail at once, and local delivery is untouched.
//!
//! Hand-written around `redis`'s plain pub/sub and multiplexed connections rather than its
//! `ConnectionManager`: we need to know when the link is down (to drop and count instead of
//! buffering without bound, and to fail requests by name), and to resubscribe the set of
//! namespaces this server has, which grows as namespaces are created.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::ask::{self, Ask};
use super::serve;
use super::{Cmd, Pending, RedisAdapter, MAX_DEPTH};
use crate::adapter::request::{self, decode_request, decode_response};
use crate::adapter::wire;
use crate::adapter::{RequestError, Started};
use crate::broadcast;
use crate::ns::shared::ServerShared;

/// The longest pause between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first pause.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long one attempt to connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most commands one pipeline carries.
const MAX_BATCH: usize = 1024;

/// What the publisher tells the link.
enum Internal {
    /// Collect the answers of request `id` (sent before the request is published), asking
    /// how many servers subscribe to its request channel, until the deadline.
    Register { id: String, kind: ask::Kind, channel: String, deadline: tokio::time::Instant },
    /// Only the number of servers subscribed to `channel`.
    Count(String, oneshot::Sender<Result<usize, RequestError>>),
    /// `PUBSUB NUMSUB` answered for request `id`.
    Servers(String, usize),
    /// The wait of request `id` ended.
    Expire(String),
    /// Subscribe to a new namespace's channels.
    Watch(Arc<str>),
    /// Unsubscribe from a removed namespace's channels.
    Unwatch(Arc<str>),
    /// A publish failed: the connection is broken.
    PublishFailed,
}

/// Starts the Redis side on shard 0 and returns once it subscribed.
pub(super) fn start(p: Pending, server: Arc<ServerShared>) -> std::io::Result<Started> {
    let on = server.clone();
    crate::adapter::run_on_shard(&on, move |ready, stop| run(p, server, ready, stop))
}

async fn run(
    p: Pending,
    server: Arc<ServerShared>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    mut stop: oneshot::Receiver<()>,
) {
    let Pending { adapter, url, rx } = p;
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("invalid Redis URL {url}: {e}")));
            return;
        }
    };
    let (internal_tx, mut internal) = mpsc::unbounded_channel();
    let (conn_tx, conn_rx) = watch::channel(None);
    // Namespaces created from now on are watched; those that exist are subscribed first.
    let mut nsps: BTreeSet<Arc<str>> = BTreeSet::new();
    {
        let adapter = adapter.clone();
        let existing = server.watch_namespaces(Box::new(move |ns, created| {
            // Queued behind what was published before: the channel is subscribed in order.
            let name = ns.name.clone();
            let _ =
                adapter.cmds.try_send(if created { Cmd::Watch(name) } else { Cmd::Unwatch(name) });
        }));
        nsps.extend(existing.into_iter().filter(|n| n.starts_with('/')));
    }
    let ctx = Arc::new(serve::Ctx { server: server.clone(), adapter: adapter.clone() });
    tokio::spawn(publisher(rx, conn_rx, internal_tx.clone(), adapter.clone()));
    tokio::spawn(log_drops(adapter.clone()));
    let table = ask::Table::new(adapter.stats.requests_pending.clone());
    let mut link = Link { ctx, url, table, nsps, conn: None, internal: internal_tx };
    let mut ready = Some(ready);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = link.connect(&client) => c,
        };
        let (mut sink, mut stream, conn) = match connected {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!("cannot reach Redis at {}: {e}; retrying in {backoff:?}", link.url);
                let pause = tokio::time::sleep(backoff);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        () = &mut pause => break,
                        Some(msg) = internal.recv() => drop(link.handle_internal(msg, None).await),
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        link.conn = Some(conn.clone());
        let _ = conn_tx.send(Some(conn));
        link.ctx.adapter.stats.up.store(true, Ordering::Release);
        match ready.take() {
            Some(r) => drop(r.send(Ok(()))),
            None => tracing::warn!("reconnected to Redis at {}", link.url),
        }
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                // Registrations first: an answer can only follow its request's registration.
                Some(msg) = internal.recv() => {
                    if !link.handle_internal(msg, Some(&mut sink)).await {
                        break;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => link.on_message(&msg),
                    None => break,
                },
            }
        }
        link.ctx.adapter.stats.up.store(false, Ordering::Release);
        link.conn = None;
        let _ = conn_tx.send(None);
        tracing::warn!("lost the connection to Redis at {}; reconnecting", link.url);
    }
}

struct Link {
    ctx: Arc<serve::Ctx>,
    url: String,
    table: ask::Table,
    /// The namespaces whose request and response channels this server subscribes to.
    nsps: BTreeSet<Arc<str>>,
    /// The publishing connection while Redis is up (for `PUBSUB NUMSUB`).
    conn: Option<MultiplexedConnection>,
    internal: mpsc::UnboundedSender<Internal>,
}

impl Link {
    fn channels(&self, nsp: &str) -> [String; 3] {
        let a = &self.ctx.adapter;
        [
            request::request_channel(&a.key, nsp),
            request::response_channel(&a.key, nsp),
            request::specific_response_channel(&a.key, nsp, &a.uid),
        ]
    }

    /// Connects both connections and subscribes to every channel of this server.
    async fn connect(
        &self,
        client: &redis::Client,
    ) -> redis::RedisResult<(PubSubSink, PubSubStream, MultiplexedConnection)> {
        let attempt = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.psubscribe(format!("{}#*", self.ctx.adapter.key)).await?;
            for nsp in &self.nsps {
                sink.subscribe(&self.channels(nsp)).await?;
            }
            let conn =
                client.get_multiplexed_async_connection_with_config(&super::conn_config()).await?;
            Ok((sink, stream, conn))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"))),
        }
    }

    /// Handles what the publisher said; false when the connection must be remade.
    async fn handle_internal(&mut self, msg: Internal, sink: Option<&mut PubSubSink>) -> bool {
        match msg {
            // Handled in order after the subscriptions of namespaces created before: the
            // count includes this server.
            Internal::Register { id, kind, channel, deadline } => {
                self.table.insert(id.clone(), kind);
                let count = self.conn.clone().map(|c| async move { numsub(c, &channel).await });
                let (l1, l2) = (self.internal.clone(), self.internal.clone());
                ask::spawn_wait(
                    count,
                    id,
                    deadline,
                    move |id, n| drop(l1.send(Internal::Servers(id, n))),
                    move |id| drop(l2.send(Internal::Expire(id))),
                );
            }
            Internal::Count(channel, tx) => {
                let count = self.conn.clone().map(|c| async move { numsub(c, &channel).await });
                ask::spawn_count(count, tx);
            }
            Internal::Servers(id, n) => self.table.set_servers(&id, n),
            Internal::Expire(id) => self.table.expire(&id),
            Internal::Watch(nsp) => {
                if nsp.starts_with('/') && self.nsps.insert(nsp.clone()) {
                    if let Some(sink) = sink {
                        if let Err(e) = sink.subscribe(&self.channels(&nsp)).await {
                            tracing::warn!(error = %e, "redis adapter: subscribe failed");
                            return false;
                        }
                    }
                }
            }
            Internal::Unwatch(nsp) => {
                if self.nsps.remove(&nsp) {
                    if let Some(sink) = sink {
                        if let Err(e) = sink.unsubscribe(&self.channels(&nsp)).await {
                            tracing::warn!(error = %e, "redis adapter: unsubscribe failed");
                            return false;
                        }
                    }
                }
            }
            Internal::PublishFailed => return false,
        }
        true
    }

    fn on_message(&mut self, msg: &redis::Msg) {
        let stats = &self.ctx.adapter.stats;
        let raw = msg.get_payload_bytes();
        // Our own broadcast, back from Redis: skipped before it is copied or decoded.
        if msg.from_pattern() && wire::peek_uid(raw) == Some(self.ctx.adapter.uid.as_str()) {
            stats.received.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let payload = Bytes::copy_from_slice(raw);
        let channel = msg.get_channel_name();
        let ok = if msg.from_pattern() {
            self.on_broadcast(channel, &payload)
        } else if let Some(nsp) = self.request_nsp(channel) {
            match decode_request(&payload, MAX_DEPTH) {
                Ok(r) => {
                    if r.uid.as_deref() != Some(self.ctx.adapter.uid.as_str()) {
                        serve::handle(&self.ctx, nsp, r);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            decode_response(&payload, MAX_DEPTH).and_then(|r| self.table.answer_classic(r))
        };
        match ok {
            Ok(()) => stats.received.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(%channel, error = %e, "redis adapter: ignored a message");
                stats.malformed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// The namespace of a request channel (`{key}-request#{nsp}#`).
    fn request_nsp<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let key = &self.ctx.adapter.key;
        let rest = channel.strip_prefix(key.as_str())?.strip_prefix("-request#")?;
        rest.strip_suffix('#')
    }

    /// Another server's broadcast: delivered to this server's sockets.
    fn on_broadcast(&self, channel: &str, bytes: &Bytes) -> Result<(), wire::WireError> {
        let b = wire::decode_broadcast(bytes, MAX_DEPTH)?;
        let server = &self.ctx.server;
        if b.uid == self.ctx.adapter.uid {
            return Ok(());
        }
        // The packet's namespace must be the channel's (`{key}#{nsp}#...`).
        let expected = format!("{}#{}#", self.ctx.adapter.key, b.nsp);
        if !channel.starts_with(&expected) {
            return Err(wire::WireError::Shape("namespace of another channel"));
        }
        let Some(nsp) = server.existing(&b.nsp) else { return Ok(()) };
        match broadcast::encode(
            server, &nsp, &b.sel, &b.event, b.args, None, b.volatile, b.compress,
        ) {
            Ok(msg) => {
                broadcast::dispatch(server, msg);
            }
            Err(e) => tracing::debug!(error = %e, "redis adapter: refused a broadcast"),
        }
        Ok(())
    }
}

/// Publishes what the shards queue, everything waiting since the last write as one
/// pipeline; registers requests with the link before they go out.
async fn publisher(
    mut rx: mpsc::Receiver<Cmd>,
    mut conn: watch::Receiver<Option<MultiplexedConnection>>,
    link: mpsc::UnboundedSender<Internal>,
    adapter: Arc<RedisAdapter>,
) {
    let stats = &adapter.stats;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let current = conn.borrow_and_update().clone();
        let mut pipe = redis::pipe();
        let mut n = 0;
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Publish(channel, payload) => {
                    pipe.publish(channel, payload.as_ref()).ignore();
                    n += 1;
                }
                Cmd::Watch(nsp) => drop(link.send(Internal::Watch(nsp))),
                Cmd::Unwatch(nsp) => drop(link.send(Internal::Unwatch(nsp))),
                // Not commands of this protocol (no stream, no recovery).
                Cmd::Append(_)
                | Cmd::AppendThen(..)
                | Cmd::Then(_)
                | Cmd::Persist(_)
                | Cmd::KeepLive(_)
                | Cmd::DropLive(_)
                | Cmd::Take(_)
                | Cmd::Missed(_) => {}
                Cmd::Ask(a) => {
                    if current.is_none() {
                        a.kind.fail(RequestError::Unavailable("not connected to Redis".into()));
                        continue;
                    }
                    if ask_one(a, &link, &mut pipe) {
                        n += 1;
                    }
                }
            }
        }
        if n == 0 {
            continue;
        }
        let Some(mut c) = current else {
            stats.dropped.fetch_add(n, Ordering::Relaxed);
            continue;
        };
        let sent = std::time::Instant::now();
        match pipe.query_async::<()>(&mut c).await {
            Ok(()) => {
                stats.note_round_trip(sent.elapsed());
                stats.published.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(error = %e, "redis adapter: publish failed");
                let _ = link.send(Internal::PublishFailed);
            }
        }
    }
}

/// Starts request `a`: a server count is handed to the link; a request with answers is
/// registered with the link, then added to `pipe` (true).
fn ask_one(a: Ask, link: &mpsc::UnboundedSender<Internal>, pipe: &mut redis::Pipeline) -> bool {
    let Ask { request_channel, payload, request_id, wait, kind } = a;
    if let ask::Kind::Count(tx) = kind {
        let _ = link.send(Internal::Count(request_channel, tx));
        return false;
    }
    pipe.publish(&request_channel, payload.as_ref()).ignore();
    let deadline = tokio::time::Instant::now() + wait;
    let _ =
        link.send(Internal::Register { id: request_id, kind, channel: request_channel, deadline });
    true
}

/// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
async fn numsub(mut conn: MultiplexedConnection, channel: &str) -> redis::RedisResult<usize> {
    let (_, n): (String, usize) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await?;
    Ok(n)
}

/// Logs, once a second at most, how many messages could not be published.
pub(super) async fn log_drops(adapter: Arc<RedisAdapter>) {
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = adapter.stats.dropped.load(Ordering::Relaxed);
        if now > seen {
            tracing::warn!(
                "redis adapter: {} messages not published in the last second (Redis away or too slow)",
                now - seen
            );
            seen = now;
        }
    }
}

//! The classic Redis adapter, wire-compatible with `@socket.io/redis-adapter` 8.x
//! (`createAdapter(pub, sub, { key })`): shardcast servers and Node servers on one Redis
//! share their broadcasts.
//!
//! So far it carries **broadcasts** (rooms, exceptions, `volatile`, `compress`, binary):
//! each one is delivered here as by the in-process adapter and, unless `local`, published
//! once on `{key}#{nsp}#` (or `{key}#{nsp}#{room}#` for one room) in the message format of
//! [`super::wire`]; what other servers (and the emitter) publish there is delivered to this
//! server's sockets, skipping its own messages by uid. The request/response operations
//! (broadcast acks across servers, `fetch_sockets`, remote join/leave/disconnect,
//! server-side emits, `all_rooms`, `server_count`) still answer for this server alone: the
//! next step of issue 10.
//!
//! One thread per server runs the Redis side on its own runtime: one subscriber connection
//! (one pattern for every namespace) and one connection for publishing, which sends
//! everything queued since its last write as one pipeline. Shards never wait on Redis: a
//! broadcast is handed to that thread over a channel after its local delivery.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, WireBroadcast};
use super::Adapter;
use crate::broadcast::{self, BroadcastMsg};
use crate::ns::shared::ServerShared;

/// The deepest MessagePack a peer's message may nest (arguments included).
const MAX_DEPTH: usize = 1000;

/// Hears once whether the Redis side connected and subscribed (or why not).
type Ready = std::sync::mpsc::Receiver<Result<(), String>>;

/// The adapter object the operators call (any thread).
pub(crate) struct RedisAdapter {
    uid: String,
    key: String,
    publish: mpsc::UnboundedSender<(String, Bytes)>,
}

/// What `start` hands back: the adapter to install, and the Redis side to run once the
/// server's shared state exists.
pub(crate) struct Pending {
    pub(crate) adapter: Arc<RedisAdapter>,
    url: String,
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
}

/// A new adapter for `url` with channel prefix `key`; nothing is connected yet.
pub(crate) fn new(url: &str, key: &str) -> Pending {
    let (publish, rx) = mpsc::unbounded_channel();
    let uid: String = (0..8).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let adapter = Arc::new(RedisAdapter { uid, key: key.to_owned(), publish });
    Pending { adapter, url: url.to_owned(), rx }
}

impl Pending {
    /// What starts the Redis side when the server listens (and waits until subscribed).
    pub(crate) fn starter(self) -> super::Starter {
        Box::new(move |server| {
            let (stop_tx, stop_rx) = oneshot::channel();
            let (thread, ready) = self.run(server, stop_rx)?;
            match ready.recv() {
                Ok(Ok(())) => Ok(super::Started { thread, stop: stop_tx }),
                Ok(Err(e)) => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, e)),
                Err(_) => Err(std::io::Error::other("the redis adapter thread died")),
            }
        })
    }

    /// Starts the Redis thread: connects, subscribes, then says so on the returned result
    /// (the server accepts nothing before). It stops when `stop` fires.
    pub(crate) fn run(
        self,
        server: Arc<ServerShared>,
        stop: oneshot::Receiver<()>,
    ) -> std::io::Result<(JoinHandle<()>, Ready)> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new().name("redis-adapter".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(self.serve(server, ready_tx, stop));
        })?;
        Ok((handle, ready_rx))
    }

    async fn serve(
        self,
        server: Arc<ServerShared>,
        ready: std::sync::mpsc::Sender<Result<(), String>>,
        stop: oneshot::Receiver<()>,
    ) {
        let Pending { adapter, url, mut rx } = self;
        let setup = async {
            let client = redis::Client::open(url.as_str())?;
            let mut sub = client.get_async_pubsub().await?;
            sub.psubscribe(format!("{}#*", adapter.key)).await?;
            let publisher = client.get_multiplexed_async_connection().await?;
            Ok::<_, redis::RedisError>((sub, publisher))
        };
        let (sub, mut publisher) = match setup.await {
            Ok(pair) => pair,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot reach Redis at {url}: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut messages = sub.into_on_message();
        let receive = async {
            while let Some(msg) = messages.next().await {
                let bytes = Bytes::copy_from_slice(msg.get_payload_bytes());
                adapter.on_message(&server, msg.get_channel_name(), &bytes);
            }
            tracing::warn!("redis adapter: subscription ended");
        };
        let send = async {
            while let Some(first) = rx.recv().await {
                // Everything queued meanwhile goes in the same pipeline (one write).
                let mut pipe = redis::pipe();
                let mut next = Some(first);
                while let Some((channel, payload)) = next.take().or_else(|| rx.try_recv().ok()) {
                    pipe.publish(channel, payload.as_ref()).ignore();
                }
                if let Err(e) = pipe.query_async::<()>(&mut publisher).await {
                    tracing::warn!(error = %e, "redis adapter: publish failed");
                }
            }
        };
        tokio::select! {
            () = receive => {}
            () = send => {}
            _ = stop => {}
        }
    }
}

impl RedisAdapter {
    /// A message on one of our channels: another server's broadcast, delivered here.
    fn on_message(&self, server: &Arc<ServerShared>, channel: &str, bytes: &Bytes) {
        let b = match wire::decode_broadcast(bytes, MAX_DEPTH) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%channel, error = %e, "redis adapter: ignored a message");
                return;
            }
        };
        if b.uid == self.uid {
            return;
        }
        let Some(nsp) = server.existing(&b.nsp) else { return };
        match broadcast::encode(
            server, &nsp, &b.sel, &b.event, b.args, None, b.volatile, b.compress,
        ) {
            Ok(msg) => {
                broadcast::dispatch(server, msg);
            }
            Err(e) => tracing::debug!(error = %e, "redis adapter: refused a broadcast"),
        }
    }
}

impl Adapter for RedisAdapter {
    fn broadcast(&self, server: &ServerShared, msg: Arc<BroadcastMsg>, local: bool) {
        if !local {
            let wire = WireBroadcast {
                uid: self.uid.clone(),
                nsp: msg.nsp.to_string(),
                event: msg.event.to_string(),
                args: (*msg.args).clone(),
                sel: msg.sel.clone(),
                volatile: msg.volatile,
                compress: msg.compress,
            };
            let channel = wire::broadcast_channel(&self.key, &msg.nsp, &msg.sel.rooms);
            let _ = self.publish.send((channel, wire::encode_broadcast(&wire)));
        }
        broadcast::dispatch(server, msg);
    }

    // The other operations answer for this server alone (the trait's defaults) until the
    // request/response channels are carried.
}

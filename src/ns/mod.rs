//! Namespaces: their connection handlers and middlewares; sockets, acknowledgements and the
//! per-connection Socket.IO client live in the submodules.

pub mod args;
pub(crate) mod client;
pub mod socket;

use std::sync::{Arc, RwLock};

use crate::broadcast::BroadcastOperator;
use crate::error::{ConnectError, EmitError};
use crate::ns::args::IntoArgs;
use crate::ns::socket::Socket;
use crate::server::ServerShared;

/// A room name. Any `&str` or `String` converts into one.
pub type Room = Arc<str>;

pub(crate) type ConnectHandler = Arc<dyn Fn(Socket) + Send + Sync>;
pub(crate) type Middleware = Arc<dyn Fn(&Socket) -> Result<(), ConnectError> + Send + Sync>;

/// The registered state of a namespace: read on each connect, never on the message path.
pub(crate) struct NamespaceInner {
    pub name: Arc<str>,
    on_connection: RwLock<Option<ConnectHandler>>,
    middlewares: RwLock<Vec<Middleware>>,
}

impl NamespaceInner {
    pub(crate) fn new(name: Arc<str>) -> Self {
        NamespaceInner {
            name,
            on_connection: RwLock::new(None),
            middlewares: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn connect_handler(&self) -> Option<ConnectHandler> {
        self.on_connection.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs the middlewares in order; the first refusal wins.
    pub(crate) fn run_middlewares(&self, socket: &Socket) -> Result<(), ConnectError> {
        let mws = self.middlewares.read().unwrap_or_else(|p| p.into_inner()).clone();
        mws.iter().try_for_each(|mw| mw(socket))
    }
}

/// A handle on one namespace, from [`crate::Server::of`].
#[derive(Clone)]
pub struct Namespace {
    pub(crate) inner: Arc<NamespaceInner>,
    pub(crate) server: Arc<ServerShared>,
}

impl Namespace {
    /// The namespace name (`/`, `/chat`, ...).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sets the handler run for each socket that connects, after the middlewares accepted it.
    /// Register the socket's event handlers there.
    pub fn on_connection<F>(&self, handler: F) -> &Self
    where
        F: Fn(Socket) + Send + Sync + 'static,
    {
        *self.inner.on_connection.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(handler));
        self
    }

    /// Adds a middleware, run in order for each connecting socket before the connection
    /// handler; returning an error refuses the connection with a CONNECT_ERROR carrying its
    /// message and data.
    pub fn use_middleware<F>(&self, mw: F) -> &Self
    where
        F: Fn(&Socket) -> Result<(), ConnectError> + Send + Sync + 'static,
    {
        self.inner.middlewares.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(mw));
        self
    }

    /// A broadcast to the sockets of this namespace in `room`.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.server.clone(), self.inner.name.clone()).to(room)
    }

    /// Emits to every socket of this namespace, on every shard.
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        BroadcastOperator::new(self.server.clone(), self.inner.name.clone()).emit(event, args)
    }
}

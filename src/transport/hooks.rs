//! The engine's hooks, as engine.io's `allowRequest` option and its `initial_headers`,
//! `headers` and `connection_error` events: set through [`crate::Engine`] (`io.engine()`),
//! read by the HTTP front of every shard.
//!
//! Each hook is behind a lock taken for reading once per Engine.IO request, only to clone
//! an `Arc` (the requests are not the broadcast path); a hook can be set or replaced while
//! the server runs.
//!
//! Layer: transport.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use hyper::HeaderMap;

use crate::transport::request::HandshakeInfo;

/// What an `allow_request` hook answers: `Ok(())` lets the handshake go on; `Err(message)`
/// refuses it with HTTP 403 `{"code":4,"message":message}` (`"Forbidden"` when the message
/// is empty), as the reference does.
pub type AllowResult = Result<(), String>;

type AllowFn =
    dyn Fn(Arc<HandshakeInfo>) -> Pin<Box<dyn Future<Output = AllowResult>>> + Send + Sync;
type HeadersFn = dyn Fn(&mut HeaderMap, &HandshakeInfo) + Send + Sync;
type ErrorFn = dyn Fn(&ConnectionError) + Send + Sync;

/// A request the engine refused (engine.io's `connection_error` event).
#[derive(Debug, Clone)]
pub struct ConnectionError {
    /// The reference's code: 0 `Transport unknown`, 1 `Session ID unknown`, 2 `Bad
    /// handshake method`, 3 `Bad request`, 4 `Forbidden`, 5 `Unsupported protocol version`.
    pub code: u8,
    /// The code's message (as the reference's `err.message`).
    pub message: &'static str,
    /// What was wrong, in words (the reference's `err.context`): the transport asked for,
    /// the sid, the `allow_request` hook's message, ...
    pub context: String,
    /// The request's method.
    pub method: String,
    /// The request's headers, address, URL and query.
    pub request: Arc<HandshakeInfo>,
}

/// The hooks of one server.
#[derive(Default)]
pub(crate) struct Hooks {
    allow_request: RwLock<Option<Arc<AllowFn>>>,
    initial_headers: RwLock<Option<Arc<HeadersFn>>>,
    headers: RwLock<Option<Arc<HeadersFn>>>,
    connection_error: RwLock<Option<Arc<ErrorFn>>>,
}

fn read<T: ?Sized>(slot: &RwLock<Option<Arc<T>>>) -> Option<Arc<T>> {
    slot.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T: ?Sized>(slot: &RwLock<Option<Arc<T>>>, v: Arc<T>) {
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(v);
}

impl Hooks {
    pub(crate) fn set_allow_request<F, Fut>(&self, f: F)
    where
        F: Fn(Arc<HandshakeInfo>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AllowResult> + 'static,
    {
        write(&self.allow_request, Arc::new(move |req| Box::pin(f(req)) as Pin<Box<_>>));
    }

    pub(crate) fn set_initial_headers(
        &self,
        f: impl Fn(&mut HeaderMap, &HandshakeInfo) + Send + Sync + 'static,
    ) {
        write(&self.initial_headers, Arc::new(f));
    }

    pub(crate) fn set_headers(
        &self,
        f: impl Fn(&mut HeaderMap, &HandshakeInfo) + Send + Sync + 'static,
    ) {
        write(&self.headers, Arc::new(f));
    }

    pub(crate) fn set_connection_error(
        &self,
        f: impl Fn(&ConnectionError) + Send + Sync + 'static,
    ) {
        write(&self.connection_error, Arc::new(f));
    }

    /// Runs the `allow_request` hook, if any (on the shard serving the request: it may
    /// await without holding anything else up).
    pub(crate) async fn allow(&self, req: &Arc<HandshakeInfo>) -> AllowResult {
        match read(&self.allow_request) {
            Some(f) => f(req.clone()).await,
            None => Ok(()),
        }
    }

    /// Whether a hook needs the request described (so it is copied only then).
    pub(crate) fn wants_request(&self) -> bool {
        read(&self.headers).is_some()
            || read(&self.initial_headers).is_some()
            || read(&self.connection_error).is_some()
    }

    /// The headers hooks on a response: `initial_headers` first for a handshake, then
    /// `headers`.
    pub(crate) fn on_headers(&self, headers: &mut HeaderMap, req: &HandshakeInfo, initial: bool) {
        if initial {
            if let Some(f) = read(&self.initial_headers) {
                f(headers, req);
            }
        }
        if let Some(f) = read(&self.headers) {
            f(headers, req);
        }
    }

    pub(crate) fn on_error(&self, e: &ConnectionError) {
        if let Some(f) = read(&self.connection_error) {
            f(e);
        }
    }
}

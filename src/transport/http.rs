//! The HTTP/1.1 front of one TCP connection: Engine.IO request routing (handshake, polling
//! GET/POST, WebSocket upgrade), the reference server's error answers, CORS, and the files
//! of `--static` (`files`) on the other paths.
//!
//! A request that names a session is served by the shard that owns it (the shard is
//! carried in the sid): polling requests are handed over as commands, an upgraded WebSocket
//! is detached from this shard's reactor and adopted by the owner.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What a request body must be for the engine: hyper's own (`Incoming`, from our acceptor)
/// or a framework's (axum's `Body`, through [`crate::Server::service`]).
pub(crate) trait EngineBody:
    hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}
impl<B> EngineBody for B where
    B: hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + 'static
{
}
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::config::{Config, CorsOrigins};
use crate::error::DisconnectReason;
use crate::proto::eio::PayloadDecoder;
use crate::proto::sid::Sid;
use crate::shard::{self, ShardCtx};
use crate::transport::hooks::ConnectionError;
use crate::transport::local::ConnGuard;
use crate::transport::request::{ConnInfo, Headers, Pairs};
use crate::transport::session::{self, Cmd, Ws};
use crate::transport::ws::{self, WsConfig, WsReader, WsWriter};
use crate::transport::EioError;
use crate::transport::{compress, files};

type Resp = Response<Full<Bytes>>;
/// The connection slot, taken out when an upgraded WebSocket leaves this HTTP connection.
type GuardCell = Rc<RefCell<Option<ConnGuard>>>;

/// Serves one accepted TCP connection on this shard.
pub(crate) async fn serve(
    ctx: Rc<ShardCtx>,
    stream: std::net::TcpStream,
    addr: SocketAddr,
    guard: ConnGuard,
    secure: bool,
) {
    if let Err(e) = stream.set_nonblocking(true) {
        tracing::debug!(error = %e, "cannot set accepted socket non-blocking");
        return;
    }
    let tcp = match TcpStream::from_std(stream) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "cannot register accepted socket");
            return;
        }
    };
    let guard: GuardCell = Rc::new(RefCell::new(Some(guard)));
    let max_head = ctx.config().max_http_header_size;
    let svc = service_fn(move |req| {
        let (ctx, guard) = (ctx.clone(), guard.clone());
        async move { Ok::<_, Infallible>(handle(ctx, req, addr, guard, secure).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // Bounds the read buffer (a request head past it is answered 431): a client sending
        // endless headers cannot grow it, and its memory is small enough to return.
        .max_buf_size(max_head)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%addr, error = %e, "http connection ended with an error");
    }
}

async fn handle<B: EngineBody>(
    ctx: Rc<ShardCtx>,
    req: Request<B>,
    addr: SocketAddr,
    guard: GuardCell,
    secure: bool,
) -> Resp {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let hooks = &ctx.transport().shared.hooks;
    // The request as the engine's hooks see it, copied only when one is set.
    let seen = (req.uri().path().starts_with(ctx.config().path.as_str()) && hooks.wants_request())
        .then(|| {
            let q = parse_query(req.uri().query());
            let initial = q.sid.is_none();
            let info = Arc::new(ConnInfo {
                headers: Headers::from_header_map(req.headers()),
                url: req.uri().path_and_query().map_or_else(String::new, |p| p.to_string()),
                query: Pairs::new(q.all),
                address: addr,
                issued: SystemTime::now(),
                secure,
            });
            (info, initial, req.method().to_string())
        });
    let mut resp = route(&ctx, req, addr, guard, secure).await;
    if let Some((info, initial, method)) = seen {
        if let Some(r) = resp.extensions_mut().remove::<Refused>() {
            hooks.on_error(&ConnectionError {
                code: r.0.code(),
                message: r.0.message(),
                context: r.1,
                method,
                request: info,
            });
        } else if resp.extensions().get::<EngineAnswer>().is_some() {
            hooks.on_headers(resp.headers_mut(), &info, initial);
        }
    }
    apply_cors(ctx.config(), origin.as_ref(), &mut resp);
    resp
}

/// Serves one request of a connection another server accepted (an application's hyper or
/// axum server, through `Server::service`): it runs on a shard as the acceptor's requests
/// do, the sid's shard when it names one, the next in turn for a handshake; a WebSocket it
/// upgrades leaves that server's runtime for the shard (so the connection is the shard's
/// from then on). `None` when the server is not running or at `max_connections`.
pub(crate) async fn serve_request<B: EngineBody>(
    mesh: Arc<crate::shard::ShardMesh>,
    shared: Arc<crate::transport::local::Shared>,
    req: Request<B>,
    addr: SocketAddr,
    turn: usize,
) -> Resp {
    let sid_shard = parse_query(req.uri().query())
        .sid
        .and_then(|s| Sid::parse(&s))
        .map(|s| s.shard() as usize)
        .filter(|&s| s < mesh.len());
    let target = sid_shard.unwrap_or(turn % mesh.len().max(1));
    let Some(guard) = ConnGuard::acquire(&shared) else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    };
    let (tx, rx) = oneshot::channel();
    let m = mesh.clone();
    shard::submit_to(&mesh, target, move || {
        let Some(ctx) = shard::current(&m) else { return };
        let guard: GuardCell = Rc::new(RefCell::new(Some(guard)));
        tokio::task::spawn_local(async move {
            let _ = tx.send(handle(ctx, req, addr, guard, false).await);
        });
    });
    rx.await.unwrap_or_else(|_| plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"))
}

/// Marks a response as an Engine.IO transport's (the headers hooks run on it).
#[derive(Clone, Copy)]
struct EngineAnswer;

/// Marks a refusal (the `connection_error` hook runs on it): the error and its context.
#[derive(Clone)]
struct Refused(EioError, String);

/// The query parameters Engine.IO looks at, plus all of them for the handshake.
pub(crate) struct Query {
    pub(crate) eio: Option<String>,
    pub(crate) transport: Option<String>,
    pub(crate) sid: Option<String>,
    pub(crate) all: Vec<(String, String)>,
}

pub(crate) fn parse_query(q: Option<&str>) -> Query {
    let all: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Query { eio: get("EIO"), transport: get("transport"), sid: get("sid"), all }
}

fn is_ws_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

async fn route<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    addr: SocketAddr,
    guard: GuardCell,
    secure: bool,
) -> Resp {
    let cfg = ctx.config();
    if !req.uri().path().starts_with(cfg.path.as_str()) {
        if let Some(root) = &cfg.static_dir {
            let served = files::serve(root, req.method(), req.uri().path(), req.headers()).await;
            if let Some(resp) = served {
                return resp;
            }
        }
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    if req.method() == Method::OPTIONS && cfg.cors.is_some() {
        return preflight(&req);
    }
    let q = parse_query(req.uri().query());
    let transport = match q.transport.as_deref() {
        Some("polling") if cfg.polling => Transport::Polling,
        Some("websocket") if cfg.websocket => Transport::WebSocket,
        other => {
            let t = other.unwrap_or_default();
            return refuse(EioError::TransportUnknown, format!("transport {t:?}"), None);
        }
    };
    let upgrade = is_ws_upgrade(&req);
    if upgrade != (transport == Transport::WebSocket) {
        return eio_error(EioError::BadRequest);
    }
    let jsonp = crate::transport::jsonp::index(q.all.iter().map(|(k, v)| (&**k, &**v)));
    match q.sid.as_deref() {
        Some(sid) => {
            // An unparsable sid, or one naming a shard this server does not have, is unknown.
            let Some(sid) = Sid::parse(sid).filter(|s| (s.shard() as usize) < ctx.mesh.len())
            else {
                return refuse(EioError::UnknownSid, format!("sid {sid:?}"), None);
            };
            match (transport, req.method().clone()) {
                (Transport::WebSocket, _) => upgrade_session(ctx, req, sid, guard).await,
                (Transport::Polling, Method::GET) => {
                    let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
                    poll_get(ctx, sid, accept, jsonp).await
                }
                (Transport::Polling, Method::POST) => poll_post(ctx, req, sid, jsonp).await,
                _ => eio_error(EioError::BadRequest),
            }
        }
        None => {
            if req.method() != Method::GET {
                return eio_error(EioError::BadHandshakeMethod);
            }
            let eio = q.eio.clone();
            let info = Arc::new(ConnInfo {
                headers: Headers::from_header_map(req.headers()),
                url: req.uri().path_and_query().map_or_else(String::new, |p| p.to_string()),
                query: Pairs::new(q.all),
                address: addr,
                issued: SystemTime::now(),
                secure,
            });
            // As the reference: the hook runs before the protocol version is looked at.
            if let Err(message) = ctx.transport().shared.hooks.allow(&info).await {
                let shown = (!message.is_empty()).then_some(message.as_str());
                return refuse(EioError::Forbidden, message.clone(), shown);
            }
            // As the reference: `EIO=4` is protocol 4; anything else (a missing one too) is
            // protocol 3, served only when allowed.
            let eio3 = eio.as_deref() != Some("4");
            if eio3 && !cfg.allow_eio3 {
                let v = eio.unwrap_or_default();
                return refuse(EioError::UnsupportedProtocolVersion, format!("EIO {v:?}"), None);
            }
            let info = Arc::unwrap_or_clone(info);
            match transport {
                Transport::Polling => {
                    let sid = session::spawn(ctx, info, None, eio3);
                    let mut body = session::open_packet(ctx, sid, true);
                    if eio3 {
                        let mut p = crate::proto::eio3::PayloadEncoder::text();
                        p.push_encoded_text(&body);
                        body = p.finish();
                    }
                    if let Some(j) = &jsonp {
                        body = crate::transport::jsonp::wrap(j, &body);
                    }
                    let mut r = text_response(body);
                    if let Some(c) = &cfg.cookie {
                        if let Ok(v) = HeaderValue::from_str(&c.serialize(sid.as_ref())) {
                            r.headers_mut().insert(header::SET_COOKIE, v);
                        }
                    }
                    r
                }
                Transport::WebSocket => open_websocket(ctx, req, info, guard, eio3),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket,
}

/// Sends a command to session `sid` on its shard and waits for the reply; an unknown sid
/// (or one that closed meanwhile) is `UnknownSid`.
async fn ask_session<T: Send + 'static>(
    ctx: &Rc<ShardCtx>,
    sid: Sid,
    make: impl FnOnce(oneshot::Sender<T>) -> Cmd + Send + 'static,
) -> Result<T, EioError> {
    let (tx, rx) = oneshot::channel();
    let mesh = ctx.mesh.clone();
    shard::submit_to(&ctx.mesh, sid.shard() as usize, move || {
        let Some(owner) = shard::current(&mesh) else { return };
        owner.transport().send_cmd(&sid, make(tx));
    });
    rx.await.map_err(|_| EioError::UnknownSid)
}

/// Tells a session to close, on its shard.
fn close_session(ctx: &Rc<ShardCtx>, sid: Sid, reason: DisconnectReason) {
    let mesh = ctx.mesh.clone();
    shard::submit_to(&ctx.mesh, sid.shard() as usize, move || {
        if let Some(owner) = shard::current(&mesh) {
            owner.transport().send_cmd(&sid, Cmd::Close(reason));
        }
    });
}

async fn poll_get(
    ctx: &Rc<ShardCtx>,
    sid: Sid,
    accept: Option<HeaderValue>,
    jsonp: Option<String>,
) -> Resp {
    let mut polled = match ask_session(ctx, sid, Cmd::PollGet).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => return eio_error(e),
    };
    // A JSONP session's payloads are text (it asked for base64 binary).
    if let (Some(j), false) = (&jsonp, polled.binary) {
        polled.body = crate::transport::jsonp::wrap(j, &polled.body);
    }
    let cfg = ctx.config();
    let coding = (cfg.http_compression
        && polled.compress
        && polled.body.len() >= cfg.http_compression_threshold)
        .then(|| compress::negotiate(accept.as_ref().and_then(|v| v.to_str().ok())))
        .flatten();
    // Compressed here, on the shard serving the request, not on the session's.
    if let Some((coding, body)) =
        coding.and_then(|c| Some((c, compress::compress(&polled.body, c)?)))
    {
        let mut r = text_response(body);
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
        if polled.binary {
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        }
        return r;
    }
    if polled.binary {
        let mut r = text_response(polled.body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        return r;
    }
    text_response(polled.body)
}

async fn poll_post<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    sid: Sid,
    jsonp: Option<String>,
) -> Resp {
    let max = ctx.config().max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        close_session(ctx, sid, DisconnectReason::TransportError);
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    }
    let eio3 = match ask_session(ctx, sid, Cmd::PollPostBegin).await {
        Ok(Ok(v3)) => v3,
        Ok(Err(e)) | Err(e) => return eio_error(e),
    };
    if jsonp.is_some() {
        return poll_post_jsonp(ctx, req, sid, max, eio3).await;
    }
    if eio3 {
        return poll_post_v3(ctx, req, sid, max).await;
    }
    let mut decoder = PayloadDecoder::new(max);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            close_session(ctx, sid, DisconnectReason::TransportError);
            return eio_error(EioError::BadRequest);
        };
        if let Some(chunk) = frame.data_ref() {
            if let Err(e) = decoder.feed(chunk) {
                return refuse_payload(ctx, sid, e);
            }
        }
    }
    let packets = match decoder.finish() {
        Ok(p) => p,
        Err(e) => return refuse_payload(ctx, sid, e),
    };
    post_packets(ctx, sid, packets).await
}

/// An Engine.IO v3 POST body: length-prefixed, so it is read whole (at most `max` bytes)
/// and then decoded; `application/octet-stream` is the binary payload form, anything else
/// text, as the reference decides.
async fn poll_post_v3<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    sid: Sid,
    max: usize,
) -> Resp {
    let binary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    let buf = match read_body(ctx, req, sid, max).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let decoded = if binary {
        crate::proto::eio3::decode_binary_payload(&buf, max)
    } else {
        crate::proto::eio3::decode_payload(&buf, max)
    };
    match decoded {
        Ok(packets) => post_packets(ctx, sid, packets).await,
        Err(e) => refuse_payload(ctx, sid, e),
    }
}

/// A POST body read whole, at most `max` bytes (else the session is closed and the answer
/// is the error's).
async fn read_body<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    sid: Sid,
    max: usize,
) -> Result<Bytes, Resp> {
    let mut buf = bytes::BytesMut::new();
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            close_session(ctx, sid, DisconnectReason::TransportError);
            return Err(eio_error(EioError::BadRequest));
        };
        if let Some(chunk) = frame.data_ref() {
            if buf.len() + chunk.len() > max {
                let e = crate::proto::eio::DecodeError::PayloadTooLarge { limit: max };
                return Err(refuse_payload(ctx, sid, e));
            }
            buf.extend_from_slice(chunk);
        }
    }
    Ok(buf.freeze())
}

/// A JSONP POST (`d=<payload>`, form-encoded, at most `max` bytes): the payload, unescaped
/// as the reference does, decoded as the session's protocol frames it; a body with no (or
/// several) `d` is ignored and answered `ok`, as there.
async fn poll_post_jsonp<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    sid: Sid,
    max: usize,
    eio3: bool,
) -> Resp {
    let raw = match read_body(ctx, req, sid, max).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(payload) = crate::transport::jsonp::unwrap(&raw) else {
        return post_packets(ctx, sid, Vec::new()).await;
    };
    let payload = Bytes::from(payload);
    let decoded = if eio3 {
        crate::proto::eio3::decode_payload(&payload, max)
    } else {
        let mut d = PayloadDecoder::new(max);
        d.feed(&payload).and_then(|()| d.finish())
    };
    match decoded {
        Ok(packets) => post_packets(ctx, sid, packets).await,
        Err(e) => refuse_payload(ctx, sid, e),
    }
}

/// Hands a POST's packets to its session and answers `ok`.
async fn post_packets(
    ctx: &Rc<ShardCtx>,
    sid: Sid,
    packets: Vec<crate::proto::eio::Packet>,
) -> Resp {
    match ask_session(ctx, sid, move |tx| Cmd::PollPost(packets, tx)).await {
        Ok(Ok(())) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=UTF-8"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.extensions_mut().insert(EngineAnswer);
            r
        }
        Ok(Err(e)) | Err(e) => eio_error(e),
    }
}

fn refuse_payload(ctx: &Rc<ShardCtx>, sid: Sid, e: crate::proto::eio::DecodeError) -> Resp {
    tracing::debug!(%sid, error = %e, "bad polling payload");
    if matches!(e, crate::proto::eio::DecodeError::PayloadTooLarge { .. }) {
        close_session(ctx, sid, DisconnectReason::TransportError);
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    }
    close_session(ctx, sid, DisconnectReason::ParseError);
    eio_error(EioError::BadRequest)
}

/// Validates the WebSocket handshake headers and builds the 101 answer, negotiating
/// per-message deflate when the server offers it.
fn switching_protocols<B>(cfg: &Config, req: &Request<B>) -> Option<(Resp, WsConfig)> {
    let version_ok = req.headers().get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    if !version_ok {
        return None;
    }
    let accept = derive_accept_key(key.as_bytes());
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.extensions_mut().insert(EngineAnswer);
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).ok()?);
    let mut ws_cfg = WsConfig { max_message_size: cfg.max_payload, deflate: None };
    if cfg.per_message_deflate {
        let offers = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        if let Some((deflate, answer)) = ws::negotiate_deflate(offers) {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(&answer).ok()?);
            ws_cfg.deflate = Some(deflate);
        }
    }
    Some((r, ws_cfg))
}

/// Waits for hyper to hand over the upgraded connection and takes it back as a raw TCP
/// stream plus whatever the client sent after its request.
async fn take_upgraded<B: EngineBody>(req: Request<B>) -> Option<(TcpStream, Vec<u8>)> {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some((parts.io.into_inner(), parts.read_buf.to_vec())),
        Err(other) => match relay_upgraded(other).await {
            Ok(tcp) => Some((tcp, Vec::new())),
            Err(e) => {
                tracing::debug!(error = %e, "cannot relay an upgraded connection");
                None
            }
        },
    }
}

/// A WebSocket upgraded by another server whose connection is not a plain `TcpStream`
/// (`axum::serve` wraps it in hyper-util's buffer): relayed through a loopback TCP
/// connection of this shard, as a TLS connection is (transport/tls.rs), so the WebSocket
/// path keeps writing pre-encoded frames to a socket. The relay task runs on this shard.
async fn relay_upgraded(upgraded: hyper::upgrade::Upgraded) -> std::io::Result<TcpStream> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (mut client, (ours, _)) = (client?, accepted?);
    let _ = client.set_nodelay(true);
    let _ = ours.set_nodelay(true);
    tokio::task::spawn_local(async move {
        let mut outer = TokioIo::new(upgraded);
        let _ = tokio::io::copy_bidirectional(&mut outer, &mut client).await;
    });
    Ok(ours)
}

/// Our WebSocket over a raw TCP stream (see transport/ws/mod.rs for why it is ours). `b64`:
/// its request asked for base64 binary (Engine.IO v3).
fn websocket(tcp: TcpStream, already_read: Vec<u8>, cfg: &WsConfig, b64: bool) -> Ws {
    let (r, w) = tcp.into_split();
    Ws {
        reader: WsReader::new(r, already_read, cfg),
        writer: WsWriter::new(w),
        deflate: cfg.deflate.is_some(),
        b64,
    }
}

/// The request's query asks for base64 binary (`b64`, any non-empty value, as the reference).
fn wants_base64<B>(req: &Request<B>) -> bool {
    parse_query(req.uri().query()).all.iter().any(|(k, v)| k == "b64" && !v.is_empty())
}

/// A new session opened directly over WebSocket: it lives on this shard.
fn open_websocket<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    info: ConnInfo,
    guard: GuardCell,
    eio3: bool,
) -> Resp {
    let Some((resp, ws_cfg)) = switching_protocols(ctx.config(), &req) else {
        return eio_error(EioError::BadRequest);
    };
    let Some(guard) = guard.borrow_mut().take() else {
        return eio_error(EioError::BadRequest);
    };
    let ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let Some((tcp, rest)) = take_upgraded(req).await else { return };
        // Registered with this shard's reactor (a connection another server accepted,
        // `Server::service`, comes registered with that server's).
        let Ok(tcp) = tcp.into_std().and_then(TcpStream::from_std) else { return };
        let b64 = info.query.get("b64").is_some_and(|v| !v.is_empty());
        session::spawn(&ctx, info, Some((websocket(tcp, rest, &ws_cfg, b64), guard)), eio3);
    });
    resp
}

/// An upgrade of an existing polling session: reserved with the owner first, then the
/// upgraded socket moves to the owner's shard.
async fn upgrade_session<B: EngineBody>(
    ctx: &Rc<ShardCtx>,
    req: Request<B>,
    sid: Sid,
    guard: GuardCell,
) -> Resp {
    let Some((resp, ws_cfg)) = switching_protocols(ctx.config(), &req) else {
        return eio_error(EioError::BadRequest);
    };
    match ask_session(ctx, sid, Cmd::CanUpgrade).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => return eio_error(e),
    }
    let Some(guard) = guard.borrow_mut().take() else {
        return eio_error(EioError::BadRequest);
    };
    let mesh = ctx.mesh.clone();
    let b64 = wants_base64(&req);
    tokio::task::spawn_local(async move {
        let Some((tcp, rest)) = take_upgraded(req).await else { return };
        // Detach from this shard's reactor so the owner can register it with its own.
        let Ok(std) = tcp.into_std() else { return };
        let owner = sid.shard() as usize;
        let mesh2 = mesh.clone();
        shard::submit_to(&mesh, owner, move || {
            let Some(ctx) = shard::current(&mesh2) else { return };
            let Ok(tcp) = TcpStream::from_std(std) else { return };
            let ws = websocket(tcp, rest, &ws_cfg, b64);
            ctx.transport().send_cmd(&sid, Cmd::Adopt(Box::new(ws), guard));
        });
    });
    resp
}

/// A polling GET's answer (`Cache-Control: no-store`, as the reference's).
fn text_response(body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.extensions_mut().insert(EngineAnswer);
    r
}

fn plain(status: StatusCode, msg: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r
}

/// The reference server's error answer: `{"code":N,"message":"..."}`.
fn eio_error(e: EioError) -> Resp {
    refuse(e, String::new(), None)
}

/// [`eio_error`] with what was wrong (for the `connection_error` hook) and, for
/// `allow_request`'s refusals, the message the answer shows instead of the code's.
fn refuse(e: EioError, context: String, shown: Option<&str>) -> Resp {
    crate::transport::counters::refused(e.message());
    let body = serde_json::json!({"code": e.code(), "message": shown.unwrap_or(e.message())});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() =
        if e == EioError::Forbidden { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.extensions_mut().insert(Refused(e, context));
    r
}

fn preflight<B>(req: &Request<B>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
    );
    if let Some(v) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        h.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// Adds the CORS headers the configuration calls for (none when CORS is off, or the origin
/// is not allowed: the browser then refuses the response, as with the `cors` package).
fn apply_cors(cfg: &Config, origin: Option<&HeaderValue>, resp: &mut Resp) {
    let Some(cors) = &cfg.cors else { return };
    let h = resp.headers_mut();
    let allow = match (&cors.origins, origin) {
        (CorsOrigins::Any, Some(o)) if cors.credentials => Some(o.clone()),
        (CorsOrigins::Any, _) => Some(HeaderValue::from_static("*")),
        (CorsOrigins::List(list), Some(o)) => {
            o.to_str().ok().filter(|o| list.iter().any(|a| a == o)).map(|_| o.clone())
        }
        (CorsOrigins::List(_), None) => None,
    };
    let Some(allow) = allow else { return };
    if allow != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if cors.credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

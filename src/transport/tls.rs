//! TLS (`serve --tls-cert FILE --tls-key FILE`): rustls through tokio-rustls, terminated on
//! the shard the connection was dealt to, in front of the plain HTTP front.
//!
//! The WebSocket data path writes pre-encoded frames straight to the socket (one `sendmsg`
//! for many frames, the same bytes for every recipient), which TLS cannot share: each
//! connection's bytes are encrypted for it alone. Rather than give that path a second,
//! encrypting variant, a TLS connection is relayed: its decrypted side is a loopback TCP
//! connection to a listener of this shard, which the HTTP front serves as any other (with
//! the client's real address and `secure: true`). The cost, per TLS client: the TLS work,
//! one copy through the loopback, and three descriptors instead of one (docs/operations.md,
//! "TLS"). A deployment with tens of thousands of TLS clients per process terminates TLS in
//! front of the server instead.
//!
//! The certificate and key are read again on [`Tls::reload`] (SIGHUP for `serve`); new
//! connections get the new pair, established ones keep theirs.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ahash::AHashMap;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::shard::ShardCtx;
use crate::transport::local::ConnGuard;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS settings: the files and the configuration read from them last.
pub(crate) struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads `files`; the error names the file at fault.
    pub(crate) fn load(files: &TlsFiles) -> io::Result<Tls> {
        let config = read(files)?;
        Ok(Tls { files: files.clone(), current: RwLock::new(Arc::new(config)) })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub(crate) fn reload(&self) -> io::Result<()> {
        let config = Arc::new(read(&self.files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn read(files: &TlsFiles) -> io::Result<ServerConfig> {
    let bad = |path: &Path, what: String| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {what}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in it".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.key, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// This shard's end of the relays: the loopback listener their decrypted sides connect to,
/// and who is connecting from which port.
struct Inner {
    addr: SocketAddr,
    pending: Rc<RefCell<AHashMap<u16, (SocketAddr, ConnGuard)>>>,
}

thread_local! {
    // Per shard thread (each shard is a thread of its own), made on first use.
    static INNER: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// This shard's relay listener, and its accept task, started on first use.
fn inner(ctx: &Rc<ShardCtx>) -> io::Result<Rc<Inner>> {
    if let Some(i) = INNER.with(|i| i.borrow().clone()) {
        return Ok(i);
    }
    let std = std::net::TcpListener::bind("127.0.0.1:0")?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let inner = Rc::new(Inner { addr: listener.local_addr()?, pending: Rc::default() });
    INNER.with(|i| *i.borrow_mut() = Some(inner.clone()));
    let (ctx, pending) = (ctx.clone(), inner.pending.clone());
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Only a relay of this shard, registered before it connected, is served.
            let Some((client, guard)) = pending.borrow_mut().remove(&from.port()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Ok(std) = stream.into_std() else { continue };
            tokio::task::spawn_local(crate::transport::http::serve(
                ctx.clone(),
                std,
                client,
                guard,
                true,
            ));
        }
    });
    Ok(inner)
}

/// Serves one accepted TCP connection over TLS: the handshake, then the relay between it
/// and a loopback connection the HTTP front serves.
pub(crate) async fn serve(
    ctx: Rc<ShardCtx>,
    tls: Arc<Tls>,
    stream: std::net::TcpStream,
    addr: SocketAddr,
    guard: ConnGuard,
) {
    if let Err(e) = relay(&ctx, &tls, stream, addr, guard).await {
        tracing::debug!(%addr, error = %e, "TLS connection ended");
    }
}

async fn relay(
    ctx: &Rc<ShardCtx>,
    tls: &Tls,
    stream: std::net::TcpStream,
    addr: SocketAddr,
    guard: ConnGuard,
) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let tcp = TcpStream::from_std(stream)?;
    let accept = tls.acceptor().accept(tcp);
    let mut outer = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let inner = inner(ctx)?;
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    let port = socket.local_addr()?.port();
    inner.pending.borrow_mut().insert(port, (addr, guard));
    let mut plain = match socket.connect(inner.addr).await {
        Ok(s) => s,
        Err(e) => {
            inner.pending.borrow_mut().remove(&port);
            return Err(e);
        }
    };
    let _ = plain.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut outer, &mut plain).await?;
    Ok(())
}

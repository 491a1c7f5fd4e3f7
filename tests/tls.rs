//! TLS (`serve --tls-cert FILE --tls-key FILE`) with certificates this test makes (rcgen: a
//! CA and a leaf for 127.0.0.1 and localhost): the official client over https:// and wss://
//! in every transport mode (its handshakes secure, from the client's own address), a plain
//! HTTP request on the TLS port refused while the rest go on, and SIGHUP reading a new pair
//! (a bad pair leaves the old one in use).

#[path = "common/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A CA, and a leaf for 127.0.0.1 and localhost it signed, written to `dir` as cert.pem and
/// key.pem; returns the CA's PEM.
fn issue(dir: &Path, name: &str) -> String {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    ca_cert.pem()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-tls-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serve_tls(dir: &Path, extra: &[&str]) -> (Child, u16) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.args(["serve", "--port", "0", "--shards", "2", "--tls-cert"])
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .args(extra);
    process::start(cmd)
}

/// A polling handshake over TLS trusting only `ca_pem`: the response, or the error.
async fn tls_handshake(port: u16, ca_pem: &str) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp =
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn official_client_over_https_and_wss() {
    let dir = temp_dir("client");
    let ca = issue(&dir, "client");
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    let (mut server, port) = serve_tls(&dir, &["--admin-ui"]);
    // Plain HTTP on the TLS port gets no Engine.IO answer; the server goes on.
    let plain = process::try_handshake(port).unwrap_or_default();
    assert!(!plain.contains("\"sid\""), "plain HTTP answered on the TLS port: {plain}");
    let out = Command::new("node")
        .arg("tls-client.mjs")
        .arg(format!("https://127.0.0.1:{port}"))
        .current_dir(process::interop_dir())
        .env("NODE_EXTRA_CA_CERTS", dir.join("ca.pem"))
        .output()
        .expect("node is needed (Node.js 20+)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("tls ok"), "{stdout}\n{stderr}");
    process::signal(&server, "-TERM");
    assert!(process::wait_exit(&mut server, Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "current_thread")]
async fn sighup_reads_a_new_pair_and_a_bad_one_leaves_the_old() {
    let dir = temp_dir("reload");
    let first = issue(&dir, "first");
    let (mut server, port) = serve_tls(&dir, &[]);
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let hs = tls_handshake(port, &first).await.expect("TLS with the first CA");
    assert!(hs.contains("\"sid\""), "{hs}");

    let second = issue(&dir, "second");
    process::signal(&server, "-HUP");
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("read again"), "{line}");
    let hs = tls_handshake(port, &second).await.expect("TLS with the second CA after SIGHUP");
    assert!(hs.contains("\"sid\""), "{hs}");
    assert!(tls_handshake(port, &first).await.is_err(), "the first pair is gone");

    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    process::signal(&server, "-HUP");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("reload failed") && line.contains("key.pem"), "{line}");
    let hs = tls_handshake(port, &second).await.expect("the second pair stays in use");
    assert!(hs.contains("\"sid\""), "{hs}");

    process::signal(&server, "-TERM");
    assert!(process::wait_exit(&mut server, Duration::from_secs(10)).success());
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_or_mismatched_file_is_named_at_start() {
    let dir = temp_dir("bad");
    issue(&dir, "bad");
    let run = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_shardcast"))
            .args(["serve", "--port", "0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&dir.join("nope.pem"), &dir.join("key.pem"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nope.pem"), "{err}");
    let other = temp_dir("bad-other");
    issue(&other, "other");
    let out = run(&dir.join("cert.pem"), &other.join("key.pem"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not go with"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}

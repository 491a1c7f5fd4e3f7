//! `shardcast serve` as a process: flags, the `listening on` line, signals, one-line errors,
//! and surviving the open-file limit without a busy accept loop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::{handshake, signal, start, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--shards",
        "--ping-interval",
        "--ping-timeout",
        "--max-payload",
        "--write-coalesce",
        "--write-coalesce-max",
        "--max-json-depth",
        "--redis",
        "--redis-key",
        "--redis-sharded",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_flags_give_one_line_and_non_zero_exit() {
    for args in [
        &["serve", "--bogus"][..],
        &["serve", "--port", "http"],
        &["serve", "--shards", "0"],
        &["serve", "--max-json-depth", "1"],
    ] {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with("shardcast: "), "{err:?}");
    }
}

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    let free = TcpListener::bind("127.0.0.1:0").expect("bind");
    free.local_addr().expect("addr").port()
}

/// `serve --redis` with Redis away: it says so and retries, without listening; a signal
/// meanwhile ends it cleanly.
#[test]
fn redis_away_at_start_is_retried_and_said() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines(child.stderr.take().expect("stderr"));
    let out = lines(child.stdout.take().expect("stdout"));
    let said = wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    assert!(said.contains(&format!("cannot reach Redis at {url}")), "{said:?}");
    // it retries with backoff: a second attempt is said too
    wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    assert!(out.try_recv().is_err(), "listening before Redis answered");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// Redis coming up while `serve` retries: it subscribes, then prints `listening on` and
/// serves.
#[test]
fn redis_coming_up_late_is_joined() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines(child.stderr.take().expect("stderr"));
    let out = lines(child.stdout.take().expect("stdout"));
    wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    let redis = RedisServer::start(port);
    let line = wait_line(&out, Duration::from_secs(15), |l| l.starts_with("listening on"));
    let listen_port: u16 =
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("port");
    assert!(handshake(listen_port).contains("\"sid\""));
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    drop(redis);
}

/// The lines a child writes, as they come.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line that `pred` accepts within `within`; fails the test otherwise.
fn wait_line(rx: &mpsc::Receiver<String>, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no such line within {within:?} ({e})"),
        }
    }
}

/// A private `redis-server` on a loopback port, stopped when dropped.
struct RedisServer(std::process::Child);

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed (Redis 7)");
        RedisServer(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn port_in_use_gives_one_line_and_non_zero_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(BIN).args(["serve", "--port", &port.to_string()]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("cannot listen"), "{err:?}");
}

#[test]
fn serves_then_exits_cleanly_on_sigterm_and_sigint() {
    for sig in ["-TERM", "-INT"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--shards", "2"]);
        let (mut child, port) = start(cmd);
        let resp = handshake(port);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(r#""upgrades":["websocket"]"#), "{resp}");
        signal(&child, sig);
        let st = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "exit status after {sig}");
    }
}

//! Helpers for tests that drive processes: the `shardcast serve` binary, and the interop
//! suites' Node.js dependencies. Std only, so CLI tests need no async runtime.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tests/interop, with its npm dependencies installed from the committed lockfile
/// (`npm ci` when they are missing). Panics, failing the test, without npm.
pub fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    npm_ci(&dir);
    dir
}

/// Installs `dir`'s npm dependencies from its committed lockfile when they are missing.
/// Panics, failing the test, without npm or when `npm ci` fails.
pub fn npm_ci(dir: &std::path::Path) {
    if !dir.join("node_modules").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .expect("npm is needed for the Node.js suites (Node.js 20+)");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
}

/// Starts `cmd` and returns the child and the port from its `listening on HOST:PORT` line.
pub fn start(mut cmd: Command) -> (Child, u16) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read listening line");
    let rest = line.trim().strip_prefix("listening on 127.0.0.1:").unwrap_or_else(|| {
        panic!("unexpected first line {line:?}");
    });
    (child, rest.parse().expect("port"))
}

/// Waits for the child to exit, killing it and failing after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal (`-TERM`, `-INT`) to the child.
pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
}

/// One polling handshake on a fresh connection; `None` when any step fails.
pub fn try_handshake(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A polling handshake that must succeed.
pub fn handshake(port: u16) -> String {
    try_handshake(port).expect("handshake")
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    free.local_addr().expect("addr").port()
}

/// A private `redis-server` on a loopback port, stopped when dropped.
pub struct RedisServer(std::process::Child);

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
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
        // Returned once it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

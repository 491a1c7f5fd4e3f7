//! The tests against the `shardcast` binary: the binary, a server started on a free port,
//! and its clean stop (no panic, exit 0).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `shardcast` binary of this build (built when the test runs alone).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/NAME-... → target/<profile>/shardcast
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let bin = dir.join("shardcast");
    if !bin.exists() {
        let release = dir.ends_with("release");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "shardcast", "--bin", "shardcast"]);
        if release {
            cargo.arg("--release");
        }
        assert!(cargo.status().expect("cargo").success(), "cannot build the shardcast binary");
    }
    bin
}

/// An environment variable, or `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A running `shardcast serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// With `--metrics 127.0.0.1:0`: the port it took (from its stderr).
    pub metrics_port: Option<u16>,
    /// The rest of its stderr, collected by a thread.
    stderr: mpsc::Receiver<String>,
}

/// Starts `shardcast serve --port 0 ARGS` and waits for its listening line.
pub fn start(args: &[&str]) -> Server {
    let mut child = Command::new(server_binary())
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardcast");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "no listening line");
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().expect("port");
    let (stderr, metrics_port) = collect_stderr(child.stderr.take().expect("stderr"));
    Server { child, port, metrics_port, stderr }
}

/// Reads stderr on a thread: the metrics line (printed before the listening line, so it is
/// there once the server listens) and everything else, handed over at the end.
fn collect_stderr(err: ChildStderr) -> (mpsc::Receiver<String>, Option<u16>) {
    let (port_tx, port_rx) = mpsc::channel();
    let (all_tx, all_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut port_tx = Some(port_tx);
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(addr) = l.strip_prefix("shardcast: metrics on ") {
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(addr.rsplit(':').next().and_then(|p| p.parse().ok()));
                }
            }
            all.push_str(&l);
            all.push('\n');
        }
        let _ = all_tx.send(all);
    });
    let metrics = port_rx.recv_timeout(Duration::from_millis(500)).ok().flatten();
    (all_rx, metrics)
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asserts it is still running, then stops it with SIGTERM and asserts it exited 0
    /// without a panic. `context` goes into the failure messages.
    pub fn stop_cleanly(mut self, context: &str) {
        assert!(self.child.try_wait().unwrap().is_none(), "the server died:\n{context}");
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let mut waited = 0;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(waited < 300, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        };
        let err = self.stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        assert!(!err.contains("panicked"), "the server panicked:\n{err}");
        assert!(status.success(), "exit {status}:\n{err}");
    }
}

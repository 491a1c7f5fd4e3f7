//! `shardcast serve` as a process: flags, the `listening on` line, signals, one-line errors,
//! and surviving the open-file limit without a busy accept loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

/// Starts `cmd` and returns the child and the port from its `listening on HOST:PORT` line.
fn start(mut cmd: Command) -> (Child, u16) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read listening line");
    let rest = line.trim().strip_prefix("listening on 127.0.0.1:").unwrap_or_else(|| {
        panic!("unexpected first line {line:?}");
    });
    (child, rest.parse().expect("port"))
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
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

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
}

/// One polling handshake on a fresh connection; `None` when any step fails.
fn try_handshake(port: u16) -> Option<String> {
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

fn handshake(port: u16) -> String {
    try_handshake(port).expect("handshake")
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in
        ["--host", "--port", "--shards", "--ping-interval", "--ping-timeout", "--max-payload"]
    {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_flags_give_one_line_and_non_zero_exit() {
    for args in
        [&["serve", "--bogus"][..], &["serve", "--port", "http"], &["serve", "--shards", "0"]]
    {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with("shardcast: "), "{err:?}");
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

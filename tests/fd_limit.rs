//! Surviving the open-file limit: at the limit the server backs off instead of spinning in
//! its accept loop, and serves again once descriptors are free. In its own test binary: it
//! runs the server under a tiny descriptor limit and must not share the process with other
//! tests spawning servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

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

/// Reads utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm end") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn survives_the_open_file_limit_without_spinning() {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=64:64", BIN, "serve", "--port", "0", "--shards", "1"]);
    let (mut child, port) = start(cmd);
    // Far more connections than the server has descriptors for: the rest wait in the backlog.
    let conns: Vec<TcpStream> =
        (0..120).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(conns.len() > 64, "only {} connections made", conns.len());
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(child.id()) - before;
    // A busy accept loop would burn ~100 ticks (one core-second); backing off costs ~none.
    assert!(used < 30, "server used {used} ticks in 1 s while out of descriptors");
    drop(conns);
    // Once descriptors are free again, the server serves new clients. A generous bound: on
    // a loaded machine each attempt may wait behind the backlog still draining.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The backlog is still draining: a connect or read may fail for a moment.
        let resp = try_handshake(port).unwrap_or_default();
        if resp.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "server did not recover: {resp:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().expect("try_wait").is_none(), "server exited");
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    let mut log = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut log).expect("read stderr");
    assert!(log.contains("out of resources"), "the limit was never hit:\n{log}");
}

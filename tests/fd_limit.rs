//! Surviving the open-file limit: at the limit the server backs off instead of spinning in
//! its accept loop, and serves again once descriptors are free. It also pins down a startup
//! race this test found: every runtime and signal handler must exist before the server
//! accepts (a flood of early connections used to leave a shard or the signal handlers
//! without descriptors).

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::{signal, start, try_handshake, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

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
        if Instant::now() >= deadline {
            let _ = child.kill();
            let mut log = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut log));
            panic!("server did not recover: {resp:?}; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().expect("try_wait").is_none(), "server exited");
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    let mut log = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut log).expect("read stderr");
    assert!(log.contains("out of resources"), "the limit was never hit:\n{log}");
}

//! `ceiling`: the machine's raw broadcast ceiling on loopback.
//!
//! Opens N TCP connections to itself on 127.0.0.1. A writer thread (pinned to `--writer-cpu`,
//! like a server under `taskset -c 1`) writes one pre-encoded, unmasked WebSocket text frame to
//! each of the N accepted sockets per round, as fast as it can, for `--duration` seconds:
//!
//! * `single`: one send() per frame;
//! * `batched`: B frames per socket in one send() (one concatenated buffer, or with
//!   `--vectored` one sendmsg() of B iovecs).
//!
//! A separate reader process (pinned to `--reader-cpu`, like a load generator under
//! `taskset -c 0`) opens the N connections and drains them with epoll; one process per side
//! keeps each under the file-descriptor limit and keeps the reader's work off the writer's
//! books. On loopback the receive half of TCP runs inside the writer's
//! send() call, so the writer's CPU time per frame is what a server pays at best to hand one
//! frame to one connection. It is measured with getrusage(RUSAGE_THREAD) around the measured
//! phase; every byte written is checked to have been read before the next mode starts.
//!
//! Bounded: at most 20,000 connections, 120 s per mode, loopback only.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

const MAX_CONNS: usize = 20_000;
const MAX_DURATION_S: f64 = 120.0;
const MAX_BATCH: usize = 1024;
const MAX_PAYLOAD: usize = 65_536;
const MAX_READERS: usize = 16;

/// Measure the machine's raw loopback broadcast ceiling: one pre-encoded WebSocket frame to
/// each of N sockets per round, one write per frame and batched.
#[derive(Parser, Debug)]
#[command(name = "ceiling", version, about)]
struct Cli {
    /// Number of loopback TCP connections written to (each uses two file descriptors).
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Measured seconds per mode.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up seconds before each mode.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Frames per socket per write in `batched` mode.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// WebSocket payload bytes per frame (the frame adds a 2-4 byte header).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Which write pattern(s) to measure.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// `batched` mode writes B iovecs with one sendmsg() instead of one concatenated buffer.
    #[arg(long)]
    vectored: bool,
    /// CPU the writer thread is pinned to (-1: no pinning).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    writer_cpu: i32,
    /// CPU the reader threads are pinned to (-1: no pinning).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    reader_cpu: i32,
    /// Reader threads draining the client ends.
    #[arg(long, default_value_t = 1)]
    readers: usize,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Internal: run as the reader process, connecting --conns times to 127.0.0.1:PORT.
    #[arg(long, hide = true, value_name = "PORT")]
    reader_child: Option<u16>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Batched,
    Both,
}

struct Row {
    mode: String,
    frames_per_write: usize,
    frames: u64,
    writes: u64,
    bytes: u64,
    wall_s: f64,
    writer_cpu_us: f64,
    writer_user_us: f64,
    writer_sys_us: f64,
    writer_vol_ctx: i64,
    writer_invol_ctx: i64,
    reader_cpu_us: f64,
}

impl Row {
    fn frames_per_sec(&self) -> f64 {
        self.frames as f64 / self.wall_s
    }
    fn us_per_frame(&self) -> f64 {
        self.writer_cpu_us / self.frames as f64
    }
    fn us_per_write(&self) -> f64 {
        self.writer_cpu_us / self.writes as f64
    }
    fn writer_share(&self) -> f64 {
        self.writer_cpu_us / (self.wall_s * 1e6)
    }
    fn reader_share(&self) -> f64 {
        self.reader_cpu_us / (self.wall_s * 1e6)
    }
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("ceiling: {msg}");
    std::process::exit(1);
}

fn pin_current_thread(cpu: i32) -> Result<(), String> {
    if cpu < 0 {
        return Ok(());
    }
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("cannot pin to CPU {cpu}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// (user µs, system µs, voluntary switches, involuntary switches) of the calling thread.
fn thread_rusage() -> (f64, f64, i64, i64) {
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        (tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_nvcsw as i64, ru.ru_nivcsw as i64)
    }
}

fn raise_nofile(need: u64) {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        if (r.rlim_cur as u64) < need {
            die(format_args!(
                "needs {need} file descriptors, the limit is {} (raise `ulimit -n`)",
                r.rlim_cur
            ));
        }
    }
}

/// One unmasked server-to-client WebSocket text frame carrying `payload` bytes of a
/// Socket.IO-like event packet.
fn frame(payload: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload);
    let prefix = b"42[\"news\",\"";
    if payload >= prefix.len() + 2 {
        body.extend_from_slice(prefix);
        body.resize(payload - 2, b'x');
        body.extend_from_slice(b"\"]");
    } else {
        body.resize(payload, b'x');
    }
    let mut f = Vec::with_capacity(payload + 10);
    f.push(0x81); // FIN + text
    if payload < 126 {
        f.push(payload as u8);
    } else if payload <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(payload as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(payload as u64).to_be_bytes());
    }
    f.extend_from_slice(&body);
    f
}

fn send_all(fd: RawFd, buf: &[u8]) -> std::io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        let n = unsafe {
            libc::send(
                fd,
                buf[off..].as_ptr() as *const libc::c_void,
                buf.len() - off,
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        off += n as usize;
    }
    Ok(())
}

/// One sendmsg() of `iov` (B iovecs of the same frame); falls back to send_all for the rest
/// after a short write.
fn sendmsg_all(fd: RawFd, iov: &[libc::iovec], frame: &[u8]) -> std::io::Result<()> {
    let total = frame.len() * iov.len();
    let n = loop {
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    let mut done = n;
    while done < total {
        let in_frame = done % frame.len();
        send_all(fd, &frame[in_frame..])?;
        done += frame.len() - in_frame;
    }
    Ok(())
}

/// The reader process, seen from the writer's process: what it has read and the CPU it used,
/// as it last reported them on its stdout.
struct Readers {
    child: std::process::Child,
    bytes: Arc<AtomicU64>,
    cpu_ns: Arc<AtomicU64>,
}

impl Readers {
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
    /// Waits until every byte written has been read.
    fn wait_for(&self, total: u64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.bytes() >= total {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.bytes() >= total
    }
}

/// Starts the reader process, accepts its `conns` connections and returns the accepted
/// ("server") ends.
fn start_reader_process(cli: &Cli) -> (Readers, Vec<RawFd>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| die(format_args!("cannot listen on 127.0.0.1: {e}")));
    let port = listener.local_addr().unwrap().port();
    let exe = std::env::current_exe().unwrap_or_else(|e| die(format_args!("current_exe: {e}")));
    let mut child = std::process::Command::new(exe)
        .args([
            "--reader-child",
            &port.to_string(),
            "--conns",
            &cli.conns.to_string(),
            "--readers",
            &cli.readers.to_string(),
            "--reader-cpu",
            &cli.reader_cpu.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(format_args!("cannot start the reader process: {e}")));
    listener.set_nonblocking(true).ok();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut fds = Vec::with_capacity(cli.conns);
    while fds.len() < cli.conns {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok();
                s.set_nodelay(true).ok();
                fds.push(s.into_raw_fd());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(st)) = child.try_wait() {
                    die(format_args!("the reader process exited early ({st})"));
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    die(format_args!(
                        "only {} of {} connections after 120 s",
                        fds.len(),
                        cli.conns
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => die(format_args!("accept failed after {} connections: {e}", fds.len())),
        }
    }
    let bytes = Arc::new(AtomicU64::new(0));
    let cpu_ns = Arc::new(AtomicU64::new(0));
    let mut out = child.stdout.take().unwrap();
    let (b, c) = (bytes.clone(), cpu_ns.clone());
    std::thread::spawn(move || {
        let mut rec = [0u8; 16];
        while out.read_exact(&mut rec).is_ok() {
            c.store(u64::from_le_bytes(rec[8..].try_into().unwrap()), Ordering::Release);
            b.store(u64::from_le_bytes(rec[..8].try_into().unwrap()), Ordering::Release);
        }
    });
    // the first report says the reader is up
    let t = Instant::now();
    while cpu_ns.load(Ordering::Acquire) == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    (Readers { child, bytes, cpu_ns }, fds)
}

/// The reader process: connects `conns` times, drains every socket with epoll (in `readers`
/// threads pinned to `cpu`), and reports (bytes read, process CPU ns) on stdout every 2 ms
/// until its stdin closes.
fn reader_child(port: u16, conns: usize, readers: usize, cpu: i32) -> ! {
    if let Err(e) = pin_current_thread(cpu) {
        eprintln!("ceiling: reader: {e}");
    }
    raise_nofile(conns as u64 + 64);
    let mut fds = Vec::with_capacity(conns);
    for i in 0..conns {
        let c = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| die(format_args!("reader: connection {i}: connect failed: {e}")));
        c.set_nonblocking(true).ok();
        fds.push(c.into_raw_fd());
    }
    let counters: Vec<Arc<AtomicU64>> = (0..readers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let per = conns.div_ceil(readers).max(1);
    for (chunk, counter) in fds.chunks(per).zip(counters.iter()) {
        let chunk = chunk.to_vec();
        let counter = counter.clone();
        std::thread::Builder::new()
            .name("ceiling-reader".into())
            .spawn(move || {
                if let Err(e) = pin_current_thread(cpu) {
                    eprintln!("ceiling: reader: {e}");
                }
                reader_loop(chunk, counter)
            })
            .unwrap_or_else(|e| die(format_args!("reader: cannot spawn a thread: {e}")));
    }
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        q.store(true, Ordering::Relaxed);
    });
    let mut out = std::io::stdout().lock();
    while !quit.load(Ordering::Relaxed) {
        let bytes: u64 = counters.iter().map(|c| c.load(Ordering::Acquire)).sum();
        let cpu_ns = unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts);
            (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64).max(1)
        };
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&bytes.to_le_bytes());
        rec[8..].copy_from_slice(&cpu_ns.to_le_bytes());
        if out.write_all(&rec).and_then(|_| out.flush()).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::process::exit(0);
}

fn reader_loop(fds: Vec<RawFd>, counter: Arc<AtomicU64>) {
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        die("epoll_create1 failed");
    }
    for &fd in &fds {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            die("epoll_ctl failed");
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 50) };
        if n < 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            loop {
                let r = unsafe {
                    libc::recv(
                        fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if r <= 0 {
                    break;
                }
                total += r as u64;
                if (r as usize) < buf.len() {
                    break;
                }
            }
        }
        counter.store(total, Ordering::Release);
    }
}

/// Runs one write pattern on the writer thread (pinned) and returns its row.
#[allow(clippy::too_many_arguments)]
fn run_mode(
    name: &str,
    fds: Arc<Vec<RawFd>>,
    frame: Arc<Vec<u8>>,
    per_write: usize,
    vectored: bool,
    warmup: f64,
    duration: f64,
    cpu: i32,
    readers: &Readers,
) -> Row {
    let bytes_before = readers.bytes();
    let conns = fds.len() as u64;
    let frame_len = frame.len() as u64;
    let reader_cpu_before = Arc::new(AtomicU64::new(0));
    let reader_cpu_after = Arc::new(AtomicU64::new(0));
    // The reader process's CPU clock (as it last reported it, every 2 ms) is sampled by the
    // writer at the start and end of the measured phase.
    let reader_cpu = readers.cpu_ns.clone();
    let (rb, ra) = (reader_cpu_before.clone(), reader_cpu_after.clone());
    let name_s = name.to_string();
    let h = std::thread::Builder::new()
        .name("ceiling-writer".into())
        .spawn(move || {
            if let Err(e) = pin_current_thread(cpu) {
                eprintln!("ceiling: writer: {e}");
            }
            let buf: Vec<u8> = frame.repeat(per_write);
            let iov: Vec<libc::iovec> = (0..per_write)
                .map(|_| libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                })
                .collect();
            let write_one = |fd: RawFd| -> std::io::Result<()> {
                if per_write > 1 && vectored {
                    sendmsg_all(fd, &iov, &frame)
                } else {
                    send_all(fd, &buf)
                }
            };
            let round = |fds: &[RawFd]| {
                for &fd in fds {
                    if let Err(e) = write_one(fd) {
                        die(format_args!("{name_s}: send failed: {e}"));
                    }
                }
            };
            // warm-up (not measured)
            let t0 = Instant::now();
            let mut warm_rounds = 0u64;
            while t0.elapsed().as_secs_f64() < warmup {
                round(&fds);
                warm_rounds += 1;
            }
            let rc = || reader_cpu.load(Ordering::Acquire) as f64 / 1e3;
            rb.store(rc().to_bits(), Ordering::Relaxed);
            let (u0, s0, v0, i0) = thread_rusage();
            let start = Instant::now();
            let mut rounds = 0u64;
            loop {
                round(&fds);
                rounds += 1;
                if start.elapsed().as_secs_f64() >= duration {
                    break;
                }
            }
            let wall = start.elapsed().as_secs_f64();
            let (u1, s1, v1, i1) = thread_rusage();
            ra.store(rc().to_bits(), Ordering::Relaxed);
            (warm_rounds, rounds, wall, u1 - u0, s1 - s0, v1 - v0, i1 - i0)
        })
        .unwrap_or_else(|e| die(format_args!("cannot spawn the writer: {e}")));
    let (warm_rounds, rounds, wall, user, sys, vcs, ics) = h.join().expect("writer panicked");
    let writes = rounds * conns;
    let frames = writes * per_write as u64;
    let bytes = frames * frame_len;
    let warm_bytes = warm_rounds * conns * per_write as u64 * frame_len;
    let expect = bytes_before + warm_bytes + bytes;
    if !readers.wait_for(expect, Duration::from_secs(30)) {
        die(format_args!(
            "{name}: the readers got {} of {} bytes written",
            readers.bytes() - bytes_before,
            expect - bytes_before
        ));
    }
    let rcpu = f64::from_bits(reader_cpu_after.load(Ordering::Relaxed))
        - f64::from_bits(reader_cpu_before.load(Ordering::Relaxed));
    Row {
        mode: name.to_string(),
        frames_per_write: per_write,
        frames,
        writes,
        bytes,
        wall_s: wall,
        writer_cpu_us: user + sys,
        writer_user_us: user,
        writer_sys_us: sys,
        writer_vol_ctx: vcs,
        writer_invol_ctx: ics,
        reader_cpu_us: rcpu,
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

fn read_to_string(path: &str) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn cpu_model() -> String {
    read_to_string("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let cli = Cli::parse();
    if cli.conns == 0 || cli.conns > MAX_CONNS {
        die(format_args!("--conns must be between 1 and {MAX_CONNS}"));
    }
    if !(cli.duration > 0.0 && cli.duration <= MAX_DURATION_S) {
        die(format_args!("--duration must be > 0 and at most {MAX_DURATION_S}"));
    }
    if !(0.0..=30.0).contains(&cli.warmup) {
        die("--warmup must be between 0 and 30");
    }
    if cli.batch == 0 || cli.batch > MAX_BATCH {
        die(format_args!("--batch must be between 1 and {MAX_BATCH}"));
    }
    if cli.payload == 0 || cli.payload > MAX_PAYLOAD {
        die(format_args!("--payload must be between 1 and {MAX_PAYLOAD}"));
    }
    if cli.readers == 0 || cli.readers > MAX_READERS {
        die(format_args!("--readers must be between 1 and {MAX_READERS}"));
    }
    if let Some(port) = cli.reader_child {
        reader_child(port, cli.conns, cli.readers, cli.reader_cpu);
    }
    raise_nofile(cli.conns as u64 + 64);

    // Connections: the reader process connects; this process writes to the accepted
    // ("server") ends.
    let (mut readers, server_fds) = start_reader_process(&cli);
    let f = frame(cli.payload);
    let fds = Arc::new(server_fds.clone());
    let frame = Arc::new(f.clone());

    let loadavg_start = read_to_string("/proc/loadavg");
    let mut rows = Vec::new();
    if matches!(cli.mode, Mode::Single | Mode::Both) {
        rows.push(run_mode(
            "single",
            fds.clone(),
            frame.clone(),
            1,
            false,
            cli.warmup,
            cli.duration,
            cli.writer_cpu,
            &readers,
        ));
    }
    if matches!(cli.mode, Mode::Batched | Mode::Both) {
        rows.push(run_mode(
            if cli.vectored { "batched-writev" } else { "batched" },
            fds.clone(),
            frame.clone(),
            cli.batch,
            cli.vectored,
            cli.warmup,
            cli.duration,
            cli.writer_cpu,
            &readers,
        ));
    }

    drop(readers.child.stdin.take());
    for fd in server_fds.iter() {
        unsafe { libc::close(*fd) };
    }
    let _ = readers.child.wait();

    // Table
    let loadavg = loadavg_start.clone();
    let pin = |c: i32| if c < 0 { "unpinned".to_string() } else { format!("CPU {c}") };
    println!(
        "ceiling: {} loopback connections, {}-byte payload ({}-byte frame), writer thread on {}, reader process ({} thread(s)) on {}, {} s per mode (+{} s warm-up)",
        cli.conns,
        cli.payload,
        f.len(),
        pin(cli.writer_cpu),
        cli.readers,
        pin(cli.reader_cpu),
        cli.duration,
        cli.warmup
    );
    println!(
        "{:<16} {:>8} {:>14} {:>15} {:>15} {:>13} {:>12} {:>12}",
        "mode",
        "frames/w",
        "frames/s",
        "writer µs/frame",
        "writer µs/write",
        "writer CPU %",
        "writer vcsw",
        "reader CPU %"
    );
    for r in &rows {
        println!(
            "{:<16} {:>8} {:>14.0} {:>15.3} {:>15.3} {:>13.1} {:>12} {:>12.1}",
            r.mode,
            r.frames_per_write,
            r.frames_per_sec(),
            r.us_per_frame(),
            r.us_per_write(),
            100.0 * r.writer_share(),
            r.writer_vol_ctx,
            100.0 * r.reader_share()
        );
    }
    for r in &rows {
        if r.writer_share() < 0.9 {
            if r.writer_vol_ctx > r.writer_invol_ctx {
                println!(
                    "note: {}: the writer was on CPU only {:.0}% of the time and blocked {} times on full \
                     socket buffers: the reader side limited frames/s (µs/frame is still the writer's own cost)",
                    r.mode,
                    100.0 * r.writer_share(),
                    r.writer_vol_ctx
                );
            } else {
                println!(
                    "note: {}: the writer was on CPU only {:.0}% of the time and was preempted {} times: \
                     something else ran on its CPU (load average at start: {}), so frames/s is low; \
                     µs/frame is still the writer's own CPU time",
                    r.mode,
                    100.0 * r.writer_share(),
                    r.writer_invol_ctx,
                    loadavg.trim()
                );
            }
        }
    }

    if let Some(path) = &cli.json {
        let mut j = String::new();
        j.push_str("{\n  \"tool\": \"ceiling\",\n");
        j.push_str(&format!(
            "  \"config\": {{\"conns\": {}, \"payload\": {}, \"frame_bytes\": {}, \"batch\": {}, \"vectored\": {}, \"duration_s\": {}, \"warmup_s\": {}, \"writer_cpu\": {}, \"reader_cpu\": {}, \"readers\": {}}},\n",
            cli.conns,
            cli.payload,
            f.len(),
            cli.batch,
            cli.vectored,
            json_num(cli.duration),
            json_num(cli.warmup),
            cli.writer_cpu,
            cli.reader_cpu,
            cli.readers
        ));
        j.push_str("  \"results\": [\n");
        for (i, r) in rows.iter().enumerate() {
            j.push_str(&format!(
                "    {{\"mode\": {}, \"frames_per_write\": {}, \"frames\": {}, \"writes\": {}, \"bytes\": {}, \"wall_s\": {}, \"frames_per_sec\": {}, \"writer_cpu_us\": {}, \"writer_user_us\": {}, \"writer_sys_us\": {}, \"writer_cpu_us_per_frame\": {}, \"writer_cpu_us_per_write\": {}, \"writer_cpu_share\": {}, \"writer_voluntary_ctx_switches\": {}, \"writer_involuntary_ctx_switches\": {}, \"reader_cpu_us\": {}, \"reader_cpu_share\": {}}}{}\n",
                json_str(&r.mode),
                r.frames_per_write,
                r.frames,
                r.writes,
                r.bytes,
                json_num(r.wall_s),
                json_num(r.frames_per_sec()),
                json_num(r.writer_cpu_us),
                json_num(r.writer_user_us),
                json_num(r.writer_sys_us),
                json_num(r.us_per_frame()),
                json_num(r.us_per_write()),
                json_num(r.writer_share()),
                r.writer_vol_ctx,
                r.writer_invol_ctx,
                json_num(r.reader_cpu_us),
                json_num(r.reader_share()),
                if i + 1 < rows.len() { "," } else { "" }
            ));
        }
        j.push_str("  ],\n");
        let uname = read_to_string("/proc/sys/kernel/osrelease");
        j.push_str(&format!(
            "  \"environment\": {{\"cpu_model\": {}, \"cores\": {}, \"kernel\": {}, \"loadavg_at_start\": {}}}\n}}\n",
            json_str(&cpu_model()),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            json_str(uname.trim()),
            json_str(loadavg_start.trim())
        ));
        let mut out = std::fs::File::create(path)
            .unwrap_or_else(|e| die(format_args!("cannot write {}: {e}", path.display())));
        out.write_all(j.as_bytes())
            .unwrap_or_else(|e| die(format_args!("cannot write {}: {e}", path.display())));
    }
    let _ = std::io::stdout().flush();
}

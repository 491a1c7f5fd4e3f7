//! What the harness asks the operating system: the shared monotonic clock, its own CPU time,
//! the server's RSS and CPU from /proc, the kernel, the cores it may run on, the fd limit.

use serde::Serialize;

/// CLOCK_MONOTONIC in nanoseconds. The same clock in every process of the machine, so a worker
/// can compare a receive time with a send time scheduled by another worker.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `tokio::time::Instant` for an absolute [`mono_ns`] time (tokio's clock is the same
/// CLOCK_MONOTONIC, so the offset from now is all that matters).
pub fn instant_at(ns: u64) -> tokio::time::Instant {
    let now_ns = mono_ns();
    let now = tokio::time::Instant::now();
    if ns >= now_ns {
        now + std::time::Duration::from_nanos(ns - now_ns)
    } else {
        now.checked_sub(std::time::Duration::from_nanos(now_ns - ns)).unwrap_or(now)
    }
}

/// CPU time (user + system) of this process, or of its waited-for children, in microseconds.
pub fn cpu_us(children: bool) -> u64 {
    let who = if children { libc::RUSAGE_CHILDREN } else { libc::RUSAGE_SELF };
    // SAFETY: getrusage fills the struct we own; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the calling thread's scheduling priority, best effort: real-time (`SCHED_FIFO`,
/// lowest real-time priority) when allowed, else nice -10, else nothing. Returns which.
/// For the publisher thread: it sleeps between sends, so at real-time priority it takes the
/// core the moment a send is due instead of waiting for the receiving threads' time slice.
pub fn prioritize_current_thread() -> &'static str {
    // SAFETY: plain system calls on the calling thread (pid 0 / its own tid) with a valid
    // parameter struct.
    unsafe {
        let param = libc::sched_param { sched_priority: 1 };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 {
            return "real-time";
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, -10) == 0 {
            return "nice -10";
        }
    }
    "normal"
}

/// Cores this process may run on (its affinity mask, so `taskset` is honoured).
pub fn cores_available() -> usize {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Online cores of the machine.
pub fn cores_online() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// Raises the soft open-files limit to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: get/setrlimit on a struct we own.
    unsafe {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        rl.rlim_cur
    }
}

/// Kernel and machine, from uname(2).
#[derive(Debug, Clone, Serialize)]
pub struct Uname {
    /// e.g. `Linux`
    pub sysname: String,
    /// Kernel release.
    pub release: String,
    /// Kernel version string.
    pub version: String,
    /// e.g. `x86_64`
    pub machine: String,
    /// Host name.
    pub nodename: String,
}

/// Calls uname(2).
pub fn uname() -> Uname {
    // SAFETY: uname fills a utsname we own; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let s = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Uname {
            sysname: s(&u.sysname),
            release: s(&u.release),
            version: s(&u.version),
            machine: s(&u.machine),
            nodename: s(&u.nodename),
        }
    }
}

/// One sample of another process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// Resident set size in bytes (VmRSS).
    pub rss_bytes: u64,
    /// utime + stime in microseconds.
    pub cpu_us: u64,
}

/// Reads /proc/PID/status (VmRSS) and /proc/PID/stat (utime, stime). `None` when the process
/// is gone or the files do not parse.
pub fn sample_proc(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_us = parse_stat_cpu_us(&stat, clock_ticks())?;
    Some(ProcSample { rss_bytes: rss_kb * 1024, cpu_us })
}

/// RSS (KiB) and open descriptors of `pid`; `None` when the process is gone.
pub fn rss_and_fds(pid: u32) -> Option<(u64, u64)> {
    let rss = sample_proc(pid)?.rss_bytes / 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line, in microseconds. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat_cpu_us(stat: &str, ticks: u64) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prioritizing_a_thread_does_what_it_says() {
        std::thread::spawn(|| {
            let what = prioritize_current_thread();
            // SAFETY: queries about the calling thread.
            let (policy, nice) = unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS, tid))
            };
            match what {
                "real-time" => assert_eq!(policy, libc::SCHED_FIFO),
                "nice -10" => assert_eq!((policy, nice), (libc::SCHED_OTHER, -10)),
                other => assert_eq!((other, policy), ("normal", libc::SCHED_OTHER)),
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn stat_line() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_stat_cpu_us(line, 100), Some(3_000_000));
        assert_eq!(parse_stat_cpu_us("garbage", 100), None);
    }

    #[test]
    fn own_process_is_sampled() {
        let s = sample_proc(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(cores_available() >= 1);
        assert!(!uname().release.is_empty());
        let a = mono_ns();
        assert!(mono_ns() >= a);
    }
}

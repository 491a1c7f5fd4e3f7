//! `recover` against the real server in this process (demo app, two shards): every
//! subscriber's connection cut at once and brought back with its pid and last offset gets
//! its socket back and every packet it missed, once and in order (the run's exact counts);
//! against a server without recovery the same run reports new sessions and the loss.
//! Across a cluster (two servers on the Redis Streams adapter, the Redis at 127.0.0.1:6379,
//! `REDIS_URL` to use another): every subscriber comes back on the other server and
//! recovers there, exactly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use common::{n, run};

fn server(recovery: bool) -> (String, shardcast::RunningServer) {
    let mut b = shardcast::Config::builder().shards(2);
    if recovery {
        b = b.connection_state_recovery(std::time::Duration::from_secs(60), true);
    }
    let io = shardcast::Server::new(b.build().unwrap());
    shardcast::app::install(&io);
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    (format!("http://{}", running.local_addr()), running)
}

fn recover(url: &str) -> (serde_json::Value, String) {
    run(&[
        "recover",
        "--url",
        url,
        "--clients",
        "40",
        "--rooms",
        "2",
        "--rate",
        "40",
        "--duration",
        "2",
        "--drop-at",
        "0.8",
        "--down",
        "300",
    ])
}

#[test]
fn every_cut_subscriber_recovers_with_what_it_missed() {
    let (url, _s) = server(true);
    let (v, table) = recover(&url);
    let r = &v["recovery"];
    assert_eq!(
        (n(r, "cuts"), n(r, "attempts"), n(r, "recovered"), n(r, "refused")),
        (40, 40, 40, 0),
        "{table}"
    );
    // 2 rooms x 80 messages x 20 subscribers each, the 300 ms away included.
    assert_eq!((n(&v, "expected"), n(&v, "received"), n(&v, "lost")), (3200, 3200, 0), "{table}");
    assert_eq!((n(&v, "duplicates"), n(&v, "reordered")), (0, 0));
    assert!(n(&r["time_to_recover_us"], "count") == 40, "{r}");
    assert_eq!(v["clean"], true, "{table}");
    assert!(table.contains("40 cut, 40 came back: 40 recovered"), "{table}");
}

#[test]
fn without_recovery_on_the_server_the_comebacks_are_new_sessions_and_the_gap_is_lost() {
    let (url, _s) = server(false);
    let (v, table) = recover(&url);
    let r = &v["recovery"];
    assert_eq!(
        (n(r, "cuts"), n(r, "attempts"), n(r, "recovered"), n(r, "refused")),
        (40, 40, 0, 40),
        "{table}"
    );
    assert!(n(&v, "lost") > 0, "{table}");
    assert_eq!(v["clean"], false);
}

#[test]
fn recover_refuses_what_it_cannot_do() {
    for bad in [
        vec!["--polling-share", "0.5"],
        vec!["--reconnect"],
        vec!["--drop-at", "5"],
        vec!["--down", "0"],
    ] {
        let mut args =
            vec!["recover", "--url", "http://127.0.0.1:9", "--clients", "4", "--duration", "2"];
        args.extend(bad.iter());
        let out = common::harness(&args);
        assert!(!out.status.success(), "{bad:?}");
    }
}

/// A member of a cluster: a `shardcast serve` process, or the same server in this process.
enum Member {
    Process(Child),
    InProcess(#[allow(dead_code)] shardcast::RunningServer),
}

/// Servers on the Redis Streams adapter with connection state recovery on (60 s), on a key
/// of their own (deleted when dropped). With `SHARDCAST` naming a built `shardcast` binary,
/// each is `shardcast serve --port 0 --redis URL --redis-key K --redis-streams --recovery
/// 60000` (its own process); without, the server that command runs (the same configuration
/// and demo app) in this process.
struct StreamsCluster {
    urls: Vec<String>,
    members: Vec<Member>,
    redis: String,
    key: String,
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn streams_cluster(name: &str, servers: usize) -> StreamsCluster {
    let redis = redis_url();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let key = format!("loadtest-{}-{}-{name}", std::process::id(), nanos.as_nanos());
    let bin = std::env::var_os("SHARDCAST");
    let mut urls = Vec::new();
    let mut members = Vec::new();
    for _ in 0..servers {
        let (url, member) = match &bin {
            Some(bin) => {
                let mut child = Command::new(bin)
                    .args(["serve", "--port", "0", "--redis", &redis, "--redis-key", &key])
                    .args(["--redis-streams", "--recovery", "60000"])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start $SHARDCAST serve");
                let mut line = String::new();
                BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
                let port = line.trim().rsplit(':').next().unwrap_or("").to_owned();
                assert!(port.parse::<u16>().is_ok(), "shardcast serve said {line:?}");
                (format!("http://127.0.0.1:{port}"), Member::Process(child))
            }
            None => {
                let config = shardcast::Config::builder()
                    .redis(redis.clone())
                    .redis_key(key.clone())
                    .redis_streams(true)
                    .connection_state_recovery(std::time::Duration::from_secs(60), true)
                    .build()
                    .unwrap();
                let io = shardcast::Server::new(config);
                shardcast::app::install(&io);
                let running =
                    io.listen("127.0.0.1:0".parse().unwrap()).expect("listen (is Redis running?)");
                (format!("http://{}", running.local_addr()), Member::InProcess(running))
            }
        };
        urls.push(url);
        members.push(member);
    }
    StreamsCluster { urls, members, redis, key }
}

impl Drop for StreamsCluster {
    fn drop(&mut self) {
        for m in self.members.drain(..) {
            if let Member::Process(mut c) = m {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // The stream outlives its servers: delete it (RESP by hand; best effort).
        let addr = self.redis.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        if let Ok(mut conn) = std::net::TcpStream::connect(addr) {
            let k = &self.key;
            let _ = write!(conn, "*2\r\n$3\r\nDEL\r\n${}\r\n{k}\r\n", k.len());
            let _ = conn.read(&mut [0; 64]);
        }
    }
}

#[test]
fn across_a_cluster_every_subscriber_recovers_on_the_other_server() {
    let c = streams_cluster("recover", 2);
    // 200 subscribers in 10 rooms, 10 of each room on each server; 10 msg/s per room for
    // 2 s from publishers on the first server: 20 messages x 20 subscribers x 10 rooms. At
    // 0.8 s every subscriber is cut and, 300 ms later, comes back on the other server, at
    // most 16 handshakes at a time: 100 restores at once on a server built for tests (debug)
    // on a busy 2-core machine outlast its Redis client's 500 ms reply timeout, and those
    // restores give new sessions (a release build restored 100 at once within 250 ms).
    let (v, table) = run(&[
        "recover",
        "--url",
        &c.urls[0],
        "--url",
        &c.urls[1],
        "--clients",
        "200",
        "--rooms",
        "10",
        "--rate",
        "10",
        "--duration",
        "2",
        "--drop-at",
        "0.8",
        "--down",
        "300",
        "--connect-concurrency",
        "16",
    ]);
    let r = &v["recovery"];
    assert_eq!(
        (n(r, "cuts"), n(r, "attempts"), n(r, "recovered"), n(r, "refused"), n(r, "missing")),
        (200, 200, 200, 0, 0),
        "{table}"
    );
    assert_eq!((n(r, "other_server"), n(r, "recovered_on_other_server")), (200, 200), "{table}");
    assert_eq!(n(r, "time_to_recover_us.count"), 200, "{r}");
    let to = r["servers"].as_array().unwrap();
    assert_eq!(to.len(), 2, "{r}");
    for (i, s) in to.iter().enumerate() {
        assert_eq!(
            (s["url"].as_str(), s["from"].as_str()),
            (Some(&*c.urls[i]), Some(&*c.urls[1 - i]))
        );
        assert_eq!((n(s, "attempts"), n(s, "recovered"), n(s, "refused")), (100, 100, 0), "{s}");
        assert_eq!(n(s, "time_to_recover_us.count"), 100, "{s}");
    }
    assert_eq!((n(&v, "expected"), n(&v, "received"), n(&v, "lost")), (4000, 4000, 0), "{table}");
    assert_eq!((n(&v, "duplicates"), n(&v, "reordered")), (0, 0), "{table}");
    assert_eq!(v["errors"], serde_json::json!({}), "{table}");
    // Each server's share, counted under the server its subscribers started on.
    for s in v["cluster"]["servers"].as_array().unwrap() {
        assert_eq!((n(s, "subscribers"), n(s, "received"), n(s, "lost")), (100, 2000, 0), "{s}");
    }
    assert_eq!(v["clean"], true, "{table}");
    assert!(table.contains("200 came back on another server: 200 recovered there"), "{table}");
    assert!(table.contains("on server 2"), "{table}");
}

#[test]
fn recover_over_a_cluster_checks_its_flags() {
    let (a, b) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
    for (args, why) in [
        (vec!["--url", a, "--url", b, "--reconnect"], "--reconnect is not for it"),
        (vec!["--url", a, "--url", b, "--polling-share", "0.5"], "--polling-share must be 0"),
        (vec!["--url", a, "--url", a], "given twice"),
        (vec!["--url", a, "--url", b, "--rooms", "3"], "every room"),
        (vec!["--url", a, "--url", b, "--server-pid", "1"], "once per --url"),
    ] {
        let mut all = vec!["recover", "--clients", "4", "--duration", "2"];
        all.extend(&args);
        let out = common::harness(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

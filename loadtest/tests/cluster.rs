//! `cluster-fanout` (and `ramp --shape cluster-fanout`) against two shardcast servers in this
//! process joined on the Redis at 127.0.0.1:6379 (`REDIS_URL` to use another), one key per
//! test: every delivery counted, local and remote latencies apart, each server's CPU.

mod common;

use common::{assert_exact, harness, n, run};
use serde_json::Value;

struct Cluster {
    urls: Vec<String>,
    _running: Vec<shardcast::RunningServer>,
}

/// Two servers running the demo app, in one cluster under a key of their own.
fn cluster(key: &str) -> Cluster {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("loadtest-{}-{key}", std::process::id());
    let running: Vec<_> = (0..2)
        .map(|_| {
            let config = shardcast::Config::builder()
                .shards(1)
                .redis(redis.clone())
                .redis_key(key.clone())
                .build()
                .unwrap();
            let io = shardcast::Server::new(config);
            shardcast::app::install(&io);
            io.listen("127.0.0.1:0".parse().unwrap()).expect("listen (is Redis running?)")
        })
        .collect();
    let urls = running.iter().map(|r| format!("http://{}", r.local_addr())).collect();
    Cluster { urls, _running: running }
}

fn f(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64().unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

/// Local and remote each got `each` deliveries, all of them, with latencies.
fn assert_groups(c: &Value, subscribers: u64, each: u64) {
    for g in ["local", "remote"] {
        let g = &c[g];
        assert_eq!(n(g, "subscribers"), subscribers, "{g}");
        assert_eq!((n(g, "expected"), n(g, "received"), n(g, "lost")), (each, each, 0), "{g}");
        assert_eq!((n(g, "duplicates"), n(g, "reordered")), (0, 0), "{g}");
        assert_eq!(n(g, "latency_us.count"), each, "{g}");
        assert!(n(g, "latency_us.p50") > 0 && n(g, "latency_us.p99") > 0, "{g}");
    }
    let hop = &c["redis_hop_us"];
    let (p50, p99) = (hop["p50"].as_i64().unwrap(), hop["p99"].as_i64().unwrap());
    let lat = |g: &str, p: &str| n(&c[g]["latency_us"], p) as i64;
    assert_eq!(p50, lat("remote", "p50") - lat("local", "p50"));
    assert_eq!(p99, lat("remote", "p99") - lat("local", "p99"));
}

#[test]
fn cluster_fanout_reports_local_and_remote_without_loss() {
    let c = cluster("fanout");
    let pid = std::process::id().to_string();
    // 8 subscribers in 2 rooms, 2 of each room on each server; 20 msg/s per room for 1 s:
    // 20 messages per room x 4 subscribers x 2 rooms, half of them to each server. Both
    // servers are this process: each --server-pid samples it.
    let (v, table) = run(&[
        "cluster-fanout",
        "--url",
        &c.urls[0],
        "--url",
        &c.urls[1],
        "--clients",
        "8",
        "--rooms",
        "2",
        "--rate",
        "20",
        "--duration",
        "1",
        "--payload",
        "32",
        "--polling-share",
        "0.25",
        "--server-pid",
        &pid,
        "--server-pid",
        &pid,
    ]);
    assert_eq!(v["scenario"], "cluster-fanout");
    assert_exact(&v, 160);
    assert_eq!(n(&v, "sent"), 40);
    let cl = &v["cluster"];
    assert_eq!(n(cl, "broadcasts"), 40);
    assert_groups(cl, 4, 80);
    let servers = cl["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s["url"], c.urls[i].as_str());
        assert_eq!(s["publishers"], i == 0);
        assert_eq!((n(s, "subscribers"), n(s, "received"), n(s, "lost")), (4, 80, 0));
        assert!(f(s, "cpu_us_per_broadcast") > 0.0, "{s}");
        assert!(s["cpu_share_of_one_core"].is_number(), "{s}");
    }
    assert!(v["server"]["cpu_us_per_broadcast"].is_number());
    assert_eq!(v["config"]["servers"].as_array().unwrap().len(), 2);
    assert_eq!(n(&v, "connections.connected"), 10);
    for row in ["cluster", "local", "remote", "redis hop", "server 1", "server 2", "µs/broadcast"]
    {
        assert!(table.contains(row), "{row}:\n{table}");
    }
}

#[test]
fn cluster_ramp_steps_up_across_servers_and_workers() {
    let c = cluster("ramp");
    let urls = c.urls.join(",");
    // 6 subscribers in 1 room (3 per server), 20 then 40 msg/s for 0.5 s each, in 2 worker
    // processes: 10 and 20 messages x 6 subscribers.
    let (v, table) = run(&[
        "ramp",
        "--shape",
        "cluster-fanout",
        "--url",
        &urls,
        "--clients",
        "6",
        "--rate",
        "20",
        "--steps",
        "2",
        "--duration",
        "0.5",
        "--p99-ms",
        "2000",
        "--workers",
        "2",
    ]);
    assert_exact(&v, 180);
    assert_eq!(v["ramp"]["shape"], "cluster-fanout");
    assert_eq!(v["ramp"]["highest_rate_held"].as_f64(), Some(40.0));
    let steps = v["ramp"]["steps"].as_array().unwrap();
    for (s, each) in steps.iter().zip([30, 60]) {
        assert_eq!(s["held"], true);
        assert_groups(&s["cluster"], 3, each);
        assert!(s["cluster"]["servers"][0]["cpu_us"].is_null(), "no --server-pid, no CPU");
    }
    assert_groups(&v["cluster"], 3, 90);
    assert!(table.contains("remote p99"), "{table}");
}

#[test]
fn cluster_flags_are_checked() {
    let one = "http://127.0.0.1:1";
    let two = "http://127.0.0.1:2";
    let common = ["--clients", "4", "--duration", "1"];
    for (args, why) in [
        (vec!["cluster-fanout", "--url", one], "2 to"),
        (vec!["fanout", "--url", one, "--url", two], "--url is given once"),
        (vec!["ramp", "--url", one, "--url", two], "--url is given once"),
        (vec!["cluster-fanout", "--url", one, "--url", one], "given twice"),
        (vec!["cluster-fanout", "--url", one, "--url", "http://localhost:1"], "given twice"),
        (vec!["cluster-fanout", "--url", one, "--url", "http://10.0.0.1:2"], "refusing"),
        (vec!["cluster-fanout", "--url", one, "--url", two, "--server-pid", "1"], "once per --url"),
        (vec!["fanout", "--url", one, "--server-pid", "1,2"], "once per --url"),
        (vec!["cluster-fanout", "--url", one, "--url", two, "--rooms", "3"], "every room"),
    ] {
        let mut all = args.clone();
        all.extend(common);
        let out = harness(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // The flags of fanout, no more, no less.
    let flags = |scenario: &str| -> Vec<String> {
        let help = String::from_utf8_lossy(&harness(&[scenario, "--help"]).stdout).into_owned();
        help.lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .filter_map(|l| l.split([' ', ',']).find(|w| w.starts_with("--")).map(str::to_owned))
            .collect()
    };
    let fanout = flags("fanout");
    assert!(fanout.len() > 20 && fanout.contains(&"--server-pid".to_owned()), "{fanout:?}");
    assert_eq!(flags("cluster-fanout"), fanout);
}

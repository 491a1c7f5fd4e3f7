//! Every scenario at small scale against the real shardcast server (in-process, demo app, two
//! shards), through the real binary, checking exact counters in the JSON it writes.

mod common;

use std::process::Command;

use common::{assert_exact, harness, n, run, tmp};
use serde_json::Value;

struct Server {
    url: String,
    _running: shardcast::RunningServer,
}

fn server() -> Server {
    let io = shardcast::Server::new(shardcast::Config::builder().shards(2).build().unwrap());
    shardcast::app::install(&io);
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    Server { url: format!("http://{}", running.local_addr()), _running: running }
}

#[test]
fn fanout_delivers_exactly_and_writes_the_fixed_json_shape() {
    let s = server();
    // 20 subscribers over 2 rooms, 1 publisher per room at 10 msg/s for 1 s:
    // 10 messages per room x 10 subscribers per room x 2 rooms.
    let (v, table) = run(&[
        "fanout",
        "--url",
        &s.url,
        "--clients",
        "20",
        "--rooms",
        "2",
        "--rate",
        "10",
        "--duration",
        "1",
        "--payload",
        "64",
    ]);
    assert_exact(&v, 200);
    assert_eq!(v["scenario"], "fanout");
    assert_eq!(n(&v, "sent"), 20);
    assert_eq!(n(&v, "scheduled"), 20);
    assert!(v["deliveries_per_sec"].as_f64().unwrap() > 0.0);
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(v["latency_us"][k].as_u64().unwrap() > 0, "latency_us.{k}");
    }
    assert_eq!(n(&v, "latency_us.count"), 200);
    // Per publisher: each sent 10, each of its 10 subscribers got all of them.
    let pubs = v["publishers"]["list"].as_array().unwrap();
    assert_eq!(pubs.len(), 2);
    for p in pubs {
        assert_eq!(
            (n(p, "sent"), n(p, "expected"), n(p, "received"), n(p, "lost")),
            (10, 100, 100, 0)
        );
    }
    assert_eq!(n(&v, "rooms.joined_total"), 20);
    assert_eq!(n(&v, "connections.connected"), 22);
    // Configuration, environment and counters are all there.
    assert_eq!(n(&v, "config.clients"), 20);
    assert_eq!(n(&v, "config.payload"), 64);
    assert!(n(&v, "environment.cores") >= 1);
    assert!(!v["environment"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(n(&v, "counters.joins_ok") + n(&v, "setup_counters.joins_ok"), 20);
    assert!(v["harness"]["bottleneck"].is_boolean());
    assert!(!v["timeline"].as_array().unwrap().is_empty());
    assert!(table.contains("expected       200"), "{table}");
    assert!(table.contains("lost           0"), "{table}");
}

#[test]
fn fanout_with_several_publishers_and_half_on_polling() {
    let s = server();
    // 3 rooms of 10, 2 publishers per room at 5 msg/s each: 10 messages per room x 10 = 100.
    let (v, _) = run(&[
        "fanout",
        "--url",
        &s.url,
        "--clients",
        "30",
        "--rooms",
        "3",
        "--publishers",
        "2",
        "--rate",
        "10",
        "--duration",
        "1",
        "--polling-share",
        "0.5",
    ]);
    assert_exact(&v, 300);
    assert_eq!(n(&v, "connections.planned"), 36);
    assert_eq!(n(&v, "connections.polling"), 18);
    assert_eq!(n(&v, "connections.connected"), 36);
    assert_eq!(v["publishers"]["list"].as_array().unwrap().len(), 6);
}

#[test]
fn workers_merge_exactly() {
    let s = server();
    let (v, _) = run(&[
        "fanout",
        "--url",
        &s.url,
        "--clients",
        "30",
        "--rooms",
        "3",
        "--rate",
        "10",
        "--duration",
        "1",
        "--workers",
        "2",
        "--source-ips",
        "3",
    ]);
    assert_exact(&v, 300);
    assert_eq!(n(&v, "harness.workers"), 2);
    assert_eq!(n(&v, "latency_us.count"), 300);
    assert_eq!(n(&v, "connections.connected"), 33);
    let ticks: u64 = v["timeline"].as_array().unwrap().iter().map(|t| n(t, "count")).sum();
    assert_eq!(ticks, 300, "the per-second histograms of both workers add up");
}

#[test]
fn lobby_every_member_publishes_to_its_room() {
    let s = server();
    // 30 clients in 3 rooms of 10; 20 msg/s per room = 2 msg/s per member for 1 s:
    // 20 messages per room, each delivered to its 10 members (the sender included).
    let (v, _) = run(&[
        "lobby",
        "--url",
        &s.url,
        "--clients",
        "30",
        "--room-size",
        "10",
        "--rate",
        "20",
        "--duration",
        "1",
    ]);
    assert_exact(&v, 600);
    assert_eq!(n(&v, "sent"), 60);
    assert_eq!(n(&v, "rooms.count"), 3);
    assert_eq!(n(&v, "publishers.count"), 30);
    assert_eq!(n(&v, "publishers.with_loss"), 0);
}

#[test]
fn echo_gets_every_ack() {
    let s = server();
    let (v, table) =
        run(&["echo", "--url", &s.url, "--clients", "10", "--rate", "5", "--duration", "1"]);
    assert_exact(&v, 50);
    assert_eq!(n(&v, "sent"), 50);
    assert_eq!(n(&v, "latency_us.count"), 50);
    assert!(table.contains("rtt"), "{table}");
}

#[test]
fn connect_storm_and_churn() {
    let s = server();
    let (v, _) = run(&[
        "connect",
        "--url",
        &s.url,
        "--clients",
        "30",
        "--rate",
        "100",
        "--hold",
        "0.1",
        "--duration",
        "3",
    ]);
    assert_exact(&v, 30);
    assert_eq!(n(&v, "connect.succeeded"), 30);
    assert_eq!(n(&v, "connect.failed"), 0);
    assert_eq!(n(&v, "connect.not_started"), 0);
    assert_eq!(n(&v, "connect.closed_by_harness"), 30);
    assert_eq!(n(&v, "eio_open_us.count"), 30);
    assert_eq!(n(&v, "ns_connect_us.count"), 30);
    // All at once, some on polling.
    let (v, _) = run(&[
        "connect",
        "--url",
        &s.url,
        "--clients",
        "20",
        "--duration",
        "3",
        "--polling-share",
        "0.5",
    ]);
    assert_exact(&v, 20);
}

#[test]
fn idle_holds_every_connection() {
    let s = server();
    let (v, _) = run(&[
        "idle",
        "--url",
        &s.url,
        "--clients",
        "25",
        "--duration",
        "1",
        "--polling-share",
        "0.2",
    ]);
    assert_exact(&v, 25);
    assert_eq!(n(&v, "counters.held_at_end"), 25);
    assert_eq!(n(&v, "connections.polling"), 5);
}

#[test]
fn ramp_reports_the_highest_rate_that_held() {
    let s = server();
    let (v, table) = run(&[
        "ramp",
        "--url",
        &s.url,
        "--clients",
        "10",
        "--rate",
        "20",
        "--step-factor",
        "2",
        "--steps",
        "3",
        "--duration",
        "0.5",
        "--p99-ms",
        "2000",
    ]);
    let steps = v["ramp"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    // 10 subscribers x floor(rate x 0.5 s) messages per step.
    let want = [100, 200, 400];
    for (s, w) in steps.iter().zip(want) {
        assert_eq!((n(s, "expected"), n(s, "received"), n(s, "lost")), (w, w, 0));
        assert_eq!(s["held"], true);
    }
    assert_eq!(v["ramp"]["highest_rate_held"].as_f64(), Some(80.0));
    assert_exact(&v, 700);
    assert!(table.contains("highest rate"), "{table}");
}

#[test]
fn html_report_is_self_contained() {
    let s = server();
    let html = tmp("report", "html");
    let path = html.to_str().unwrap().to_owned();
    let (_, _) = run(&[
        "fanout",
        "--url",
        &s.url,
        "--clients",
        "5",
        "--rate",
        "20",
        "--duration",
        "1",
        "--report",
        &path,
    ]);
    let text = std::fs::read_to_string(&html).unwrap();
    let _ = std::fs::remove_file(&html);
    assert!(text.starts_with("<!DOCTYPE html>"));
    assert!(text.matches("<svg").count() >= 3, "charts");
    assert!(text.contains("Latency percentiles per second"));
    assert!(text.contains("percentile spectrum"));
    assert!(!text.contains("<script"), "no scripts");
    assert!(!text.contains("http://www.w3.org/1999/xhtml\" src"), "nothing external");
}

#[test]
fn refuses_unsafe_or_unbounded_runs() {
    for args in [
        vec!["fanout", "--url", "http://10.1.2.3:3000", "--clients", "1", "--duration", "1"],
        vec!["fanout", "--url", "http://example.com:3000", "--clients", "1", "--duration", "1"],
    ] {
        let out = harness(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"), "{args:?}");
    }
    for args in [
        vec!["fanout", "--url", "http://127.0.0.1:1", "--clients", "1"],
        vec!["fanout", "--url", "http://127.0.0.1:1", "--clients", "1", "--duration", "99999"],
        vec!["fanout", "--url", "http://127.0.0.1:1", "--clients", "99999999", "--duration", "1"],
    ] {
        assert_eq!(harness(&args).status.code(), Some(2), "{args:?}");
    }
    let help = String::from_utf8_lossy(&harness(&["fanout", "--help"]).stdout).into_owned();
    for flag in [
        "--url",
        "--clients",
        "--rooms",
        "--rate",
        "--duration",
        "--payload",
        "--json",
        "--report",
        "--workers",
        "--server-pid",
        "--source-ips",
        "--polling-share",
        "--auth",
        "--reconnect",
        "--allow-remote",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn server_pid_sampling_reports_memory_and_cpu() {
    let s = server();
    let pid = std::process::id().to_string();
    let (v, table) = run(&[
        "fanout",
        "--url",
        &s.url,
        "--clients",
        "10",
        "--rate",
        "20",
        "--duration",
        "1",
        "--server-pid",
        &pid,
    ]);
    assert_exact(&v, 200);
    assert!(n(&v, "server.rss_baseline_bytes") > 0);
    assert!(v["server"]["cpu_us_per_delivery"].is_number());
    assert!(v["server"]["bytes_per_connection"].is_number());
    assert!(table.contains("server"), "{table}");
}

#[test]
fn unreachable_server_fails_by_reason_not_panic() {
    // Nothing listens on this port (bound then dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (v, _) = run(&["idle", "--url", &url, "--clients", "3", "--duration", "0.5"]);
    assert_eq!(n(&v, "received"), 0);
    assert_eq!(n(&v, "lost"), 3);
    assert_eq!(n(&v, "errors.connect: connection refused"), 3);
}

/// Connections dropped by the server come back only with `--reconnect`.
#[test]
fn reconnects_only_when_told() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for reconnect in [false, true] {
        let io = shardcast::Server::new(shardcast::Config::builder().shards(2).build().unwrap());
        shardcast::app::install(&io);
        let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", running.local_addr());
        let json = tmp("reconnect", "json");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"));
        cmd.args([
            "idle",
            "--url",
            &url,
            "--clients",
            "5",
            "--duration",
            "2.5",
            "--quiet",
            "--json",
        ])
        .arg(&json);
        if reconnect {
            cmd.arg("--reconnect");
        }
        let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while io.fetch_sockets().await.unwrap().len() < 5 {
                assert!(tokio::time::Instant::now() < deadline, "clients never connected");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            // Let the measured phase start, then drop everyone.
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            io.disconnect_sockets(true);
        });
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        assert_eq!(n(&v, "counters.disconnects"), 5, "{}", v["counters"]);
        if reconnect {
            assert_eq!(n(&v, "received"), 5, "all held again at the end");
            assert!(n(&v, "counters.reconnects") >= 5);
        } else {
            assert_eq!(n(&v, "received"), 0);
            assert_eq!(n(&v, "lost"), 5);
            assert_eq!(n(&v, "counters.reconnects"), 0);
        }
        assert!(
            v["errors"].as_object().unwrap().keys().any(|k| k.starts_with("lost:")),
            "{}",
            v["errors"]
        );
        drop(running);
    }
}

#[test]
fn namespace_and_auth_are_used() {
    let s = server();
    let (v, _) = run(&[
        "idle",
        "--url",
        &s.url,
        "--clients",
        "3",
        "--duration",
        "0.3",
        "--namespace",
        "/custom",
        "--auth",
        r#"{"token":"t"}"#,
    ]);
    assert_exact(&v, 3);
    assert_eq!(v["config"]["auth"], r#"{"token":"t"}"#);
    let (v, _) = run(&[
        "idle",
        "--url",
        &s.url,
        "--clients",
        "3",
        "--duration",
        "0.3",
        "--namespace",
        "/nope",
    ]);
    assert_eq!(n(&v, "lost"), 3);
    assert_eq!(n(&v, "errors.namespace refused: Invalid namespace"), 3);
}

#[test]
fn pings_are_answered_on_both_transports() {
    // A 150 ms ping interval with a 150 ms timeout: a client that did not answer would be
    // dropped within the second it is held.
    let io = shardcast::Server::new(
        shardcast::Config::builder()
            .shards(2)
            .ping_interval(std::time::Duration::from_millis(150))
            .ping_timeout(std::time::Duration::from_millis(150))
            .build()
            .unwrap(),
    );
    shardcast::app::install(&io);
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", running.local_addr());
    let (v, _) = run(&[
        "idle",
        "--url",
        &url,
        "--clients",
        "6",
        "--duration",
        "1.2",
        "--polling-share",
        "0.5",
    ]);
    assert_exact(&v, 6);
    assert!(n(&v, "counters.pings") >= 6 * 4, "{}", v["counters"]);
}

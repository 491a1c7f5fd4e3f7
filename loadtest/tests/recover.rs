//! `recover` against the real server in this process (demo app, two shards): every
//! subscriber's connection cut at once and brought back with its pid and last offset gets
//! its socket back and every packet it missed, once and in order (the run's exact counts);
//! against a server without recovery the same run reports new sessions and the loss.

mod common;

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

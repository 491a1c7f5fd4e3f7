//! `--warmup`: traffic before the measured phases that the server receives and the report
//! leaves out. Its own test binary: it counts the broadcasts this process's server encoded
//! (`shardcast::broadcast::ENCODINGS`, process-wide), which no other test may move meanwhile.

mod common;

use std::sync::atomic::Ordering;

use common::{n, run};
use shardcast::broadcast::ENCODINGS;

#[test]
fn warmup_traffic_reaches_the_server_and_stays_out_of_the_figures() {
    let io = shardcast::Server::new(shardcast::Config::builder().shards(2).build().unwrap());
    shardcast::app::install(&io);
    let running = io.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", running.local_addr());
    let before = ENCODINGS.load(Ordering::Relaxed);
    let (v, table) = run(&[
        "ramp",
        "--url",
        &url,
        "--clients",
        "5",
        "--rate",
        "20",
        "--step-factor",
        "2",
        "--steps",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "1",
        "--p99-ms",
        "2000",
    ]);
    let steps = v["ramp"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "the warm-up is not a step");
    // 5 subscribers x floor(rate x 0.5 s) messages per measured step.
    for (s, w) in steps.iter().zip([50, 100]) {
        assert_eq!((n(s, "expected"), n(s, "received"), n(s, "lost")), (w, w, 0));
    }
    // The server published the warm-up's 20 messages (20/s for 1 s) and the steps' 10 + 20.
    assert_eq!(ENCODINGS.load(Ordering::Relaxed) - before, 20 + 10 + 20);
    assert_eq!(v["config"]["warmup_s"].as_f64(), Some(1.0), "{v}");
    assert!(table.contains("after 1 s of warm-up (not measured)"), "{table}");
}

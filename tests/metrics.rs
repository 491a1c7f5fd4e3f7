//! `Config::metrics`: `GET /metrics` on a listener of its own, scraped over real HTTP after
//! real traffic from real WebSocket and long-polling clients (and, with the Redis at
//! 127.0.0.1:6379, `REDIS_URL` to use another, the cluster adapter's series). The counts are
//! exact: the app below sends nothing it was not asked to.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{get, request, TestServer, Ws};
use shardcast::Server;

/// `/`: `join(room)` joins and acks `true`; `pub(room, x)` emits `news(x)` to the room.
fn app(io: &Server) {
    io.on_connection(|s| {
        s.on("join", |s, args, ack| {
            if let Some(r) = args.str(0) {
                s.join(r);
            }
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
        s.on("pub", |s, args, _| {
            let room = args.str(0).unwrap_or_default().to_owned();
            let _ = s.namespace().to(room).emit("news", args.skip(1));
        });
    });
}

/// The samples of one scrape: `name{labels}` → value (the OpenMetrics text).
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let resp = get(addr, "/metrics").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-type").unwrap_or_default().starts_with("application/openmetrics-text"),
        "{resp:?}"
    );
    let text = resp.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

fn at(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in {m:#?}"))
}

/// Scrapes until `key` reads `want` (the gauges follow the shards' own maps, updated as
/// their events run), for at most 5 s; the last scrape.
async fn until(addr: SocketAddr, key: &str, want: f64) -> BTreeMap<String, f64> {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(addr).await;
        if m.get(key) == Some(&want) || tokio::time::Instant::now() > end {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_series_count_real_traffic() {
    let config = common::config().metrics("127.0.0.1:0".parse().unwrap()).build().unwrap();
    let server = TestServer::start(config, app);
    let maddr = server.metrics_addr().expect("a metrics listener");
    assert_ne!(maddr.port(), 0);
    let m = scrape(maddr).await;
    assert_eq!(at(&m, "shardcast_packets_received_total"), 0.0);
    assert_eq!(at(&m, "shardcast_scrape_shards_missing"), 0.0);
    assert!(!m.contains_key("shardcast_adapter_connected"), "no adapter, no series");
    // two WebSocket clients (one per shard: the acceptor deals them in turn), in room r
    let (mut a, _) = Ws::open(server.addr).await;
    let (mut b, _) = Ws::open(server.addr).await;
    for ws in [&mut a, &mut b] {
        ws.sio_connect("/", None).await;
        ws.send(r#"420["join","r"]"#).await;
        ws.expect("430[true]").await;
    }
    a.send(r#"42["pub","r",1]"#).await;
    a.send(r#"42["pub","r",2]"#).await;
    for ws in [&mut a, &mut b] {
        ws.expect(r#"42["news",1]"#).await;
        ws.expect(r#"42["news",2]"#).await;
    }
    // one long-polling session, not connected to a namespace
    let open = get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(open.status, 200, "{open:?}");
    let m = until(maddr, "shardcast_connections{transport=\"polling\"}", 1.0).await;
    assert_eq!(at(&m, "shardcast_connections{transport=\"websocket\"}"), 2.0);
    assert_eq!(at(&m, "shardcast_connections{transport=\"polling\"}"), 1.0);
    assert_eq!(at(&m, "shardcast_sockets{namespace=\"/\"}"), 2.0);
    // per client: CONNECT, join; and a's two pubs
    assert_eq!(at(&m, "shardcast_packets_received_total"), 6.0);
    // per client: the CONNECT reply, the join's ack, news 1 and 2
    assert_eq!(at(&m, "shardcast_packets_sent_total"), 8.0);
    assert_eq!(at(&m, "shardcast_broadcasts_total"), 2.0);
    assert_eq!(
        at(&m, "shardcast_shard_connections{shard=\"0\"}")
            + at(&m, "shardcast_shard_connections{shard=\"1\"}"),
        3.0
    );
    // the shards' work: write system calls (several frames may share one), busy time
    let (writes, bytes) =
        (at(&m, "shardcast_write_syscalls_total"), at(&m, "shardcast_written_bytes_total"));
    assert!(writes >= 2.0 && bytes > writes, "{writes} writes, {bytes} bytes");
    for shard in ["0", "1"] {
        assert!(at(&m, &format!("shardcast_shard_busy_seconds_total{{shard=\"{shard}\"}}")) > 0.0);
    }
    assert!(!m.contains_key("shardcast_recovery_sessions"), "recovery is off");
    // refused requests, by the reference's message
    assert_eq!(get(server.addr, "/socket.io/?EIO=4&transport=bogus").await.status, 400);
    assert_eq!(get(server.addr, "/socket.io/?EIO=3&transport=polling").await.status, 400);
    assert_eq!(get(server.addr, "/socket.io/?EIO=4&transport=polling&sid=nope").await.status, 400);
    let m = scrape(maddr).await;
    for reason in ["Transport unknown", "Unsupported protocol version", "Session ID unknown"] {
        assert_eq!(at(&m, &format!("shardcast_http_refused_total{{reason=\"{reason}\"}}")), 1.0);
    }
    // a broadcast from a thread that is not a shard counts too
    server.io.to("r").emit("news", (3,)).unwrap();
    for ws in [&mut a, &mut b] {
        ws.expect(r#"42["news",3]"#).await;
    }
    // b leaves by closing; a is disconnected by the server
    drop(b);
    let m = until(maddr, "shardcast_sockets{namespace=\"/\"}", 1.0).await;
    assert_eq!(at(&m, "shardcast_sockets{namespace=\"/\"}"), 1.0);
    assert_eq!(at(&m, "shardcast_broadcasts_total"), 3.0);
    assert_eq!(at(&m, "shardcast_disconnects_total{reason=\"transport close\"}"), 1.0);
    a.send("41").await;
    let m = until(maddr, "shardcast_sockets{namespace=\"/\"}", 0.0).await;
    assert_eq!(at(&m, "shardcast_disconnects_total{reason=\"client namespace disconnect\"}"), 1.0);
    assert_eq!(
        at(&m, "shardcast_connections{transport=\"websocket\"}"),
        1.0,
        "a's connection stays"
    );
    // other paths and methods
    assert_eq!(get(maddr, "/").await.status, 404);
    assert_eq!(request(maddr, "POST", "/metrics", &[], b"").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_adapter_has_its_series() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("mt-{}", std::process::id());
    let config = common::config()
        .metrics("127.0.0.1:0".parse().unwrap())
        .redis(url)
        .redis_key(key)
        .build()
        .unwrap();
    let server = TestServer::start(config, app);
    let maddr = server.metrics_addr().unwrap();
    let (mut a, _) = Ws::open(server.addr).await;
    a.sio_connect("/", None).await;
    a.send(r#"42["pub","r",1]"#).await;
    let m = until(maddr, "shardcast_adapter_messages_total{kind=\"published\"}", 1.0).await;
    assert_eq!(at(&m, "shardcast_adapter_connected"), 1.0);
    assert_eq!(at(&m, "shardcast_adapter_messages_total{kind=\"published\"}"), 1.0);
    assert_eq!(at(&m, "shardcast_adapter_messages_total{kind=\"malformed\"}"), 0.0);
    assert!(at(&m, "shardcast_adapter_redis_round_trips_total") >= 1.0);
    let total = at(&m, "shardcast_adapter_redis_round_trip_seconds_total");
    let last = at(&m, "shardcast_adapter_redis_last_round_trip_seconds");
    assert!(last > 0.0 && last <= total && total < 5.0, "last {last}, total {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_shows_its_replay_log() {
    let config = common::config()
        .metrics("127.0.0.1:0".parse().unwrap())
        .connection_state_recovery(Duration::from_secs(60), true)
        .build()
        .unwrap();
    let server = TestServer::start(config, app);
    let maddr = server.metrics_addr().unwrap();
    let (mut a, _) = Ws::open(server.addr).await;
    a.send("40").await;
    assert!(a.text().await.contains(r#""pid":"#), "a recoverable session");
    a.send(r#"420["join","r"]"#).await;
    a.expect("430[true]").await;
    for i in 0..3 {
        a.send(&format!(r#"42["pub","r",{i}]"#)).await;
    }
    for _ in 0..3 {
        assert!(a.text().await.starts_with(r#"42["news","#));
    }
    // every shard logs every broadcast
    let m = until(maddr, "shardcast_recovery_log_packets{shard=\"1\"}", 3.0).await;
    for shard in ["0", "1"] {
        assert_eq!(at(&m, &format!("shardcast_recovery_log_packets{{shard=\"{shard}\"}}")), 3.0);
        assert!(at(&m, &format!("shardcast_recovery_log_bytes{{shard=\"{shard}\"}}")) > 30.0);
    }
    assert_eq!(at(&m, "shardcast_recovery_sessions"), 0.0);
    // a connection that drops leaves its session kept
    drop(a);
    let m = until(maddr, "shardcast_recovery_sessions", 1.0).await;
    assert_eq!(at(&m, "shardcast_recovery_sessions"), 1.0);
}

#[test]
fn a_taken_metrics_address_fails_listen_by_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let io = Server::new(common::config().metrics(addr).build().unwrap());
    let err = io.listen("127.0.0.1:0".parse().unwrap()).err().expect("refused");
    assert!(err.to_string().starts_with(&format!("cannot serve metrics on {addr}")), "{err}");
}

//! `shardcast serve` as a process: flags, the `listening on` line, signals, one-line errors,
//! and surviving the open-file limit without a busy accept loop. `shardcast emit` reaching
//! a client of `serve --redis` through the Redis at 127.0.0.1:6379 (`REDIS_URL` to use
//! another), and its errors.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/process.rs"]
mod process;
use process::{free_port, handshake, signal, start, wait_exit, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--shards",
        "--ping-interval",
        "--ping-timeout",
        "--max-payload",
        "--write-coalesce",
        "--write-coalesce-max",
        "--max-json-depth",
        "--redis",
        "--redis-key",
        "--redis-sharded",
        "--redis-subscription-mode",
        "--redis-streams",
        "--redis-stream-max-len",
        "--recovery",
        "--metrics",
        "--log-format",
        "--static",
        "--cors",
        "--admin-ui",
        "--admin-ui-username",
        "--admin-ui-password-hash",
        "--admin-ui-readonly",
        "--admin-ui-mode",
        "--admin-ui-server-id",
        "--tls-cert",
        "--tls-key",
        "--shutdown-timeout",
        "--max-http-header-size",
        "--parser",
        "--transports",
        "--allow-eio3",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
        // each also from the environment: SHARDCAST_ and the flag's name
        let env = format!("SHARDCAST_{}", flag[2..].replace('-', "_").to_uppercase());
        assert!(text.contains(&format!("[env: {env}=")), "--help lacks {env}:\n{text}");
    }
    let out = Command::new(BIN).args(["emit", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--redis",
        "--redis-key",
        "--nsp",
        "--to",
        "--except",
        "--volatile",
        "--server-side",
        "<EVENT>",
        "[JSON_ARG]",
    ] {
        assert!(text.contains(flag), "emit --help lacks {flag}:\n{text}");
    }
    let out = Command::new(BIN).arg("--help").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("emit"), "{text}");
}

#[test]
fn bad_flags_give_one_line_and_non_zero_exit() {
    for args in [
        &["serve", "--bogus"][..],
        &["serve", "--port", "http"],
        &["serve", "--shards", "0"],
        &["serve", "--max-json-depth", "1"],
        &["serve", "--recovery", "0"],
        &["serve", "--parser", "json"],
        &["serve", "--transports", "carrier-pigeon"],
        &["serve", "--transports", ""],
        &["serve", "--recovery", "1000", "--redis", "redis://127.0.0.1:1"],
        &["serve", "--redis-streams"],
        &["serve", "--redis-sharded", "--redis-streams", "--redis", "redis://127.0.0.1:1"],
        // an option of the sharded protocol only, and one of its three names
        &["serve", "--redis", "redis://127.0.0.1:1", "--redis-subscription-mode", "static"],
        &[
            "serve",
            "--redis",
            "redis://127.0.0.1:1",
            "--redis-sharded",
            "--redis-subscription-mode",
            "Dynamic",
        ],
    ] {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with("shardcast: "), "{err:?}");
    }
}

/// Every `serve` flag can come from its `SHARDCAST_*` variable, as containers are configured;
/// a flag on the command line wins over its variable; a bad value is one line.
#[test]
fn flags_come_from_the_environment_and_the_command_line_wins() {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").env("SHARDCAST_HOST", "127.0.0.1").env("SHARDCAST_PORT", port.to_string());
    let (mut child, got) = start(cmd);
    assert_eq!(got, port, "the port from SHARDCAST_PORT");
    assert!(handshake(port).contains("\"sid\""));
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());

    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0"]).env("SHARDCAST_PORT", port.to_string());
    let (mut child, got) = start(cmd);
    assert_ne!(got, port, "--port 0 wins over SHARDCAST_PORT");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());

    // Boolean flags are read too: sharded without a Redis is refused as on the command line.
    for (var, value) in [("SHARDCAST_REDIS_SHARDED", "true"), ("SHARDCAST_PORT", "http")] {
        let out = Command::new(BIN).arg("serve").env(var, value).output().expect("run");
        assert!(!out.status.success(), "{var}={value} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{var}: not one line: {err:?}");
        assert!(err.starts_with("shardcast: "), "{err:?}");
    }
    let out = Command::new(BIN).arg("serve").env("SHARDCAST_REDIS_SHARDED", "true").output();
    let err = String::from_utf8_lossy(&out.expect("run").stderr).into_owned();
    assert_eq!(err.trim_end(), "shardcast: --redis-sharded needs --redis URL");
    // `--transports websocket` refuses polling handshakes, as socket.io's transports option.
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0"]).env("SHARDCAST_TRANSPORTS", "websocket");
    let (mut child, port) = start(cmd);
    let refused = handshake(port);
    assert!(refused.contains(r#"{"code":0,"message":"Transport unknown"}"#), "{refused}");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    // `--allow-eio3` (here by its variable) opens Engine.IO v3 sessions: `<length>:<open>`.
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0"]).env("SHARDCAST_ALLOW_EIO3", "true");
    let (mut child, port) = start(cmd);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req =
        "GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    std::io::Write::write_all(&mut tcp, req.as_bytes()).expect("write");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut answer).expect("read");
    assert!(answer.contains(":0{\"sid\""), "{answer}");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    // A switch set to false is off: nothing is required of it.
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0"])
        .env("SHARDCAST_REDIS_SHARDED", "false")
        .env("SHARDCAST_REDIS_STREAMS", "false");
    let (mut child, port) = start(cmd);
    assert!(handshake(port).contains("\"sid\""));
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// `--log-format json` (or SHARDCAST_LOG_FORMAT=json): every log line on stderr is one JSON
/// object with its level and message, for log collectors.
#[test]
fn log_format_json_writes_one_object_per_line() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    for how in ["flag", "env"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--redis", &url]);
        match how {
            "flag" => cmd.args(["--log-format", "json"]),
            _ => cmd.env("SHARDCAST_LOG_FORMAT", "json"),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let err = lines(child.stderr.take().expect("stderr"));
        let line = wait_line(&err, Duration::from_secs(10), |_| true);
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{how}: not JSON ({e}): {line:?}"));
        assert_eq!(v["level"], "WARN", "{how}: {line}");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("cannot reach Redis at {url}")), "{how}: {line}");
        assert!(v["timestamp"].is_string(), "{how}: {line}");
        signal(&child, "-TERM");
        assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    }
    // text stays the default
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines(child.stderr.take().expect("stderr"));
    let line = wait_line(&err, Duration::from_secs(10), |_| true);
    assert!(serde_json::from_str::<serde_json::Value>(&line).is_err(), "{line}");
    assert!(line.contains("cannot reach Redis"), "{line}");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// `serve --redis` with Redis away: it says so and retries, without listening; a signal
/// meanwhile ends it cleanly.
#[test]
fn redis_away_at_start_is_retried_and_said() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines(child.stderr.take().expect("stderr"));
    let out = lines(child.stdout.take().expect("stdout"));
    let said = wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    assert!(said.contains(&format!("cannot reach Redis at {url}")), "{said:?}");
    // it retries with backoff: a second attempt is said too
    wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    assert!(out.try_recv().is_err(), "listening before Redis answered");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// Redis coming up while `serve` retries: it subscribes, then prints `listening on` and
/// serves.
#[test]
fn redis_coming_up_late_is_joined() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = lines(child.stderr.take().expect("stderr"));
    let out = lines(child.stdout.take().expect("stdout"));
    wait_line(&err, Duration::from_secs(10), |l| l.contains("retrying"));
    let redis = RedisServer::start(port);
    let line = wait_line(&out, Duration::from_secs(15), |l| l.starts_with("listening on"));
    let listen_port: u16 =
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("port");
    assert!(handshake(listen_port).contains("\"sid\""));
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    drop(redis);
}

/// The lines a child writes, as they come.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line that `pred` accepts within `within`; fails the test otherwise.
fn wait_line(rx: &mpsc::Receiver<String>, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no such line within {within:?} ({e})"),
        }
    }
}

#[test]
fn port_in_use_gives_one_line_and_non_zero_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(BIN).args(["serve", "--port", &port.to_string()]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("cannot listen"), "{err:?}");
}

#[test]
fn serves_then_exits_cleanly_on_sigterm_and_sigint() {
    for sig in ["-TERM", "-INT"] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--shards", "2"]);
        let (mut child, port) = start(cmd);
        let resp = handshake(port);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(r#""upgrades":["websocket"]"#), "{resp}");
        signal(&child, sig);
        let st = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "exit status after {sig}");
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `shardcast emit ARGS`: its exit code and stderr; it prints nothing on stdout.
fn emit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("emit").args(args).output().expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "emit {args:?} printed");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A blocking Engine.IO client over WebSocket (every read bounded by 5 s).
struct Ws(tungstenite::WebSocket<TcpStream>);

use tokio_tungstenite::tungstenite;

impl Ws {
    fn open(port: u16) -> Ws {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tungstenite::client(url, stream).expect("websocket handshake");
        let mut ws = Ws(ws);
        assert!(ws.text().starts_with("0{"), "no open packet");
        ws
    }

    fn send(&mut self, text: &str) {
        self.0.send(tungstenite::Message::text(text)).expect("send");
    }

    /// The next text frame, answering server PINGs.
    fn text(&mut self) -> String {
        loop {
            match self.0.read().expect("a frame within 5 s") {
                tungstenite::Message::Text(t) if t.as_str() == "2" => self.send("3"),
                tungstenite::Message::Text(t) => return t.as_str().to_owned(),
                _ => {}
            }
        }
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.text(), want);
    }

    /// Connects namespace `nsp` of the demo app (reading its `auth` event); the socket id.
    fn connect(&mut self, nsp: &str) -> String {
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        self.send(&format!("40{prefix}"));
        let ok = self.text();
        let sid = ok.split("\"sid\":\"").nth(1).and_then(|r| r.split('"').next());
        let sid = sid.unwrap_or_else(|| panic!("not a CONNECT answer: {ok:?}")).to_owned();
        self.expect(&format!(r#"42{prefix}["auth",{{}}]"#));
        sid
    }
}

/// `shardcast emit` publishes on the Redis of `shardcast serve --redis`: a client of the
/// server in the room gets the event with its JSON arguments; `--except`, `--volatile` and
/// `--nsp` select as they say; `--server-side` reaches the server's own listener.
#[test]
fn emit_reaches_a_client_of_serve() {
    let url = redis_url();
    let key = format!("cli-{}-emit", std::process::id());
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0", "--shards", "2", "--redis", &url, "--redis-key", &key]);
    let (mut child, port) = start(cmd);
    let (mut a, mut b) = (Ws::open(port), Ws::open(port));
    a.connect("/");
    let idb = b.connect("/");
    for ws in [&mut a, &mut b] {
        ws.send(r#"420["join","room"]"#);
        ws.expect("430[true]");
    }
    let k = ["--redis", &url, "--redis-key", &key];
    assert_eq!(
        emit(&[&k[..], &["--to", "room", "news", r#"{"a":1}"#, "2"]].concat()),
        (Some(0), String::new())
    );
    a.expect(r#"42["news",{"a":1},2]"#);
    b.expect(r#"42["news",{"a":1},2]"#);
    // JavaScript's JSON: 1e999 is Infinity, which JSON writes as null; negative numbers are
    // arguments, not flags
    let args = ["--to", "room", "--except", &idb, "--volatile", "js", "[1e999]", "-1.50", r#""é""#];
    assert_eq!(emit(&[&k[..], &args].concat()), (Some(0), String::new()));
    a.expect(r#"42["js",[null],-1.5,"é"]"#);
    b.connect("/custom");
    assert_eq!(emit(&[&k[..], &["--nsp", "custom", "ns"]].concat()).0, Some(0));
    b.expect(r#"42/custom,["ns"]"#);
    // the demo app relays what its server-side listener hears to its sockets on `/`
    assert_eq!(emit(&[&k[..], &["--server-side", "to-servers", "1"]].concat()).0, Some(0));
    a.expect(r#"42["server-side","to-servers",1]"#);
    b.expect(r#"42["server-side","to-servers",1]"#);
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

/// A JSON argument that is not JSON, a reserved event name or a bad URL: one line and exit
/// code 2, before Redis is asked; Redis away: one line and exit code 1.
#[test]
fn emit_errors_give_one_line() {
    let url = redis_url();
    for (args, want) in [
        (&["--redis", &url, "ev", "1", "{a:1}"][..], "shardcast: argument 2 is not JSON"),
        (&["--redis", &url, "ev", "[1,"], "shardcast: argument 1 is not JSON"),
        (&["--redis", &url, "ev", "1 2"], "shardcast: argument 1 is not JSON"),
        (&["--redis", &url, "connect"], r#"shardcast: "connect" is a reserved event name"#),
        (&["--redis", &url, "--server-side", "disconnect"], "shardcast: \"disconnect\" is"),
        (&["--redis", "http://x", "ev"], "shardcast: invalid Redis URL http://x: "),
        (&["--redis", &url, "--server-side", "--to", "r", "ev"], "shardcast: the argument"),
        (&["ev"], "shardcast: "),
    ] {
        let (code, err) = emit(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
        assert!(err.starts_with(want), "{args:?}: {err:?}");
    }
    let away = format!("redis://127.0.0.1:{}", free_port());
    // refused before connecting: a reserved name is a usage error wherever Redis is
    let (code, err) = emit(&["--redis", &away, "disconnecting"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "shardcast: \"disconnecting\" is a reserved event name\n")
    );
    let (code, err) = emit(&["--redis", &away, "ev", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with(&format!("shardcast: cannot reach Redis at {away}: ")), "{err:?}");
}

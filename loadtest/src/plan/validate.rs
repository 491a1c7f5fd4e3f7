//! From the command line to a validated, bounded [`Plan`]: every check of
//! [`Plan::from_command`], and the bounds a plan implies (its peak rate, the longest a run may
//! take).

use std::net::IpAddr;

use anyhow::{bail, Context};

use super::limits;
use super::{
    Command, Output, Plan, RampPlan, RecoverPlan, RoomArgs, Scenario, ServerAddr, Shape,
    TrafficArgs,
};

fn check_positive(name: &str, v: f64, max: f64) -> anyhow::Result<()> {
    if !v.is_finite() || v <= 0.0 || v > max {
        bail!("{name} must be > 0 and at most {max} (got {v})");
    }
    Ok(())
}

impl Plan {
    /// Validates the command line of a scenario into a plan.
    pub fn from_command(cmd: &Command) -> anyhow::Result<(Plan, Output)> {
        let (scenario, common) = match cmd {
            Command::Fanout(a) => (Scenario::Fanout, &a.common),
            Command::Recover(a) => (Scenario::Recover, &a.fanout.common),
            Command::ClusterFanout(a) => (Scenario::ClusterFanout, &a.common),
            Command::Lobby(a) => (Scenario::Lobby, &a.common),
            Command::Echo(a) => (Scenario::Echo, &a.common),
            Command::Connect(a) => (Scenario::Connect, &a.common),
            Command::Idle(a) => (Scenario::Idle, &a.common),
            Command::Ramp(a) => (Scenario::Ramp, &a.common),
            Command::Worker => bail!("`worker` is internal"),
            Command::Hostile(_) => bail!("`hostile` runs on its own (hostile::run)"),
            Command::Soak(_) => bail!("`soak` runs on its own (soak::run)"),
        };
        let c = common;
        let servers = servers(cmd, &c.url, c.allow_remote.as_deref())?;
        if !c.server_pid.is_empty() && c.server_pid.len() != servers.len() {
            bail!(
                "--server-pid is given once per --url, in the same order ({} URL(s), {} PID(s))",
                servers.len(),
                c.server_pid.len()
            );
        }
        check_positive("--duration", c.duration, limits::MAX_DURATION_S)?;
        if !(0.0..=60.0).contains(&c.drain) {
            bail!("--drain must be between 0 and 60 seconds");
        }
        if !(0.0..=300.0).contains(&c.warmup) {
            bail!("--warmup must be between 0 and 300 seconds");
        }
        if c.clients == 0 || c.clients > limits::MAX_CLIENTS {
            bail!("--clients must be between 1 and {}", limits::MAX_CLIENTS);
        }
        if !(0.0..=1.0).contains(&c.polling_share) {
            bail!("--polling-share must be between 0.0 and 1.0");
        }
        if c.workers > limits::MAX_WORKERS {
            bail!("--workers is at most {}", limits::MAX_WORKERS);
        }
        if c.source_ips > limits::MAX_SOURCE_IPS {
            bail!("--source-ips is at most {}", limits::MAX_SOURCE_IPS);
        }
        if c.source_ips > 0
            && !servers
                .iter()
                .all(|s| matches!(s.addr.ip(), IpAddr::V4(ip) if ip.octets()[0] == 127))
        {
            bail!("--source-ips needs IPv4 loopback targets (127.0.0.0/8)");
        }
        check_positive("--connect-timeout", c.connect_timeout, 600.0)?;
        check_positive("--setup-timeout", c.setup_timeout, 3600.0)?;
        if c.connect_concurrency == 0 || c.connect_concurrency > 100_000 {
            bail!("--connect-concurrency must be between 1 and 100000");
        }
        let mut path = c.path.clone();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        if path.bytes().any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#') {
            bail!("--path {path:?} is not a plain path");
        }
        if !c.namespace.starts_with('/') || c.namespace.contains(',') {
            bail!("--namespace must start with '/' and hold no ','");
        }
        let auth = match &c.auth {
            Some(a) => {
                let v: serde_json::Value =
                    serde_json::from_str(a).context("--auth is not valid JSON")?;
                if !v.is_object() {
                    bail!("--auth must be a JSON object");
                }
                Some(serde_json::to_string(&v)?)
            }
            None => None,
        };
        let workers_eff = c.workers.max(1);
        let threads = match c.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(t) => t.min(256),
            None => (crate::sys::cores_available() as u32 / workers_eff).max(1),
        };
        let mut plan = Plan {
            scenario,
            shape: scenario,
            url: servers[0].url.clone(),
            servers,
            path,
            namespace: c.namespace.clone(),
            auth,
            polling_share: c.polling_share,
            clients: c.clients,
            rooms: 0,
            publishers: 0,
            rate: 0.0,
            connect_rate: None,
            hold_s: 0.0,
            payload: 0,
            event: String::new(),
            join_event: "join".into(),
            publish_event: "publish".into(),
            room_prefix: "room-".into(),
            duration_s: c.duration,
            drain_s: c.drain,
            warmup_s: c.warmup,
            workers: c.workers,
            threads,
            source_ips: c.source_ips,
            reconnect: c.reconnect,
            connect_concurrency: c.connect_concurrency,
            connect_timeout_s: c.connect_timeout,
            setup_timeout_s: c.setup_timeout,
            ramp: None,
            recover: None,
            server_pids: c.server_pid.clone(),
            epoch_ns: 0,
        };
        let traffic = |plan: &mut Plan, t: &TrafficArgs, default_rate: f64, default_event: &str| {
            plan.rate = t.rate.unwrap_or(default_rate);
            plan.payload = t.payload;
            plan.event = t.event.clone().unwrap_or_else(|| default_event.to_owned());
        };
        let rooms = |plan: &mut Plan, r: &RoomArgs, default_rooms: u32| {
            plan.rooms = r.rooms.unwrap_or(default_rooms);
            plan.publishers = r.publishers;
            plan.join_event = r.join_event.clone();
            plan.publish_event = r.publish_event.clone();
            plan.room_prefix = r.room_prefix.clone();
        };
        let lobby_rooms = |clients: u32, size: u32| clients.div_ceil(size.max(1));
        match cmd {
            Command::Fanout(a) | Command::ClusterFanout(a) => {
                plan.shape = Scenario::Fanout;
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, 1);
            }
            Command::Lobby(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, lobby_rooms(c.clients, a.room_size));
                plan.publishers = 0;
            }
            Command::Recover(a) => {
                plan.shape = Scenario::Fanout;
                traffic(&mut plan, &a.fanout.traffic, 10.0, "news");
                rooms(&mut plan, &a.fanout.rooms, 1);
                let drop_at = a.drop_at.unwrap_or(c.duration / 2.0);
                if !(drop_at > 0.0 && drop_at < c.duration) {
                    bail!("--drop-at must be inside the measured phase (0 to --duration)");
                }
                if a.down == 0 || a.down > 600_000 {
                    bail!("--down must be between 1 and 600000 ms");
                }
                if c.polling_share > 0.0 {
                    bail!("recover cuts WebSocket connections: --polling-share must be 0");
                }
                if c.reconnect {
                    bail!("recover reconnects by itself: --reconnect is not for it");
                }
                plan.recover =
                    Some(RecoverPlan { drop_at_s: drop_at, down_s: a.down as f64 / 1000.0 });
            }
            Command::Echo(a) => traffic(&mut plan, &a.traffic, 1.0, "message-with-ack"),
            Command::Connect(a) => {
                if let Some(r) = a.rate {
                    check_positive("--rate", r, 1_000_000.0)?;
                }
                if !(0.0..=limits::MAX_DURATION_S).contains(&a.hold) {
                    bail!("--hold must be between 0 and {} seconds", limits::MAX_DURATION_S);
                }
                plan.connect_rate = a.rate;
                plan.hold_s = a.hold;
            }
            Command::Idle(_) => {}
            Command::Ramp(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                plan.shape = match a.shape {
                    Shape::Fanout | Shape::ClusterFanout => {
                        rooms(&mut plan, &a.rooms, 1);
                        Scenario::Fanout
                    }
                    Shape::Lobby => {
                        rooms(&mut plan, &a.rooms, lobby_rooms(c.clients, a.room_size));
                        plan.publishers = 0;
                        Scenario::Lobby
                    }
                };
                if !(a.step_factor.is_finite() && a.step_factor > 1.0 && a.step_factor <= 100.0) {
                    bail!("--step-factor must be > 1 and at most 100");
                }
                if a.steps == 0 || a.steps > limits::MAX_STEPS {
                    bail!("--steps must be between 1 and {}", limits::MAX_STEPS);
                }
                if a.refine > limits::MAX_STEPS {
                    bail!("--refine must be at most {}", limits::MAX_STEPS);
                }
                check_positive("--p99-ms", a.p99_ms, 3_600_000.0)?;
                if !(0.0..=1.0).contains(&a.max_loss) {
                    bail!("--max-loss must be between 0.0 and 1.0");
                }
                if f64::from(a.steps + a.refine) * (c.duration + c.drain) > limits::MAX_DURATION_S {
                    bail!(
                        "a ramp of {} steps of {} s (+{} s drain) exceeds {} s in total",
                        a.steps + a.refine,
                        c.duration,
                        c.drain,
                        limits::MAX_DURATION_S
                    );
                }
                plan.ramp = Some(RampPlan {
                    step_factor: a.step_factor,
                    steps: a.steps,
                    p99_ms: a.p99_ms,
                    max_loss: a.max_loss,
                    refine: a.refine,
                });
            }
            Command::Worker | Command::Hostile(_) | Command::Soak(_) => unreachable!(),
        }
        plan.validate_traffic()?;
        let out = Output { json: c.json.clone(), report: c.report.clone(), quiet: c.quiet };
        Ok((plan, out))
    }

    fn validate_traffic(&self) -> anyhow::Result<()> {
        if matches!(self.shape, Scenario::Fanout | Scenario::Lobby | Scenario::Echo) {
            check_positive("--rate", self.rate, 1_000_000.0)?;
            if self.payload > limits::MAX_PAYLOAD {
                bail!("--payload is at most {} bytes", limits::MAX_PAYLOAD);
            }
            if self.event.is_empty() {
                bail!("--event must not be empty");
            }
        }
        if matches!(self.shape, Scenario::Fanout | Scenario::Lobby) {
            if self.rooms == 0 || self.rooms > self.clients {
                bail!("--rooms must be between 1 and --clients ({})", self.clients);
            }
            if self.shape == Scenario::Fanout
                && (self.publishers == 0
                    || u64::from(self.publishers) * u64::from(self.rooms) > 100_000)
            {
                bail!("--publishers must be at least 1, and rooms x publishers at most 100000");
            }
            let n = self.servers.len() as u64;
            if n > 1 && u64::from(self.clients) < u64::from(self.rooms) * n {
                bail!(
                    "--clients ({}) must be at least --rooms x servers ({} x {n}): every room has \
                     subscribers on every server",
                    self.clients,
                    self.rooms
                );
            }
            if self.connections() > limits::MAX_CLIENTS {
                bail!("{} connections in all: at most {}", self.connections(), limits::MAX_CLIENTS);
            }
        }
        let peak = self.peak_rate();
        let sends = match self.shape {
            Scenario::Fanout | Scenario::Lobby => peak * f64::from(self.rooms),
            Scenario::Echo => peak * f64::from(self.clients),
            _ => 0.0,
        };
        if sends > limits::MAX_SEND_RATE {
            bail!(
                "{sends:.0} messages sent per second (rate x rooms, or rate x clients for echo) \
                 exceeds the bound of {}",
                limits::MAX_SEND_RATE
            );
        }
        Ok(())
    }

    /// The name of the traffic shape (`ramp`'s report says which it stepped up).
    pub fn shape_name(&self) -> &'static str {
        if self.is_cluster() {
            Scenario::ClusterFanout.name()
        } else {
            self.shape.name()
        }
    }

    /// The highest rate the run reaches (the last ramp step's).
    pub fn peak_rate(&self) -> f64 {
        match &self.ramp {
            Some(r) => self.rate * r.step_factor.powi(r.steps as i32 - 1),
            None => self.rate,
        }
    }

    /// Longest the whole run may take, setup included: the hard bound of a worker's life.
    pub fn max_wall_s(&self) -> f64 {
        let steps = self.ramp.as_ref().map_or(1, |r| r.steps + r.refine);
        let warmup = if self.warmup_s > 0.0 { self.warmup_s + self.drain_s + 5.0 } else { 0.0 };
        self.setup_timeout_s
            + warmup
            + f64::from(steps) * (self.duration_s + self.drain_s + self.connect_timeout_s + 5.0)
            + 30.0
    }
}

/// The servers of a command line: one `--url`, or two or more for a cluster shape, or either
/// for `recover` (one server, or a cluster whose subscribers come back on the next server).
fn servers(
    cmd: &Command,
    urls: &[String],
    allow_remote: Option<&str>,
) -> anyhow::Result<Vec<ServerAddr>> {
    enum Takes {
        One,
        Cluster,
        OneOrCluster,
    }
    let takes = match cmd {
        Command::ClusterFanout(_) => Takes::Cluster,
        Command::Ramp(a) if a.shape == Shape::ClusterFanout => Takes::Cluster,
        Command::Recover(_) => Takes::OneOrCluster,
        _ => Takes::One,
    };
    match (takes, urls.len()) {
        (Takes::One, 1) => {}
        (Takes::One, _) => bail!(
            "--url is given once here ({} given); several servers: cluster-fanout, ramp \
             --shape cluster-fanout, or recover",
            urls.len()
        ),
        (Takes::Cluster, 2..=limits::MAX_SERVERS) => {}
        (Takes::Cluster, n) => {
            bail!("a cluster takes 2 to {} --url (one per server; {n} given)", limits::MAX_SERVERS)
        }
        (Takes::OneOrCluster, 1..=limits::MAX_SERVERS) => {}
        (Takes::OneOrCluster, n) => bail!(
            "recover takes one --url, or 2 to {} for a cluster (one per server; {n} given)",
            limits::MAX_SERVERS
        ),
    }
    let mut out: Vec<ServerAddr> = Vec::with_capacity(urls.len());
    for url in urls {
        let t = crate::target::parse(url, allow_remote)?;
        if out.iter().any(|s| s.addr == t.addr) {
            bail!("--url {url}: {} is given twice (one URL per server)", t.addr);
        }
        out.push(ServerAddr { url: url.clone(), host_header: t.host_header(), addr: t.addr });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::plan;
    use crate::plan::Scenario;

    #[test]
    fn cluster_plans() {
        let (a, b) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
        let rest = ["-c", "6", "--rooms", "3", "-d", "1"];
        let with = |args: &[&str]| {
            let mut v = args.to_vec();
            v.extend(rest);
            plan(&v)
        };
        // The flag repeated, or the values separated by commas: the same plan.
        let p = with(&["cluster-fanout", "--url", a, "--url", b, "--server-pid", "10,20"]).unwrap();
        let ab = format!("{a},{b}");
        let q = with(&["cluster-fanout", "--url", &ab, "--server-pid", "10", "--server-pid", "20"])
            .unwrap();
        for p in [&p, &q] {
            assert_eq!((p.scenario, p.shape), (Scenario::ClusterFanout, Scenario::Fanout));
            assert_eq!(p.servers.iter().map(|s| s.addr.port()).collect::<Vec<_>>(), [1, 2]);
            assert_eq!(p.server_pids, [10, 20]);
            assert_eq!(p.url, a);
            assert!(p.is_cluster());
        }
        // Each room's members take the servers in turn; the publishers are on the first.
        assert_eq!((0..9).map(|g| p.server_of(g)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1, 0, 0, 0]);
        assert_eq!(p.connections(), 9);
        let r = with(&["ramp", "--shape", "cluster-fanout", "--url", &ab]).unwrap();
        assert_eq!(
            (r.scenario, r.shape, r.shape_name()),
            (Scenario::Ramp, Scenario::Fanout, "cluster-fanout")
        );
        let f = with(&["fanout", "--url", a, "--server-pid", "10"]).unwrap();
        assert!(!f.is_cluster());
        assert_eq!((f.server_of(0), f.server_of(5), f.shape_name()), (0, 0, "fanout"));
        for bad in [
            vec!["cluster-fanout", "--url", a],
            vec!["fanout", "--url", a, "--url", b],
            vec!["lobby", "--url", &ab],
            vec!["ramp", "--shape", "cluster-fanout", "--url", a],
            vec!["cluster-fanout", "--url", a, "--url", "http://localhost:1"],
            vec!["cluster-fanout", "--url", &ab, "--server-pid", "10"],
            vec!["cluster-fanout", "--url", &ab, "--server-pid", "1,2,3"],
            vec!["fanout", "--url", a, "--server-pid", "1,2"],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
        // Every room needs a subscriber on every server.
        let few = ["cluster-fanout", "--url", &ab, "-c", "5", "--rooms", "3", "-d", "1"];
        assert!(plan(&few).is_err());
    }

    #[test]
    fn recover_plans() {
        let (a, b, c) = ("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3");
        let rest = ["-c", "9", "--rooms", "3", "-d", "2"];
        let with = |args: &[&str]| {
            let mut v = vec!["recover"];
            v.extend(args);
            v.extend(rest);
            plan(&v)
        };
        // One server: it comes back where it was.
        let one = with(&["--url", a]).unwrap();
        assert!(!one.is_cluster());
        assert_eq!((one.comeback_server(0), one.server_of(4)), (0, 0));
        // A cluster: spread as cluster-fanout spreads, publishers on the first, each
        // comeback on the next server.
        let abc = format!("{a},{b},{c}");
        let three = with(&["--url", &abc]).unwrap();
        assert_eq!((three.scenario, three.shape), (Scenario::Recover, Scenario::Fanout));
        assert!(three.is_cluster() && three.recover.is_some());
        let on: Vec<usize> = (0..12).map(|g| three.server_of(g)).collect();
        assert_eq!(on, [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0]);
        assert_eq!((0..3).map(|s| three.comeback_server(s)).collect::<Vec<_>>(), [1, 2, 0]);
        for bad in [
            vec!["--url", a, "--url", a],
            vec!["--url", &abc, "--reconnect"],
            vec!["--url", &abc, "--server-pid", "1,2"],
            // 3 rooms x 4 servers > 9 subscribers.
            vec!["--url", &abc, "--url", "http://127.0.0.1:4"],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bounds_and_safety() {
        assert!(plan(&["fanout", "--url", "http://10.1.2.3:3000", "-c", "1", "-d", "1"]).is_err());
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1", "-d", "0"]).is_err());
        assert!(
            plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1", "-d", "99999"]).is_err()
        );
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "9999999", "-d", "1"])
            .is_err());
        assert!(plan(&["fanout", "--url", "http://127.0.0.1:3000", "-c", "1"]).is_err());
        assert!(plan(&[
            "fanout",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "2",
            "--rooms",
            "3",
            "-d",
            "1"
        ])
        .is_err());
        assert!(plan(&[
            "echo",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "1",
            "-d",
            "1",
            "--auth",
            "[1]"
        ])
        .is_err());
        assert!(plan(&[
            "ramp",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "1",
            "-d",
            "1000",
            "--steps",
            "8"
        ])
        .is_err());
        let p = plan(&["lobby", "--url", "http://127.0.0.1:3000", "-c", "25", "-d", "1"]).unwrap();
        assert_eq!(p.rooms, 3);
        assert_eq!((0..3).map(|r| p.lobby_members(r)).sum::<u32>(), 25);
        let p = plan(&[
            "idle",
            "--url",
            "http://127.0.0.1:3000",
            "-c",
            "3",
            "-d",
            "1",
            "--source-ips",
            "300",
        ])
        .unwrap();
        assert_eq!(p.source_ip(256), Some("127.0.1.1".parse().unwrap()));
    }
}

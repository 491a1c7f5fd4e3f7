//! From the command line to a validated, bounded [`Plan`]: every check of
//! [`Plan::from_command`], and the bounds a plan implies (its peak rate, the longest a run may
//! take).

use std::net::IpAddr;

use anyhow::{bail, Context};

use super::limits;
use super::{Command, Output, Plan, RampPlan, RoomArgs, Scenario, Shape, TrafficArgs};

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
            Command::Lobby(a) => (Scenario::Lobby, &a.common),
            Command::Echo(a) => (Scenario::Echo, &a.common),
            Command::Connect(a) => (Scenario::Connect, &a.common),
            Command::Idle(a) => (Scenario::Idle, &a.common),
            Command::Ramp(a) => (Scenario::Ramp, &a.common),
            Command::Worker => bail!("`worker` is internal"),
        };
        let c = common;
        let target = crate::target::parse(&c.url, c.allow_remote.as_deref())?;
        check_positive("--duration", c.duration, limits::MAX_DURATION_S)?;
        if !(0.0..=60.0).contains(&c.drain) {
            bail!("--drain must be between 0 and 60 seconds");
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
        if c.source_ips > 0 && !matches!(target.addr.ip(), IpAddr::V4(ip) if ip.octets()[0] == 127)
        {
            bail!("--source-ips needs an IPv4 loopback target (127.0.0.0/8)");
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
            url: c.url.clone(),
            host_header: target.host_header(),
            addr: target.addr,
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
            workers: c.workers,
            threads,
            source_ips: c.source_ips,
            reconnect: c.reconnect,
            connect_concurrency: c.connect_concurrency,
            connect_timeout_s: c.connect_timeout,
            setup_timeout_s: c.setup_timeout,
            ramp: None,
            server_pid: c.server_pid,
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
            Command::Fanout(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, 1);
            }
            Command::Lobby(a) => {
                traffic(&mut plan, &a.traffic, 10.0, "news");
                rooms(&mut plan, &a.rooms, lobby_rooms(c.clients, a.room_size));
                plan.publishers = 0;
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
                    Shape::Fanout => {
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
                check_positive("--p99-ms", a.p99_ms, 3_600_000.0)?;
                if !(0.0..=1.0).contains(&a.max_loss) {
                    bail!("--max-loss must be between 0.0 and 1.0");
                }
                if f64::from(a.steps) * (c.duration + c.drain) > limits::MAX_DURATION_S {
                    bail!(
                        "a ramp of {} steps of {} s (+{} s drain) exceeds {} s in total",
                        a.steps,
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
                });
            }
            Command::Worker => unreachable!(),
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

    /// The highest rate the run reaches (the last ramp step's).
    pub fn peak_rate(&self) -> f64 {
        match &self.ramp {
            Some(r) => self.rate * r.step_factor.powi(r.steps as i32 - 1),
            None => self.rate,
        }
    }

    /// Longest the whole run may take, setup included: the hard bound of a worker's life.
    pub fn max_wall_s(&self) -> f64 {
        let steps = self.ramp.as_ref().map_or(1, |r| r.steps);
        self.setup_timeout_s
            + f64::from(steps) * (self.duration_s + self.drain_s + self.connect_timeout_s + 5.0)
            + 30.0
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::tests::plan;

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

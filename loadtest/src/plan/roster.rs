//! The deterministic roster: how many connections and publishers a plan has, what connection
//! `g` does ([`Role`], [`Publish`]), at which rate it publishes, which server it connects to,
//! which worker runs it, whether it polls and which source address it binds.

use std::net::{IpAddr, Ipv4Addr};

use super::{Plan, Scenario};

impl Plan {
    /// Number of connections (subscribers plus separate publishers).
    pub fn connections(&self) -> u32 {
        match self.shape {
            Scenario::Fanout => self.clients + self.rooms * self.publishers,
            _ => self.clients,
        }
    }

    /// Number of distinct publishers (publisher ids are `0..publisher_count()`).
    pub fn publisher_count(&self) -> u32 {
        match self.shape {
            Scenario::Fanout => self.rooms * self.publishers,
            Scenario::Lobby | Scenario::Echo => self.clients,
            _ => 0,
        }
    }

    /// Worker processes the clients are spread over (in-process counts as one).
    pub fn worker_slots(&self) -> u32 {
        self.workers.max(1)
    }

    /// The name of room `r`.
    pub fn room_name(&self, r: u32) -> String {
        format!("{}{r}", self.room_prefix)
    }

    /// Members of room `r` in lobby (clients spread round-robin over rooms).
    pub fn lobby_members(&self, r: u32) -> u32 {
        self.clients / self.rooms + u32::from(r < self.clients % self.rooms)
    }

    /// What connection `g` (0-based, over all workers) does.
    pub fn role(&self, g: u32) -> Role {
        match self.shape {
            Scenario::Fanout if g < self.clients => {
                Role { join: Some(g % self.rooms), publish: None }
            }
            Scenario::Fanout => {
                let p = g - self.clients;
                Role { join: None, publish: Some(Publish { id: p, room: p / self.publishers }) }
            }
            Scenario::Lobby => {
                let room = g % self.rooms;
                Role { join: Some(room), publish: Some(Publish { id: g, room }) }
            }
            Scenario::Echo => Role { join: None, publish: Some(Publish { id: g, room: 0 }) },
            _ => Role { join: None, publish: None },
        }
    }

    /// Messages per second of one publisher at room rate `rate`.
    pub fn publisher_rate(&self, p: &Publish, rate: f64) -> f64 {
        match self.shape {
            Scenario::Fanout => rate / f64::from(self.publishers),
            Scenario::Lobby => rate / f64::from(self.lobby_members(p.room)),
            _ => rate,
        }
    }

    /// Whether the plan spreads its subscribers over several servers (`cluster-fanout`, and
    /// `recover` with several `--url`).
    pub fn is_cluster(&self) -> bool {
        self.servers.len() > 1
    }

    /// Which server (index into `servers`) connection `g` connects to: publishers to the
    /// first; in a cluster, the members of each room take the servers in turn, so each room's
    /// subscribers are split as evenly as can be.
    pub fn server_of(&self, g: u32) -> usize {
        let n = self.servers.len() as u32;
        if n <= 1 || g >= self.clients {
            return 0;
        }
        (g / self.rooms.max(1) % n) as usize
    }

    /// `recover`: the server a subscriber cut from server `s` comes back on: in a cluster the
    /// next one (`(s + 1) % servers`), so that every comeback crosses servers; with one
    /// server, that one.
    pub fn comeback_server(&self, s: usize) -> usize {
        (s + 1) % self.servers.len().max(1)
    }

    /// Which worker runs connection `g`.
    pub fn worker_of(&self, g: u32) -> u32 {
        g % self.worker_slots()
    }

    /// Whether connection `g` uses long-polling: exactly `polling_share` of them, spread evenly.
    pub fn is_polling(&self, g: u32) -> bool {
        let s = self.polling_share;
        ((f64::from(g) + 1.0) * s + 1e-9).floor() > (f64::from(g) * s + 1e-9).floor()
    }

    /// The source address connection `g` binds, if any.
    pub fn source_ip(&self, g: u32) -> Option<IpAddr> {
        if self.source_ips == 0 {
            return None;
        }
        let n = u32::from(Ipv4Addr::new(127, 0, 0, 1)) + g % self.source_ips;
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }
}

/// One connection's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Room to join before measuring.
    pub join: Option<u32>,
    /// Publishing (or echo) job.
    pub publish: Option<Publish>,
}

/// A publisher: its id and the room it publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Publisher id, carried in every message.
    pub id: u32,
    /// Target room.
    pub room: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::plan;

    #[test]
    fn fanout_roster() {
        let p = plan(&[
            "fanout",
            "--url",
            "http://127.0.0.1:3000",
            "--clients",
            "10",
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--rate",
            "10",
            "--duration",
            "1",
        ])
        .unwrap();
        assert_eq!(p.connections(), 14);
        assert_eq!(p.role(3), Role { join: Some(1), publish: None });
        assert_eq!(p.role(13), Role { join: None, publish: Some(Publish { id: 3, room: 1 }) });
        assert_eq!(p.publisher_rate(&Publish { id: 3, room: 1 }, 10.0), 5.0);
    }

    #[test]
    fn polling_share_is_exact() {
        let mut p = plan(&["idle", "--url", "http://localhost:1", "-c", "100", "-d", "1"]).unwrap();
        for (share, want) in [(0.0, 0), (0.5, 50), (0.25, 25), (1.0, 100), (0.333, 33)] {
            p.polling_share = share;
            assert_eq!((0..100).filter(|&g| p.is_polling(g)).count(), want, "{share}");
        }
    }
}

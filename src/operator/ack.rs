//! What a broadcast with acknowledgements has collected: the deliveries each shard here
//! reported and each reply, and with a cluster adapter how many other servers were asked,
//! the client count each reported and their clients' replies. Complete, as in socket.io,
//! when every shard and server reported and every counted client answered (a socket of
//! this server that disconnected counts as answered: it never will).

use std::collections::HashMap;

use ahash::AHashSet;

use super::{AckResponses, BroadcastAckError};
use crate::ns::args::Args;
use crate::ns::socket::AckEvent;
use crate::proto::sid::Sid;

#[derive(Default)]
pub(super) struct AckCollect {
    delivered_shards: usize,
    expected: AHashSet<Sid>,
    replies: HashMap<Sid, Args>,
    gone: AHashSet<Sid>,
    /// Other servers asked, per remote request (`None` until known).
    servers: Vec<usize>,
    /// Other servers that reported their client count.
    counted_servers: usize,
    remote_expected: usize,
    remote_replies: Vec<Args>,
    /// The adapter stopped listening to the other servers.
    remote_expired: bool,
}

impl AckCollect {
    /// Takes one report.
    pub(super) fn add(&mut self, ev: AckEvent) {
        match ev {
            AckEvent::Delivered(sids) => {
                self.delivered_shards += 1;
                self.expected.extend(sids);
            }
            AckEvent::Reply(sid, args) => {
                self.replies.entry(sid).or_insert(args);
            }
            AckEvent::Gone(sid) => {
                self.gone.insert(sid);
            }
            AckEvent::Servers(n) => self.servers.push(n),
            AckEvent::RemoteDelivered(n) => {
                self.counted_servers += 1;
                self.remote_expected += n;
            }
            AckEvent::RemoteReply(args) => self.remote_replies.push(args),
            AckEvent::RemoteExpired => self.remote_expired = true,
        }
    }

    fn remote_complete(&self, remote_asks: usize) -> bool {
        self.servers.len() == remote_asks
            && self.counted_servers == self.servers.iter().sum::<usize>()
            && self.remote_replies.len() >= self.remote_expected
    }

    /// Every report is in: `shards` shards here, `remote_asks` requests to other servers.
    pub(super) fn done(&self, shards: usize, remote_asks: usize) -> bool {
        let local = self.delivered_shards == shards
            && self.expected.iter().all(|s| self.replies.contains_key(s) || self.gone.contains(s));
        local && (self.remote_expired || self.remote_complete(remote_asks))
    }

    /// The result: every reply, or the timeout with what did arrive.
    pub(super) fn finish(
        mut self,
        timed_out: bool,
        remote_asks: usize,
    ) -> Result<AckResponses, BroadcastAckError> {
        let remote_complete = self.remote_complete(remote_asks);
        let mut responses: AckResponses =
            Vec::with_capacity(self.replies.len() + self.remote_replies.len());
        let mut missing = Vec::new();
        for sid in &self.expected {
            match self.replies.remove(sid) {
                Some(args) => responses.push((Some(sid.as_str().to_owned()), args)),
                None => missing.push(sid.as_str().to_owned()),
            }
        }
        let silent_servers =
            self.servers.iter().sum::<usize>().saturating_sub(self.counted_servers);
        // A request whose server count never came: at least one server did not answer.
        let unknown = remote_asks.saturating_sub(self.servers.len());
        let missing_remote = if remote_complete {
            0
        } else {
            (self.remote_expected.saturating_sub(self.remote_replies.len())
                + silent_servers
                + unknown)
                .max(1)
        };
        responses.extend(self.remote_replies.into_iter().map(|a| (None, a)));
        if missing.is_empty() && missing_remote == 0 && !timed_out {
            Ok(responses)
        } else {
            Err(BroadcastAckError::Timeout { responses, missing, missing_remote })
        }
    }
}

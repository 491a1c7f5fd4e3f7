//! The sessions of connection state recovery as `@socket.io/redis-streams-adapter` keeps
//! them in Redis: `SET {prefix}{pid} base64(msgpack{sid,pid,rooms,data}) PX window` when a
//! socket's connection drops, and the restore, in two steps (see
//! [`crate::ns::cluster_recovery`]): the session taken (`GET` + `DEL` in one transaction,
//! its offset checked to be still in the stream), then the broadcasts after the offset that
//! reach it, read in batches.

use std::time::Duration;

use super::streams::entries;
use super::MAX_DEPTH;
use crate::adapter::cluster_wire::ClusterMessage;
use crate::adapter::streams_wire;
use crate::proto::offset::EntryId;

/// Most entries one `XRANGE` of a restore returns: restores read the stream in batches (the
/// reference asks for everything after the offset at once).
const RESTORE_BATCH: usize = 500;

/// Keeps `session` for `window` (`SET {prefix}{pid} base64(msgpack) PX ms`), as the
/// adapter's `persistSession`.
pub(super) fn persist_cmd(
    prefix: &str,
    session: &streams_wire::Session,
    window: Duration,
) -> redis::Cmd {
    let key = streams_wire::session_key(prefix, &session.pid);
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut c = redis::cmd("SET");
    c.arg(key).arg(session.encode()).arg("PX").arg(ms);
    c
}

/// Takes session `pid` (it is gone afterwards, found or not, as with the reference's
/// `GET` + `DEL` in one transaction). `None` (a new session for the client) when the
/// session is unknown or unreadable, or the offset's entry left the stream (`MAXLEN`).
pub(super) async fn take(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    prefix: &str,
    pid: &str,
    offset: EntryId,
) -> redis::RedisResult<Option<streams_wire::Session>> {
    let key = streams_wire::session_key(prefix, pid);
    let (stored, _): (Option<Vec<u8>>, i64) =
        redis::pipe().atomic().cmd("GET").arg(&key).cmd("DEL").arg(&key).query_async(conn).await?;
    let Some(stored) = stored else { return Ok(None) };
    let at = offset.to_string();
    let there: redis::Value =
        redis::cmd("XRANGE").arg(stream).arg(&at).arg(&at).query_async(conn).await?;
    if entries(there).is_empty() {
        return Ok(None);
    }
    Ok(streams_wire::Session::decode(&stored, MAX_DEPTH).ok())
}

/// A restore waiting for what it missed: after `offset`, in namespace `nsp`, for a session
/// in `rooms` (its own id among them).
pub(super) struct Wanted<'a> {
    pub offset: EntryId,
    pub nsp: &'a str,
    pub rooms: &'a [String],
}

/// What restores missed, read once for all of them.
#[derive(Debug)]
pub(super) struct Missed {
    /// The broadcasts that reach at least one of them, in the stream's order, with their
    /// entry ids (each read and decoded once, however many restores it reaches).
    pub entries: Vec<(EntryId, ClusterMessage)>,
    /// Per restore (in the order asked): the indexes in `entries` of what it missed, or
    /// `None` when that is more than `max`.
    pub reach: Vec<Option<Vec<usize>>>,
    /// The last entry read (the smallest offset when there was none after it).
    pub last: EntryId,
    /// What `mark` returned just before the last `XRANGE` was sent.
    pub mark: u64,
}

/// Reads the stream once, from after the smallest offset of `wanted` to its end, and finds
/// for each restore the broadcasts after its offset that reach it (the adapter's restore
/// filter, [`streams_wire::replays_to`]). A burst of clients coming back at once costs one
/// read of the stream, not one each. `mark` is called before each `XRANGE` is sent (the
/// caller learns what this server had sent before the read that ended it).
pub(super) async fn missed(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    wanted: &[Wanted<'_>],
    max: usize,
    mut mark: impl FnMut() -> u64,
) -> redis::RedisResult<Missed> {
    let from = wanted.iter().map(|w| w.offset).min().unwrap_or(EntryId { ms: 0, seq: 0 });
    let mut out = Missed {
        entries: Vec::new(),
        reach: wanted.iter().map(|_| Some(Vec::new())).collect(),
        last: from,
        mark: 0,
    };
    if wanted.is_empty() {
        return Ok(out);
    }
    while let Some(start) = out.last.next() {
        out.mark = mark();
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start.to_string())
            .arg("+")
            .arg("COUNT")
            .arg(RESTORE_BATCH)
            .query_async(conn)
            .await?;
        let batch = entries(v);
        let n = batch.len();
        for (id, fields) in batch {
            let Some(id) = EntryId::parse(&id) else { continue };
            out.last = out.last.max(id);
            let Ok(m) = streams_wire::decode_entry(&fields, MAX_DEPTH) else { continue };
            let mut kept = None;
            for (w, reach) in wanted.iter().zip(out.reach.iter_mut()) {
                let Some(list) = reach else { continue };
                if id <= w.offset || !streams_wire::replays_to(&m, w.nsp, w.rooms) {
                    continue;
                }
                if list.len() >= max {
                    *reach = None;
                    continue;
                }
                list.push(*kept.get_or_insert(out.entries.len()));
            }
            if kept.is_some() {
                out.entries.push((id, m));
            }
        }
        if n < RESTORE_BATCH {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Against the Redis at 127.0.0.1:6379 (`REDIS_URL` to use another), a stream per test.
    use super::*;
    use crate::adapter::cluster_wire::{Body, ClusterMessage, Flags, Opts};
    use crate::ns::Room;

    fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn broadcast(rooms: &[&str], except: &[&str], volatile: bool, event: &str) -> ClusterMessage {
        let list = |l: &[&str]| l.iter().map(|r| Room::from(*r)).collect();
        ClusterMessage {
            uid: "u1".into(),
            nsp: "/".into(),
            body: Body::Broadcast {
                opts: Opts {
                    rooms: list(rooms),
                    except: list(except),
                    flags: Flags { volatile, ..Flags::default() },
                },
                event: event.into(),
                args: Default::default(),
                request_id: None,
            },
        }
    }

    async fn xadd(
        c: &mut redis::aio::MultiplexedConnection,
        stream: &str,
        m: &ClusterMessage,
    ) -> String {
        let f = streams_wire::entry_fields(m);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("*")
            .arg("uid")
            .arg(f.uid)
            .arg("nsp")
            .arg(f.nsp)
            .arg("type")
            .arg(f.kind);
        if let Some(d) = f.data {
            cmd.arg("data").arg(d.as_ref());
        }
        cmd.query_async(c).await.unwrap()
    }

    fn event_of(m: &ClusterMessage) -> &str {
        match &m.body {
            Body::Broadcast { event, .. } => event,
            _ => "",
        }
    }

    async fn persist(
        c: &mut redis::aio::MultiplexedConnection,
        prefix: &str,
        s: &streams_wire::Session,
        window: Duration,
    ) {
        let _: () = persist_cmd(prefix, s, window).query_async(c).await.unwrap();
    }

    #[test]
    fn a_kept_session_is_taken_once_and_reads_the_broadcasts_it_missed() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = redis::Client::open(url()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let stream = format!("rs-{}-restore", std::process::id());
            let prefix = format!("rs-{}-sess:", std::process::id());
            let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
            let last =
                EntryId::parse(&xadd(&mut c, &stream, &broadcast(&[], &[], false, "seen")).await)
                    .unwrap();
            let session = streams_wire::Session {
                sid: "S1".into(),
                pid: "P1".into(),
                rooms: vec!["S1".into(), "r1".into()],
                data: serde_json::json!({"k": 1}),
            };
            persist(&mut c, &prefix, &session, Duration::from_secs(10)).await;
            for m in [
                broadcast(&["r1"], &[], false, "to-r1"),
                broadcast(&["r2"], &[], false, "to-r2"),
                broadcast(&[], &["r1"], false, "except-r1"),
                broadcast(&[], &[], true, "volatile"),
                broadcast(&["S1"], &[], false, "to-it"),
                broadcast(&[], &[], false, "everyone"),
            ] {
                xadd(&mut c, &stream, &m).await;
            }
            // More than a batch, to read past the first XRANGE.
            for _ in 0..RESTORE_BATCH {
                xadd(&mut c, &stream, &broadcast(&["r2"], &[], false, "filler")).await;
            }
            let end = xadd(&mut c, &stream, &broadcast(&["r1"], &[], false, "last")).await;
            let tail = xadd(&mut c, &stream, &broadcast(&["r2"], &[], false, "tail")).await;
            let got = take(&mut c, &stream, &prefix, "P1", last).await.unwrap().expect("taken");
            assert_eq!(got, session);
            let mut marks = 0;
            let one = |offset| [Wanted { offset, nsp: "/", rooms: &got.rooms }];
            let m = missed(&mut c, &stream, &one(last), 10_000, || {
                marks += 1;
                marks
            })
            .await
            .unwrap();
            let mine = m.reach[0].clone().expect("not too many");
            let events: Vec<&str> = mine.iter().map(|&i| event_of(&m.entries[i].1)).collect();
            assert_eq!(events, ["to-r1", "to-it", "everyone", "last"]);
            assert_eq!(m.entries[mine[3]].0.to_string(), end);
            // The last entry read, not the last one that reaches it; two batches.
            assert_eq!(m.last.to_string(), tail);
            assert_eq!((m.mark, marks), (2, 2));
            assert!(m.entries.windows(2).all(|w| w[0].0 < w[1].0));
            // More than `max` that reach it: none.
            let over = missed(&mut c, &stream, &one(last), 3, || 0).await.unwrap();
            assert!(over.reach[0].is_none());
            // Nothing after the offset: the offset is the last entry read.
            let t = EntryId::parse(&tail).unwrap();
            let none = missed(&mut c, &stream, &one(t), 10, || 0).await.unwrap();
            assert_eq!(none.reach[0].as_deref(), Some(&[][..]));
            assert_eq!(none.last, t);
            // Several restores read the stream once: each gets what is after its own offset
            // and reaches its rooms; an entry they share is decoded once.
            let (r2, all) = (vec!["S2".to_owned(), "r2".to_owned()], vec!["S3".to_owned()]);
            let end_id = EntryId::parse(&end).unwrap();
            let many = [
                Wanted { offset: last, nsp: "/", rooms: &got.rooms },
                Wanted { offset: end_id, nsp: "/", rooms: &r2 },
                Wanted { offset: last, nsp: "/", rooms: &all },
                Wanted { offset: last, nsp: "/other", rooms: &got.rooms },
            ];
            let m = missed(&mut c, &stream, &many, 10_000, || 0).await.unwrap();
            let names = |k: usize| -> Vec<&str> {
                m.reach[k].as_ref().unwrap().iter().map(|&i| event_of(&m.entries[i].1)).collect()
            };
            assert_eq!(names(0), ["to-r1", "to-it", "everyone", "last"]);
            assert_eq!(names(1), ["tail"], "only after its own offset");
            assert_eq!(names(2), ["except-r1", "everyone"]);
            assert!(names(3).is_empty(), "another namespace");
            assert_eq!(m.entries.iter().filter(|(_, e)| event_of(e) == "everyone").count(), 1);
            assert_eq!(m.last.to_string(), tail);
            // Taken: a second take finds nothing; so does an unknown pid.
            assert!(take(&mut c, &stream, &prefix, "P1", last).await.unwrap().is_none());
            assert!(take(&mut c, &stream, &prefix, "nope", last).await.unwrap().is_none());
            // An offset that left the stream: the session is taken and not restored.
            persist(&mut c, &prefix, &session, Duration::from_secs(10)).await;
            let gone = EntryId { ms: 1, seq: 0 };
            assert!(take(&mut c, &stream, &prefix, "P1", gone).await.unwrap().is_none());
            assert!(take(&mut c, &stream, &prefix, "P1", last).await.unwrap().is_none());
            // A session past its window is gone.
            persist(&mut c, &prefix, &session, Duration::from_millis(50)).await;
            tokio::time::sleep(Duration::from_millis(120)).await;
            assert!(take(&mut c, &stream, &prefix, "P1", last).await.unwrap().is_none());
            // A stored value that is not a session: not restored.
            let key = streams_wire::session_key(&prefix, "P2");
            let _: () = redis::cmd("SET").arg(&key).arg("%%%").query_async(&mut c).await.unwrap();
            assert!(take(&mut c, &stream, &prefix, "P2", last).await.unwrap().is_none());
            let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
        });
    }
}

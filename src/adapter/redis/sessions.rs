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
    match stored {
        Some(stored) => readable_at(conn, stream, &stored, offset).await,
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// Live sessions (`ConnectionStateRecovery::live_sessions`): a connected socket's session
// is kept too, so that the clients of a server that crashed can be restored elsewhere.
//
// Each lives in a hash `{sio:session:PID}:live` with `owner` (the server uid) and
// `session` (the value `persist_cmd` stores). The hash tag is the whole session key, so
// both keys of a pid sit in one Redis Cluster slot and one script may touch both. A server
// writes, refreshes, persists and deletes a pid's live session only while it owns it; a
// server that restores one claims it first (owner := itself), so the old server, if it was
// only cut off (a half-open connection it times out later), neither overwrites it nor
// persists its stale copy when its socket finally closes. The reference's session key
// is untouched by all this: Node servers restore what was persisted at disconnect, as
// before.
// ---------------------------------------------------------------------------------------

/// Writes (or refreshes) the session while `owner` owns it or nobody does.
const KEEP_LIVE: &str = r#"
local o = redis.call('HGET', KEYS[1], 'owner')
if o and o ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'session', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// The socket dropped: its session is persisted as the reference does (the session key,
/// for the window) and the live one goes, unless another server claimed it.
const PERSIST_LIVE: &str = r#"
local o = redis.call('HGET', KEYS[2], 'owner')
if o and o ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"#;

/// The socket left for good: its live session goes, if still `owner`'s.
const DROP_LIVE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Another server's live session, claimed by `ARGV[1]`: the session, once. Not one of the
/// claimer's own (its socket is still connected here, and would be doubled).
const TAKE_LIVE: &str = r#"
local o = redis.call('HGET', KEYS[1], 'owner')
local s = redis.call('HGET', KEYS[1], 'session')
if (not s) or o == ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('HDEL', KEYS[1], 'session')
return s
"#;

/// The live session key of `pid`.
pub(super) fn live_key(prefix: &str, pid: &str) -> String {
    format!("{{{}}}:live", streams_wire::session_key(prefix, pid))
}

fn eval(script: &str, keys: &[&str], args: &[&[u8]]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    for a in args {
        c.arg(*a);
    }
    c
}

fn ms(d: Duration) -> String {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1).to_string()
}

/// Keeps a connected socket's session for `ttl`, as `owner`.
pub(super) fn keep_live_cmd(
    prefix: &str,
    session: &streams_wire::Session,
    owner: &str,
    ttl: Duration,
) -> redis::Cmd {
    let key = live_key(prefix, &session.pid);
    eval(KEEP_LIVE, &[&key], &[owner.as_bytes(), session.encode().as_bytes(), ms(ttl).as_bytes()])
}

/// [`persist_cmd`] with live sessions: only while `owner` owns the live one.
pub(super) fn persist_live_cmd(
    prefix: &str,
    session: &streams_wire::Session,
    owner: &str,
    window: Duration,
) -> redis::Cmd {
    let key = streams_wire::session_key(prefix, &session.pid);
    let live = live_key(prefix, &session.pid);
    let value = session.encode();
    eval(PERSIST_LIVE, &[&key, &live], &[owner.as_bytes(), value.as_bytes(), ms(window).as_bytes()])
}

/// A socket left for good: its live session is deleted, if `owner`'s.
pub(super) fn drop_live_cmd(prefix: &str, pid: &str, owner: &str) -> redis::Cmd {
    eval(DROP_LIVE, &[&live_key(prefix, pid)], &[owner.as_bytes()])
}

/// [`take`] of a live session another server kept (it crashed, or its connection to the
/// client broke without its knowing): claimed for `owner`, then read as `take` reads one
/// (`None` too when the offset's entry left the stream).
pub(super) async fn take_live(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    prefix: &str,
    pid: &str,
    offset: EntryId,
    owner: &str,
) -> redis::RedisResult<Option<streams_wire::Session>> {
    let key = live_key(prefix, pid);
    let stored: Option<Vec<u8>> =
        eval(TAKE_LIVE, &[&key], &[owner.as_bytes()]).query_async(conn).await?;
    match stored {
        Some(stored) => readable_at(conn, stream, &stored, offset).await,
        None => Ok(None),
    }
}

/// A taken session `stored`, when the client's offset is still in the stream (else the
/// client gets a new session: what it missed is gone) and it decodes.
async fn readable_at(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    stored: &[u8],
    offset: EntryId,
) -> redis::RedisResult<Option<streams_wire::Session>> {
    let at = offset.to_string();
    let there: redis::Value =
        redis::cmd("XRANGE").arg(stream).arg(&at).arg(&at).query_async(conn).await?;
    if entries(there).is_empty() {
        return Ok(None);
    }
    Ok(streams_wire::Session::decode(stored, MAX_DEPTH).ok())
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

    #[test]
    fn a_live_session_is_claimed_once_and_its_old_owner_can_no_longer_touch_it() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = redis::Client::open(url()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let stream = format!("rs-{}-live", std::process::id());
            let prefix = format!("rs-{}-live:", std::process::id());
            let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
            let at = EntryId::parse(&xadd(&mut c, &stream, &broadcast(&[], &[], false, "x")).await)
                .unwrap();
            let session = |rooms: &[&str]| streams_wire::Session {
                sid: "S1".into(),
                pid: "P1".into(),
                rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
                data: serde_json::json!({}),
            };
            let ttl = Duration::from_secs(10);
            let shared = c.clone();
            let run = |cmd: redis::Cmd| {
                let mut c = shared.clone();
                async move { cmd.query_async::<i64>(&mut c).await.unwrap() }
            };
            let get = |key: String| {
                let mut c = shared.clone();
                async move {
                    redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut c).await.unwrap()
                }
            };
            // Server A keeps it, and updates it.
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1"]), "A", ttl)).await, 1);
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1", "r1"]), "A", ttl)).await, 1);
            let pttl: i64 =
                redis::cmd("PTTL").arg(live_key(&prefix, "P1")).query_async(&mut c).await.unwrap();
            assert!(pttl > 9_000 && pttl <= 10_000, "{pttl}");
            // A cannot take its own (its socket is still there).
            assert_eq!(take_live(&mut c, &stream, &prefix, "P1", at, "A").await.unwrap(), None);
            // B takes it, once, as A last wrote it.
            let got = take_live(&mut c, &stream, &prefix, "P1", at, "B").await.unwrap();
            assert_eq!(got, Some(session(&["S1", "r1"])));
            assert_eq!(take_live(&mut c, &stream, &prefix, "P1", at, "C").await.unwrap(), None);
            // A (cut off, then timing out) neither overwrites, persists nor deletes it.
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1"]), "A", ttl)).await, 0);
            assert_eq!(run(persist_live_cmd(&prefix, &session(&["S1"]), "A", ttl)).await, 0);
            assert_eq!(get(streams_wire::session_key(&prefix, "P1")).await, None);
            assert_eq!(run(drop_live_cmd(&prefix, "P1", "A")).await, 0);
            // B owns it: it writes it, then its socket drops and it is persisted as the
            // reference persists it, and the live one is gone.
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1", "r2"]), "B", ttl)).await, 1);
            assert_eq!(run(persist_live_cmd(&prefix, &session(&["S1", "r2"]), "B", ttl)).await, 1);
            let kept = get(streams_wire::session_key(&prefix, "P1")).await;
            assert_eq!(kept, Some(session(&["S1", "r2"]).encode()));
            let live: i64 = redis::cmd("EXISTS")
                .arg(live_key(&prefix, "P1"))
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(live, 0);
            // The persisted one is taken as before (by a Node server too).
            let got = take(&mut c, &stream, &prefix, "P1", at).await.unwrap();
            assert_eq!(got, Some(session(&["S1", "r2"])));
            // A socket that left for good: its owner drops it.
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1"]), "B", ttl)).await, 1);
            assert_eq!(run(drop_live_cmd(&prefix, "P1", "B")).await, 1);
            assert_eq!(take_live(&mut c, &stream, &prefix, "P1", at, "C").await.unwrap(), None);
            // An offset no longer in the stream: no session.
            assert_eq!(run(keep_live_cmd(&prefix, &session(&["S1"]), "A", ttl)).await, 1);
            let gone = EntryId { ms: 1, seq: 0 };
            assert_eq!(take_live(&mut c, &stream, &prefix, "P1", gone, "B").await.unwrap(), None);
            let _: () = redis::cmd("DEL")
                .arg(&stream)
                .arg(live_key(&prefix, "P1"))
                .query_async(&mut c)
                .await
                .unwrap();
        });
    }
}

//! The sessions of connection state recovery as `@socket.io/redis-streams-adapter` keeps
//! them in Redis: `SET {prefix}{pid} base64(msgpack{sid,pid,rooms,data}) PX window` when a
//! socket's connection drops, and the restore: the session taken (`GET` + `DEL` in one
//! transaction), its offset checked to be still in the stream, and the broadcasts after it
//! that reach the session read in batches. Recovery across servers (issue 11) calls these
//! from the engine's seams (`ShardCtx::recovery_on_closed`, `ShardCtx::ask_restore`); until
//! that lands they are used by their tests only.
#![cfg_attr(not(test), allow(dead_code))]

use std::time::Duration;

use super::streams::entries;
use super::MAX_DEPTH;
use crate::adapter::streams_wire;

/// Most entries one `XRANGE` of a restore returns: the restore reads the stream in batches
/// (the reference asks for everything after the offset at once).
const RESTORE_BATCH: usize = 100;

/// What a restore found: the session and the broadcasts it missed, each with its entry id
/// (its offset, appended as the last argument when it is sent).
pub(super) type Restored =
    (streams_wire::Session, Vec<(String, crate::adapter::cluster_wire::ClusterMessage)>);

/// Keeps `session` for `window` (`SET {prefix}{pid} base64(msgpack) PX ms`), as the
/// adapter's `persistSession`.
pub(super) async fn persist(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    session: &streams_wire::Session,
    window: Duration,
) -> redis::RedisResult<()> {
    let key = streams_wire::session_key(prefix, &session.pid);
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    redis::cmd("SET").arg(key).arg(session.encode()).arg("PX").arg(ms).query_async(conn).await
}

/// Takes session `pid` (it is gone afterwards, found or not, as with the reference's
/// `GET` + `DEL` in one transaction) and reads the broadcasts of `nsp` after `offset` that
/// reach it, at most `max_entries` entries read. `None` (a new session for the client) when
/// the offset is not an entry id, the session is unknown or unreadable, or the offset's
/// entry left the stream (`MAXLEN`).
pub(super) async fn restore(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    prefix: &str,
    pid: &str,
    offset: &str,
    nsp: &str,
    max_entries: usize,
) -> redis::RedisResult<Option<Restored>> {
    if !streams_wire::is_entry_id(offset) {
        return Ok(None);
    }
    let key = streams_wire::session_key(prefix, pid);
    let (stored, _): (Option<Vec<u8>>, i64) =
        redis::pipe().atomic().cmd("GET").arg(&key).cmd("DEL").arg(&key).query_async(conn).await?;
    let Some(stored) = stored else { return Ok(None) };
    let there: redis::Value =
        redis::cmd("XRANGE").arg(stream).arg(offset).arg(offset).query_async(conn).await?;
    if entries(there).is_empty() {
        return Ok(None);
    }
    let Ok(session) = streams_wire::Session::decode(&stored, MAX_DEPTH) else { return Ok(None) };
    let mut missed = Vec::new();
    let (mut from, mut read) = (offset.to_owned(), 0);
    while read < max_entries {
        let Some(start) = streams_wire::next_entry_id(&from) else { break };
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(RESTORE_BATCH)
            .query_async(conn)
            .await?;
        let batch = entries(v);
        let n = batch.len();
        for (id, fields) in batch {
            if let Ok(m) = streams_wire::decode_entry(&fields, MAX_DEPTH) {
                if streams_wire::replays_to(&m, nsp, &session.rooms) {
                    missed.push((id.clone(), m));
                }
            }
            from = id;
        }
        read += n;
        if n < RESTORE_BATCH {
            break;
        }
    }
    Ok(Some((session, missed)))
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

    #[test]
    fn a_kept_session_is_taken_once_with_the_broadcasts_it_missed() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = redis::Client::open(url()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let stream = format!("rs-{}-restore", std::process::id());
            let prefix = format!("rs-{}-sess:", std::process::id());
            let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
            let last = xadd(&mut c, &stream, &broadcast(&[], &[], false, "seen")).await;
            let session = streams_wire::Session {
                sid: "S1".into(),
                pid: "P1".into(),
                rooms: vec!["S1".into(), "r1".into()],
                data: serde_json::json!({"k": 1}),
            };
            persist(&mut c, &prefix, &session, Duration::from_secs(10)).await.unwrap();
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
            xadd(&mut c, &stream, &broadcast(&["r1"], &[], false, "last")).await;
            let (got, missed) = restore(&mut c, &stream, &prefix, "P1", &last, "/", 10_000)
                .await
                .unwrap()
                .expect("restored");
            assert_eq!(got, session);
            let events: Vec<&str> = missed.iter().map(|(_, m)| event_of(m)).collect();
            assert_eq!(events, ["to-r1", "to-it", "everyone", "last"]);
            // Taken: a second restore finds nothing; so do an unknown pid and a bad offset.
            assert!(restore(&mut c, &stream, &prefix, "P1", &last, "/", 10_000)
                .await
                .unwrap()
                .is_none());
            assert!(restore(&mut c, &stream, &prefix, "nope", &last, "/", 10_000)
                .await
                .unwrap()
                .is_none());
            persist(&mut c, &prefix, &session, Duration::from_secs(10)).await.unwrap();
            assert!(restore(&mut c, &stream, &prefix, "P1", "Qx.1.2", "/", 10_000)
                .await
                .unwrap()
                .is_none());
            // An offset that left the stream: the session is taken and not restored.
            persist(&mut c, &prefix, &session, Duration::from_secs(10)).await.unwrap();
            assert!(restore(&mut c, &stream, &prefix, "P1", "1-0", "/", 10_000)
                .await
                .unwrap()
                .is_none());
            assert!(restore(&mut c, &stream, &prefix, "P1", &last, "/", 10_000)
                .await
                .unwrap()
                .is_none());
            // A session past its window is gone.
            persist(&mut c, &prefix, &session, Duration::from_millis(50)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            assert!(restore(&mut c, &stream, &prefix, "P1", &last, "/", 10_000)
                .await
                .unwrap()
                .is_none());
            let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
        });
    }
}

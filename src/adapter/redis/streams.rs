//! The stream side of the Redis Streams adapter (`@socket.io/redis-streams-adapter` 0.3):
//! one reader per server, on its own connection (`XREAD BLOCK` holds the connection it
//! runs on), reading every entry after the last one it saw, in order, and handing each to
//! the same handling as the cluster messages of pub/sub ([`super::sharded`], which runs
//! the rest of this protocol: PUBLISH / SUBSCRIBE for requests and answers, XADD for
//! what goes to the stream).
//!
//! It starts from the stream's last entry when the server starts (so nothing appended
//! after the server said it is listening is missed) and keeps its position across Redis
//! restarts, as the reference does; a server that starts later does not replay history.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::serve;
use super::MAX_DEPTH;
use crate::adapter::streams_wire;
use crate::proto::offset::EntryId;

/// Most entries one `XREAD` returns (the adapter's `readCount`).
const READ_COUNT: usize = 100;
/// How long one `XREAD` blocks when nothing comes (the adapter's `blockTimeInMs`).
const BLOCK: Duration = Duration::from_secs(5);

/// One entry read from the stream: its id and its field/value pairs.
pub(super) type Entry = (String, Vec<(Bytes, Bytes)>);

/// The id of the stream's last entry (`0-0` when it is empty or absent): where a new
/// reader starts.
pub(super) async fn last_id(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> redis::RedisResult<String> {
    let v: redis::Value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(entries(v).into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// Reads the stream from after `from` for as long as the server runs, reconnecting with
/// backoff when Redis goes away, and hands each entry to `ctx`.
pub(super) async fn read(
    client: redis::Client,
    stream: String,
    mut from: String,
    ctx: Arc<serve::Ctx>,
    progress: Arc<super::recover::Progress>,
) {
    if let Some(id) = EntryId::parse(&from) {
        progress.read_to(id);
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(Some(BLOCK * 2)),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "redis streams adapter: cannot reach Redis to read the stream");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let reply: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&from)
                .query_async(&mut conn)
                .await;
            let v = match reply {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "redis streams adapter: XREAD failed");
                    break;
                }
            };
            // XREAD answers [[stream, [entry, ...]]] (a map in RESP3), nil when it timed out.
            let list = match v {
                redis::Value::Array(mut streams) if !streams.is_empty() => {
                    match streams.remove(0) {
                        redis::Value::Array(mut pair) if pair.len() == 2 => pair.remove(1),
                        _ => redis::Value::Nil,
                    }
                }
                redis::Value::Map(mut pairs) if !pairs.is_empty() => pairs.remove(0).1,
                _ => redis::Value::Nil,
            };
            for (id, fields) in entries(list) {
                on_entry(&ctx, &id, &fields);
                from = id;
            }
            // Handed to the shards up to here: restores waiting on it may answer.
            if let Some(id) = EntryId::parse(&from) {
                progress.read_to(id);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Entries of an `XRANGE` / `XREVRANGE` / `XREAD` list: `[[id, [field, value, ...]], ...]`.
/// What is not of that shape is skipped (counted by the caller as nothing read).
pub(super) fn entries(v: redis::Value) -> Vec<Entry> {
    let redis::Value::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|e| {
            let redis::Value::Array(mut e) = e else { return None };
            if e.len() != 2 {
                return None;
            }
            let fields = e.pop()?;
            let id = match e.pop()? {
                redis::Value::BulkString(b) => String::from_utf8(b).ok()?,
                redis::Value::SimpleString(s) => s,
                _ => return None,
            };
            let flat: Vec<Bytes> = match fields {
                redis::Value::Array(f) => f.into_iter().filter_map(bulk_bytes).collect(),
                redis::Value::Map(m) => m
                    .into_iter()
                    .flat_map(|(k, v)| [bulk_bytes(k), bulk_bytes(v)])
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            let pairs = flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            Some((id, pairs))
        })
        .collect()
}

fn bulk_bytes(v: redis::Value) -> Option<Bytes> {
    match v {
        redis::Value::BulkString(b) => Some(Bytes::from(b)),
        redis::Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

/// One entry of the stream: another server's broadcast or operation, handled here; ours
/// (already applied here) and malformed ones skipped, the latter counted.
fn on_entry(ctx: &Arc<serve::Ctx>, id: &str, fields: &[(Bytes, Bytes)]) {
    let stats = &ctx.adapter.stats;
    let m = match streams_wire::decode_entry(fields, MAX_DEPTH) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(%id, error = %e, "redis streams adapter: ignored an entry");
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    stats.received.fetch_add(1, Ordering::Relaxed);
    super::sharded::handle_message(ctx, m, EntryId::parse(id));
}

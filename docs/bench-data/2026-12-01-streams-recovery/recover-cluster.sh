#!/usr/bin/env bash
# Connection state recovery across servers under a burst: two `shardcast serve --shards 1
# --redis-streams --recovery 60000` servers on one key of the Redis at 127.0.0.1:6379 (core 1),
# `shardcast-loadtest recover` with both URLs (core 0, --workers 2): CLIENTS subscribers over
# ROOMS rooms at RATE msg/s per room, every connection cut at 4 s and back after 1 s on the
# *other* server. RUNS runs, fresh servers and key each, PAUSE (70) s apart. Writes OUT/run<N>.json and OUT/table.md.
#
#   docs/bench-data/2026-12-01-streams-recovery/recover-cluster.sh      # 10,000 x 100 rooms x 10/s, 3 runs
#   CLIENTS=2000 ROOMS=20 RUNS=1 .../recover-cluster.sh
# Release builds of shardcast and shardcast-loadtest are made first unless SKIP_BUILD=1.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CLIENTS=${CLIENTS:-10000} ROOMS=${ROOMS:-100} RATE=${RATE:-10} RUNS=${RUNS:-3}
MAXLEN=${MAXLEN:-100000} OUT=${OUT:-$HERE/recover-cluster}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-loadtest --bin shardcast --bin shardcast-loadtest) || exit 1
fi
mkdir -p "$OUT"; LOGS=$(mktemp -d)
for run in $(seq "$RUNS"); do
  key=bench-recc-$run-$$ pids=() urls=()
  for s in 1 2; do
    taskset -c 1 "$TARGET/release/shardcast" serve --port 0 --shards 1 --redis redis://127.0.0.1:6379 \
      --redis-key "$key" --redis-streams --redis-stream-max-len "$MAXLEN" --recovery 60000 >"$LOGS/s$s.log" 2>&1 &
    pids+=($!)
  done
  for s in 1 2; do
    for _ in $(seq 100); do
      port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$LOGS/s$s.log"); [ -n "$port" ] && break; sleep 0.1
    done
    urls+=(--url "http://127.0.0.1:$port")
  done
  timeout 180 taskset -c 0 "$TARGET/release/shardcast-loadtest" recover "${urls[@]}" --clients "$CLIENTS" \
    --rooms "$ROOMS" --rate "$RATE" --duration "${DURATION:-10}" --drop-at 4 --down 1000 --workers 2 \
    --server-pid "${pids[0]}" --server-pid "${pids[1]}" --json "$OUT/run$run.json" --quiet >"$OUT/run$run.txt" 2>&1
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
  redis-cli del "$key" >/dev/null
  # A run opens ~20,000 loopback connections and their TIME_WAITs last 60 s: back-to-back
  # runs left comebacks unable to connect (counted as "not back"), so wait them out.
  [ "$run" -lt "$RUNS" ] && sleep "${PAUSE:-70}"
done
rm -rf "$LOGS"
python3 - "$OUT" "$CLIENTS" "$ROOMS" "$RATE" "$RUNS" <<'PY'
import json, sys
from pathlib import Path
out, clients, rooms, rate, runs = Path(sys.argv[1]), *sys.argv[2:]
rows = []
for r in range(1, int(runs) + 1):
    d = json.loads((out / f"run{r}.json").read_text())
    rec, t = d["recovery"], d["recovery"].get("time_to_recover_us", {})
    ms = lambda k: round(t.get(k, 0) / 1000, 1)
    rows.append(f"| {r} | {rec['cuts']} | {rec['recovered']} | {rec.get('recovered_on_other_server')} | {rec['refused']} | {rec['missing']} | {d['lost']} / {d['duplicates']} / {d['reordered']} | {ms('p50')} / {ms('p99')} / {ms('max')} ms | {'clean' if d['clean'] else 'NOT clean'} |")
(out / "table.md").write_text(
    f"# Recovery across servers under a burst ({clients} subscribers, {rooms} rooms x {rate} msg/s, 2 shardcast servers on Redis Streams)\n\n"
    "Every connection cut at once at 4 s of a DURATION s run (10 by default), back after 1 s on the other server (`recover-cluster.sh`).\n\n"
    "| run | cut | recovered | of them on the other server | new session | not back | lost / dup / reordered | time to recover p50 / p99 / max | verdict |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
print((out / "table.md").read_text())
PY

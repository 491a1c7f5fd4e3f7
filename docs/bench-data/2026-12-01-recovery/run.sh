#!/usr/bin/env bash
# Connection state recovery, what it costs and how fast it brings clients back (issue 11):
#   (a) fanout 1,000 subscribers x 1,000 msg/s (1 room, 64-byte payload, 8 s), server with
#       recovery off and on (--recovery 120000), alternated (which goes first swapped every
#       run), 3 runs: server CPU per delivery, p99, loss; medians.
#   (b) the replay log's memory: 100 subscribers x 1,000 msg/s of 1,000-byte payloads for 20 s
#       (20,000 broadcasts, all inside the 120 s window), off and on: server RSS at the end;
#       on - off against the bytes broadcast.
#   (c) `recover`: 10,000 subscribers in 100 rooms at 10 msg/s per room (1,000 broadcasts/s),
#       every connection cut at 4 s and back after 1,000 ms with its pid and offset; 3 runs:
#       recovered, lost / duplicates / reordered, time to recover.
# Server `shardcast serve --shards 1` on core 1, the harness on core 0 (taskset); nothing else
# may run meanwhile. Release builds first (cargo build --release), unless SKIP_BUILD=1.
#   docs/bench-data/2026-12-01-recovery/run.sh                 # ~4 min
#   docs/bench-data/2026-12-01-recovery/run.sh --summarize DIR # table.md, summary.json from DIR/raw
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SC=$TARGET/release/shardcast
LT=$TARGET/release/shardcast-loadtest
OUT=${OUT:-$HERE}

summarize() {
python3 - "$1" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1]); raw = out / "raw"
load = lambda n: json.loads((raw / n).read_text()) if (raw / n).exists() else None
med = lambda xs: round(statistics.median(xs), 3) if xs else None
a = {}
for mode in ("off", "on"):
    runs = [load(f"fanout-{mode}-run{r}.json") for r in (1, 2, 3)]
    runs = [j for j in runs if j]
    a[mode] = dict(
        cpu_us_per_delivery=[j["server"]["cpu_us_per_delivery"] for j in runs],
        p99_ms=[round(j["latency_us"]["p99"] / 1000, 3) for j in runs],
        lost=[j["lost"] for j in runs], reordered=[j["reordered"] for j in runs],
        duplicates=[j["duplicates"] for j in runs])
for m in a.values():
    m["median_cpu_us_per_delivery"] = med(m["cpu_us_per_delivery"]); m["median_p99_ms"] = med(m["p99_ms"])
ratio = round(a["on"]["median_cpu_us_per_delivery"] / a["off"]["median_cpu_us_per_delivery"], 3)
b = {}
for mode in ("off", "on"):
    j = load(f"memory-{mode}.json")
    b[mode] = dict(rss_end_bytes=j["server"]["rss_end_bytes"], rss_peak_bytes=j["server"]["rss_peak_bytes"],
                   broadcasts=j["sent"], payload=j["config"]["payload"])
log_bytes = b["on"]["rss_end_bytes"] - b["off"]["rss_end_bytes"]
broadcast_bytes = b["on"]["broadcasts"] * b["on"]["payload"]
c = []
for r in (1, 2, 3):
    j = load(f"recover-run{r}.json")
    if not j: continue
    rc = j["recovery"]; t = rc["time_to_recover_us"]
    c.append(dict(cuts=rc["cuts"], recovered=rc["recovered"], refused=rc["refused"], missing=rc["missing"],
                  lost=j["lost"], duplicates=j["duplicates"], reordered=j["reordered"], expected=j["expected"],
                  p50_ms=round(t["p50"] / 1000, 1), p99_ms=round(t["p99"] / 1000, 1), max_ms=round(t["max"] / 1000, 1),
                  clean=j["clean"]))
s = json.loads((raw / "settings.json").read_text())
L = ["# Connection state recovery: cost and recovery time (2026-12-01)", "",
     f"`docs/bench-data/2026-12-01-recovery/run.sh`; {s['environment']}. Server `shardcast serve --shards 1` on core 1 "
     "(with `--recovery 120000` for on), harness on core 0.", "",
     "## (a) fan-out 1,000 x 1,000 msg/s, recovery off and on (3 runs alternated, medians)", "",
     "| recovery | server CPU per delivery (runs) | p99 (runs) | lost / duplicates / reordered |", "| --- | --- | --- | --- |"]
for mode in ("off", "on"):
    m = a[mode]
    L.append(f"| {mode} | **{m['median_cpu_us_per_delivery']} µs** ({' / '.join(map(str, m['cpu_us_per_delivery']))}) | "
             f"{m['median_p99_ms']} ms ({' / '.join(map(str, m['p99_ms']))}) | {sum(m['lost'])} / {sum(m['duplicates'])} / {sum(m['reordered'])} |")
L += ["", f"On / off: **{ratio}x** CPU per delivery (target: within 10%).", "",
      "## (b) the replay log's memory (100 x 1,000 msg/s of 1,000-byte payloads, 20 s, all inside the window)", "",
      "| recovery | server RSS at the end | peak |", "| --- | --- | --- |"]
for mode in ("off", "on"):
    L.append(f"| {mode} | {b[mode]['rss_end_bytes'] / 1e6:.1f} MB | {b[mode]['rss_peak_bytes'] / 1e6:.1f} MB |")
L += ["", f"On - off: **{log_bytes / 1e6:.1f} MB** for {b['on']['broadcasts']:,} broadcasts of {b['on']['payload']:,}-byte payloads "
      f"({broadcast_bytes / 1e6:.1f} MB of payload): {log_bytes / max(b['on']['broadcasts'], 1):.0f} bytes per logged packet "
      "(the encoded packet, about 1,090 bytes here, and the log's bookkeeping).", "",
      "## (c) 10,000 clients cut at once and recovered (`recover`, 100 rooms x 10 msg/s, back after 1,000 ms)", "",
      "| run | cut | recovered | new sessions / missing | lost / duplicates / reordered (of expected) | time to recover p50 / p99 / max | clean |",
      "| --- | --- | --- | --- | --- | --- | --- |"]
for i, r in enumerate(c, 1):
    L.append(f"| {i} | {r['cuts']:,} | {r['recovered']:,} | {r['refused']} / {r['missing']} | {r['lost']} / {r['duplicates']} / {r['reordered']} (of {r['expected']:,}) | "
             f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} ms | {r['clean']} |")
L += ["", "Time to recover: from a comeback's first byte to its CONNECT reply, which comes after the replay of what it missed "
      "(10 messages per client in the second it was away). The harness has at most 256 handshakes in flight at once "
      "(`--connect-concurrency`), so the 10,000 comebacks queue behind each other; each is timed from its own first byte.", ""]
(out / "table.md").write_text("\n".join(L) + "\n")
(out / "summary.json").write_text(json.dumps(dict(settings=s, fanout=a, cpu_ratio_on_off=ratio, memory=dict(runs=b, log_bytes=log_bytes,
    broadcast_payload_bytes=broadcast_bytes), recover=c), indent=1) + "\n")
print("\n".join(L))
PY
}

if [ "${1:-}" = "--summarize" ]; then summarize "$2"; exit $?; fi
if [ -z "${SKIP_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-loadtest --bin shardcast --bin shardcast-loadtest) || exit 1
fi
mkdir -p "$OUT/raw"
echo "{\"date\": \"$(date +%F)\", \"environment\": \"$(cd "$ROOT" && git rev-parse --short HEAD), kernel $(uname -r), $(nproc --all) cores\"}" >"$OUT/raw/settings.json"
LOG=$(mktemp /tmp/recovery-bench.XXXXXX)
trap 'rm -f "$LOG"' EXIT
# serve MODE: starts the server (recovery off or on) on a free port; sets PID, URL.
serve() {
  local flags=() port=; [ "$1" = on ] && flags=(--recovery 120000)
  taskset -c 1 "$SC" serve --shards 1 --port 0 "${flags[@]}" >"$LOG" 2>&1 &
  PID=$!
  for _ in $(seq 50); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$LOG")
    [ -n "$port" ] && break; sleep 0.1
  done
  [ -n "$port" ] || { echo "run.sh: the server did not start: $(cat "$LOG")" >&2; exit 1; }
  URL=http://127.0.0.1:$port
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null; }
lt() { timeout --kill-after=10 180 taskset -c 0 "$LT" "$@" --quiet >/dev/null 2>&1; }

for run in 1 2 3; do
  order="off on"; [ $((run % 2)) -eq 0 ] && order="on off"
  for mode in $order; do
    echo "run.sh: (a) fanout recovery $mode, run $run" >&2
    serve $mode
    lt fanout --url $URL --clients 1000 --rooms 1 --rate 1000 --duration 8 --payload 64 \
      --server-pid $PID --json "$OUT/raw/fanout-$mode-run$run.json"
    stop
  done
done
for mode in off on; do
  echo "run.sh: (b) memory, recovery $mode" >&2
  serve $mode
  lt fanout --url $URL --clients 100 --rooms 1 --rate 1000 --duration 20 --payload 1000 \
    --server-pid $PID --json "$OUT/raw/memory-$mode.json"
  stop
done
for run in 1 2 3; do
  echo "run.sh: (c) recover, run $run" >&2
  serve on
  lt recover --url $URL --clients 10000 --rooms 100 --rate 10 --duration 10 --drop-at 4 \
    --down 1000 --source-ips 4 --setup-timeout 60 --server-pid $PID --json "$OUT/raw/recover-run$run.json"
  stop
done
summarize "$OUT"

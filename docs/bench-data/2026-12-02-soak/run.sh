#!/usr/bin/env bash
# The soak runs of docs/reliability.md: shardcast for an hour, the Node peer for five
# minutes, same harness and seed. Server on core 1, harness on core 0. Writes the reports
# and charts here (needs a release build: cargo build --release; the Node peer needs
# npm ci in loadtest/peers/node; the charts need chromium).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=${BIN:-$root/target/release}
SECONDS_SHARDCAST=${SECONDS_SHARDCAST:-3600}
SECONDS_NODE=${SECONDS_NODE:-300}
soak() { # NAME PID DURATION WARMUP [--metrics URL]
    local name=$1 pid=$2 duration=$3 warmup=$4
    shift 4
    taskset -c 0 "$bin/shardcast-loadtest" soak --url http://127.0.0.1:3200 --duration "$duration" \
        --clients 300 --rooms 30 --recovery --seed 2026 --server-pid "$pid" --warmup "$warmup" \
        --sample 5 --settle 15 --json "$here/$name.json" "$@" > "$here/$name.txt" || true
    python3 "$here/chart.py" "$here/$name.json" "$here/$name.svg" "$name"
    chromium --headless --no-sandbox --disable-gpu --screenshot="$here/$name.png" \
        --window-size=900,790 "file://$here/$name.svg" 2>/dev/null || true
}
taskset -c 1 "$bin/shardcast" serve --port 3200 --recovery 10000 --metrics 127.0.0.1:9501 \
    --ping-interval 5000 --ping-timeout 5000 > /dev/null 2>&1 &
server=$!
sleep 1
soak shardcast-1h "$server" "$SECONDS_SHARDCAST" 300 --metrics http://127.0.0.1:9501/metrics
kill -TERM "$server"; wait "$server" || true
taskset -c 1 node "$root/loadtest/peers/node/server.js" --port 3200 --recovery 10000 \
    --ping-interval 5000 --ping-timeout 5000 > /dev/null 2>&1 &
server=$!
sleep 2
soak node-5min "$server" "$SECONDS_NODE" 60
kill -TERM "$server"; wait "$server" || true

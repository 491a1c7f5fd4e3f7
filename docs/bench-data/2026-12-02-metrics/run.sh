#!/usr/bin/env bash
# Metrics on vs off, side by side: one fanout run (1,000 subscribers x 1,000 msg/s, 64 B, 2 s
# warm-up, 10 s) against `shardcast serve --shards 1` on core 1, the harness on core 0; "on"
# adds --metrics and a scrape of /metrics every second (as Prometheus would). Usage, from the
# repository root after `cargo build --release -p shardcast -p shardcast-loadtest`:
#   for r in 1 2 3; do run.sh off $r; run.sh on $r; done
MODE=$1; RUN=$2; OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)/raw}; mkdir -p $OUT
MP=$((30000 + RANDOM % 5000))
EXTRA=(); [ "$MODE" = on ] && EXTRA=(--metrics 127.0.0.1:$MP)
taskset -c 1 ${TARGET:-target/release}/shardcast serve --port 0 --shards 1 "${EXTRA[@]}" > $OUT/s.log 2>&1 &
SP=$!
for _ in $(seq 50); do P=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' $OUT/s.log); [ -n "$P" ] && break; sleep 0.1; done
SCR=
if [ "$MODE" = on ]; then ( while kill -0 $SP 2>/dev/null; do curl -s -o /dev/null http://127.0.0.1:$MP/metrics; sleep 1; done ) & SCR=$!; fi
timeout 120 taskset -c 0 ${TARGET:-target/release}/shardcast-loadtest fanout --url http://127.0.0.1:$P --clients 1000 --rooms 1 --rate 1000 --duration 10 --payload 64 --server-pid $SP --warmup 2 --json $OUT/$MODE-$RUN.json --quiet > /dev/null 2>&1
kill $SP; wait $SP 2>/dev/null; [ -n "$SCR" ] && { kill $SCR 2>/dev/null; wait $SCR 2>/dev/null; }
python3 -c "
import json; j=json.load(open('$OUT/$MODE-$RUN.json')); s=j['server']
print('$MODE', $RUN, 'lost', j['lost'], 'cpu/delivery', s.get('cpu_us_per_delivery'), 'p99 ms', j['latency_us']['p99']/1000)"

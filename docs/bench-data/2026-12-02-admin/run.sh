#!/usr/bin/env bash
# The admin UI's cost on the fan-out, side by side: one fanout run (1,000 subscribers x 1,000
# msg/s, 64 B, 2 s warm-up, 10 s) against `shardcast serve --shards 1` on core 1, the
# harness on core 0. Modes: off (no --admin-ui); dev-idle (--admin-ui, development mode, no
# admin connected: the hooks are one relaxed load each); prod-watched (--admin-ui-mode
# production with an admin UI client connected: the stats every 2 s only). Usage, from the
# repository root after `cargo build --release -p shardcast -p shardcast-loadtest` and
# `npm ci` in tests/interop:
#   for r in 1 2 3; do for m in off dev-idle prod-watched; do run.sh $m $r; done; done
MODE=$1; RUN=$2; OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)/raw}; mkdir -p $OUT
EXTRA=()
case $MODE in
  dev-idle) EXTRA=(--admin-ui) ;;
  prod-watched) EXTRA=(--admin-ui --admin-ui-mode production) ;;
esac
taskset -c 1 ${TARGET:-target/release}/shardcast serve --port 0 --shards 1 "${EXTRA[@]}" > $OUT/s.log 2>&1 &
SP=$!
for _ in $(seq 50); do P=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' $OUT/s.log); [ -n "$P" ] && break; sleep 0.1; done
ADM=
if [ "$MODE" = prod-watched ]; then
  (cd tests/interop && exec taskset -c 0 node -e "
    const { io } = require('socket.io-client');
    const a = io('http://127.0.0.1:$P/admin', { transports: ['websocket'] });
    let n = 0; a.on('server_stats', () => n++);
    process.on('SIGTERM', () => { console.error('admin got', n, 'server_stats'); process.exit(0); });
  ") 2> $OUT/admin-$MODE-$RUN.log & ADM=$!
  sleep 1
fi
timeout 120 taskset -c 0 ${TARGET:-target/release}/shardcast-loadtest fanout --url http://127.0.0.1:$P --clients 1000 --rooms 1 --rate 1000 --duration 10 --payload 64 --server-pid $SP --warmup 2 --json $OUT/$MODE-$RUN.json --quiet > /dev/null 2>&1
[ -n "$ADM" ] && { kill $ADM; wait $ADM 2>/dev/null; }
kill $SP; wait $SP 2>/dev/null
python3 -c "
import json; j=json.load(open('$OUT/$MODE-$RUN.json')); s=j['server']
print('$MODE', $RUN, 'lost', j['lost'], 'cpu/delivery', s.get('cpu_us_per_delivery'), 'p99 ms', j['latency_us']['p99']/1000)"

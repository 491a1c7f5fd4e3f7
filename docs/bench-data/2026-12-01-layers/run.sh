#!/usr/bin/env bash
# Side-by-side fan-out: the builds before (cf90942) and after the restructure, alternated.
set -u
LT=/work/main/target/release/shardcast-loadtest
declare -A BIN=([before]=/tmp/base/target/release/shardcast [after]=/work/main/target/release/shardcast)
port=3100
for run in 1 2 3; do
  for rate in 1000 100; do
    for which in before after; do
      port=$((port+1))
      taskset -c 1 ${BIN[$which]} serve --shards 1 --port $port >/dev/null 2>&1 &
      pid=$!
      sleep 0.5
      taskset -c 0 $LT fanout --url http://127.0.0.1:$port --clients 1000 --rooms 1 --rate $rate \
        --duration 8 --payload 64 --server-pid $pid --json $which-$rate-run$run.json >/dev/null 2>&1
      kill $pid; wait $pid 2>/dev/null
    done
  done
done
